"""Patch layout in budget mode, small images and the quality charts, under ``AppTest``.

* With a budget, the threshold slider is disabled and shows the threshold the budget implies: the
  library's ``threshold_for_budget`` for the same importance and sizes (``lambda`` for
  ``distortion``, not clamped to [0, 1]). Turning the budget off starts threshold mode at that
  threshold; turning it on starts the budget at the threshold layout's token count.
* The threshold slider moves through the library's scale (``adapatch.threshold_scale``): the page's
  options and token counts are the library's.
* An image smaller than the patch range gets a fitted range with a note, and no four-digit
  percentage anywhere in its numbers.
* The quality chart has PSNR and SSIM panels on Patch layout and on Compare.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.budgets import relative_budget  # noqa: E402
from adapatch.samples import load_sample  # noqa: E402
from adapatch.threshold_scale import threshold_scale  # noqa: E402

IMPLIED = "w_threshold_implied"
THRESHOLD = "w_threshold"


from adapatch.app_support import ui  # noqa: E402
from tests.app_helpers import app as _app, figures as _charts, metric as _metric, ok as _ok  # noqa: E402
from tests.app_helpers import tokens as _tokens, use_quadtree  # noqa: E402


def _quad_app() -> AppTest:
    """The app on the quadtree (these tests are about its threshold; the default strategy is multiscale)."""
    return use_quadtree(_app().run())


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _title(fig: dict) -> str:
    title = fig["layout"].get("title", {})
    return str(title.get("text") or "") if isinstance(title, dict) else str(title)


def _quality_chart(at: AppTest) -> dict:
    charts = [c for c in _charts(at) if "Quality vs tokens" in _title(c)]
    assert len(charts) == 1, [c["layout"].get("title") for c in _charts(at)]
    return charts[0]


def _curve(importance: str = "distortion", img: np.ndarray | None = None) -> ap.ThresholdCurve:
    img = load_sample("astronaut") if img is None else img
    return ap.threshold_curve(img, min_size=16, max_size=64, importance=importance)


@pytest.mark.parametrize("importance", ["distortion", "std"])
def test_budget_mode_shows_the_threshold_the_budget_implies(importance: str) -> None:
    at = _quad_app()
    at.selectbox(key="w_importance").set_value(importance).run()
    at.slider(key="w_budget_fraction").set_value(0.4).run()
    _ok(at)
    img = load_sample("astronaut")
    budget = relative_budget(*img.shape[:2], fraction=0.4)
    want = ap.threshold_for_budget(img, budget, min_size=16, max_size=64, importance=importance)
    shown = at.select_slider(key=IMPLIED)
    assert shown.disabled and shown.label == "Importance threshold"
    assert shown.value == want  # exactly: inserted in the slider's scale as it is (lambda: not clamped to 1)
    if importance == "distortion":
        assert want > 1.0
    assert not [s for s in at.select_slider if s.key == THRESHOLD]  # the user's slider is not drawn
    tokens = ap.quadtree(img, threshold=want, min_size=16, max_size=64, importance=importance).num_tokens
    assert tokens <= budget
    scale = threshold_scale(_curve(importance, img))
    shown_t = ui.threshold_labels(scale.including(want), scale.unbounded)[want]  # the slider's own label
    assert shown.options[shown.options.index(shown_t)] == shown_t
    assert any(f"The budget implies {shown_t}" in c.value and f"(threshold mode: {tokens:,} tokens" in c.value
               for c in at.caption), [c.value for c in at.caption]
    assert at.session_state["ap_settings"]["thresholds"] == {}  # no threshold of the user's yet


def test_turning_the_budget_off_starts_at_the_threshold_the_budget_implied() -> None:
    """Issue 21: not at an old stored value. Also when the user had a threshold of their own before."""
    at = _quad_app()
    img = load_sample("astronaut")
    curve = _curve()
    scale = threshold_scale(curve)
    at.toggle(key="w_use_budget").set_value(False).run()
    at.select_slider(key=THRESHOLD).set_value(float(scale.thresholds[40])).run()  # a threshold of the user's
    _ok(at)
    assert _tokens(at) == curve.tokens_at(scale.thresholds[40])
    at.toggle(key="w_use_budget").set_value(True).run()
    at.slider(key="w_budget_fraction").set_value(0.45).run()
    _ok(at)
    implied = at.select_slider(key=IMPLIED).value
    budget = relative_budget(*img.shape[:2], fraction=0.45)
    assert implied == curve.threshold_for(budget)
    at.toggle(key="w_use_budget").set_value(False).run()
    _ok(at)
    slider = at.select_slider(key=THRESHOLD)
    assert slider.value == implied and not slider.disabled  # exactly, off the scale's grid if need be
    assert at.session_state["ap_settings"]["thresholds"]["distortion"] == implied
    expected = ap.quadtree(img, threshold=implied, min_size=16, max_size=64, importance="distortion").num_tokens
    assert _tokens(at) == expected == curve.tokens_at(implied) and expected <= budget
    assert len(slider.options) == len(scale) + (implied not in scale.thresholds)


def test_turning_the_budget_on_starts_at_the_threshold_layouts_tokens() -> None:
    at = _quad_app()
    img = load_sample("astronaut")
    curve = _curve()
    scale = threshold_scale(curve)
    at.toggle(key="w_use_budget").set_value(False).run()
    for position in (30, 120, 185):
        t = float(scale.thresholds[position])
        at.select_slider(key=THRESHOLD).set_value(t).run()
        n = curve.tokens_at(t)
        assert _tokens(at) == n
        at.toggle(key="w_use_budget").set_value(True).run()
        _ok(at)
        fraction = at.slider(key="w_budget_fraction").value
        assert fraction == at.session_state["ap_settings"]["budget_fraction"]
        assert relative_budget(*img.shape[:2], fraction=fraction) == n  # the budget is the token count
        assert any(f"= {n:,} tokens for this 448x448 image" in c.value for c in at.caption)
        assert _tokens(at) == ap.quadtree(img, min_size=16, max_size=64, budget=n).num_tokens
        # and back off: threshold mode starts at what this budget implies, the same or fewer tokens
        at.toggle(key="w_use_budget").set_value(False).run()
        _ok(at)
        assert at.select_slider(key=THRESHOLD).value == curve.threshold_for(n)
        assert _tokens(at) == curve.tokens_at(curve.threshold_for(n)) <= n


def test_implied_threshold_follows_the_budget_slider() -> None:
    at = _quad_app()
    img = load_sample("astronaut")
    seen = []
    for fraction in (0.2, 0.6):
        at.slider(key="w_budget_fraction").set_value(fraction).run()
        _ok(at)
        budget = relative_budget(*img.shape[:2], fraction=fraction)
        want = ap.threshold_for_budget(img, budget, min_size=16, max_size=64, importance="distortion")
        assert at.select_slider(key=IMPLIED).value == pytest.approx(want, abs=1e-12)
        seen.append(want)
    assert seen[0] > seen[1]  # more tokens: a lower threshold
    assert seen[0] > 1.0  # lambda, not clamped to [0, 1]


@pytest.mark.parametrize("importance", ["distortion", "std"])
def test_threshold_slider_is_the_library_scale(importance: str) -> None:
    """Library numbers = page numbers: the slider's options are ``threshold_scale``'s thresholds (the
    stored one inserted), and the tokens at a position are the library's layout at that threshold."""
    at = _quad_app()
    at.selectbox(key="w_importance").set_value(importance).run()
    at.toggle(key="w_use_budget").set_value(False).run()
    _ok(at)
    img = load_sample("astronaut")
    curve = _curve(importance, img)
    scale = threshold_scale(curve)
    slider = at.select_slider(key=THRESHOLD)
    labels = ui.threshold_labels(scale.including(slider.value), scale.unbounded)
    assert slider.options == list(labels.values())  # the library's thresholds, labelled by the threshold itself
    if importance == "distortion":
        assert slider.options[0] == "λ = 0" and slider.options[-1].startswith("λ = ")
    for position in (0, 1, 60, 140, scale.last):
        t = float(scale.threshold_at(position))
        at.select_slider(key=THRESHOLD).set_value(t).run()
        _ok(at)
        lay = ap.quadtree(img, threshold=t, min_size=16, max_size=64, importance=importance)
        assert _tokens(at) == lay.num_tokens == scale.tokens(curve)[position], position
        assert at.session_state["ap_settings"]["thresholds"][importance] == t
        assert len(at.select_slider(key=THRESHOLD).options) == len(scale)  # on the grid: nothing inserted
    assert _tokens(at) == curve.base_tokens  # the last position: the coarsest layout
    at.select_slider(key=THRESHOLD).set_value(0.0).run()
    assert _tokens(at) == curve.tokens_at(0.0)  # the first: the finest
    caption = [c.value for c in at.caption if "Log scale" in c.value]
    assert len(caption) == 1 and f"×{scale.step_factor:.3g} a step" in caption[0]
    if importance == "distortion":
        assert caption[0].startswith("λ = 0 (error per token, levels² over 256 px)")
    chart = next(c for c in _charts(at) if "Tokens vs threshold" in _title(c))
    assert chart["layout"]["xaxis"]["type"] == "log"
    lo, hi = scale.log_range
    assert chart["layout"]["xaxis"]["range"] == pytest.approx([np.log10(lo), np.log10(hi)])
    mark = chart["data"][1]
    assert mark["x"] == [lo] and mark["y"] == [curve.tokens_at(0.0)]  # threshold 0 at the left end


