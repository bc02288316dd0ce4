"""Small image helpers shared by the library tests."""

from __future__ import annotations

import numpy as np


def rgb01(a: np.ndarray) -> np.ndarray:
    """A scikit-image array (grey, RGB or RGBA, 8-bit) as contiguous float32 RGB in [0, 1]."""
    a = np.asarray(a)
    a = np.repeat(a[:, :, None], 3, axis=2) if a.ndim == 2 else a[:, :, :3]
    return np.ascontiguousarray(a, np.float32) / 255.0
