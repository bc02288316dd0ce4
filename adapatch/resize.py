"""Resizing whole images: area interpolation to a size, or down to a pixel count.

The app computes on images of at most a few megapixels; ``downscale_to_pixels`` is the one
place that decides the size, and ``resize_image`` the one call that makes it, so an exported
snippet reproduces the app's pixels exactly (``ap.resize_image(image, (h, w))``).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .validation import check_int


def fit_size(height: int, width: int, max_pixels: int) -> tuple[int, int] | None:
    """``(h, w)`` that brings ``height x width`` to at most ``max_pixels`` (aspect kept), or None if it fits."""
    height, width = check_int("height", height, 1), check_int("width", width, 1)
    max_pixels = check_int("max_pixels", max_pixels, 1)
    if height * width <= max_pixels:
        return None
    f = (max_pixels / (height * width)) ** 0.5
    h, w = max(1, int(height * f)), max(1, int(width * f))
    if h * w > max_pixels:  # a side clamped to 1 pixel (extreme aspect ratio): shrink the other
        h, w = (h, max(1, max_pixels // h)) if h <= w else (max(1, max_pixels // w), w)
    return h, w


def resize_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` (``[H, W, C]`` float) resized to ``size = (h, w)`` by area interpolation (OpenCV), float32."""
    h, w = (check_int("size[0]", size[0], 1), check_int("size[1]", size[1], 1))
    a = np.asarray(image, np.float32)
    if a.ndim not in (2, 3) or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"image must be [H, W] or [H, W, C], got shape {a.shape}")
    if a.shape[:2] == (h, w):
        return np.ascontiguousarray(a)
    out = cv2.resize(a, (w, h), interpolation=cv2.INTER_AREA)
    if a.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel
        out = out[:, :, None]
    return np.ascontiguousarray(out, dtype=np.float32)


def downscale_to_pixels(image: np.ndarray, max_pixels: int) -> tuple[np.ndarray, tuple[int, int] | None]:
    """``(image, None)`` when it has at most ``max_pixels`` pixels, else ``(resized, (h, w))``."""
    size = fit_size(image.shape[0], image.shape[1], max_pixels)
    if size is None:
        return image, None
    return resize_image(image, size), size


@lru_cache(maxsize=256)
def area_weights(src: int, dst: int) -> np.ndarray:
    """``[dst, src]`` float64 matrix of area interpolation along one axis (rows sum to 1).

    Output pixel ``i`` covers ``[i * src / dst, (i + 1) * src / dst)`` of the input; its weight on
    input pixel ``j`` is the overlap with ``[j, j + 1)`` divided by the covered length. Exact
    integer arithmetic (everything scaled by ``dst``).
    """
    i = np.arange(dst)[:, None]
    j = np.arange(src)[None, :]
    overlap = np.minimum((j + 1) * dst, (i + 1) * src) - np.maximum(j * dst, i * src)
    return np.clip(overlap, 0, None) / float(src)