def test_export_keeps_the_exact_threshold() -> None:
    """The settings and the export hold the threshold itself (a lambda off the slider's grid too), and
    the exported snippet's call reproduces the page's tokens."""
    at = _quad_app()
    at.toggle(key="w_use_budget").set_value(False).run()  # starts at the implied lambda: off the grid
    _ok(at)
    t = at.select_slider(key=THRESHOLD).value
    assert t not in threshold_scale(_curve()).thresholds
    snippet = at.code[0].value
    assert f"threshold={t!r}" in snippet or f"'threshold': {t!r}" in snippet, snippet
    assert _tokens(at) == ap.quadtree(load_sample("astronaut"), threshold=t, min_size=16, max_size=64,
                                      importance="distortion").num_tokens


def test_each_importance_keeps_its_own_threshold() -> None:
    """A lambda never becomes a std threshold: switching importance starts the new one at the
    threshold the budget implies, and switching back finds the old value."""
    at = _quad_app()
    at.toggle(key="w_use_budget").set_value(False).run()
    scale = threshold_scale(_curve())
    lam = float(scale.thresholds[170])
    at.select_slider(key=THRESHOLD).set_value(lam).run()
    at.selectbox(key="w_importance").set_value("std").run()
    _ok(at)
    img = load_sample("astronaut")
    std_curve = _curve("std", img)
    want = std_curve.threshold_for(relative_budget(*img.shape[:2], fraction=0.3))
    assert at.select_slider(key=THRESHOLD).value == want <= 1.0
    at.selectbox(key="w_importance").set_value("distortion").run()
    _ok(at)
    assert at.select_slider(key=THRESHOLD).value == lam
    assert _tokens(at) == _curve().tokens_at(lam)


