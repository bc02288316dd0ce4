"""The app in a real browser: upload, keyboard slider, every page, no exceptions, no console errors.

Also measures the slider-to-update latency on a 1024x1024 upload (keydown -> new token number and
new overlay image loaded), written to ``test-artifacts/e2e/latency.json`` and printed; it is a
figure to report, not an assertion.
"""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import cv2
import numpy as np
import pytest

import adapatch as ap
from adapatch.samples import load_sample

IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
PAGES = ["Patch layout", "Saliency", "Token pruning", "Compare", "Efficiency", "Model"]
TITLES = {"Patch layout": "Patch layout", "Saliency": "Saliency", "Token pruning": "Token pruning",
          "Compare": "Compare at the same budget", "Efficiency": "Efficiency", "Model": "Model"}

# Installed once per measurement: keydown time, then (on every animation frame) the time the token
# number changed and the time the overlay <img> had a new src and finished loading.
MEASURE_JS = """() => {
  const tokenEl = () => [...document.querySelectorAll('[data-testid="stMetric"]')]
      .find(m => m.querySelector('[data-testid="stMetricLabel"]')?.textContent.trim() === 'Tokens')
      ?.querySelector('[data-testid="stMetricValue"]');
  const imgEl = () => document.querySelector('[data-testid="stMain"] [data-testid="stImage"] img');
  const app = document.querySelector('[data-testid="stApp"]');
  const st = {v0: tokenEl()?.textContent, src0: imgEl()?.src, t0: null, tTokens: null, tImage: null, tIdle: null,
              sawRunning: false, done: false};
  window.__lat = st;
  document.addEventListener('keydown', () => { if (st.t0 === null) st.t0 = performance.now(); },
                            {capture: true, once: true});
  const tick = () => {
    if (st.t0 !== null) {
      const now = performance.now();
      const v = tokenEl()?.textContent;
      if (st.tTokens === null && v !== undefined && v !== st.v0) st.tTokens = now;
      const img = imgEl();
      if (st.tImage === null && img && img.src !== st.src0 && img.complete && img.naturalWidth > 0) st.tImage = now;
      if (app.getAttribute('data-test-script-state') === 'running') st.sawRunning = true;
      if (st.tIdle === null && st.sawRunning && st.tTokens !== null
          && app.getAttribute('data-test-script-state') === 'notRunning') st.tIdle = now;
      if (st.tTokens !== null && st.tImage !== null && st.tIdle !== null) { st.done = true; return; }
    }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
}"""


# The rerun of a key press is done when the caption under the slider (written by the server) names
# the threshold the thumb shows (written by the browser at once), and the app is idle again.
SETTLED_JS = """label => {
  const slider = [...document.querySelectorAll('[data-testid="stSlider"]')].find(s => s.textContent.includes(label));
  const thumb = slider?.querySelector('[data-testid="stSliderThumbValue"]')?.textContent.trim();
  const caps = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')].map(c => c.textContent.trim());
  const app = document.querySelector('[data-testid="stApp"]');
  return thumb && caps.some(c => c.startsWith(thumb + ' (')) &&
         app.getAttribute('data-test-script-state') === 'notRunning';
}"""


def _wait_idle(page, timeout: float = 60_000) -> None:
    page.wait_for_timeout(150)  # let a just-triggered rerun start
    page.wait_for_selector(IDLE, timeout=timeout)


def _tokens(page) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(r"^\s*Tokens\s*$")))
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def _thumb_value(page, label: str) -> str:
    slider = page.locator('[data-testid="stSlider"]').filter(has_text=label)
    return slider.locator('[data-testid="stSliderThumbValue"]').first.inner_text().strip()


def _thumb_threshold(page, label: str = "Importance threshold") -> float:
    """The threshold a threshold slider shows: "λ = 3,040" (distortion) or "0.0735" -> the number (the
    label is the threshold itself at every grid position of the slider's scale)."""
    text = _thumb_value(page, label)
    return float(text.removeprefix("λ = ").replace(",", ""))


def _no_exception(page) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, "a traceback reached the page"


def _goto_page(page, name: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=name).click()
    page.get_by_role("heading", name=TITLES[name]).first.wait_for(timeout=60_000)
    _wait_idle(page)


def _screenshot(page, path: Path) -> None:
    page.set_viewport_size({"width": 1440, "height": 2000})
    page.wait_for_timeout(400)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})


