"""How much of the image a layout keeps: PSNR and SSIM of its reconstruction.

The reconstruction is what a fixed-width (``size x size``) patch embedding sees: each box
down- (or up-) sampled to ``size`` and painted back (``adapatch.reconstruct``). SSIM is
scikit-image's (``structural_similarity``), computed on the luminance channel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from skimage.metrics import structural_similarity

from .layout import PatchLayout

if TYPE_CHECKING:
    import torch

MAX_PSNR = 100.0
"""PSNR reported for a perfect reconstruction (instead of infinity, so it stays JSON-friendly)."""


def psnr_ssim(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """PSNR (dB, RGB, data range 1) and SSIM (luminance, data range 1) between two images.

    Works in float32 (scikit-image keeps float32 inputs in float32, about twice as fast as
    float64 at 1024 px); the squared error is accumulated in float64.
    """
    ref = np.asarray(reference, np.float32)
    tst = np.asarray(test, np.float32)
    if ref.shape != tst.shape:
        raise ValueError(f"images must have the same shape, got {ref.shape} and {tst.shape}")
    diff = ref - tst
    flat = diff.ravel().astype(np.float64)
    mse = float(np.dot(flat, flat) / max(flat.size, 1))
    psnr = MAX_PSNR if mse <= 1e-10 else min(MAX_PSNR, 10.0 * float(np.log10(1.0 / mse)))
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    ry, ty = ref @ lum, tst @ lum
    win = min(7, *ry.shape)
    if win % 2 == 0:
        win -= 1
    if win < 3:  # SSIM needs a 3x3 window at least; tiny images: 1 - normalised MSE of luminance
        ssim = float(1.0 - np.mean((ry.astype(np.float64) - ty) ** 2))
    else:
        ssim = float(structural_similarity(ry, ty, data_range=1.0, win_size=win))
    return {"psnr": psnr, "ssim": ssim, "mse": mse}


def fidelity(image: np.ndarray, layout: PatchLayout, size: int = 16,
             device: str | torch.device | None = "auto") -> dict[str, float]:
    """PSNR/SSIM of ``reconstruct(image, layout, size)`` against ``image``."""
    from .patches import reconstruct  # torch loads here, not with ``adapatch``

    rec = reconstruct(image, layout, size, device)
    return psnr_ssim(image, rec)
