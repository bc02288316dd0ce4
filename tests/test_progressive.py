"""Progressive refinement (adapatch.model.progressive, split_in_place): exact tilings at every step,
MACs of every pass, thresholds read from one trace, batching, split in place at cut 0 = re-run."""

from __future__ import annotations

import json

import numpy as np
import pytest

import adapatch as ap
from adapatch.model.latency import model_macs
from adapatch.model.progressive import (ProgressiveResult, at_tau, content_scores, solve_tau, split_tokens, trace)
from adapatch.model.split_in_place import split_macs


@pytest.fixture(scope="module")
def task():
    from adapatch.model import load_task_model
    return load_task_model(device="cpu")[0]


@pytest.fixture(scope="module")
def images(task):
    from adapatch.experiments.cluttered_digits import DatasetConfig, held_out_split, to_rgb
    from adapatch.model import load_task_model
    d = held_out_split(DatasetConfig(**load_task_model(device="cpu")[1]["dataset"]))
    return list(to_rgb(d["test_x"][:12]))


@pytest.fixture(scope="module")
def traces(task, images):
    return trace(task, images, k=4, device="cpu")


def test_split_tokens_tiles_exactly_and_drops_padding_children():
    lay = ap.uniform(40, 56, 16)  # canvas 48x64: the last row and column of boxes reach into the padding
    out = split_tokens(lay, np.arange(lay.num_tokens))
    out.validate()
    assert out.num_tokens == (-(-40 // 8)) * (-(-56 // 8))
    assert len(out.dropped) == 4 * lay.num_tokens - out.num_tokens


def test_every_step_tiles_and_costs_its_pass(task, traces):
    cfg = task.config
    for r in traces:
        tokens = [s.tokens for s in r.steps]
        assert tokens[0] == 16 and tokens == sorted(tokens) and tokens[-1] <= 64
        for s in r.steps:
            ap.PatchLayout.from_dict(s.layout).validate()
            assert s.macs == model_macs(cfg, s.tokens)
            assert s.top_probs == sorted(s.top_probs, reverse=True) and 0 < s.top_probs[0] <= 1
        assert r.macs == sum(model_macs(cfg, t) for t in tokens)
        assert r.exit_reason in ("budget", "nothing_to_split", "max_steps")  # tau = inf: never confident


def test_a_threshold_read_from_the_trace_equals_running_with_it(task, images, traces):
    for tau in (0.6, 0.9):
        direct = trace(task, images, k=4, tau=tau, device="cpu")
        read = at_tau(traces, tau)
        for a, b in zip(direct, read):
            assert [s.layout["boxes"] for s in a.steps] == [s.layout["boxes"] for s in b.steps]
            assert a.prediction == b.prediction and a.exit_reason == b.exit_reason
            assert a.exit_reason != "confident" or a.confidence >= tau


def test_batched_equals_one_by_one(task, images, traces):
    for i in (0, 5):
        alone = trace(task, [images[i]], k=4, device="cpu")[0]
        assert [s.layout["boxes"] for s in alone.steps] == [s.layout["boxes"] for s in traces[i].steps]
        assert np.allclose([s.confidence for s in alone.steps], [s.confidence for s in traces[i].steps], atol=1e-5)


def test_split_in_place_at_cut_zero_is_the_rerun(task, images, traces):
    inplace = trace(task, images[:4], k=4, mode="inplace", cut=0, device="cpu")
    for a, b in zip(traces[:4], inplace):
        assert [s.layout["boxes"] for s in a.steps] == [s.layout["boxes"] for s in b.steps]
        assert np.allclose([s.confidence for s in a.steps], [s.confidence for s in b.steps], atol=1e-5)


def test_split_in_place_costs_less_after_a_cut(task, images):
    cfg = task.config
    r = trace(task, images[:3], k=4, mode="inplace", cut=2, device="cpu", max_steps=3)
    for res in r:
        for prev, s in zip(res.steps, res.steps[1:]):
            assert s.macs < model_macs(cfg, s.tokens)
            ap.PatchLayout.from_dict(s.layout).validate()
    # cut 0: everything after the embedding is a full pass; only the children are embedded anew
    d, p = cfg.dim, cfg.patch_size
    assert split_macs(cfg, 16, 4, 16, 0) == model_macs(cfg, 28) - (28 - 16) * d * 3 * p * p


def test_solve_tau_meets_the_target(task, traces):
    full = model_macs(task.config, 64)
    tau = solve_tau(traces, 0.5 * full)
    assert np.mean([r.macs for r in at_tau(traces, tau)]) <= 0.5 * full
    higher = sorted({s.confidence for t in traces for s in t.steps if s.confidence > tau})
    if higher:
        assert np.mean([r.macs for r in at_tau(traces, higher[0])]) > 0.5 * full


def test_results_round_trip_through_json(traces):
    r = traces[0]
    back = ProgressiveResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.to_dict() == r.to_dict()


def test_content_scores_are_the_flat_patch_error():
    rng = np.random.default_rng(0)
    img = rng.random((24, 40, 3)).astype(np.float32)
    lay = ap.uniform(24, 40, 8)
    want = [((img[y:y + s, x:x + s] - img[y:y + s, x:x + s].mean((0, 1))) ** 2).sum() for y, x, s in lay.boxes]
    np.testing.assert_allclose(content_scores(img, lay), want, rtol=1e-6)


@pytest.mark.slow
def test_experiment_rows_and_a_recomputed_row(tmp_path, task, images):
    from adapatch.experiments.__main__ import main
    res = main(["--progressive-experiment", "--limit", "12", "--device", "cpu", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "progressive_results.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(res["rows"]))
    kinds = {r["kind"] for r in saved["rows"]}
    assert {"full", "coarse", "static", "progressive"} <= kinds
    for r in saved["rows"]:
        assert {"method", "kind", "accuracy", "mean_tokens", "mean_macs"} <= set(r)
        if r["kind"] == "progressive":
            assert {"mode", "confidence", "exit_share"} <= set(r) and abs(sum(r["exit_share"]) - 1) < 1e-9
    row = next(r for r in saved["rows"] if r["kind"] == "progressive" and r["mode"] == "rerun"
               and r["score"] == "attention" and r["confidence"] == 0.8)
    from adapatch.experiments.cluttered_digits import DatasetConfig, held_out_split
    from adapatch.model import load_task_model
    y = held_out_split(DatasetConfig(**load_task_model(device="cpu")[1]["dataset"]))["test_y"][:12]
    r = at_tau(trace(task, images, score="attention", k=4, device="cpu"), 0.8)
    assert row["accuracy"] == float(np.mean([a.prediction == b for a, b in zip(r, y)]))
    assert row["mean_macs"] == float(np.mean([a.macs for a in r]))
