"""``adapatch.export``: the settings the app exports reproduce its layouts, as data and as Python.

The snippet is exec()'d and must produce exactly the layout ``layout_from_settings`` gives (which
is what the app computes and shows); user strings only ever appear as literals.
"""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from PIL import Image

import adapatch as ap
from adapatch.app_support.images import (
    ImageError, clean_name, decode_upload, fit_for_compute, md_escape, upload_error_line)
from adapatch.export import layout_from_settings, needs_saliency, normalize_settings, settings_json, settings_snippet
from adapatch.samples import load_sample

SAL = {"method": "edges", "params": {"low": 40, "high": 160, "sigma": 3.0}}
CASES = [
    {"strategy": "quadtree", "params": {"threshold": 0.15, "min_size": 8, "max_size": 64, "budget": None,
                                        "importance": "std"}},
    {"strategy": "quadtree", "params": {"threshold": 0.1, "min_size": 4, "max_size": 32, "budget": 300,
                                        "importance": "mean_saliency"}},
    {"strategy": "greedy", "params": {"patch_sizes": [8, 16, 32], "budget": 600, "uncovered": "fill"}},
    {"strategy": "quadtree", "params": {"min_size": 8, "max_size": 64, "importance": "entropy"}, "solve_budget": 400},
    {"strategy": "greedy", "params": {"patch_sizes": [8, 16, 32, 64], "uncovered": "fill"}, "solve_budget": 450},
    {"strategy": "uniform", "params": {}, "solve_budget": 500},
    {"strategy": "multiscale", "params": {"budget": 300}},
    {"strategy": "multiscale", "params": {}, "solve_budget": 250},
    {"strategy": "greedy", "params": {"patch_sizes": [16, 32, 64], "budget": 300, "uncovered": "fill",
                                      "allocation": "distortion"}},
    {"strategy": "quadtree", "params": {"min_size": 16, "max_size": 64, "importance": "distortion"},
     "solve_budget": 300},
    {"strategy": "uniform", "params": {"patch_size": 16}, "prune": {"keep_ratio": 0.35, "reduce": "mean"}},
    {"strategy": "uniform", "params": {"patch_size": 8}, "prune": {"keep_ratio": 0.5, "reduce": "max"}},
]


def _settings(case: dict, source: str = "sample:coffee", resize=None) -> dict:
    return {"image": {"source": source, "resize": resize}, "saliency": SAL, "vit": "ViT-S", "device": "cpu", **case}


def _run(snippet: str) -> dict:
    ns: dict = {}
    exec(compile(snippet, "<snippet>", "exec"), ns)  # noqa: S102 - the point of the test
    return ns


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['strategy']}-{c.get('solve_budget')}-{bool(c.get('prune'))}")
def test_snippet_reproduces_the_layout(case: dict, capsys) -> None:
    settings = _settings(case)
    image = load_sample("coffee")
    expected = layout_from_settings(image, settings)
    expected.validate()
    ns = _run(settings_snippet(settings))
    assert ns["layout"] == expected
    assert "tokens" in capsys.readouterr().out


def test_snippet_repeats_the_apps_downscale() -> None:
    big = cv2.resize(load_sample("rocket"), (2400, 1600), interpolation=cv2.INTER_CUBIC)
    small, size = fit_for_compute(big, max_pixels=1_000_000)
    assert size == ap.fit_size(1600, 2400, 1_000_000) and small.shape[:2] == size
    settings = _settings(CASES[0], source="sample:rocket", resize=list(size))
    snippet = settings_snippet(settings)
    assert "ap.resize_image(image, " in snippet and "cv2" not in snippet
    # the snippet's downscale of the original file equals the app's downscale of the decoded file
    orig = load_sample("rocket")
    app_small, app_size = fit_for_compute(orig, max_pixels=100_000)
    s2 = _settings(CASES[0], source="sample:rocket", resize=list(app_size))
    ns = _run(settings_snippet(s2))
    assert ns["image"].shape[:2] == app_size
    np.testing.assert_array_equal(ns["image"], app_small)
    assert ns["layout"] == layout_from_settings(app_small, s2)


