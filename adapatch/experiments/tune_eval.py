"""The tuner on the bundled task: ``python -m adapatch.experiments --tune-experiment [--limit N]``.

On the task's held-out digits (labels known) ``adapatch.tune`` searches with labels and, separately,
label-free, on the same seeded search split. Its choices at MACs ratios 0.25 and 0.40 are re-scored on
the held-out part the search never saw, beside today's hand-picked rows (results.md: the budget
quadtrees, the coarse grid, the equal-token grid, multiscale, the learned selector top-16) scored on
those same held-out images; the best hand-picked row at or under each MACs ratio is the one to match.
Writes ``tune_results.json`` and ``tune_results.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..layout import uniform, uniform_for_budget
from ..model.selector import select_topk
from ..model.task import ASSET_DIR, load_task_model
from ..multiscale import multiscale
from ..tune import choose, tune
from ..tune.evaluate import Evaluator, selector_macs
from .cluttered_digits import DatasetConfig, held_out_split, to_rgb
from .train import quadtree_layouts

TARGETS = (0.25, 0.40)


def hand_picked(ev: Evaluator, grey: np.ndarray, idx: np.ndarray, y: np.ndarray) -> list[dict[str, Any]]:
    """Today's results.md rows (no pruning: the tuner patches before the encoder) on images ``idx``."""
    rows = []
    x = to_rgb(grey[idx])
    full_macs = ev.full_macs

    def add(name: str, lays, extra: float = 0.0) -> None:
        sc = ev.score_layouts(np.arange(len(idx)), lays, extra)
        rows.append({"method": name, "accuracy": float((sc.predictions == y).mean()),
                     "macs_ratio": float(sc.macs.mean() / full_macs), "mean_tokens": float(sc.tokens.mean())})

    n = len(idx)
    add("uniform 8 px (full)", [uniform(64, 64, 8)] * n)
    add("uniform 16 px (coarse)", [uniform(64, 64, 16)] * n)
    for imp in ("std", "distortion"):
        for b in (16, 28):
            kw = {"token_size": 8} if imp == "distortion" else {}
            add(f"quadtree budget {b} ({imp}, 8-32 px)", quadtree_layouts(grey[idx], b, imp, **kw))
    add("uniform 13 px (equal tokens to 28)", [uniform_for_budget(64, 64, 28)] * n)
    for b in (16, 28):
        add(f"multiscale budget {b} (token 8)", [multiscale(im, b, token_size=8) for im in x])
    with torch.inference_mode():
        logits = ev.model.selector(ev._x(np.arange(n)))
    top = select_topk(logits, 16).cpu().numpy()
    add("learned selector top-16 (8 px)", [ev.grid.with_tokens(t, strategy="learned_selector", k=16) for t in top],
        selector_macs(ev.model.selector))
    return rows


def run_tune_experiment(model_dir: str | Path | None = None, limit: int | None = None, seed: int = 0,
                        device: str = "cpu", threads: int = 2, command: str = "",
                        out: str | Path | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    out = Path(out or model_dir or ASSET_DIR)
    task, meta = load_task_model(model_dir, device=device) if model_dir else load_task_model(device=device)
    data = held_out_split(DatasetConfig(**meta["dataset"]))
    grey, y = data["test_x"], data["test_y"].astype(np.int64)
    if limit is not None:
        grey, y = grey[:limit], y[:limit]
    images = list(to_rgb(grey))
    runs = {}
    for name, labels in (("labelled", y), ("label_free", None)):
        t = time.perf_counter()
        res = tune(images, task, labels, target_macs_ratio=max(TARGETS), held_out=0.3, seed=seed, device=device)
        runs[name] = (res, time.perf_counter() - t)
    lab, _ = runs["labelled"]
    hold = np.array(lab.held_out_images)
    ev = Evaluator(task, np.stack([images[i] for i in hold]), device)
    rows = hand_picked(ev, grey, hold, y[hold])
    out_targets = []
    for target in TARGETS:
        entry: dict[str, Any] = {"macs_ratio": target}
        for name, (res, _) in runs.items():
            c = choose(res.front, res.full_grid["objective"], target, None)
            if c is None:
                entry[name] = None
                continue
            sc = ev.score(c.config, np.arange(len(hold)), c.threshold)
            entry[name] = {"key": c.config.key, "search_objective": c.objective, "search_macs_ratio": c.macs_ratio,
                           "held_out_accuracy": float((sc.predictions == y[hold]).mean()),
                           "held_out_macs_ratio": float(sc.macs.mean() / ev.full_macs),
                           "held_out_tokens": float(sc.tokens.mean()), "threshold": c.threshold, "budget": c.budget}
        fits = [r for r in rows if r["macs_ratio"] <= target + 1e-9 and "full" not in r["method"]]
        entry["best_hand_picked"] = max(fits, key=lambda r: r["accuracy"]) if fits else None
        if entry.get("labelled") and entry.get("label_free"):
            entry["same_choice"] = entry["labelled"]["key"] == entry["label_free"]["key"]
            entry["label_free_gap"] = entry["labelled"]["held_out_accuracy"] - entry["label_free"]["held_out_accuracy"]
        out_targets.append(entry)
    result = {"command": command, "images": len(images), "search_images": len(lab.search_images),
              "held_out_images": len(hold), "seed": seed, "targets": out_targets, "hand_picked_held_out": rows,
              "labelled": lab.to_dict(), "label_free": runs["label_free"][0].to_dict(),
              "seconds": {k: v for k, (_, v) in runs.items()} | {"total": time.perf_counter() - t0},
              "environment": {"torch": torch.__version__, "threads": threads, "device": device}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "tune_results.json").write_text(json.dumps(result, indent=1))
    (out / "tune_results.md").write_text(markdown(result))
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Tuned vs hand-picked on the task ({r['images']} held-out digits: {r['search_images']} searched, "
             f"{r['held_out_images']} re-scored)", "",
             "| MACs ratio | tuned (labels) | held-out acc. | MACs | label-free choice | held-out acc. | "
             "best hand-picked row | held-out acc. | MACs |", "|---|---|---|---|---|---|---|---|---|"]
    for t in r["targets"]:
        lab, lf, hp = t.get("labelled"), t.get("label_free"), t.get("best_hand_picked")
        cells = [f"{t['macs_ratio']:.2f}"]
        cells += ([lab["key"], f"{lab['held_out_accuracy']:.3f}", f"{lab['held_out_macs_ratio']:.3f}"] if lab
                  else ["-"] * 3)
        cells += [lf["key"], f"{lf['held_out_accuracy']:.3f}"] if lf else ["-"] * 2
        cells += [hp["method"], f"{hp['accuracy']:.3f}", f"{hp['macs_ratio']:.3f}"] if hp else ["-"] * 3
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Hand-picked rows on the same held-out images:", "", "| method | accuracy | MACs ratio | tokens |",
              "|---|---|---|---|"]
    for row in r["hand_picked_held_out"]:
        lines.append(f"| {row['method']} | {row['accuracy']:.3f} | {row['macs_ratio']:.3f} "
                     f"| {row['mean_tokens']:.1f} |")
    lines += ["", f"Seconds: labelled search {r['seconds']['labelled']:.0f}, "
              f"label-free {r['seconds']['label_free']:.0f}, "
              f"total {r['seconds']['total']:.0f}.", "", f"Command: `{r['command']}`", ""]
    return "\n".join(lines)
