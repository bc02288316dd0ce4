"""Quadtree layouts: split a square into four while it is important, or spend a token budget.

The user-facing functions; the level arrays and split rules they share with ``multiscale``,
``quality`` and dataset calibration live in ``adapatch.quadtree_engine`` (see its docstring for the
rules, exact curves and the query mix).

* threshold mode: a square of size > ``min_size`` splits when its importance exceeds the
  threshold. For ``importance="distortion"`` the threshold is ``lambda``, the squared error a split
  must remove per added token (``quadtree_engine.LAMBDA_UNIT``: 8-bit levels^2 of MSE over 256
  pixels), and the layout is the one that minimises ``error + lambda * tokens`` exactly; the other
  importances are in [0, 1].
* budget mode: best-first refinement until the next split's tokens would exceed the budget (a
  split adds 3 tokens, fewer where children would lie wholly in the padding: those are no tokens);
  for ``distortion`` the greedy of rate-distortion coding (largest squared error removed first).

The tokens-vs-threshold curve (``threshold_curve``), the threshold that meets a budget
(``threshold_for_budget``) and a quadtree at any threshold without the pixels (``PathImportance``)
are exact and one-pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .importance import TOKEN_SIZE
from .layout import PatchLayout
from .quadtree_engine import (
    Prepared,
    budget_split,
    flat_increments,
    heap_order_split,
    leaves,
    path_minima,
    prepare,
    prepare_distortion_rgb8,
    threshold_limit,
    with_query,
)
from .validation import check_float, check_int

DEFAULT_THRESHOLD = 0.1
"""Threshold-mode default of the importances in [0, 1]."""
DEFAULT_LAMBDA = 20.0
"""Threshold-mode default of ``distortion`` (``lambda``, error removed per added token)."""
BUDGET_IMPORTANCE = "distortion"
"""Default importance of budget mode: at equal tokens it keeps the most of the image (bench_rd.py)."""
THRESHOLD_IMPORTANCE = "std"
"""Default importance of threshold mode (thresholds tuned on ``std`` keep their meaning)."""


def default_importance(budget: int | None) -> str:
    """The importance used when none is given: ``distortion`` with a budget, ``std`` without."""
    return BUDGET_IMPORTANCE if budget is not None else THRESHOLD_IMPORTANCE


def _check_threshold_budget(threshold: Any, budget: Any) -> tuple[float | None, int | None]:
    if threshold is not None:
        threshold = check_float("threshold", threshold, 0.0)
    if budget is not None:
        budget = check_int("budget", budget, 1)
    return threshold, budget


def check_threshold(threshold: float, importance: str, mixing: bool) -> float:
    """``threshold`` checked against its importance's range (``quadtree_engine.threshold_limit``)."""
    return check_float("threshold", threshold, 0.0, threshold_limit(importance, mixing))


def default_threshold(importance: str, mixing: bool = False) -> float:
    """The threshold used when neither a threshold nor a budget is given."""
    return DEFAULT_LAMBDA if threshold_limit(importance, mixing) == float("inf") else DEFAULT_THRESHOLD


def quadtree(image: np.ndarray, saliency: np.ndarray | str | None = None, *, threshold: float | None = None,
             min_size: int = 8, max_size: int = 32, budget: int | None = None,
             importance: str | None = None, token_size: int = TOKEN_SIZE, query: Any = None,
             query_weight: float = 0.0) -> PatchLayout:
    """Quadtree layout of ``image`` (float RGB ``[H, W, 3]``).

    Args:
        saliency: map ``[H, W]`` in [0, 1], or a saliency method name, used by the
            ``"mean_saliency"``/``"max_saliency"`` importances (default: ``"edges"``).
        threshold: split while importance > threshold: in [0, 1], or for ``distortion`` (without
            a query) ``lambda >= 0``, the error a split must remove per added token, which gives the
            layout of least ``error + lambda * tokens``. Default 0.1 (``distortion``: 20) without a
            budget; with a budget, None means "refine by importance until the budget is used".
        min_size, max_size: powers of two; squares start at ``max_size`` and stop at ``min_size``.
        budget: maximum number of tokens; best-first refinement uses as much of it as it can
            (``num_tokens <= budget``; a budget below the number of ``max_size`` squares raises
            ``ValueError``).
        importance: one of ``IMPORTANCE_MEASURES`` (see ``adapatch.importance``). Default:
            ``"distortion"`` with a budget (it keeps the most of the image at equal tokens),
            ``"std"`` without one.
        token_size: side of the token the model sees, for ``importance="distortion"`` (16):
            squares of at most this size are seen losslessly, so they never split.
        query: where to spend tokens: a map ``[H, W]`` in [0, 1], an ``adapatch.Query`` or its dict
            (``adapatch.query_map``); mixed in with ``query_weight`` in [0, 1] (module docstring;
            0 = query-blind, bit for bit; 1 = the query alone).
    """
    return quadtree_batch(image, saliency, threshold=threshold, min_size=min_size, max_size=max_size,
                          budget=budget, importance=importance, token_size=token_size, query=query,
                          query_weight=query_weight)[0]


