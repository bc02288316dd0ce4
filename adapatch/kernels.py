"""Compiled (numba) loops for the one hot spot numpy cannot fuse: per-column sums of x and x^2.

The quadtree's block statistics need, for every block row, the sum of ``m`` image rows and of
their squares. numpy needs two passes and a temporary for that (``einsum`` + ``matmul``); one
fused loop that reads eight rows at a time and keeps the partial sums (float64) in registers is
about 2.5x faster (about 0.26 ms against 0.7 ms for a 1024x1024 RGB image on one core here), and
it releases the GIL so two strips run on two cores. Compiled on first use and cached on disk
(``cache=True``); importing this module imports numba, so ``adapatch.importance`` imports it
lazily.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(nogil=True, error_model="numpy", cache=True)
def _add_rows8(x: np.ndarray, r0: int, o1: np.ndarray, o2: np.ndarray, first: bool) -> None:
    """``o1 (+)= sum(x[r0:r0+8])``, ``o2 (+)= sum(x[r0:r0+8]**2)`` column-wise (pairwise, float64)."""
    x0, x1, x2, x3 = x[r0], x[r0 + 1], x[r0 + 2], x[r0 + 3]
    x4, x5, x6, x7 = x[r0 + 4], x[r0 + 5], x[r0 + 6], x[r0 + 7]
    for k in range(x.shape[1]):
        a0, a1, a2, a3 = np.float64(x0[k]), np.float64(x1[k]), np.float64(x2[k]), np.float64(x3[k])
        a4, a5, a6, a7 = np.float64(x4[k]), np.float64(x5[k]), np.float64(x6[k]), np.float64(x7[k])
        s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7))
        q = ((a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3)) + ((a4 * a4 + a5 * a5) + (a6 * a6 + a7 * a7))
        if first:
            o1[k] = s
            o2[k] = q
        else:
            o1[k] += s
            o2[k] += q


@nb.njit(nogil=True, error_model="numpy", cache=True)
def _add_row(xr: np.ndarray, o1: np.ndarray, o2: np.ndarray, first: bool) -> None:
    for k in range(xr.shape[0]):
        a = np.float64(xr[k])
        if first:
            o1[k] = a
            o2[k] = a * a
        else:
            o1[k] += a
            o2[k] += a * a


@nb.njit(nogil=True, error_model="numpy", cache=True)
def column_sums(x: np.ndarray, m: int, c1: np.ndarray, c2: np.ndarray) -> None:
    """For ``x`` ``[rows, cols]`` float32 (C order, ``rows % m == 0``): ``c1[i] = x[i*m:(i+1)*m].sum(0)``
    and ``c2[i] = (x[i*m:(i+1)*m] ** 2).sum(0)``, float64 ``[rows // m, cols]``. Squares of float32
    values are exact in float64, so a flat block gives exactly ``n*v`` and ``n*v*v``."""
    for gi in range(x.shape[0] // m):
        r, end = gi * m, gi * m + m
        first = True
        while r + 8 <= end:
            _add_rows8(x, r, c1[gi], c2[gi], first)
            first = False
            r += 8
        while r < end:
            _add_row(x[r], c1[gi], c2[gi], first)
            first = False
            r += 1


@nb.njit(nogil=True, error_model="numpy", cache=True)
def _cell(v: np.ndarray, o: int, scale: int) -> tuple[float, float, float]:
    """Per-channel sums of ``scale`` adjacent RGB pixels of ``v`` starting at element ``o``."""
    sr = v[o]
    sg = v[o + 1]
    sb = v[o + 2]
    for p in range(1, scale):
        sr += v[o + 3 * p]
        sg += v[o + 3 * p + 1]
        sb += v[o + 3 * p + 2]
    return sr, sg, sb


@nb.njit(nogil=True, error_model="numpy", cache=True)
def _cells_energy(v: np.ndarray, scale: int, c: int, b0: int, cells: np.ndarray, q_row: np.ndarray) -> None:
    """One row of ``c``-px cells: ``cells`` (RGB interleaved) = sums of ``scale`` adjacent columns of
    ``v``, and ``|cell|^2 / c^2`` added to the ``b0``-px box of ``q_row`` holding each cell's
    top-left pixel. One pass (the cells are written and squared together)."""
    inv = 1.0 / (c * c)
    ncell = cells.shape[0] // 3
    if c <= b0:
        per = b0 // c
        for box in range(q_row.shape[0]):
            tot = 0.0
            for i in range(box * per, box * per + per):
                o = 3 * scale * i
                if scale == 2:
                    sr = v[o] + v[o + 3]
                    sg = v[o + 1] + v[o + 4]
                    sb = v[o + 2] + v[o + 5]
                else:
                    sr, sg, sb = _cell(v, o, scale)
                cells[3 * i] = sr
                cells[3 * i + 1] = sg
                cells[3 * i + 2] = sb
                tot += sr * sr + sg * sg + sb * sb
            q_row[box] += tot * inv
    else:
        for i in range(ncell):
            sr, sg, sb = _cell(v, 3 * scale * i, scale)
            cells[3 * i] = sr
            cells[3 * i + 1] = sg
            cells[3 * i + 2] = sb
            q_row[(i * c) // b0] += (sr * sr + sg * sg + sb * sb) * inv


@nb.njit(nogil=True, error_model="numpy", cache=True)
def _rows8_group(x0: np.ndarray, x1: np.ndarray, x2: np.ndarray, x3: np.ndarray, x4: np.ndarray, x5: np.ndarray,
                 x6: np.ndarray, x7: np.ndarray, r0: int, nlev: int, b0: int, q: np.ndarray, s2: np.ndarray,
                 cs0: np.ndarray, cs1: np.ndarray, cs2: np.ndarray, cs3: np.ndarray, sqcol: np.ndarray,
                 cells: np.ndarray) -> None:
    """One group of eight rows ``x0..x7`` (starting at row ``r0``) of ``_cell_energy_rows8``."""
    ncols = x0.shape[0]
    for k in range(ncols):
        a0, a1, a2, a3 = np.float64(x0[k]), np.float64(x1[k]), np.float64(x2[k]), np.float64(x3[k])
        a4, a5, a6, a7 = np.float64(x4[k]), np.float64(x5[k]), np.float64(x6[k]), np.float64(x7[k])
        cs0[k] = a0 + a1
        cs1[k] = a2 + a3
        cs2[k] = a4 + a5
        cs3[k] = a6 + a7
        sqcol[k] += ((a0 * a0 + a1 * a1) + (a2 * a2 + a3 * a3)) + ((a4 * a4 + a5 * a5) + (a6 * a6 + a7 * a7))
    bi = r0 // b0
    _cells_energy(cs0, 2, 2, b0, cells, q[0, bi])
    _cells_energy(cs1, 2, 2, b0, cells, q[0, bi])
    _cells_energy(cs2, 2, 2, b0, cells, q[0, bi])
    _cells_energy(cs3, 2, 2, b0, cells, q[0, bi])
    if nlev >= 2:
        for k in range(ncols):
            cs0[k] += cs1[k]
            cs2[k] += cs3[k]
        _cells_energy(cs0, 4, 4, b0, cells, q[1, bi])
        _cells_energy(cs2, 4, 4, b0, cells, q[1, bi])
    if nlev >= 3:
        for k in range(ncols):
            cs0[k] += cs2[k]
        _cells_energy(cs0, 8, 8, b0, cells, q[2, bi])
    if (r0 + 8) % b0 == 0:
        s2row = s2[bi]
        per = 3 * b0
        for k in range(ncols):
            s2row[k // per] += sqcol[k]
            sqcol[k] = 0.0


@nb.njit(nogil=True, error_model="numpy", cache=True)
def _cell_energy_rows8(x: np.ndarray, nlev: int, b0: int, q: np.ndarray, s2: np.ndarray) -> None:
    """``cell_energy`` for 2 px cells and up to three levels (2, 4, 8 px), eight rows at a time:
    one read of the rows gives the four row-pair sums, the 4- and 8-row sums and the squares."""
    ncols = x.shape[1]
    cs0, cs1, cs2, cs3 = np.empty(ncols), np.empty(ncols), np.empty(ncols), np.empty(ncols)
    sqcol = np.zeros(ncols)
    cells = np.empty(ncols // 2)
    for r0 in range(0, x.shape[0], 8):
        _rows8_group(x[r0], x[r0 + 1], x[r0 + 2], x[r0 + 3], x[r0 + 4], x[r0 + 5], x[r0 + 6], x[r0 + 7], r0,
                     nlev, b0, q, s2, cs0, cs1, cs2, cs3, sqcol, cells)


@nb.njit(nogil=True, error_model="numpy", cache=True)
def cell_energy_u8(img: np.ndarray, ch: int, cw: int, nlev: int, b0: int, q: np.ndarray, s2: np.ndarray) -> None:
    """``cell_energy`` (2 px cells, up to three levels) straight from an 8-bit RGB image ``[h, w * 3]``.

    Each group of eight canvas rows is converted to float32 (``byte * float32(1 / 255)``, the value
    ``load_image`` gives each byte) and padded by edge replication to ``cw`` columns (rows past the image repeat its
    last row) in a small buffer, then summed exactly as ``_cell_energy_rows8`` sums the padded float32
    canvas: same values, same order, so the results are bit-identical, without the float image or the
    padded copy ever being made.
    """
    h, w3 = img.shape[0], img.shape[1]
    ncols = 3 * cw
    scale = np.float32(1.0) / np.float32(255.0)
    buf = np.empty((8, ncols), np.float32)
    cs0, cs1, cs2, cs3 = np.empty(ncols), np.empty(ncols), np.empty(ncols), np.empty(ncols)
    sqcol = np.zeros(ncols)
    cells = np.empty(ncols // 2)
    for r0 in range(0, ch, 8):
        for i in range(8):
            src = img[min(r0 + i, h - 1)]
            row = buf[i]
            for k in range(w3):  # the float32 product load_image computes (vectorised)
                row[k] = np.float32(src[k]) * scale
            for k in range(w3, ncols):  # edge replication of the last pixel
                row[k] = row[k - 3]
        _rows8_group(buf[0], buf[1], buf[2], buf[3], buf[4], buf[5], buf[6], buf[7], r0,
                     nlev, b0, q, s2, cs0, cs1, cs2, cs3, sqcol, cells)


@nb.njit(nogil=True, error_model="numpy", cache=True)
def cell_energy(x: np.ndarray, c0: int, nlev: int, b0: int, q: np.ndarray, s2: np.ndarray) -> None:
    """One pass over ``x`` ``[rows, W*3]`` (float32, RGB interleaved) for the token-resize errors.

    For the cell sizes ``c = c0 * 2**j`` (``j < nlev``), adds ``sum over cells of |S1|^2 / c^2``
    (``S1`` the cell's per-channel sum) to ``q[j]``, and ``sum of x^2`` to ``s2``, both per box of
    ``b0`` px (``q``: float64 ``[nlev, rows / b0, W / b0]``; ``s2``: ``[rows / b0, W / b0]``; a cell
    larger than ``b0`` is added at the box of its top-left pixel). ``rows`` and ``W`` are multiples
    of ``b0`` and of the largest cell; ``c0`` is even. Sums are float64: the rows of a cell row are
    added in pairs, and each coarser cell row is the 2x2 sum of two finished rows of the level below.
    """
    if c0 == 2 and nlev <= 3 and b0 % 8 == 0:
        _cell_energy_rows8(x, nlev, b0, q, s2)
        return
    ncols = x.shape[1]
    width = ncols // 3
    cells = [np.zeros(3 * (width // (c0 << j))) for j in range(nlev)]  # current cell row per level
    pend = [np.zeros(3 * (width // (c0 << j))) for j in range(nlev)]  # first of two rows per level
    colsum = np.zeros(ncols)
    sqcol = np.zeros(ncols)
    for r0 in range(0, x.shape[0], c0):
        for r in range(r0, r0 + c0, 2):
            xa = x[r]
            xb = x[r + 1]
            if r == r0:
                for k in range(ncols):
                    a = np.float64(xa[k])
                    b = np.float64(xb[k])
                    colsum[k] = a + b
                    sqcol[k] += a * a + b * b
            else:
                for k in range(ncols):
                    a = np.float64(xa[k])
                    b = np.float64(xb[k])
                    colsum[k] += a + b
                    sqcol[k] += a * a + b * b
        _cells_energy(colsum, c0, c0, b0, cells[0], q[0, r0 // b0])
        done = r0 // c0 + 1  # cell rows of size c0 finished so far
        for j in range(1, nlev):  # a level-j row is two finished rows of level j - 1
            lower = cells[j - 1]
            pj = pend[j - 1]
            if (done >> (j - 1)) % 2 == 1:
                for k in range(lower.shape[0]):
                    pj[k] = lower[k]
                break
            for k in range(lower.shape[0]):
                pj[k] += lower[k]
            c = c0 << j
            _cells_energy(pj, 2, c, b0, cells[j], q[j, (r0 + c0 - c) // b0])
        if (r0 + c0) % b0 == 0:
            s2row = s2[r0 // b0]
            per = 3 * b0
            for k in range(ncols):
                s2row[k // per] += sqcol[k]
                sqcol[k] = 0.0


@nb.njit(nogil=True, error_model="numpy", cache=True)
def token_energy(tokens: np.ndarray, t: int, main: np.ndarray, off: np.ndarray, y2: np.ndarray,
                 ygy: np.ndarray) -> None:
    """Per ``t x t`` token of ``tokens`` ``[gh*t, gw*t, 3]`` (float32 or float64; sums in float64):
    ``y2 = |Y|^2`` and
    ``ygy = <Y, G Y G>`` for the symmetric tridiagonal ``G`` (diagonal ``main``, ``off``), as
    ``sum (G Y) * (Y G)``; both ``[gh, gw]``, overwritten."""
    gh = tokens.shape[0] // t
    gw = tokens.shape[1] // t
    for a in range(gh):
        for b in range(gw):
            s2 = 0.0
            q = 0.0
            for i in range(t):
                r = a * t + i
                for j in range(t):
                    col = b * t + j
                    for c in range(3):
                        v = np.float64(tokens[r, col, c])
                        gyv = main[i] * v
                        if i > 0:
                            gyv += off[i - 1] * np.float64(tokens[r - 1, col, c])
                        if i < t - 1:
                            gyv += off[i] * np.float64(tokens[r + 1, col, c])
                        ygv = main[j] * v
                        if j > 0:
                            ygv += off[j - 1] * np.float64(tokens[r, col - 1, c])
                        if j < t - 1:
                            ygv += off[j] * np.float64(tokens[r, col + 1, c])
                        s2 += v * v
                        q += gyv * ygv
            y2[a, b] = s2
            ygy[a, b] = q


@nb.njit(nogil=True, error_model="numpy", cache=True)
def square_integral(x: np.ndarray, out: np.ndarray) -> None:
    """``out[i, j]`` = the sum over ``x[:i, :j]`` (``[H, W, 3]``, float32 or float64, any strides) of
    every value squared, in float64: the integral image of the per-pixel sum of squares, ``[H + 1,
    W + 1]``, in one pass (numpy needs a float64 copy, a product and a second pass)."""
    h, w = x.shape[0], x.shape[1]
    for j in range(w + 1):
        out[0, j] = 0.0
    for i in range(h):
        out[i + 1, 0] = 0.0
        run = 0.0
        for j in range(w):
            a = np.float64(x[i, j, 0])
            b = np.float64(x[i, j, 1])
            c = np.float64(x[i, j, 2])
            run += (a * a + b * b) + c * c
            out[i + 1, j + 1] = out[i, j + 1] + run
