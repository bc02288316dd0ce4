"""The Streamlit app under ``streamlit.testing.v1.AppTest``: every page, every sample, uploads, sliders.

AppTest runs the scripts without a browser (no pixels, fragments run as plain functions), so the
checks are on values: the token metric must equal what ``adapatch`` computes for the same settings.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.app_support.state import DEFAULTS  # noqa: E402
from adapatch.budgets import relative_budget  # noqa: E402
from adapatch.samples import list_samples, load_sample  # noqa: E402
from tests.app_helpers import app as _app, chart_texts, metric as _metric, ok as _ok, use_quadtree  # noqa: E402

PAGES = ["pages/layout.py", "pages/saliency.py", "pages/pruning.py", "pages/compare.py", "pages/efficiency.py"]


def _int(text: str) -> int:
    return int(text.replace(",", ""))


def _budget(img: np.ndarray, fraction: float = DEFAULTS["budget_fraction"]) -> int:
    """The absolute budget the app uses for ``img``: ``fraction`` of its 16 px grid (within range here)."""
    return relative_budget(*img.shape[:2], fraction=fraction)


def _snippet(at: AppTest) -> str:
    """The export's Python snippet (it makes the same calls as the exported settings JSON)."""
    code = [c.value for c in at.code]
    assert code, "no export snippet"
    return code[0]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def at() -> AppTest:
    app = _app()
    app.run()
    _ok(app)
    return app


@pytest.mark.parametrize("sample", list_samples())
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_every_sample(at: AppTest, page: str, sample: str) -> None:
    at.selectbox(key="w_image").set_value(f"sample:{sample}").run()
    at.switch_page(page).run()
    _ok(at)
    assert at.title, "page has no title"


def test_opens_on_a_sample_with_numbers_from_the_library() -> None:
    at = _app().run()
    _ok(at)
    assert at.session_state["ap_current"] == "sample:astronaut"
    img = load_sample("astronaut")
    assert at.selectbox(key="w_strategy").value == "multiscale" and at.selectbox(key="w_scales").value == 1
    lay = ap.default_layout(img, _budget(img))  # the library's budget-mode default: multiscale, scales=1
    assert lay.strategy == "multiscale" and lay.params["scales"] == 1
    assert any(f"= {_budget(img):,} tokens for this 448x448 image" in c.value for c in at.caption)
    eff = ap.efficiency(lay, "ViT-B")
    assert _int(_metric(at, "Tokens")) == lay.num_tokens
    assert _int(_metric(at, "Uniform 16 px")) == eff["uniform16_tokens"]
    assert not [m for m in at.metric if m.label == "Uniform 8 px"]  # min size 16: no finer grid to quote
    assert _metric(at, "Reduction") == f"{100 * eff['token_reduction_vs_uniform16']:.1f}%"
    fid = ap.fidelity(img, lay)
    assert _metric(at, "PSNR dB") == f"{fid['psnr']:.2f}"
    assert _metric(at, "SSIM") == f"{fid['ssim']:.4f}"


def _scale_threshold(position: int, importance: str = "distortion") -> float:
    """The threshold at ``position`` of the slider's scale on astronaut, 16-64 px (the library's)."""
    from adapatch.threshold_scale import threshold_scale
    curve = ap.threshold_curve(load_sample("astronaut"), min_size=16, max_size=64, importance=importance)
    return float(threshold_scale(curve).threshold_at(position))


@pytest.mark.parametrize("position", [10, 100, 190])
def test_threshold_slider_sets_tokens_to_the_library_value(position: int) -> None:
    threshold = _scale_threshold(position)
    at = use_quadtree(_app().run())
    at.toggle(key="w_use_budget").set_value(False).run()
    at.select_slider(key="w_threshold").set_value(threshold).run()
    _ok(at)
    expected = ap.quadtree(load_sample("astronaut"), threshold=threshold, min_size=16, max_size=64,
                           importance="distortion").num_tokens
    assert _int(_metric(at, "Tokens")) == expected