def quadtree_batch(images: np.ndarray, saliency: np.ndarray | str | None = None, *,
                   threshold: float | None = None, min_size: int = 8, max_size: int = 32,
                   budget: int | None = None, importance: str | None = None,
                   token_size: int = TOKEN_SIZE, query: Any = None, query_weight: float = 0.0) -> list[PatchLayout]:
    """``quadtree`` for a batch ``[B, H, W, 3]`` of same-size images, vectorised over the batch
    (``query``: one map ``[H, W]`` for all, one per image ``[B, H, W]``, or a ``Query``)."""
    threshold, budget = _check_threshold_budget(threshold, budget)
    importance = importance if importance is not None else default_importance(budget)
    prep = prepare(images, saliency, min_size, max_size, importance, token_size=token_size)
    prep = with_query(prep, images, query, query_weight)
    mixing = "query" in prep.params
    if threshold is None and budget is None:
        threshold = default_threshold(importance, mixing)
    elif threshold is not None:
        threshold = check_threshold(threshold, importance, mixing)
    if budget is None:
        split = [lv > threshold for lv in prep.levels[:-1]]
    elif prep.gains is not None:
        split = heap_order_split(prep, threshold, budget)
    else:
        split = budget_split(prep, path_minima(prep.levels), threshold, budget)
    params = {**prep.params, "threshold": threshold, "budget": budget}
    return [PatchLayout(prep.height, prep.width, prep.canvas, boxes, strategy="quadtree", params=params)
            for boxes in leaves(prep, split)]


