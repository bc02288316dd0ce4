"""Shared fixtures: real photos from skimage.data and seeded random images."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data
    return data.astronaut().astype(np.float32) / 255


@pytest.fixture(scope="session")
def page() -> np.ndarray:
    from skimage import data
    g = data.page().astype(np.float32) / 255
    return np.repeat(g[:, :, None], 3, axis=2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
