"""Hypothesis strategies for images (used by several test modules)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st


@st.composite
def images(draw, min_side: int = 1, max_side: int = 96) -> np.ndarray:
    """A float32 RGB image with structure: random blocks of noise, flat areas and edges."""
    h = draw(st.integers(min_side, max_side))
    w = draw(st.integers(min_side, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    kind = draw(st.sampled_from(["noise", "blocks", "flat", "quantised"]))
    rng = np.random.default_rng(seed)
    if kind == "flat":
        return np.full((h, w, 3), rng.random(), np.float32)
    img = rng.random((h, w, 3)).astype(np.float32)
    if kind == "blocks":
        mask = rng.random((max(1, h // 8 + 1), max(1, w // 8 + 1))) < 0.5
        mask = np.kron(mask, np.ones((8, 8), bool))[:h, :w]
        img[mask] = rng.random(3).astype(np.float32)
    if kind == "quantised":
        img = (np.round(img * 255) / 255).astype(np.float32)
    return img
