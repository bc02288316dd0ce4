"""Parameter checks that raise ``ValueError`` naming the parameter and its allowed range."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np


def check_power_of_two(name: str, value: Any, low: int = 1, high: int = 4096) -> int:
    """Return ``value`` as int if it is a power of two in ``[low, high]``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer power of two in [{low}, {high}], got {value!r}")
    v = int(value)
    if v < low or v > high or v & (v - 1) != 0:
        raise ValueError(f"{name} must be a power of two in [{low}, {high}], got {v}")
    return v


def check_int(name: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` as int if it is an integer within the bounds (inclusive)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be an integer{_range(low, high)}, got {v}")
    return v


def check_float(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """Return ``value`` as float if it is a finite real within the bounds (inclusive)."""
    try:
        if isinstance(value, (bool, str)):
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number{_range(low, high)}, got {value!r}") from None
    if not math.isfinite(v) or (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be a finite number{_range(low, high)}, got {value!r}")
    return v


def check_choice(name: str, value: Any, choices: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return value


def check_rgb(image: Any, batch: bool = False) -> np.ndarray:
    """``image`` as a C-contiguous float32 RGB array ``[H, W, 3]`` (with ``batch``: also
    ``[B, H, W, 3]``, returned as a batch), every side at least 1. The one image check of the
    library, so every entry point says the same thing."""
    a = np.asarray(image)
    ok = a.ndim == 3 or (batch and a.ndim == 4)
    if not ok or a.shape[-1] != 3 or min(a.shape[-3:-1], default=0) < 1:
        shapes = "[H, W, 3] (or a batch [B, H, W, 3])" if batch else "[H, W, 3]"
        raise ValueError(f"image must be a float RGB array {shapes} in [0, 1], got shape {a.shape}; "
                         "adapatch.load_image converts files and other formats")
    if batch and a.ndim == 3:
        a = a[None]
    return np.ascontiguousarray(a, dtype=np.float32)


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" in [{low}, {high}]"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""
