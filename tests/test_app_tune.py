"""The Tune page (AppTest): it renders, a small search on the bundled digit samples draws its Pareto
front (the chart's points are the result's front, the chosen one marked), the held-out re-score is
shown next to the search's and called lower when it is, the result survives a page switch, opening a
configuration puts its settings on Patch layout (the tuner's layout there), uploads (a zip with a bad
file, labels from a CSV) and a stopped run."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("torch")
from streamlit.testing.v1 import AppTest

from adapatch.app_support import tune_view
from adapatch.samples import list_task_samples, sample_path, task_sample_label
from tests.app_helpers import app, metric, ok

PAGE = "pages/tune.py"
FAST = {"w_tune_strategies": ["uniform", "quadtree"], "w_tune_importances": ["std"], "w_tune_levels": [0.25, 0.4]}


def _page() -> AppTest:
    at = app()
    at.run()
    at.switch_page(PAGE).run()
    ok(at)
    return at


def _small_space(at: AppTest) -> AppTest:
    for key, value in FAST.items():
        at.multiselect(key=key).set_value(value)
    at.run()
    ok(at)
    return at


def _run(at: AppTest) -> tune_view.TuneRun:
    at.button(key="tune_run").click().run()
    ok(at)
    runs = at.session_state[tune_view.RUNS]
    assert runs, "no run kept"
    return runs[0]


def _trace(at: AppTest, name: str) -> dict:
    charts = at.get("plotly_chart")
    assert len(charts) == 1, len(charts)
    fig = json.loads(charts[0].proto.spec)
    traces = [t for t in fig["data"] if t.get("name") == name]
    assert len(traces) == 1, [t.get("name") for t in fig["data"]]
    return traces[0]


def test_the_page_renders_with_its_inputs() -> None:
    at = _page()
    assert at.title[0].value == "Tune for the task"
    assert [r.label for r in at.radio][:3] == ["Model", "Images", "Target"]
    assert at.button(key="tune_run").label == "Run"
    assert not at.get("plotly_chart")  # nothing run yet


def test_a_small_run_draws_the_front_and_the_held_out_score() -> None:
    at = _small_space(_page())
    run = _run(at)
    r = run.result
    assert r.objective == "accuracy"  # the digit samples carry their labels
    assert len(r.search_images) + len(r.held_out_images) == len(list_task_samples())
    assert {e.config.family.strategy for e in run.final} == {"uniform", "quadtree"}
    front = _trace(at, "Pareto front")
    assert front["x"] == pytest.approx([e.macs_ratio for e in r.front])
    assert front["y"] == pytest.approx([e.objective for e in r.front])
    assert [c[0] for c in front["customdata"]] == [e.config.key for e in r.front]
    assert "strategy" in front["hovertemplate"] and "tokens" in front["hovertemplate"]
    others = _trace(at, "Other configurations")
    assert len(others["x"]) + len(front["x"]) == len(run.final)
    assert r.chosen is not None
    chosen = _trace(at, "Chosen")
    assert chosen["x"] == pytest.approx([r.chosen.macs_ratio]) and chosen["customdata"][0][0] == r.chosen.config.key
    assert r.chosen.macs_ratio <= 0.4
    assert metric(at, "Chosen") == r.chosen.config.key
    held = r.held_out["chosen"]["objective"]
    assert metric(at, "Accuracy (held out)") == f"{100 * held:.1f}%"
    assert metric(at, "Accuracy (search)") == f"{100 * r.chosen.objective:.1f}%"
    said = [w.value for w in at.warning] + [c.value for c in at.caption]
    lower = [s for s in said if "held-out number is lower" in s]
    assert bool(lower) == (held < r.chosen.objective), said
    table = at.dataframe[0].value
    assert list(table["configuration"]) == [e.config.key for e in r.front]
    labels = [b.label for b in at.get("download_button")]
    assert {"report.json", "report.md", "settings.json (chosen)"} <= set(labels)


def test_the_result_survives_a_page_switch_and_runs_are_bounded() -> None:
    at = _small_space(_page())
    first = _run(at)
    at.switch_page("pages/layout.py").run()
    at.switch_page(PAGE).run()
    ok(at)
    assert _trace(at, "Pareto front")["x"] == pytest.approx([e.macs_ratio for e in first.result.front])
    for _ in range(tune_view.KEEP_RUNS):
        _run(at)
    runs = at.session_state[tune_view.RUNS]
    assert len(runs) == tune_view.KEEP_RUNS
    assert [r.id for r in runs] == sorted((r.id for r in runs), reverse=True)
    assert at.selectbox(key="w_tune_run").value == runs[0].id  # the newest is shown


def test_opening_a_configuration_sets_patch_layout() -> None:
    from adapatch.export import layout_from_settings

    at = _small_space(_page())
    run = _run(at)
    quad = next(e for e in run.final if e.config.family.strategy == "quadtree")
    at.selectbox(key=f"w_tune_pick_{run.id}").set_value(quad.config.key).run()
    index = run.result.held_out_images[0]
    at.selectbox(key=f"w_tune_image_{run.id}").set_value(index).run()
    ok(at)
    at.button(key="tune_open").click().run()
    ok(at)
    assert at.title[0].value == "Patch layout"
    s = at.session_state["ap_settings"]
    f = quad.config.family
    assert s["strategy"] == "quadtree" and s["importance"] == f.importance
    assert tuple(s["sizes"]) == (f.min_size, f.max_size) and s["use_budget"] is False
    assert s["thresholds"][f.importance] == quad.threshold
    assert at.session_state["ap_current"] == run.images.keys[index] == f"sample:{run.images.names[index]}"
    tuned = layout_from_settings(run.images.arrays()[index], run.settings(quad))
    assert metric(at, "Tokens") == f"{tuned.num_tokens:,}"
    notes = [i.value for i in at.info if "Tune result" in i.value]
    assert len(notes) == 1 and "shows the tuner's layout" in notes[0], [i.value for i in at.info]
    assert "strategy quadtree" in notes[0] and f"threshold ({f.importance})" in notes[0]


def test_uniform_cannot_be_opened_and_says_why() -> None:
    at = _small_space(_page())
    run = _run(at)
    uni = next(e for e in run.final if e.config.family.strategy == "uniform")
    at.selectbox(key=f"w_tune_pick_{run.id}").set_value(uni.config.key).run()
    assert at.button(key="tune_open").disabled
    assert any("no uniform strategy" in c.value for c in at.caption)


def test_too_small_a_budget_is_refused_in_one_line_and_is_no_stopped_run() -> None:
    at = _small_space(_page())
    at.number_input(key="w_tune_budget").set_value(5).run()
    at.button(key="tune_run").click().run()
    assert not at.exception
    said = [e.value.replace("\\", "") for e in at.error]  # markdown-escaped
    assert len(said) == 1 and "budget_evals 5" in said[0] and "at least 66 forward passes" in said[0], said
    assert tune_view.RUNS not in at.session_state
    at.run()
    assert not any("stopped" in w.value for w in at.warning)


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_uploads_with_a_bad_file_and_labels_from_a_csv() -> None:
    names = list_task_samples()[:6]
    members = {f"set/{n}.png": sample_path(n).read_bytes() for n in names}
    members["set/broken.png"] = b"not an image"
    csv = "path,label\n" + "".join(f"{n}.png,{task_sample_label(n)}\n" for n in names)
    at = _page()
    at.radio(key="w_tune_source").set_value("upload").run()
    at.file_uploader(key="tune_files").set_value(("digits.zip", _zip(members), "application/zip")).run()
    at.file_uploader(key="tune_labels").set_value(("labels.csv", csv.encode(), "text/csv")).run()
    ok(at)
    warned = [w.value.replace("\\", "") for w in at.warning]  # the name is shown markdown-escaped
    assert any("digits.zip/set/broken.png" in w for w in warned), warned
    run = _run(_small_space(at))
    assert run.result.objective == "accuracy"
    assert run.images.labels == [task_sample_label(n) for n in names]
    assert [s["path"] for s in run.report["skipped"]] == ["digits.zip/set/broken.png"]
    at.radio(key="w_tune_source").set_value("upload").run()  # a label-free upload: agreement
    at.file_uploader(key="tune_labels").set_value(None).run()
    run = _run(at)
    assert run.result.objective == "agreement" and run.images.labels is None
    # an uploaded image opens as its model frame, added to the sidebar's list as a tuned image
    from adapatch.export import layout_from_settings
    quad = next(e for e in run.final if e.config.family.strategy == "quadtree")
    at.selectbox(key=f"w_tune_pick_{run.id}").set_value(quad.config.key).run()
    at.button(key="tune_open").click().run()
    ok(at)
    assert at.title[0].value == "Patch layout"
    key = at.session_state["ap_current"]
    assert key.startswith("upload:")
    label = at.selectbox(key="w_image").format_func(key)
    assert label.startswith("Tuned · ") and "64x64 model frame" in label, label
    tuned = layout_from_settings(run.images.arrays()[0], run.settings(quad))
    assert metric(at, "Tokens") == f"{tuned.num_tokens:,}"


def _stop_script() -> None:
    import streamlit as st

    from adapatch.app_support import tune_view as tv
    from adapatch.model import load_task_model
    images = tv.sample_images(64, labelled=True)
    calls = []
    try:
        tv.execute(images, load_task_model()[0], "task", "task", target="macs", macs=0.4, drop=0.0, budget=None,
                   held_out=0.3, seed=0, strategies=["uniform", "quadtree"], importances=["std"], levels=[0.25],
                   device="cpu", progress=tv.progress_callback(st.progress(0.0),
                                                               stop=lambda: calls.append(1) or len(calls) >= 2))
        st.session_state["outcome"] = "finished"
    except tv.TuneStopped:
        st.session_state["outcome"] = "stopped"
    st.session_state["said"] = tv.take_stopped()
    st.session_state["again"] = tv.take_stopped()


def test_a_stopped_run_keeps_nothing_and_says_how_far_it_got() -> None:
    at = AppTest.from_function(_stop_script, default_timeout=120)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state["outcome"] == "stopped"
    assert at.session_state["said"].startswith("The run stopped after 2 of ")
    assert at.session_state["again"] is None  # said once
    assert tune_view.RUNS not in at.session_state


def test_selection_keys_and_csv_labels() -> None:
    event = {"selection": {"points": [{"customdata": ["quadtree std 8-32px @ 0.25", "quadtree"]},
                                      {"x": 1.0, "y": 0.5}]}}  # the full grid: no configuration
    assert tune_view.selection_keys(event) == ["quadtree std 8-32px @ 0.25"]
    assert tune_view.selection_keys({}) == [] and tune_view.selection_keys(None) == []
    data = b"file,label\nsub/a.png,3\nb.png,7\n"
    assert tune_view.csv_labels(data, ["x.zip/sub/a.png", "b.png"], 10, None) == [3, 7]
    with pytest.raises(ValueError, match=r"no label for c\.png"):
        tune_view.csv_labels(data, ["c.png"], 10, None)
    with pytest.raises(ValueError):
        tune_view.csv_labels(b"a.png,12\n", ["a.png"], 10, None)


def test_frames_round_trip_exactly() -> None:
    """A tuned frame decodes to the same pixels on Patch layout as the search scored."""
    rng = np.random.default_rng(0)
    images = tune_view.TuneImages("t", ["a", "b"], [tune_view.frame_png(rng.random((50, 70, 3)), 32)] * 2, None,
                                  [None, None])
    a = images.arrays()[0]
    assert a.shape == (32, 32, 3)
    from adapatch.app_support.images import decode_upload
    assert np.array_equal(decode_upload("x", images.pngs[0]).array, a)


def test_the_held_out_line_says_lower_only_when_it_is() -> None:
    from types import SimpleNamespace

    def run(search: float, held: float, n: int = 40):
        result = SimpleNamespace(objective="accuracy", chosen=SimpleNamespace(objective=search),
                                 held_out={"images": n, "chosen": {"objective": held},
                                           "full_grid": {"objective": 0.9}})
        return SimpleNamespace(result=result)

    text, lower = tune_view.held_out_text(run(0.8, 0.7))
    assert lower and "**The held-out number is lower** by 10.0 points" in text and "accuracy 70.0%" in text
    text, lower = tune_view.held_out_text(run(0.7, 0.7, n=12))
    assert not lower and "is not lower" in text and "12 held-out images it is a rough check" in text
    text, lower = tune_view.held_out_text(run(0.7, 0.75))
    assert not lower and "rough check" not in text