FOUR_DIGIT_PERCENT = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?%|[-+]?\d{4,}(\.\d+)?%")


def _all_text(at: AppTest) -> list[str]:
    out = [f"{m.label} {m.value} {m.delta or ''}" for m in at.metric]
    return out + [c.value for c in at.caption] + [m.value for m in at.markdown]


@pytest.mark.parametrize("sizes", [(16, 64), (8, 64), (2, 128)])
def test_tiny_image_gets_a_fitted_range_and_no_four_digit_percentage(sizes) -> None:
    rng = np.random.default_rng(20)
    icon = (rng.random((20, 20, 3)) * 255).astype(np.uint8)
    at = _app().run()
    at.file_uploader(key="uploader").set_value(("icon.png", _png(icon), "image/png")).run()
    at.select_slider(key="w_sizes").set_value(sizes).run()
    _ok(at)
    from adapatch.app_support.recipes import fit_sizes
    lo, hi = fit_sizes(20, 20, sizes)
    assert hi == 32 and lo <= hi
    assert at.select_slider(key="w_sizes").value == sizes  # the setting itself is kept
    notes = [c.value for c in at.caption if "smaller than the" in c.value]
    assert len(notes) == 1 and f"sizes {lo}-{hi} px are used here" in notes[0], notes
    img = ap.load_image(_png(icon))
    budget = min(max(relative_budget(20, 20, fraction=0.3), 1), 4 ** int(np.log2(hi // lo)))
    want = ap.quadtree(img, min_size=lo, max_size=hi, budget=budget).num_tokens
    assert int(_metric(at, "Tokens").replace(",", "")) == want
    for mode in ("budget", "threshold 0"):
        if mode == "threshold 0":
            at.toggle(key="w_use_budget").set_value(False).run()
            at.select_slider(key=THRESHOLD).set_value(0.0).run()
            _ok(at)
        for strategy in ("quadtree", "greedy", "multiscale"):
            at.selectbox(key="w_strategy").set_value(strategy).run()
            _ok(at)
            bad = [t for t in _all_text(at) if FOUR_DIGIT_PERCENT.search(t)]
            assert not bad, (mode, strategy, bad)
            assert int(_metric(at, "Tokens").replace(",", "")) <= 8 * 4  # at most 8x the 16 px grid (4 tokens)
        at.selectbox(key="w_strategy").set_value("quadtree").run()  # the next mode starts on the quadtree


def test_large_image_keeps_its_range() -> None:
    at = _app().run()
    _ok(at)
    assert not [c.value for c in at.caption if "smaller than the" in c.value]


def test_patch_layout_quality_chart_has_psnr_and_ssim_with_the_current_layout() -> None:
    """The default view (multiscale, fast search, with a budget): the curves of its two candidates,
    the distortion quadtree and the uniform grid, and the current layout (the library's default)."""
    at = _app().run()
    _ok(at)
    chart = _quality_chart(at)
    titles = [a["text"] for a in chart["layout"]["annotations"]]
    assert "PSNR vs tokens (dB)" in titles and "SSIM vs tokens (luminance)" in titles
    names = {(t["name"], t.get("yaxis", "y")) for t in chart["data"]}
    for name in ("quadtree · distortion", "uniform", "current"):
        assert (name, "y") in names and (name, "y2") in names, names
    img = load_sample("astronaut")
    lay = ap.default_layout(img, relative_budget(448, 448, fraction=0.3))
    fid = ap.fidelity(img, lay)
    current = [t for t in chart["data"] if t["name"] == "current"]
    assert current[0]["x"] == [lay.num_tokens] and current[0]["y"][0] == pytest.approx(fid["psnr"])
    assert current[1]["y"][0] == pytest.approx(fid["ssim"])
    assert any("SSIM exact at 12 budgets" in c.value for c in at.caption)


def test_compare_shows_the_quality_chart_with_the_budget_marked() -> None:
    at = _app().run()
    at.switch_page("pages/compare.py").run()
    at.slider(key="w_compare_budget_fraction").set_value(0.5).run()
    _ok(at)
    chart = _quality_chart(at)
    img = load_sample("astronaut")
    b = relative_budget(448, 448, fraction=0.5)
    assert [s["x0"] for s in chart["layout"]["shapes"]] == [b, b]  # the budget, in both panels
    names = [t["name"] for t in chart["data"]]
    assert "uniform" in names and any(n.startswith("B: quadtree · distortion") for n in names)
    marks = {t["name"]: t for t in chart["data"] if t["name"] in ("A", "B", "C") and t.get("yaxis", "y") == "y"}
    assert set(marks) == {"A", "B", "C"}
    lay = ap.layout_for_budget(img, "uniform", b)
    assert marks["C"]["x"] == [lay.num_tokens]
    assert marks["C"]["y"][0] == pytest.approx(ap.fidelity(img, lay)["psnr"])
    lay = ap.default_layout(img, b)  # A: the budget-mode default, its point only
    assert marks["A"]["x"] == [lay.num_tokens]
    assert marks["A"]["y"][0] == pytest.approx(ap.fidelity(img, lay)["psnr"])
    assert any("SSIM exact at 12 budgets" in c.value for c in at.caption)
    at.selectbox(key="w_cmp_1_strategy").set_value("greedy").run()
    _ok(at)
    assert any(t["name"].startswith("B: greedy") for t in _quality_chart(at)["data"])


def test_quality_and_curve_figures_are_valid_plotly() -> None:
    """The figures are built without plotly's validation (speed): build them validated here."""
    import plotly.graph_objects as go

    from adapatch.app_support import ui
    from adapatch.quality import quadtree_quality, uniform_quality

    img = load_sample("astronaut")[:200, :300]
    q, u = quadtree_quality(img, ssim_points=4), uniform_quality(img, sizes=[16, 24, 32], ssim_points=2)
    lam = ap.threshold_curve(img, min_size=16, max_size=64, importance="distortion")
    for fig in (ui.quality_figure([q, u], 100, 30.0, 0.9, marks=[("A", 90, 29.0, 0.88, 0)], budget=100),
                ui.quality_figure([q, u]),
                ui.threshold_curve_figure(ap.threshold_curve(img, min_size=16, max_size=64), 0.1, 100, 120),
                ui.threshold_curve_figure(ap.threshold_curve(img, min_size=16, max_size=64), 0.1, 100, None),
                ui.threshold_curve_figure(lam, 37.2, 100, 120, scale=threshold_scale(lam)),
                ui.threshold_curve_figure(lam, 0.0, 100, None, scale=threshold_scale(lam))):
        go.Figure(fig.to_dict())  # raises on an invalid property
