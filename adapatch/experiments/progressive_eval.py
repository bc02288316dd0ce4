"""Progressive refinement on the task: ``python -m adapatch.experiments --progressive-experiment [--limit N]``.

On the task's held-out digits: ``adapatch.model.progressive`` from the coarse 16 px grid (16 tokens),
4 tokens split per step, in both modes (re-run every block; split in place after block 1 or 2),
with the class-attention and the content score, at several confidence thresholds; beside it the
static layouts at equal mean MACs (the full grid, the coarse grid, the std and distortion budget
quadtrees and the learned selector at the token count whose MACs fit). Thresholds are read from one
full trace per configuration (``at_tau``), and one is fitted for a target mean MACs on the first half
of the images and applied to the second (``solve_tau``). Writes ``progressive_results.json`` / ``.md``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..layout import uniform
from ..model.latency import model_macs
from ..model.progressive import at_tau, solve_tau, trace
from ..model.selector import select_topk
from ..model.task import ASSET_DIR, load_task_model
from ..tune.evaluate import Evaluator, selector_macs
from .cluttered_digits import DatasetConfig, held_out_split, to_rgb
from .train import quadtree_layouts

TAUS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
RUNS = (("rerun", None, "attention"), ("rerun", None, "content"), ("inplace", 1, "attention"),
        ("inplace", 2, "attention"))
TARGET_MACS = (0.5, 0.75)


def _static(ev: Evaluator, grey: np.ndarray, y: np.ndarray, tokens: int, idx: np.ndarray) -> dict[str, float]:
    """Accuracy on images ``idx`` of the static layouts at ``tokens`` tokens (the selector: the cells
    whose MACs, its CNN included, fit those of ``tokens`` tokens)."""
    grey, y = grey[idx], y[idx]
    out = {}
    for imp in ("std", "distortion"):
        kw = {"token_size": 8} if imp == "distortion" else {}
        sc = ev.score_layouts(idx, quadtree_layouts(grey, tokens, imp, **kw))
        out[f"quadtree {imp}"] = float((sc.predictions == y).mean())
    with torch.inference_mode():
        logits = ev.model.selector(ev._x(idx))
    k = max(1, tokens - int(np.ceil(selector_macs(ev.model.selector) / model_macs(ev.cfg, 1))))
    top = select_topk(logits, k).cpu().numpy()
    sc = ev.score_layouts(idx, [ev.grid.with_tokens(t, strategy="learned_selector", k=k) for t in top],
                          selector_macs(ev.model.selector))
    out["learned selector"] = float((sc.predictions == y).mean())
    return out


def run_progressive_experiment(model_dir: str | Path | None = None, limit: int | None = 1000, device: str = "cpu",
                               threads: int = 2, command: str = "", out: str | Path | None = None) -> dict[str, Any]:
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    out = Path(out or ASSET_DIR)
    task, meta = load_task_model(model_dir, device=device) if model_dir else load_task_model(device=device)
    data = held_out_split(DatasetConfig(**meta["dataset"]))
    grey, y = data["test_x"], data["test_y"].astype(np.int64)
    if limit is not None:
        grey, y = grey[:limit], y[:limit]
    images = list(to_rgb(grey))
    cfg = task.config
    full = model_macs(cfg, uniform(cfg.img_size, cfg.img_size, cfg.patch_size).num_tokens)
    ev = Evaluator(task, np.stack(images), device)
    static_cache: dict[tuple[int, int], dict[str, float]] = {}
    half = len(images) // 2

    def static_at(macs: float, first: int = 0) -> dict[str, Any]:
        """The static layouts at the token count whose MACs fit ``macs``, on images ``first..``."""
        n = max(t for t in range(1, 65) if model_macs(cfg, t) <= max(macs, model_macs(cfg, 1)))
        if (n, first) not in static_cache:
            static_cache[(n, first)] = _static(ev, grey, y, n, np.arange(first, len(images)))
        return {"tokens": n, **static_cache[(n, first)]}

    rows: list[dict[str, Any]] = []
    fitted: list[dict[str, Any]] = []
    for mode, cut, score in RUNS:
        t = time.perf_counter()
        tr = trace(task, images, score=score, k=4, mode=mode, cut=cut, device=device)
        secs = time.perf_counter() - t
        for tau in TAUS:
            r = at_tau(tr, tau)
            steps = np.array([len(a.steps) for a in r])
            macs = float(np.mean([a.macs for a in r]))
            name = f"progressive {mode}" + (f" (cut {cut})" if cut is not None else "") + f", {score}, tau {tau}"
            rows.append({"method": name, "kind": "progressive", "mode": mode, "cut": cut, "score": score,
                         "confidence": tau, "accuracy": float(np.mean([a.prediction == b for a, b in zip(r, y)])),
                         "mean_tokens": float(np.mean([a.tokens for a in r])), "mean_macs": macs,
                         "macs_ratio": macs / full, "mean_steps": float(steps.mean()),
                         "exit_share": [float((steps == s).mean()) for s in range(1, int(steps.max()) + 1)],
                         "static_at_equal_macs": static_at(macs), "trace_seconds": secs})
        for target in TARGET_MACS:
            tau = solve_tau(tr[:half], target * full)
            r = at_tau(tr[half:], tau)
            macs = float(np.mean([a.macs for a in r]))
            fitted.append({"mode": mode, "cut": cut, "score": score, "target_macs_ratio": target, "tau": tau,
                           "held_out_macs_ratio": macs / full,
                           "held_out_accuracy": float(np.mean([a.prediction == b for a, b in zip(r, y[half:])])),
                           "static_at_equal_macs": static_at(macs, half)})
    every = np.arange(len(images))
    coarse = uniform(cfg.img_size, cfg.img_size, 2 * cfg.patch_size)
    base = {"full grid (64 tokens)": float((ev.score_layouts(every, [ev.grid] * len(images)).predictions == y).mean()),
            "coarse grid (16 tokens)": float((ev.score_layouts(every, [coarse] * len(images)).predictions == y).mean())}
    fixed: list[dict[str, Any]] = [
        {"method": f"uniform {cfg.patch_size} px (full)", "kind": "full",
         "accuracy": base["full grid (64 tokens)"], "mean_tokens": float(ev.total), "mean_macs": float(full),
         "macs_ratio": 1.0},
        {"method": f"uniform {2 * cfg.patch_size} px (coarse)", "kind": "coarse",
         "accuracy": base["coarse grid (16 tokens)"], "mean_tokens": float(coarse.num_tokens),
         "mean_macs": float(model_macs(cfg, coarse.num_tokens)),
         "macs_ratio": model_macs(cfg, coarse.num_tokens) / full}]
    for n in sorted({k for k, first in static_cache if first == 0}):
        for name, acc in static_cache[(n, 0)].items():
            fixed.append({"method": f"{name} at {n} tokens", "kind": "static", "accuracy": acc, "mean_tokens": float(n),
                          "mean_macs": float(model_macs(cfg, n)), "macs_ratio": model_macs(cfg, n) / full})
    rows = fixed + rows
    result = {"command": command, "images": len(images), "rows": rows, "fitted": fitted, "baselines": base,
              "seconds": time.perf_counter() - t0,
              "environment": {"torch": torch.__version__, "threads": threads, "device": device}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "progressive_results.json").write_text(json.dumps(result, indent=1))
    (out / "progressive_results.md").write_text(markdown(result))
    return result


def markdown(r: dict[str, Any]) -> str:
    lines = [f"# Progressive refinement on {r['images']} held-out digits (coarse 16 px start, 4 splits a step)", "",
             "Baselines: " + ", ".join(f"{k} {v:.3f}" for k, v in r["baselines"].items()) + ".", "",
             "| mode | score | tau | accuracy | tokens | MACs ratio | steps | exits by step | static at equal MACs "
             "(tokens: std / distortion / selector) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        if row["kind"] != "progressive":
            continue
        st = row["static_at_equal_macs"]
        mode = row["mode"] + (f" (cut {row['cut']})" if row["cut"] is not None else "")
        lines.append(f"| {mode} | {row['score']} | {row['confidence']} | {row['accuracy']:.3f} | "
                     f"{row['mean_tokens']:.1f} | {row['macs_ratio']:.3f} | {row['mean_steps']:.2f} | "
                     + " / ".join(f"{s:.2f}" for s in row["exit_share"]) + " | "
                     f"{st['tokens']}: {st['quadtree std']:.3f} / {st['quadtree distortion']:.3f} / "
                     f"{st['learned selector']:.3f} |")
    lines += ["", "Thresholds fitted on the first half for a target mean MACs, applied to the second half:", "",
              "| mode | score | target | tau | MACs ratio | accuracy | static at equal MACs "
              "(tokens: std / distortion / selector) |", "|---|---|---|---|---|---|---|"]
    for f in r["fitted"]:
        mode = f["mode"] + (f" (cut {f['cut']})" if f["cut"] is not None else "")
        st = f["static_at_equal_macs"]
        lines.append(f"| {mode} | {f['score']} | {f['target_macs_ratio']:.2f} | {f['tau']:.3f} | "
                     f"{f['held_out_macs_ratio']:.3f} | {f['held_out_accuracy']:.3f} | {st['tokens']}: "
                     f"{st['quadtree std']:.3f} / {st['quadtree distortion']:.3f} / {st['learned selector']:.3f} |")
    lines += ["", f"Seconds: {r['seconds']:.0f}. Command: `{r['command']}`", ""]
    return "\n".join(lines)
