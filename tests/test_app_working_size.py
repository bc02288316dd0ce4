"""One image over the working size (a 3000x3000 upload) at one lambda: Patch layout, the command line
and dataset calibration give the same tokens (each computes at 2048x2048)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import adapatch as ap
from adapatch.cli import main as cli_main
from adapatch.dataset import scan
from adapatch.dataset.records import CurveSettings

from app_helpers import app, metric, ok

THRESHOLD = "w_threshold"


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory) -> tuple[bytes, str]:
    import cv2
    import skimage.data as sd
    rng = np.random.default_rng(11)
    photo = cv2.resize(sd.coffee(), (3000, 3000), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    photo += rng.integers(-4, 5, photo.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).save(buf, format="JPEG", quality=90)
    folder = tmp_path_factory.mktemp("big3000")
    (folder / "big_3000.jpg").write_bytes(buf.getvalue())
    return buf.getvalue(), str(folder)


def test_patch_layout_cli_and_calibration_agree_on_a_3000px_upload(big_jpeg, tmp_path) -> None:
    data, folder = big_jpeg
    at = app().run()
    at.file_uploader(key="uploader").set_value(("big_3000.jpg", data, "image/jpeg")).run()
    at.selectbox(key="w_strategy").set_value("quadtree").run()
    at.selectbox(key="w_importance").set_value("distortion").run()
    at.toggle(key="w_use_budget").set_value(False).run()
    ok(at)
    lam = float(at.select_slider(key=THRESHOLD).value)
    lo, hi = at.select_slider(key="w_sizes").value
    page_tokens = int(metric(at, "Tokens").replace(",", ""))
    assert any("computed at 2048x2048" in c.value for c in at.sidebar.caption), [c.value for c in at.sidebar.caption]

    out = tmp_path / "layout.json"
    assert cli_main([f"{folder}/big_3000.jpg", "--importance", "distortion", "--threshold", repr(lam),
                     "--min-size", str(lo), "--max-size", str(hi), "--json", str(out)]) == 0
    cli = ap.PatchLayout.from_dict(json.loads(out.read_text()))
    assert (cli.height, cli.width) == (2048, 2048)
    assert cli.num_tokens == page_tokens

    with scan(folder, CurveSettings(min_size=lo, max_size=hi, importance="distortion"), workers=1) as store:
        assert store.layout(0, lam).num_tokens == page_tokens
