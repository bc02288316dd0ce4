"""The quadtree engine: per-level importances, the split rules and the leaves, shared by every
strategy that refines squares (``quadtree``, ``multiscale``, ``quality``, dataset calibration).

A quadtree over a canvas (the image edge-padded to a multiple of ``max_size``) is held as one array
per level (``Prepared.levels``, ``[B, ch / s, cw / s]`` for each size ``s``, coarse to fine). Every
rule below works on whole levels (no per-square Python loop):

* threshold mode: a square of size > ``min_size`` splits when its value exceeds the threshold; it
  exists when every ancestor split, so a square splits at ``t`` iff its *path value*
  ``p(sq) = min(value(sq), p(parent)) > t`` (``path_minima``) and the tokens-vs-threshold curve is
  ``N0 + sum of inc(sq) over p > t``, exact and one-pass (``inc``: the tokens a split adds, below).
* budget mode: best-first refinement stops at the first split whose tokens no longer fit in the
  budget. For per-pixel importances (``std``, ...) the splits are the squares in order of
  largest ``p`` (``budget_split``). For ``distortion`` it is the greedy of rate-distortion coding
  (split the open square whose split removes the most squared error): a square's place in a
  literal heap's pop order is its *record key* (the gain ranks along its ancestry that are worse
  than every rank after them, ``record_keys``), and one lexicographic sort of those keys gives the
  heap's order without running the heap (``heap_order``). Squares whose split gains nothing never
  split.
* ``distortion`` in threshold mode is the Lagrangian of rate-distortion coding: the layout that
  minimises ``error + lambda * tokens``. Its level values are each square's *collapse point*
  (``lagrangian_levels``): the largest ``lambda`` at which splitting the square, with the best
  pruning of its own subtree, still pays. A parent that gains little can be worth splitting for its
  children, so the value comes from one bottom-up pass over the subtree (CART's cost-complexity,
  weakest-link pruning), not from the square's own gain. The optimal subtrees are nested, so the
  path rule above holds: the layout at ``lambda`` splits exactly the squares with ``p > lambda``,
  and the curve, the solver and dataset calibration stay exact.

``lambda``'s unit (``LAMBDA_UNIT``): the squared error a token removes, in 8-bit grey levels^2 of
mean squared error (channels averaged) over 256 pixels (one 16 x 16 token's area). ``lambda = 65``
asks every added token to remove what an MSE of 65 (a PSNR of 30 dB) over 256 pixels is; the same
value means the same on a 64 px box, a 16 px box, a thumbnail and a 12 MP photo.

Query-aware (``query=``, ``query_weight=w > 0``; ``adapatch.query``, docs/query.md): each square's
importance becomes ``(1 - w) * content / max(content) + w * Q`` (``apply_query``), where ``content``
is its importance (for ``distortion``: the root of the squared error its split removes, an
amplitude like ``std``; monotone in the gain the heap ranks) and ``max`` is taken over every
split-able square of the image; ``Q`` is the max of the query map over the square's pixels in the
image. Everything above then runs unchanged on the mixed values (for ``distortion`` they are both
the heap's gains and the path values; squares of at most ``token_size`` px still never split), so
budgets, the exact curve and the threshold solver hold with a query; with a query the threshold
applies to the mixed importance (in [0, 1], for every importance). ``w = 0`` does not read the
query: the query-blind layout, bit for bit.

Sides that are not multiples of ``max_size``: the image is padded at the bottom/right by edge
replication up to the next multiple (``PatchLayout.canvas``). Every original pixel is covered by
exactly one box. Boxes wholly in the padding (top-left corner at or past the bottom or right edge)
hold no pixel of the image and are no tokens (``leaves`` drops them; the padding they would cover is
left uncovered, ``PatchLayout.validate``), so a split adds ``inc(sq) = (its children holding an
image pixel) - 1`` tokens (``split_increments``): 3 inside the image, 1 for a square straddling one
edge with two children past it, 0 for the corner square with one child inside. Tokens are then
``N0 + sum of inc`` over the splits made, never more than the ``min_size`` grid of the image, and
every count above (budgets, the curve, ``lambda``'s cost of a split) uses ``inc``. Squares wholly
in the padding add nothing and never split in budget mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .importance import (
    ENTROPY_BINS,
    IMPORTANCE_MEASURES,
    SALIENCY_MEASURES,
    TOKEN_SIZE,
    distortion_gains,
    importance_levels,
    pad_to_canvas,
)
from .layout import BOX_DTYPE, padded_canvas
from .query import describe_query, mix, node_max, normalize_importance, resolve_query
from .validation import check_choice, check_power_of_two, check_rgb

LAMBDA_UNIT = 255.0 ** 2 / (3 * 256)
"""``lambda`` per unit of squared error per token: gains are sums over pixels and the three channels
of values in [0, 1]; ``lambda`` is 8-bit levels^2, channels averaged, per 256 pixels."""


def threshold_limit(importance: str, mixing: bool = False) -> float:
    """Largest meaningful threshold: ``inf`` for ``distortion``'s ``lambda`` (an error per token),
    1 for the importances normalised to [0, 1] and for every importance mixed with a query."""
    return float("inf") if importance == "distortion" and not mixing else 1.0


@dataclass
class Prepared:
    height: int
    width: int
    canvas: tuple[int, int]
    sizes: list[int]  # descending: max_size ... min_size
    levels: list[np.ndarray]  # importance [B, ch/s, cw/s] per size
    params: dict[str, Any]
    gains: list[np.ndarray] | None = None  # distortion: squared error a split removes, per size

    def increments(self) -> list[np.ndarray]:
        """Tokens each split adds, per split-able size (``split_increments``: geometry only)."""
        return split_increments(self.height, self.width, self.canvas, self.sizes)

    def inside(self) -> list[np.ndarray]:
        """Which squares hold a pixel of the image, per split-able size (``squares_inside``)."""
        return squares_inside(self.height, self.width, self.canvas, self.sizes)


def _children_inside(n: int, s: int, extent: int) -> np.ndarray:
    """Per square of a row (or column) of ``n`` squares of side ``s``: how many of its two child
    rows (columns) start inside an image side of ``extent`` px (0, 1 or 2)."""
    start = np.arange(n, dtype=np.int64) * s
    return (start < extent).astype(np.int64) + (start + s // 2 < extent)


def split_increments(height: int, width: int, canvas: tuple[int, int], sizes: list[int]) -> list[np.ndarray]:
    """``[ch / s, cw / s]`` int64 per split-able size (``sizes[:-1]``): the tokens a split of each
    square adds, ``(its children holding an image pixel) - 1``: 3 inside the image, 1 for a square
    straddling one edge with two children in the padding, 0 for the corner square with one child
    in the image, and 0 for squares wholly in the padding (no token before or after). Children
    wholly in the padding are no tokens (``leaves``), so tokens = the ``max_size`` squares + the sum
    of the increments of the splits made."""
    out = []
    for s in sizes[:-1]:
        ny = _children_inside(canvas[0] // s, s, height)
        nx = _children_inside(canvas[1] // s, s, width)
        out.append(np.maximum(ny[:, None] * nx[None, :] - 1, 0))
    return out


def squares_inside(height: int, width: int, canvas: tuple[int, int], sizes: list[int]) -> list[np.ndarray]:
    """``[ch / s, cw / s]`` bool per split-able size: the squares whose top-left pixel lies in the
    image (the others are wholly in the padding: they are no token and never split in budget mode)."""
    return [(np.arange(canvas[0] // s) * s < height)[:, None] & (np.arange(canvas[1] // s) * s < width)[None, :]
            for s in sizes[:-1]]


def flat_increments(height: int, width: int, canvas: tuple[int, int], sizes: list[int]) -> np.ndarray:
    """``split_increments`` of every split-able square, levels concatenated (coarse to fine,
    row-major): aligned with ``PathImportance.values``."""
    inc = split_increments(height, width, canvas, sizes)
    return np.concatenate([x.ravel() for x in inc]) if inc else np.zeros(0, np.int64)


def check_sizes(min_size: int, max_size: int) -> tuple[int, int]:
    """Validate a patch-size range (powers of two, ``min_size <= max_size``)."""
    min_size = check_power_of_two("min_size", min_size, 1, 1024)
    max_size = check_power_of_two("max_size", max_size, 1, 1024)
    if min_size > max_size:
        raise ValueError(f"min_size must be <= max_size, got min_size={min_size} > max_size={max_size}")
    return min_size, max_size


def split_sizes(min_size: int, max_size: int) -> list[int]:
    """The square sizes of a quadtree from ``max_size`` down to ``min_size`` (powers of two apart)."""
    return [max_size >> i for i in range(int(np.log2(max_size // min_size)) + 1)]


def prepare(images: np.ndarray, saliency: Any, min_size: int, max_size: int, importance: str,
             saliency_method: str = "edges", token_size: int = TOKEN_SIZE) -> Prepared:
    min_size, max_size = check_sizes(min_size, max_size)
    check_choice("importance", importance, IMPORTANCE_MEASURES)
    token_size = check_power_of_two("token_size", token_size, 1, 1024)
    batch = check_rgb(images, batch=True)
    b, h, w = batch.shape[:3]
    canvas = padded_canvas(h, w, max_size)
    sizes = split_sizes(min_size, max_size)
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
    return Prepared(h, w, canvas, sizes, levels, params)


def prepare_distortion_rgb8(image: np.ndarray, min_size: int, max_size: int, token_size: int) -> Prepared:
    """``prepare(..., importance="distortion")`` of one uint8 RGB image (bit-identical results)."""
    from .importance import reconstruction_sse_rgb8
    min_size, max_size = check_sizes(min_size, max_size)
    token_size = check_power_of_two("token_size", token_size, 1, 1024)
    h, w = image.shape[:2]
    canvas = padded_canvas(h, w, max_size)
    sizes = split_sizes(min_size, max_size)
    params: dict[str, Any] = {"min_size": min_size, "max_size": max_size, "importance": "distortion",
                              "token_size": token_size}
    gains = distortion_gains(None, sizes, token_size, sse=reconstruction_sse_rgb8(image, canvas, sizes, token_size))
    return prepared_from_gains(h, w, canvas, sizes, gains[:-1], 1, params)


def prepared_from_gains(height: int, width: int, canvas: tuple[int, int], sizes: list[int],
                        gains: list[np.ndarray], batch: int, params: dict[str, Any]) -> Prepared:
    """The rate-distortion refinement state from the squared error each split removes
    (``gains[i]``: ``[B, gh, gw]`` for ``sizes[i]``, every size but the leaf): squares wholly in the
    padding hold no pixel of the image and get no gain; the level values are the Lagrangian
    collapse points in ``lambda`` units (``lagrangian_levels``, each split costing its real
    increment of tokens, ``split_increments``)."""
    for g, s in zip(gains, sizes):
        g[:, -(-height // s):] = 0.0
        g[:, :, -(-width // s):] = 0.0
    levels = lagrangian_levels(gains, split_increments(height, width, canvas, sizes))
    levels.append(np.zeros((batch, canvas[0] // sizes[-1], canvas[1] // sizes[-1])))
    return Prepared(height, width, canvas, sizes, levels, params, gains)


def _blocks(x: np.ndarray, f: int) -> np.ndarray:
    """``[B, gh, gw, f*f]``: the ``f x f`` block of ``x`` ``[B, gh*f, gw*f]`` under each coarse cell."""
    b, h, w = x.shape
    return x.reshape(b, h // f, f, w // f, f).transpose(0, 1, 3, 2, 4).reshape(b, h // f, w // f, f * f)


def _block_rows(x: np.ndarray | None, shape: tuple[int, int], f: int, sel: np.ndarray) -> np.ndarray:
    """``[n, f*f]``: the ``f x f`` blocks of ``x`` (``shape``; None: 3 everywhere) under the coarse
    cells ``sel`` (``[gh, gw]`` bool), in ``_blocks``' order; only those blocks are copied."""
    if x is None:
        return np.full((int(sel.sum()), f * f), 3.0)
    gh, gw = shape[0] // f, shape[1] // f
    return x.reshape(gh, f, gw, f).transpose(0, 2, 1, 3)[sel].reshape(-1, f * f)


