"""The Streamlit app under ``streamlit.testing.v1.AppTest``: every page, every sample, uploads, sliders.

AppTest runs the scripts without a browser (no pixels, fragments run as plain functions), so the
checks are on values: the token metric must equal what ``adapatch`` computes for the same settings.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

import adapatch as ap  # noqa: E402
from adapatch.samples import list_samples, load_sample  # noqa: E402

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["pages/layout.py", "pages/saliency.py", "pages/pruning.py", "pages/compare.py", "pages/efficiency.py"]


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=120)


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def _int(text: str) -> int:
    return int(text.replace(",", ""))


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
    lay = ap.quadtree(img, min_size=16, max_size=64, budget=500)  # the library's budget-mode default
    assert lay.params["importance"] == "distortion"
    eff = ap.efficiency(lay, "ViT-B")
    assert _int(_metric(at, "Tokens")) == lay.num_tokens
    assert _int(_metric(at, "Uniform 16 px")) == eff["uniform16_tokens"]
    assert not [m for m in at.metric if m.label == "Uniform 8 px"]  # min size 16: no finer grid to quote
    assert _metric(at, "Reduction") == f"{100 * eff['token_reduction_vs_uniform16']:.1f}%"
    fid = ap.fidelity(img, lay)
    assert _metric(at, "PSNR dB") == f"{fid['psnr']:.2f}"
    assert _metric(at, "SSIM") == f"{fid['ssim']:.4f}"


@pytest.mark.parametrize("threshold", [0.05, 0.2, 0.35])
def test_threshold_slider_sets_tokens_to_the_library_value(threshold: float) -> None:
    at = _app().run()
    at.toggle(key="w_use_budget").set_value(False).run()
    at.slider(key="w_threshold").set_value(threshold).run()
    _ok(at)
    expected = ap.quadtree(load_sample("astronaut"), threshold=threshold, min_size=16, max_size=64,
                           importance="distortion").num_tokens
    assert _int(_metric(at, "Tokens")) == expected


@pytest.mark.parametrize("budget", [200, 350, 777])
def test_budget_slider_sets_tokens_to_the_library_value(budget: int) -> None:
    at = _app().run()
    at.slider(key="w_budget").set_value(budget).run()
    _ok(at)
    expected = ap.quadtree(load_sample("astronaut"), min_size=16, max_size=64, budget=budget).num_tokens
    assert _int(_metric(at, "Tokens")) == expected
    assert expected <= budget


def test_sizes_strategy_and_greedy_budget() -> None:
    at = _app().run()
    at.select_slider(key="w_sizes").set_value((16, 32)).run()
    _ok(at)
    img = load_sample("astronaut")
    assert _int(_metric(at, "Tokens")) == ap.quadtree(img, min_size=16, max_size=32, budget=500).num_tokens
    at.selectbox(key="w_strategy").set_value("greedy").run()
    _ok(at)
    sal = ap.saliency(img, "edges")
    assert _int(_metric(at, "Tokens")) == ap.greedy(img, sal, patch_sizes=(16, 32), budget=500).num_tokens


def test_settings_survive_page_switches() -> None:
    at = _app().run()
    at.toggle(key="w_use_budget").set_value(False).run()
    at.slider(key="w_threshold").set_value(0.25).run()
    for page in ["pages/saliency.py", "pages/compare.py", "pages/layout.py"]:
        at.switch_page(page).run()
        _ok(at)
    assert at.slider(key="w_threshold").value == pytest.approx(0.25)
    assert at.toggle(key="w_use_budget").value is False
    expected = ap.quadtree(load_sample("astronaut"), threshold=0.25, min_size=16, max_size=64,
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
    lay = ap.quadtree(loaded, min_size=16, max_size=64, budget=500)
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
    at.slider(key="w_compare_budget").set_value(400).run()
    _ok(at)
    df = at.dataframe[0].value
    img = load_sample("astronaut")
    want = [ap.layout_for_budget(img, "quadtree", 400, None, min_size=16, max_size=64,
                                 importance="distortion").num_tokens,
            ap.layout_for_budget(img, "quadtree", 400, None, min_size=16, max_size=64, importance="std").num_tokens,
            ap.layout_for_budget(img, "uniform", 400).num_tokens]
    assert list(df["tokens"]) == want
    assert want[0] <= 400 and want[1] <= 400
    assert abs(want[2] - 400) <= 0.05 * 400  # the equal-token uniform grid: any integer patch size


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
        lay = ap.quadtree(img, min_size=16, max_size=64, budget=500)
        items.append((name, "quadtree", lay, ap.fidelity(img, lay)))
    s = ap.efficiency_summary(ap.efficiency_rows(items), "quadtree", "ViT-B")
    text = " ".join(str(i.value) for i in at.info).replace("\\", "")  # drop Markdown escapes
    assert f"uses on average {s.tokens:,.0f} tokens" in text
    assert f"needs {s.uniform16_tokens:,.0f}" in text
    assert f"PSNR {s.psnr:.1f} dB" in text


def test_efficiency_page_without_any_adaptive_layout() -> None:
    """A budget no image can meet: quadtree and greedy fail per image (one note each); the page keeps
    working and shows the uniform grid, with no error."""
    at = _app().run()
    at.session_state["ap_settings"]["use_budget"] = True
    at.session_state["ap_settings"]["budget"] = 1
    at.switch_page("pages/efficiency.py").run()
    _ok(at)
    assert any("budget must be" in c.value for c in at.caption)
    assert any("No adaptive layout" in c.value for c in at.caption)


def test_budget_mode_shows_quality_against_equal_token_uniform() -> None:
    """Default view (budget, distortion): the PSNR-vs-tokens chart of the quadtree and the uniform grid."""
    at = _app().run()
    _ok(at)
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("PSNR vs tokens" in s and "uniform" in s and "quadtree · distortion" in s for s in specs)
    at.toggle(key="w_use_budget").set_value(False).run()  # threshold mode: the tokens-vs-threshold curve
    specs = [c.proto.spec for c in at.get("plotly_chart")]
    assert any("Tokens vs threshold" in s for s in specs) and not any("PSNR vs tokens" in s for s in specs)
