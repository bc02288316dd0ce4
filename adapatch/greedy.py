"""Saliency-greedy allocation over a fixed set of patch sizes (the seed's second strategy).

The image is cut into cells of the largest patch size. Each cell gets a *desired* size from its
local saliency variation (the standard deviation of the saliency map inside it, relative to the
most varied cell: the top ``1/k`` of that range gets the smallest of ``k`` sizes, the next
``1/k`` the next size, and so on), and cells are served in order of mean saliency, most salient
first. A cell tiled at size ``s`` costs ``(max_size / s) ** 2`` tokens. Everything is one sort
and one cumulative sum; there is no loop over patches.

What the budget leaves uncovered (``uncovered=``):

* ``"fill"`` (default): every cell keeps at least one ``max_size`` token, so the budget must be
  at least the number of cells; cells served before the budget runs out get their desired
  size, the first one that does not fit gets the finest size that still fits, the rest stay at
  ``max_size``. The layout tiles the whole image.
* ``"drop"``: cells are served at their desired size until the budget runs out; the first one
  that does not fit gets the finest size that still fits, the remaining cells get no token and
  are reported in ``PatchLayout.dropped`` (as ``max_size`` boxes).

``variance_cutoffs=(c_1, ..., c_{k-1})`` (descending, in [0, 0.25]) is the seed's form of the size
rule: absolute cut-offs on the *variance* of the saliency inside a cell; a cell with variance at
least ``c_1`` gets the smallest size, at least ``c_2`` the next, ..., below ``c_{k-1}`` the largest.
The seed's own cut-off values are not recorded (docs/seed.md), so there is no default; the relative
rule above is used without them. The serving order (mean saliency) is the same.

``allocation="distortion"`` replaces the saliency rule by rate-distortion allocation: each cell's
options are its tilings at every size (``(max_size / s) ** 2`` tokens, error = the exact squared
error of what a ``token_size`` embedding sees, ``adapatch.importance.reconstruction_sse``; with
``"drop"`` also no token at all, painted with the image's mean colour). Upgrades are taken in
order of error removed per added token along each cell's lower convex hull (the Lagrangian
greedy of multiple-choice allocation), until the next one does not fit. No saliency is used.

Query-aware (``query=``, ``query_weight=w > 0``; ``adapatch.query``, docs/query.md): each cell's
query importance ``Q`` is the max of the query map over its pixels in the image. Saliency rule:
the serving order uses ``(1 - w) * mean / max(mean) + w * Q`` and the desired size
``(1 - w) * std / max(std) + w * Q`` (relative to the largest such value, as the query-blind rule
is relative to the most varied cell). Distortion rule: each option's error becomes
``(1 - w) * error / S + w * Q * (T - tokens)`` (``S`` the largest error removed per token of the
query-blind upgrades, ``T`` the tokens of the finest tiling), so an upgrade's value per token is
``(1 - w) * (its rate) / S + w * Q``: the same mix, in the same greedy. ``w = 0`` does not read the
query (the query-blind layout, bit for bit); ``w = 1`` tiles finely only where the query is.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from .importance import TOKEN_SIZE, block_sums, pad_to_canvas, reconstruction_sse
from .layout import PatchLayout, padded_canvas
from .query import check_query_weight, describe_query, mix, node_max, resolve_query
from .validation import check_choice, check_int, check_power_of_two, check_rgb

ALLOCATIONS = ("saliency", "distortion")


def _check_patch_sizes(patch_sizes: Sequence[int]) -> list[int]:
    try:
        sizes = sorted({check_power_of_two("patch_sizes", s, 1, 1024) for s in patch_sizes})
    except TypeError:
        raise ValueError(f"patch_sizes must be a sequence of powers of two in [1, 1024], got {patch_sizes!r}") from None
    if not sizes:
        raise ValueError("patch_sizes must contain at least one power of two in [1, 1024]")
    return sizes


def _check_cutoffs(cutoffs: Sequence[float] | None, k: int) -> tuple[float, ...] | None:
    """``variance_cutoffs`` as a tuple of ``k - 1`` descending floats in [0, 0.25], or None."""
    if cutoffs is None:
        return None
    try:
        vals = tuple(float(c) for c in cutoffs)
    except (TypeError, ValueError):
        raise ValueError(f"variance_cutoffs must be a sequence of numbers, got {cutoffs!r}") from None
    ok = (len(vals) == k - 1 and all(0.0 <= v <= 0.25 for v in vals)
          and all(a >= b for a, b in itertools.pairwise(vals)))
    if not ok:
        raise ValueError(f"variance_cutoffs must be {k - 1} descending values in [0, 0.25] (one per patch size "
                         f"but the largest; a saliency variance is at most 0.25), got {list(vals)}")
    return vals


def greedy(image: np.ndarray, saliency: np.ndarray | str | None = None, *, patch_sizes: Sequence[int] = (8, 16, 32),
           budget: int | None = None, uncovered: str = "fill", allocation: str = "saliency",
           token_size: int = TOKEN_SIZE, query: Any = None, query_weight: float = 0.0,
           variance_cutoffs: Sequence[float] | None = None) -> PatchLayout:
    """Greedy allocation (see module docstring). ``saliency``: map ``[H, W]`` in [0, 1] or a method
    name (default ``"edges"``; unused with ``allocation="distortion"``). ``budget=None`` means no
    limit. ``query``: a map ``[H, W]`` in [0, 1], an ``adapatch.Query`` or its dict, mixed in with
    ``query_weight`` in [0, 1] (module docstring). ``variance_cutoffs``: the seed's absolute size
    rule (module docstring), one value per size but the largest."""
    sizes = _check_patch_sizes(patch_sizes)
    cutoffs = _check_cutoffs(variance_cutoffs, len(sizes))
    uncovered = check_choice("uncovered", uncovered, ("fill", "drop"))
    allocation = check_choice("allocation", allocation, ALLOCATIONS)
    if budget is not None:
        budget = check_int("budget", budget, 1)
    img = check_rgb(image)
    h, w = img.shape[:2]
    params: dict[str, Any] = {"patch_sizes": sizes, "budget": budget, "uncovered": uncovered}
    if cutoffs is not None:  # checked before any query map is computed
        if allocation != "saliency":
            raise ValueError("variance_cutoffs belong to the saliency rule: use allocation='saliency'")
        if query is not None and check_query_weight(query_weight) > 0:
            raise ValueError("variance_cutoffs are absolute saliency values and take no query: "
                             "drop the query or the cut-offs")
    qmap, qw = resolve_query(query, img, query_weight)
    qcell = None
    if qmap is not None:
        big = sizes[-1]
        qcell = (node_max(qmap[None], padded_canvas(h, w, big), [big])[0][0].ravel(), qw)
    if cutoffs is not None:
        params["variance_cutoffs"] = list(cutoffs)
    if allocation == "distortion":
        token_size = check_power_of_two("token_size", token_size, 1, 1024)
        params.update(allocation=allocation, token_size=token_size)
        if qcell is not None:
            params.update(query=describe_query(query), query_weight=qw)
        return _rd_greedy(img, sizes, budget, uncovered, token_size, params, qcell)
    if saliency is None or isinstance(saliency, str):
        from .saliency import saliency as compute
        params["saliency"] = saliency or "edges"
        sal = compute(img, params["saliency"])
    else:
        from .saliency import check_saliency_map
        sal = check_saliency_map(saliency, (h, w))
        params["saliency"] = "custom"

    big = sizes[-1]
    canvas = padded_canvas(h, w, big)
    gh, gw = canvas[0] // big, canvas[1] // big
    n0 = gh * gw
    cells = pad_to_canvas(sal[None], canvas)[0].reshape(gh, big, gw, big).astype(np.float64)
    mean = cells.mean(axis=(1, 3)).ravel()
    std = cells.std(axis=(1, 3)).ravel()

    k = len(sizes)
    rel = std / std.max() if std.max() > 0 else np.zeros_like(std)
    if qcell is not None:  # the same rule on mixed cell importances (module docstring)
        qc, qw = qcell
        rel = mix(rel, qc, qw)
        rel = rel / rel.max() if rel.max() > 0 else rel
        mean = mix(mean / mean.max() if mean.max() > 0 else np.zeros_like(mean), qc, qw)
        params.update(query=describe_query(query), query_weight=qw)
    if cutoffs is None:
        want = (k - 1) - np.minimum((rel * k).astype(np.int64), k - 1)  # index into ascending sizes
    else:  # the seed's rule: how many cut-offs the cell's saliency variance falls below
        var = cells.var(axis=(1, 3)).ravel()
        want = (var[:, None] < np.asarray(cutoffs)[None, :]).sum(axis=1)
    sizes_arr = np.array(sizes)
    cost_of = (big // sizes_arr) ** 2  # tokens per cell at each size
    order = np.lexsort((np.arange(n0), -mean))  # most salient first, row-major on ties

    size_idx = np.full(n0, -1 if uncovered == "drop" else k - 1)  # -1 = dropped
    if budget is None:
        size_idx = want.copy()
    else:
        if uncovered == "fill":
            if budget < n0:
                raise ValueError(f"budget must be >= {n0} (one {big}px token per cell of a {h}x{w} image) "
                                 f"with uncovered='fill', got {budget}; use uncovered='drop' or a larger budget")
            extra = cost_of[want[order]] - 1
            spent = n0 + np.cumsum(extra)
            left = budget - n0
        else:
            extra = cost_of[want[order]]
            spent = np.cumsum(extra)
            left = budget
        n_ok = int(np.searchsorted(spent, budget, side="right"))
        size_idx[order[:n_ok]] = want[order[:n_ok]]
        if n_ok < n0:  # the first cell that does not fit: finest size that still fits
            remaining = left - (int(spent[n_ok - 1] - (n0 if uncovered == "fill" else 0)) if n_ok else 0)
            extra_cost = cost_of - (1 if uncovered == "fill" else 0)
            fits = np.nonzero(extra_cost <= remaining)[0]
            if len(fits):
                size_idx[order[n_ok]] = max(int(fits.min()), int(want[order[n_ok]]))

    boxes, dropped = _cell_boxes(size_idx, sizes_arr, gw, big)
    return PatchLayout(h, w, canvas, boxes, dropped, strategy="greedy", params=params)


def _lower_hull(tokens: np.ndarray, err: np.ndarray) -> np.ndarray:
    """``[n, k]`` bool: which of each cell's ``k`` options (``tokens`` ascending, shared) lie on the
    lower convex hull of (tokens, error) and strictly lower the error of every cheaper one."""
    n, k = err.shape
    on = np.ones((n, k), bool)
    best = np.minimum.accumulate(err, axis=1)
    on[:, 1:] = err[:, 1:] < best[:, :-1]  # dominated: no less error than a cheaper option
    for j in range(1, k - 1):  # above a chord between a cheaper and a dearer option: off the hull
        for i in range(j):
            for m in range(j + 1, k):
                t = (tokens[j] - tokens[i]) / (tokens[m] - tokens[i])
                chord = err[:, i] + t * (err[:, m] - err[:, i])
                on[:, j] &= ~(on[:, i] & on[:, m] & (err[:, j] >= chord))
    return on


def _upgrades(err: np.ndarray, tok: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(cell, from, to, added tokens, error removed per token)`` of every upgrade segment along
    each cell's lower convex hull, cell-major, in token order within a cell."""
    on = _lower_hull(tok.astype(np.float64), err)
    cells, opts = np.nonzero(on)  # row-major: each cell's hull points in token order
    first = np.r_[True, cells[1:] != cells[:-1]]
    prev = np.where(first, -1, np.r_[0, opts[:-1]])
    seg = ~first  # upgrade segments from the previous hull point
    c, a, b = cells[seg], prev[seg], opts[seg]
    dt = tok[b] - tok[a]
    return c, a, b, dt, (err[c, a] - err[c, b]) / dt


