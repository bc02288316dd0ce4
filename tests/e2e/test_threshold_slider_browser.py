"""The threshold slider in a real browser on a ~1 MP photo (issue 21): Home, then ArrowRight steps
and End, by keyboard. The token count changes at most positions, never goes up, and at every
position is the library's (``adapatch.threshold_scale`` on the same image); Home is the finest layout,
End the coarsest. For the quadtree (its ``ThresholdCurve``) and for multiscale, the default strategy
(lambda over the image's ``RDHull``: the caption names the candidate taken, a quadtree or a uniform
grid). Screenshots go to ``test-artifacts/e2e/threshold_slider/`` and
``test-artifacts/e2e/multiscale_threshold/`` for a human to look at.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import adapatch as ap
from adapatch.app_support import ui
from adapatch.threshold_scale import threshold_scale

from tests.e2e.test_app_browser import SETTLED_JS, _no_exception, _select, _thumb_value, _tokens, _wait_idle

PRESSES = 30
LABEL = "Importance threshold"

@pytest.fixture(scope="module")
def photo_1mp(tmp_path_factory) -> tuple[Path, np.ndarray]:
    skdata = pytest.importorskip("skimage.data")
    img = cv2.resize(skdata.chelsea(), (1152, 864), interpolation=cv2.INTER_CUBIC)
    path = tmp_path_factory.mktemp("e2e") / "chelsea_1152x864.png"
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return path, ap.load_image(path)


def _shot(page, path: Path) -> None:
    """A screenshot tall enough for the chart under the overlay (stMain scrolls, not the page)."""
    page.set_viewport_size({"width": 1440, "height": 2100})
    page.wait_for_timeout(600)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})
    page.wait_for_timeout(200)


def _press(page, key: str) -> tuple[str, int]:
    page.keyboard.press(key)
    page.wait_for_timeout(150)  # let the rerun start
    page.wait_for_function(SETTLED_JS, arg=LABEL, timeout=60_000)
    _wait_idle(page)
    return _thumb_value(page, LABEL), int(_tokens(page).replace(",", ""))


def _home_then_right(page, scale):
    """Focus the threshold slider, press Home, then ArrowRight ``PRESSES`` times: ``(thumb, label ->
    position, [(label, tokens)] per press)``."""
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=LABEL).get_by_role("slider")
    thumb.focus()
    labels = ui.threshold_labels(scale.thresholds, True)
    by_label = {v: k for k, v in labels.items()}
    seen = [_press(page, "Home")]
    for _ in range(PRESSES):
        seen.append(_press(page, "ArrowRight"))
    return thumb, by_label, seen


def _open_photo(page, app_url: str, path) -> None:
    """Patch layout with the 1152x864 photo uploaded, idle, no exception shown."""
    page.goto(app_url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=90_000)
    _wait_idle(page, timeout=90_000)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
    page.locator('[data-testid="stSidebar"]').get_by_text("1152x864").first.wait_for(timeout=60_000)
    _wait_idle(page)
    _no_exception(page)


def test_threshold_slider_spans_the_token_range_by_keyboard(page, app_url, artifacts, photo_1mp):
    path, image = photo_1mp
    out = artifacts / "threshold_slider"
    out.mkdir(parents=True, exist_ok=True)
    _open_photo(page, app_url, path)
    _select(page, "Strategy", "quadtree")  # the default is multiscale (the test below)

    _shot(page, out / "budget_mode.png")
    # budget off: threshold mode starts at the threshold the budget implied
    implied = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="The budget implies").inner_text()
    page.locator('[data-testid="stMain"]').get_by_text("Token budget", exact=True).click()
    page.wait_for_function(SETTLED_JS, arg=LABEL, timeout=60_000)
    _wait_idle(page)
    curve = ap.threshold_curve(image, min_size=16, max_size=64, importance="distortion")
    scale = threshold_scale(curve)
    start = _thumb_value(page, LABEL)
    assert start.startswith("λ = ") and f"implies {start} " in implied, (start, implied)

    thumb, by_label, seen = _home_then_right(page, scale)
    _no_exception(page)
    _shot(page, out / "after_30_steps.png")
    thumb.focus()
    seen.append(_press(page, "End"))
    _shot(page, out / "end.png")

    shown = [label for label, _ in seen]
    tokens = [n for _, n in seen]
    thresholds = [by_label[label] for label in shown]  # every label is a position of the library's scale
    assert thresholds[:PRESSES + 1] == [float(v) for v in scale.thresholds[:PRESSES + 1]]
    assert thresholds[-1] == float(scale.thresholds[-1])
    want = [int(curve.tokens_at(t)) for t in thresholds]
    assert tokens == want  # page numbers = library numbers, at every position
    assert tokens[0] == curve.tokens_at(0.0) and tokens[-1] == curve.base_tokens  # finest, coarsest
    assert all(a >= b for a, b in zip(tokens, tokens[1:]))  # monotone
    steps = tokens[:PRESSES + 1]
    distinct = len(set(steps))
    assert distinct >= 0.8 * len(steps), (distinct, steps)  # the count changes at most positions

    # budget on: it starts at the threshold layout's token count (the slider in the browser follows)
    thumb.focus()
    for _ in range(2):  # back from End to a position in the middle of the ArrowRight run
        page.keyboard.press("Home")
        _wait_idle(page)
    for _ in range(PRESSES):  # fast presses: on a loaded machine one may land while a rerun redraws the
        page.keyboard.press("ArrowRight")  # slider, so the position is read back from the thumb
    page.wait_for_function(SETTLED_JS, arg=LABEL, timeout=60_000)
    _wait_idle(page)
    at = int(curve.tokens_at(by_label[_thumb_value(page, LABEL)]))
    assert int(_tokens(page).replace(",", "")) == at
    page.locator('[data-testid="stMain"]').get_by_text("Token budget", exact=True).click()
    caption = page.locator('[data-testid="stCaptionContainer"]').filter(has_text="tokens for this 1152x864 image")
    caption.first.wait_for(timeout=60_000)
    _wait_idle(page)
    assert f"= {at:,} tokens for this 1152x864 image" in caption.first.inner_text()
    budget_thumb = _thumb_value(page, "Budget (% of the 16 px grid)")
    assert budget_thumb.rstrip("%").replace(".", "", 1).isdigit(), budget_thumb
    assert abs(float(budget_thumb.rstrip("%")) - 100 * at / 3888) < 1, budget_thumb  # the 16 px grid: 3,888
    assert int(_tokens(page).replace(",", "")) <= at
    _shot(page, out / "budget_on.png")
    assert page.real_errors() == [], page.real_errors()
    (out / "steps.json").write_text(json.dumps({
        "image": "chelsea 1152x864 PNG upload", "presses": ["Home"] + ["ArrowRight"] * PRESSES + ["End"],
        "thumb": shown, "tokens": tokens, "distinct_over_home_and_30_steps": distinct,
        "library_distinct_over_201_positions": int(len(np.unique(scale.tokens(curve))))}, indent=1))


def _caption(page, part: str) -> str:
    return page.locator('[data-testid="stCaptionContainer"]').filter(has_text=part).first.inner_text()


def test_multiscale_threshold_slider_steps_over_the_hull(page, app_url, artifacts, photo_1mp):
    """The default strategy without a budget: lambda over the image's rate-distortion hull. Home, 30 x
    ArrowRight, End, then ArrowLeft through the coarse end (uniform grids, one position each): every
    position's tokens are ``RDHull.tokens_at`` of the library, monotone, distinct at most positions."""
    path, image = photo_1mp
    out = artifacts / "multiscale_threshold"
    out.mkdir(parents=True, exist_ok=True)
    _open_photo(page, app_url, path)
    assert page.locator('[data-testid="stSelectbox"]').filter(has_text="Strategy").get_by_role(
        "combobox").input_value() == "multiscale"
    hull = ap.rd_hull(image, levels=2, token_size=16)
    scale = threshold_scale(hull)
    budget = round(0.3 * 3888)  # the default budget: 30% of the 16 px grid
    page.locator('[data-testid="stMain"]').get_by_text("Token budget", exact=True).click()
    page.wait_for_function(SETTLED_JS, arg=LABEL, timeout=120_000)  # the first visit builds the hull
    _wait_idle(page)
    _no_exception(page)
    assert int(_tokens(page).replace(",", "")) == hull.tokens_at(hull.threshold_for(budget)) <= budget
    _shot(page, out / "start.png")

    thumb, by_label, seen = _home_then_right(page, scale)
    _no_exception(page)
    assert "this image takes the distortion quadtree" in _caption(page, "this image takes")
    _shot(page, out / "after_30_steps.png")
    thumb.focus()
    seen.append(_press(page, "End"))
    coarsest = _caption(page, "this image takes")
    assert f"the uniform grid of {int(hull.values[0])} px patches: {int(hull.tokens[0]):,} tokens" in coarsest
    _shot(page, out / "end.png")
    back = []
    for _ in range(6):  # the coarse end: a uniform grid at each position
        back.append(_press(page, "ArrowLeft"))
    _shot(page, out / "coarse_end.png")
    _no_exception(page)

    shown = [label for label, _ in seen]
    tokens = [n for _, n in seen]
    thresholds = [by_label[label] for label in shown]
    assert thresholds[:PRESSES + 1] == [float(v) for v in scale.thresholds[:PRESSES + 1]]
    assert thresholds[-1] == float(scale.thresholds[-1])
    assert tokens == [int(hull.tokens_at(t)) for t in thresholds]  # the library's numbers at every position
    assert tokens[0] == hull.tokens[-1] and tokens[-1] == hull.tokens[0]  # finest, coarsest
    assert all(a >= b for a, b in zip(tokens, tokens[1:]))  # monotone
    distinct = len(set(tokens[:PRESSES + 1]))
    assert distinct >= 0.8 * (PRESSES + 1), (distinct, tokens)
    back_t = [by_label[label] for label, _ in back]
    assert [n for _, n in back] == [int(hull.tokens_at(t)) for t in back_t]
    assert [n for _, n in back] == sorted({n for _, n in back})  # each step left: more tokens
    assert [n for _, n in back] == [int(v) for v in scale.tokens(hull)[scale.last - 6:scale.last][::-1]]
    assert page.real_errors() == [], page.real_errors()
    (out / "steps.json").write_text(json.dumps({
        "image": "chelsea 1152x864 PNG upload", "strategy": "multiscale (threshold mode: RDHull)",
        "presses": ["Home"] + ["ArrowRight"] * PRESSES + ["End"] + ["ArrowLeft"] * 6,
        "thumb": shown + [label for label, _ in back], "tokens": tokens + [n for _, n in back],
        "distinct_over_home_and_30_steps": distinct,
        "library_distinct_over_201_positions": int(len(np.unique(scale.tokens(hull))))}, indent=1))
