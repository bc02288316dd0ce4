"""The search: successive halving over configurations, the Pareto front of objective against MACs,
the choice under a target, and an honest re-score on images the search never saw.

Successive halving (Jamieson & Talwalkar 2016, as in Hyperband): every configuration is scored on a
small subset of the search images; per compute level the best third survive to a subset three times
larger, until the survivors are scored on the whole search split. A configuration's MACs are known
before any model call (they follow from its layouts), so only the objective is uncertain and
configurations compete within their compute level, never a cheap one against an expensive one. The
rung sizes are chosen so the forward passes (images through the model, references included) fit
``budget_evals``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..validation import check_float, check_int
from .evaluate import Evaluator, Scores
from .space import DEFAULT_LEVELS, QUADTREE_IMPORTANCES, STRATEGIES, Config, search_space

ETA = 3
"""Survivors per rung: one in ``ETA`` per compute level."""
MIN_RUNG_IMAGES = 16
DEFAULT_PASSES = 20
"""Default budget: forward passes per search image (raised to the least budget that can run)."""


@dataclass
class Evaluated:
    """One configuration scored on ``images`` images of a split."""

    config: Config
    images: int
    objective: float
    agreement: float
    kl: float
    accuracy: float | None
    macs_ratio: float
    mean_tokens: float
    threshold: float | None = None  # quadtree: the threshold solved for the level on the search split
    budget: int | None = None  # budget strategies: tokens per image
    rung: int = 0
    surrogate: float = 0.0  # what the rungs rank by: mean log p(label), or -KL without labels

    def to_dict(self) -> dict:
        return {"key": self.config.key, **self.config.to_dict(), "images": self.images, "objective": self.objective,
                "agreement": self.agreement, "kl": self.kl, "accuracy": self.accuracy,
                "macs_ratio": self.macs_ratio, "mean_tokens": self.mean_tokens, "threshold": self.threshold,
                "budget": self.budget, "rung": self.rung, "surrogate": self.surrogate}


@dataclass
class TuneResult:
    """What ``tune`` found (every field is JSON-able through ``to_dict``)."""

    objective: str  # "accuracy" or "agreement"
    evaluated: list[Evaluated]  # the last rung of each configuration, final rung first
    front: list[Evaluated]  # non-dominated on the search split, cheapest first
    chosen: Evaluated | None
    held_out: dict[str, Any]  # the chosen configuration and the full grid on the held-out split
    full_grid: dict[str, float]  # the full grid's objective on the search split
    target: dict[str, float | None]
    search_images: list[int]
    held_out_images: list[int]
    forwards: int  # the search's forward passes (references included; the held-out re-score apart)
    budget_evals: int
    rungs: list[dict]
    seconds: float = 0.0
    model_info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"objective": self.objective, "target": dict(self.target), "full_grid": dict(self.full_grid),
                "chosen": None if self.chosen is None else self.chosen.to_dict(),
                "held_out": dict(self.held_out), "front": [e.to_dict() for e in self.front],
                "evaluated": [e.to_dict() for e in self.evaluated], "search_images": list(self.search_images),
                "held_out_images": list(self.held_out_images), "forwards": self.forwards,
                "budget_evals": self.budget_evals, "rungs": list(self.rungs), "seconds": self.seconds,
                "model": dict(self.model_info)}


def pareto_front(objective: Sequence[float], cost: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (objective >= and cost <=, one strictly),
    cheapest first; of identical points the first is kept."""
    obj, c = np.asarray(objective, np.float64), np.asarray(cost, np.float64)
    order = np.lexsort((-obj, c))  # by cost, then best objective first
    out, best = [], -np.inf
    for i in order:
        if obj[i] > best:
            out.append(int(i))
            best = obj[i]
    return out


