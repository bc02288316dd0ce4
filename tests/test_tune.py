"""adapatch.tune: the Pareto front, the choice under a target, the held-out split, label-free
agreement, settings that reproduce what was scored, and the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import adapatch as ap
from adapatch.export import layout_from_settings
from adapatch.model.latency import model_macs
from adapatch.tune import pareto_front, settings_for, tune
from adapatch.tune.search import least_budget, rung_cost, rung_sizes

STRATEGIES = ("uniform", "quadtree", "learned_selector", "greedy")
LEVELS = (0.25, 0.4)


@pytest.fixture(scope="module")
def task():
    from adapatch.model import load_task_model
    return load_task_model(device="cpu")


@pytest.fixture(scope="module")
def digits(task):
    from adapatch.experiments.cluttered_digits import DatasetConfig, held_out_split, to_rgb
    d = held_out_split(DatasetConfig(**task[1]["dataset"]))
    return to_rgb(d["test_x"][:48]), d["test_y"][:48].astype(np.int64)


@pytest.fixture(scope="module")
def result(task, digits):
    torch.manual_seed(0)
    x, y = digits
    return tune(list(x), task[0], y, target_macs_ratio=0.4, strategies=STRATEGIES, importances=("std", "distortion"),
                levels=LEVELS, device="cpu", held_out=0.25, seed=3)


def _predict(model, frames: np.ndarray, layouts) -> np.ndarray:
    vit = model.vit
    out = []
    with torch.inference_mode():
        for f, lay in zip(frames, layouts):
            x = vit.normalize(torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None])
            out.append(int(vit.forward_tokens(vit.tokenize(x, [lay])).argmax(1)))
    return np.array(out)


def test_pareto_front_is_exactly_the_non_dominated_points():
    rng = np.random.default_rng(0)
    for _ in range(50):
        obj = rng.integers(0, 6, 25).astype(float)
        cost = rng.integers(0, 6, 25).astype(float)
        front = pareto_front(obj, cost)
        for i in range(25):
            dominated = any((obj[j] >= obj[i] and cost[j] <= cost[i]) and (obj[j] > obj[i] or cost[j] < cost[i])
                            for j in range(25))
            assert (i in front) <= (not dominated)
            if not dominated:  # a non-dominated point is on the front, or an identical one is
                assert any(obj[j] == obj[i] and cost[j] == cost[i] for j in front)
        assert list(np.array(cost)[front]) == sorted(np.array(cost)[front])


def test_front_is_non_dominated_and_the_choice_meets_the_target(result):
    final = [e for e in result.evaluated if e.rung == max(x.rung for x in result.evaluated)]
    for e in result.front:
        assert not any(o.objective >= e.objective and o.macs_ratio <= e.macs_ratio
                       and (o.objective > e.objective or o.macs_ratio < e.macs_ratio) for o in final)
    assert result.chosen is not None and result.chosen.macs_ratio <= 0.4
    assert result.chosen.images == len(result.search_images)
    best = max(e.objective for e in result.front if e.macs_ratio <= 0.4)
    assert result.chosen.objective == best


def test_held_out_images_are_disjoint_from_the_search(result, digits):
    s, h = set(result.search_images), set(result.held_out_images)
    assert not s & h and s | h == set(range(len(digits[0])))
    assert len(h) == 12 and result.held_out["images"] == 12
    assert result.held_out["chosen"]["images"] == 12


def test_settings_reproduce_the_reported_macs_and_objective(result, task, digits):
    model, _ = task
    x, y = digits
    c = result.chosen
    s = settings_for(c, "task", 64, 8, device="cpu")
    frames = x[result.search_images].astype(np.float32)
    lays = [layout_from_settings(f, s, model=model) for f in frames]
    macs = np.array([model_macs(model.config, lay.num_tokens) for lay in lays], float)
    if c.config.family.strategy == "learned_selector":
        from adapatch.tune.evaluate import selector_macs
        macs += selector_macs(model.selector)
    full = model_macs(model.config, 64)
    assert macs.mean() / full == pytest.approx(c.macs_ratio, abs=1e-12)
    acc = float((_predict(model, frames, lays) == y[result.search_images]).mean())
    assert acc == pytest.approx(c.objective, abs=1e-12)


@pytest.mark.parametrize("strategy", ["quadtree", "uniform", "greedy"])
def test_settings_of_every_strategy_reproduce_its_layouts(result, task, digits, strategy):
    model, _ = task
    e = next(e for e in result.evaluated if e.config.family.strategy == strategy)
    s = settings_for(e, "task", 64, 8, device="cpu")
    from adapatch.tune.evaluate import Evaluator
    frames = digits[0][:6].astype(np.float32)
    ev = Evaluator(model, frames, "cpu")
    want = ev.layouts(e.config, np.arange(6), e.threshold)
    for f, w in zip(frames, want):
        np.testing.assert_array_equal(layout_from_settings(f, s, model=model).boxes, w.boxes)


def test_label_free_agreement_equals_a_direct_computation(task, digits):
    model, _ = task
    x = digits[0][:20]
    res = tune(list(x), model, None, target_macs_ratio=0.4, strategies=("uniform", "quadtree"),
               importances=("std",), levels=(0.4,), device="cpu", held_out=0.25, seed=1)
    assert res.objective == "agreement" and res.full_grid["objective"] == 1.0
    grid = ap.uniform(64, 64, 8)
    for e in res.evaluated[:2]:
        s = settings_for(e, "task", 64, 8, device="cpu")
        frames = x[res.search_images].astype(np.float32)
        lays = [layout_from_settings(f, s, model=model) for f in frames]
        full = _predict(model, frames, [grid] * len(frames))
        assert e.agreement == pytest.approx(float((_predict(model, frames, lays) == full).mean()), abs=1e-12)
        assert e.objective == e.agreement and e.accuracy is None


def test_budget_is_respected_or_refused():
    per_level = [9, 9]
    sizes = rung_sizes(per_level, 300, 2000)
    assert rung_cost(per_level, sizes, 300) <= 2000 and sizes[-1] == 300
    assert all(b > a for a, b in zip(sizes, sizes[1:]))
    least = least_budget(per_level, 300)
    with pytest.raises(ValueError, match="needs at least"):
        rung_sizes(per_level, 300, least - 1)


def test_search_spends_at_most_its_budget(task, digits):
    x, y = digits
    res = tune(list(x), task[0], y, strategies=("uniform", "quadtree"), importances=("std", "distortion", "entropy"),
               levels=LEVELS, device="cpu", budget_evals=900, held_out=0.25)
    assert res.forwards <= 900 and len(res.rungs) >= 2


@pytest.mark.slow
def test_command_line_contract(tmp_path, digits):
    from adapatch.cli import main
    x, y = digits
    src = tmp_path / "set"
    for i in range(24):
        d = src / str(int(y[i]))
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray((x[i] * 255 + 0.5).astype(np.uint8)).save(d / f"{i:03d}.png")
    (src / "3").mkdir(exist_ok=True)
    (src / "3" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    args = ["tune", str(src), "--model", "task", "--out", str(out), "--labels", "folders", "--device", "cpu",
            "--strategies", "uniform,quadtree", "--importances", "std", "--quiet"]
    assert main(args) == 0
    for name in ("report.json", "report.md", "pareto.png", "settings.json"):
        assert (out / name).stat().st_size > 0, name
    r = json.loads((out / "report.json").read_text())
    assert r["skipped"] == [{"path": "3/broken.png", "reason": r["skipped"][0]["reason"]}]
    assert r["objective"] == "accuracy" and r["images"]["search"] + r["images"]["held_out"] == 24
    assert r["command"].startswith("python -m adapatch tune ")
    s = json.loads((out / "settings.json").read_text())
    assert s == r["settings"] and s["image"]["resize"] == [64, 64]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{int(y[i])}/{i:03d}.png,{int(y[i])}\n" for i in range(24)))
    assert main(args[:7] + [str(csv)] + args[8:]) == 0
    assert main(["tune", str(tmp_path / "nothing"), "--model", "task", "--out", str(out)]) == 2
    csv.write_text("path,label\n000.png,12\n")
    assert main(args[:7] + [str(csv)] + args[8:]) == 2  # 12 is not a class of a 10-class model


@pytest.mark.slow
def test_ray_engine_decodes_the_same_frames_as_local(tmp_path, digits):
    pytest.importorskip("ray")
    from adapatch.tune.cli import _read_images
    x, _ = digits
    src = tmp_path / "set"
    src.mkdir()
    for i in range(10):
        Image.fromarray((x[i] * 255 + 0.5).astype(np.uint8)).resize((80, 72)).save(src / f"{i:03d}.png")
    (src / "broken.png").write_bytes(b"not an image")
    local = _read_images(str(src), None, 64, "local")
    ray_ = _read_images(str(src), None, 64, "ray", workers=2)
    assert local[1] == ray_[1] and local[2] == ray_[2] and len(local[2]) == 1
    for a, b in zip(local[0], ray_[0]):
        np.testing.assert_array_equal(a, b)
    assert local[0][0].shape == (64, 64, 3)
