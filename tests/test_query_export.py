"""Query settings: exported settings record the query (``Query.to_dict`` and the weight), reproduce the
layout in ``layout_from_settings`` and in the exec()'d snippet (which calls ``query_map``), survive a
JSON round trip, and bad query settings give one-line errors naming the field."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import adapatch as ap
from adapatch.export import (
    layout_from_settings,
    normalize_settings,
    settings_json,
    settings_model,
    settings_snippet,
)
from adapatch.samples import load_sample

SAL = {"method": "edges", "params": {}}
BOX = {"kind": "box", "box": [120, 200, 260, 420], "falloff": 12.0}
CASES = [
    {"strategy": "quadtree", "params": {"min_size": 8, "max_size": 64, "budget": 500, "importance": "distortion"},
     "query": {"query": BOX, "weight": 0.6}},
    {"strategy": "quadtree", "params": {"min_size": 8, "max_size": 32, "importance": "std"}, "solve_budget": 700,
     "query": {"query": {"kind": "polygon", "polygon": [[10, 10], [40, 380], [300, 90.5]]}, "weight": 1.0}},
    {"strategy": "quadtree", "params": {"threshold": 0.2, "min_size": 8, "max_size": 32, "importance": "std"},
     "query": {"query": {"kind": "points", "points": [[50, 60], [200, 300]], "falloff": 40}, "weight": 0.5}},
    {"strategy": "greedy", "params": {"patch_sizes": [8, 16, 32], "budget": 800, "uncovered": "fill"},
     "query": {"query": BOX, "weight": 0.7}},
    {"strategy": "greedy", "params": {"patch_sizes": [16, 32, 64], "uncovered": "drop", "allocation": "distortion"},
     "solve_budget": 300, "query": {"query": BOX, "weight": 0.3}},
    {"strategy": "uniform", "params": {"patch_size": 16}, "prune": {"keep_ratio": 0.3, "scorer": "mean"},
     "query": {"query": BOX, "weight": 0.8}},
    {"strategy": "uniform", "params": {}, "solve_budget": 400, "query": {"query": BOX, "weight": 0.8}},
    {"strategy": "multiscale", "params": {"levels": 2, "scales": 4}, "solve_budget": 300,
     "query": {"query": BOX, "weight": 0.6}},
]


def _settings(case: dict) -> dict:
    return {"image": {"source": "sample:coffee", "resize": None}, "saliency": SAL, "vit": "ViT-S",
            "device": "cpu", **case}


def _run(snippet: str) -> dict:
    ns: dict = {}
    exec(compile(snippet, "<snippet>", "exec"), ns)  # noqa: S102 - the point of the test
    return ns


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['strategy']}-{c['query']['query']['kind']}")
def test_snippet_reproduces_the_query_layout(case: dict, capsys) -> None:
    settings = _settings(case)
    image = load_sample("coffee")
    expected = layout_from_settings(image, settings)
    expected.validate()
    snippet = settings_snippet(settings)
    assert "qmap = ap.query_map(image, " in snippet and "query=qmap, query_weight=" in snippet
    ns = _run(snippet)
    assert ns["layout"] == expected
    # the same layout by hand: the query's map mixed into the strategy
    q = ap.Query.from_dict(case["query"]["query"])
    qmap = ap.query_map(image, q)
    assert np.array_equal(ns["qmap"], qmap)
    if case["strategy"] != "uniform":
        kw = {**case["params"], "query": qmap, "query_weight": case["query"]["weight"]}
        if case.get("solve_budget"):
            direct = ap.layout_for_budget(image, case["strategy"], case["solve_budget"], **kw)
        else:
            direct = ap.make_layout(image, case["strategy"], **kw)
        assert np.array_equal(direct.boxes, expected.boxes)
    blind = layout_from_settings(image, {**settings, "query": None})
    changed = not np.array_equal(blind.boxes, expected.boxes) or not np.array_equal(blind.dropped, expected.dropped)
    assert changed == (case["strategy"] != "uniform" or case.get("prune") is not None)  # uniform alone ignores it
    assert "tokens" in capsys.readouterr().out


def test_settings_round_trip_and_weight_zero() -> None:
    s = _settings(CASES[0])
    norm = normalize_settings(s)
    assert norm["query"] == {"query": ap.Query.from_dict(BOX).to_dict(), "weight": 0.6}
    assert normalize_settings(json.loads(settings_json(s))) == norm
    assert normalize_settings(_settings({k: v for k, v in CASES[0].items() if k != "query"}))["query"] is None
    # a dict without kind is read like query_map's keywords and recorded with its kind
    loose = normalize_settings(_settings({**CASES[0], "query": {"query": {"box": [1, 2, 30, 40]}, "weight": 0.5}}))
    assert loose["query"]["query"] == {"kind": "box", "box": [1, 2, 30, 40]}
    image = load_sample("coffee")
    zero = _settings({**CASES[0], "query": {"query": BOX, "weight": 0.0}})
    assert layout_from_settings(image, zero) == layout_from_settings(image, {**zero, "query": None})
    assert "query_map" not in settings_snippet(zero)


@pytest.mark.parametrize("query, where", [
    ({"query": {"kind": "box", "box": [0, 0, 0, 5]}, "weight": 0.5}, "box is empty"),
    ({"query": {"kind": "polygon", "polygon": []}, "weight": 0.5}, "polygon"),
    ({"query": {"kind": "points", "points": [[1, 2]], "falloff": -3}, "weight": 0.5}, "falloff"),
    ({"query": {"kind": "lasso", "points": [[1, 2]]}, "weight": 0.5}, "kind"),
    ({"query": {"kind": "box", "box": [0, 0, 5, 5], "colour": "red"}, "weight": 0.5}, "colour"),
    ({"query": BOX, "weight": 1.5}, "query_weight"),
    ({"query": BOX, "weight": "high"}, "query_weight"),
    ({"query": BOX}, "query must be None or a dict"),
    ({"query": BOX, "weight": 0.5, "extra": 1}, "query must be None or a dict"),
    ([1, 2], "query must be None or a dict"),
    ({"query": {"kind": "class", "target": 3}, "weight": 0.5}, "model"),
    ({"query": {"kind": "class", "model": "task", "target": -2}, "weight": 0.5}, "target"),
    ({"query": {"kind": "text", "text": ""}, "weight": 0.5}, "text"),
])
def test_bad_query_settings_are_one_line_errors(query, where) -> None:
    with pytest.raises(ValueError) as e:
        normalize_settings(_settings({**CASES[0], "query": query}))
    assert where in str(e.value) and "\n" not in str(e.value)


def test_query_settings_that_cannot_apply_are_refused() -> None:
    with pytest.raises(ValueError, match="params must not hold query"):
        normalize_settings(_settings({"strategy": "quadtree", "params": {"query_weight": 0.5}}))
    with pytest.raises(ValueError, match="more than one model"):
        normalize_settings(_settings({"strategy": "uniform", "params": {},
                                      "prune": {"keep_ratio": 0.5, "scorer": "learned", "model": "task"},
                                      "query": {"query": {"kind": "class", "model": "other.safetensors",
                                                          "target": 1}, "weight": 0.5}}))
    # a box outside the image is refused when the layout is made (the settings do not know the image)
    with pytest.raises(ValueError, match="box must lie inside"):
        layout_from_settings(load_sample("coffee"), _settings({**CASES[0], "query": {
            "query": {"kind": "box", "box": [0, 0, 5000, 10]}, "weight": 0.5}}))


@pytest.fixture
def fake_query_maps(monkeypatch):
    """A stand-in for adapatch.model.query_maps: class evidence = a bright band whose row is the class."""
    mod = types.ModuleType("adapatch.model.query_maps")
    calls = []

    def class_evidence_map(image, model, target, device="auto"):
        calls.append((type(model).__name__, target, device))
        h, w = image.shape[:2]
        m = np.zeros((h, w), np.float32)
        m[target * h // 10:(target + 1) * h // 10] = 1
        return m

    def text_map(image, text, model=None, device="auto"):
        calls.append(("text", text, model, device))
        m = np.zeros(image.shape[:2], np.float32)
        m[:, : image.shape[1] // 3] = 1
        return m

    mod.class_evidence_map, mod.text_map = class_evidence_map, text_map
    monkeypatch.setitem(sys.modules, "adapatch.model.query_maps", mod)
    return calls


def test_class_and_text_queries_export_and_reproduce(fake_query_maps, capsys) -> None:
    image = load_sample("coffee")
    cls = _settings({"strategy": "quadtree", "params": {"min_size": 8, "max_size": 32, "budget": 600,
                                                        "importance": "std"},
                     "query": {"query": {"kind": "class", "model": "task", "target": 4}, "weight": 0.9}})
    assert settings_model(normalize_settings(cls)) == "task"  # the class query's model is the settings' model
    expected = layout_from_settings(image, cls)
    snippet = settings_snippet(cls)
    assert "load_task_model" in snippet and "ap.query_map(image, model=model, target=4, device='cpu')" in snippet
    ns = _run(snippet)
    assert ns["layout"] == expected
    assert fake_query_maps[0] == ("TaskModel", 4, "cpu") and fake_query_maps[0] == fake_query_maps[-1]
    # the map given by the caller (the app caches it) gives the same layout without a model call
    n = len(fake_query_maps)
    qmap = ns["qmap"]
    assert layout_from_settings(image, cls, qmap=qmap) == expected and len(fake_query_maps) == n

    txt = _settings({"strategy": "greedy", "params": {"patch_sizes": [8, 16, 32], "budget": 700},
                     "query": {"query": {"kind": "text", "text": "a cup'); import os; ('"}, "weight": 0.8}})
    assert settings_model(normalize_settings(txt)) is None
    snippet = settings_snippet(txt)
    assert "text=\"a cup'); import os; ('\"" in snippet  # user text is a literal
    assert _run(snippet)["layout"] == layout_from_settings(image, txt)
    capsys.readouterr()


def test_solve_budget_wins_over_a_stored_budget_or_threshold() -> None:
    """With ``solve_budget`` the library solves the budget: a ``budget``/``threshold`` left in params
    (as the app's equal-token comparison once passed) is not passed twice, in code or in the snippet."""
    import numpy as np
    from skimage import data

    from adapatch.export import layout_from_settings, normalize_settings, settings_snippet
    img = data.astronaut()[::4, ::4].astype(np.float32) / 255
    base = {"saliency": None, "strategy": "quadtree", "params": {"min_size": 16, "max_size": 64}, "prune": None}
    want = layout_from_settings(img, normalize_settings({**base, "solve_budget": 40}))
    for extra in ({"budget": 10}, {"threshold": 0.3}, {"budget": 10, "threshold": 0.3}):
        s = normalize_settings({**base, "params": {**base["params"], **extra}, "solve_budget": 40})
        got = layout_from_settings(img, s)
        assert np.array_equal(got.boxes, want.boxes) and got.num_tokens <= 40
        code = settings_snippet(s)
        assert "budget=10" not in code and "threshold=0.3" not in code
