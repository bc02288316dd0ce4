"""How much of the image a layout keeps: PSNR and SSIM of its reconstruction.

The reconstruction is what a fixed-width (``size x size``) patch embedding sees: each box
down- (or up-) sampled to ``size`` and painted back (``adapatch.reconstruct``). SSIM is
scikit-image's ``structural_similarity`` with its defaults (7x7 uniform window, K1 = 0.01,
K2 = 0.03, sample covariance, the mean over the pixels whose window lies inside the image),
computed on the luminance channel; ``ssim`` computes the same number in one compiled pass (numba,
imported on first use), about 8x faster (agreement with scikit-image is tested).

On the CPU, ``fidelity`` reconstructs with OpenCV area resizes of the whole canvas, one per patch
size (``reconstruct_cpu``): every power-of-two layout, uniform grid of any patch size and
multiscale layout has its boxes on its size's grid, so no resized pixel mixes two boxes and the
result is ``reconstruct``'s up to float32 rounding (tested). Other layouts and other devices go
through ``adapatch.reconstruct`` (torch).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

import cv2
import numpy as np

from .layout import PatchLayout

if TYPE_CHECKING:
    import torch

MAX_PSNR = 100.0
"""PSNR reported for a perfect reconstruction (instead of infinity, so it stays JSON-friendly)."""
LUMA = np.array([0.299, 0.587, 0.114], np.float32)
"""Luminance weights of the SSIM channel (ITU-R BT.601)."""
SSIM_WIN = 7


def luminance(image: np.ndarray) -> np.ndarray:
    """Float32 ``[H, W]`` luminance of an RGB ``[H, W, 3]`` image (``LUMA``)."""
    return np.asarray(image, np.float32) @ LUMA


@cache
def _ssim_kernel():
    """The compiled SSIM loop (numba, imported on first use and cached on disk, like ``kernels``)."""
    import numba as nb

    @nb.njit(nogil=True, error_model="numpy", cache=True)
    def mean_ssim(x, y, win, c1, c2):  # pragma: no cover - compiled
        h, w = x.shape
        p = (win - 1) // 2
        inv = 1.0 / (win * win)
        cov = win * win / (win * win - 1.0)  # sample covariance, as scikit-image's default
        # per column: sums of x, y, x^2, y^2, xy over the window's rows (float64, sliding)
        sx, sy = np.zeros(w), np.zeros(w)
        sxx, syy, sxy = np.zeros(w), np.zeros(w), np.zeros(w)
        for r in range(win):
            for j in range(w):
                a, b = np.float64(x[r, j]), np.float64(y[r, j])
                sx[j] += a
                sy[j] += b
                sxx[j] += a * a
                syy[j] += b * b
                sxy[j] += a * b
        total = 0.0
        for r in range(p, h - p):
            if r > p:  # slide down: add row r + p, drop row r - p - 1
                ra, rd = r + p, r - p - 1
                for j in range(w):
                    a, b = np.float64(x[ra, j]), np.float64(y[ra, j])
                    c, d = np.float64(x[rd, j]), np.float64(y[rd, j])
                    sx[j] += a - c
                    sy[j] += b - d
                    sxx[j] += a * a - c * c
                    syy[j] += b * b - d * d
                    sxy[j] += a * b - c * d
            hx = hy = hxx = hyy = hxy = 0.0
            for j in range(win):
                hx += sx[j]
                hy += sy[j]
                hxx += sxx[j]
                hyy += syy[j]
                hxy += sxy[j]
            for j in range(p, w - p):
                if j > p:  # slide right
                    a, d = j + p, j - p - 1
                    hx += sx[a] - sx[d]
                    hy += sy[a] - sy[d]
                    hxx += sxx[a] - sxx[d]
                    hyy += syy[a] - syy[d]
                    hxy += sxy[a] - sxy[d]
                ux, uy = hx * inv, hy * inv
                vx = cov * (hxx * inv - ux * ux)
                vy = cov * (hyy * inv - uy * uy)
                vxy = cov * (hxy * inv - ux * uy)
                total += ((2.0 * ux * uy + c1) * (2.0 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
        return total / ((h - 2 * p) * (w - 2 * p))

    return mean_ssim


def ssim(x: np.ndarray, y: np.ndarray, win_size: int = SSIM_WIN, data_range: float = 1.0) -> float:
    """Mean SSIM of two ``[H, W]`` images: scikit-image's ``structural_similarity(x, y,
    win_size=win_size, data_range=data_range)`` with its other defaults (uniform window, K1 = 0.01,
    K2 = 0.03, sample covariance).

    Like scikit-image, only pixels whose ``win_size`` window lies wholly inside the image count
    (the border of ``(win_size - 1) // 2`` pixels is left out), so the border mode never matters.
    One compiled pass with sliding window sums in float64 (about 8 ms at 1024 x 1024 on one core,
    scikit-image about 60-90 ms); it agrees with scikit-image in float64 to about 1e-13.
    """
    x = np.ascontiguousarray(x, np.float32)
    y = np.ascontiguousarray(y, np.float32)
    if x.shape != y.shape or x.ndim != 2:
        raise ValueError(f"ssim needs two [H, W] images of the same shape, got {x.shape} and {y.shape}")
    if win_size % 2 != 1 or win_size < 3 or win_size > min(x.shape):
        raise ValueError(f"win_size must be odd, >= 3 and <= the image's sides, got {win_size} for {x.shape}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return float(_ssim_kernel()(x, y, int(win_size), float(c1), float(c2)))


def psnr_ssim(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """PSNR (dB, RGB, data range 1) and SSIM (luminance, data range 1) between two images.

    Works in float32 (as scikit-image does with float32 inputs); the squared error is
    accumulated in float64.
    """
    ref = np.ascontiguousarray(reference, np.float32)
    tst = np.ascontiguousarray(test, np.float32)
    if ref.shape != tst.shape:
        raise ValueError(f"images must have the same shape, got {ref.shape} and {tst.shape}")
    if ref.ndim == 3 and ref.shape[2] == 3:
        sse = float(cv2.norm(ref, tst, cv2.NORM_L2SQR))  # float64 accumulation
    else:
        flat = (ref - tst).ravel().astype(np.float64)
        sse = float(np.dot(flat, flat))
    mse = sse / max(ref.size, 1)
    psnr = MAX_PSNR if mse <= 1e-10 else min(MAX_PSNR, 10.0 * float(np.log10(1.0 / mse)))
    return {"psnr": psnr, "ssim": ssim_luminance(luminance(ref), luminance(tst)), "mse": mse}


def ssim_luminance(ref: np.ndarray, test: np.ndarray) -> float:
    """The SSIM ``psnr_ssim`` reports, from two luminance images ``[H, W]``: ``ssim`` with a 7x7
    window (smaller, odd, on images under 7 px); under 3 px, 1 - the mean squared difference."""
    win = min(SSIM_WIN, *ref.shape)
    if win % 2 == 0:
        win -= 1
    if win < 3:  # SSIM needs a 3x3 window at least; tiny images: 1 - normalised MSE of luminance
        return float(1.0 - np.mean((np.asarray(ref, np.float64) - test) ** 2))
    return ssim(ref, test, win_size=win, data_range=1.0)


def _on_size_grids(layout: PatchLayout) -> bool:
    """Every box (token or dropped) starts on its own size's grid, which divides the canvas."""
    ch, cw = layout.canvas
    for b in (layout.boxes, layout.dropped):
        if len(b) and (((b[:, 0] % b[:, 2]) != 0).any() or ((b[:, 1] % b[:, 2]) != 0).any()
                       or ((ch % b[:, 2]) != 0).any() or ((cw % b[:, 2]) != 0).any()):
            return False
    return True


def _size_mask(boxes: np.ndarray, s: int, canvas: tuple[int, int]) -> np.ndarray:
    """uint8 ``[ch, cw]`` mask of the boxes of size ``s`` (on the ``s`` grid)."""
    ch, cw = canvas
    grid = np.zeros((ch // s, cw // s), np.uint8)
    sel = boxes[boxes[:, 2] == s]
    grid[sel[:, 0] // s, sel[:, 1] // s] = 1
    return cv2.resize(grid, (cw, ch), interpolation=cv2.INTER_NEAREST)


def resample_canvas(canvas: np.ndarray, s: int, size: int = 16) -> np.ndarray:
    """``canvas`` (``[ch, cw]`` or ``[ch, cw, C]`` float32, sides multiples of ``s``) with every box
    of its ``s`` grid area-resized to ``size`` and back: what ``reconstruct`` paints for boxes of
    size ``s``. The boxes are aligned, so one OpenCV area resize of the canvas each way is every
    box's own resize (no output pixel straddles two boxes)."""
    ch, cw = canvas.shape[:2]
    if s == size or (s < size and size % s == 0):  # seen pixel for pixel
        return canvas
    if s > size and s % size == 0:  # block means, each repeated: exact integer steps
        k = s // size
        small = cv2.resize(canvas, (cw // k, ch // k), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (cw, ch), interpolation=cv2.INTER_NEAREST)
    tokens = cv2.resize(canvas, (cw // s * size, ch // s * size), interpolation=cv2.INTER_AREA)
    return cv2.resize(tokens, (cw, ch), interpolation=cv2.INTER_AREA)


def reconstruct_cpu(image: np.ndarray, layout: PatchLayout, size: int = 16) -> np.ndarray | None:
    """``reconstruct(image, layout, size)`` on the CPU without torch (float32 ``[H, W, 3]``), or
    None when a box is off its size's grid (custom layouts: use ``reconstruct``).

    Per patch size, the whole padded canvas is area-resized to tokens and back
    (``resample_canvas``) and copied where that size's boxes are; dropped boxes get the image's
    mean colour, as in ``reconstruct``.
    """
    img = np.asarray(image, np.float32)
    h, w = layout.height, layout.width
    if img.shape != (h, w, 3) or not _on_size_grids(layout):
        return None
    ch, cw = layout.canvas
    canvas = img if (ch, cw) == (h, w) else cv2.copyMakeBorder(img, 0, ch - h, 0, cw - w, cv2.BORDER_REPLICATE)
    canvas = np.ascontiguousarray(canvas)
    sizes, counts = np.unique(layout.boxes[:, 2], return_counts=True)
    by_area = [int(s) for s in sizes[np.argsort(-(counts * sizes.astype(np.int64) ** 2), kind="stable")]]
    out = None
    for s in by_area:  # the size covering the most area first: it needs no mask
        rec = resample_canvas(canvas, s, size)
        if out is None:
            out = rec.copy() if rec is canvas else rec  # never the caller's array
        else:
            cv2.copyTo(rec, _size_mask(layout.boxes, s, (ch, cw)), out)
    if len(layout.dropped):
        mean = img.reshape(-1, 3).mean(axis=0, dtype=np.float64).astype(np.float32)
        if out is None:
            out = np.empty_like(canvas)
        fill = np.empty_like(canvas)
        fill[:] = mean
        for s in np.unique(layout.dropped[:, 2]):
            cv2.copyTo(fill, _size_mask(layout.dropped, int(s), (ch, cw)), out)
    assert out is not None  # a layout has boxes or dropped boxes
    return np.ascontiguousarray(out[:h, :w])


def _cpu(device) -> bool:
    """Whether the OpenCV path may answer: on the CPU, and for ``"auto"`` (the OpenCV path is exact,
    needs no torch import and beats a host-to-device copy for one image; CUDA runs when asked by name)."""
    if device is None or (isinstance(device, str) and device in ("cpu", "auto")):
        return True
    from .device import resolve_device  # torch: only to ask whether "auto" means CUDA

    return resolve_device(device).type == "cpu"


def fidelity(image: np.ndarray, layout: PatchLayout, size: int = 16,
             device: str | torch.device | None = "auto") -> dict[str, float]:
    """PSNR/SSIM of ``reconstruct(image, layout, size)`` against ``image``.

    On the CPU and with ``"auto"`` the reconstruction is ``reconstruct_cpu`` (OpenCV) whenever the
    layout's boxes lie on their sizes' grids; otherwise, and on CUDA named explicitly, ``reconstruct``
    (torch; the same numbers, tested).
    """
    rec = None
    if isinstance(image, np.ndarray) and isinstance(size, (int, np.integer)) and 1 <= size <= 1024 and _cpu(device):
        rec = reconstruct_cpu(image, layout, int(size))
    if rec is None:
        from .patches import reconstruct  # torch loads here, not with ``adapatch``

        rec = reconstruct(image, layout, size, device)
    return psnr_ssim(image, rec)
