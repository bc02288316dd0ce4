"""From the app's settings to the ``adapatch.export`` settings dict each page computes with.

One function per page, so pages, tests and the exported snippet agree on what a view means.
"""

from __future__ import annotations

from typing import Any

from adapatch.export import MODEL_SCORERS, MODEL_STRATEGIES, PRUNE_SCORERS
from adapatch.strategies import STRATEGIES

from . import state
from .compute import saliency_spec

SIZE_OPTIONS = (2, 4, 8, 16, 32, 64, 128)
_SCORER_LABELS = {"mean": "saliency mean per token", "max": "saliency max per token",
                  "learned": "learned (model's TokenPruner)", "attention": "attention (EViT: CLS attention, rest fused)"}
SCORER_LABELS = {s: _SCORER_LABELS[s] for s in PRUNE_SCORERS}  # the export format's scorers, with labels
LAYOUT_STRATEGY_LABELS = {s: "selector" if s == "learned_selector" else s
                          for s in STRATEGIES + MODEL_STRATEGIES if s != "uniform"}
"""Strategies of the Patch layout page (the library's names; uniform is the baseline, on Compare)."""


def powers_between(min_size: int, max_size: int) -> list[int]:
    return [s for s in SIZE_OPTIONS if min_size <= s <= max_size]


def model_name() -> str:
    """The picked model as settings name it ("task", the checkpoint's file name or the timm name)."""
    from .model_source import current_ref
    return current_ref().name


def current_saliency() -> dict:
    """The saliency method and parameters chosen on the Saliency page (defaults filled in; the
    attention method names the picked model)."""
    method = state.get("saliency_method")
    spec = saliency_spec(method, state.get("saliency_params").get(method, {}))
    if method == "attention":
        spec["params"]["model"] = model_name()
    return spec


def layout_settings(strategy: str | None = None, importance: str | None = None, sizes=None,
                    threshold: float | None = None, budget: int | None | str = "setting", vit: str | None = None,
                    device: str | None = None) -> dict[str, Any]:
    """Settings of the Patch layout page (arguments override the stored settings)."""
    strategy = strategy or state.get("strategy")
    min_size, max_size = sizes or state.get("sizes")
    if budget == "setting":  # multiscale always has a budget
        budget = int(state.get("budget")) if state.get("use_budget") or strategy == "multiscale" else None
    if strategy == "quadtree":  # with a budget the threshold is not used: best-first until the budget is spent
        thr = None if budget is not None else float(state.get("threshold") if threshold is None else threshold)
        params = {"threshold": thr, "min_size": int(min_size), "max_size": int(max_size), "budget": budget,
                  "importance": importance or state.get("importance")}
    elif strategy == "greedy":
        params = {"patch_sizes": powers_between(min_size, max_size), "budget": budget, "uncovered": "fill",
                  "allocation": state.get("greedy_allocation")}
    elif strategy == "learned_selector":
        params = {"k": int(state.get("selector_k")), "model": model_name()}
    elif strategy == "multiscale":
        params = {"budget": int(budget)}
    else:
        params = {"patch_size": int(min_size)}
    return {"saliency": current_saliency(), "strategy": strategy, "params": params, "solve_budget": None,
            "prune": None, "vit": vit or state.get("vit"), "device": device or state.device()}


def budget_settings(config: dict, budget: int) -> dict[str, Any]:
    """Settings of one Compare column: the strategy's layout solved for ``budget`` tokens."""
    strategy = config["strategy"]
    min_size, max_size = config["sizes"]
    if strategy == "quadtree":
        params: dict[str, Any] = {"min_size": int(min_size), "max_size": int(max_size),
                                  "importance": config.get("importance", "distortion")}
    elif strategy == "greedy":
        params = {"patch_sizes": powers_between(min_size, max_size), "uncovered": "fill",
                  "allocation": config.get("allocation", "saliency")}
    else:  # uniform (the equal-token grid) and multiscale need only the budget
        params = {}
    return {"saliency": current_saliency(), "strategy": strategy, "params": params, "solve_budget": int(budget),
            "prune": None, "vit": state.get("vit"), "device": state.device()}


def prune_settings(keep_ratio: float | None = None, patch_size: int | None = None,
                   scorer: str | None = None) -> dict[str, Any]:
    """Settings of the Token pruning page: a uniform grid, scored per token, top fraction kept.

    Model scorers (learned, attention) name the picked model; pass its ``patch_size`` (they run on
    the model's own grid, on the image resized to the model's input).
    """
    scorer = scorer or state.get("prune_scorer")
    prune: dict[str, Any] = {"keep_ratio": float(state.get("keep_ratio") if keep_ratio is None else keep_ratio),
                             "scorer": scorer}
    if scorer in MODEL_SCORERS:
        prune["model"] = model_name()
    return {"saliency": current_saliency(), "strategy": "uniform",
            "params": {"patch_size": int(patch_size or state.get("prune_patch"))}, "solve_budget": None,
            "prune": prune, "vit": state.get("vit"), "device": state.device()}


def describe(settings: dict) -> str:
    """A short label of a settings dict, e.g. ``quadtree · std · 8-64 px``."""
    p = settings["params"]
    if settings["strategy"] == "quadtree":
        text = f"quadtree · {p.get('importance', 'std')} · {p.get('min_size')}-{p.get('max_size')} px"
    elif settings["strategy"] == "multiscale":
        text = "multiscale · best of scaled quadtrees and uniform"
    elif settings["strategy"] == "learned_selector":
        text = f"learned selector · top-{p.get('k')} cells · model input frame"
    elif settings["strategy"] == "greedy":
        sizes = p.get("patch_sizes") or []
        rule = "distortion" if p.get("allocation") == "distortion" else settings["saliency"]["method"]
        text = f"greedy · {rule} · {min(sizes)}-{max(sizes)} px" if sizes else "greedy"
    else:
        text = "uniform grid" + (f" · {p['patch_size']} px" if "patch_size" in p else "")
    if settings.get("prune"):
        text += f" · keep {settings['prune']['keep_ratio']:.0%}"
        scorer = settings["prune"].get("scorer", settings["prune"].get("reduce"))
        if scorer in MODEL_SCORERS:
            text += f" · {scorer} scorer · model input frame"
    return text