@pytest.fixture(scope="module")
def upload_1024(tmp_path_factory) -> Path:
    img = cv2.resize(load_sample("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC)
    path = tmp_path_factory.mktemp("e2e") / "astronaut_1024.png"
    cv2.imwrite(str(path), cv2.cvtColor((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2BGR))
    return path


def test_upload_slider_every_page(page, app_url, artifacts, upload_1024):
    page.goto(app_url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=60_000)
    _wait_idle(page)
    _no_exception(page)
    _screenshot(page, artifacts / "opening.png")
    opening = _tokens(page)
    assert re.fullmatch(r"[\d,]+", opening)

    # upload a 1024x1024 image: it becomes the current image
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(upload_1024))
    try:
        page.locator('[data-testid="stSidebar"]').get_by_text("1024x1024").first.wait_for(timeout=60_000)
    except Exception:
        print(page.console_errors)
        raise
    _wait_idle(page)
    _no_exception(page)

    # the quadtree's threshold mode (the default strategy is multiscale; this latency is the quadtree's, as
    # measured before) (budget off: it starts at the threshold the budget implied, so the token number may
    # stay; the caption under the user's slider says the mode changed), then the keyboard
    _select(page, "Strategy", "quadtree")
    page.locator('[data-testid="stMain"]').get_by_text("Token budget", exact=True).click()
    page.locator('[data-testid="stCaptionContainer"]').filter(has_text="Log scale").first.wait_for(timeout=60_000)
    _wait_idle(page)
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Importance threshold").get_by_role("slider")
    thumb.focus()
    page.keyboard.press("ArrowRight")  # from the implied threshold (off the grid) onto the slider's grid:
    page.wait_for_timeout(150)  # the token count may stay (the next grid value can be before the next breakpoint)
    page.wait_for_function(SETTLED_JS, arg="Importance threshold", timeout=60_000)
    _wait_idle(page)
    latencies_tokens, latencies_image, latencies_idle = [], [], []
    for _ in range(6):
        page.evaluate(MEASURE_JS)
        value_before = _tokens(page)
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => window.__lat && window.__lat.done", timeout=60_000)
        lat = page.evaluate("() => window.__lat")
        latencies_tokens.append(lat["tTokens"] - lat["t0"])
        latencies_image.append(lat["tImage"] - lat["t0"])
        latencies_idle.append(lat["tIdle"] - lat["t0"])
        _wait_idle(page)
        assert _tokens(page) != value_before
    _no_exception(page)

    # the number on the page is the library's number for these settings
    threshold = _thumb_threshold(page)
    image = ap.load_image(upload_1024)
    expected = ap.quadtree(image, threshold=threshold, min_size=16, max_size=64, importance="distortion").num_tokens
    assert _tokens(page).replace(",", "") == str(expected)

    result = {
        "image": "1024x1024 PNG upload", "slider": "Importance threshold, ArrowRight x6 (first press warms caches)",
        "tokens_ms": [round(x, 1) for x in latencies_tokens], "overlay_ms": [round(x, 1) for x in latencies_image],
        "median_tokens_ms": round(statistics.median(latencies_tokens[1:]), 1),
        "median_overlay_ms": round(statistics.median(latencies_image[1:]), 1),
        "rerun_done_ms": [round(x, 1) for x in latencies_idle],
        "median_rerun_done_ms": round(statistics.median(latencies_idle[1:]), 1),
        "note": "tokens/overlay: keydown to new token number / new overlay image loaded; rerun_done: the "
                "fragment finished (PSNR/SSIM, computed last, included)",
    }
    (artifacts / "latency.json").write_text(json.dumps(result, indent=2))
    print("\nslider -> update latency (ms):", json.dumps(result))

    # every page renders without an exception; screenshots for a human to look at
    for name in PAGES:
        _goto_page(page, name)
        _no_exception(page)
        assert page.locator('[data-testid="stAlertContentError"]').count() == 0, f"error shown on {name}"
        _screenshot(page, artifacts / f"{name.lower().replace(' ', '_')}.png")

    # settings survived the page switches
    _goto_page(page, "Patch layout")
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Importance threshold").get_by_role("slider")
    assert _thumb_threshold(page) == pytest.approx(threshold)
    assert _tokens(page).replace(",", "") == str(expected)
    assert page.real_errors() == [], page.real_errors()


def test_corrupt_upload_shows_error_and_app_keeps_working(page, app_url, artifacts, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)))
    page.goto(app_url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=60_000)
    _wait_idle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
    err = page.locator('[data-testid="stSidebar"] [data-testid="stAlertContentError"]')
    err.first.wait_for(timeout=60_000)
    assert "broken.png" in err.first.inner_text()
    _wait_idle(page)
    _no_exception(page)
    assert re.fullmatch(r"[\d,]+", _tokens(page))  # the page still shows its numbers
    _goto_page(page, "Saliency")
    _no_exception(page)
    page.screenshot(path=str(artifacts / "corrupt_upload.png"))
    assert page.real_errors() == [], page.real_errors()


