"""The eval-only path of ``python -m adapatch.experiments`` on the first ``SUBSET_N`` images of the
bundled checkpoint's held-out split: the rows exist and keep to their budgets, the bundled
checkpoint reproduces ``results.json``'s ``subset_check`` exactly (correct predictions, tokens and
MACs per method), and the README's results table is ``results.json``'s rows as printed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from adapatch import uniform_for_budget
from adapatch.experiments import evaluate_checkpoint
from adapatch.experiments.eval_only import SUBSET_N, write_eval_only
from adapatch.experiments.evaluate import markdown_table
from adapatch.model import ASSET_DIR

pytestmark = pytest.mark.slow  # subprocesses / experiments: outside the fast loop

N_TEST = SUBSET_N
README = ASSET_DIR.parents[2] / "README.md"
TABLE_HEAD = "| method | tokens | accuracy | MACs (M) |"


@pytest.fixture(scope="module")
def result() -> dict:
    if not (ASSET_DIR / "config.json").is_file():
        pytest.skip("no bundled checkpoint")
    # timing is irrelevant here: one image, one round
    return evaluate_checkpoint(ASSET_DIR, n_test=N_TEST, n_latency=1, n_timing=1, rounds=1, device="cpu")


@pytest.fixture(scope="module")
def saved() -> dict:
    f = ASSET_DIR / "results.json"
    if not f.is_file():
        pytest.skip("no bundled results")
    return json.loads(f.read_text())


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
    assert saved["subset_check"] == result["subset_check"]
    # a run without a subset check drops the old one instead of keeping it beside new rows
    out = write_eval_only(tmp_path, {**result, "subset_check": None}, "x", 1.0, {})
    assert "subset_check" not in out and "subset_check" not in json.loads((tmp_path / "results.json").read_text())
    assert len(saved["rows"]) == len(result["rows"])
    md = (tmp_path / "results.md").read_text()
    assert "multiscale budget 28 (token 8)" in md


def _differences(mine: dict[str, float], theirs: dict[str, float]) -> list[str]:
    return [f"{m}: recomputed {mine.get(m)!r}, results.json {theirs.get(m)!r}"
            for m in dict.fromkeys([*theirs, *mine]) if mine.get(m) != theirs.get(m)]


def test_bundled_checkpoint_reproduces_results(result: dict, saved: dict) -> None:
    """Exact equality with ``results.json``, which ``--eval-only`` wrote from the whole split in the
    same run: fails when the checkpoint, the dataset, the model code or the evaluation drift."""
    run = saved["eval_only"]
    assert saved["rows_source"] == "eval-only"
    assert run["n_test"] == run["dataset"]["n_test"]  # the rows cover the whole held-out split
    assert result["dataset"] == run["dataset"] and result["seed"] == run["seed"]
    check, mine = saved["subset_check"], result["subset_check"]
    assert check["n"] == mine["n"] == N_TEST
    methods = [r["method"] for r in saved["rows"]]
    assert list(check["correct"]) == methods and [r["method"] for r in result["rows"]] == methods
    for key in ("correct", "tokens", "macs_per_image"):
        diff = _differences(mine[key], check[key])
        assert not diff, f"{key} on the first {N_TEST} held-out images:\n" + "\n".join(diff)
    assert all(isinstance(c, int) for c in check["correct"].values())
    # methods whose tokens do not depend on the image: the subset's figures are the full split's
    full = {r["method"]: r for r in saved["rows"]}
    for r in result["rows"]:
        if r["kind"] in ("uniform", "prune_learned", "prune_attention", "selector"):
            f = full[r["method"]]
            assert (r["tokens"], r["tokens_after_pruning"], r["macs_per_image"]) == \
                (f["tokens"], f["tokens_after_pruning"], f["macs_per_image"]), r["method"]
    # the full split's accuracies are whole counts of its images
    for r in saved["rows"]:
        assert r["accuracy"] * run["n_test"] == pytest.approx(round(r["accuracy"] * run["n_test"]), abs=1e-6)


def _table(text: str) -> list[list[str]]:
    """The cells of the rows of the first results table (``TABLE_HEAD``) in ``text``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEAD))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def test_readme_table_is_results_json(saved: dict) -> None:
    """The README's results table: methods, tokens, accuracies and MACs as ``results.json`` prints them
    (``markdown_table``: accuracy to 3 places, MACs in millions to 2), then every column, as in
    ``results.md``."""
    if not README.is_file():
        pytest.skip("no README (installed package)")
    readme = _table(README.read_text())
    expected = _table(markdown_table(saved["rows"]))
    assert [r[0] for r in readme] == [r[0] for r in expected]
    for got, want in zip(readme, expected):
        assert got[:4] == want[:4], f"README row {got[0]!r}: tokens/accuracy/MACs {got[1:4]}, results.json {want[1:4]}"
    assert readme == expected, "README table's speed-up or layout columns differ from results.json"
    assert (ASSET_DIR / "results.md").read_text() == markdown_table(saved["rows"])