def _summary(config: Config, sc: Scores, labels: np.ndarray | None, ref_pred: np.ndarray, full_macs: float,
             threshold: float | None, budget: int | None, rung: int) -> Evaluated:
    agree = float((sc.predictions == ref_pred).mean())
    acc = None if labels is None else float((sc.predictions == labels).mean())
    kl = float(sc.kl.mean())
    surrogate = -kl if labels is None else float(sc.logp[np.arange(len(labels)), labels].mean())
    return Evaluated(config, len(sc.predictions), acc if acc is not None else agree, agree, kl, acc,
                     float(sc.macs.mean() / full_macs), float(sc.tokens.mean()), threshold, budget, rung, surrogate)


def rung_sizes(per_level: Sequence[int], n_search: int, budget_evals: int, eta: int = ETA) -> list[int]:
    """Images per rung, last = the whole search split, each ``eta`` times the one before, with the
    fewest rungs whose forward passes (``rung_cost``) fit ``budget_evals``; ``ValueError`` naming the
    least budget that works when even ``MIN_RUNG_IMAGES`` images in the first rung do not fit."""
    best = None
    for rungs in range(1, 16):
        sizes = [max(min(MIN_RUNG_IMAGES, n_search), math.ceil(n_search / eta ** (rungs - 1 - r)))
                 for r in range(rungs)]
        sizes[-1] = n_search
        cost = rung_cost(per_level, sizes, n_search)
        if cost <= budget_evals:
            return sizes
        best = cost if best is None else min(best, cost)
        if sizes[0] <= MIN_RUNG_IMAGES:
            break
    raise ValueError(f"budget_evals {budget_evals:,} cannot score {sum(per_level)} configurations on {n_search} "
                     f"search images: it needs at least {best:,} forward passes (or fewer strategies / levels)")


def least_budget(per_level: Sequence[int], n_search: int, eta: int = ETA) -> int:
    """The fewest forward passes any rung schedule needs (``MIN_RUNG_IMAGES`` in the first rung)."""
    costs = []
    for rungs in range(1, 16):
        sizes = [max(min(MIN_RUNG_IMAGES, n_search), math.ceil(n_search / eta ** (rungs - 1 - r)))
                 for r in range(rungs)]
        sizes[-1] = n_search
        costs.append(rung_cost(per_level, sizes, n_search))
        if sizes[0] <= MIN_RUNG_IMAGES:
            break
    return min(costs)


def rung_cost(per_level: Sequence[int], sizes: Sequence[int], n_search: int) -> int:
    """Forward passes of a search: every survivor on every rung's images, plus one full-grid reference
    per search image (per level, one in ``ETA`` configurations survives each rung)."""
    cost = n_search
    alive = list(per_level)
    for s in sizes:
        cost += sum(alive) * s
        alive = [max(1, math.ceil(k / ETA)) for k in alive]
    return cost


def smoothed(scored: Sequence[Evaluated]) -> dict[str, float]:
    """Each configuration's surrogate averaged with its family's at the neighbouring levels scored in
    the same rung (weights 1/4, 1/2, 1/4; renormalised at the ends): a family's curve is smooth in
    compute, so its neighbours are extra evidence on the same images."""
    by_family: dict[str, dict[float, float]] = {}
    for e in scored:
        by_family.setdefault(e.config.family.key, {})[e.config.level] = e.surrogate
    out = {}
    for e in scored:
        levels = sorted(by_family[e.config.family.key])
        i = levels.index(e.config.level)
        parts = [(0.5, levels[i])] + [(0.25, levels[j]) for j in (i - 1, i + 1) if 0 <= j < len(levels)]
        w = sum(p for p, _ in parts)
        out[e.config.key] = sum(p * by_family[e.config.family.key][v] for p, v in parts) / w
    return out


def survivors(scored: Sequence[Evaluated]) -> list[Config]:
    """Per level, the best ``1/ETA`` by the smoothed surrogate (a continuous, lower-variance stand-in
    for accuracy or agreement on a small rung: 0/1 outcomes on 16 images cannot rank 19 configs)."""
    sm = smoothed(scored)
    by_level: dict[float, list[Evaluated]] = {}
    for e in scored:
        by_level.setdefault(e.config.level, []).append(e)
    keep: list[Config] = []
    for group in by_level.values():
        group.sort(key=lambda e: (-sm[e.config.key], -e.objective, e.macs_ratio))
        keep += [e.config for e in group[:max(1, math.ceil(len(group) / ETA))]]
    return keep


