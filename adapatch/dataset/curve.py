"""The dataset's exact tokens-vs-threshold curve, and the threshold that meets a compute target.

Per image, the threshold-mode quadtree at threshold ``t`` has ``base + sum of inc over p > t``
tokens (``adapatch.quadtree.PathImportance``; ``inc``, the tokens a split adds: 3, fewer for a
square straddling the image's edge, ``quadtree_engine.split_increments``). Over a dataset every
statistic is a function of those per-image counts:

* mean tokens per image, and tokens per megapixel (total tokens / total megapixels);
* the FLOPs ratio against the uniform 16 px grid: total ViT MACs of the layouts / total MACs of
  the 16 px grids (a ratio of totals, never a mean of per-image ratios, so a panorama counts as
  its pixels, not as one vote);
* p50 / p95 / max tokens per image (nearest-rank percentiles: a token count some image has).

All of them are non-increasing in ``t`` and change only at the path-importance values of splits
that add tokens, so the smallest threshold meeting a target is one of those values (or 0). ``solve_threshold`` finds it
exactly, with no re-run of the patcher: it brackets the answer between evaluated thresholds and
narrows the bracket by evaluating at quantiles of the values inside it, until the bracket holds
few enough distinct values to evaluate them all. Each round is a few scans of the on-disk store.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..efficiency import VIT_PRESETS, vit_macs
from ..report import percentile
from ..validation import check_choice, check_float
from .store import CurveStore

OBJECTIVES = {
    "mean_tokens": "mean tokens per image",
    "tokens_per_mp": "tokens per megapixel",
    "flops_ratio": "FLOPs ratio vs uniform 16 px",
    "p95_tokens": "p95 tokens per image",
}
"""Targets the solver meets (each at most the target value), and what they mean."""
GRID_POINTS = 96
"""Thresholds evaluated per narrowing round (one ``[images, G]`` count matrix)."""
SAMPLE_CAP = 1 << 22
"""Most distinct values a narrowing round reads; larger brackets are sampled with a stride."""


@dataclass
class DatasetStats:
    """Statistics of the dataset's layouts at one threshold."""

    threshold: float
    images: int
    mean_tokens: float
    p50_tokens: int
    p95_tokens: int
    max_tokens: int
    min_tokens: int
    total_tokens: int
    tokens_per_mp: float
    flops_ratio_vs_uniform16: float
    uniform16_mean_tokens: float
    vit: str

    def to_dict(self) -> dict:
        return asdict(self)


class Objectives:
    """Evaluates every statistic from a ``[images, G]`` token matrix (the store's sizes and a ViT preset)."""

    def __init__(self, store: CurveStore, vit: str = "ViT-B") -> None:
        self.vit = check_choice("vit", vit, VIT_PRESETS)
        self.store = store
        self.total_mp = float(store.megapixels.sum())
        self.uniform16_macs = float(vit_macs(store.uniform16, vit).sum(dtype=np.float64))

    def value(self, name: str, tokens: np.ndarray) -> np.ndarray:
        """Objective ``name`` at each column of ``tokens``."""
        if name == "mean_tokens":
            return tokens.sum(axis=0) / tokens.shape[0]
        if name == "tokens_per_mp":
            return tokens.sum(axis=0) / self.total_mp
        if name == "flops_ratio":
            return vit_macs(tokens, self.vit).sum(axis=0, dtype=np.float64) / self.uniform16_macs
        if name == "p95_tokens":
            return percentile(tokens, 95).astype(np.float64)
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {name!r}")

    def bounds(self, name: str) -> tuple[float, float]:
        """``(lowest, highest)`` value objective ``name`` can take on this data: every image as
        max_size squares only (the top threshold), and every split made (threshold 0)."""
        hi_lo = self.value(name, self.store.tokens_at(np.array([0.0, top_threshold(self.store)])))
        return float(hi_lo[1]), float(hi_lo[0])

    def stats(self, threshold: float) -> DatasetStats:
        """Every statistic at one threshold."""
        tok = self.store.tokens_at(np.array([threshold]))
        col = tok[:, 0]
        return DatasetStats(
            threshold=float(threshold), images=len(col), mean_tokens=float(col.mean()),
            p50_tokens=int(percentile(tok, 50)[0]), p95_tokens=int(percentile(tok, 95)[0]),
            max_tokens=int(col.max()), min_tokens=int(col.min()), total_tokens=int(col.sum()),
            tokens_per_mp=float(col.sum() / self.total_mp),
            flops_ratio_vs_uniform16=float(self.value("flops_ratio", tok)[0]),
            uniform16_mean_tokens=float(self.store.uniform16.mean()), vit=self.vit)


