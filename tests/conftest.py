"""Shared fixtures: real photos from skimage.data and seeded random images; the ``app`` and ``e2e``
markers, set by path so that ``pytest -m "not app and not e2e"`` runs the library tests alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``tests/test_app_*.py`` drive the app in AppTest (``app``); ``tests/e2e`` in a browser (``e2e``).
    AppTests in other files carry ``@pytest.mark.app`` themselves."""
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if TESTS / "e2e" in path.parents:
            item.add_marker(pytest.mark.e2e)
        elif path.parent == TESTS and path.name.startswith("test_app_"):
            item.add_marker(pytest.mark.app)


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
