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
- ``"distortion"``: rate-distortion gain of splitting the square, for a model whose tokens are
  ``token_size`` px (16): the exact squared error of what the model sees (the square area-resized
  to ``token_size`` and painted back) minus that of its four children. Unlike the per-pixel
  measures it counts area: a 64 px square with a little detail can gain more than a busy 16 px
  one. A square of at most ``token_size`` px is seen losslessly, so splitting it gains nothing.
  ``reconstruction_sse`` and ``distortion_gains`` give the absolute squared errors; its threshold
  is not in [0, 1] but ``lambda``, the error removed per added token
  (``adapatch.quadtree_engine.lagrangian_levels``).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np

_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="adapatch-stats")
_PARALLEL_MIN_VALUES = 1 << 20  # below ~1M values a second thread costs more than it saves
_CHUNK_BYTES = 3 << 20  # image bytes per step: the step's column sums (1/m of it) stay in cache

VAR_FLOOR = 1e-12
"""Variances below this count as 0: the rounding left in ``E[x^2] - E[x]^2`` of float64 sums is
about 1e-16, while one 8-bit step in a 64x64 square is a variance of about 1e-9; so a flat
square has importance exactly 0 and never splits, even at threshold 0."""

IMPORTANCE_MEASURES = ("std", "variance", "mean_saliency", "max_saliency", "entropy", "distortion")
SALIENCY_MEASURES = ("mean_saliency", "max_saliency")
ENTROPY_BINS = 16
TOKEN_SIZE = 16
"""Side, in pixels, of the token image a fixed-width patch embedding sees (ViT-B/16 and most ViTs)."""


def pad_to_canvas(images: np.ndarray, canvas: tuple[int, int]) -> np.ndarray:
    """Pad ``[B, H, W, ...]`` at the bottom/right by edge replication to the canvas size."""
    _b, h, w = images.shape[:3]
    ph, pw = canvas[0] - h, canvas[1] - w
    if ph == 0 and pw == 0:
        return images
    pad = [(0, 0), (0, ph), (0, pw)] + [(0, 0)] * (images.ndim - 3)
    return np.pad(images, pad, mode="edge")


