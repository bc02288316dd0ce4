"""Query-aware patching on two cluttered digits: does a query steer the model?

The bundled single-digit task model reads the whole two-digit canvas of ``two_digits`` (the query
names a side; the label is that side's digit), unchanged: the token layout is the only thing that
differs between rows, at equal tokens (``budgets``, 16 and 28, quadtree 8-32 px). Rows:

* **full grid**: uniform 8 px, 64 tokens (the model sees both digits at full detail);
* **query-blind quadtree**: ``std`` importance (what the model was trained on, and the content
  part of every query row below, so the comparison isolates the query) and the library's default
  budget-mode importance ``distortion`` (``token_size`` 8, the model's patch);
* **region query, side**: ``query_map(image, box=<queried half>, falloff=0)`` mixed into ``std`` by
  ``ap.quadtree(..., query=q, query_weight=w)`` for each of ``weights``. This is the task's own
  query ("the left digit"): it says where, not what, so within the half the content decides;
* **region query, box**: the same with the queried digit's pasted 24 px box (default falloff):
  the query a person draws around the digit they mean;
* **class query**: ``query_map(image, model=task, target=k)`` (gradient x attention class evidence,
  ``adapatch.model.query_maps``; batched here by ``class_maps``, checked equal to the library call)
  mixed at each of ``class_weights``. The class is what the question asks
  for, so it is unknown at test time. The honest row queries ``k`` = the class the model predicts
  from the side-query layout at the same budget (first of ``weights``): a two-pass protocol whose
  class map costs one full-grid forward and backward (64 tokens) on top of the final pass's
  tokens. The **oracle** row queries the true class and is labelled as such: it measures what the
  class map can do, not an achievable accuracy.

Measures per row: accuracy (prediction = the queried digit), ``other_digit`` (prediction = the
other digit: the model read the wrong one), tokens, and **token precision**: over the split, the
share of the *finest* tokens (each layout's smallest token size) whose centre lies in the queried
digit's ground-truth ink box; ``precision_other`` is the same for the other digit, and
``fine8_on_query`` the mean number of 8 px tokens on the queried digit. Class-query rows also
say where their map is: its mean over each digit's ink box and how often it is higher on the
queried digit (``map_prefers_query``).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..layout import PatchLayout, uniform
from ..model.task import TaskModel
from ..quadtree import quadtree_batch
from ..query import query_map
from .cluttered_digits import to_rgb
from .train import QT_MAX, QT_MIN, batch_tensor

BUDGETS = (16, 28)
WEIGHTS = (0.5, 1.0)


def predict(task: TaskModel, x: np.ndarray, layouts: list[PatchLayout], batch_size: int = 256) -> np.ndarray:
    """Predicted classes of grey images ``x`` ``[n, H, W]`` through per-image ``layouts``.

    Batches are cut by token count (equal counts share a batch), so no padding changes a result."""
    vit = task.vit
    dev = next(vit.parameters()).device
    counts = np.array([lay.num_tokens for lay in layouts])
    out = np.zeros(len(x), np.int64)
    with torch.inference_mode():
        for c in np.unique(counts):
            idx = np.flatnonzero(counts == c)
            for i in range(0, len(idx), batch_size):
                b = idx[i:i + batch_size]
                tb = vit.tokenize(batch_tensor(vit, x[b], dev), [layouts[j] for j in b])
                out[b] = vit.forward_tokens(tb).argmax(1).cpu().numpy()
    return out


def _centres_in(boxes: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Bool per box ``(y, x, size)``: its centre lies in ``region`` ``(y0, x0, y1, x1)`` (end-exclusive)."""
    cy = boxes[:, 0] + boxes[:, 2] / 2.0
    cx = boxes[:, 1] + boxes[:, 2] / 2.0
    return (cy >= region[0]) & (cy < region[2]) & (cx >= region[1]) & (cx < region[3])


def token_precision(layouts: list[PatchLayout], target: np.ndarray, other: np.ndarray | None = None) -> dict:
    """Token precision of ``layouts`` against ground-truth boxes ``target`` ``[n, 4]`` (and ``other``).

    ``precision``: sum over images of the finest tokens (the layout's smallest size) whose centre
    is in the target box, over the sum of finest tokens; ``precision_other`` the same for
    ``other``; ``fine8_on_query``: mean 8 px tokens on the target; ``finest_sizes``: how many
    layouts have each finest size.
    """
    on_t = on_o = total = fine8 = 0
    sizes: dict[str, int] = {}
    for i, lay in enumerate(layouts):
        b = np.asarray(lay.boxes, np.int64)
        m = int(b[:, 2].min())
        sizes[str(m)] = sizes.get(str(m), 0) + 1
        fin = b[b[:, 2] == m]
        total += len(fin)
        on_t += int(_centres_in(fin, target[i]).sum())
        if other is not None:
            on_o += int(_centres_in(fin, other[i]).sum())
        f8 = b[b[:, 2] == QT_MIN]
        fine8 += int(_centres_in(f8, target[i]).sum())
    out = {"precision": on_t / total, "fine8_on_query": fine8 / len(layouts),
           "finest_sizes": dict(sorted(sizes.items(), key=lambda kv: int(kv[0])))}
    if other is not None:
        out["precision_other"] = on_o / total
    return out


