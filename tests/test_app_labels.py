"""Honest, readable numbers in the app (issue 12): MACs labelled as GMACs / "MACs ratio", never as
FLOPs; no "-0.0%"; human column names and percentages; PSNR averages of the mean MSE; a colour bar
under the saliency heatmap; model-source messages in words; bundled measurements captioned as such.

AppTest runs the pages without a browser; labels, values and the styled tables' display values are
read from the element protos.
"""

from __future__ import annotations

import io
import json
import re
import sys

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from adapatch import render  # noqa: E402
from adapatch.app_support import model_source, ui  # noqa: E402
from tests.app_helpers import app as _app, ok as _ok  # noqa: E402

NEGATIVE_ZERO = re.compile(r"-0(\.0+)?%")
# exception class names that must never be UI text
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Warning)\b")


def _elements(at: AppTest):
    def walk(node):
        for child in getattr(node, "children", {}).values():
            yield child
            yield from walk(child)
    return list(walk(at._tree))


def _labels(at: AppTest) -> list[str]:
    """Every widget and metric label on the page."""
    return [str(e.label) for e in _elements(at) if isinstance(getattr(e, "label", None), str)]


def _display(df_element):
    """A styled table's display values (what the reader sees), as a DataFrame of strings."""
    return convert_arrow_bytes_to_pandas_df(df_element.proto.arrow_data.styler.display_values)


def _metric_texts(at: AppTest) -> list[str]:
    return [t for m in at.metric for t in (m.label, m.value, m.proto.delta, m.help or "")]


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ formatters
def test_percent_formatters_never_show_negative_zero() -> None:
    for f in (0.0, -0.0, -1e-9, 1e-9, -0.0004, 0.0004):
        assert ui.fmt_pct(f) == "0.0%"
        assert ui.fmt_delta_pct(f) is None  # no delta rather than "+0.0%" / "-0.0%"
        assert ui.fewer_phrase(f) == "0% fewer"
    assert ui.fmt_pct(0.3612) == "36.1%" and ui.fmt_pct(-0.25) == "-25.0%"
    assert ui.fmt_delta_pct(-0.7) == "-70.0%" and ui.fmt_delta_pct(0.125) == "+12.5%"
    assert ui.fmt_delta_pct(-0.0006) == "-0.1%"  # rounds away from zero: a real change keeps its sign
    assert ui.fewer_phrase(0.36) == "36% fewer" and ui.fewer_phrase(-0.2) == "20% more"
    assert ui.fewer_phrase(-0.004) == "0% fewer"
    assert ui.fmt_gmacs(47.4e9) == "47.40 GMACs" and ui.fmt_gmacs(47.4e9, 1) == "47.4 GMACs"
    assert ui.fmt_psnr(100.0) == "lossless" and ui.fmt_psnr(31.234) == "31.23"


def test_colorbar_is_the_heatmaps_colours() -> None:
    bar = render.colorbar("viridis", 300, 10, ("0", "1"))
    assert bar.dtype == np.uint8 and bar.shape[1:] == (300, 3) and bar.shape[0] > 10  # a label band below
    ramp = render.colorize(np.linspace(0, 1, 300, dtype=np.float32)[None], "viridis")[0]
    np.testing.assert_array_equal(bar[0], ramp)
    np.testing.assert_array_equal(bar[9], ramp)
    band = bar[10:]
    assert (band < 128).any() and (band == 255).mean() > 0.5  # dark text on white
    assert (band[:, :40] < 128).any() and (band[:, -40:] < 128).any()  # "0" at the left end, "1" at the right
    assert render.colorbar("turbo", 64, 8, ()).shape == (8, 64, 3)
    with pytest.raises(ValueError):
        render.colorbar("nope")


# ------------------------------------------------------------------ pages
def test_patch_layout_metrics_say_macs_not_flops() -> None:
    at = _app().run()
    _ok(at)
    labels = [m.label for m in at.metric]
    assert not any("FLOP" in x for x in labels), labels
    macs = next(m for m in at.metric if m.label == "MACs ratio ViT-B")
    assert macs.value.startswith("×") and macs.proto.delta.endswith(" GMACs")
    assert "GMACs vs" in macs.help and "what ViT papers report as FLOPs" in macs.help  # the convention, stated
    assert not any(NEGATIVE_ZERO.search(t) for t in _metric_texts(at))


