"""Per-square importance at every quadtree level, from pooled block statistics.

One pass over the image computes sums at the finest (``min_size``) grid; every coarser level is
a 2x2 sum of the level below, so all levels cost little more than reading the image once.
All measures are normalised to ``[0, 1]`` with absolute (not per-image) constants, so one
threshold means the same on every image:

- ``"std"``: standard deviation of the square's pixels, per channel (root of the mean of the
  three channel variances) / 0.5, the largest possible std of values in [0, 1]. A flat
  saturated colour scores 0.
- ``"variance"``: variance of all the square's values, channels pooled (the seed's
  ``region.var()``) / 0.25. It also counts the spread *between* channels, so a flat orange
  square scores high; kept for compatibility with the seed and its benchmark.
- ``"mean_saliency"`` / ``"max_saliency"``: mean / max of a saliency map over the square.
- ``"entropy"``: Shannon entropy of the square's grey-level histogram (``bins`` levels, as APT)
  / log2(bins).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np

_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapatch-stats")
_PARALLEL_MIN_VALUES = 1 << 20  # below ~1M values a second thread costs more than it saves

IMPORTANCE_MEASURES = ("std", "variance", "mean_saliency", "max_saliency", "entropy")
SALIENCY_MEASURES = ("mean_saliency", "max_saliency")
ENTROPY_BINS = 16


def pad_to_canvas(images: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """Pad ``[B, H, W, ...]`` at the bottom/right by edge replication to the canvas size."""
    b, h, w = images.shape[:3]
    ph, pw = canvas[0] - h, canvas[1] - w
    if ph == 0 and pw == 0:
        return images
    pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (images.ndim - 3)
    return np.pad(images, pad, mode="edge")


def _pool2(x: np.ndarray, op: str = "sum") -> np.ndarray:
    """2x2 pooling over axes 1, 2 of ``[B, gh, gw, ...]`` (sum or max)."""
    b, gh, gw = x.shape[:3]
    r = x.reshape(b, gh // 2, 2, gw // 2, 2, *x.shape[3:])
    return r.sum(axis=(2, 4)) if op == "sum" else r.max(axis=(2, 4))


def _block_view(x: np.ndarray, m: int) -> np.ndarray:
    """``[B, gh, m, gw, m*C]`` view of ``[B, H, W, C]`` (or ``[B, H, W]``) for block reductions."""
    b, h, w = x.shape[:3]
    c = int(np.prod(x.shape[3:], dtype=np.int64)) if x.ndim > 3 else 1
    return x.reshape(b, h // m, m, w // m, m * c)


def _block_sums(canvas: np.ndarray, m: int) -> np.ndarray:
    """Sum over each ``m x m`` block and all channels: float64 ``[B, ch/m, cw/m]``."""
    return np.einsum("bimjk->bij", _block_view(canvas, m)).astype(np.float64)


def _channel_block_sums(canvas: np.ndarray, m: int) -> np.ndarray:
    """Per-channel sums over each ``m x m`` block: float64 ``[B, ch/m, cw/m, 3]``.

    OpenCV's area resize by an integer factor is an exact block mean and much faster than a
    strided numpy reduction; the batch is stacked vertically (blocks never straddle images).
    """
    b, ch, cw, c = canvas.shape
    means = cv2.resize(canvas.reshape(b * ch, cw, c), (cw // m, b * ch // m), interpolation=cv2.INTER_AREA)
    return means.reshape(b, ch // m, cw // m, c).astype(np.float64) * float(m * m)


def importance_levels(canvas: np.ndarray, sizes: list[int], importance: str,
                      saliency: np.ndarray | None = None, bins: int = ENTROPY_BINS) -> list[np.ndarray]:
    """Importance ``[B, ch // s, cw // s]`` (float64, in [0, 1]) for each square size in ``sizes``.

    ``canvas`` is ``[B, ch, cw, 3]`` float32 (sides multiples of ``sizes[0]``); ``sizes`` are
    descending powers of two ending at the leaf size. ``saliency`` is ``[B, ch, cw]``.
    """
    m = sizes[-1]
    if importance in ("std", "variance"):
        v = _block_view(canvas, m)
        # Block sums of x (per channel for "std") and of x^2 in one read each (einsum fuses
        # the square); the two run on two threads for large images (numpy releases the GIL).
        sum_fn = _channel_block_sums if importance == "std" else _block_sums
        if canvas.size >= _PARALLEL_MIN_VALUES:
            fut = _POOL.submit(sum_fn, canvas, m)
            sq = np.einsum("bimjk,bimjk->bij", v, v)
            s1 = [fut.result()]
        else:
            s1 = [sum_fn(canvas, m)]
            sq = np.einsum("bimjk,bimjk->bij", v, v)
        s2 = [sq.astype(np.float64)]
        for _ in sizes[:-1]:
            s1.append(_pool2(s1[-1]))
            s2.append(_pool2(s2[-1]))
        out = []
        for lvl, s in enumerate(reversed(sizes)):
            n = 3.0 * s * s
            if importance == "std":  # mean over channels of E[x_c^2] - E[x_c]^2
                mean_c = s1[lvl] / (s * s)
                var = np.maximum(s2[lvl] / n - (mean_c * mean_c).mean(axis=-1), 0.0)
            else:
                mean = s1[lvl] / n
                var = np.maximum(s2[lvl] / n - mean * mean, 0.0)
            out.append(np.minimum(np.sqrt(var) * 2.0, 1.0) if importance == "std" else np.minimum(var * 4.0, 1.0))
        return out[::-1]
    if importance in SALIENCY_MEASURES:
        if saliency is None:
            raise ValueError(f"importance={importance!r} needs a saliency map")
        v = _block_view(saliency, m)
        if importance == "mean_saliency":
            lv = [np.einsum("bimjk->bij", v, dtype=np.float32).astype(np.float64)]
            for _ in sizes[:-1]:
                lv.append(_pool2(lv[-1]))
            out = [x / float(s * s) for x, s in zip(lv, reversed(sizes))]
        else:
            lv = [v.max(axis=(2, 4)).astype(np.float64)]
            for _ in sizes[:-1]:
                lv.append(_pool2(lv[-1], "max"))
            out = lv
        return [np.clip(x, 0.0, 1.0) for x in out[::-1]]
    if importance == "entropy":
        grey = canvas @ np.array([0.299, 0.587, 0.114], np.float32)
        q = np.minimum((grey * bins).astype(np.int64), bins - 1)
        b, ch, cw = q.shape
        gh, gw = ch // m, cw // m
        cell = (np.arange(b)[:, None, None] * gh + (np.arange(ch) // m)[None, :, None]) * gw \
            + (np.arange(cw) // m)[None, None, :]
        counts = np.bincount((cell * bins + q).ravel(), minlength=b * gh * gw * bins)
        lv = [counts.reshape(b, gh, gw, bins).astype(np.float64)]
        for _ in sizes[:-1]:
            lv.append(_pool2(lv[-1]))
        out = []
        for c, s in zip(lv, reversed(sizes)):
            p = c / float(s * s)
            with np.errstate(divide="ignore", invalid="ignore"):
                ent = -np.where(p > 0, p * np.log2(p), 0.0).sum(axis=-1)
            out.append(np.clip(ent / np.log2(bins), 0.0, 1.0))
        return out[::-1]
    raise ValueError(f"importance must be one of {', '.join(map(repr, IMPORTANCE_MEASURES))}; got {importance!r}")
