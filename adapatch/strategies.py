"""One entry point per strategy name, so settings (e.g. exported from the app) reproduce layouts.

``make_layout(image, "quadtree", threshold=0.2, ...)`` and ``layout_for_budget(image,
"greedy", 900, ...)`` dispatch to ``quadtree``, ``greedy`` or ``uniform``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .greedy import greedy
from .layout import PatchLayout, uniform
from .quadtree import quadtree, threshold_for_budget
from .validation import check_choice, check_int

STRATEGIES = ("quadtree", "greedy", "uniform")


def make_layout(image: np.ndarray, strategy: str = "quadtree", saliency: np.ndarray | str | None = None,
                **params: Any) -> PatchLayout:
    """Layout of ``image`` by ``strategy`` with that strategy's keyword ``params``."""
    check_choice("strategy", strategy, STRATEGIES)
    if strategy == "quadtree":
        return quadtree(image, saliency, **params)
    if strategy == "greedy":
        return greedy(image, saliency, **params)
    h, w = np.shape(image)[:2]
    return uniform(h, w, **params)


def layout_for_budget(image: np.ndarray, strategy: str, budget: int, saliency: np.ndarray | str | None = None,
                      **params: Any) -> PatchLayout:
    """The strategy's layout with at most ``budget`` tokens.

    quadtree: the threshold is solved for the budget (``threshold_for_budget``) and recorded in
    the layout's params; greedy: the budget is passed through; uniform: the finest power-of-two
    grid whose token count fits.
    """
    budget = check_int("budget", budget, 1)
    check_choice("strategy", strategy, STRATEGIES)
    if strategy == "quadtree":
        params.pop("threshold", None)
        params.pop("budget", None)
        t = threshold_for_budget(image, budget, saliency, **params)
        return quadtree(image, saliency, threshold=t, **params)
    if strategy == "greedy":
        params.pop("budget", None)
        return greedy(image, saliency, budget=budget, **params)
    h, w = np.shape(image)[:2]
    size = 1
    while uniform(h, w, size).num_tokens > budget and size < 1024:
        size *= 2
    return uniform(h, w, size)