def _mean_over(maps: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per image, the mean of ``maps[i]`` over ``boxes[i]`` ``(y0, x0, y1, x1)``."""
    return np.array([m[b[0]:b[2], b[1]:b[3]].mean() for m, b in zip(maps, boxes)])


def _region_maps(data: dict, key: str, falloff: float | None) -> np.ndarray:
    h, w = data["x"].shape[1:]
    shape = np.zeros((h, w, 3), np.float32)  # region maps read only the image's shape
    return np.stack([query_map(shape, box=tuple(int(v) for v in b), falloff=falloff) for b in data[key]])


def class_maps(task: TaskModel, x: np.ndarray, targets: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Float32 ``[n, H, W]``: ``query_map(to_rgb(x[i]), model=task, target=targets[i])`` for every
    image, batched (one forward and backward per batch instead of per image: 2-core minutes).

    The same rule as ``adapatch.model.query_maps.class_evidence_map`` (``"gradattn"``): per block
    ``mean_heads(relu(dA * A))`` with ``dA`` the gradient of the target logit, ``R <- R + A_bar @ R``,
    the class token's row over the patch tokens, upsampled bilinearly (cv2) and min-max normalised.
    Images do not interact in a ViT, so the gradient of the sum of each image's target logit is
    each image's own gradient. ``check_class_maps`` compares it with the library call."""
    import cv2

    vit = task.vit
    dev = next(vit.parameters()).device
    g, npt = vit.config.grid_size, vit.num_prefix_tokens
    n, h, w = x.shape
    out = np.zeros((n, h, w), np.float32)
    if vit.config.img_size != h or vit.config.img_size != w:
        raise ValueError(f"images must be {vit.config.img_size} px squares for this model, got {h}x{w}")
    was_training = vit.training
    vit.eval()
    try:
        with torch.inference_mode(False), torch.enable_grad():
            rope = vit.rope_fixed(dev)
            for i in range(0, n, batch_size):
                b = slice(i, min(n, i + batch_size))
                with torch.no_grad():
                    tokens = vit.embed_fixed(batch_tensor(vit, np.ascontiguousarray(x[b]), dev))
                tokens = tokens.detach().requires_grad_(True)
                feats, attns = vit.forward_features(tokens, return_attn=True, rope=rope)
                logits = vit.forward_head(feats)
                k = torch.as_tensor(np.asarray(targets[b]), dtype=torch.long, device=dev)
                grads = torch.autograd.grad(logits.gather(1, k[:, None]).sum(), attns)
                t = attns[0].shape[-1]
                r = torch.eye(t, device=dev, dtype=torch.float32).expand(len(k), t, t)
                for a, da in zip(attns, grads):
                    r = r + (da.float() * a.detach().float()).clamp(min=0).mean(dim=1) @ r
                cam = (r[:, 0, npt:] if vit.cls_token is not None else r[:, npt:, npt:].mean(dim=1))
                cams = cam.reshape(-1, g, g).detach().cpu().numpy().astype(np.float32)
                for j, c in enumerate(cams):
                    up = cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR)
                    lo, hi = float(up.min()), float(up.max())
                    out[i + j] = (up - lo) / (hi - lo) if hi > lo else 0.0
    finally:
        vit.train(was_training)
    return out


def check_class_maps(task: TaskModel, x: np.ndarray, targets: np.ndarray, maps: np.ndarray) -> float:
    """Largest absolute difference between ``maps`` (``class_maps``) and the library's
    ``adapatch.query_map(image, model=task, target=k)`` on the images ``x``."""
    dev = next(task.vit.parameters()).device
    ref = np.stack([query_map(to_rgb(im), model=task, target=int(k), device=dev) for im, k in zip(x, targets)])
    return float(np.abs(ref - maps).max())


