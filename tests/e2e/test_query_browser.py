"""The Query control in a real browser: drag a box on the Plotly image on Patch layout.

Picks the Region query, drags a box over the drawing surface with the mouse (what AppTest cannot
do), and checks that the page follows: the region is stored in image pixels (the caption names the
box), the query map heatmap appears, the layout overlay is redrawn with the query (its caption says
so, its picture changes) and the with/without comparison shows the finest tokens in the region.
Then the same region on Saliency and Token pruning, and a lasso drawn on Token pruning's surface.
Screenshots at 1440x900 go to ``test-artifacts/e2e/query/``.
"""

from __future__ import annotations

import math
import re

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
VIEWPORT = {"width": 1440, "height": 900}
BOX_CAPTION = re.compile(r"box \(y0, x0, y1, x1\) = \((\d+), (\d+), (\d+), (\d+)\)")


def _idle(page, timeout: float = 120_000) -> None:
    for _ in range(2):  # twice: a rerun the first one triggered has started by then
        page.wait_for_timeout(300)
        page.wait_for_selector(IDLE, timeout=timeout)


def _settled(page) -> None:
    _idle(page)
    page.wait_for_function("""() => [...document.querySelectorAll('[data-testid="stMain"] img')]
                              .every(i => i.complete && i.naturalWidth > 0)""", timeout=60_000)
    page.wait_for_timeout(500)


def _no_error(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "a traceback reached the page"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, errors.first.inner_text()


def _overlay_caption(page) -> str:
    caps = page.locator('[data-testid="stMain"] [data-testid="stImageCaption"]').all_inner_texts()
    return next((c for c in caps if "colour = patch size" in c), "")


def _open_patch_layout(page, app_url, artifacts):
    """Open the app (Patch layout) at 1440x900 and wait for it; returns the screenshot folder."""
    out = artifacts / "query"
    out.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size(VIEWPORT)
    page.goto(app_url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=60_000)
    _settled(page)
    return out


def test_drag_a_box_on_patch_layout(page, app_url, artifacts) -> None:
    out = _open_patch_layout(page, app_url, artifacts)
    before = _overlay_caption(page)
    assert "query" not in before

    main = page.locator('[data-testid="stMain"]')
    main.locator('[data-testid="stRadio"]').get_by_text("Region", exact=True).click()
    _settled(page)
    _no_error(page)
    assert main.get_by_text("Drag a box or lasso on the image, or click points").count() >= 1
    assert main.get_by_text("Query map:").count() == 0  # no region yet: no query map

    surface = main.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".imagelayer image")).first
    surface.scroll_into_view_if_needed()
    drag = surface.locator(".nsewdrag").first
    box = drag.bounding_box()
    assert box and box["width"] > 100, box
    page.screenshot(path=str(out / "patch_layout_region_picked.png"))
    # a box over the upper middle of the picture (astronaut: the face), dragged in steps like a hand
    x0, y0 = box["x"] + 0.40 * box["width"], box["y"] + 0.12 * box["height"]
    x1, y1 = box["x"] + 0.70 * box["width"], box["y"] + 0.45 * box["height"]
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move((x0 + x1) / 2, (y0 + y1) / 2, steps=6)
    page.mouse.move(x1, y1, steps=6)
    page.mouse.up()
    main.get_by_text("Query map:").first.wait_for(timeout=60_000)
    _settled(page)
    _no_error(page)

    # the region, in the image's pixels, inside the 448x448 astronaut and about where it was dragged
    caption = main.get_by_text(BOX_CAPTION).first.inner_text()
    y0p, x0p, y1p, x1p = (int(v) for v in BOX_CAPTION.search(caption).groups())
    assert 0 <= y0p < y1p <= 448 and 0 <= x0p < x1p <= 448
    assert abs(x0p - 0.40 * 448) < 30 and abs(x1p - 0.70 * 448) < 30, caption
    assert abs(y0p - 0.12 * 448) < 30 and abs(y1p - 0.45 * 448) < 30, caption

    after = _overlay_caption(page)
    assert "box query, weight 0.50" in after, after
    metrics = main.locator('[data-testid="stMetric"]')
    labels = metrics.locator('[data-testid="stMetricLabel"]').all_inner_texts()
    assert any("In region · with" in t for t in labels), labels
    with_q = metrics.filter(has_text="In region · with").first.locator('[data-testid="stMetricValue"]').inner_text()
    without = metrics.filter(has_text="In region · without").first.locator('[data-testid="stMetricValue"]')
    n_with, n_without = (int(v.split("/")[0]) for v in (with_q, without.inner_text()))
    assert n_with > n_without, (with_q, without.inner_text())

    page.evaluate("() => window.scrollTo(0, 0)")
    main.locator('[data-testid="stVerticalBlock"]').first.evaluate("e => e.scrollIntoView()")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "patch_layout_box.png"))
    surface.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "patch_layout_box_surface.png"))
    main.get_by_text("With and without the query, at equal tokens").scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "patch_layout_box_comparison.png"))
    assert page.real_errors() == []

    # the same region on Saliency (query map next to the content saliency) and Token pruning
    for name, slug in (("Saliency", "saliency"), ("Token pruning", "token_pruning")):
        page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name).click()
        page.get_by_role("heading", name=name).first.wait_for(timeout=60_000)
        main.get_by_text("Query map:").first.wait_for(timeout=60_000)
        _settled(page)
        _no_error(page)
        assert main.get_by_text(BOX_CAPTION).first.inner_text() == caption
        page.evaluate("() => window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(out / f"{slug}_box.png"))

    # a lasso on Token pruning's surface replaces the box
    main.locator('[data-testid="stRadio"]').get_by_text("Lasso", exact=True).click()
    _settled(page)
    surface = main.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".imagelayer image")).first
    surface.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    box = surface.locator(".nsewdrag").first.bounding_box()
    cx, cy, r = box["x"] + 0.5 * box["width"], box["y"] + 0.6 * box["height"], 0.2 * box["width"]
    page.mouse.move(cx + r, cy)
    page.mouse.down()
    for k in range(1, 25):
        t = 2 * 3.14159 * k / 24
        page.mouse.move(cx + r * math.cos(t), cy + r * math.sin(t), steps=2)
    page.mouse.up()
    main.get_by_text(re.compile(r"lasso of \d+ points")).first.wait_for(timeout=60_000)
    _settled(page)
    _no_error(page)
    page.screenshot(path=str(out / "token_pruning_lasso.png"))
    assert page.real_errors() == []