def _rd_greedy(img: np.ndarray, sizes: list[int], budget: int | None, uncovered: str, token_size: int,
               params: dict[str, Any], qcell: tuple[np.ndarray, float] | None = None) -> PatchLayout:
    """Rate-distortion allocation of one size per cell (see the module docstring)."""
    h, w = img.shape[:2]
    big = sizes[-1]
    canvas = padded_canvas(h, w, big)
    padded = pad_to_canvas(img[None], canvas)
    gh, gw = canvas[0] // big, canvas[1] // big
    n0 = gh * gw
    desc = sizes[::-1]
    sse = reconstruction_sse(padded, desc, token_size)
    err = [x[0].reshape(gh, big // s, gw, big // s).sum(axis=(1, 3)).ravel() for x, s in zip(sse, desc)]
    tokens = [(big // s) ** 2 for s in desc]  # ascending with the sizes descending
    if uncovered == "drop":  # no token: the cell painted with the image's mean colour
        s1, s2 = block_sums(padded, big, per_channel=True)
        mean = img.reshape(-1, 3).astype(np.float64).mean(axis=0)
        s1 = s1.reshape(3, gh * gw)
        err = [s2.ravel() - 2 * (mean @ s1) + big * big * float(mean @ mean), *err]
        tokens = [0, *tokens]
    err_a = np.maximum(np.stack(err, axis=1), 0.0)  # [cells, options]
    tok = np.array(tokens, np.int64)
    base = 0 if uncovered == "drop" else n0
    if qcell is not None:  # mixed errors: an upgrade's value per token is the mix of its rate and Q
        qc, qw = qcell
        rate = _upgrades(err_a, tok)[4]
        top = float(rate.max()) if rate.size else 0.0
        content = err_a / top if top > 0 else np.zeros_like(err_a)
        err_a = mix(content, qc[:, None] * (tok.max() - tok)[None, :], qw)
    if budget is None:  # the cheapest option with the least error
        choice = np.argmin(err_a, axis=1)
    else:
        if uncovered == "fill" and budget < n0:
            raise ValueError(f"budget must be >= {n0} (one {big}px token per cell of a {h}x{w} image) "
                             f"with uncovered='fill', got {budget}; use uncovered='drop' or a larger budget")
        c, _, b, dt, slope = _upgrades(err_a, tok)
        order = np.lexsort((np.arange(len(c)), -slope))  # most error removed per token first
        spent = base + np.cumsum(dt[order])
        n_ok = int(np.searchsorted(spent, budget, side="right"))
        choice = np.zeros(n0, np.int64)
        taken = order[:n_ok]
        np.maximum.at(choice, c[taken], b[taken])  # hull points are taken in order per cell
    size_idx = choice - (1 if uncovered == "drop" else 0)  # -1 = dropped; else index into desc
    asc_idx = np.where(size_idx < 0, -1, len(sizes) - 1 - size_idx)
    boxes, dropped = _cell_boxes(asc_idx, np.array(sizes), gw, big)
    return PatchLayout(h, w, canvas, boxes, dropped, strategy="greedy", params=params)


def _cell_boxes(size_idx: np.ndarray, sizes: np.ndarray, gw: int, big: int) -> tuple[np.ndarray, np.ndarray]:
    """Tile each cell uniformly at its size (one vectorised block per size)."""
    cy, cx = np.divmod(np.arange(len(size_idx)), gw)
    parts = []
    for i, s in enumerate(sizes):
        sel = np.nonzero(size_idx == i)[0]
        if len(sel) == 0:
            continue
        n = big // s
        oy, ox = np.divmod(np.arange(n * n), n)
        ys = (cy[sel, None] * big + oy[None] * s).ravel()
        xs = (cx[sel, None] * big + ox[None] * s).ravel()
        parts.append(np.stack([ys, xs, np.full_like(ys, s)], axis=1))
    boxes = np.concatenate(parts) if parts else np.zeros((0, 3), np.int64)
    d = np.nonzero(size_idx < 0)[0]
    dropped = np.stack([cy[d] * big, cx[d] * big, np.full(len(d), big)], axis=1)
    from .layout import sort_boxes
    return sort_boxes(boxes), sort_boxes(dropped)
