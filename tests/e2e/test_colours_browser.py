"""One colour per patch size in the browser: the Demo's dense-texture step draws its 160x160 photo x3
with a 23 px grid; "Open in Patch layout" draws the same grid, as a JPEG. The pictures the browser
received (fetched from their ``src``) have the colour of 23 px on the boxes' top outlines on both
pages, and each page shows the legend in pixels, saying how much the picture is enlarged. Screenshots of both
go to ``test-artifacts/e2e/colours/``."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from adapatch import render
from adapatch.app_support import compute, demo

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
LOADED_JS = """() => [...document.querySelectorAll('[data-testid="stMain"] img')]
  .every(i => i.complete && i.naturalWidth > 0)"""


def _settle(page) -> None:
    for _ in range(2):
        page.wait_for_timeout(300)
        page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_function(LOADED_JS, timeout=120_000)


def _shoot(page, path) -> None:
    """The whole page: a tall viewport (Streamlit scrolls inside its own container)."""
    page.set_viewport_size({"width": 1440, "height": 2200})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1440, "height": 1000})


def _first_picture(page) -> np.ndarray:
    """The first picture of the main area as the browser received it (decoded from its src)."""
    src = page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first.evaluate("i => i.src")
    body = page.request.get(src).body()  # the absolute address, as the browser fetched it
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))


def _top_outline_colours(pic: np.ndarray, lay) -> np.ndarray:
    """Pixels in the middle of each box's top outline (boxes below the first row, inside the image)."""
    b = lay.boxes.astype(np.int64)
    b = b[(b[:, 0] > 0) & (b[:, 0] + b[:, 2] <= lay.height) & (b[:, 1] + b[:, 2] <= lay.width)]
    sy, sx = pic.shape[0] / lay.height, pic.shape[1] / lay.width
    return pic[np.ceil(b[:, 0] * sy - 0.5).astype(int), ((b[:, 1] + b[:, 2] / 2) * sx).astype(int)].astype(int)


def test_the_23px_grid_has_one_colour_on_demo_and_patch_layout(page, app_url, artifacts) -> None:
    out = artifacts / "colours"
    out.mkdir(exist_ok=True)
    index = next(i for i, s in enumerate(demo.SCENES) if s.key == "dense_texture")
    grid = demo.build_step(demo.SCENES[index], "cpu").main.layout
    assert grid.sizes == [23]
    want = np.array(render.size_color(23))

    page.goto(app_url)  # then the sidebar: a cold server answers a first deep link with "Page not found"
    main = page.locator('[data-testid="stMain"]')
    main.locator("h1").first.wait_for(timeout=120_000)
    _settle(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Demo").first.click()
    main.get_by_role("heading", name="Demo").first.wait_for(timeout=120_000)
    _settle(page)
    main.get_by_text(f"{index + 1} · {demo.SCENES[index].label}", exact=True).click()  # the step selector
    main.locator("h3").filter(has_text=f"{index + 1}. ").first.wait_for(timeout=120_000)
    _settle(page)
    legend = page.locator(".ap-size-scale").first
    assert "enlarged ×3 for display" in legend.inner_text()
    _shoot(page, out / "demo_dense_texture.png")
    pic = _first_picture(page)
    assert pic.shape[:2] == (3 * grid.height, 3 * grid.width)
    demo_cols = _top_outline_colours(pic, grid)
    assert (demo_cols == want).all(), np.unique(demo_cols, axis=0)

    main.get_by_role("button", name="Open in Patch layout").click()
    main.get_by_role("heading", name="Patch layout").first.wait_for(timeout=120_000)
    _settle(page)
    _shoot(page, out / "layout_dense_texture.png")
    factor = compute.small_image_factor(grid.height, grid.width)
    legend = page.locator(".ap-size-scale").first
    assert "256 px" in legend.inner_text() and f"enlarged ×{factor} for display" in legend.inner_text()
    pic = _first_picture(page)
    assert pic.shape[:2] == (grid.height * factor, grid.width * factor)
    got = np.median(_top_outline_colours(pic, grid), axis=0)  # JPEG there: about the colour
    assert np.abs(got - want).max() <= 24, (got, want)
    assert np.abs(got - np.array(render.size_color(69))).max() > 60  # not the colour of its x3 drawn size
    assert not page.real_errors()
