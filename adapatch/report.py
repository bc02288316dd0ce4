"""Efficiency across many images: one row per (image, strategy), and the averages a reader quotes.

``efficiency_rows`` turns layouts (and optional fidelity numbers) into plain dict rows with the
tokens, MACs and FLOPs speed-up of every ViT preset; ``mean_speedups`` averages the speed-ups per
strategy; ``efficiency_summary`` gives the headline numbers of one strategy (means over images,
best and worst image). All results are plain, JSON-serialisable data, so the app's Efficiency
page only formats them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from .efficiency import VIT_PRESETS, efficiency
from .layout import PatchLayout
from .validation import check_choice


def efficiency_rows(items: Iterable[tuple[str, str, PatchLayout, Mapping[str, float] | None]],
                    vits: Iterable[str] = tuple(VIT_PRESETS)) -> list[dict]:
    """One row per ``(image, strategy, layout, fidelity-or-None)``.

    Each row holds ``image``, ``strategy``, ``tokens``, ``uniform16`` (tokens of the 16 px
    grid), ``reduction`` (fraction fewer than that grid), ``min_size``, ``uniform_min`` and
    ``reduction_min`` (the same against the grid of the layout's finest patch), then
    ``"<preset> GMACs"`` and ``"<preset> speedup"`` (MACs ratio against the 16 px grid) for each
    ViT preset, and ``psnr`` / ``ssim`` when fidelity numbers are given.
    """
    vits = [check_choice("vit", v, VIT_PRESETS) for v in vits]
    rows = []
    for image, strategy, layout, fid in items:
        row: dict = {"image": str(image), "strategy": str(strategy)}
        for i, vit in enumerate(vits):
            eff = efficiency(layout, vit)
            if i == 0:
                row.update(tokens=eff["tokens"], uniform16=eff["uniform16_tokens"],
                           reduction=eff["token_reduction_vs_uniform16"], min_size=eff["min_size"],
                           uniform_min=eff["uniform_min_tokens"],
                           reduction_min=eff["token_reduction_vs_uniform_min"])
            row[f"{vit} GMACs"] = eff["flops"] / 1e9
            row[f"{vit} speedup"] = eff["speedup_vs_uniform16"]
        if fid is not None:
            row.update(psnr=float(fid["psnr"]), ssim=float(fid["ssim"]))
        rows.append(row)
    return rows


def mean_speedups(rows: list[dict], vits: Iterable[str] = tuple(VIT_PRESETS),
                  exclude: Iterable[str] = ()) -> dict[str, dict[str, float]]:
    """``{strategy: {preset: mean FLOPs speed-up over the 16 px grid}}``, strategies in row order."""
    skip = set(exclude)
    out: dict[str, dict[str, float]] = {}
    for strategy in dict.fromkeys(r["strategy"] for r in rows):
        if strategy in skip:
            continue
        sel = [r for r in rows if r["strategy"] == strategy]
        out[strategy] = {v: float(np.mean([r[f"{v} speedup"] for r in sel])) for v in vits}
    return out


@dataclass
class EfficiencySummary:
    """Headline numbers of one strategy over ``images`` images (means unless said otherwise)."""

    strategy: str
    vit: str
    images: int
    tokens: float
    finest_size: int
    uniform_min_tokens: float  # the fixed grid with the layout's finest patch
    reduction_vs_uniform_min: float
    uniform16_tokens: float
    reduction_vs_uniform16: float
    speedup_vs_uniform16: float  # FLOPs ratio for ``vit``
    psnr: float | None
    ssim: float | None
    best_image: str  # largest token reduction against the 16 px grid
    best_reduction: float
    worst_image: str
    worst_reduction: float

    def to_dict(self) -> dict:
        return asdict(self)


def efficiency_summary(rows: list[dict], strategy: str = "quadtree", vit: str = "ViT-B") -> EfficiencySummary | None:
    """The summary of ``strategy``'s rows (``None`` when it has none)."""
    check_choice("vit", vit, VIT_PRESETS)
    sel = [r for r in rows if r["strategy"] == strategy]
    if not sel:
        return None

    def mean(key: str) -> float:
        return float(np.mean([r[key] for r in sel]))

    red = [r["reduction"] for r in sel]
    best, worst = sel[int(np.argmax(red))], sel[int(np.argmin(red))]
    has_fid = all("psnr" in r for r in sel)
    return EfficiencySummary(
        strategy=strategy, vit=vit, images=len(sel), tokens=mean("tokens"),
        finest_size=int(min(r["min_size"] for r in sel)), uniform_min_tokens=mean("uniform_min"),
        reduction_vs_uniform_min=mean("reduction_min"), uniform16_tokens=mean("uniform16"),
        reduction_vs_uniform16=mean("reduction"), speedup_vs_uniform16=mean(f"{vit} speedup"),
        psnr=mean("psnr") if has_fid else None, ssim=mean("ssim") if has_fid else None,
        best_image=best["image"], best_reduction=float(best["reduction"]),
        worst_image=worst["image"], worst_reduction=float(worst["reduction"]))