FREE_SPLIT = float(np.finfo(np.float64).max)
"""The collapse point of a split that adds no token and removes error (``lagrangian_levels``): the
largest finite float, so it splits at every threshold a user can give and stays finite in arithmetic
and JSON. No token-count breakpoint is there (``ThresholdCurve`` leaves such squares out)."""


def lagrangian_levels(gains: list[np.ndarray], increments: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Each split-able square's Lagrangian collapse point, in ``lambda`` units (``LAMBDA_UNIT``).

    ``gains[i]`` (``[B, gh, gw]``, coarse to fine, each level twice the previous per side) is the
    squared error a split of the square removes, at a cost of ``increments[i]`` tokens (``[gh, gw]``,
    the same for every image: ``split_increments``; None: 3 everywhere). With its own subtree pruned
    optimally, a square ``v`` splits at ``lambda`` iff ``h(lambda) = g_v - a_v lambda + sum over split
    descendants u of (g_u - a_u lambda) > 0``, where ``u`` splits iff the minimum of the collapse
    points on its path below the square exceeds ``lambda``. ``h`` is continuous (a subtree leaves the
    sum where its own part is zero) and non-increasing, so its root is one closed form once the
    descendants' path values are sorted: ``(g_v + C_J) / (a_v + A_J)`` over the ``J`` descendants
    that still split there (``C``, ``A``: their gains and increments); bottom-up, one vectorised
    pass per level. Only squares whose subtree holds an increment other than 3 (the image's bottom
    and right edges) need the increments; the rest take the all-3 form. A split that adds no token
    (``a_v + A_J = 0``: a corner square straddling the image with one child inside) is worth it at
    every lambda when it removes error: ``FREE_SPLIT``. Exact; tested against every pruning of
    small trees (``tests/test_lagrangian.py``).
    """
    n = len(gains)
    incs: list[np.ndarray | None] = ([None] * n if increments is None
                                     else [np.asarray(a, np.float64) for a in increments])
    # squares whose subtree (the square included) holds an increment other than 3, per level
    dirty: list[np.ndarray | None] = [None] * n
    for i in range(n - 1, -1, -1):
        inc = incs[i]
        if inc is None:
            continue
        d = inc != 3
        finer = dirty[i + 1] if i + 1 < n else None
        if finer is not None:
            d |= _blocks(finer[None], 2)[0].any(axis=-1)
        dirty[i] = d if d.any() else None
    lam: list[np.ndarray] = [np.empty(0)] * n
    below: dict[int, np.ndarray] = {}  # level k -> min of the collapse points on the path from level i+1 to k
    for i in range(n - 1, -1, -1):
        g = np.asarray(gains[i], np.float64)
        inc = incs[i]
        if i == n - 1:
            num, den = g, np.full(g.shape, 3.0) if inc is None else np.broadcast_to(inc, g.shape)
        else:
            f = [1 << (k - i) for k in range(i + 1, n)]
            q = np.concatenate([_blocks(below[k], fk) for k, fk in zip(range(i + 1, n), f)], axis=-1)
            gd = np.concatenate([_blocks(np.asarray(gains[k], np.float64), fk)
                                 for k, fk in zip(range(i + 1, n), f)], axis=-1)
            order = np.argsort(-q, axis=-1, kind="stable")
            q = np.take_along_axis(q, order, axis=-1)
            gd = np.take_along_axis(gd, order, axis=-1)
            cum = np.cumsum(gd, axis=-1)
            # h just above each distinct path value: the squares with larger values still split; a
            # group of equal values is judged at its first member (the values leave together)
            idx = np.arange(q.shape[-1])
            new = np.ones(q.shape, bool)
            new[..., 1:] = q[..., 1:] != q[..., :-1]
            start = np.maximum.accumulate(np.where(new, idx, 0), axis=-1)
            before = np.take_along_axis(cum - gd, start, axis=-1)
            with np.errstate(invalid="ignore"):  # an infinite path value (a free split below) times 3
                h = g[..., None] + before - 3.0 * q * (start + 1)
            big_j = (h <= 0).sum(axis=-1)
            cj = np.where(big_j > 0, np.take_along_axis(cum, np.maximum(big_j - 1, 0)[..., None], axis=-1)[..., 0], 0.0)
            num, den = g + cj, 3.0 * (big_j + 1)
            sel = dirty[i]
            if sel is not None:  # the same with each square's own increments, on the edge squares only
                assert inc is not None  # only levels with increments have dirty squares
                a = np.broadcast_to(inc[sel], g[:, sel].shape)
                ad = np.concatenate([_block_rows(incs[k], gains[k].shape[1:], fk, sel)
                                     for k, fk in zip(range(i + 1, n), f)], axis=-1)
                o = order[:, sel]
                ad = np.take_along_axis(np.broadcast_to(ad, o.shape), o, axis=-1)
                cum_a = np.cumsum(ad, axis=-1)
                st = start[:, sel]
                cost = a[..., None] + np.take_along_axis(cum_a - ad, st, axis=-1)  # tokens of the split set
                qs = q[:, sel]
                # a free split set's h does not fall with lambda (not even at an infinite value)
                with np.errstate(invalid="ignore"):
                    hs = g[:, sel][..., None] + before[:, sel] - np.where(cost > 0, qs * cost, 0.0)
                js = (hs <= 0).sum(axis=-1)
                last = np.maximum(js - 1, 0)[..., None]
                num = num.copy()
                den = np.array(den, np.float64)
                num[:, sel] = g[:, sel] + np.where(js > 0, np.take_along_axis(cum[:, sel], last, axis=-1)[..., 0], 0.0)
                den[:, sel] = a + np.where(js > 0, np.take_along_axis(cum_a, last, axis=-1)[..., 0], 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            li = np.where(den > 0, num / den, np.where(num > 0, np.inf, 0.0))
        np.maximum(li, 0.0, out=li)
        lam[i] = li
        for k in range(i + 1, n):
            fk = 1 << (k - i)
            np.minimum(below[k], li.repeat(fk, axis=1).repeat(fk, axis=2), out=below[k])
        below[i] = li.copy()
    return [np.where(np.isinf(x), FREE_SPLIT, x * LAMBDA_UNIT) for x in lam]


def apply_query(prep: Prepared, qmaps: np.ndarray, weight: float, description: Any) -> Prepared:
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
    return Prepared(prep.height, prep.width, prep.canvas, sizes, [*mixed, leaf], params,
                     mixed if prep.gains is not None else None)


def path_minima(levels: list[np.ndarray]) -> list[np.ndarray]:
    """``p`` for every square of the split-able levels (all but the leaf level)."""
    out: list[np.ndarray] = []
    for lv in levels[:-1]:
        out.append(lv if not out else np.minimum(lv, out[-1].repeat(2, axis=1).repeat(2, axis=2)))
    return out


def leaves(prep: Prepared, split: list[np.ndarray]) -> list[np.ndarray]:
    """Boxes ``[n, 3]`` per image, row-major, from per-level split masks (``[B, gh, gw]`` bool).

    Each leaf writes its size at its top-left cell of the finest grid; reading the non-zero
    cells back in raster order yields the boxes already sorted (no sort needed). Leaves wholly in
    the padding (top-left corner at or past the image's bottom or right edge) hold no pixel of the
    image: they are no token (the cells past the image are cleared before reading).
    """
    m = prep.sizes[-1]
    b = prep.levels[0].shape[0]
    corner: np.ndarray = np.zeros(prep.levels[-1].shape, np.int32)  # [B, ch/m, cw/m]
    exists = np.ones(prep.levels[0].shape, dtype=bool)
    for lvl, s in enumerate(prep.sizes):
        f = s // m
        if lvl < len(split):
            corner[:, ::f, ::f][exists & ~split[lvl]] = s
            exists = (exists & split[lvl]).repeat(2, axis=1).repeat(2, axis=2)
        else:
            corner[:, ::f, ::f][exists] = s
    corner[:, -(-prep.height // m):] = 0
    corner[:, :, -(-prep.width // m):] = 0
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


def _first_fitting(inc_sorted: np.ndarray, cand_sorted: np.ndarray, room: int) -> np.ndarray:
    """Which of the squares, in split order, split: candidates, up to the first whose increment no
    longer fits in ``room`` tokens (increments are >= 0, so the running sum only grows)."""
    return cand_sorted & (np.cumsum(np.where(cand_sorted, inc_sorted, 0), axis=-1) <= room)


def budget_split(prep: Prepared, p: list[np.ndarray], threshold: float | None, budget: int) -> list[np.ndarray]:
    """Split masks of best-first refinement: squares in order of path importance, per image, while
    the tokens their splits add (``split_increments``) fit in the budget.

    The order is ``p`` descending, ties by position in the concatenated levels (coarser level first,
    then row-major); squares wholly in the padding never split. Only the squares that can be
    reached are sorted: at most ``(budget - N0) // 3`` splits adding 3 tokens fit, plus the few
    straddling ones that add fewer, so the top ``K`` of them are found by partition (O(M)) and only
    those are ordered.
    """
    b = p[0].shape[0] if p else prep.levels[0].shape[0]
    n0 = prep.levels[0][0].size
    check_base_budget(prep, budget)
    if not p:
        return []
    room = budget - n0
    flat = np.concatenate([x.reshape(b, -1) for x in p], axis=1)  # [B, M]: coarse to fine, row-major
    inc = np.concatenate([x.ravel() for x in prep.increments()])
    inside = np.concatenate([x.ravel() for x in prep.inside()])
    cand = (flat > (threshold if threshold is not None else -np.inf)) & inside
    keyed = np.where(cand, flat, -np.inf)
    m = flat.shape[1]
    k = min(m, room // 3 + int((inside & (inc < 3)).sum()))  # no more can split
    if k <= 0:
        return per_level(np.zeros_like(cand), p)
    if k >= m:
        top = np.broadcast_to(np.arange(m), (b, m))
    else:
        # the k first squares in order: the k-th largest value by partition, everything above it,
        # and the first of its ties in position order (k per image)
        kth = np.partition(keyed, m - k, axis=1)[:, m - k, None]
        above = keyed > kth
        ties = keyed == kth
        need = k - above.sum(axis=1, keepdims=True)
        sel = above | (ties & (np.cumsum(ties, axis=1) <= need))
        top = np.nonzero(sel)[1].reshape(b, k)  # ascending position per image
    order = np.take_along_axis(top, np.argsort(-np.take_along_axis(keyed, top, axis=1), axis=1, kind="stable"),
                               axis=1)
    take = _first_fitting(inc[order], np.take_along_axis(cand, order, axis=1), room)
    chosen = np.zeros_like(cand)
    np.put_along_axis(chosen, order, take, axis=1)
    return per_level(chosen, p)


def record_keys(gains: list[np.ndarray]) -> np.ndarray:
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


def heap_order(prep: Prepared, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(order, cand)``: every split-able square's index (levels concatenated, coarse to fine,
    row-major) in a literal best-first heap's pop order, ``[B, M]``; and which squares may split
    (path value above ``threshold``; when None, every square whose path holds no split that removes
    nothing: the greedy never makes such a split)."""
    assert prep.gains is not None  # a distortion preparation: the budget solver checks
    b = prep.levels[0].shape[0]
    values = prep.levels if threshold is not None else [*prep.gains, prep.levels[-1]]
    cand = np.concatenate([p.reshape(b, -1) for p in path_minima(values)], axis=1)
    cand = cand > (threshold if threshold is not None else 0.0)
    keys = record_keys(prep.gains)
    m, depth = keys.shape[1:]
    flat_keys = keys.reshape(b * m, depth)
    order = np.lexsort([flat_keys[:, i] for i in range(depth - 1, -1, -1)] + [np.repeat(np.arange(b), m)])
    return order.reshape(b, m) - (np.arange(b) * m)[:, None], cand


def heap_order_split(prep: Prepared, threshold: float | None, budget: int) -> list[np.ndarray]:
    """Split masks of the literal greedy (largest squared-error reduction first) within ``budget``.

    Candidates are squares whose path importance exceeds ``threshold`` (0 when None: a split that
    removes no error is never made); they split in heap order while the tokens their splits add
    (``split_increments``) fit in the budget, up to the first that does not.
    """
    gains = prep.gains
    n0 = prep.levels[0][0].size
    check_base_budget(prep, budget)
    if not gains:
        return []
    order, cand = heap_order(prep, threshold)
    cand &= np.concatenate([x.ravel() for x in prep.inside()])
    inc = np.concatenate([x.ravel() for x in prep.increments()])
    take = _first_fitting(inc[order], np.take_along_axis(cand, order, axis=1), budget - n0)
    chosen = np.zeros_like(cand)
    np.put_along_axis(chosen, order, take, axis=1)
    return per_level(chosen, gains)


def per_level(flat: np.ndarray, like: list[np.ndarray]) -> list[np.ndarray]:
    """Split ``[B, M]`` (levels concatenated, coarse to fine, row-major) back into arrays shaped
    like ``like``."""
    out, start = [], 0
    for x in like:
        n = x[0].size
        out.append(flat[:, start:start + n].reshape(x.shape))
        start += n
    return out


def check_base_budget(prep: Prepared, budget: int) -> None:
    n0 = prep.levels[0][0].size
    if budget < n0:
        raise ValueError(f"budget must be >= {n0} (the number of max_size={prep.sizes[0]} squares "
                         f"covering a {prep.height}x{prep.width} image), got {budget}; "
                         "raise the budget or max_size")


def with_query(prep: Prepared, images: np.ndarray, query: Any, query_weight: Any) -> Prepared:
    """``prep`` mixed with the query (``apply_query``), or unchanged when there is none / weight 0."""
    batch = np.asarray(images)
    b = prep.levels[0].shape[0]
    qmaps, w = resolve_query(query, batch if batch.ndim == 4 else batch[None], query_weight, batch=b)
    if qmaps is None:
        return prep
    return apply_query(prep, qmaps, w, describe_query(query))


