"""The model charts under AppTest (issue 12): accuracy vs tokens on the Model page (one series per
method of the bundled results, the full grid as a reference line), keep ratio vs prediction
agreement on the Token pruning page (one series per scorer, the library's numbers, the current
keep ratio marked), and "Measure on this machine" (a short live latency run that replaces the
bundled numbers, and the way back). Bundled numbers never claim to come from this machine.
"""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from adapatch.app_support import model_view as mv  # noqa: E402
from adapatch.model.results import task_results  # noqa: E402
from tests.app_helpers import figures as _figures, ok as _ok, open_page  # noqa: E402

TINY_RUN = {"token_counts": (4, 8), "batch_sizes": (1,), "repeats": 1, "warmup": 0}


def _figure(at: AppTest, first_series: str) -> dict:
    figs = [f for f in _figures(at) if f["data"] and f["data"][0].get("name") == first_series]
    assert len(figs) == 1, [[d.get("name") for d in f["data"]] for f in _figures(at)]
    return figs[0]


def _captions(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


@pytest.fixture(scope="module")
def model_page() -> AppTest:
    at = open_page("pages/model.py", timeout=180)
    _ok(at)
    return at


# ------------------------------------------------------------------ accuracy vs tokens
def test_accuracy_series_cover_every_row_once() -> None:
    rows = task_results()
    series = mv.accuracy_series(rows)
    assert sum(len(v) for v in series.values()) == len(rows)
    assert {"uniform grid", "quadtree · std", "quadtree · distortion", "multiscale", "learned selector",
            "pruning · learned scorer", "pruning · EViT attention"} <= set(series)
    for pts in series.values():
        assert [p["tokens"] for p in pts] == sorted(p["tokens"] for p in pts)
    learned = {p["label"]: p["tokens"] for p in series["pruning · learned scorer"]}
    for r in rows:
        if r["kind"] == "prune_learned":  # pruned runs sit at the tokens kept after the cut
            assert learned[r["method"]] == r["tokens_after_pruning"]
    full = mv.full_grid_row(rows)
    assert full["kind"] == "uniform" and full["tokens"] == max(r["tokens"] for r in rows if r["kind"] == "uniform")


def test_model_page_shows_accuracy_vs_tokens_one_series_per_method(model_page) -> None:
    at = model_page
    rows = task_results()
    want = mv.accuracy_series(rows)
    fig = _figure(at, next(iter(want)))
    got = {d["name"]: d for d in fig["data"]}
    assert list(got) == list(want)  # one series per method, nothing else
    for name, pts in want.items():
        assert got[name]["mode"] == "lines+markers"
        assert got[name]["x"] == [p["tokens"] for p in pts] and got[name]["y"] == [p["accuracy"] for p in pts]
    full = mv.full_grid_row(rows)
    lines = [s for s in fig["layout"]["shapes"] if s["y0"] == s["y1"]]
    assert [s["y0"] for s in lines] == [full["accuracy"]]  # the full grid as a reference line
    assert fig["layout"]["xaxis"]["type"] == "linear"  # 16-64 tokens: no log axis needed
    assert fig["layout"]["yaxis"]["title"]["text"].startswith("accuracy")


def test_model_page_says_where_the_numbers_come_from(model_page) -> None:
    text = _captions(model_page)
    assert "trained on this machine" not in text and "measured on this machine" not in text.lower()
    assert "bundled measurement from `adapatch/assets/model/results.json`" in text
    assert "bundled measurement from `adapatch/assets/model/latency.json`" in text
    assert "python -m adapatch.experiments" in text and "x86_64 CPU, 2 threads" in text
    assert "what ViT papers report as FLOPs" in text
    heads = [h.value for h in model_page.subheader]
    assert "Latency: measured against the MACs prediction" in heads and not any("FLOP" in h for h in heads)
    assert any(d.get("name") == "predicted from MACs" for f in _figures(model_page) for d in f["data"])


# ------------------------------------------------------------------ measure on this machine
def test_measure_latency_is_short_and_says_where_and_when() -> None:
    from adapatch.model.latency import measure_latency
    steps = []
    res = measure_latency("ViT-Ti", device="cpu", progress=lambda d, t: steps.append((d, t)), **TINY_RUN)
    assert steps == [(1, 2), (2, 2)]
    assert [r["tokens"] for r in res["curve"]] == [4, 8] and res["preset"] == "ViT-Ti"
    assert res["environment"]["device"] == "cpu" and res["environment"]["cuda"] is None
    assert res["measured_at"].endswith("+00:00") and res["seconds"] > 0
    assert res["settings"]["repeats"] == 1
    note = mv.live_note(res)
    assert note.startswith("Measured on this machine just now (CPU, ") and "median of 1 run after 0 warm-up runs" in note


def test_measure_button_replaces_the_bundled_numbers_and_goes_back(monkeypatch) -> None:
    monkeypatch.setattr(mv, "LIVE_RUN", TINY_RUN)
    at = open_page("pages/model.py", timeout=180)
    at.segmented_control(key="m_latency_preset").set_value("ViT-Ti").run()
    _ok(at)
    assert "just now" not in _captions(at)
    at.button(key="m_latency_measure").click().run()
    _ok(at)
    text = _captions(at)
    assert "Measured on this machine just now (CPU, " in text and "ViT-Ti with random weights" in text
    live = _figure(at, "measured live, batch 1")
    assert live["data"][0]["x"] == [4, 8]
    assert mv.LIVE_LATENCY in at.session_state and "ViT-Ti" in at.session_state[mv.LIVE_LATENCY]
    at.segmented_control(key="m_latency_preset").set_value("ViT-S").run()  # other presets stay bundled
    assert "just now" not in _captions(at)
    at.segmented_control(key="m_latency_preset").set_value("ViT-Ti").run()
    assert "just now" in _captions(at)
    at.button(key="m_latency_bundled").click().run()
    _ok(at)
    assert "just now" not in _captions(at)
    assert "bundled measurement from `adapatch/assets/model/latency.json`" in _captions(at)
    assert _figure(at, "measured, batch 1")["data"][0]["x"] == [25, 49, 98, 147, 196]


# ------------------------------------------------------------------ keep ratio vs agreement
def test_pruning_page_shows_agreement_per_scorer_with_the_keep_ratio_marked() -> None:
    from adapatch.app_support.recipes import SCORER_LABELS
    from adapatch.export import PRUNE_SCORERS
    from adapatch.model import load_task_model
    from adapatch.model.agreement import prune_agreement
    from adapatch.samples import list_task_samples, load_sample

    at = open_page("pages/pruning.py", timeout=180)
    _ok(at)
    fig = _figure(at, SCORER_LABELS[PRUNE_SCORERS[0]])
    assert [d["name"] for d in fig["data"]] == [SCORER_LABELS[s] for s in PRUNE_SCORERS]
    want = prune_agreement(load_task_model(device="cpu")[0], [load_sample(n) for n in list_task_samples()],
                           saliency="edges", device="cpu")
    for s, d in zip(PRUNE_SCORERS, fig["data"]):
        assert d["x"] == want.keep_ratios and d["y"] == want.agreement[s]
        assert d["y"][-1] == 1.0
    marks = [s for s in fig["layout"]["shapes"] if s["x0"] == s["x1"]]
    assert [m["x0"] for m in marks] == [0.5]  # the current keep ratio (default 0.5)
    assert "digit samples" in _captions(at)
    at.slider(key="w_keep_ratio").set_value(0.25).run()
    _ok(at)
    fig = _figure(at, SCORER_LABELS[PRUNE_SCORERS[0]])
    assert [s["x0"] for s in fig["layout"]["shapes"] if s["x0"] == s["x1"]] == [0.25]
    labels = [w.label for w in at.selectbox]
    assert "ViT preset (for MACs)" in labels and not any("FLOPs" in x for x in labels)