def test_click_points_on_patch_layout(page, app_url, artifacts) -> None:
    """Points mode: each click on the image adds a point in the image's pixels (an invisible grid of
    Plotly markers takes the click) and the query map and the layout follow."""
    out = _open_patch_layout(page, app_url, artifacts)
    main = page.locator('[data-testid="stMain"]')
    main.locator('[data-testid="stRadio"]').get_by_text("Region", exact=True).click()
    _settled(page)
    main.locator('[data-testid="stRadio"]').get_by_text("Points (click)", exact=True).click()
    _settled(page)
    _no_error(page)
    assert main.get_by_text("Click points on the image").count() >= 1

    clicks = ((0.25, 0.30), (0.70, 0.60))  # (x, y) as fractions of the picture
    for i, (fx, fy) in enumerate(clicks):
        surface = main.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".imagelayer image")).first
        surface.scroll_into_view_if_needed()
        drag = surface.locator(".nsewdrag").first
        box = drag.bounding_box()
        assert box and box["width"] > 100, box
        page.mouse.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        main.get_by_text(re.compile(rf"{i + 1} points? \(y, x\)")).first.wait_for(timeout=60_000)
        _settled(page)
        _no_error(page)
    caption = main.get_by_text(re.compile(r"2 points \(y, x\)")).first.inner_text()
    pts = [(float(a), float(b)) for a, b in re.findall(r"\((-?[\d.]+), (-?[\d.]+)\)", caption)][-2:]
    assert len(pts) == 2, caption
    for (fx, fy), (py, px) in zip(clicks, pts):  # astronaut is 448x448; a click snaps to a 4.7 px grid
        assert abs(px - fx * 448) < 14 and abs(py - fy * 448) < 14, (caption, clicks)
    main.get_by_text("Query map:").first.wait_for(timeout=60_000)
    assert "points query, weight 0.50" in _overlay_caption(page)
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "patch_layout_points.png"))
    assert page.real_errors() == []


TRUNCATED = """() => [...document.querySelectorAll('[data-testid="stMain"] [data-testid="stMetric"]')].flatMap(m =>
    [...m.querySelectorAll('[data-testid="stMetricLabel"], [data-testid="stMetricLabel"] *,'
                         + '[data-testid="stMetricValue"], [data-testid="stMetricValue"] *,'
                         + '[data-testid="stMetricDelta"], [data-testid="stMetricDelta"] *')]
      .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1)
      .map(e => `${m.querySelector('[data-testid="stMetricLabel"]').innerText}: ${e.innerText} `
                + `(${e.scrollWidth} > ${e.clientWidth} px)`))"""
"""Every metric label, value and delta on the main page whose text is wider than its box (cut off)."""


def _metrics_text(page) -> dict[str, str]:
    out = {}
    for m in page.locator('[data-testid="stMain"] [data-testid="stMetric"]').all():
        out[m.locator('[data-testid="stMetricLabel"]').inner_text().strip()] = (
            m.locator('[data-testid="stMetricValue"]').inner_text().strip())
    return out


def _shot_at(page, out, text: str, name: str) -> None:
    page.locator('[data-testid="stMain"]').get_by_text(text).first.scroll_into_view_if_needed()
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / name))


