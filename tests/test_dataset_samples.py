"""The bundled sample dataset (``adapatch/assets/dataset``, written by benchmarks/make_dataset_samples.py):
enough images in every category, all loadable, all named in LICENSE.md, small, and varied in size."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from adapatch import load_image
from adapatch.samples import (
    DATASET_CATEGORIES,
    DATASET_DIR,
    dataset_category,
    dataset_sample_paths,
)

MIN_PER_CATEGORY = {"photo": 12, "document": 8, "diagram": 8, "flat": 8, "digits": 8}


@pytest.fixture(scope="module")
def paths():
    return dataset_sample_paths()


@pytest.fixture(scope="module")
def images(paths):
    return {p.name: load_image(p) for p in paths}


def test_enough_images_in_every_category(paths):
    assert len(paths) >= 44
    counts = Counter(dataset_category(p) for p in paths)
    assert set(counts) == set(DATASET_CATEGORIES)
    for cat, n in MIN_PER_CATEGORY.items():
        assert counts[cat] >= n, (cat, counts)


def test_paths_sorted_and_named_by_category(paths):
    assert paths == sorted(paths)
    for p in paths:
        assert re.fullmatch(r"(photo|document|diagram|flat|digits)_[a-z0-9_]+\.(png|jpg)", p.name), p.name
        # photos are JPEG, everything else lossless PNG
        assert p.suffix == (".jpg" if dataset_category(p) == "photo" else ".png"), p.name


def test_dataset_category_rejects_other_names():
    assert dataset_category("digits_cluttered_3.png") == "digits"
    for bad in ("astronaut.jpg", "video_clip.png", "photo.jpg"):
        with pytest.raises(ValueError):
            dataset_category(bad)


def test_every_image_loads(images):
    for name, img in images.items():
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3, name
        assert 0.0 <= img.min() and img.max() <= 1.0, name


def test_every_image_is_in_the_licence_file(paths):
    text = (DATASET_DIR / "LICENSE.md").read_text()
    listed = set(re.findall(r"^\| ([^ |]+) \|", text, flags=re.MULTILINE)) - {"file"}
    assert {p.name for p in paths} == listed
    assert "CC0" in text and "CC BY 2.0" in text


def test_folder_is_small():
    total = sum(f.stat().st_size for f in DATASET_DIR.iterdir() if f.is_file())
    assert total < 2 * 1024 * 1024, total


def test_sizes_and_aspects_vary(images):
    shapes = {name: img.shape[:2] for name, img in images.items()}
    assert any(max(h, w) / min(h, w) >= 4 for h, w in shapes.values())  # the panorama
    assert any(h <= 32 and w <= 32 for h, w in shapes.values())  # the tiny icon
    assert any(h > w for h, w in shapes.values()) and any(w > h for h, w in shapes.values())
    assert any(h == w for h, w in shapes.values())
    # small images, except the deliberate panorama
    big = [n for n, (h, w) in shapes.items() if max(h, w) > 320]
    assert len(big) <= 1 and all(max(shapes[n]) <= 640 for n in big), big
