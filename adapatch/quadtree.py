"""Quadtree layouts: split a square into four while it is important, or spend a token budget.

Both modes are computed level by level on whole grids (no per-square Python loop):

* threshold mode: a square of size > ``min_size`` splits when its importance exceeds
  ``threshold``; a square exists when every ancestor split.
* budget mode: best-first refinement (always split the most important open square next, each
  split costs +3 tokens) and stop before a split would exceed the budget. A best-first queue
  pops squares in decreasing order of the *path importance* ``p(sq) = min(imp(sq), p(parent))``
  (a child cannot open before its parent), so the first ``k`` splits are simply the ``k``
  squares with the largest ``p`` (ties: coarser first, then row-major).
* budget mode with ``importance="distortion"``: the greedy of rate-distortion coding, always
  split the open square whose split removes the most squared error (+3 tokens each). Here the
  order *within* a chain of children that gain more than their parent matters (they all share
  the parent's ``p``), so the first ``k`` splits are computed exactly: a square's place in a
  literal heap's pop order is its *record key* (the gain ranks along its ancestry that are worse
  than every rank after them, ``_record_keys``), and one lexicographic sort of those keys gives
  the heap's order without running the heap. Squares whose split gains nothing never split.

The same ``p`` makes the tokens-vs-threshold curve exact and one-pass: in threshold mode a
square splits iff ``p(sq) > threshold``, so ``tokens(t) = N0 + 3 * #{p > t}``.

Query-aware (``query=``, ``query_weight=w > 0``; ``adapatch.query``, docs/query.md): each square's
importance becomes ``(1 - w) * content / max(content) + w * Q``, where ``content`` is its importance
(for ``distortion``: the root of the squared error its split removes, an amplitude like ``std``;
monotone in the gain the heap ranks) and ``max`` is taken over every split-able square of the image; ``Q`` is the max of the query map over the
square's pixels in the image. Everything above then runs unchanged on the mixed values (for
``distortion`` they are both the heap's gains and the path importance; squares of at most
``token_size`` px still never split), so budgets, the exact curve and the threshold solver hold
with a query; with a query the threshold applies to the mixed importance. ``w = 0`` does not read
the query: the query-blind layout, bit for bit.

Sides that are not multiples of ``max_size``: the image is padded at the bottom/right by edge
replication up to the next multiple (``PatchLayout.canvas``). Every original pixel is covered by
exactly one box; replicated pixels have low variance and rarely cause splits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .importance import (ENTROPY_BINS, IMPORTANCE_MEASURES, SALIENCY_MEASURES, TOKEN_SIZE, distortion_gains,
                         gain_importance, importance_levels, pad_to_canvas)
from .layout import BOX_DTYPE, PatchLayout, padded_canvas
from .query import describe_query, mix, node_max, normalize_importance, resolve_query
from .validation import check_choice, check_float, check_int, check_power_of_two, check_rgb

DEFAULT_THRESHOLD = 0.1
BUDGET_IMPORTANCE = "distortion"
"""Default importance of budget mode: at equal tokens it keeps the most of the image (bench_rd.py)."""
THRESHOLD_IMPORTANCE = "std"
"""Default importance of threshold mode (thresholds tuned on ``std`` keep their meaning)."""


def default_importance(budget: int | None) -> str:
    """The importance used when none is given: ``distortion`` with a budget, ``std`` without."""
    return BUDGET_IMPORTANCE if budget is not None else THRESHOLD_IMPORTANCE


@dataclass
class _Prepared:
    height: int
    width: int
    canvas: tuple[int, int]
    sizes: list[int]  # descending: max_size ... min_size
    levels: list[np.ndarray]  # importance [B, ch/s, cw/s] per size
    params: dict[str, Any]
    gains: list[np.ndarray] | None = None  # distortion: squared error a split removes, per size


def check_sizes(min_size: int, max_size: int) -> tuple[int, int]:
    """Validate a patch-size range (powers of two, ``min_size <= max_size``)."""
    min_size = check_power_of_two("min_size", min_size, 1, 1024)
    max_size = check_power_of_two("max_size", max_size, 1, 1024)
    if min_size > max_size:
        raise ValueError(f"min_size must be <= max_size, got min_size={min_size} > max_size={max_size}")
    return min_size, max_size


def _prepare(images: np.ndarray, saliency: Any, min_size: int, max_size: int, importance: str,
             saliency_method: str = "edges", token_size: int = TOKEN_SIZE) -> _Prepared:
    min_size, max_size = check_sizes(min_size, max_size)
    check_choice("importance", importance, IMPORTANCE_MEASURES)
    token_size = check_power_of_two("token_size", token_size, 1, 1024)
    batch = check_rgb(images, batch=True)
    b, h, w = batch.shape[:3]
    canvas = padded_canvas(h, w, max_size)
    sizes = [max_size >> i for i in range(int(np.log2(max_size // min_size)) + 1)]
    params: dict[str, Any] = {"min_size": min_size, "max_size": max_size, "importance": importance}
    sal = None
    if importance in SALIENCY_MEASURES:
        if saliency is None or isinstance(saliency, str):
            from .saliency import saliency as compute
            method = saliency or saliency_method
            sal = np.stack([compute(im, method) for im in batch])
            params["saliency"] = method
        else:
            from .saliency import check_saliency_map
            sal = np.asarray(saliency)
            sal = check_saliency_map(sal, (h, w) if sal.ndim == 2 else (b, h, w)).reshape(b, h, w)
            params["saliency"] = "custom"
        sal = pad_to_canvas(sal, canvas)
    elif importance == "entropy":
        params["bins"] = ENTROPY_BINS
    if importance == "distortion":
        params["token_size"] = token_size
        gains = distortion_gains(pad_to_canvas(batch, canvas), sizes, token_size)
        return prepared_from_gains(h, w, canvas, sizes, gains[:-1], b, params)
    levels = importance_levels(pad_to_canvas(batch, canvas), sizes, importance, sal)
    return _Prepared(h, w, canvas, sizes, levels, params)


def _prepare_distortion_rgb8(image: np.ndarray, min_size: int, max_size: int, token_size: int) -> _Prepared:
    """``_prepare(..., importance="distortion")`` of one uint8 RGB image (bit-identical results)."""
    from .importance import reconstruction_sse_rgb8
    min_size, max_size = check_sizes(min_size, max_size)
    token_size = check_power_of_two("token_size", token_size, 1, 1024)
    h, w = image.shape[:2]
    canvas = padded_canvas(h, w, max_size)
    sizes = [max_size >> i for i in range(int(np.log2(max_size // min_size)) + 1)]
    params: dict[str, Any] = {"min_size": min_size, "max_size": max_size, "importance": "distortion",
                              "token_size": token_size}
    gains = distortion_gains(None, sizes, token_size, sse=reconstruction_sse_rgb8(image, canvas, sizes, token_size))
    return prepared_from_gains(h, w, canvas, sizes, gains[:-1], 1, params)


def prepared_from_gains(height: int, width: int, canvas: tuple[int, int], sizes: list[int],
                        gains: list[np.ndarray], batch: int, params: dict[str, Any]) -> _Prepared:
    """The rate-distortion refinement state from the squared error each split removes
    (``gains[i]``: ``[B, gh, gw]`` for ``sizes[i]``, every size but the leaf): squares wholly in the
    padding hold no pixel of the image and get no gain; importance is the per-value RMS gain."""
    for g, s in zip(gains, sizes):
        g[:, -(-height // s):] = 0.0
        g[:, :, -(-width // s):] = 0.0
    levels = [gain_importance(g, s) for g, s in zip(gains, sizes)]
    levels.append(np.zeros((batch, canvas[0] // sizes[-1], canvas[1] // sizes[-1])))
    return _Prepared(height, width, canvas, sizes, levels, params, gains)


def _apply_query(prep: _Prepared, qmaps: np.ndarray, weight: float, description: Any) -> _Prepared:
    """``prep`` with every split-able square's importance mixed with the query (module docstring):
    ``(1 - w) * content / max(content) + w * max(query over the square)``; the leaf level stays 0."""
    sizes = prep.sizes
    # distortion: the root of the squared error a split removes (an amplitude, like std; the
    # squared gains are so skewed that any query weight would swamp them; monotone, so the
    # query-blind order is kept)
    content = [np.sqrt(g) for g in prep.gains] if prep.gains is not None else prep.levels[:-1]
    norm = normalize_importance(content) if content else []
    q = node_max(qmaps, prep.canvas, sizes)
    mixed = [mix(c, qs, weight) for c, qs in zip(norm, q)]
    if prep.gains is not None:  # seen losslessly: no split of a square of at most token_size px
        token = prep.params.get("token_size", 0)
        for m_, s_ in zip(mixed, sizes):
            if s_ <= token:
                m_[...] = 0.0
    leaf = np.zeros_like(prep.levels[-1])
    params = {**prep.params, "query": description, "query_weight": weight}
    return _Prepared(prep.height, prep.width, prep.canvas, sizes, mixed + [leaf], params,
                     mixed if prep.gains is not None else None)


def _path_importance(levels: list[np.ndarray]) -> list[np.ndarray]:
    """``p`` for every square of the split-able levels (all but the leaf level)."""
    out: list[np.ndarray] = []
    for lv in levels[:-1]:
        out.append(lv if not out else np.minimum(lv, out[-1].repeat(2, axis=1).repeat(2, axis=2)))
    return out


def _leaves(prep: _Prepared, split: list[np.ndarray]) -> list[np.ndarray]:
    """Boxes ``[n, 3]`` per image, row-major, from per-level split masks (``[B, gh, gw]`` bool).

    Each leaf writes its size at its top-left cell of the finest grid; reading the non-zero
    cells back in raster order yields the boxes already sorted (no sort needed).
    """
    m = prep.sizes[-1]
    b = prep.levels[0].shape[0]
    corner = np.zeros(prep.levels[-1].shape, np.int32)  # [B, ch/m, cw/m]
    exists = np.ones(prep.levels[0].shape, dtype=bool)
    for lvl, s in enumerate(prep.sizes):
        f = s // m
        if lvl < len(split):
            corner[:, ::f, ::f][exists & ~split[lvl]] = s
            exists = (exists & split[lvl]).repeat(2, axis=1).repeat(2, axis=2)
        else:
            corner[:, ::f, ::f][exists] = s
    gw = corner.shape[2]
    idx = np.flatnonzero(corner)
    boxes = np.empty((len(idx), 3), BOX_DTYPE)
    boxes[:, 2] = corner.ravel().take(idx)
    cell = idx % (corner.shape[1] * gw) if b > 1 else idx
    yi, xi = np.divmod(cell, gw)
    np.multiply(yi, m, out=boxes[:, 0], casting="unsafe")
    np.multiply(xi, m, out=boxes[:, 1], casting="unsafe")
    if b == 1:
        return [boxes]
    return np.split(boxes, np.searchsorted(idx, np.arange(1, b) * corner[0].size))


def _budget_split(prep: _Prepared, p: list[np.ndarray], threshold: float | None, budget: int) -> list[np.ndarray]:
    """Split masks of best-first refinement: the top-k squares by path importance, per image."""
    b = p[0].shape[0] if p else prep.levels[0].shape[0]
    n0 = prep.levels[0][0].size
    _check_base_budget(prep, budget)
    k = (budget - n0) // 3
    if not p:
        return []
    flat = np.concatenate([x.reshape(b, -1) for x in p], axis=1)  # [B, M]: coarse to fine, row-major
    cand = flat > (threshold if threshold is not None else -np.inf)
    keyed = np.where(cand, flat, -np.inf)
    m = flat.shape[1]
    if k >= m:
        chosen = cand
    elif k <= 0:
        chosen = np.zeros_like(cand)
    else:
        # best-first order is p descending, ties by position in ``flat`` (coarser level first, then
        # row-major): the k-th largest value by partition (O(M)), everything above it, and the
        # first of its ties in position order.
        kth = np.partition(keyed, m - k, axis=1)[:, m - k, None]
        above = keyed > kth
        ties = keyed == kth
        need = k - above.sum(axis=1, keepdims=True)
        chosen = (above | (ties & (np.cumsum(ties, axis=1) <= need))) & cand
    return _per_level(chosen, p)


def _record_keys(gains: list[np.ndarray]) -> np.ndarray:
    """``[B, M, L]`` int64 keys whose ascending lexicographic order is a literal heap's pop order.

    ``rank`` numbers all ``M`` split-able squares of an image by gain, largest first (ties:
    coarser level, then row-major). A best-first heap pops a square after its parent and before
    any square that is worse than every rank on its path; so its key is the sequence of the ranks
    along its ancestry (root first) that are worse than every rank after them, ending with its
    own, padded with -1 (a chain of children that gain more than their parent pops right after it,
    in its own heap order: the key's prefix rule). Keys are built level by level from the parent's.
    """
    b = gains[0].shape[0]
    flat = np.concatenate([g.reshape(b, -1) for g in gains], axis=1)
    m, depth = flat.shape[1], len(gains)
    order = np.argsort(-flat, axis=1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.broadcast_to(np.arange(m), order.shape), axis=1)
    keys, start, parent = [], 0, None
    for g in gains:
        n = g[0].size
        r = rank[:, start:start + n].reshape(g.shape)
        start += n
        if parent is None:
            key = np.full((*g.shape, depth), -1, np.int64)
            key[..., 0] = r
        else:
            up = parent.repeat(2, axis=1).repeat(2, axis=2)
            worse = up > r[..., None]  # a prefix: keys decrease along their length
            key = np.where(worse, up, -1)
            np.put_along_axis(key, worse.sum(axis=-1, keepdims=True), r[..., None], axis=-1)
        keys.append(key.reshape(b, n, depth))
        parent = key
    return np.concatenate(keys, axis=1)


def heap_order(prep: _Prepared, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(order, cand)``: every split-able square's index (levels concatenated, coarse to fine,
    row-major) in a literal best-first heap's pop order, ``[B, M]``; and which squares may split
    (path importance above ``threshold``, 0 when None: no split that removes nothing)."""
    b = prep.levels[0].shape[0]
    cand = np.concatenate([p.reshape(b, -1) for p in _path_importance(prep.levels)], axis=1)
    cand = cand > (threshold if threshold is not None else 0.0)
    keys = _record_keys(prep.gains)
    m, depth = keys.shape[1:]
    flat_keys = keys.reshape(b * m, depth)
    order = np.lexsort([flat_keys[:, i] for i in range(depth - 1, -1, -1)] + [np.repeat(np.arange(b), m)])
    return order.reshape(b, m) - (np.arange(b) * m)[:, None], cand


def _heap_order_split(prep: _Prepared, threshold: float | None, budget: int) -> list[np.ndarray]:
    """Split masks of the literal greedy (largest squared-error reduction first) within ``budget``.

    Candidates are squares whose path importance exceeds ``threshold`` (0 when None: a split that
    removes no error is never made); the first ``k`` of them in heap order split.
    """
    gains = prep.gains
    n0 = prep.levels[0][0].size
    _check_base_budget(prep, budget)
    if not gains:
        return []
    k = (budget - n0) // 3
    order, cand = heap_order(prep, threshold)
    cand_sorted = np.take_along_axis(cand, order, axis=1)
    take = cand_sorted & (np.cumsum(cand_sorted, axis=1) <= k)
    chosen = np.zeros_like(cand)
    np.put_along_axis(chosen, order, take, axis=1)
    return _per_level(chosen, gains)


def _per_level(flat: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """Split ``[B, M]`` (levels concatenated, coarse to fine, row-major) back into arrays shaped
    like ``like``."""
    out, start = [], 0
    for x in like:
        n = x[0].size
        out.append(flat[:, start:start + n].reshape(x.shape))
        start += n
    return out


def _check_base_budget(prep: _Prepared, budget: int) -> None:
    n0 = prep.levels[0][0].size
    if budget < n0:
        raise ValueError(f"budget must be >= {n0} (the number of max_size={prep.sizes[0]} squares "
                         f"covering a {prep.height}x{prep.width} image), got {budget}; "
                         "raise the budget or max_size")


def _with_query(prep: _Prepared, images: np.ndarray, query: Any, query_weight: Any) -> _Prepared:
    """``prep`` mixed with the query (``_apply_query``), or unchanged when there is none / weight 0."""
    batch = np.asarray(images)
    b = prep.levels[0].shape[0]
    qmaps, w = resolve_query(query, batch if batch.ndim == 4 else batch[None], query_weight, batch=b)
    if qmaps is None:
        return prep
    return _apply_query(prep, qmaps, w, describe_query(query))


def _check_threshold_budget(threshold: Any, budget: Any) -> tuple[float | None, int | None]:
    if threshold is not None:
        threshold = check_float("threshold", threshold, 0.0, 1.0)
    if budget is not None:
        budget = check_int("budget", budget, 1)
    return threshold, budget


def quadtree(image: np.ndarray, saliency: np.ndarray | str | None = None, *, threshold: float | None = None,
             min_size: int = 8, max_size: int = 32, budget: int | None = None,
             importance: str | None = None, token_size: int = TOKEN_SIZE, query: Any = None,
             query_weight: float = 0.0) -> PatchLayout:
    """Quadtree layout of ``image`` (float RGB ``[H, W, 3]``).

    Args:
        saliency: map ``[H, W]`` in [0, 1], or a saliency method name, used by the
            ``"mean_saliency"``/``"max_saliency"`` importances (default: ``"edges"``).
        threshold: split while importance > threshold (in [0, 1]). Default 0.1 without a
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
    if threshold is None and budget is None:
        threshold = DEFAULT_THRESHOLD
    prep = _prepare(images, saliency, min_size, max_size, importance, token_size=token_size)
    prep = _with_query(prep, images, query, query_weight)
    if budget is None:
        split = [lv > threshold for lv in prep.levels[:-1]]
    elif prep.gains is not None:
        split = _heap_order_split(prep, threshold, budget)
    else:
        split = _budget_split(prep, _path_importance(prep.levels), threshold, budget)
    params = {**prep.params, "threshold": threshold, "budget": budget}
    return [PatchLayout(prep.height, prep.width, prep.canvas, boxes, strategy="quadtree", params=params)
            for boxes in _leaves(prep, split)]


@dataclass
class ThresholdCurve:
    """Tokens of the threshold-mode quadtree as a function of the threshold, exactly.

    ``thresholds`` (ascending) are the path importances of the split-able squares; the layout at
    threshold ``t`` has ``base_tokens + 3 * #{thresholds > t}`` tokens.
    """

    thresholds: np.ndarray
    base_tokens: int
    params: dict[str, Any]

    @property
    def max_tokens(self) -> int:
        return self.base_tokens + 3 * len(self.thresholds)

    def tokens_at(self, threshold: float | np.ndarray) -> int | np.ndarray:
        """Token count of ``quadtree(..., threshold=t)`` (vectorised over ``t``)."""
        t = np.asarray(threshold, dtype=np.float64)
        n_above = len(self.thresholds) - np.searchsorted(self.thresholds, t, side="right")
        out = self.base_tokens + 3 * n_above
        return int(out) if out.ndim == 0 else out

    def threshold_for(self, budget: int) -> float:
        """Smallest threshold whose layout has at most ``budget`` tokens (0.0 if all fit)."""
        budget = check_int("budget", budget, 1)
        if budget < self.base_tokens:
            raise ValueError(f"budget must be >= {self.base_tokens} (the number of max_size squares), got {budget}")
        k = (budget - self.base_tokens) // 3
        if k >= len(self.thresholds):
            return 0.0
        return float(self.thresholds[::-1][k])

    def as_xy(self, max_points: int = 400) -> tuple[np.ndarray, np.ndarray]:
        """``(threshold, tokens)`` points tracing the step curve over [0, 1] for plotting."""
        max_points = check_int("max_points", max_points, 2)
        u = np.unique(self.thresholds)
        if len(u) + 2 <= max_points:
            xs = np.concatenate([[0.0], u, [1.0]])
        else:
            xs = np.linspace(0.0, 1.0, max_points)
            xs = np.unique(np.concatenate([xs, np.quantile(u, np.linspace(0, 1, max_points // 2))]))
        return xs, self.tokens_at(xs)


@dataclass
class PathImportance:
    """Everything the threshold-mode quadtree of one image depends on, in a compact form.

    ``values`` holds the path importance ``p`` of every split-able square (levels concatenated,
    coarse to fine, row-major; float64): at threshold ``t`` exactly the squares with ``p > t``
    split. From it come the image's exact tokens-vs-threshold curve and its layout at any
    threshold, without the pixels (what dataset calibration keeps per image).
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

    def curve(self) -> ThresholdCurve:
        """The exact tokens-vs-threshold curve."""
        return ThresholdCurve(np.sort(self.values), self.base_tokens, self.params)

    def layout(self, threshold: float) -> PatchLayout:
        """The layout ``quadtree(image, threshold=threshold, ...)`` gives, from ``values`` alone."""
        threshold = check_float("threshold", threshold, 0.0, 1.0)
        shapes = [(1, self.canvas[0] // s, self.canvas[1] // s) for s in self.sizes]
        split, start = [], 0
        for shp in shapes[:-1]:
            n = shp[1] * shp[2]
            split.append(self.values[start:start + n].reshape(shp) > threshold)
            start += n
        prep = _Prepared(self.height, self.width, self.canvas, self.sizes,
                         [np.zeros(shp) for shp in shapes], self.params)
        params = {**self.params, "threshold": threshold, "budget": None}
        return PatchLayout(self.height, self.width, self.canvas, _leaves(prep, split)[0],
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
            prep = _prepare_distortion_rgb8(a, min_size, max_size, token_size)
            p = _path_importance(prep.levels)
            vals = np.concatenate([x[0].ravel() for x in p]) if p else np.zeros(0)
            return PathImportance(prep.height, prep.width, prep.canvas, prep.sizes, vals, prep.params)
        from .image_io import BYTE_TO_FLOAT
        image = BYTE_TO_FLOAT[a]
    prep = _prepare(image, saliency, min_size, max_size, importance, token_size=token_size)
    prep = _with_query(prep, image, query, query_weight)
    p = _path_importance(prep.levels)
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