def evaluate_query(task: TaskModel, data: dict, budgets: tuple[int, ...] = BUDGETS,
                   weights: tuple[float, ...] = WEIGHTS, class_weights: tuple[float, ...] = WEIGHTS,
                   class_query: bool = True, batch_size: int = 256) -> list[dict]:
    """The rows (module docstring) on the two-digit split ``data`` (``make_two_digits``)."""
    ps = task.vit.config.patch_size
    x, y, y_other = data["x"], data["y"], data["y_other"]
    n, (h, w) = len(x), x.shape[1:]
    rgb = to_rgb(x)
    rows: list[dict] = []

    def add(method: str, kind: str, layouts: list[PatchLayout], layout_s: float, **extra: Any) -> np.ndarray:
        pred = predict(task, x, layouts, batch_size)
        tokens = np.array([lay.num_tokens for lay in layouts])
        rows.append({"method": method, "kind": kind, **extra, "tokens": float(tokens.mean()),
                     "tokens_max": int(tokens.max()), "accuracy": float((pred == y).mean()),
                     "other_digit": float((pred == y_other).mean()),
                     **token_precision(layouts, data["query_ink"], data["other_ink"]),
                     "layout_ms_per_image": layout_s * 1e3 / n})
        return pred

    add(f"full grid ({ps} px)", "full", [uniform(h, w, ps)] * n, 0.0, budget=None)
    side_maps = _region_maps(data, "half", 0.0)
    oracle_maps, oracle_s = None, 0.0
    box_maps = _region_maps(data, "query_box", None)

    def qt(budget: int, importance: str = "std", query: np.ndarray | None = None, weight: float = 0.0):
        t0 = time.perf_counter()
        lays: list[PatchLayout] = []
        for i in range(0, n, 512):
            q = None if query is None else query[i:i + 512]
            lays += quadtree_batch(rgb[i:i + 512], min_size=QT_MIN, max_size=QT_MAX, budget=budget,
                                   importance=importance, token_size=ps, query=q, query_weight=weight)
        return lays, time.perf_counter() - t0

    for budget in budgets:
        lays, s = qt(budget)
        add(f"query-blind quadtree (std), budget {budget}", "blind", lays, s, budget=budget, importance="std",
            query=None, query_weight=0.0)
        lays, s = qt(budget, "distortion")
        add(f"query-blind quadtree (distortion, library default), budget {budget}", "blind", lays, s,
            budget=budget, importance="distortion", query=None, query_weight=0.0)
        side_pred = None
        for name, maps, desc in (("side", side_maps, "queried half, falloff 0"),
                                 ("box", box_maps, "queried digit's 24 px box, default falloff")):
            for wt in weights:
                lays, s = qt(budget, "std", maps, wt)
                pred = add(f"region query ({name}) quadtree, w={wt:g}, budget {budget}", f"region_{name}", lays, s,
                           budget=budget, importance="std", query=desc, query_weight=wt)
                if name == "side" and side_pred is None:
                    side_pred, side_w = pred, wt
        if not class_query:
            continue
        if oracle_maps is None:
            t0 = time.perf_counter()
            oracle_maps = class_maps(task, x, y)
            oracle_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pred_maps = oracle_maps.copy()  # the oracle's map wherever the predicted class is the true one
        assert side_pred is not None  # set by the side query above
        wrong = np.flatnonzero(side_pred != y)
        if len(wrong):
            pred_maps[wrong] = class_maps(task, x[wrong], side_pred[wrong])
        pred_s = time.perf_counter() - t0 + oracle_s  # as if computed on their own
        for label, kind, maps, map_s, targets, desc in (
                (f"class query (class predicted by the side query, w={side_w:g}) quadtree", "class", pred_maps, pred_s,
                 side_pred, (f"class evidence for the class the side-query row (w={side_w:g}) predicts; its map "
                 "costs a full-grid forward + backward")),
                ("class query ORACLE (true class) quadtree", "class_oracle", oracle_maps, oracle_s, y,
                 "class evidence for the true class (oracle)")):
            on_q, on_o = _mean_over(maps, data["query_ink"]), _mean_over(maps, data["other_ink"])
            where = {"map_mean_on_query": float(on_q.mean()), "map_mean_on_other": float(on_o.mean()),
                     "map_prefers_query": float((on_q > on_o).mean())}
            for wt in class_weights:
                lays, s = qt(budget, "std", maps, wt)
                add(f"{label}, w={wt:g}, budget {budget}", kind, lays, s + map_s, budget=budget, importance="std",
                    query=desc, query_weight=wt, target_accuracy=float((targets == y).mean()), **where)
    return rows


def _base_name(method: str) -> str:
    return method.rsplit(", budget ", 1)[0]


def markdown_table(rows: list[dict]) -> str:
    """The rows as a Markdown table, one row per method and budget."""
    head = ("| method | tokens | accuracy | reads the other digit | token precision (queried) "
            "| token precision (other) | 8 px tokens on queried digit |\n|---|---|---|---|---|---|---|\n")
    lines = [f"| {r['method']} | {r['tokens']:.1f} | {r['accuracy']:.3f} | {r['other_digit']:.3f} | "
             f"{r['precision']:.3f} | {r['precision_other']:.3f} | {r['fine8_on_query']:.2f} |" for r in rows]
    return head + "\n".join(lines) + "\n"


