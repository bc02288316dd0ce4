"""The Demo on the user's own images in Chromium: upload images the project does not bundle (skimage's
text, a cat/brick composite of an odd size and a 12x9 picture), run the scenes on the sidebar's image,
and check that each takeaway's "more"/"less" follows the PSNR metrics shown beside it. Screenshots:
``test-artifacts/e2e/demo_own/<image>_step<n>.png`` (for a person to look at)."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest

from adapatch.app_support import demo
from tests.e2e import test_page_screenshots as shots

skdata = pytest.importorskip("skimage.data")


def _png(a: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(a, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _images() -> dict[str, bytes]:
    from PIL import Image

    text = np.stack([skdata.text()] * 3, -1)
    cat, brick = skdata.chelsea(), np.stack([skdata.brick()] * 3, -1)
    both = np.concatenate([cat[:300, :400], np.asarray(Image.fromarray(brick).resize((601, 300)))], 1)
    tiny = np.asarray(Image.fromarray(cat).resize((12, 9)))
    return {"skimage_text.png": _png(text), "cat_brick_1001x300.png": _png(both), "tiny_12x9.png": _png(tiny)}


def _psnrs(main) -> list[str]:
    metric = main.locator('[data-testid="stMetric"]').filter(
        has=main.page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(r"^\s*PSNR \(dB\)\s*$")))
    return [v.inner_text().strip() for v in metric.locator('[data-testid="stMetricValue"]').all()]


def test_the_demo_on_uploaded_images(page, app_url, artifacts, tmp_path):
    out = artifacts / "demo_own"
    page.set_viewport_size(shots.VIEWPORT)
    page.goto(app_url)
    main = page.locator('[data-testid="stMain"]')
    main.locator("h1").first.wait_for(timeout=120_000)
    shots._settle(page)
    shots._go(page, "Demo", "demo-story")
    for name, data in _images().items():
        path = tmp_path / name
        path.write_bytes(data)
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
        shots._settle(page)
        main.get_by_text("The sidebar's image", exact=False).first.click()  # the image choice
        shots._settle(page)
        for i in (0, 1, 2):
            sc = demo.SCENES[i]
            main.get_by_text(f"{i + 1} · {sc.label}", exact=True).click()
            main.locator("h3").filter(has_text=f"{i + 1}. ").first.wait_for(timeout=120_000)
            shots._settle(page)
            shots._check(page, f"Demo step {i + 1} on {name}")
            assert main.get_by_text("(the sidebar’s)", exact=False).count() >= 1
            takeaway = main.locator('[data-testid="stAlertContentInfo"]').first.inner_text()
            a, b = _psnrs(main)[:2]
            if "lossless" in (a, b):
                assert "lossless" in takeaway, takeaway
            elif abs(float(a) - float(b)) < 0.005:
                assert "the same" in takeaway, takeaway
            else:
                assert ("dB more" if float(a) > float(b) else "dB less") in takeaway, (a, b, takeaway)
            captions = main.locator('[data-testid="stImageCaption"]').all_inner_texts()
            assert captions and not any(re.search(r"\b1 tokens\b", c) for c in captions), captions
            shots._shoot(page, out / f"{path.stem}_step{i + 1}.png")
    main.get_by_text("1 · Flat sky", exact=True).click()  # the 12x9 image, opened on Patch layout
    shots._settle(page)
    main.get_by_role("button", name=re.compile("Open in Patch layout")).click()
    shots._wait_path(page, "patch-layout")
    main.get_by_role("heading", name="Patch layout").first.wait_for(timeout=120_000)
    shots._settle(page)
    shots._check(page, "Patch layout opened from the demo")
    note = main.locator('[data-testid="stAlertContentInfo"]').filter(has_text="Demo").first.inner_text()
    assert "strategy quadtree (was multiscale)" in note, note
    shots._shoot(page, out / "tiny_12x9_opened_on_patch_layout.png")
    assert not page.real_errors(), page.real_errors()
