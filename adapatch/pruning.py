"""Token pruning by score: keep the top fraction of a layout's tokens, drop the rest.

Scores can come from a saliency map (``token_scores``), or from a model (``adapatch.model``:
learned scorer, CLS attention). The result is a ``PatchLayout`` whose ``dropped`` boxes are the
pruned tokens, so the same renderers and metrics apply.

Query-aware pruning (``prune(..., query=, query_weight=w)``; ``adapatch.query``, docs/query.md):
the ranking uses ``(1 - w) * minmax(scores) + w * Q``, ``Q`` the max of the query map over each
token's box in the image. Scores are min-max normalised per image because they have no common
zero (a learned scorer's logits can be negative). ``w = 0`` does not read the query.
"""

from __future__ import annotations

import numpy as np

from .importance import pad_to_canvas
from .layout import PatchLayout
from .query import describe_query, mix_scores, token_query
from .validation import check_choice, check_float


def token_scores(saliency_map: np.ndarray, layout: PatchLayout, reduce: str = "mean") -> np.ndarray:
    """Float64 ``[N]``: mean (or max) of ``saliency_map`` over each token's box.

    Uses a summed-area table for ``"mean"`` (four lookups a box) and per-size block maxima for
    ``"max"``; no loop over tokens.
    """
    reduce = check_choice("reduce", reduce, ("mean", "max"))
    sal = np.asarray(saliency_map, dtype=np.float64)
    if sal.shape != (layout.height, layout.width):
        raise ValueError(f"saliency_map must have shape {(layout.height, layout.width)}, got {sal.shape}")
    canvas = pad_to_canvas(sal[None], layout.canvas)[0]
    b = layout.boxes.astype(np.int64)
    y, x, s = b[:, 0], b[:, 1], b[:, 2]
    if reduce == "mean":
        sat = np.zeros((canvas.shape[0] + 1, canvas.shape[1] + 1))
        sat[1:, 1:] = canvas.cumsum(0).cumsum(1)
        total = sat[y + s, x + s] - sat[y, x + s] - sat[y + s, x] + sat[y, x]
        return total / (s * s)
    out = np.empty(len(b))
    for size in np.unique(s):  # one vectorised block-max per distinct size
        sel = s == size
        ys, xs = y[sel], x[sel]
        ar = np.arange(size)
        out[sel] = canvas[(ys[:, None] + ar)[:, :, None], (xs[:, None] + ar)[:, None, :]].max(axis=(1, 2))
    return out


def keep_count(num_tokens: int | np.ndarray, keep_ratio: float) -> int | np.ndarray:
    """Tokens kept at ``keep_ratio``: ``ceil(ratio * N)``, at least 1 when N > 0 (the one rule;
    ``N`` may be an array of per-image counts, as the model's batched pruning passes)."""
    keep_ratio = check_float("keep_ratio", keep_ratio, 0.0, 1.0)
    n = np.asarray(num_tokens, dtype=np.int64)
    k = np.minimum(n, np.maximum(1, np.ceil(keep_ratio * n - 1e-9).astype(np.int64)))
    k = np.where(n == 0, 0, k)
    return int(k) if k.ndim == 0 else k


def prune(layout: PatchLayout, scores: np.ndarray, keep_ratio: float, *, query=None,
          query_weight: float = 0.0) -> PatchLayout:
    """Keep the ``keep_count(N, keep_ratio)`` highest-scoring tokens (ties: row-major order).

    ``query``: a map ``[H, W]`` in [0, 1] (``adapatch.query_map``), or a region ``Query`` / dict
    (class and text queries need the image: pass their map), mixed in with ``query_weight`` in
    [0, 1] (module docstring); the params record them as ``prune_query``, ``prune_query_weight``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (layout.num_tokens,):
        raise ValueError(f"scores must have shape ({layout.num_tokens},), got {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    tq, w = token_query(query, layout, query_weight)
    extra = {}
    if tq is not None:
        scores = mix_scores(scores, tq, w)
        extra = {"prune_query": describe_query(query), "prune_query_weight": w}
    k = keep_count(layout.num_tokens, keep_ratio)
    order = np.lexsort((np.arange(len(scores)), -scores))
    keep = np.zeros(layout.num_tokens, bool)
    keep[order[:k]] = True
    return layout.with_tokens(keep, keep_ratio=keep_ratio, pruned_from=layout.strategy, **extra)
