"""Quality against tokens, in one pass: PSNR (and SSIM at a few points) of what the model sees for
every budget of the budget-mode quadtree, and for the uniform grid at every patch size, against
the original image.

The quadtree's budget mode splits squares in one fixed order (``quadtree(..., budget=n)``: the
literal heap order for ``importance="distortion"``, path importance descending otherwise), and
each split lowers the squared error by exactly that square's gain and adds its increment of tokens
(3, fewer for a square straddling the image's edge: children wholly in the padding are no tokens,
``quadtree_engine.split_increments``), so the whole PSNR curve is one cumulative sum over that
order: no layout is rebuilt per budget. Splits that add no token share their token count with the
splits before them; the curve keeps the last of them (the layout that budget makes). Errors count
the image's pixels only (squares reaching into the padding are recomputed over their in-image
part), so every point equals ``fidelity(image, layout)["psnr"]`` of the layout the library makes
at that budget (up to float32 rounding of the reconstruction; tested).

SSIM has no such sum: it is evaluated exactly, but at ``ssim_points`` token counts spread evenly
over the range (``QualityCurve.ssim_tokens``). The quadtree's are one pass too: the luminance
reconstruction is updated split by split in the same order (the reconstruction is linear, so
reconstructing the luminance is the luminance of the reconstruction), and ``fidelity.ssim`` is
taken at each point. Uniform grids are reconstructed directly (``fidelity.resample_canvas``: two
OpenCV area resizes), which gives their PSNR at every size and their SSIM at the chosen sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .fidelity import MAX_PSNR, luminance, resample_canvas, ssim_luminance
from .importance import IMPORTANCE_MEASURES, TOKEN_SIZE, pad_to_canvas, reconstruction_sse
from .layout import padded_canvas
from .multiscale import pad_edges, padding_errors
from .quadtree_engine import flat_increments, heap_order, path_minima, prepare
from .validation import check_choice, check_int, check_rgb

SSIM_POINTS = 12
"""Token counts at which the app's quality charts evaluate SSIM (spread evenly over each curve)."""


@dataclass
class QualityCurve:
    """``psnr[i]`` (dB, capped at ``MAX_PSNR``) of the layout with ``tokens[i]`` tokens; ``ssim[j]``
    (luminance, exact) of the layout with ``ssim_tokens[j]`` tokens, a subset of ``tokens``."""

    label: str
    tokens: np.ndarray
    psnr: np.ndarray
    extra: dict = field(default_factory=dict)
    ssim_tokens: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ssim: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def psnr_at(self, tokens: int) -> float | None:
        """PSNR of the point with exactly ``tokens`` tokens, None if the curve has none."""
        i = np.flatnonzero(self.tokens == int(tokens))
        return float(self.psnr[i[0]]) if len(i) else None


def _psnr(sse: np.ndarray, n_values: int) -> np.ndarray:
    mse = np.maximum(np.asarray(sse, np.float64), 0.0) / n_values
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300))
    return np.where(mse <= 1e-10, MAX_PSNR, np.minimum(out, MAX_PSNR))


def _spread(n: int, points: int) -> np.ndarray:
    """Up to ``points`` indices of ``range(n)`` spread evenly, both ends included."""
    if n <= 0 or points <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, min(points, n))).astype(np.int64))


def image_sse_levels(img: np.ndarray, padded: np.ndarray, sizes: list[int], sse: list[np.ndarray],
               token_size: int) -> list[np.ndarray]:
    """``sse`` (canvas errors per square, one map per size) with the padding's share removed from
    the squares that reach past the image."""
    h, w = img.shape[:2]
    out = []
    for s, e in zip(sizes, sse):
        e = e.copy()
        gh, gw = e.shape
        rows = np.arange(gh) * s
        cols = np.arange(gw) * s
        yy, xx = np.meshgrid(rows, cols, indexing="ij")
        edge = (yy + s > h) | (xx + s > w)
        if edge.any():  # the border strip: its squares' padding share, all at once
            boxes = np.stack([yy[edge], xx[edge], np.full(int(edge.sum()), s)], axis=1)
            e[edge] -= padding_errors(img, padded, boxes, token_size)
        out.append(np.maximum(e, 0.0))
    return out


