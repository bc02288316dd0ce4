"""Efficiency across many images: one row per (image, strategy), and the totals a reader quotes.

``efficiency_rows`` turns layouts (and optional fidelity numbers) into plain dict rows with the
tokens, pixels, MACs and MACs speed-up of every ViT preset. Over several images every ratio is a
*ratio of totals*, never a mean of per-image ratios (one 4000x800 panorama would otherwise count
as much as, or far more than, all the small images together): ``mean_speedups`` gives, per
strategy, the total MACs of the uniform 16 px grids over the total MACs of the layouts;
``efficiency_summary`` gives the headline numbers of one strategy: token reductions as
``1 - total tokens / total grid tokens``, tokens per megapixel (total tokens / total megapixels),
p50 / p95 / max tokens per image (nearest-rank, as ``adapatch.dataset``), the PSNR of the mean
squared error over the images (``mean_psnr``: never a mean of per-image PSNRs, which capped
lossless values would pull up; a lossless image contributes an error of 0 and is counted), and the
best and worst image. All results are plain, JSON-serialisable data, so the app's Efficiency page
only formats them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .efficiency import VIT_PRESETS, efficiency
from .fidelity import MAX_PSNR
from .layout import PatchLayout
from .validation import check_choice


def percentile(tokens: np.ndarray, q: float) -> np.ndarray:
    """Nearest-rank percentile over images (axis 0): the smallest count with ``q``% of images at or
    below it, so always a token count some image has (the definition of every cross-image summary
    and of dataset calibration)."""
    return np.percentile(tokens, q, axis=0, method="inverted_cdf")


def mean_psnr(psnrs: Iterable[float]) -> float:
    """PSNR (dB) of the mean squared error of images in ``[0, 1]`` given their PSNRs.

    Each PSNR becomes its MSE, ``10 ** (-psnr / 10)``; a capped (lossless) value, ``psnr >=
    MAX_PSNR``, is an error of 0. The result is ``10 * log10(1 / mean MSE)``, or ``MAX_PSNR`` when
    the mean error is 0 (every image lossless), the same cap ``adapatch.fidelity`` uses. Unlike the
    mean of the PSNRs, one lossless image cannot lift the average by tens of dB.
    """
    values = np.asarray(list(psnrs), np.float64)
    if values.size == 0:
        raise ValueError("mean_psnr needs at least one PSNR")
    if np.isnan(values).any():
        raise ValueError("PSNR values must not be NaN")
    mse = np.where(values >= MAX_PSNR, 0.0, 10.0 ** (-np.minimum(values, MAX_PSNR) / 10.0))
    m = float(mse.mean())
    return MAX_PSNR if m <= 1e-10 else min(MAX_PSNR, 10.0 * float(np.log10(1.0 / m)))


def efficiency_rows(items: Iterable[tuple[str, str, PatchLayout, Mapping[str, float] | None]],
                    vits: Iterable[str] = tuple(VIT_PRESETS)) -> list[dict]:
    """One row per ``(image, strategy, layout, fidelity-or-None)``.

    Each row holds ``image``, ``strategy``, ``tokens``, ``pixels`` (height x width of the image the
    layout covers), ``uniform16`` (tokens of the 16 px grid), ``reduction`` (fraction fewer than
    that grid), ``min_size``, ``uniform_min`` and ``reduction_min`` (the same against the grid of
    the layout's finest patch), then for each ViT preset ``"<preset> GMACs"``, ``"<preset> uniform16
    GMACs"`` (the 16 px grid's) and ``"<preset> speedup"`` (their ratio, this image only), and
    ``psnr`` / ``ssim`` when fidelity numbers are given.
    """
    vits = [check_choice("vit", v, VIT_PRESETS) for v in vits]
    rows = []
    for image, strategy, layout, fid in items:
        row: dict = {"image": str(image), "strategy": str(strategy)}
        for i, vit in enumerate(vits):
            eff = efficiency(layout, vit)
            if i == 0:
                row.update(tokens=eff["tokens"], pixels=int(layout.height) * int(layout.width),
                           uniform16=eff["uniform16_tokens"], reduction=eff["token_reduction_vs_uniform16"],
                           min_size=eff["min_size"], uniform_min=eff["uniform_min_tokens"],
                           reduction_min=eff["token_reduction_vs_uniform_min"])
            row[f"{vit} GMACs"] = eff["flops"] / 1e9
            row[f"{vit} uniform16 GMACs"] = eff["uniform16_flops"] / 1e9
            row[f"{vit} speedup"] = eff["speedup_vs_uniform16"]
        if fid is not None:
            row.update(psnr=float(fid["psnr"]), ssim=float(fid["ssim"]))
        rows.append(row)
    return rows


def _speedup(sel: list[dict], vit: str) -> float:
    """Total MACs of the 16 px grids / total MACs of the layouts (a ratio of totals)."""
    macs = float(sum(r[f"{vit} GMACs"] for r in sel))
    grid = float(sum(r[f"{vit} uniform16 GMACs"] for r in sel))
    return grid / macs if macs else float("inf")


def mean_speedups(rows: list[dict], vits: Iterable[str] = tuple(VIT_PRESETS),
                  exclude: Iterable[str] = ()) -> dict[str, dict[str, float]]:
    """``{strategy: {preset: MACs speed-up over the 16 px grid}}``, strategies in row order.

    The speed-up of a strategy over its images is a ratio of totals: the total MACs of the uniform
    16 px grids over the total MACs of the strategy's layouts (not the mean of per-image
    speed-ups, which lets one image with a large ratio dominate).
    """
    skip = set(exclude)
    vits = list(vits)
    out: dict[str, dict[str, float]] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        if strategy in skip:
            continue
        sel = [r for r in rows if r["strategy"] == strategy]
        out[strategy] = {v: _speedup(sel, v) for v in vits}
    return out


@dataclass
class EfficiencySummary:
    """Headline numbers of one strategy over ``images`` images.

    Reductions and the speed-up are ratios of totals over the images; ``tokens``,
    ``uniform_min_tokens`` and ``uniform16_tokens`` are mean tokens per image (totals / images).
    """

    strategy: str
    vit: str
    images: int
    tokens: float  # mean tokens per image
    total_tokens: int
    p50_tokens: int  # nearest-rank percentiles of tokens per image (a count some image has)
    p95_tokens: int
    max_tokens: int
    tokens_per_mp: float  # total tokens / total megapixels
    finest_size: int
    uniform_min_tokens: float  # the fixed grid with the layout's finest patch, mean per image
    reduction_vs_uniform_min: float  # 1 - total tokens / total tokens of that grid
    uniform16_tokens: float
    reduction_vs_uniform16: float  # 1 - total tokens / total 16 px grid tokens
    speedup_vs_uniform16: float  # total MACs of the 16 px grids / total MACs of the layouts, for ``vit``
    psnr: float | None  # PSNR of the mean MSE over the images (``mean_psnr``; MAX_PSNR: all lossless;
    #                     None: no fidelity numbers)
    psnr_images: int  # images in that mean (every image with fidelity numbers)
    lossless_images: int  # of those, images reconstructed losslessly (PSNR capped at MAX_PSNR; MSE 0)
    ssim: float | None  # mean over every image with fidelity numbers
    best_image: str  # largest token reduction against the 16 px grid
    best_reduction: float
    worst_image: str
    worst_reduction: float

    def to_dict(self) -> dict:
        return asdict(self)


def efficiency_summary(rows: list[dict], strategy: str = "quadtree", vit: str = "ViT-B") -> EfficiencySummary | None:
    """The summary of ``strategy``'s rows (``None`` when it has none); see ``EfficiencySummary``."""

    check_choice("vit", vit, VIT_PRESETS)
    sel = [r for r in rows if r["strategy"] == strategy]
    if not sel:
        return None

    def total(key: str) -> float:
        return float(sum(r[key] for r in sel))

    n = len(sel)
    tokens = np.array([r["tokens"] for r in sel], np.int64)
    t_tokens, t_u16, t_umin = int(tokens.sum()), total("uniform16"), total("uniform_min")
    red = [r["reduction"] for r in sel]
    best, worst = sel[int(np.argmax(red))], sel[int(np.argmin(red))]
    psnr = ssim = None
    measured = lossless = 0
    if all("psnr" in r for r in sel):
        values = np.array([r["psnr"] for r in sel], np.float64)
        measured, lossless = n, int(np.count_nonzero(values >= MAX_PSNR))
        psnr = mean_psnr(values)
        ssim = float(np.mean([r["ssim"] for r in sel]))
    return EfficiencySummary(
        strategy=strategy, vit=vit, images=n, tokens=t_tokens / n, total_tokens=t_tokens,
        p50_tokens=int(percentile(tokens, 50)), p95_tokens=int(percentile(tokens, 95)), max_tokens=int(tokens.max()),
        tokens_per_mp=t_tokens / (total("pixels") / 1e6),
        finest_size=int(min(r["min_size"] for r in sel)), uniform_min_tokens=t_umin / n,
        reduction_vs_uniform_min=1.0 - t_tokens / t_umin, uniform16_tokens=t_u16 / n,
        reduction_vs_uniform16=1.0 - t_tokens / t_u16, speedup_vs_uniform16=_speedup(sel, vit),
        psnr=psnr, psnr_images=measured, lossless_images=lossless, ssim=ssim,
        best_image=best["image"], best_reduction=float(best["reduction"]),
        worst_image=worst["image"], worst_reduction=float(worst["reduction"]))
