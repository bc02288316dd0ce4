"""Quality against tokens, in one pass: PSNR of what the model sees for every budget of the
distortion quadtree, and for the uniform grid at every patch size, against the original image.

The quadtree's budget mode splits squares in one fixed order (``quadtree`` with
``importance="distortion"``), and each split lowers the squared error by exactly that square's
gain, so the whole curve is one cumulative sum over that order: no layout is rebuilt per budget.
Errors count the image's pixels only (squares reaching into the padding are recomputed over their
in-image part), so every point equals ``fidelity(image, layout)["psnr"]`` of the layout the library
makes at that budget (up to float32 rounding of the reconstruction; tested).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .fidelity import MAX_PSNR
from .importance import TOKEN_SIZE, pad_to_canvas, reconstruction_sse
from .layout import padded_canvas
from .multiscale import _border_correction, _pad, _padding_errors, token_sse
from .quadtree import _prepare, heap_order
from .validation import check_rgb


@dataclass
class QualityCurve:
    """``psnr[i]`` (dB, capped at ``MAX_PSNR``) of the layout with ``tokens[i]`` tokens."""

    label: str
    tokens: np.ndarray
    psnr: np.ndarray
    extra: dict = field(default_factory=dict)


def _psnr(sse: np.ndarray, n_values: int) -> np.ndarray:
    mse = np.maximum(np.asarray(sse, np.float64), 0.0) / n_values
    with np.errstate(divide="ignore"):
        out = 10.0 * np.log10(1.0 / np.maximum(mse, 1e-300))
    return np.where(mse <= 1e-10, MAX_PSNR, np.minimum(out, MAX_PSNR))


def _image_sse(img: np.ndarray, padded: np.ndarray, sizes: list[int], sse: list[np.ndarray],
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
            e[edge] -= _padding_errors(img, padded, boxes, token_size)
        out.append(np.maximum(e, 0.0))
    return out


def quadtree_quality(image: np.ndarray, min_size: int = 16, max_size: int = 64,
                     token_size: int = TOKEN_SIZE) -> QualityCurve:
    """PSNR of ``quadtree(image, budget=n, importance="distortion", ...)`` for every reachable
    ``n`` (``n0 + 3k``), from the split order and each split's exact gain over the image's pixels."""
    img = check_rgb(image)
    h, w = img.shape[:2]
    prep = _prepare(img, None, min_size, max_size, "distortion", token_size=token_size)
    n0 = prep.levels[0][0].size
    padded = pad_to_canvas(img[None], prep.canvas)[0]
    sse = _image_sse(img, padded, prep.sizes, [e[0] for e in reconstruction_sse(padded[None], prep.sizes, token_size)],
                     token_size)
    gains_img = [sse[i] - sse[i + 1].reshape(sse[i].shape[0], 2, sse[i].shape[1], 2).sum(axis=(1, 3))
                 for i in range(len(prep.sizes) - 1)]
    total0 = float(sse[0].sum())
    if not prep.gains:
        return QualityCurve("quadtree · distortion", np.array([n0]), _psnr([total0], 3 * h * w))
    order, cand = heap_order(prep)
    order = order[0][cand[0][order[0]]]  # the splits the budget mode makes, in the order it makes them
    flat_gain = np.concatenate([g.ravel() for g in gains_img])
    sse_k = total0 - np.concatenate([[0.0], np.cumsum(flat_gain[order])])
    tokens = n0 + 3 * np.arange(len(sse_k))
    return QualityCurve("quadtree · distortion", tokens, _psnr(sse_k, 3 * h * w),
                        {"min_size": min_size, "max_size": max_size, "token_size": token_size})


def uniform_quality(image: np.ndarray, sizes: range | list[int] | None = None,
                    token_size: int = TOKEN_SIZE) -> QualityCurve:
    """PSNR of the uniform grid at each patch size (default: 30 sizes from ``token_size`` to 4x it), exact
    over the image's pixels; sizes at or below the token size are lossless only when they divide it,
    so they are left out."""
    img = check_rgb(image)
    h, w = img.shape[:2]
    if sizes is None:  # about 30 sizes, denser where the token count changes fastest
        sizes = np.unique(np.round(np.geomspace(token_size, 4 * token_size, 30)).astype(int))
    sizes = [int(s) for s in sizes if s >= token_size]
    img64 = img.astype(np.float64)
    squares = np.einsum("ijc,ijc->ij", img64, img64)
    tokens, sse = [], []
    for s in sizes:
        canvas = padded_canvas(h, w, s)
        padded = _pad(img, canvas)
        e = token_sse(padded, s, 0, token_size, _pad(squares, canvas))[0]
        gh, gw = e.shape
        yy, xx = np.meshgrid(np.arange(gh) * s, np.arange(gw) * s, indexing="ij")
        boxes = np.stack([yy.ravel(), xx.ravel(), np.full(gh * gw, s)], axis=1)
        sse.append(float(e.sum()) - _border_correction(img, padded, boxes, token_size))
        tokens.append(gh * gw)
    return QualityCurve("uniform", np.array(tokens), _psnr(np.array(sse), 3 * h * w), {"sizes": sizes})