def _split_order(prep, importance: str) -> np.ndarray:
    """Flat indices (levels concatenated, coarse to fine, row-major) of the squares the budget mode
    splits, in the order it splits them: the first ``k`` are its layout at ``n0`` + their increments
    tokens (squares wholly in the padding never split)."""
    inside = np.concatenate([x.ravel() for x in prep.inside()])
    if importance == "distortion":
        order, cand = heap_order(prep)
        order = order[0][cand[0][order[0]]]
    else:
        flat = np.concatenate([p[0].ravel() for p in path_minima(prep.levels)])
        order = np.argsort(-flat, kind="stable")  # p descending, ties by position (``budget_split``)
    return order[inside[order]]


def _quadtree_ssim(img: np.ndarray, prep, order: np.ndarray, ks: np.ndarray, token_size: int) -> np.ndarray:
    """SSIM of the budget-mode layouts after the first ``k`` splits of ``order``, for ``k`` in ``ks``
    (ascending): the luminance reconstruction updated split by split."""
    h, w = img.shape[:2]
    ch, cw = prep.canvas
    sizes = prep.sizes
    lum = luminance(img)
    canvas = pad_edges(lum, (ch, cw))
    recs = [resample_canvas(canvas, s, token_size) for s in sizes]  # each level's boxes, everywhere
    rec = recs[0].copy()
    ends = np.cumsum([(ch // s) * (cw // s) for s in sizes[:-1]])
    level = np.searchsorted(ends, order, side="right")
    local = order - np.concatenate([[0], ends])[level]
    out, done = [], 0
    for k in ks:
        for i in np.unique(level[done:k]):
            s = sizes[i]
            sel = local[done:k][level[done:k] == i]
            r, c = np.divmod(sel, cw // s)
            view = rec.reshape(ch // s, s, cw // s, s)
            view[r, :, c] = recs[i + 1].reshape(ch // s, s, cw // s, s)[r, :, c]  # its four children
        done = int(k)
        out.append(ssim_luminance(lum, rec[:h, :w]))
    return np.array(out)


def quadtree_quality(image: np.ndarray, min_size: int = 16, max_size: int = 64,
                     token_size: int = TOKEN_SIZE, *, importance: str = "distortion",
                     saliency: np.ndarray | str | None = None, ssim_points: int = 0) -> QualityCurve:
    """PSNR of ``quadtree(image, saliency, budget=n, importance=importance, ...)`` for every
    reachable ``n`` (``n0`` plus the increments of the first ``k`` splits), from the split order and
    each split's exact gain over the image's pixels; SSIM at ``ssim_points`` of those budgets (0:
    none)."""
    img = check_rgb(image)
    check_choice("importance", importance, IMPORTANCE_MEASURES)
    ssim_points = check_int("ssim_points", ssim_points, 0)
    h, w = img.shape[:2]
    prep = prepare(img, saliency, min_size, max_size, importance, token_size=token_size)
    label = f"quadtree · {importance}"
    extra = {"min_size": min_size, "max_size": max_size, "token_size": token_size, "importance": importance}
    n0 = prep.levels[0][0].size
    padded = pad_to_canvas(img[None], prep.canvas)[0]
    sse = image_sse_levels(img, padded, prep.sizes,
                           [e[0] for e in reconstruction_sse(padded[None], prep.sizes, token_size)], token_size)
    total0 = float(sse[0].sum())
    order = _split_order(prep, importance) if len(prep.sizes) > 1 else np.zeros(0, np.int64)
    if len(order):
        gains_img = [sse[i] - sse[i + 1].reshape(sse[i].shape[0], 2, sse[i].shape[1], 2).sum(axis=(1, 3))
                     for i in range(len(prep.sizes) - 1)]
        flat_gain = np.concatenate([g.ravel() for g in gains_img])
        sse_k = total0 - np.concatenate([[0.0], np.cumsum(flat_gain[order])])
    else:
        sse_k = np.array([total0])
    inc = flat_increments(h, w, prep.canvas, prep.sizes)
    tokens = n0 + np.concatenate([[0], np.cumsum(inc[order])]).astype(np.int64)
    # the layout a budget makes takes every split that fits: of splits sharing a token count, the last
    ks_all = np.flatnonzero(np.append(tokens[1:] != tokens[:-1], True))
    tokens = tokens[ks_all]
    curve = QualityCurve(label, tokens, _psnr(sse_k[ks_all], 3 * h * w), extra)
    if ssim_points:
        at = _spread(len(ks_all), ssim_points)
        ks = ks_all[at]  # splits made at each of those points
        curve.ssim_tokens = tokens[at]
        curve.ssim = _quadtree_ssim(img, prep, order, ks, token_size)
    return curve


def uniform_quality(image: np.ndarray, sizes: range | list[int] | np.ndarray | None = None,
                    token_size: int = TOKEN_SIZE, *, ssim_points: int = 0) -> QualityCurve:
    """PSNR of the uniform grid at each patch size (default: about 20 sizes from ``token_size`` to 4x
    it), exact over the image's pixels; SSIM at ``ssim_points`` of those sizes (0: none). Sizes at or
    below the token size are lossless only when they divide it, so they are left out. Each size is
    reconstructed (two OpenCV area resizes of the padded image, about 9 ms at 1 MP)."""
    img = check_rgb(image)
    ssim_points = check_int("ssim_points", ssim_points, 0)
    h, w = img.shape[:2]
    if sizes is None:  # about 20 sizes, denser where the token count changes fastest
        sizes = np.unique(np.round(np.geomspace(token_size, 4 * token_size, 20)).astype(int))
    sizes = [int(s) for s in sizes if s >= token_size]
    x = np.ascontiguousarray(img, np.float32)
    with_ssim = set(_spread(len(sizes), ssim_points).tolist())
    lum = luminance(x) if with_ssim else None
    tokens, sse, s_tokens, s_vals = [], [], [], []
    for i, s in enumerate(sizes):
        canvas = padded_canvas(h, w, s)
        rec = resample_canvas(pad_edges(x, canvas), s, token_size)[:h, :w]
        sse.append(float(cv2.norm(x, rec, cv2.NORM_L2SQR)))  # float64 accumulation, the crop as a view
        tokens.append((canvas[0] // s) * (canvas[1] // s))
        if i in with_ssim:
            s_tokens.append(tokens[-1])
            assert lum is not None  # computed when any size has SSIM
            s_vals.append(ssim_luminance(lum, luminance(rec)))
    return QualityCurve("uniform", np.array(tokens), _psnr(np.array(sse), 3 * h * w), {"sizes": sizes},
                        np.array(s_tokens, np.int64), np.array(s_vals))


def layouts_quality(image: np.ndarray, layouts: list, label: str, size: int = TOKEN_SIZE) -> QualityCurve:
    """PSNR and SSIM (``fidelity``, on the CPU) of given layouts of ``image``, by token count (one
    point per distinct count): the curve of a strategy without a one-pass formula (greedy), sampled
    at a few budgets."""
    from .fidelity import fidelity

    img = check_rgb(image)
    points: dict[int, dict] = {}
    for lay in layouts:
        if lay.num_tokens not in points:
            points[lay.num_tokens] = fidelity(img, lay, size, device="cpu")
    tokens = np.array(sorted(points), np.int64)
    return QualityCurve(label, tokens, np.array([points[n]["psnr"] for n in tokens]), {"sampled": True},
                        tokens.copy(), np.array([points[n]["ssim"] for n in tokens]))