def test_patch_layout_widgets_say_macs_not_flops() -> None:
    at = _app().run()
    _ok(at)
    assert not any("FLOP" in x for x in _labels(at)), _labels(at)


def test_no_negative_zero_delta_when_the_layout_is_the_grid() -> None:
    """A 64x64 noise image at threshold 0: every box is 16 px, exactly the 16 px grid (reduction 0),
    which the old formatter showed as a "-0.0%" delta."""
    rng = np.random.default_rng(3)
    at = _app().run()
    at.file_uploader(key="uploader").set_value(("noise.png", _png(rng.random((64, 64, 3))), "image/png")).run()
    at.toggle(key="w_use_budget").set_value(False).run()
    at.select_slider(key="w_threshold").set_value(0.0).run()
    _ok(at)
    tokens = next(m for m in at.metric if m.label == "Tokens")
    assert tokens.value == "16" and next(m for m in at.metric if m.label == "Uniform 16 px").value == "16"
    assert tokens.proto.delta == ""  # no delta rather than "-0.0%"
    assert next(m for m in at.metric if m.label == "Reduction").value == "0.0%"
    assert not any(NEGATIVE_ZERO.search(t) for t in _metric_texts(at))


def test_compare_table_says_gmacs_and_macs_ratio() -> None:
    at = _app().run()
    at.switch_page("pages/compare.py").run()
    _ok(at)
    assert not any("FLOP" in x for x in _labels(at)), _labels(at)
    table = at.dataframe[0]
    cols = list(table.value.columns)
    assert "ViT-B GMACs" in cols and "MACs ratio vs uniform 16 px" in cols
    assert not any("FLOP" in c for c in cols), cols
    config = json.loads(table.proto.columns or "{}")  # parsed: the JSON text may escape non-ASCII
    helps = [c.get("help") or "" for c in config.values()]
    assert any("what ViT papers report as FLOPs" in h for h in helps), helps  # the convention, in the column help
    shown = _display(table)
    assert all(v.startswith("×") for v in shown.iloc[:, list(cols).index("MACs ratio vs uniform 16 px")])


def test_efficiency_tables_have_human_names_and_percentages() -> None:
    at = _app().run()
    at.switch_page("pages/efficiency.py").run()
    at.toggle(key="w_eff_samples").set_value(True).run()
    _ok(at)
    assert not any("FLOP" in x for x in _labels(at)), _labels(at)
    per_image = next(d for d in at.dataframe if "fewer tokens than uniform 16 px" in d.value.columns)
    cols = list(per_image.value.columns)
    raw = {"uniform16", "reduction", "min_size", "uniform_min", "reduction_min", "psnr", "ssim"}
    assert not raw & set(cols), cols
    assert not any(c.endswith(" speedup") or "uniform16" in c for c in cols), cols
    assert {"tokens, uniform 16 px", "PSNR (dB)", "ViT-B GMACs", "ViT-B speed-up vs uniform 16 px"} <= set(cols)
    shown = _display(per_image)
    # (the finest-patch columns only show when a finest patch is not 16 px: test_app_efficiency_readable)
    for col in [c for c in ("fewer tokens than uniform 16 px", "fewer tokens than uniform finest patch") if c in cols]:
        j = cols.index(col)
        values = list(shown.iloc[:, j])
        assert all(re.fullmatch(r"-?\d+\.\d%", v) for v in values), values
        want = [ui.fmt_pct(f) for f in per_image.value[col]]
        assert values == want
    assert not any(NEGATIVE_ZERO.search(str(v)) for v in shown.to_numpy().ravel())
    # the uniform 16 px rows save nothing: "0.0%", never "-0.0%"
    grid = [v for s, v in zip(per_image.value["strategy"], shown.iloc[:, cols.index("fewer tokens than uniform 16 px")])
            if s == "uniform 16 px"]
    assert grid and set(grid) == {"0.0%"}
    summary = at.dataframe[1].value
    assert "PSNR dB (of the mean MSE)" in summary.index  # one row per measure, one column per strategy
    assert not any(NEGATIVE_ZERO.search(str(v)) for v in summary.to_numpy().ravel())
    captions = " ".join(c.value for c in at.caption)
    assert "what ViT papers report as FLOPs" in captions
    assert "bundled measurement from `adapatch/assets/model/latency.json`" in captions
    assert "bundled measurement from `adapatch/assets/model/results.json`" in captions
    assert "x86_64 CPU, 2 threads, torch" in captions