def test_no_truncated_metrics_at_1440(page, app_url, artifacts, tmp_path) -> None:
    """At 1440 px, with a query on an uploaded 1800x1200 photo (four-digit token counts), no metric
    label, value or delta is cut off: the with/without comparison, a points query ("Near points",
    never 0 with points on the image), a class query of the digits model (which warns: not its
    kind of image), Token pruning with the model's learned scorer (prediction, its MACs) and the Model
    page."""
    import cv2
    import pytest

    skdata = pytest.importorskip("skimage.data")
    photo = tmp_path / "chelsea_1800x1200.png"  # not a bundled sample
    img = cv2.resize(skdata.chelsea(), (1800, 1200), interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(photo), img[:, :, ::-1])
    out = _open_patch_layout(page, app_url, artifacts)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    page.locator('[data-testid="stSidebar"]').get_by_text("1800x1200").first.wait_for(timeout=120_000)
    _settled(page)
    main = page.locator('[data-testid="stMain"]')
    main.locator('[data-testid="stRadio"]').get_by_text("Region", exact=True).click()
    _settled(page)
    surface = main.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".imagelayer image")).first
    surface.scroll_into_view_if_needed()
    box = surface.locator(".nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + 0.30 * box["width"], box["y"] + 0.15 * box["height"])  # the cat's face
    page.mouse.down()
    page.mouse.move(box["x"] + 0.75 * box["width"], box["y"] + 0.70 * box["height"], steps=10)
    page.mouse.up()
    main.get_by_text("Query map:").first.wait_for(timeout=120_000)
    _settled(page)
    _no_error(page)
    shown = _metrics_text(page)
    assert re.fullmatch(r"[\d,]+", shown["Tokens"]) and len(shown["Tokens"]) >= 4, shown  # four digits at least
    assert "In region · with" in shown and "In region · without" in shown, shown
    assert page.evaluate(TRUNCATED) == []
    _shot_at(page, out, "SSIM · with", "metrics_1440_box.png")

    main.locator('[data-testid="stRadio"]').get_by_text("Points (click)", exact=True).click()
    _settled(page)
    surface = main.locator('[data-testid="stPlotlyChart"]').filter(has=page.locator(".imagelayer image")).first
    surface.scroll_into_view_if_needed()
    box = surface.locator(".nsewdrag").first.bounding_box()
    page.mouse.click(box["x"] + 0.45 * box["width"], box["y"] + 0.40 * box["height"])
    main.get_by_text(re.compile(r"1 point \(y, x\)")).first.wait_for(timeout=120_000)
    _settled(page)
    _no_error(page)
    shown = _metrics_text(page)
    near, total = (int(v.replace(",", "")) for v in shown["Near points · with"].split("/"))
    assert 0 < near <= total, shown  # the tokens near the point, not the ones whose centre is its one pixel
    assert page.evaluate(TRUNCATED) == []
    _shot_at(page, out, "SSIM · with", "metrics_1440_points.png")

    main.locator('[data-testid="stRadio"]').get_by_text("Class", exact=True).click()
    _settled(page)
    _no_error(page)
    main.get_by_text("Query map: class").first.wait_for(timeout=120_000)
    warning = main.locator('[data-testid="stAlertContentWarning"]').filter(has_text="not a cluttered digit")
    assert warning.count() == 1 and "class query" in warning.first.inner_text()
    assert page.evaluate(TRUNCATED) == []
    page.evaluate("() => window.scrollTo(0, 0)")
    _shot_at(page, out, "not a cluttered digit", "class_query_photo_warning.png")

    main.locator('[data-testid="stRadio"]').get_by_text("None", exact=True).click()
    _settled(page)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Token pruning").click()
    page.get_by_role("heading", name="Token pruning").first.wait_for(timeout=60_000)
    _settled(page)
    main.locator('[data-testid="stSelectbox"]').filter(has_text="Token scorer").click()
    page.get_by_role("option", name=re.compile("learned", re.IGNORECASE)).first.click()
    main.get_by_role("button", name="Use a digit sample").wait_for(timeout=120_000)
    _settled(page)
    main.get_by_role("button", name="Use a digit sample").click()
    page.locator('[data-testid="stSidebar"]').get_by_text("64x64").first.wait_for(timeout=120_000)
    _settled(page)
    _no_error(page)
    shown = _metrics_text(page)
    assert "Model MACs ratio" in shown and not any(k.startswith("MACs ratio") for k in shown), shown
    delta = main.locator('[data-testid="stMetric"]').filter(has_text="Prediction").locator(
        '[data-testid="stMetricDelta"]').inner_text()
    assert delta.startswith("right · true digit"), delta  # the digit sample opened is one the model gets right
    assert page.evaluate(TRUNCATED) == []
    page.evaluate("() => window.scrollTo(0, 0)")
    page.wait_for_timeout(300)
    page.screenshot(path=str(out / "metrics_1440_pruning_model.png"))

    # the Model page: its two heatmaps with their colour bars, nothing cut off
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Model").click()
    page.get_by_role("heading", name="Model").first.wait_for(timeout=60_000)
    main.get_by_text("Colour bar (turbo)").nth(1).wait_for(timeout=120_000)
    _settled(page)
    _no_error(page)
    assert main.get_by_text("Colour bar (turbo)").count() == 2
    assert page.evaluate(TRUNCATED) == []
    page.screenshot(path=str(out / "model_page_colour_bars.png"))
    assert page.real_errors() == []
