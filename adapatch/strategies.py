"""One entry point per strategy name, so settings (e.g. exported from the app) reproduce layouts.

``make_layout(image, "quadtree", threshold=0.2, ...)`` and ``layout_for_budget(image,
"greedy", 900, ...)`` dispatch to ``quadtree``, ``greedy``, ``uniform`` or ``multiscale``.

Query-aware patching (``query=``, ``query_weight=``; ``adapatch.query``): quadtree, greedy and
multiscale mix the query into their importance (multiscale also weighs its candidates' errors by
it). The uniform grid is the query-blind baseline: it accepts a query and ignores it (the weight is
still checked).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .greedy import greedy
from .layout import PatchLayout, uniform, uniform_for_budget
from .multiscale import FAST_SCALES, multiscale
from .quadtree import quadtree
from .query import check_query_weight
from .validation import check_choice, check_int

STRATEGIES = ("quadtree", "greedy", "uniform", "multiscale")
BUDGET_DEFAULT: dict[str, Any] = {"strategy": "multiscale", "scales": FAST_SCALES}
"""The layout a budget gets when no strategy is named (the CLI, ``default_layout``): the better of the
``distortion`` quadtree and the equal-token uniform grid by exact error, so it never keeps less than
the uniform grid (the quadtree alone loses to it on textures, text and flat-ish photos)."""


def make_layout(image: np.ndarray, strategy: str = "quadtree", saliency: np.ndarray | str | None = None,
                **params: Any) -> PatchLayout:
    """Layout of ``image`` by ``strategy`` with that strategy's keyword ``params``."""
    check_choice("strategy", strategy, STRATEGIES)
    if strategy == "quadtree":
        return quadtree(image, saliency, **params)
    if strategy == "greedy":
        return greedy(image, saliency, **params)
    if strategy == "multiscale":
        if params.get("threshold") is not None and params.get("budget") is None:
            return multiscale_at_threshold(image, **params)
        params.pop("threshold", None)
        return multiscale(image, **params)
    _drop_query(params)
    h, w = np.shape(image)[:2]
    return uniform(h, w, **params)


def multiscale_at_threshold(image: np.ndarray, threshold: float, *, levels: int = 2, token_size: int = 16,
                            scales: int | None = None, query: Any = None, query_weight: float = 0.0,
                            budget: None = None, source: Any = None) -> PatchLayout:
    """``multiscale``'s threshold mode: at ``threshold`` = lambda (the error a token must remove,
    ``quadtree_engine.LAMBDA_UNIT``) the layout of least ``error + lambda * tokens`` among the
    ``distortion`` quadtree's Lagrangian layouts and uniform grids of a ladder of sizes
    (``rd_hull``). ``scales`` and ``source`` belong to budget mode and are ignored; a query is not
    supported here yet (its weight must be 0)."""
    from .rd_hull import rd_hull

    if check_query_weight(query_weight) > 0 and query is not None:
        raise ValueError("multiscale's threshold mode does not take a query yet: use a budget, or the quadtree")
    return rd_hull(image, levels=levels, token_size=token_size).layout(threshold)


def _drop_query(params: dict[str, Any]) -> None:
    """Remove ``query``/``query_weight`` from the uniform grid's params: it is the query-blind
    baseline and ignores a query (the weight is still checked)."""
    params.pop("query", None)
    check_query_weight(params.pop("query_weight", 0.0))


def default_layout(image: np.ndarray, budget: int, **params: Any) -> PatchLayout:
    """The budget-mode default (``BUDGET_DEFAULT``) at ``budget`` tokens; ``params`` override it."""
    opts = {k: v for k, v in BUDGET_DEFAULT.items() if k != "strategy"}
    return layout_for_budget(image, BUDGET_DEFAULT["strategy"], budget, **{**opts, **params})


def layout_for_budget(image: np.ndarray, strategy: str, budget: int, saliency: np.ndarray | str | None = None,
                      **params: Any) -> PatchLayout:
    """The strategy's layout for ``budget`` tokens: the equal-token comparison of strategies.

    quadtree, greedy and multiscale: budget mode (``num_tokens <= budget``; the quadtree's default
    importance there is ``"distortion"``); uniform: the grid of square patches of any integer size whose
    token count is the closest to ``budget`` (``uniform_for_budget``; within 5% of it whenever
    some grid is), not a coarser power-of-two grid with far fewer tokens. ``query``/``query_weight``
    (in ``params``) go to quadtree, greedy and multiscale; uniform ignores them (module docstring).
    """
    budget = check_int("budget", budget, 1)
    check_choice("strategy", strategy, STRATEGIES)
    params.pop("budget", None)
    if strategy == "quadtree":
        params.pop("threshold", None)
        return quadtree(image, saliency, budget=budget, **params)
    if strategy == "greedy":
        return greedy(image, saliency, budget=budget, **params)
    if strategy == "multiscale":
        return multiscale(image, budget, **params)
    _drop_query(params)
    h, w = np.shape(image)[:2]
    return uniform_for_budget(h, w, budget)
