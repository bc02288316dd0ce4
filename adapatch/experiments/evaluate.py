"""Evaluation of every tokenisation on the held-out split: tokens, accuracy, MACs, wall-clock.

Timing covers what the model does per batch: cutting/resizing the patches, the selector CNN
where used, the encoder and head (``torch.inference_mode``). Layout construction (quadtree,
multiscale) runs before and is reported separately as ``layout_ms_per_image``. Two wall-clock figures:
``speedup_batched`` (batches of ``batch_size``; variable token counts grouped by
``DynamicBatcher``) and ``speedup_batch1`` (median single-image latency over ``n_latency`` images).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from ..layout import uniform, uniform_for_budget
from ..model.batching import DynamicBatcher
from ..model.latency import model_macs
from ..model.pruning import forward_pruned
from ..model.selector import select_topk, selector_macs
from ..model.task import TaskModel
from ..multiscale import multiscale
from .cluttered_digits import to_rgb
from .train import QT_MAX, QT_MIN, batch_tensor, quadtree_layouts

BatchFn = Callable[[np.ndarray], torch.Tensor]


def _predict(fn: BatchFn, batches: list[np.ndarray], n: int, n_classes: int) -> np.ndarray:
    out = np.zeros((n, n_classes), np.float32)
    with torch.inference_mode():
        for b in batches:
            out[b] = fn(b).float().cpu().numpy()
    return out


def _time_batched(fn: BatchFn, batches: list[np.ndarray]) -> float:
    with torch.inference_mode():
        fn(batches[0])  # warm-up
        t0 = time.perf_counter()
        for b in batches:
            fn(b)
        return time.perf_counter() - t0


def _time_batch1(fn: BatchFn, n_latency: int) -> float:
    with torch.inference_mode():
        fn(np.array([0]))
        ts = []
        for i in range(n_latency):
            t0 = time.perf_counter()
            fn(np.array([i]))
            ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def evaluate(task: TaskModel, x: np.ndarray, y: np.ndarray, budgets: tuple[int, int] = (16, 28),
             prune_keeps: tuple[float, ...] = (0.5, 0.3), selector_ks: tuple[int, ...] = (16,),
             batch_size: int = 256, n_latency: int = 100, n_timing: int = 1024, rounds: int = 3) -> list[dict]:
    """One row per method (see module doc); ``x`` grey ``[n, H, W]``, ``y`` labels.

    Accuracy uses the whole split. Wall-clock is timed on the first ``n_timing`` images, all
    methods in turn, ``rounds`` times, keeping each method's fastest round, so a burst of load
    from other processes does not land on one method only.
    """
    vit, dev = task.vit, next(task.vit.parameters()).device
    cfg = vit.config
    n, (h, w) = len(x), x.shape[1:]
    fine, coarse = uniform(h, w, cfg.patch_size), uniform(h, w, 2 * cfg.patch_size)
    fixed_batches = [np.arange(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]
    n_latency = min(n_latency, n)
    n_timing = min(n_timing, n)
    rows: list[dict] = []
    timers: list[tuple[BatchFn, list[np.ndarray]]] = []

    def add(name: str, kind: str, fn: BatchFn, tokens_in: np.ndarray, macs: np.ndarray, batches=None,
            tokens_after: float | None = None, layout_ms: float = 0.0, **extra) -> None:
        logits = _predict(fn, batches or fixed_batches, n, cfg.num_classes)
        if batches is None:
            tbatches = [b for b in fixed_batches if b[0] < n_timing]
            tbatches[-1] = tbatches[-1][tbatches[-1] < n_timing]
        else:
            tbatches = list(DynamicBatcher(tokens_in[:n_timing], batch_size))
        timers.append((fn, tbatches))
        rows.append({"method": name, "kind": kind, "tokens": float(np.mean(tokens_in)),
                     "tokens_after_pruning": tokens_after, "accuracy": float((logits.argmax(1) == y).mean()),
                     "macs_per_image": float(np.mean(macs)), "layout_ms_per_image": layout_ms, **extra})

    def grid_fn(lay):
        return lambda b: vit.forward_tokens(vit.tokenize(batch_tensor(vit, x[b], dev), [lay] * len(b)))

    add(f"uniform {cfg.patch_size} px (full)", "uniform", grid_fn(fine), np.full(n, fine.num_tokens),
        np.full(n, model_macs(cfg, fine.num_tokens)))
    add(f"uniform {2 * cfg.patch_size} px (coarse)", "uniform", grid_fn(coarse), np.full(n, coarse.num_tokens),
        np.full(n, model_macs(cfg, coarse.num_tokens)))

    nf = fine.num_tokens
    for method, label in (("learned", "learned scorer"), ("attention", "EViT attention + fused token")):
        for keep in prune_keeps:
            k = int(np.ceil(keep * nf - 1e-9))
            extra_tok = 1 if method == "attention" else 0

            def fn(b, method=method, keep=keep):
                tb = vit.tokenize(batch_tensor(vit, x[b], dev), [fine] * len(b))
                return forward_pruned(vit, tb, task.prune_layer, keep, method, task.pruner).logits

            add(f"prune {round((1 - keep) * 100)}% ({label}, after block {task.prune_layer})", f"prune_{method}",
                fn, np.full(n, nf), np.full(n, model_macs(cfg, nf, task.prune_layer, k, extra_tok)),
                tokens_after=float(k + extra_tok), keep_ratio=keep, prune_layer=task.prune_layer)

    def add_layouts(name: str, kind: str, lays: list, layout_ms: float, **extra) -> None:
        """A row of per-image layouts (variable token counts: batches by ``DynamicBatcher``)."""
        counts = np.array([lay.num_tokens for lay in lays])
        batches = list(DynamicBatcher(counts, batch_size))

        def lfn(b, lays=lays):
            return vit.forward_tokens(vit.tokenize(batch_tensor(vit, x[b], dev), [lays[i] for i in b]))

        add(name, kind, lfn, counts, np.array([model_macs(cfg, int(c)) for c in counts]), batches=batches,
            layout_ms=layout_ms, **extra)

    def size_histogram(lays: list) -> dict[str, int]:
        return {str(s): int(sum(lay.counts_per_size().get(s, 0) for lay in lays)) for s in (8, 16, 32)}

    def quadtree_rows(importance: str, **kw) -> None:
        for budget in budgets:
            t0 = time.perf_counter()
            lays = [lay for i in range(0, n, 512) for lay in quadtree_layouts(x[i:i + 512], budget, importance, **kw)]
            layout_ms = (time.perf_counter() - t0) * 1e3 / n
            add_layouts(f"quadtree budget {budget} ({importance}, {QT_MIN}-{QT_MAX} px)", "quadtree", lays, layout_ms,
                        budget=budget, size_histogram=size_histogram(lays), **kw)

    quadtree_rows("std")
    # rate-distortion split order, with the error of what this model sees (boxes -> patch_size tokens)
    quadtree_rows("distortion", token_size=cfg.patch_size)

    # the true equal-token uniform baseline: the grid of any integer patch size whose token count is
    # the closest to the budget (the model area-resizes every patch to patch_size). Grids already in
    # the table are not repeated: on 64x64 images budget 16 gives 16 px = the "coarse" row above.
    for budget in budgets:
        lay = uniform_for_budget(h, w, budget)
        size = int(lay.boxes[0, 2])
        if size in (cfg.patch_size, 2 * cfg.patch_size):
            continue
        add(f"uniform {size} px (equal tokens to {budget})", "uniform", grid_fn(lay), np.full(n, lay.num_tokens),
            np.full(n, model_macs(cfg, lay.num_tokens)), equal_tokens_to=budget, patch_size=size)

    # best of quadtrees on several base sizes and the equal-token uniform grid, by exact error
    for budget in budgets:
        t0 = time.perf_counter()
        lays = [multiscale(to_rgb(x[i]), budget, token_size=cfg.patch_size) for i in range(n)]
        layout_ms = (time.perf_counter() - t0) * 1e3 / n
        bases: dict[str, int] = {}
        for lay in lays:
            key = f"{lay.params['base_size']}" + (" uniform" if lay.params["levels_used"] == 0 else "")
            bases[key] = bases.get(key, 0) + 1
        add_layouts(f"multiscale budget {budget} (token {cfg.patch_size})", "multiscale", lays, layout_ms,
                    budget=budget, token_size=cfg.patch_size,
                    base_size_counts=dict(sorted(bases.items(), key=lambda kv: -kv[1])))

    sel_macs = selector_macs(task.selector)
    for k in selector_ks:
        def sfn(b, k=k):
            imgs = batch_tensor(vit, x[b], dev)
            idx = select_topk(task.selector(imgs), k)
            return vit.forward_tokens(vit.tokenize(imgs, [fine] * len(b)).select(idx))

        add(f"learned selector top-{k} ({cfg.patch_size} px)", "selector", sfn, np.full(n, k),
            np.full(n, model_macs(cfg, k) + sel_macs), k=k, selector_macs=sel_macs)

    best_b = [float("inf")] * len(rows)
    best_1 = [float("inf")] * len(rows)
    for _ in range(rounds):
        for i, (batch_fn, tbatches) in enumerate(timers):
            best_b[i] = min(best_b[i], _time_batched(batch_fn, tbatches))
            best_1[i] = min(best_1[i], _time_batch1(batch_fn, n_latency))
    for r, sb, s1 in zip(rows, best_b, best_1):
        r["ms_per_image_batched"] = sb * 1e3 / n_timing
        r["ms_per_image_batch1"] = s1 * 1e3
    ref = rows[0]
    for r in rows:
        r["predicted_speedup"] = ref["macs_per_image"] / r["macs_per_image"]
        r["speedup_batched"] = ref["ms_per_image_batched"] / r["ms_per_image_batched"]
        r["speedup_batch1"] = ref["ms_per_image_batch1"] / r["ms_per_image_batch1"]
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The results as a Markdown table."""
    head = ("| method | tokens | accuracy | MACs (M) | predicted speed-up | measured speed-up (batch 256) "
            "| measured speed-up (batch 1) | layout ms/img |\n|---|---|---|---|---|---|---|---|\n")
    lines = []
    for r in rows:
        tok = f"{r['tokens']:.1f}"
        if r.get("tokens_after_pruning") is not None:
            tok += f" -> {r['tokens_after_pruning']:.0f}"
        lines.append(f"| {r['method']} | {tok} | {r['accuracy']:.3f} | {r['macs_per_image'] / 1e6:.2f} | "
                     f"{r['predicted_speedup']:.2f}x | {r['speedup_batched']:.2f}x | {r['speedup_batch1']:.2f}x | "
                     f"{r['layout_ms_per_image']:.3f} |")
    return head + "\n".join(lines) + "\n"
