"""Re-evaluation of a saved checkpoint without retraining (``python -m adapatch.experiments --eval-only``).

The held-out split is rebuilt from the checkpoint's ``config.json`` (the training run's
``DatasetConfig`` and seed) and checked, bit for bit, against the first test images that training
saved as 8-bit PNGs in ``samples/``; ``evaluate`` then produces the rows. ``write_eval_only``
rewrites ``results.json`` and ``results.md``, keeping the training run's log and timings.

The whole split takes minutes on 2 CPU cores, so ``results.json`` also carries a ``subset_check``:
per method, the correct predictions, mean tokens and MACs per image on the first ``SUBSET_N``
held-out images, from the same run as the rows. A test recomputes it in seconds and asserts exact
equality: the bundled checkpoint and the evaluation code still give the published numbers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..model.task import load_task_model
from .cluttered_digits import DatasetConfig, held_out_split, to_rgb
from .evaluate import evaluate, markdown_table

SUBSET_N = 128
"""Held-out images (the first ones) in ``results.json``'s ``subset_check``."""


def check_samples(folder: str | Path, test_x: np.ndarray, test_y: np.ndarray) -> int:
    """How many saved samples (``samples/labels.json``) match the rebuilt test split: the 8-bit PNG
    of ``to_rgb(test_x[i])`` pixel for pixel, and the label. 0 when no samples were saved; raises
    ``ValueError`` on a mismatch (the split is not the one the checkpoint was trained with)."""
    labels = Path(folder) / "samples" / "labels.json"
    if not labels.is_file():
        return 0
    n = 0
    for s in json.loads(labels.read_text()):
        m = re.match(r"digit_(\d+)_label", Path(s["file"]).name)
        if m is None:
            continue
        i = int(m.group(1))
        img = cv2.imread(str(Path(folder) / s["file"]), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"cannot read sample {s['file']!r}")
        if i >= len(test_x):
            continue
        mine = (to_rgb(test_x[i]) * 255 + 0.5).astype(np.uint8)
        if not np.array_equal(img[..., ::-1], mine) or int(s["label"]) != int(test_y[i]):
            raise ValueError(f"rebuilt test image {i} does not match {s['file']!r}: the dataset code or "
                             "config.json differ from the training run")
        n += 1
    return n


def subset_check(rows: list[dict], n: int) -> dict[str, Any]:
    """``{"n", "correct", "tokens", "macs_per_image"}`` of ``evaluate``'s ``rows`` on ``n`` images,
    each a ``{method: value}``; ``correct`` is the exact count of right predictions (an int)."""
    return {"n": int(n),
            "correct": {r["method"]: round(r["accuracy"] * n) for r in rows},
            "tokens": {r["method"]: r["tokens"] for r in rows},
            "macs_per_image": {r["method"]: r["macs_per_image"] for r in rows}}


def evaluate_checkpoint(path: str | Path, *, n_test: int | None = None, n_latency: int | None = None,
                        n_timing: int | None = None, rounds: int | None = None,
                        device: str | torch.device = "auto", subset_n: int | None = SUBSET_N) -> dict[str, Any]:
    """Rows of ``evaluate`` for the checkpoint in ``path`` on its training run's held-out split.

    ``n_test`` evaluates the first images of that split only (tests, smoke runs); ``n_latency``,
    ``n_timing`` and ``rounds`` default to the training run's plan. ``subset_check`` is
    ``subset_check(rows, subset_n)`` on the first ``subset_n`` images: taken from the rows when
    ``n_test == subset_n``, from a second, untimed ``evaluate`` of those images when more were
    evaluated, None when fewer (or ``subset_n`` is None). Returns ``{"rows", "n_test", "dataset",
    "seed", "samples_verified", "timing", "subset_check"}``.
    """
    task, cfg = load_task_model(path, device)
    dcfg = DatasetConfig(**cfg["dataset"])
    seed = int(cfg.get("seed", dcfg.seed))
    torch.manual_seed(seed)
    np.random.seed(seed)
    data = held_out_split(dcfg)
    verified = check_samples(path, data["test_x"], data["test_y"])
    x, y = data["test_x"], data["test_y"]
    if n_test is not None:
        if n_test < 1:
            raise ValueError(f"n_test must be >= 1, got {n_test}")
        x, y = x[:n_test], y[:n_test]
    plan = cfg.get("plan", {})
    timing = {k: v if v is not None else plan.get(k) for k, v in
              (("n_latency", n_latency), ("n_timing", n_timing), ("rounds", rounds))}
    counts: dict[str, Any] = {k: int(v) for k, v in timing.items() if v is not None}
    rows = evaluate(task, x, y, **counts)
    check = None
    if subset_n is not None:
        if subset_n < 1:
            raise ValueError(f"subset_n must be >= 1, got {subset_n}")
        if len(x) == subset_n:
            check = subset_check(rows, subset_n)
        elif len(x) > subset_n:
            torch.manual_seed(seed)
            np.random.seed(seed)
            check = subset_check(evaluate(task, x[:subset_n], y[:subset_n], n_latency=1, n_timing=1, rounds=1),
                                 subset_n)
    return {"rows": rows, "n_test": len(x), "dataset": dcfg.to_dict(), "seed": seed,
            "samples_verified": verified, "timing": timing, "subset_check": check}


def write_eval_only(out: str | Path, result: dict[str, Any], command: str, seconds: float,
                    environment: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``out/results.json`` and ``results.md`` with ``result["rows"]``.

    The training run's ``command``, ``train_log``, ``train_seconds`` and ``total_seconds`` are kept;
    its ``environment`` moves to ``train_environment``; ``rows_source`` and ``eval_only`` say that the
    rows come from this path, with its command, time, environment and split; ``subset_check`` is
    ``result["subset_check"]`` (removed when None, so a stale one never outlives its rows).
    """
    out = Path(out)
    f = out / "results.json"
    results: dict[str, Any] = json.loads(f.read_text()) if f.is_file() else {}
    if "environment" in results and "train_environment" not in results:
        results["train_environment"] = results["environment"]
    results["rows"] = result["rows"]
    results["rows_source"] = "eval-only"
    results["eval_only"] = {
        "command": command,
        "note": "rows re-evaluated from the saved checkpoint without retraining; command, train_log, "
                "train_seconds and total_seconds are the training run's",
        "seconds": seconds, "n_test": result["n_test"], "dataset": result["dataset"], "seed": result["seed"],
        "samples_verified": result["samples_verified"], "timing": result["timing"],
    }
    results["environment"] = environment
    if result.get("subset_check") is not None:
        results["subset_check"] = result["subset_check"]
    else:
        results.pop("subset_check", None)
    f.write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(markdown_table(result["rows"]))
    return results