def _pool2(x: np.ndarray, op: str = "sum") -> np.ndarray:
    """2x2 pooling over axes 1, 2 of ``[B, gh, gw, ...]`` (sum or max)."""
    b, gh, gw = x.shape[:3]
    r = x.reshape(b, gh // 2, 2, gw // 2, 2, -1)
    f = np.add if op == "sum" else np.maximum
    t = f(r[:, :, 0], r[:, :, 1])
    return f(t[:, :, :, 0], t[:, :, :, 1]).reshape(b, gh // 2, gw // 2, *x.shape[3:])


def _block_view(x: np.ndarray, m: int) -> np.ndarray:
    """``[B, gh, m, gw, m*C]`` view of ``[B, H, W, C]`` (or ``[B, H, W]``) for block reductions."""
    b, h, w = x.shape[:3]
    c = int(np.prod(x.shape[3:], dtype=np.int64)) if x.ndim > 3 else 1
    return x.reshape(b, h // m, m, w // m, m * c)


def _strip_sums(strip: np.ndarray, m: int, per_channel: bool, s1: np.ndarray, s2: np.ndarray) -> None:
    """Block sums of x (per channel, or over channels) and of x^2 of a ``[rows, cw, 3]`` strip.

    Writes ``s1`` (``[rows/m, cw/m]``, or ``[3, rows/m, cw/m]`` per channel) and ``s2``
    ``[rows/m, cw/m]`` (float64). ``rows`` and ``cw`` are multiples of ``m``. First the ``m``
    rows of each block row are added column by column, x and x^2 in one compiled pass
    (``adapatch.kernels.column_sums``, in float64), which shrinks the data ``m``-fold; then each
    block's ``3m`` column sums are added by one small matrix product.
    """
    from .kernels import column_sums  # numba: imported on first use, not with adapatch

    rows, cw, c = strip.shape
    gh, gw = rows // m, cw // m
    c1 = np.empty((gh, cw * c))
    c2 = np.empty((gh, cw * c))
    column_sums(strip.reshape(rows, cw * c), m, c1, c2)
    col1 = c1.reshape(gh * gw, m * c)
    col2 = c2.reshape(gh * gw, m * c)
    np.matmul(col2, _group_matrix(m, c, False), out=s2.reshape(gh * gw))
    if per_channel:  # s1 is channel-first [c, gh, gw]
        s1[...] = (col1 @ _group_matrix(m, c, True)).T.reshape(c, gh, gw)
    else:
        np.matmul(col1, _group_matrix(m, c, False), out=s1.reshape(gh * gw))


@lru_cache(maxsize=32)
def _group_matrix(m: int, c: int, per_channel: bool) -> np.ndarray:
    """``[m*c, c]`` 0/1 matrix summing ``m`` interleaved pixels per channel (or ``[m*c]`` ones)."""
    if not per_channel:
        return np.ones(m * c)
    return np.tile(np.eye(c), (m, 1))


def _chunks(n: int, step: int) -> list[tuple[int, int]]:
    return [(i, min(i + step, n)) for i in range(0, n, step)]


def block_sums(canvas: np.ndarray, m: int, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(S1, S2)`` over every ``m x m`` block of ``[B, ch, cw, 3]``: S2 ``[B, gh, gw]``; S1 the same, or
    channel-first ``[3 * B, gh, gw]`` (channel c of image i at ``c * B + i``) when ``per_channel``.

    The rows are processed in chunks of about ``_CHUNK_BYTES`` (so each chunk's column sums are
    still in cache when they are grouped), and large inputs split their chunks over two threads
    (the compiled kernel and numpy release the GIL), so the image is read once.
    """
    b, ch, cw, c = canvas.shape
    flat = canvas.reshape(b * ch, cw, c)  # blocks never straddle images: ch % m == 0
    gh_total, gw = b * ch // m, cw // m
    s1 = np.empty((c, gh_total, gw) if per_channel else (gh_total, gw))
    s2 = np.empty((gh_total, gw))
    step = max(1, _CHUNK_BYTES // (m * cw * c * flat.itemsize))
    chunks = _chunks(gh_total, step)

    def run(part: list[tuple[int, int]]) -> None:
        for lo, hi in part:
            _strip_sums(flat[lo * m:hi * m], m, per_channel, s1[:, lo:hi] if per_channel else s1[lo:hi], s2[lo:hi])

    if canvas.size >= _PARALLEL_MIN_VALUES and gh_total >= 2:
        if len(chunks) < 2:
            chunks = _chunks(gh_total, (gh_total + 1) // 2)
        half = len(chunks) // 2
        fut = _POOL.submit(run, chunks[:half])
        run(chunks[half:])
        fut.result()
    else:
        run(chunks)
    shape = (b, ch // m, gw)
    return (s1.reshape(c * b, *shape[1:]) if per_channel else s1.reshape(shape)), s2.reshape(shape)


def _pool(x: np.ndarray, f: int) -> np.ndarray:
    """Sum over ``f x f`` blocks of axes 1, 2 of ``[B, gh, gw]``."""
    if f == 1:
        return x
    b, gh, gw = x.shape
    return x.reshape(b, gh // f, f, gw // f, f).sum(axis=(2, 4))


def _cell_energy(canvas: np.ndarray, c0: int, nlev: int, b0: int) -> tuple[np.ndarray, np.ndarray]:
    """``(q, s2)`` of ``adapatch.kernels.cell_energy`` over ``[B, ch, cw, 3]`` (``[nlev, B, gh, gw]`` and
    ``[B, gh, gw]``, boxes of ``b0`` px); two strips on two threads for large inputs."""
    from .kernels import cell_energy  # numba: imported on first use, not with adapatch

    b, ch, cw, c = canvas.shape
    flat = canvas.reshape(b * ch, cw * c)
    gh = b * ch // b0
    q = np.zeros((nlev, gh, cw // b0))
    s2 = np.zeros((gh, cw // b0))
    top = max(b0, c0 << (nlev - 1)) // b0  # box rows per largest cell: strips start on its edges
    if canvas.size >= _PARALLEL_MIN_VALUES and gh >= 2 * top:
        mid = (gh // top // 2) * top
        fut = _POOL.submit(cell_energy, flat[:mid * b0], c0, nlev, b0, q[:, :mid], s2[:mid])
        cell_energy(flat[mid * b0:], c0, nlev, b0, q[:, mid:], s2[mid:])
        fut.result()
    else:
        cell_energy(flat, c0, nlev, b0, q, s2)
    return q.reshape(nlev, b, ch // b0, cw // b0), s2.reshape(b, ch // b0, cw // b0)


def reconstruction_sse(canvas: np.ndarray, sizes: list[int], token_size: int = TOKEN_SIZE) -> list[np.ndarray]:
    """Squared error ``[B, ch // s, cw // s]`` (float64) of every ``s`` px square seen as one token.

    The token is the square area-resized to ``token_size`` (each cell of ``c = s / token_size``
    px becomes its mean) and painted back (replicated), so the error is ``S2 - sum over cells of
    |S1|^2 / c^2`` (``S1`` a cell's per-channel sums, ``S2`` the square's sum of squares, all
    channels). Squares of at most ``token_size`` px are seen losslessly (0). ``sizes`` are powers of
    two dividing the canvas sides, ``token_size`` a power of two. One compiled pass over the image
    gives every cell size at once (``adapatch.kernels.cell_energy``).
    """
    b, ch, cw, _ = canvas.shape
    cells, c0, b0, nlev = _cell_plan(sizes, token_size)
    energy = _cell_energy(np.ascontiguousarray(canvas, np.float32), c0, nlev, b0) if cells else None
    return _sse_levels(energy, b, ch, cw, sizes, cells, c0, b0, token_size)


def reconstruction_sse_rgb8(image: np.ndarray, canvas: tuple[int, int], sizes: list[int],
                            token_size: int = TOKEN_SIZE) -> list[np.ndarray]:
    """``reconstruction_sse`` of one 8-bit RGB image ``[H, W, 3]`` (uint8) padded to ``canvas``, read
    as ``load_image`` reads it (``BYTE_TO_FLOAT``): bit-identical results, without making the float
    image or the padded copy where the compiled 8-row pass applies (``kernels.cell_energy_u8``)."""
    from .image_io import BYTE_TO_FLOAT
    cells, c0, b0, nlev = _cell_plan(sizes, token_size)
    ch, cw = canvas
    if cells and c0 == 2 and nlev <= 3 and b0 % 8 == 0:
        from .kernels import cell_energy_u8
        q = np.zeros((nlev, ch // b0, cw // b0))
        s2 = np.zeros((ch // b0, cw // b0))
        h, w = image.shape[:2]
        cell_energy_u8(np.ascontiguousarray(image, np.uint8).reshape(h, w * 3), ch, cw, nlev, b0, q, s2)
        energy = (q.reshape(nlev, 1, ch // b0, cw // b0), s2.reshape(1, ch // b0, cw // b0))
        return _sse_levels(energy, 1, ch, cw, sizes, cells, c0, b0, token_size)
    return reconstruction_sse(pad_to_canvas(BYTE_TO_FLOAT[image][None], canvas), sizes, token_size)


def _cell_plan(sizes: list[int], token_size: int) -> tuple[list[int], int, int, int]:
    """Cell sizes (px per token pixel) of the squares larger than a token, the finest ``c0``, the box
    ``b0`` the pass accumulates over and the number of cell levels."""
    cells = sorted({s // token_size for s in sizes if s > token_size})
    if not cells:
        return cells, 0, 0, 0
    c0 = cells[0]
    return cells, c0, c0 * token_size, int(np.log2(cells[-1] // c0)) + 1


def _sse_levels(energy: tuple[np.ndarray, np.ndarray] | None, b: int, ch: int, cw: int, sizes: list[int],
                cells: list[int], c0: int, b0: int, token_size: int) -> list[np.ndarray]:
    out = {s: np.zeros((b, ch // s, cw // s)) for s in sizes}
    if energy is not None:
        q, s2 = energy
        for c in cells:
            s = c * token_size
            f = s // b0
            err = _pool(s2, f) - _pool(q[int(np.log2(c // c0))], f)
            np.putmask(err, err < VAR_FLOOR * 3 * s * s, 0.0)  # rounding is not detail
            out[s] = err
    return [out[s] for s in sizes]


def distortion_gains(canvas: np.ndarray | None, sizes: list[int], token_size: int = TOKEN_SIZE,
                     sse: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """Squared error removed by splitting each square into four, ``[B, ch // s, cw // s]`` per size
    in ``sizes`` (descending powers of two; the leaf level, which cannot split, is all 0). ``sse``:
    the squares' reconstruction errors when already computed (then ``canvas`` is not read)."""
    if sse is None:
        if canvas is None:
            raise ValueError("distortion_gains needs the canvas or its sse")
        sse = reconstruction_sse(canvas, sizes, token_size)
    gains = [np.maximum(sse[i] - _pool2(sse[i + 1]), 0.0) for i in range(len(sizes) - 1)]
    gains.append(np.zeros_like(sse[-1]))
    for g, s in zip(gains, sizes):
        np.putmask(g, g < VAR_FLOOR * 3 * s * s, 0.0)
    return gains


def importance_levels(canvas: np.ndarray, sizes: list[int], importance: str,
                      saliency: np.ndarray | None = None, bins: int = ENTROPY_BINS) -> list[np.ndarray]:
    """Importance ``[B, ch // s, cw // s]`` (float64, in [0, 1]) for each square size in ``sizes``.

    ``canvas`` is ``[B, ch, cw, 3]`` float32 (sides multiples of ``sizes[0]``); ``sizes`` are
    descending powers of two ending at the leaf size. ``saliency`` is ``[B, ch, cw]``.
    """
    m = sizes[-1]
    if importance == "distortion":  # its importance comes with the gains behind it
        raise ValueError("distortion levels come from distortion_gains (see quadtree.prepared_from_gains)")
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
                s1c = s1[lvl].reshape(3, -1, *s1[lvl].shape[1:])
                sq_mean = np.einsum("c...,c...->...", s1c, s1c) / (n * s * s)
            else:
                sq_mean = s1[lvl] / n
                sq_mean *= sq_mean
            var = s2[lvl] / n
            var -= sq_mean
            np.putmask(var, var < VAR_FLOOR, 0.0)  # rounding of E[x^2] - E[x]^2 is not detail
            if importance == "std":
                np.sqrt(var, out=var)
                var *= 2.0
            else:
                var *= 4.0
            out.append(np.minimum(var, 1.0, out=var))
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
