"""The eval-only path of ``python -m adapatch.experiments`` on a small subset of the bundled
checkpoint's held-out split: the new rows exist, keep to their budgets, and accuracies are sane."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adapatch import uniform_for_budget
from adapatch.experiments import evaluate_checkpoint
from adapatch.experiments.eval_only import write_eval_only
from adapatch.model import ASSET_DIR

N_TEST = 64


@pytest.fixture(scope="module")
def result() -> dict:
    if not (ASSET_DIR / "config.json").is_file():
        pytest.skip("no bundled checkpoint")
    return evaluate_checkpoint(ASSET_DIR, n_test=N_TEST, n_latency=2, n_timing=N_TEST, rounds=1, device="cpu")


def test_split_matches_saved_samples(result: dict) -> None:
    assert result["samples_verified"] == 8
    assert result["n_test"] == N_TEST


def test_rows(result: dict) -> None:
    rows = {r["method"]: r for r in result["rows"]}
    names = [r["method"] for r in result["rows"]]
    for old in ("uniform 8 px (full)", "uniform 16 px (coarse)", "quadtree budget 16 (std, 8-32 px)",
                "quadtree budget 28 (std, 8-32 px)", "learned selector top-16 (8 px)"):
        assert old in rows
    eq = uniform_for_budget(64, 64, 28)
    new = ["quadtree budget 16 (distortion, 8-32 px)", "quadtree budget 28 (distortion, 8-32 px)",
           f"uniform {int(eq.boxes[0, 2])} px (equal tokens to 28)",
           "multiscale budget 16 (token 8)", "multiscale budget 28 (token 8)"]
    # the new rows come right after the std quadtree rows, in this order, before the selector
    i = names.index("quadtree budget 28 (std, 8-32 px)")
    assert names[i + 1:i + 1 + len(new)] == new
    assert names[-1] == "learned selector top-16 (8 px)"
    assert not any("equal tokens to 16" in m for m in names)  # = the 16 px coarse row on 64x64
    for b in (16, 28):
        d = rows[f"quadtree budget {b} (distortion, 8-32 px)"]
        assert d["tokens"] <= b and d["budget"] == b and d["token_size"] == 8
        assert sum(d["size_histogram"].values()) == pytest.approx(d["tokens"] * N_TEST)
        m = rows[f"multiscale budget {b} (token 8)"]
        assert m["tokens"] <= b and m["budget"] == b and m["layout_ms_per_image"] > 0
        assert sum(m["base_size_counts"].values()) == N_TEST
    u = rows[new[2]]
    assert u["tokens"] == eq.num_tokens and u["equal_tokens_to"] == 28
    for r in result["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0
        assert np.isfinite(r["speedup_batched"]) and np.isfinite(r["speedup_batch1"])


def test_write_keeps_training_log(result: dict, tmp_path) -> None:
    old = json.loads((ASSET_DIR / "results.json").read_text())
    (tmp_path / "results.json").write_text(json.dumps(old))
    out = write_eval_only(tmp_path, result, "python -m adapatch.experiments --eval-only", 1.0, {"threads": 2})
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == out
    assert saved["train_log"] == old["train_log"] and saved["train_seconds"] == old["train_seconds"]
    assert saved["rows_source"] == "eval-only"
    assert saved["eval_only"]["command"] == "python -m adapatch.experiments --eval-only"
    assert saved["eval_only"]["n_test"] == N_TEST
    assert len(saved["rows"]) == len(result["rows"])
    md = (tmp_path / "results.md").read_text()
    assert "multiscale budget 28 (token 8)" in md
