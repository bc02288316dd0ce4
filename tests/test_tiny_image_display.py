"""A tiny image is drawn enlarged by nearest neighbour (a crisp block per pixel), not sent to the browser
at 12x9 to be stretched into a blur; a large image is drawn at display size as before."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytest.importorskip("streamlit")

from adapatch.app_support import compute, demo  # noqa: E402
from adapatch.app_support.images import decode_upload  # noqa: E402


def _entry(h: int, w: int):
    from PIL import Image

    a = np.random.default_rng(h * w).integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return decode_upload(f"t{h}x{w}.png", buf.getvalue())


def _jpeg_shape(data: bytes) -> tuple[int, int]:
    from PIL import Image

    return Image.open(io.BytesIO(data)).size[::-1]


@pytest.mark.parametrize("h, w, factor", [(9, 12, 42), (1, 1, 64), (64, 64, 8), (300, 200, 1), (600, 900, 1)])
def test_small_image_factor(h: int, w: int, factor: int) -> None:
    assert compute.small_image_factor(h, w) == factor


def test_the_patch_layout_overlay_of_a_tiny_image_is_enlarged() -> None:
    entry = _entry(9, 12)
    settings = demo.scene_settings(demo.SCENES[0], entry.array, "cpu")
    shape = _jpeg_shape(compute.overlay_jpeg(entry, settings))
    assert shape == (9 * 42, 12 * 42)
    big = _entry(600, 900)
    assert _jpeg_shape(compute.overlay_jpeg(big, demo.scene_settings(demo.SCENES[0], big.array, "cpu"))) == (600, 900)
