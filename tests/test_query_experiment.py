"""The query-aware experiment: the two-digit generator's ground truth, the evaluation
on a small seeded subset (rows at equal tokens, token precision), the batched class maps against
the library's ``query_map``, the CLI flag, and the README table as ``query_results.json`` prints it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from adapatch.experiments.cluttered_digits import DatasetConfig, source_digits as _sources
from adapatch.experiments.query_eval import (
    BUDGETS,
    check_class_maps,
    class_maps,
    compact_table,
    evaluate_query,
    token_precision,
)
from adapatch.experiments.two_digits import TwoDigitConfig, make_two_digits
from adapatch.layout import uniform
from adapatch.model import ASSET_DIR

README = ASSET_DIR.parents[2] / "README.md"
N_SUB = 16


@pytest.fixture(scope="module")
def task():
    if not (ASSET_DIR / "config.json").is_file():
        pytest.skip("no bundled checkpoint")
    from adapatch.model import load_task_model

    return load_task_model(device="cpu")


@pytest.fixture(scope="module")
def clean() -> tuple[TwoDigitConfig, dict]:
    """No noise, no distractors: the canvas is exactly the two pasted digits."""
    cfg = TwoDigitConfig(n=64, noise=0.0, n_distractors=0, seed=3)
    return cfg, make_two_digits(cfg)


def test_two_digits_ground_truth(clean) -> None:
    cfg, d = clean
    src_cfg = DatasetConfig(n_train=1, n_test=1, scale=cfg.scale, test_fraction=cfg.test_fraction,
                            seed=cfg.source_seed)
    _, _, src, lab = _sources(src_cfg)  # the held-out source digits
    s, dsz, half = cfg.size, 8 * cfg.scale, cfg.size // 2
    n = cfg.n
    assert d["x"].shape == (n, s, s) and d["x"].dtype == np.float32
    assert (d["labels"][:, 0] != d["labels"][:, 1]).all()  # always two different classes
    for i in range(n):
        outside = np.ones((s, s), bool)
        for j in range(2):
            y0, x0, y1, x1 = d["boxes"][i, j]
            assert (y1 - y0, x1 - x0) == (dsz, dsz) and 0 <= y0 and y1 <= s
            assert j * half <= x0 and x1 <= (j + 1) * half  # wholly inside its half
            crop = d["x"][i, y0:y1, x0:x1]
            # the crop is one held-out source digit, exactly, and its class is the recorded label
            match = np.flatnonzero(np.abs(src - crop).reshape(len(src), -1).max(1) == 0)
            assert len(match) >= 1 and (lab[match] == d["labels"][i, j]).all()
            # the ink box is the tight box of the digit's pixels >= ink_level, inside the pasted box
            iy0, ix0, iy1, ix1 = d["ink"][i, j]
            assert y0 <= iy0 < iy1 <= y1 and x0 <= ix0 < ix1 <= x1
            ys, xs = np.nonzero(crop >= cfg.ink_level)
            assert (iy0, ix0, iy1, ix1) == (y0 + ys.min(), x0 + xs.min(), y0 + ys.max() + 1, x0 + xs.max() + 1)
            outside[y0:y1, x0:x1] = False
        assert d["x"][i][outside].max() == 0.0  # nothing else on a clean canvas


def test_two_digits_query_and_labels(clean) -> None:
    cfg, d = clean
    idx = np.arange(cfg.n)
    assert set(np.unique(d["side"])) == {0, 1} and abs(d["side"].mean() - 0.5) <= 1 / cfg.n
    assert (d["y"] == d["labels"][idx, d["side"]]).all()
    assert (d["y_other"] == d["labels"][idx, 1 - d["side"]]).all()
    assert (d["query_box"] == d["boxes"][idx, d["side"]]).all()
    assert (d["query_ink"] == d["ink"][idx, d["side"]]).all()
    assert (d["other_ink"] == d["ink"][idx, 1 - d["side"]]).all()
    half = cfg.size // 2
    assert (d["half"][:, 1] == d["side"] * half).all() and (d["half"][:, 3] == (d["side"] + 1) * half).all()
    # the queried digit lies in the queried half
    assert ((d["query_box"][:, 1] >= d["half"][:, 1]) & (d["query_box"][:, 3] <= d["half"][:, 3])).all()


def test_two_digits_seeded() -> None:
    a = make_two_digits(TwoDigitConfig(n=16, seed=5))
    b = make_two_digits(TwoDigitConfig(n=16, seed=5))
    c = make_two_digits(TwoDigitConfig(n=16, seed=6))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["x"], c["x"])
    with pytest.raises(ValueError, match="n"):
        TwoDigitConfig(n=0)


def test_token_precision_definition() -> None:
    lay = uniform(64, 64, 8)  # 64 tokens of 8 px
    target = np.array([[0, 0, 16, 16]])  # centres (4, 4), (4, 12), (12, 4), (12, 12) inside
    other = np.array([[32, 32, 40, 40]])  # one centre (36, 36)
    p = token_precision([lay], target, other)
    assert p["precision"] == 4 / 64 and p["precision_other"] == 1 / 64 and p["fine8_on_query"] == 4
    assert p["finest_sizes"] == {"8": 1}


@pytest.fixture(scope="module")
def subset(task) -> tuple[dict, list[dict]]:
    model, cfg = task
    data = make_two_digits(TwoDigitConfig.from_dataset(cfg["dataset"], n=N_SUB, seed=14))
    return data, evaluate_query(model, data)


def test_rows_at_equal_tokens(subset) -> None:
    _, rows = subset
    full = [r for r in rows if r["budget"] is None]
    assert len(full) == 1 and full[0]["tokens"] == 64
    for b in BUDGETS:
        at = [r for r in rows if r["budget"] == b]
        kinds = {r["kind"] for r in at}
        assert {"blind", "region_side", "region_box", "class", "class_oracle"} <= kinds
        assert len(at) == 2 + 4 + 4  # std + distortion, side/box x 2 weights, predicted/oracle class x 2 weights
        for r in at:
            assert r["tokens_max"] <= b
            assert r["tokens"] == b, r["method"]  # every row uses the whole budget: equal tokens
    for r in rows:
        for k in ("accuracy", "other_digit", "precision", "precision_other"):
            assert 0.0 <= r[k] <= 1.0
        assert r["accuracy"] + r["other_digit"] <= 1.0


def test_region_query_puts_the_fine_tokens_on_the_queried_digit(subset) -> None:
    _, rows = subset
    for b in BUDGETS:
        at = {(r["kind"], r["query_weight"], r.get("importance")): r for r in rows if r["budget"] == b}
        blind = at[("blind", 0.0, "std")]
        for kind in ("region_side", "region_box"):
            best = max(r["precision"] for (k, _, _), r in at.items() if k == kind)
            assert best > blind["precision"], (b, kind)
        # a side query with w > 0 ranks every square of the queried half above the other half's
        # (budget <= 34 tokens: the half's eight 16 px squares are not all split), so no finest
        # token lands on the other digit
        for (k, _, _), r in at.items():
            if k == "region_side":
                assert r["precision_other"] == 0.0


def test_class_maps_batched_equal_the_library(task, subset) -> None:
    model, _ = task
    data, _ = subset
    x, k = data["x"][:3], np.array([data["y"][0], data["y_other"][1], 7])
    maps = class_maps(model, x, k, batch_size=2)
    assert maps.shape == (3, 64, 64) and maps.min() >= 0.0 and maps.max() <= 1.0
    assert check_class_maps(model, x, k, maps) < 1e-5


def test_cli_writes_results(task, tmp_path) -> None:
    from adapatch.experiments.__main__ import main

    for f in ("config.json", "task_vit.safetensors", "task_pruner.safetensors", "task_selector.safetensors"):
        shutil.copy(ASSET_DIR / f, tmp_path / f)
    res = main(["--query-experiment", "--out", str(tmp_path), "--query-n", "2", "--seed", "1"])
    saved = json.loads((tmp_path / "query_results.json").read_text())
    assert saved["command"].endswith("--query-experiment --out " + str(tmp_path) + " --query-n 2 --seed 1")
    assert saved["n"] == 2 and saved["dataset"]["seed"] == 1 and len(saved["rows"]) == len(res["rows"]) == 21
    assert saved["class_map_check"]["max_abs_diff"] < 1e-5
    assert {"torch", "threads", "device"} <= set(saved["environment"])
    assert (tmp_path / "query_results.md").read_text().startswith("| method |")
    with pytest.raises(SystemExit):
        main(["--query-experiment", "--quick", "--out", str(tmp_path)])


def test_readme_table_is_the_saved_results() -> None:
    f = ASSET_DIR / "query_results.json"
    if not f.is_file():
        pytest.skip("no bundled query results")
    saved = json.loads(f.read_text())
    assert saved["n"] == 2000 and saved["dataset"]["seed"] == 14
    assert compact_table(saved["rows"]) in README.read_text()