def test_saliency_heatmap_has_a_colour_bar() -> None:
    at = _app().run()
    at.switch_page("pages/saliency.py").run()
    _ok(at)
    captions = [img.caption for e in at.get("image") for img in e.proto.imgs]
    bars = [c for c in captions if c.startswith("Colour bar")]
    assert len(bars) == 1 and "turbo" in bars[0] and "0" in bars[0] and "1" in bars[0], captions
    at.selectbox(key="w_colormap").set_value("viridis").run()  # the bar follows the colour map
    _ok(at)
    captions = [img.caption for e in at.get("image") for img in e.proto.imgs]
    assert any(c.startswith("Colour bar (viridis)") for c in captions), captions


# ------------------------------------------------------------------ messages in words
@pytest.mark.parametrize("error, words", [
    (ModuleNotFoundError("No module named 'timm'", name="timm"), "timm is not installed: pip install timm"),
    (ModuleNotFoundError("No module named 'torchvision'", name="torchvision"),
     "timm is installed but cannot be imported: it needs torchvision, which is not installed"),
    (RuntimeError("operator torchvision::nms does not exist"),
     ("timm is installed but cannot be imported: its torchvision does not match torch "
      "(operator torchvision::nms does not exist)")),
    (ImportError("cannot import name 'x' from 'timm.layers'", name="timm.layers"),
     "timm is installed but cannot be imported: cannot import name"),
    (OSError(), "timm is installed but cannot be imported"),
])
def test_timm_messages_are_words_not_exception_classes(error, words) -> None:
    text = model_source.timm_reason(error)
    assert text.startswith(words), text
    assert not CLASS_NAME.search(text), text


def test_timm_unavailable_in_words(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ModuleNotFoundError
    text = model_source.timm_unavailable()
    assert text is not None and text.startswith("timm is not installed: pip install timm")
    assert not CLASS_NAME.search(text)


def test_model_load_failure_reason_in_words() -> None:
    for e in (RuntimeError("size mismatch for blocks.0"), KeyError("cls_token"), OSError(), MemoryError()):
        text = model_source._reason(e)
        assert text and not CLASS_NAME.search(text), text
    assert model_source._reason(ValueError("a bad file")) == "a bad file"


def test_guard_says_what_went_wrong_in_words() -> None:
    """An unexpected failure in a page is one sentence, with no exception class name."""
    at = AppTest.from_string(
        "from adapatch.app_support import ui\n"
        "with ui.guard('demo'):\n"
        "    raise KeyError('boom')\n"
        "with ui.guard():\n"
        "    raise ValueError()\n", default_timeout=60).run()
    assert not at.exception
    texts = [e.value.replace("\\", "") for e in at.error]  # drop Markdown escapes
    assert len(texts) == 2, texts
    assert texts[0].startswith("demo: something went wrong inside the app")
    assert not any(CLASS_NAME.search(t) or "KeyError" in t for t in texts), texts


def test_compare_banner_names_the_best_by_each_measure_it_quotes() -> None:
    at = _app().run()
    at.switch_page("pages/compare.py").run()
    _ok(at)
    df = at.dataframe[0].value
    banner = at.success[0].value.replace("\\", "")  # md_escape's backslashes
    by_psnr, by_ssim = df["PSNR (dB)"].idxmax(), df["SSIM"].idxmax()
    assert by_psnr in banner and by_ssim in banner
    if by_psnr != by_ssim:
        assert "disagree" in banner
