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
    a, b_, c, d = x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]
    if op == "sum":
        return (a + b_) + (c + d)
    return np.maximum(np.maximum(a, b_), np.maximum(c, d))


def _block_view(x: np.ndarray, m: int) -> np.ndarray:
    """``[B, gh, m, gw, m*C]`` view of ``[B, H, W, C]`` (or ``[B, H, W]``) for block reductions."""
    b, h, w = x.shape[:3]
    c = int(np.prod(x.shape[3:], dtype=np.int64)) if x.ndim > 3 else 1
    return x.reshape(b, h // m, m, w // m, m * c)


def _strip_sums(strip: np.ndarray, m: int, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Block sums of x (per channel, or over channels) and of x^2 for a ``[rows, cw, 3]`` strip.

    ``rows`` and ``cw`` are multiples of ``m``. Per-channel means come from OpenCV's area resize
    (an exact block mean for an integer factor, SIMD); the other sums from einsum over
    contiguous runs of ``m`` pixels (``3m`` values), then ``m`` consecutive rows are added.
    """
    rows, cw, c = strip.shape
    r = strip.reshape(-1, m * c)
    sq = np.einsum("ij,ij->i", r, r).reshape(rows // m, m, cw // m).sum(axis=1, dtype=np.float64)
    if per_channel:
        means = cv2.resize(strip, (cw // m, rows // m), interpolation=cv2.INTER_AREA)
        s1 = means.astype(np.float64) * float(m * m)
    else:
        s1 = np.einsum("ij->i", r).reshape(rows // m, m, cw // m).sum(axis=1, dtype=np.float64)
    return s1, sq


def block_sums(canvas: np.ndarray, m: int, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(S1, S2)`` over every ``m x m`` block of ``[B, ch, cw, 3]``: S1 ``[B, gh, gw(, 3)]``, S2 ``[B, gh, gw]``.

    Large inputs are cut into two row strips summed on two threads (numpy and OpenCV release
    the GIL), so the image is read about once at memory speed.
    """
    b, ch, cw, c = canvas.shape
    flat = canvas.reshape(b * ch, cw, c)  # blocks never straddle images: ch % m == 0
    gh_total = b * ch // m
    if canvas.size >= _PARALLEL_MIN_VALUES and gh_total >= 2:
        cut = (gh_total // 2) * m
        fut = _POOL.submit(_strip_sums, flat[:cut], m, per_channel)
        s1b, s2b = _strip_sums(flat[cut:], m, per_channel)
        s1a, s2a = fut.result()
        s1, s2 = np.concatenate([s1a, s1b]), np.concatenate([s2a, s2b])
    else:
        s1, s2 = _strip_sums(flat, m, per_channel)
    shape = (b, ch // m, cw // m)
    return s1.reshape(*shape, *((3,) if per_channel else ())), s2.reshape(shape)


def importance_levels(canvas: np.ndarray, sizes: list[int], importance: str,
                      saliency: np.ndarray | None = None, bins: int = ENTROPY_BINS) -> list[np.ndarray]:
    """Importance ``[B, ch // s, cw // s]`` (float64, in [0, 1]) for each square size in ``sizes``.

    ``canvas`` is ``[B, ch, cw, 3]`` float32 (sides multiples of ``sizes[0]``); ``sizes`` are
    descending powers of two ending at the leaf size. ``saliency`` is ``[B, ch, cw]``.
    """
    m = sizes[-1]
    if importance in ("std", "variance"):
        first, second = block_sums(canvas, m, per_channel=importance == "std")
        s1, s2 = [first], [second]
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