def extremes(store: CurveStore, threshold: float, k: int = 4) -> dict[str, list[dict]]:
    """The images with the fewest and the most tokens at ``threshold`` (ties by source order), at
    most ``k`` each and never the same image twice (a small set is split between the two lists)."""
    tok = store.tokens_at(np.array([threshold]))[:, 0]
    order = np.lexsort((np.arange(len(tok)), tok))
    n_most = min(k, len(tok) // 2)
    n_few = min(k, len(tok) - n_most)

    def row(i: int) -> dict:
        return {"path": store.paths[i], "tokens": int(tok[i]), "uniform16_tokens": int(store.uniform16[i]),
                "height": int(store.heights[i]), "width": int(store.widths[i]), "index": int(i)}

    return {"fewest": [row(i) for i in order[:n_few]], "most": [row(i) for i in order[::-1][:n_most]]}


@dataclass
class DatasetCurve:
    """The dataset's statistics at a grid of thresholds (ascending), for plots and reports."""

    thresholds: list[float]
    mean_tokens: list[float]
    p50_tokens: list[int]
    p95_tokens: list[int]
    max_tokens: list[int]
    tokens_per_mp: list[float]
    flops_ratio: list[float]
    vit: str
    uniform16_mean_tokens: float
    base_mean_tokens: float = field(default=0.0)  # every image at max_size squares only

    def to_dict(self) -> dict:
        return asdict(self)


def top_threshold(store: CurveStore) -> float:
    """A threshold at which no split adds a token (max_size squares only): 1 for importances in
    [0, 1], the largest breakpoint for ``distortion``'s ``lambda`` (unbounded; splits that add no
    token, ``quadtree_engine.FREE_SPLIT``, still happen there)."""
    return max(1.0, store.max_value())


def curve_thresholds(store: CurveStore, points: int = 160) -> np.ndarray:
    """Thresholds at which to draw the curve: 0, evenly spaced ones, and quantiles of the values
    (so the steep part, where most values lie, gets points)."""
    top = top_threshold(store)
    vmax = min(store.max_value(), top)
    stride = max(1, math.ceil(store.n_values / SAMPLE_CAP))
    sample = store.values_between(0.0, top, stride)
    qs = np.quantile(sample, np.linspace(0, 1, points)) if len(sample) else np.zeros(0)
    ts = np.unique(np.concatenate([[0.0], np.linspace(0.0, vmax, points // 2), qs, [vmax]]))
    return ts[(ts >= 0) & (ts <= top)]


def dataset_curve(store: CurveStore, vit: str = "ViT-B", points: int = 160) -> DatasetCurve:
    """``DatasetCurve`` at ``curve_thresholds`` (one scan of the store per evaluation)."""
    obj = Objectives(store, vit)
    ts = curve_thresholds(store, points)
    tok = store.tokens_at(ts)
    return DatasetCurve(
        thresholds=ts.tolist(), mean_tokens=obj.value("mean_tokens", tok).tolist(),
        p50_tokens=percentile(tok, 50).astype(int).tolist(), p95_tokens=percentile(tok, 95).astype(int).tolist(),
        max_tokens=tok.max(axis=0).astype(int).tolist(), tokens_per_mp=obj.value("tokens_per_mp", tok).tolist(),
        flops_ratio=obj.value("flops_ratio", tok).tolist(), vit=obj.vit,
        uniform16_mean_tokens=float(store.uniform16.mean()), base_mean_tokens=float(store.base_tokens.mean()))


class InfeasibleTarget(ValueError):
    """No threshold meets the target (it is below what max_size squares alone cost)."""


def solve_threshold(store: CurveStore, objective: str, target: float, vit: str = "ViT-B") -> float:
    """The smallest threshold whose layouts meet ``objective <= target``, exactly.

    Returns 0.0 when every split fits; raises ``InfeasibleTarget`` when even no split (the top
    threshold, ``top_threshold``) exceeds the target.
    """
    check_choice("objective", objective, OBJECTIVES)
    target = check_float(objective, target, 0.0)
    obj = Objectives(store, vit)

    def f(ts: np.ndarray) -> np.ndarray:
        return obj.value(objective, store.tokens_at(ts))

    top = top_threshold(store)
    f0, f1 = f(np.array([0.0, top]))
    if f0 <= target:
        return 0.0
    if f1 > target:
        raise InfeasibleTarget(
            f"{OBJECTIVES[objective]} cannot go below {f1:.4g} (every image as max_size squares only); "
            f"target {target:g} is out of reach: raise it or max_size")
    lo, hi = 0.0, top  # f(lo) > target >= f(hi): the answer lies in (lo, hi]
    s_lo, s_hi = int(store.split_counts(np.array([0.0])).sum()), 0  # splits at lo and at hi
    while True:
        # each round strictly shrinks the set of distinct values in (lo, hi): the evaluated ones leave it
        stride = max(1, math.ceil((s_lo - s_hi) / SAMPLE_CAP))
        cand = store.values_between(lo, hi, stride)
        if len(cand) == 0:
            return hi
        exhaustive = stride == 1 and len(cand) <= GRID_POINTS
        if not exhaustive:
            cand = np.unique(cand[np.linspace(0, len(cand) - 1, GRID_POINTS).round().astype(int)])
        split_counts, added = store.counts_at(cand)
        ok = obj.value(objective, store.base_tokens[:, None] + added) <= target
        if exhaustive:
            return float(cand[np.argmax(ok)]) if ok.any() else hi
        splits = split_counts.sum(axis=0)
        if ok.any():
            j = int(np.argmax(ok))
            hi, s_hi = float(cand[j]), int(splits[j])
            if j > 0:
                lo, s_lo = float(cand[j - 1]), int(splits[j - 1])
        else:
            lo, s_lo = float(cand[-1]), int(splits[-1])
