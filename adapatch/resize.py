"""Resizing whole images: area interpolation to a size, down to a pixel count, or to the working size.

The working size (``WORK_MAX_PIXELS``, 2048x2048 = 4.2 MP) is the one rule of where layouts are
computed: the app (every page, Dataset included), ``python -m adapatch IMAGE`` and dataset
calibration (``calibrate``, ``layouts``) downscale larger images to it before any layout, so the
same image and threshold give the same tokens everywhere. ``--work-pixels 0`` (``work_pixels=0``)
computes at full resolution. ``downscale_to_pixels`` is the one place that decides the size and
``resize_image`` the one call that makes it, so an exported snippet reproduces the app's pixels
exactly (``ap.resize_image(image, (h, w))``).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .image_io import BYTE_TO_FLOAT
from .validation import check_int

WORK_MAX_PIXELS = 2048 * 2048
"""The working size: images with more pixels are downscaled (area interpolation, aspect kept) to at
most this many before any layout is computed, by the app, the command line and calibration alike.
Large enough for any ViT or VLM input resolution in use; small enough that every slider stays live."""


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


def work_size(height: int, width: int, work_pixels: int = WORK_MAX_PIXELS) -> tuple[int, int] | None:
    """``(h, w)`` of the working image for a ``height x width`` image, or None when it is computed as it
    is (at most ``work_pixels`` pixels, or ``work_pixels == 0``: full resolution)."""
    work_pixels = check_int("work_pixels", work_pixels, 0)
    return None if work_pixels == 0 else fit_size(height, width, work_pixels)


def to_working_size(image: np.ndarray, work_pixels: int = WORK_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int] | None]:
    """``(image, None)`` when ``image`` is computed as it is, else ``(downscaled float32, (h, w))``;
    uint8 images are mapped to floats the way ``load_image`` maps them before resizing."""
    size = work_size(image.shape[0], image.shape[1], work_pixels)
    if size is None:
        return image, None
    if image.dtype == np.uint8:
        image = BYTE_TO_FLOAT[image]
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
