"""Rate-distortion layouts over patch *scales*: the best of quadtrees on several base sizes and the
equal-token uniform grid, by the squared error of what the model sees.

Why: a quadtree of power-of-two sizes (16, 32, 64) mixes coarse and fine boxes, and on a budget
between two of its sizes that mix can lose to a uniform grid of an in-between size (say 23 px):
on a stationary texture the error of a uniform grid falls convexly with its token count, and a
mix of 16 and 32 px boxes only reaches the chord. So ``multiscale`` also tries quadtrees whose
boxes are ``u, 2u, ..., u * 2**levels`` for base sizes ``u`` between the token size and the
equal-token uniform grid's size, each refined by the rate-distortion greedy of
``quadtree(..., importance="distortion")``, and the uniform grid itself; the layout with the least
squared error over the image's pixels wins. At a budget it is therefore never worse than the best
uniform grid that fits, and ``params["base_size"]`` says which scale won (``levels = 0`` when the
uniform grid did).

Errors for any box size (``token_sse``): a box of ``s`` px becomes a token ``Y`` by area
resizing to ``t`` px (matrix ``D``, ``t x s``, per axis) and is painted back by area resizing
(``U = (s / t) D^T``), so its squared error is ``S2 - 2 c^2 |Y|^2 + c^4 <Y, G Y G>`` with
``c = s / t`` and ``G = D D^T``: one area resize of the image gives every token. Candidates of
non-power-of-two boxes are built and scanned with OpenCV's area resize (float32 weights: within
``SCAN_TOLERANCE`` of the padded canvas's sum of squares); when several are that close to the best,
their errors are recomputed exactly (float64 area weights, ``area_tokens``) before the winner is
picked. Power-of-two boxes use the compiled exact statistics throughout.

Query-aware (``query=``, ``query_weight=w > 0``; docs/query.md): every quadtree candidate is refined
by the mixed importance the quadtree uses (``(1 - w) * sqrt(gain) / max + w * max(query over the
square)``, in the same heap order), and candidates are compared by the query-weighted error: each
box's squared error times ``(1 - w) + w * mean(query over the box's pixels)``. The uniform grid
stays a candidate (query-blind, but judged by the same weighted error). ``w = 0`` does not read the
query: the query-blind layout, bit for bit.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .importance import TOKEN_SIZE, reconstruction_sse
from .layout import PatchLayout, padded_canvas, uniform
from .quadtree_engine import apply_query, heap_order_split, leaves, prepared_from_gains
from .query import describe_query, resolve_query
from .resize import area_weights
from .validation import check_int, check_power_of_two, check_rgb

DEFAULT_LEVELS = 2
DEFAULT_SCALES = 6
"""The thorough search: six base sizes, then the two midpoints around the best."""
FAST_SCALES = 1
"""The budget-mode default (``strategies.BUDGET_DEFAULT``): one base size, the token size, so the
candidates are the ``distortion`` quadtree (``token_size`` to 4x it) and the equal-token uniform grid;
the better one by exact error wins. Never worse than the uniform grid, about 5x the quadtree's time
(the thorough search: 30-60x), and 0.18 dB below the thorough search on average over 17 images x 4
budgets (``benchmarks/bench_lambda.py``)."""
SCAN_TOLERANCE = 2e-6
"""Bound, as a share of the padded canvas's sum of squares, on how far a scanned candidate's error (OpenCV's
float32 area resize) can be from the exact one: at most 2.4e-7 measured over ten images, eight
bases and two depths (``tests/test_distortion.py`` checks a quarter of this bound). When more than
one candidate is within twice this of the best, those are recomputed exactly before the winner is
picked; a lone candidate wins without it."""
TIE_TOLERANCE = 1e-12
"""Exact (float64) errors this close (a share of the image's sum of squares) are a tie: the fewer
tokens win."""


def _pool2(x: np.ndarray) -> np.ndarray:
    return _box_sums(x, 2)


def _box_sums(x: np.ndarray, f: int) -> np.ndarray:
    """Sums over ``f x f`` blocks of a 2-D array (rows first: two contiguous reductions)."""
    gh, gw = x.shape[0] // f, x.shape[1] // f
    return x.reshape(gh, f, x.shape[1]).sum(axis=1).reshape(gh, gw, f).sum(axis=2)


def token_sse(canvas: np.ndarray, base: int, levels: int, token_size: int = TOKEN_SIZE,
              squares: np.ndarray | None = None, exact: bool = True,
              square_sums: np.ndarray | None = None) -> list[np.ndarray]:
    """Squared error ``[ch / s, cw / s]`` (float64) of every box of ``s = base * 2**k`` px
    (``k = 0..levels``, finest first) of ``canvas`` ``[ch, cw, 3]`` seen as one ``token_size`` token.

    ``ch`` and ``cw`` are multiples of ``base * 2**levels`` and ``base >= token_size``. Power-of-two
    multiples of the token size go through the compiled block statistics
    (``importance.reconstruction_sse``). Otherwise the tokens of the base grid come from one exact
    float64 area resize of the canvas (``area_tokens``; the quadratic forms in float64) and those
    of coarser boxes are 2x2 means of them (area resizing composes over aligned integer steps).
    ``squares``: the canvas's per-pixel sum of squares over channels, if the caller has it;
    ``square_sums``: its sums over the ``base`` px boxes, if the caller has those (``SquareSums``).
    ``exact=False`` (multiscale's scan of candidates): the tokens from OpenCV's area resize instead,
    several times faster; its float32 weights put each box's error off by up to about ``1e-6`` of
    the box's sum of squares (the formula cancels), which ``SCAN_TOLERANCE`` covers.
    """
    ch, cw = canvas.shape[:2]
    t = token_size
    ratio = base // t
    if base % t == 0 and ratio & (ratio - 1) == 0:
        sizes = [base << k for k in range(levels, -1, -1)]
        return [e[0] for e in reconstruction_sse(np.ascontiguousarray(canvas, np.float32)[None], sizes, t)[::-1]]
    from .kernels import token_energy  # numba: imported on first use

    if exact:
        x64 = np.ascontiguousarray(canvas, np.float64)
        tokens = area_tokens(x64, base, t)
    else:
        x64 = None
        tokens = cv2.resize(np.ascontiguousarray(canvas, np.float32), (cw // base * t, ch // base * t),
                            interpolation=cv2.INTER_AREA)
    if square_sums is not None:
        sq = square_sums
    else:
        if squares is None:
            squares = np.einsum("ijc,ijc->ij", canvas, canvas, dtype=np.float64)
        sq = _box_sums(squares, base)
    out = []
    for k in range(levels + 1):
        s = base << k
        gh, gw = ch // s, cw // s
        c = s / t
        d = area_weights(s, t)
        g = d @ d.T  # tridiagonal: neighbouring token pixels share at most one image pixel
        y2, ygy = np.empty((gh, gw)), np.empty((gh, gw))
        token_energy(tokens, t, np.diag(g).copy(), np.diag(g, 1).copy(), y2, ygy)
        out.append(np.maximum(sq - 2 * c * c * y2 + c ** 4 * ygy, 0.0))
        if k < levels:
            sq = _box_sums(sq, 2)
            # each box is t x t in ``tokens``: 2x2 pixel means give its parent's token
            tokens = 0.25 * ((tokens[0::2, 0::2] + tokens[1::2, 0::2]) + (tokens[0::2, 1::2] + tokens[1::2, 1::2]))
    return out


def area_tokens(x: np.ndarray, base: int, t: int) -> np.ndarray:
    """Every ``base`` px box of ``x`` ``[gh*base, gw*base, 3]`` (float64) area-resized to ``t x t``:
    ``[gh*t, gw*t, 3]`` float64, by the exact area weights (``resize.area_weights``) applied to rows
    and then columns with matrix products. OpenCV's area resize keeps its weights in float32, and
    the error formula ``S2 - 2 c^2 |Y|^2 + ...`` cancels: a 1e-7 error in a token becomes ~1e-4 of
    the squared error, enough to mis-rank two candidates."""
    gh, gw = x.shape[0] // base, x.shape[1] // base
    d = area_weights(base, t)  # [t, base]
    rows = np.matmul(d, x.reshape(gh, base, gw * base * 3))  # [gh, t, gw*base*3]
    # columns: one large matrix product over [gh*t*gw*3, base] (batched 3-column products are slow)
    cols = rows.reshape(gh * t, gw, base, 3).transpose(0, 1, 3, 2).reshape(-1, base) @ d.T  # [gh*t*gw*3, t]
    return np.ascontiguousarray(cols.reshape(gh * t, gw, 3, t).transpose(0, 1, 3, 2)).reshape(gh * t, gw * t, 3)


def _tile_errors(img: np.ndarray, canvas: np.ndarray, boxes: np.ndarray, token_size: int,
                 where: str) -> np.ndarray:
    """Per box, the squared error (float64, from the pixels) of its token painted back, summed over
    its pixels ``"inside"`` or ``"outside"`` the image (``canvas``: the edge-padded image). Boxes of
    one size are one batched matrix product; only boxes with such pixels are computed."""
    h, w = img.shape[:2]
    out = np.zeros(len(boxes))
    past = (boxes[:, 0] + boxes[:, 2] > h) | (boxes[:, 1] + boxes[:, 2] > w)
    sel = past if where == "outside" else (boxes[:, 0] < h) & (boxes[:, 1] < w)
    for s in np.unique(boxes[sel, 2]):
        idx = np.flatnonzero(sel & (boxes[:, 2] == s))
        b = boxes[idx].astype(np.int64)
        s = int(s)
        ar = np.arange(s)
        yy = b[:, 0, None] + ar  # [n, s]
        xx = b[:, 1, None] + ar
        tiles = canvas[yy[:, :, None], xx[:, None, :]].transpose(0, 3, 1, 2).astype(np.float64)  # [n, 3, s, s]
        down, up = area_weights(s, token_size), area_weights(token_size, s)
        rec = up @ (down @ tiles @ down.T) @ up.T
        err = ((tiles - rec) ** 2).sum(axis=1)  # [n, s, s]
        outside = (yy[:, :, None] >= h) | (xx[:, None, :] >= w)
        out[idx] = (err * (outside if where == "outside" else ~outside)).sum(axis=(1, 2))
    return out


def padding_errors(img: np.ndarray, canvas: np.ndarray, boxes: np.ndarray, token_size: int) -> np.ndarray:
    """Per box: the squared error over its padding pixels (0 for boxes inside the image)."""
    return _tile_errors(img, canvas, boxes, token_size, "outside")


def _canvas_sse(canvas_h: int, canvas_w: int, h: int, w: int, boxes: np.ndarray,
                sse: dict[int, np.ndarray], weights: np.ndarray | None = None) -> tuple[float, float]:
    """``(total, straddling)``: the canvas error of a layout, and the part in boxes that reach past
    the image (an upper bound of what the padding contributes); ``weights``: per box (a query)."""
    total = straddle = 0.0
    for s in np.unique(boxes[:, 2]):
        sel = boxes[:, 2] == s
        b = boxes[sel]
        e = sse[int(s)][b[:, 0] // s, b[:, 1] // s]
        if weights is not None:
            e = e * weights[sel]
        total += float(e.sum())
        straddle += float(e[(b[:, 0] + s > h) | (b[:, 1] + s > w)].sum())
    return total, straddle


def box_sums(x: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Float64 ``[N]``: the sum of ``x`` ``[H, W]`` over each box's pixels inside the image (boxes
    may reach past it), from one integral image; no loop over boxes."""
    h, w = x.shape
    ii = cv2.integral(np.ascontiguousarray(x, np.float64))  # [h + 1, w + 1]
    b = np.asarray(boxes, np.int64).reshape(-1, 3)
    y0, x0 = np.minimum(b[:, 0], h), np.minimum(b[:, 1], w)
    y1, x1 = np.minimum(b[:, 0] + b[:, 2], h), np.minimum(b[:, 1] + b[:, 2], w)
    return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]


def _clipped_area(h: int, w: int, boxes: np.ndarray) -> np.ndarray:
    """Per box, its number of pixels inside the image."""
    b = np.asarray(boxes, np.int64).reshape(-1, 3)
    return ((np.minimum(b[:, 0] + b[:, 2], h) - np.minimum(b[:, 0], h))
            * (np.minimum(b[:, 1] + b[:, 2], w) - np.minimum(b[:, 1], w))).astype(np.float64)


def box_means(x: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Float64 ``[N]``: the mean of ``x`` ``[H, W]`` over each box's pixels inside the image (0 for a
    box wholly in the padding)."""
    h, w = x.shape
    area = _clipped_area(h, w, boxes)
    return np.where(area > 0, box_sums(x, boxes) / np.maximum(area, 1.0), 0.0)


def query_box_weights(qmap: np.ndarray | None, weight: float, boxes: np.ndarray) -> np.ndarray | None:
    """Per box, the weight of its squared error under a query: ``(1 - w) + w * mean(query over the
    box)`` (None without a query)."""
    if qmap is None:
        return None
    return (1.0 - weight) + weight * box_means(qmap, boxes)


def pad_edges(x: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """Edge-replicate ``x`` at the bottom/right to ``canvas`` (OpenCV: much faster than ``np.pad``)."""
    ph, pw = canvas[0] - x.shape[0], canvas[1] - x.shape[1]
    return x if ph == pw == 0 else cv2.copyMakeBorder(x, 0, ph, 0, pw, cv2.BORDER_REPLICATE)


class SquareSums:
    """Sums of squares (all channels, float64) over any grid of boxes of an edge-padded image, from
    one integral image (``kernels.square_integral``): one pass for every candidate's box sums,
    instead of a float64 copy of the image and a pass per box size."""

    def __init__(self, padded: np.ndarray) -> None:
        from .kernels import square_integral  # numba: imported on first use

        self.integral = np.empty((padded.shape[0] + 1, padded.shape[1] + 1))
        square_integral(padded, self.integral)

    def total(self, h: int, w: int) -> float:
        """The sum over the top-left ``h x w`` pixels."""
        return float(self.integral[h, w])

    def grid(self, ch: int, cw: int, size: int) -> np.ndarray:
        """``[ch / size, cw / size]``: the sum over each ``size`` px box of the top-left ``ch x cw``."""
        c = self.integral[0:ch + 1:size, 0:cw + 1:size]
        return (c[1:, 1:] - c[:-1, 1:]) - (c[1:, :-1] - c[:-1, :-1])


def _smallest_fitting_size(h: int, w: int, budget: int) -> int:
    """The smallest patch size whose uniform grid has at most ``budget`` tokens."""
    sizes = np.arange(1, max(h, w) + 1, dtype=np.int64)
    counts = -(-h // sizes) * -(-w // sizes)
    return int(sizes[np.argmax(counts <= budget)])


@dataclass
class _Candidate:
    layout: PatchLayout
    canvas_error: float  # squared error over the canvas (padding included)
    straddling: float  # canvas error in boxes that reach past the image: >= the padding's share
    padded: np.ndarray
    exact: float | None = None  # squared error over the image's pixels, once computed
    weights: np.ndarray | None = None  # per box, the query's weight of its error (None: no query)
    rescore: Any = None  # () -> (canvas error, straddling) recomputed exactly, for a scanned candidate
    scale: float = 0.0  # the sum of squares the scan's tolerance is relative to (the padded canvas's)

    padding: float | None = None  # the (weighted) error over padding pixels, once computed

    def scanned_error(self, img: np.ndarray, token_size: int) -> float:
        """The squared error over the image's pixels from the scanned box errors (exact for
        power-of-two sizes; within ``SCAN_TOLERANCE`` of the image's sum of squares otherwise)."""
        if self.padding is None:
            self.padding = 0.0
            if self.straddling > 0:
                pad = padding_errors(img, self.padded, self.layout.boxes, token_size)
                self.padding = float((pad if self.weights is None else pad * self.weights).sum())
        return self.canvas_error - self.padding

    def error(self, img: np.ndarray, token_size: int) -> float:
        """The exact (query-weighted) squared error over the image's pixels."""
        if self.exact is None:
            scanned = self.scanned_error(img, token_size)
            if self.rescore is None:
                self.exact = scanned
            else:
                self.canvas_error, self.straddling = self.rescore()
                self.rescore = None
                assert self.padding is not None  # scanned_error has just computed it
                self.exact = self.canvas_error - self.padding
        return self.exact


@dataclass
class _QueryMix:
    """A query as multiscale uses it: the map ``[H, W]``, its weight and what params record."""
    qmap: np.ndarray
    weight: float
    description: Any


class MultiscaleSource:
    """What ``multiscale`` reads of one image that no budget changes, kept for the next call: the
    image edge-padded once (views of it are every candidate's canvas: edge replication does not
    depend on how far it goes), the sums of squares of that padded image, and each candidate scale's
    box errors once scanned. One source serves every budget of its image (``multiscale(image, N,
    source=src)``): a budget slider then only refines and scores, the scan is not repeated."""

    def __init__(self, image: np.ndarray, reach: int = 0) -> None:
        self.img = check_rgb(image)
        self.reach = -1
        self._errors: dict[tuple[int, int, int], list[np.ndarray]] = {}
        self._lock = threading.RLock()  # one source may serve several threads (the app's sessions)
        self.ensure(reach)

    def ensure(self, reach: int) -> None:
        """Pad at least ``reach`` px past the bottom/right edges (the box errors already scanned stay valid)."""
        with self._lock:
            self._ensure(reach)

    def _ensure(self, reach: int) -> None:
        if reach > self.reach:
            h, w = self.img.shape[:2]
            reach = max(reach, 2 * self.reach)  # grow geometrically: few re-pads over a budget sweep
            self.padded = pad_edges(self.img, (h + reach, w + reach))
            self.squares = SquareSums(self.padded)
            self.reach = reach

    def canvas(self, canvas: tuple[int, int]) -> np.ndarray:
        return self.padded[:canvas[0], :canvas[1]]

    def box_errors(self, base: int, levels: int, token_size: int) -> list[np.ndarray]:
        """``token_sse`` (scanned) of the canvas of boxes ``base * 2**levels``: fine first, cached."""
        key = (base, levels, token_size)
        with self._lock:
            if key not in self._errors:
                canvas = padded_canvas(self.img.shape[0], self.img.shape[1], base << levels)
                self._errors[key] = token_sse(self.canvas(canvas), base, levels, token_size, exact=False,
                                              square_sums=self.squares.grid(*canvas, base))
            return self._errors[key]

    def matches(self, img: np.ndarray) -> bool:
        """Whether ``img`` is (by shape and a sample of its pixels) the image this source was made of."""
        a, b = self.img, img
        return a.shape == b.shape and np.array_equal(a[::97, ::89], b[::97, ::89]) and np.array_equal(a[-1], b[-1])


def _candidate(src: MultiscaleSource, budget: int, base: int, levels: int, token_size: int,
               qmix: _QueryMix | None = None) -> _Candidate:
    """One candidate layout (``levels = 0``: the uniform grid) with its (query-weighted) errors."""
    img = src.img
    h, w = img.shape[:2]
    if base < token_size:  # a uniform grid finer than the token: upsampled tokens, errors from the pixels
        lay = uniform(h, w, base)
        padded = src.canvas(lay.canvas)
        per_box = _tile_errors(img, padded, lay.boxes, token_size, "inside")  # float64, exact
        wts = None if qmix is None else query_box_weights(qmix.qmap, qmix.weight, lay.boxes)
        err = float(per_box.sum() if wts is None else (per_box * wts).sum())
        return _Candidate(lay, err, 0.0, padded, err, wts, scale=src.squares.total(h, w))
    canvas = padded_canvas(h, w, base << levels)
    padded = src.canvas(canvas)
    sq = src.squares.grid(*canvas, base)
    sse = {base << k: e for k, e in enumerate(src.box_errors(base, levels, token_size))}
    sizes = [base << k for k in range(levels, -1, -1)]
    if levels == 0:
        boxes = uniform(h, w, base).boxes
    else:
        gains = [np.maximum(sse[s] - _pool2(sse[s // 2]), 0.0)[None] for s in sizes[:-1]]
        prep = prepared_from_gains(h, w, canvas, sizes, gains, 1, {})
        if qmix is not None:
            prep = apply_query(prep, qmix.qmap[None], qmix.weight, qmix.description)
        boxes = leaves(prep, heap_order_split(prep, None, budget))[0]
    wts = None if qmix is None else query_box_weights(qmix.qmap, qmix.weight, boxes)
    total, straddle = _canvas_sse(*canvas, h, w, boxes, sse, wts)

    def rescore() -> tuple[float, float]:
        exact = token_sse(padded, base, levels, token_size, square_sums=sq)  # the same boxes, exact errors
        return _canvas_sse(*canvas, h, w, boxes, {base << k: e for k, e in enumerate(exact)}, wts)

    ratio = base // token_size
    scanned = not (base % token_size == 0 and ratio & (ratio - 1) == 0)  # power-of-two sizes are exact already
    return _Candidate(PatchLayout(h, w, canvas, boxes), total, straddle, padded, weights=wts,
                      rescore=rescore if scanned else None, scale=src.squares.total(*canvas))


def multiscale(image: np.ndarray, budget: int, *, levels: int = DEFAULT_LEVELS, scales: int = DEFAULT_SCALES,
               token_size: int = TOKEN_SIZE, query: Any = None, query_weight: float = 0.0,
               source: MultiscaleSource | None = None) -> PatchLayout:
    """The layout with at most ``budget`` tokens that keeps the most of ``image`` (least squared
    error of what a ``token_size`` embedding sees), among: quadtrees with boxes ``u * 2**k``
    (``k <= levels``) for ``scales`` base sizes ``u`` from ``token_size`` up to the finest uniform
    grid that fits (geometrically spaced, then the two midpoints around the best one), refined by
    the rate-distortion greedy, and that uniform grid. ``params["base_size"]`` and
    ``params["levels_used"]`` say which won (``levels_used == 0``: the uniform grid).

    ``query``/``query_weight``: as for ``quadtree`` (a map ``[H, W]`` in [0, 1], an
    ``adapatch.Query`` or its dict); candidates are refined by the mixed importance and compared by
    the query-weighted error (module docstring). ``w = 0``: query-blind, bit for bit.

    ``source``: a ``MultiscaleSource`` of this image, reused across calls (budget steps of one image
    skip the scan of every candidate scale they share); the result is the same with or without it.
    """
    budget = check_int("budget", budget, 1)
    levels = check_int("levels", levels, 0, 8)
    scales = check_int("scales", scales, 1, 64)
    token_size = check_power_of_two("token_size", token_size, 1, 1024)
    img = check_rgb(image)
    qmap, qw = resolve_query(query, img, query_weight)
    qmix = None if qmap is None else _QueryMix(np.asarray(qmap, np.float32), qw, describe_query(query))
    h, w = img.shape[:2]
    u_fit = _smallest_fitting_size(h, w, budget)
    bases = [int(u) for u in np.unique(np.round(np.geomspace(token_size, max(token_size, u_fit), scales)))]
    reach = max(token_size, u_fit) << levels  # reaches every candidate's canvas
    if source is None:
        src = MultiscaleSource(img, reach)
    elif not source.matches(img):
        raise ValueError("source was made from another image (MultiscaleSource(image) of this one)")
    else:
        src = source
        src.ensure(reach)
    tried: dict[tuple[int, int], _Candidate | None] = {}

    def run(base: int, lv: int) -> None:
        if (base, lv) in tried:
            return
        canvas = padded_canvas(h, w, base << lv)
        fits = (canvas[0] // (base << lv)) * (canvas[1] // (base << lv)) <= budget  # roots within budget
        tried[(base, lv)] = _candidate(src, budget, base, lv, token_size, qmix) if fits else None

    run(u_fit, 0)
    if levels > 0:
        for u in bases:
            run(u, levels)
        # one refinement: the midpoints between the best base size and its neighbours
        scored = [(c.canvas_error, i) for i, u in enumerate(bases) if (c := tried[(u, levels)]) is not None]
        if scored:
            i = min(scored)[1]
            for j in (i - 1, i + 1):
                if 0 <= j < len(bases):
                    run((bases[i] + bases[j]) // 2, levels)
    # exact errors (padding removed) only where needed: a candidate whose scanned error, less its
    # whole straddling share and twice the scan's tolerance, is still above the best scanned
    # canvas error cannot win
    found = {k: c for k, c in tried.items() if c is not None}
    live = list(found.items())
    # the scan's error scales with each canvas's sum of squares (padding repeats edge pixels)
    margin = 2 * SCAN_TOLERANCE * max(c.scale for _, c in live)
    bound = min(c.canvas_error for _, c in live)
    scanned = {k: c.scanned_error(img, token_size) for k, c in live if c.canvas_error - c.straddling <= bound + margin}
    best_scanned = min(scanned.values())
    close = [k for k, v in scanned.items() if v <= best_scanned + margin]  # the rest are worse, exactly
    # alone: no need to rescore; several: exact errors, where float64 rounding (~1e-16 of the sum of
    # squares per term) counts as a tie and the fewer tokens win (a flat image: the coarsest layout)
    errors = {k: found[k].error(img, token_size) if len(close) > 1 else scanned[k] for k in close}
    tie = TIE_TOLERANCE * src.squares.total(h, w)
    least = min(errors.values())
    best_key = min((k for k in close if errors[k] <= least + tie),
                   key=lambda k: (found[k].layout.num_tokens, errors[k]))
    base, lv = best_key
    lay = found[best_key].layout
    params: dict[str, Any] = {"budget": budget, "levels": levels, "scales": scales, "token_size": token_size,
                              "base_size": base, "levels_used": lv}
    if qmix is not None:
        params.update(query=qmix.description, query_weight=qmix.weight)
    return PatchLayout(h, w, lay.canvas, lay.boxes, strategy="multiscale", params=params)