@dataclass
class ThresholdCurve:
    """Tokens of the threshold-mode quadtree as a function of the threshold, exactly.

    ``thresholds`` (ascending) are the path importances of the split-able squares whose split adds
    tokens, and ``increments[i]`` how many (``quadtree_engine.split_increments``: 3, or 1 for a
    square straddling the image's edge; None: 3 each); the layout at threshold ``t`` has
    ``base_tokens + sum of increments[thresholds > t]`` tokens. Splits that add no token (the corner
    square straddling the image, squares wholly in the padding) change the layout but not the
    count: they are no breakpoints and are left out.
    """

    thresholds: np.ndarray
    base_tokens: int
    params: dict[str, Any]
    increments: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.thresholds = np.asarray(self.thresholds, np.float64)
        n = len(self.thresholds)
        inc = np.full(n, 3, np.int64) if self.increments is None else np.asarray(self.increments, np.int64)
        if inc.shape != (n,):
            raise ValueError(f"increments must have one entry per threshold ({n}), got shape {inc.shape}")
        self.increments = inc
        # tokens added by the splits at and above each threshold: _above[j] = sum(increments[j:])
        self._above = np.concatenate([np.cumsum(inc[::-1])[::-1], [0]])

    @property
    def max_tokens(self) -> int:
        return self.base_tokens + int(self._above[0])

    def tokens_at(self, threshold: float | np.ndarray) -> int | np.ndarray:
        """Token count of ``quadtree(..., threshold=t)`` (vectorised over ``t``)."""
        t = np.asarray(threshold, dtype=np.float64)
        out = self.base_tokens + self._above[np.searchsorted(self.thresholds, t, side="right")]
        return int(out) if out.ndim == 0 else out

    def threshold_for(self, budget: int) -> float:
        """Smallest threshold whose layout has at most ``budget`` tokens (0.0 if all fit)."""
        budget = check_int("budget", budget, 1)
        if budget < self.base_tokens:
            raise ValueError(f"budget must be >= {self.base_tokens} (the number of max_size squares), got {budget}")
        # the splits above thresholds[j - 1] add _above[j] tokens (non-increasing in j): the first j that fits
        j = int((self._above > budget - self.base_tokens).sum())
        return 0.0 if j == 0 else float(self.thresholds[j - 1])

    def as_xy(self, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """``(threshold, tokens)`` points tracing the step curve for plotting: over [0, 1], or for
        ``distortion``'s lambda over [0, a little past the largest breakpoint]."""
        max_points = check_int("max_points", max_points, 2)
        u = np.unique(self.thresholds)
        unbounded = threshold_limit(self.params.get("importance", ""), "query" in self.params) == float("inf")
        top = max(1.0, float(u[-1]) * 1.05) if unbounded and len(u) else 1.0
        if len(u) + 2 <= max_points:
            xs = np.concatenate([[0.0], u, [top]])
        else:
            xs = np.linspace(0.0, top, max_points)
            xs = np.unique(np.concatenate([xs, np.quantile(u, np.linspace(0, 1, max_points // 2))]))
        return xs, np.asarray(self.tokens_at(xs))


@dataclass
class PathImportance:
    """Everything the threshold-mode quadtree of one image depends on, in a compact form.

    ``values`` holds the path importance ``p`` of every split-able square (levels concatenated,
    coarse to fine, row-major; float64): at threshold ``t`` exactly the squares with ``p > t``
    split. From it come the image's exact tokens-vs-threshold curve and its layout at any
    threshold, without the pixels (what dataset calibration keeps per image). The tokens each
    split adds (``increments``: 3, fewer where children would lie wholly in the padding) follow
    from the geometry alone, so they are not stored.
    """

    height: int
    width: int
    canvas: tuple[int, int]
    sizes: list[int]  # descending: max_size ... min_size
    values: np.ndarray
    params: dict[str, Any]

    @property
    def base_tokens(self) -> int:
        """Tokens with no split: the ``max_size`` squares covering the canvas."""
        return (self.canvas[0] // self.sizes[0]) * (self.canvas[1] // self.sizes[0])

    def increments(self) -> np.ndarray:
        """The tokens each square's split adds, aligned with ``values`` (from the geometry alone:
        ``quadtree_engine.split_increments``)."""
        return flat_increments(self.height, self.width, self.canvas, self.sizes)

    def curve(self) -> ThresholdCurve:
        """The exact tokens-vs-threshold curve."""
        inc = self.increments()
        adds = inc > 0
        vals, inc = self.values[adds], inc[adds]
        order = np.argsort(vals, kind="stable")
        return ThresholdCurve(vals[order], self.base_tokens, self.params, inc[order])

    def layout(self, threshold: float) -> PatchLayout:
        """The layout ``quadtree(image, threshold=threshold, ...)`` gives, from ``values`` alone."""
        threshold = check_threshold(threshold, self.params.get("importance", ""), "query" in self.params)
        shapes = [(1, self.canvas[0] // s, self.canvas[1] // s) for s in self.sizes]
        split, start = [], 0
        for shp in shapes[:-1]:
            n = shp[1] * shp[2]
            split.append(self.values[start:start + n].reshape(shp) > threshold)
            start += n
        prep = Prepared(self.height, self.width, self.canvas, self.sizes,
                         [np.zeros(shp) for shp in shapes], self.params)
        params = {**self.params, "threshold": threshold, "budget": None}
        return PatchLayout(self.height, self.width, self.canvas, leaves(prep, split)[0],
                           strategy="quadtree", params=params)


def path_importance(image: np.ndarray, saliency: np.ndarray | str | None = None, *, min_size: int = 8,
                    max_size: int = 32, importance: str = THRESHOLD_IMPORTANCE,
                    token_size: int = TOKEN_SIZE, query: Any = None, query_weight: float = 0.0) -> PathImportance:
    """The path importances of ``image``'s threshold-mode quadtree (see ``PathImportance``).

    ``image`` is float RGB ``[H, W, 3]`` in [0, 1], or 8-bit RGB (uint8, as ``load_rgb8`` gives), read
    as ``load_image`` reads bytes: the result is bit-identical to that of the float image. With
    ``importance="distortion"`` the 8-bit image is read directly by the compiled pass (no float or
    padded copy: what makes dataset calibration cheap next to decoding). ``query``/``query_weight``:
    as ``quadtree``'s (the values are then the mixed importances' path minima).
    """
    a = np.asarray(image)
    mixing = query is not None and query_weight != 0
    if a.dtype == np.uint8:
        if importance == "distortion" and not mixing and a.ndim == 3 and a.shape[2] == 3 and min(a.shape[:2]) >= 1:
            prep = prepare_distortion_rgb8(a, min_size, max_size, token_size)
            p = path_minima(prep.levels)
            vals = np.concatenate([x[0].ravel() for x in p]) if p else np.zeros(0)
            return PathImportance(prep.height, prep.width, prep.canvas, prep.sizes, vals, prep.params)
        from .image_io import BYTE_TO_FLOAT
        image = BYTE_TO_FLOAT[a]
    prep = prepare(image, saliency, min_size, max_size, importance, token_size=token_size)
    prep = with_query(prep, image, query, query_weight)
    p = path_minima(prep.levels)
    vals = np.concatenate([x[0].ravel() for x in p]) if p else np.zeros(0)
    return PathImportance(prep.height, prep.width, prep.canvas, prep.sizes, vals, prep.params)


def threshold_curve(image: np.ndarray, saliency: np.ndarray | str | None = None, *, min_size: int = 8,
                    max_size: int = 32, importance: str = THRESHOLD_IMPORTANCE,
                    token_size: int = TOKEN_SIZE, query: Any = None, query_weight: float = 0.0) -> ThresholdCurve:
    """Tokens-vs-threshold curve of the threshold-mode quadtree in one pass (no re-run per threshold)."""
    return path_importance(image, saliency, min_size=min_size, max_size=max_size, importance=importance,
                           token_size=token_size, query=query, query_weight=query_weight).curve()


def threshold_for_budget(image: np.ndarray, budget: int, saliency: np.ndarray | str | None = None, *,
                         min_size: int = 8, max_size: int = 32, importance: str = THRESHOLD_IMPORTANCE,
                         token_size: int = TOKEN_SIZE, query: Any = None, query_weight: float = 0.0) -> float:
    """Smallest threshold in [0, 1] whose threshold-mode quadtree has at most ``budget`` tokens."""
    return threshold_curve(image, saliency, min_size=min_size, max_size=max_size,
                           importance=importance, token_size=token_size, query=query,
                           query_weight=query_weight).threshold_for(budget)