@pytest.mark.parametrize("fraction", [0.25, 0.45, 0.99])
def test_budget_slider_sets_tokens_to_the_library_value(fraction: float) -> None:
    at = _app().run()
    at.slider(key="w_budget_fraction").set_value(fraction).run()
    _ok(at)
    img = load_sample("astronaut")
    budget = _budget(img, fraction)
    expected = ap.default_layout(img, budget).num_tokens  # the default strategy: multiscale, fast search
    assert _int(_metric(at, "Tokens")) == expected
    assert expected <= budget
    assert at.session_state["ap_settings"]["budget_fraction"] == pytest.approx(fraction)


def test_relative_budget_carries_over_to_another_image() -> None:
    """The fraction is the setting: on a new image of another size the absolute budget is that
    fraction of the new image's 16 px grid (no absolute number leaks from the previous image)."""
    at = _app().run()
    at.slider(key="w_budget_fraction").set_value(0.2).run()
    _ok(at)
    big = load_sample("astronaut")
    assert _int(_metric(at, "Tokens")) == ap.default_layout(big, _budget(big, 0.2)).num_tokens
    at.selectbox(key="w_image").set_value("sample:page").run()
    _ok(at)
    small = load_sample("page")
    h, w = small.shape[:2]
    assert (h, w) != big.shape[:2]
    budget = relative_budget(h, w, fraction=0.2)
    assert budget != _budget(big, 0.2)
    assert at.slider(key="w_budget_fraction").value == pytest.approx(0.2)  # the fraction is kept
    assert any(f"= {budget:,} tokens for this {w}x{h} image" in c.value for c in at.caption)
    assert _int(_metric(at, "Tokens")) == ap.default_layout(small, budget).num_tokens
    # the export records the absolute budget used and the relative setting it came from
    snippet = _snippet(at)
    assert f"'budget': {budget}" in snippet or f"budget={budget}" in snippet
    assert "fraction=0.2" in snippet


def test_budget_below_the_strategys_range_is_raised_and_said_so() -> None:
    at = use_quadtree(_app().run())
    at.slider(key="w_budget_fraction").set_value(0.01).run()  # 8 tokens on 448x448: below the 49 of the 64 px grid
    _ok(at)
    img = load_sample("astronaut")
    assert _budget(img, 0.01) == 8
    assert any("= 49 tokens for this 448x448 image (raised from 8" in c.value for c in at.caption)
    assert _int(_metric(at, "Tokens")) == ap.quadtree(img, min_size=16, max_size=64, budget=49).num_tokens


def test_sizes_strategy_and_greedy_budget() -> None:
    at = use_quadtree(_app().run())
    at.select_slider(key="w_sizes").set_value((16, 32)).run()
    _ok(at)
    img = load_sample("astronaut")
    assert _int(_metric(at, "Tokens")) == ap.quadtree(img, min_size=16, max_size=32, budget=_budget(img)).num_tokens
    at.selectbox(key="w_strategy").set_value("greedy").run()
    _ok(at)
    sal = ap.saliency(img, "edges")
    assert _int(_metric(at, "Tokens")) == ap.greedy(img, sal, patch_sizes=(16, 32), budget=_budget(img)).num_tokens


def test_settings_survive_page_switches() -> None:
    threshold = _scale_threshold(150)
    at = use_quadtree(_app().run())
    at.toggle(key="w_use_budget").set_value(False).run()
    at.select_slider(key="w_threshold").set_value(threshold).run()
    for page in ["pages/saliency.py", "pages/compare.py", "pages/layout.py"]:
        at.switch_page(page).run()
        _ok(at)
    assert at.select_slider(key="w_threshold").value == threshold
    assert at.toggle(key="w_use_budget").value is False
    expected = ap.quadtree(load_sample("astronaut"), threshold=threshold, min_size=16, max_size=64,
                           importance="distortion").num_tokens
    assert _int(_metric(at, "Tokens")) == expected


