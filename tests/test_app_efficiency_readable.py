"""The Efficiency page reads at 1440x900 (issue 12): the tokens chart's log axis has labelled 1-2-5
ticks in plain numbers and a title that says so, the per-image table's columns have short headers
sized to fit the page (no horizontal scrolling), percentages as percentages, and the summary table
has one row per measure so no column is cut off.

AppTest sees the figure spec and the tables' column configuration, not pixels: the screenshot e2e
test (tests/e2e/test_page_screenshots.py) shows the same page in Chromium.
"""

from __future__ import annotations

import io
import json
import math
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")
from streamlit.dataframe_util import convert_arrow_bytes_to_pandas_df  # noqa: E402

from adapatch.app_support import ui  # noqa: E402
from tests.app_helpers import app, ok  # noqa: E402

TABLE_WIDTH = 945
"""Pixels a table has inside the Efficiency page's expander at a 1440 px wide window (measured in Chromium)."""


def _is_125(v: float) -> bool:
    """Whether ``v`` is 1, 2, 3 or 5 times a power of ten."""
    k = math.floor(math.log10(v) + 1e-9)
    return round(v / 10 ** k, 9) in (1.0, 2.0, 3.0, 5.0)


@pytest.mark.parametrize("lo, hi", [(1, 4), (4, 3040), (84, 784), (1, 12500), (0.3, 7.0), (1, 2e7), (50, 50)])
def test_log_ticks_cover_the_range_with_round_values(lo: float, hi: float) -> None:
    ticks = ui.log_ticks(lo, hi)
    assert ticks == sorted(set(ticks)) and all(_is_125(t) for t in ticks)
    assert ticks[0] <= lo and ticks[-1] >= hi  # both ends labelled
    assert ticks[0] * 10 > lo and ticks[-1] / 10 < hi  # and not a decade beyond either
    assert 2 <= len(ticks) <= 13  # readable: never a tick per minor step over many decades
    decades = math.log10(hi) - math.log10(lo)
    if decades <= 3:
        assert {2.0, 5.0} & {round(t / 10 ** math.floor(math.log10(t)), 9) for t in ticks}


def test_log_ticks_reject_non_positive_ranges() -> None:
    with pytest.raises(ValueError):
        ui.log_ticks(0, 10)
    with pytest.raises(ValueError):
        ui.log_ticks(10, 5)


