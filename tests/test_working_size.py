"""One working size: an image over 2048x2048 gives the same layout in the app's loader, in
``python -m adapatch IMAGE`` and in dataset calibration, at the same threshold."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import adapatch as ap
from adapatch.app_support.images import decode_upload
from adapatch.cli import main as cli_main
from adapatch.dataset import scan
from adapatch.dataset.records import CurveSettings

LAMBDA = 40.0


@pytest.fixture(scope="module")
def big_png(tmp_path_factory) -> tuple[bytes, str]:
    """A 2200x1990 PNG (4.4 MP: over the working size) made from a real photo plus seeded noise."""
    import cv2
    import skimage.data as sd
    rng = np.random.default_rng(3)
    photo = cv2.resize(sd.astronaut(), (2200, 1990), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    photo += rng.integers(-6, 7, photo.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(buf, format="PNG")
    folder = tmp_path_factory.mktemp("big")
    (folder / "big.png").write_bytes(buf.getvalue())
    return buf.getvalue(), str(folder)


def test_work_size_rule():
    assert ap.WORK_MAX_PIXELS == 2048 * 2048
    assert ap.work_size(2048, 2048) is None
    assert ap.work_size(3000, 3000) == (2048, 2048)
    assert ap.work_size(3000, 3000, 0) is None  # 0: full resolution
    h, w = ap.work_size(1990, 2200)
    assert h * w <= ap.WORK_MAX_PIXELS and abs(w / h - 2200 / 1990) < 0.01


def test_bytes_and_floats_of_a_file_downscale_alike(big_png):
    """Calibration reads 8-bit files as bytes (``load_rgb8``), the app as floats: same working image."""
    from adapatch.image_io import load_rgb8
    data, _ = big_png
    a, sa = ap.to_working_size(load_rgb8(data))
    b, sb = ap.to_working_size(ap.load_image(data))
    assert sa == sb == ap.work_size(1990, 2200)
    np.testing.assert_array_equal(a, b)


def test_app_cli_and_calibration_give_the_same_tokens(big_png, tmp_path):
    data, folder = big_png
    entry = decode_upload("big.png", data)
    assert entry.resize is not None and entry.height * entry.width <= ap.WORK_MAX_PIXELS
    app_layout = ap.quadtree(entry.array, importance="distortion", threshold=LAMBDA, min_size=8, max_size=64)

    with scan(folder, CurveSettings(min_size=8, max_size=64, importance="distortion"), workers=1) as store:
        ds_layout = store.layout(0, LAMBDA)
    assert (ds_layout.height, ds_layout.width) == (entry.height, entry.width)
    assert ds_layout.num_tokens == app_layout.num_tokens
    np.testing.assert_array_equal(ds_layout.boxes, app_layout.boxes)

    out = tmp_path / "layout.json"
    assert cli_main([f"{folder}/big.png", "--importance", "distortion", "--threshold", str(LAMBDA),
                     "--min-size", "8", "--max-size", "64", "--json", str(out)]) == 0
    cli_layout = ap.PatchLayout.from_dict(json.loads(out.read_text()))
    assert cli_layout.num_tokens == app_layout.num_tokens
    assert (cli_layout.height, cli_layout.width) == (entry.height, entry.width)


def test_full_resolution_is_one_flag_away(big_png, tmp_path):
    data, folder = big_png
    full = ap.load_image(data)
    ref = ap.quadtree(full, importance="distortion", threshold=LAMBDA, min_size=8, max_size=64)
    with scan(folder, CurveSettings(min_size=8, max_size=64, importance="distortion", work_pixels=0),
              workers=1) as store:
        lay = store.layout(0, LAMBDA)
    assert (lay.height, lay.width) == full.shape[:2]
    assert lay.num_tokens == ref.num_tokens
    out = tmp_path / "full.json"
    assert cli_main([f"{folder}/big.png", "--importance", "distortion", "--threshold", str(LAMBDA),
                     "--min-size", "8", "--max-size", "64", "--work-pixels", "0", "--json", str(out)]) == 0
    assert ap.PatchLayout.from_dict(json.loads(out.read_text())).num_tokens == ref.num_tokens