def planned_steps(configs: Sequence[Config], rungs: int) -> int:
    """Configurations scored over all rungs (per level, one in ``ETA`` survives each rung)."""
    alive = list(_per_level(configs).values())
    total = 0
    for _ in range(rungs):
        total += sum(alive)
        alive = [max(1, math.ceil(k / ETA)) for k in alive]
    return total


def _per_level(configs: Sequence[Config]) -> dict[float, int]:
    out: dict[float, int] = {}
    for c in configs:
        out[c.level] = out.get(c.level, 0) + 1
    return out


def tune(images: Sequence[np.ndarray] | np.ndarray, model: Any, labels: Sequence[int] | np.ndarray | None = None, *,
         target_macs_ratio: float | None = None, max_drop: float | None = None, budget_evals: int | None = None,
         held_out: float = 0.3, seed: int = 0, strategies: Sequence[str] = STRATEGIES,
         importances: Sequence[str] = QUADTREE_IMPORTANCES, levels: Sequence[float] = DEFAULT_LEVELS,
         device: str = "auto", batch_size: int = 128,
         progress: Callable[[int, int, str], None] | None = None) -> TuneResult:
    """Search layout configurations against ``model``'s own predictions (see the module docs).

    ``images``: RGB arrays (any size; resized to the model's input, ``resize_for_model``).
    ``labels``: class indices per image (objective: accuracy); None: label-free (objective: top-1
    agreement with the model's full grid). ``target_macs_ratio``: choose the best front point at most
    this MACs share of the full grid; ``max_drop``: choose the cheapest front point within this much
    objective of the full grid's; neither: ``target_macs_ratio=0.4``. ``held_out``: the share of the
    images (a seeded split) the search never sees, where the chosen configuration is re-scored.
    ``budget_evals``: forward passes the search may spend (default: ``DEFAULT_PASSES`` per search
    image, at least ``least_budget``). ``progress(done, total, what)`` is called after each scored configuration.
    """
    from ..model.task import resize_for_model
    t0 = time.perf_counter()
    if target_macs_ratio is not None and max_drop is not None:
        raise ValueError("give target_macs_ratio or max_drop, not both")
    if target_macs_ratio is None and max_drop is None:
        target_macs_ratio = 0.4
    if target_macs_ratio is not None:
        target_macs_ratio = check_float("target_macs_ratio", target_macs_ratio, 0.0, 1.0)
    if max_drop is not None:
        max_drop = check_float("max_drop", max_drop, 0.0, 1.0)
    held_out = check_float("held_out", held_out, 0.0, 0.9)
    n = len(images)
    if n < 2:
        raise ValueError("tune needs at least 2 images (a search split and a held-out split)")
    y = None if labels is None else np.asarray(labels, np.int64)
    if y is not None and len(y) != n:
        raise ValueError(f"labels must have one class per image ({n}), got {len(y)}")
    frames = np.stack([resize_for_model(np.asarray(im, np.float32), model) for im in images])
    ev = Evaluator(model, frames, device, batch_size)
    if y is not None and (y.min() < 0 or y.max() >= ev.cfg.num_classes):
        raise ValueError(f"labels must be class indices in [0, {ev.cfg.num_classes}), got {y.min()}..{y.max()}")
    perm = np.random.default_rng(seed).permutation(n)
    n_hold = min(n - 1, max(1, int(round(held_out * n)))) if held_out > 0 else 0
    hold, search = np.sort(perm[:n_hold]), np.sort(perm[n_hold:])
    configs = search_space(ev.patch, ev.side, ev.has_selector, strategies, importances, levels)
    if not configs:
        raise ValueError("the search space is empty (no strategy this model can run)")
    per_level = list(_per_level(configs).values())
    if budget_evals is None:
        budget_evals = max(DEFAULT_PASSES * len(search), least_budget(per_level, len(search)))
    budget_evals = check_int("budget_evals", budget_evals, 1)
    sizes = rung_sizes(per_level, len(search), budget_evals)
    order = np.random.default_rng(seed + 1).permutation(search)  # rung subsets: nested prefixes
    ref_pred_all = {}
    alive = list(configs)
    last: dict[str, Evaluated] = {}
    rungs_info = []
    total_steps = planned_steps(configs, len(sizes))
    steps_done = 0
    for r, size in enumerate(sizes):
        idx = np.sort(order[:size])
        ref = ev.reference(idx).argmax(1)
        ref_pred_all.update({int(i): int(p) for i, p in zip(idx, ref)})
        scored: list[Evaluated] = []
        for c in alive:
            threshold = ev.solve_threshold(c, search) if c.family.strategy == "quadtree" else None
            budget = None if c.family.strategy == "quadtree" else ev.budget(c)
            sc = ev.score(c, idx, threshold)
            e = _summary(c, sc, None if y is None else y[idx], ref, ev.full_macs, threshold, budget, r)
            scored.append(e)
            last[c.key] = e
            steps_done += 1
            if progress is not None:
                progress(steps_done, max(steps_done, total_steps), c.key)
        rungs_info.append({"rung": r, "images": int(size), "configs": len(alive)})
        if r == len(sizes) - 1:
            break
        alive = survivors(scored)
    final = [last[c.key] for c in alive]
    rest = sorted((e for k, e in last.items() if e.rung < len(sizes) - 1), key=lambda e: (-e.rung, e.config.key))
    evaluated = sorted(final, key=lambda e: (e.macs_ratio, -e.objective)) + rest
    front = [final[i] for i in pareto_front([e.objective for e in final], [e.macs_ratio for e in final])]
    full_ref = ev.reference(search)
    full_obj = float((full_ref.argmax(1) == y[search]).mean()) if y is not None else 1.0
    chosen = choose(front, full_obj, target_macs_ratio, max_drop)
    search_forwards = ev.forwards
    held: dict[str, Any] = {"images": len(hold)}
    if chosen is not None and len(hold):
        sc = ev.score(chosen.config, hold, chosen.threshold)
        href = ev.reference(hold).argmax(1)
        e = _summary(chosen.config, sc, None if y is None else y[hold], href, ev.full_macs, chosen.threshold,
                     chosen.budget, len(sizes))
        held["chosen"] = e.to_dict()
        held["full_grid"] = {"objective": float((href == y[hold]).mean()) if y is not None else 1.0,
                             "macs_ratio": 1.0, "mean_tokens": float(ev.total)}
        held["forwards"] = ev.forwards - search_forwards
    return TuneResult("accuracy" if y is not None else "agreement", evaluated, front, chosen, held,
                      {"objective": full_obj, "macs_ratio": 1.0, "mean_tokens": float(ev.total)},
                      {"macs_ratio": target_macs_ratio, "max_drop": max_drop},
                      [int(i) for i in search], [int(i) for i in hold], search_forwards, budget_evals, rungs_info,
                      time.perf_counter() - t0,
                      {"img_size": ev.side, "patch_size": ev.patch, "grid_tokens": ev.total,
                       "full_macs": int(ev.full_macs), "selector_macs": ev.selector_macs,
                       "device": str(ev.device)})


def choose(front: Sequence[Evaluated], full_objective: float, target_macs_ratio: float | None,
           max_drop: float | None) -> Evaluated | None:
    """The front point meeting the target: the best objective at most ``target_macs_ratio`` MACs, or
    the cheapest within ``max_drop`` of the full grid's objective; None when no point meets it."""
    if target_macs_ratio is not None:
        ok = [e for e in front if e.macs_ratio <= target_macs_ratio + 1e-12]
        return max(ok, key=lambda e: (e.objective, -e.macs_ratio)) if ok else None
    if max_drop is None:
        raise ValueError("give target_macs_ratio or max_drop")
    ok = [e for e in front if e.objective >= full_objective - max_drop - 1e-12]
    return min(ok, key=lambda e: (e.macs_ratio, -e.objective)) if ok else None