def compact_table(rows: list[dict], budgets: tuple[int, ...] = BUDGETS) -> str:
    """The rows as a Markdown table with one row per method and, per budget, accuracy / reads the
    other digit / token precision (the full grid, 64 tokens, repeats its values under each budget)."""
    order: list[str] = []
    by: dict[tuple[str, Any], dict] = {}
    for r in rows:
        name = _base_name(r["method"]) if r["budget"] is not None else r["method"] + ", 64 tokens"
        if name not in order:
            order.append(name)
        by[(name, r["budget"])] = r
    head = "| method | " + " | ".join(f"acc. {b} | other {b} | precision {b}" for b in budgets) + " |\n"
    head += "|---|" + "---|---|---|" * len(budgets) + "\n"
    lines = []
    for name in order:
        cells = []
        for b in budgets:
            row = by.get((name, b)) or by.get((name, None))
            cells.append("| | |" if row is None
                         else f"{row['accuracy']:.3f} | {row['other_digit']:.3f} | {row['precision']:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def environment(device: torch.device, threads: int) -> dict:
    return {"torch": torch.__version__, "numpy": np.__version__, "device": str(device), "threads": threads,
            "python": platform.python_version(), "machine": platform.machine()}


DEFINITIONS = {
    "accuracy": "prediction = the queried digit's class (the label)",
    "other_digit": "prediction = the other digit's class (the two digits always differ): the model read the wrong one",
    "precision": "over the split: finest tokens (each layout's smallest token size) whose centre lies in the queried "
                 "digit's ground-truth ink box / all finest tokens",
    "precision_other": "the same for the other digit's ink box",
    "fine8_on_query": "mean number of 8 px tokens whose centre lies in the queried digit's ink box",
    "finest_sizes": "how many layouts have each finest token size",
    "layout_ms_per_image": "layout construction; class-query rows include computing the class maps (batched)",
    "target_accuracy": "class-query rows: share of images whose queried class is the true one (1 for the oracle)",
    "map_mean_on_query / map_mean_on_other": "class-query rows: mean of the class map over the queried / other "
                                             "digit's ink box, averaged over images",
    "map_prefers_query": "class-query rows: share of images whose class map is higher on the queried digit's ink box "
                         "than on the other's",
}


def run_query_experiment(model_dir: str | Path | None = None, out: str | Path | None = None, n: int = 2000,
                         seed: int = 14, device: str | torch.device = "auto", threads: int = 2, command: str = "",
                         class_query: bool = True, n_check: int = 4) -> dict:
    """Load the task model in ``model_dir`` (default: the bundled one), build ``n`` two-digit canvases
    (``seed``), evaluate every row and write ``query_results.json`` (rows, definitions, dataset,
    class-map check, command, seconds, environment) and ``query_results.md`` in ``out`` (default:
    ``model_dir``). ``n_check`` images check ``class_maps`` against the library's ``query_map``."""
    from ..device import resolve_device
    from ..model.task import ASSET_DIR, load_task_model
    from .two_digits import TwoDigitConfig, make_two_digits

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)
    dev = resolve_device(device)
    t_start = time.perf_counter()
    model_dir = Path(model_dir) if model_dir is not None else ASSET_DIR
    out = Path(out) if out is not None else model_dir
    task, cfg = load_task_model(model_dir, dev)
    tcfg = TwoDigitConfig.from_dataset(cfg["dataset"], n=n, seed=seed)
    data = make_two_digits(tcfg)
    rows = evaluate_query(task, data, class_query=class_query)
    check = None
    if class_query and n_check > 0:
        k = min(n_check, n)
        check = {"n": k, "max_abs_diff": check_class_maps(task, data["x"][:k], data["y"][:k],
                                                          class_maps(task, data["x"][:k], data["y"][:k]))}
    seconds = time.perf_counter() - t_start
    results = {
        "command": command, "seconds": seconds, "n": n, "dataset": tcfg.to_dict(),
        "model": "bundled (adapatch/assets/model)" if model_dir.resolve() == ASSET_DIR.resolve() else str(model_dir),
        "budgets": list(BUDGETS), "weights": list(WEIGHTS), "quadtree": {"min_size": QT_MIN, "max_size": QT_MAX},
        "definitions": DEFINITIONS, "class_map_check": check, "rows": rows, "environment": environment(dev, threads),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "query_results.json").write_text(json.dumps(results, indent=2))
    (out / "query_results.md").write_text(markdown_table(rows) + "\n" + compact_table(rows))
    return results


__all__ = ["BUDGETS", "DEFINITIONS", "WEIGHTS", "check_class_maps", "class_maps", "compact_table", "evaluate_query",
           "markdown_table", "predict", "run_query_experiment", "token_precision"]
