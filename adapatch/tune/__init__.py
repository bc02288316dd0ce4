"""Tune for the task: search patch configurations against a model's own predictions and keep the
Pareto front of objective (accuracy, or label-free agreement with the full grid) against MACs.

``tune(images, model, labels=None, target_macs_ratio=0.4)`` returns a ``TuneResult``;
``settings_for`` turns a configuration into app settings; ``python -m adapatch tune`` is the command
line (``adapatch.tune.cli``). Needs torch (``adapatch.model``).
"""

from .search import Evaluated, TuneResult, choose, pareto_front, tune
from .settings import settings_for
from .space import DEFAULT_LEVELS, QUADTREE_IMPORTANCES, STRATEGIES, Config, Family, search_space

__all__ = [
           "DEFAULT_LEVELS",
           "QUADTREE_IMPORTANCES",
           "STRATEGIES",
           "Config",
           "Evaluated",
           "Family",
           "TuneResult",
           "choose",
           "pareto_front",
           "search_space",
           "settings_for",
           "tune",
]