def test_upload_becomes_the_current_image_everywhere() -> None:
    rng = np.random.default_rng(3)
    img = np.clip(load_sample("coffee")[:256, :320] + rng.normal(0, 0.02, (256, 320, 3)), 0, 1).astype(np.float32)
    data = _png(img)
    at = _app().run()
    at.file_uploader(key="uploader").set_value(("mine.png", data, "image/png")).run()
    _ok(at)
    assert at.session_state["ap_current"].startswith("upload:")
    loaded = ap.load_image(data)
    lay = ap.default_layout(loaded, _budget(loaded))  # 30% of 320 tokens: 96
    assert _int(_metric(at, "Tokens")) == lay.num_tokens
    at.switch_page("pages/pruning.py").run()
    _ok(at)
    grid = ap.uniform(256, 320, 16)
    pruned = ap.prune(grid, ap.token_scores(ap.saliency(loaded, "edges"), grid), 0.5)
    assert _int(_metric(at, "Tokens")) == pruned.num_tokens
    at.slider(key="w_keep_ratio").set_value(0.25).run()
    assert _int(_metric(at, "Tokens")) == ap.keep_count(grid.num_tokens, 0.25)


def test_corrupt_upload_in_a_batch_shows_one_error_and_the_rest_work() -> None:
    good = _png(load_sample("rocket"))
    at = _app().run()
    at.file_uploader(key="uploader").set_value([
        ("broken.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 3, "image/png"),
        ("empty.jpg", b"", "image/jpeg"),
        ("rocket copy.png", good, "image/png"),
    ]).run()
    assert not at.exception
    errors = [e.value for e in at.sidebar.error]
    assert len(errors) == 2, errors
    errors = [e.replace("\\", "") for e in errors]  # shown Markdown-escaped
    assert any("broken.png" in e for e in errors) and any("empty.jpg" in e for e in errors)
    assert all("\n" not in e and "Traceback" not in e for e in errors)
    assert at.session_state["ap_current"].startswith("upload:")
    assert not at.main.error
    for page in PAGES:  # the session keeps working on every page
        at.switch_page(page).run()
        assert not at.exception
        assert not at.main.error, [e.value for e in at.main.error]


def test_bad_setting_is_one_line_not_a_traceback() -> None:
    at = _app().run()
    at.switch_page("pages/saliency.py").run()
    at.slider(key="w_sal_edges_low").set_value(200).run()
    at.slider(key="w_sal_edges_high").set_value(100).run()  # low > high: the library refuses
    assert not at.exception
    assert len(at.error) == 1 and "low must be <= high" in at.error[0].value.replace("\\", "")
    at.slider(key="w_sal_edges_high").set_value(250).run()
    _ok(at)


def test_compare_solves_each_layout_for_the_same_budget() -> None:
    at = _app().run()
    at.switch_page("pages/compare.py").run()
    at.slider(key="w_compare_budget_fraction").set_value(0.5).run()
    _ok(at)
    df = at.dataframe[0].value
    img = load_sample("astronaut")
    b = _budget(img, 0.5)  # 392 tokens: half the 16 px grid of a 448x448 image
    assert any(f"= {b:,} tokens for this 448x448 image" in c.value for c in at.caption)
    # A: the budget-mode default; B and C: its two candidates (the distortion quadtree, the equal-token grid)
    want = [ap.default_layout(img, b).num_tokens,
            ap.layout_for_budget(img, "quadtree", b, None, min_size=16, max_size=64,
                                 importance="distortion").num_tokens,
            ap.layout_for_budget(img, "uniform", b).num_tokens]
    assert list(df["tokens"]) == want
    assert want[0] <= b and want[1] <= b
    assert abs(want[2] - b) <= 0.05 * b  # the equal-token uniform grid: any integer patch size
    at.selectbox(key="w_image").set_value("sample:coffee").run()  # another size: the same fraction
    _ok(at)
    coffee = load_sample("coffee")
    b2 = _budget(coffee, 0.5)
    assert b2 != b
    assert list(at.dataframe[0].value["tokens"]) == [
        ap.default_layout(coffee, b2).num_tokens,
        ap.layout_for_budget(coffee, "quadtree", b2, None, min_size=16, max_size=64, importance="distortion").num_tokens,
        ap.layout_for_budget(coffee, "uniform", b2).num_tokens]
    psnr = at.dataframe[0].value["PSNR (dB)"]
    assert psnr.iloc[0] >= psnr.iloc[2] - 0.05  # the default never keeps less than the equal-token grid


def test_device_choices_come_from_the_library() -> None:
    at = _app().run()
    assert list(at.selectbox(key="w_device").options) == ap.available_devices()


def test_efficiency_summary_is_the_library_summary() -> None:
    """The Efficiency page's summary sentence quotes ``adapatch.efficiency_summary`` of the same layouts."""
    at = _app().run()
    at.switch_page("pages/efficiency.py").run()
    _ok(at)
    items = []
    for name in list_samples():
        img = load_sample(name)
        curve = ap.threshold_curve(img, min_size=16, max_size=64, importance="distortion")
        budget = min(max(_budget(img), curve.base_tokens), curve.max_tokens)  # each image: 30% of its grid
        lay = ap.quadtree(img, min_size=16, max_size=64, budget=budget)
        items.append((name, "quadtree", lay, ap.fidelity(img, lay)))
    s = ap.efficiency_summary(ap.efficiency_rows(items), "quadtree", "ViT-B")
    text = " ".join(str(i.value) for i in at.info).replace("\\", "")  # drop Markdown escapes
    assert f"uses {s.total_tokens:,} tokens in all: {s.tokens:,.0f} per image on average" in text
    assert f"(median {s.p50_tokens:,}, p95 {s.p95_tokens:,}, max {s.max_tokens:,})" in text
    assert f"{100 * s.reduction_vs_uniform16:.0f}% fewer" in text or f"{-100 * s.reduction_vs_uniform16:.0f}% more" in text
    assert f"PSNR {s.psnr:.1f} dB" in text
    table = at.dataframe[1].value  # all images together: a row per measure, a column per strategy
    assert table.loc["total tokens", "quadtree"] == f"{s.total_tokens:,}"
    assert table.loc["ViT-B MACs vs uniform 16 px, ratio of totals", "quadtree"] == f"×{s.speedup_vs_uniform16:.2f} faster"


def test_efficiency_page_without_any_adaptive_layout() -> None:
    """Settings the library refuses on every image (a saliency importance with bad saliency
    parameters): quadtree and greedy fail per image (one note each); the page keeps working and shows
    the uniform grid, with no error; multiscale (it compares by distortion, no saliency) still has its
    layouts. (A budget cannot fail: it is kept within each image's range.)"""
    at = _app().run()
    at.session_state["ap_settings"]["use_budget"] = True
    at.session_state["ap_settings"]["budget_fraction"] = 0.01  # below every image's minimum: raised, no failure
    at.session_state["ap_settings"]["importance"] = "mean_saliency"
    at.session_state["ap_settings"]["saliency_params"] = {"edges": {"low": 200, "high": 100}}
    at.switch_page("pages/efficiency.py").run()
    _ok(at)
    assert any("low must be" in c.value.replace("\\", "") for c in at.caption)
    summary = at.dataframe[1].value  # all images together: a column per strategy that has layouts
    assert list(summary.columns) == ["multiscale", "uniform 16 px"]


def test_budget_mode_shows_quality_against_equal_token_uniform() -> None:
    """Default view (budget, distortion): the PSNR-vs-tokens chart of the quadtree and the uniform grid."""
    at = _app().run()
    _ok(at)
    charts = chart_texts(at)

    def has(texts: list[str], part: str) -> bool:
        return any(part in t for t in texts)

    assert any(has(c, "PSNR vs tokens") and has(c, "uniform") and has(c, "quadtree · distortion") for c in charts)
    at.toggle(key="w_use_budget").set_value(False).run()  # threshold mode: the tokens-vs-threshold curve
    charts = chart_texts(at)
    assert any(has(c, "Tokens vs threshold") for c in charts) and not any(has(c, "PSNR vs tokens") for c in charts)
