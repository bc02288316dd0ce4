"""How much of the image a layout keeps: PSNR and SSIM of its reconstruction.

The reconstruction is what a fixed-width (``size x size``) patch embedding sees: each box
down- (or up-) sampled to ``size`` and painted back (``adapatch.reconstruct``). SSIM is
scikit-image's (``structural_similarity``), computed on the luminance channel.
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from .layout import PatchLayout
from .patches import reconstruct

MAX_PSNR = 100.0
"""PSNR reported for a perfect reconstruction (instead of infinity, so it stays JSON-friendly)."""


def psnr_ssim(reference: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """PSNR (dB, RGB, data range 1) and SSIM (luminance, data range 1) between two images."""
    ref = np.asarray(reference, np.float64)
    tst = np.asarray(test, np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"images must have the same shape, got {ref.shape} and {tst.shape}")
    mse = float(np.mean((ref - tst) ** 2))
    psnr = MAX_PSNR if mse <= 1e-10 else min(MAX_PSNR, float(peak_signal_noise_ratio(ref, tst, data_range=1.0)))
    lum = np.array([0.299, 0.587, 0.114])
    ry, ty = ref @ lum, tst @ lum
    win = min(7, *ry.shape)
    if win % 2 == 0:
        win -= 1
    if win < 3:  # SSIM needs a 3x3 window at least; tiny images: 1 - normalised MSE of luminance
        ssim = float(1.0 - np.mean((ry - ty) ** 2))
    else:
        ssim = float(structural_similarity(ry, ty, data_range=1.0, win_size=win))
    return {"psnr": psnr, "ssim": ssim, "mse": mse}


def fidelity(image: np.ndarray, layout: PatchLayout, size: int = 16,
             device: str | torch.device | None = "auto") -> dict[str, float]:
    """PSNR/SSIM of ``reconstruct(image, layout, size)`` against ``image``."""
    rec = reconstruct(image, layout, size, device)
    return psnr_ssim(image, rec)