def test_user_file_names_are_literals_not_code() -> None:
    evil = 'x.png"); import os; os.system("echo pwned"); ("'
    snippet = settings_snippet(_settings(CASES[0], source=evil))
    line = next(ln for ln in snippet.splitlines() if ln.startswith("image = ap.load_image("))
    assert line.startswith(f"image = ap.load_image({evil!r})")
    compile(snippet, "<snippet>", "exec")  # still valid Python


def test_settings_json_round_trip_and_validation() -> None:
    s = _settings(CASES[1])
    text = settings_json(s)
    assert normalize_settings(json.loads(text)) == normalize_settings(s)
    assert needs_saliency(s) and not needs_saliency(_settings(CASES[0]))
    with pytest.raises(ValueError, match="unknown settings key"):
        normalize_settings({**s, "bogus": 1})
    with pytest.raises(ValueError, match="strategy"):
        normalize_settings({**s, "strategy": "spiral"})


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_upload_hashes_and_reports_one_line() -> None:
    data = _png(load_sample("diagram"))
    e1, e2 = decode_upload("a.png", data), decode_upload("b.png", data)
    assert e1.digest == e2.digest and e1.key == f"upload:{e1.digest}"
    assert e1.array.dtype == np.float32 and e1.resize is None
    for bad in (b"", b"not an image at all", data[: len(data) // 3]):
        with pytest.raises(ImageError) as info:
            decode_upload("bad.png", bad)
        line = upload_error_line(info.value)
        assert line and "\n" not in line and not line.startswith("image:")


def test_names_are_sanitised_and_escaped() -> None:
    assert clean_name("a\nb\x00c\u202e.png") == "abc.png"
    assert len(clean_name("x" * 500)) <= 60
    escaped = md_escape("**bold** [link](javascript:alert(1)) :red[x] <b>")
    for ch in "*[]():<>":
        assert f"\\{ch}" in escaped


@pytest.mark.parametrize("name", ['sigma=__import__("os").system("id"), x', "lambda", "2x", ""])
@pytest.mark.parametrize("where", ["params", "saliency"])
def test_parameter_names_must_be_identifiers(where, name) -> None:
    """Parameter names become keyword arguments in the snippet: anything but a plain name is refused."""
    settings = _settings(CASES[0])
    if where == "params":
        settings["params"] = {**settings["params"], name: 1}
    else:
        settings["saliency"] = {"method": "edges", "params": {name: 1}}
    with pytest.raises(ValueError, match="identifiers"):
        normalize_settings(settings)
    with pytest.raises(ValueError, match="identifiers"):
        settings_snippet(settings)


def test_relative_budget_is_recorded_next_to_the_budget_used() -> None:
    """The app's budgets are relative (a fraction of the 16 px grid): the settings keep the absolute
    budget used (what reproduces the layout) and the relative setting it came from."""
    from adapatch.budgets import relative_budget

    image = load_sample("coffee")
    budget = relative_budget(*image.shape[:2], fraction=0.3)
    for case in ({"strategy": "quadtree", "params": {"min_size": 16, "max_size": 64, "budget": budget,
                                                     "importance": "distortion", "threshold": None}},
                 {"strategy": "uniform", "params": {}, "solve_budget": budget}):
        settings = _settings({**case, "relative_budget": {"unit": "fraction", "value": 0.3}})
        s = normalize_settings(settings)
        assert s["relative_budget"] == {"unit": "fraction", "value": 0.3}
        assert normalize_settings(json.loads(settings_json(settings))) == s
        snippet = settings_snippet(settings)
        assert "30% of the image's 16 px grid" in snippet and "fraction=0.3" in snippet
        ns = _run(snippet)
        assert ns["layout"] == layout_from_settings(image, settings)
        assert ns["layout"] == layout_from_settings(image, _settings(case))  # a record only: same layout
    assert normalize_settings(_settings(CASES[0]))["relative_budget"] is None
    with pytest.raises(ValueError, match="no budget"):
        normalize_settings(_settings({**CASES[0], "relative_budget": {"unit": "fraction", "value": 0.3}}))
    with pytest.raises(ValueError, match="unit"):
        normalize_settings(_settings({**CASES[3], "relative_budget": {"unit": "percent", "value": 30}}))
    with pytest.raises(ValueError, match="> 0"):
        normalize_settings(_settings({**CASES[3], "relative_budget": {"unit": "fraction", "value": 0}}))