def test_log_axis_labels_are_plain_numbers() -> None:
    axis = ui.log_axis([4, 84, 3040, 12500], "tokens per image (log scale)")
    assert axis["type"] == "log" and axis["tickmode"] == "array"
    assert axis["ticktext"] == [ui.fmt_tick(t) for t in axis["tickvals"]]
    assert "10,000" in axis["ticktext"] and not any(re.search(r"[kKe]", t) for t in axis["ticktext"])
    lo, hi = axis["range"]
    assert lo <= math.log10(axis["tickvals"][0]) and hi >= math.log10(axis["tickvals"][-1])


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(a, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _config(df_element) -> dict:
    return json.loads(df_element.proto.columns or "{}")


def _display(df_element):
    return convert_arrow_bytes_to_pandas_df(df_element.proto.arrow_data.styler.display_values)


def _per_image(at):
    return next(d for d in at.dataframe if "fewer tokens than uniform 16 px" in d.value.columns)


def _check_per_image_table(table) -> dict:
    cfg = {k: v for k, v in _config(table).items() if k != "_index"}
    cols = list(table.value.columns)
    assert set(cfg) == set(cols)
    labels = [cfg[c]["label"] for c in cols]
    assert all(0 < len(x) <= 15 for x in labels), labels  # short headers
    for c in cols:  # each column at least as wide as its header and its widest cell
        assert cfg[c]["width"] >= round(6.2 * len(cfg[c]["label"])) + 20
    assert sum(cfg[c]["width"] for c in cols) <= TABLE_WIDTH  # every column on the page, no scrolling
    assert all(cfg[c].get("help") for c in cols if c not in ("image", "strategy"))  # what each short header means
    shown = _display(table)
    for c in cols:
        if c.startswith("fewer tokens than"):
            values = list(shown.iloc[:, cols.index(c)])
            assert all(re.fullmatch(r"-?\d+\.\d%", v) for v in values), values
    return {c: cfg[c]["label"] for c in cols}


def test_tokens_chart_log_axis_and_per_image_table_fit_the_page() -> None:
    rng = np.random.default_rng(0)
    at = app().run()
    at.file_uploader(key="uploader").set_value([  # sizes over four orders of magnitude of tokens
        ("icon.png", _png(rng.random((20, 20, 3))), "image/png"),
        ("panorama.png", _png(rng.random((800, 4000, 3))), "image/png")]).run()
    at.switch_page("pages/efficiency.py").run()
    ok(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    axis = spec["layout"]["yaxis"]
    assert axis["type"] == "log" and "log scale" in axis["title"]["text"] and "tokens" in axis["title"]["text"]
    tokens = [y for trace in spec["data"] for y in trace["y"] if y is not None]
    assert min(tokens) == 1 and max(tokens) == 12500  # the icon's one token, the panorama's 16 px grid
    assert axis["tickvals"][0] <= 1 and axis["tickvals"][-1] >= 12500
    assert all(_is_125(t) for t in axis["tickvals"]) and "minor" in axis
    images = spec["data"][0]["x"]
    assert images[:2] == ["icon.png", "panorama.png"] and "astronaut" in images  # short names, not descriptions
    assert len({t["name"] for t in spec["data"]}) == len(spec["data"])  # one bar per strategy and image
    table = _per_image(at)
    labels = _check_per_image_table(table)
    assert list(labels.values()) == ["Image", "Strategy", "Tokens", "16 px grid", "Saved vs 16 px", "ViT-B GMACs",
                                     "Speed-up", "PSNR (dB)", "SSIM"]
    assert set(table.value["image"]) >= {"icon.png", "panorama.png", "astronaut"}


def test_per_image_table_with_a_finer_patch_still_fits() -> None:
    """Sizes 8-64 px: the finest patch is 8 px, so the finest-grid columns are shown too, and still fit."""
    at = app().run()
    at.session_state["ap_settings"]["sizes"] = (8, 64)
    at.switch_page("pages/efficiency.py").run()
    ok(at)
    table = _per_image(at)
    labels = _check_per_image_table(table)
    assert {"Finest px", "Saved vs finest"} <= set(labels.values())
    assert 8 in set(table.value["finest patch (px)"])
    download = at.get("download_button")
    assert any("CSV" in b.proto.label for b in download)


def test_summary_table_has_a_row_per_measure() -> None:
    at = app().run()
    at.switch_page("pages/efficiency.py").run()
    ok(at)
    summary = next(d for d in at.dataframe if "PSNR dB (of the mean MSE)" in d.value.index)
    assert list(summary.value.columns) == ["multiscale", "quadtree", "greedy", "uniform 16 px"]
    assert {"total tokens", "tokens / MP", "mean SSIM"} <= set(summary.value.index)
    cfg = _config(summary)
    assert cfg["_index"]["width"] >= max(round(6.2 * len(m)) + 20 for m in summary.value.index)
    assert summary.value.loc["fewer tokens than uniform 16 px (ratio of totals)", "uniform 16 px"] == "0.0%"


def test_per_image_csv_has_every_column_and_preset() -> None:
    import pandas as pd

    import adapatch as ap
    from adapatch.efficiency import VIT_PRESETS
    from adapatch.report import efficiency_rows

    img = np.random.default_rng(1).random((64, 96, 3)).astype(np.float32)
    lay = ap.quadtree(img, budget=10, min_size=16, max_size=32)
    rows = efficiency_rows([("a", "quadtree", lay, {"psnr": 30.0, "ssim": 0.9})], list(VIT_PRESETS))
    page = _load_page_functions()
    csv = page["_per_image_csv"](pd.DataFrame(rows), list(VIT_PRESETS))
    header = csv.splitlines()[0].split(",")
    assert "fewer tokens than uniform 16 px (fraction)" in header
    assert all(f"{v} GMACs" in header for v in VIT_PRESETS) and "pixels" in header


def _load_page_functions() -> dict:
    """The page's helper functions without running the page (everything above its first ``st.title``)."""
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "pages" / "efficiency.py").read_text()
    ns: dict = {}
    exec(compile(src[:src.index('\nst.title("Efficiency")')], "pages/efficiency.py", "exec"), ns)  # noqa: S102
    return ns
