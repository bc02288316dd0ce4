"""Charts that read: the PSNR axis of the quality charts covers the range where layouts differ (not
the 60-100 dB of a quadtree's last splits and the lossless end), a lossless point reads "lossless",
coincident points and series stay visible, and the Efficiency chart's image names never run into
each other. The figures are parsed (``tests.app_helpers.chart_texts`` / the figure JSON)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("streamlit")

from adapatch.app_support import ui
from adapatch.fidelity import MAX_PSNR
from adapatch.quality import QualityCurve, quadtree_quality, uniform_quality
from adapatch.samples import load_sample
from tests.app_helpers import app, chart_texts, ok


def _curve(label: str, tokens, psnr) -> QualityCurve:
    return QualityCurve(label=label, tokens=np.asarray(tokens), psnr=np.asarray(psnr, float),
                        ssim_tokens=np.zeros(0, int), ssim=np.zeros(0))


def _psnr_range(fig) -> list[float]:
    return list(fig.to_plotly_json()["layout"]["yaxis"]["range"])


def test_psnr_axis_leaves_the_last_splits_and_lossless_off_scale() -> None:
    img = load_sample("astronaut")
    q, u = quadtree_quality(img, 16, 64, ssim_points=3), uniform_quality(img, ssim_points=3)
    assert q.psnr.max() >= MAX_PSNR and np.sort(q.psnr)[-2] > 70  # the case: a quadtree's last splits
    mark = float(np.interp(235, q.tokens, q.psnr))
    fig = ui.quality_figure([q, u], 235, mark, 0.9)
    lo, hi = _psnr_range(fig)
    assert hi <= ui.PSNR_AXIS_TOP and lo <= min(u.psnr.min(), q.psnr.min()) and hi >= mark + 3
    notes = [a["text"] for a in fig.to_plotly_json()["layout"]["annotations"]]
    assert any("off scale" in n and "lossless" in n for n in notes)
    hover = [t for d in fig.to_plotly_json()["data"] if d.get("text") for t in d["text"]]
    assert "lossless" in hover and not [t for t in hover if t.startswith("100.00")]


def test_psnr_axis_grows_to_show_a_high_mark_and_keeps_a_range_that_fits() -> None:
    fig = ui.quality_figure([_curve("q", [10, 20, 30, 40], [40, 55, 70, MAX_PSNR])], 20, 55.0, None)
    lo, hi = _psnr_range(fig)
    assert lo == 39 and hi == 58  # the mark + 3 dB: above PSNR_AXIS_TOP, it stays in view
    fig = ui.quality_figure([_curve("q", [10, 20], [30, 36])], 10, 30.0, None)
    assert _psnr_range(fig) == [29, 39]  # nothing off scale: the whole curve, no note
    assert not [a for a in fig.to_plotly_json()["layout"]["annotations"] if "off scale" in a["text"]]
    fig = ui.quality_figure([_curve("q", [10, 20], [60, 70])], None, None, None)
    assert _psnr_range(fig) == [59, 73]  # every point above the top: kept whole, never an inverted range


def test_coincident_marks_are_drawn_as_rings() -> None:
    marks = [("A", 235, 29.8, 0.93, None), ("B", 235, 29.8, 0.93, 0), ("C", 225, 28.1, 0.9, 1)]
    assert ui.coincident_marks(marks) == [("B", "A")]
    fig = ui.quality_figure([_curve("q", [200, 300], [28, 31]), _curve("uniform", [200, 300], [27, 30])],
                            marks=marks).to_plotly_json()
    sym = {d["name"]: d["marker"]["symbol"] for d in fig["data"] if d["name"] in ("A", "B", "C")}
    size = {d["name"]: d["marker"]["size"] for d in fig["data"] if d["name"] in ("A", "B", "C")}
    assert sym == {"A": "diamond", "B": "diamond-open", "C": "diamond"} and size["B"] > size["A"]
    near = [("A", 875, 31.26, 0.88, None), ("B", 881, 31.03, 0.88, 0), ("C", 875, 31.26, 0.88, 1)]
    curves = [_curve("q", [200, 3000], [25, 45]), _curve("uniform", [200, 3000], [25, 36])]
    tol = ui.mark_tolerance(curves, near)
    assert ui.coincident_marks(near) == [("C", "A")]  # the same point only
    assert ui.coincident_marks(near, *tol) == [("B", "A"), ("C", "A")]  # and close enough to hide it
    fig = ui.quality_figure(curves, marks=near).to_plotly_json()
    size = {d["name"]: d["marker"]["size"] for d in fig["data"] if d["name"] in ("A", "B", "C")}
    assert size["A"] < size["B"] < size["C"]  # two rings around A, one inside the other
    assert ui.coincident_marks([("A", 200, 25.0), ("B", 3000, 45.0)], *tol) == []


def test_overlapping_series_are_found() -> None:
    series = {"q": [{"tokens": 16, "accuracy": 0.46}, {"tokens": 28, "accuracy": 0.6665}],
              "m": [{"tokens": 15.72, "accuracy": 0.468}, {"tokens": 27.98, "accuracy": 0.6675}],
              "u": [{"tokens": 16, "accuracy": 0.42}, {"tokens": 25, "accuracy": 0.53}]}
    assert ui.overlapping_series(series) == {"m": "q"}
    from adapatch.app_support import model_view as mv
    from adapatch.model.results import task_results

    over = ui.overlapping_series(mv.accuracy_series(task_results()))
    assert over.get("multiscale") == "quadtree · distortion"  # the bundled results: multiscale kept the quadtree


@pytest.mark.parametrize("n", [2, 6, 14, 30])
def test_bar_chart_labels_fit_their_group(n: int) -> None:
    names = ["big_3000.jpg", "photo_gravel.jpg", "IMG_20240101_123456789.jpeg", "astronaut"] * 8
    cats = [f"{names[i % len(names)]}{'' if i < len(names) else f' #{i}'}" for i in range(n)]
    fig = ui.grouped_bars_figure(cats, [("a", list(range(1, n + 1)), "#000")], title="t", y_title="y")
    axis = fig.to_plotly_json()["layout"]["xaxis"]
    assert axis["tickvals"] == cats  # the categories themselves (hover names them in full)
    room = ui.CHART_WIDTH_PX / n  # px a group has
    for text in axis["ticktext"]:
        lines = text.split("<br>")
        assert len(lines) <= 3 and all(len(x) * ui.LABEL_CHAR_PX <= max(room, 4 * ui.LABEL_CHAR_PX) for x in lines)


def test_wrap_label_keeps_every_character_it_can() -> None:
    assert ui.wrap_label("big_3000.jpg", 30) == "big_3000.jpg"
    assert ui.wrap_label("photo_gravel.jpg", 8).replace("<br>", "") == "photo_gravel.jpg"
    assert ui.wrap_label("a" * 40, 8).endswith("…") and ui.wrap_label("a" * 40, 8).count("<br>") == 2


def test_patch_layout_quality_chart_reads_25_to_40_db() -> None:
    at = app().run()  # astronaut, multiscale at 30%: its candidates' curves and the current layout
    ok(at)
    chart = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if "Quality vs tokens" in json.dumps(json.loads(c.proto.spec)["layout"].get("title")))
    lo, hi = chart["layout"]["yaxis"]["range"]
    current = next(t for t in chart["data"] if t["name"] == "current" and t.get("yaxis", "y") == "y")
    assert lo < current["y"][0] < hi <= ui.PSNR_AXIS_TOP
    assert any("off scale" in t for texts in chart_texts(at) for t in texts)