def _select(page, label: str, option: str) -> None:
    """Pick ``option`` (visible text) in the select box labelled ``label``."""
    box = page.locator('[data-testid="stSelectbox"]').filter(has_text=label)
    box.get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    _wait_idle(page)


def _metric_value(page, label: str) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(rf"^\s*{re.escape(label)}\s*$")))
    return metric.locator('[data-testid="stMetricValue"]').inner_text().strip()


def test_model_pruning_learned_scorer_and_checkpoint_upload(page, app_url, artifacts, tmp_path):
    from adapatch.model import load_task_model, model_grid, prune_tokens_attention, prune_tokens_learned, save_model
    from adapatch.samples import list_task_samples, sample_path

    task, _ = load_task_model(device="cpu")
    page.goto(app_url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=60_000)
    _wait_idle(page)
    _goto_page(page, "Token pruning")
    _select(page, "Token scorer", "learned (model's TokenPruner)")
    _no_exception(page)
    # the default image is a photo: the page says the bundled model's maps mean nothing there, and offers a digit
    main = page.locator('[data-testid="stMain"]')
    main.get_by_text("not a cluttered digit").wait_for(timeout=60_000)
    _wait_idle(page)
    _screenshot(page, artifacts / "pruning_photo_warning.png")
    main.get_by_role("button", name=re.compile("Use a digit sample")).click()
    # the sample the model classifies best (right on its full grid and after pruning), not simply the first
    from adapatch.app_support.model_view import default_sample
    best = default_sample(0.5, "cpu")
    assert best in list_task_samples()
    main.get_by_text(re.compile(f"Image: {best}")).first.wait_for(timeout=60_000)  # page header
    sidebar_image = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first.get_by_role("combobox")
    assert best in sidebar_image.input_value()
    _wait_idle(page)
    _no_exception(page)
    assert main.get_by_text("not a cluttered digit").count() == 0
    digit = ap.load_image(sample_path(best))
    res = prune_tokens_learned(digit, model_grid(task), task, keep_ratio=0.5, device="cpu")
    assert _tokens(page) == str(res.layout.num_tokens)
    assert _metric_value(page, "Prediction") == f"class {res.prediction}"
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    _screenshot(page, artifacts / "pruning_learned.png")

    # a local checkpoint through the picker: the task ViT saved with save_model, uploaded in the browser
    ckpt = tmp_path / "task_vit.safetensors"
    save_model(task.vit, ckpt)
    _select(page, "Token scorer", "attention (EViT: CLS attention, rest fused)")
    main.get_by_text("Local checkpoint file", exact=True).click()
    _wait_idle(page)
    uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Checkpoint")
    uploader.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(ckpt))
    main.get_by_text(re.compile(r"Local checkpoint file · task_vit\.safetensors")).wait_for(timeout=60_000)
    _wait_idle(page)
    _no_exception(page)
    res = prune_tokens_attention(digit, model_grid(task), task.vit, keep_ratio=0.5, device="cpu")
    assert _tokens(page) == str(res.layout.num_tokens)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    _screenshot(page, artifacts / "pruning_checkpoint.png")

    # attention saliency with the same picked checkpoint (the pick survives the page switch)
    _goto_page(page, "Saliency")
    _select(page, "Method", "attention")
    main.get_by_text(re.compile(r"Local checkpoint file · task_vit\.safetensors")).wait_for(timeout=60_000)
    _no_exception(page)
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    _screenshot(page, artifacts / "saliency_attention_checkpoint.png")

    # the learned selector on the Patch layout page (back to the bundled model)
    _goto_page(page, "Patch layout")
    _select(page, "Strategy", "selector")
    _wait_idle(page)
    main.get_by_text("Bundled task model (cluttered digits)", exact=True).click()
    _wait_idle(page)
    _no_exception(page)
    assert _tokens(page) == "16"
    assert page.locator('[data-testid="stAlertContentError"]').count() == 0
    _screenshot(page, artifacts / "layout_selector.png")
    assert page.real_errors() == [], page.real_errors()
