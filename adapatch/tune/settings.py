"""A tuned configuration as app settings (``adapatch.export``'s format): ``settings.json`` that
``layout_from_settings`` and the app load as they are.

The tuner computes layouts on the model's input frame, so the settings record ``image.resize`` =
the model's ``img_size`` square: ``layout_from_settings(resize_image(image, (S, S)), settings)``
gives the layout the tuner scored (for images larger than the frame ``resize_image`` and the model's
``resize_for_model`` are the same area interpolation; smaller ones are enlarged bilinearly by the
model, so pass the tuner's frame, ``adapatch.model.resize_for_model(image, model)``).
"""

from __future__ import annotations

from typing import Any

from ..export import SETTINGS_FORMAT, normalize_settings
from .evaluate import SELECTOR_SALIENCY, powers
from .search import Evaluated


def settings_for(e: Evaluated, model: str, img_size: int, patch: int, device: str = "auto",
                 source: str = "tuned set") -> dict[str, Any]:
    """Normalised settings that reproduce ``e``'s layouts on the model's frame."""
    f = e.config.family
    s: dict[str, Any] = {"format": SETTINGS_FORMAT, "image": {"source": source, "resize": [img_size, img_size]},
                         "device": device}
    if f.strategy == "quadtree":
        s.update(strategy="quadtree", params={"threshold": e.threshold, "min_size": f.min_size,
                                              "max_size": f.max_size, "importance": f.importance,
                                              "token_size": patch})
    elif f.strategy == "uniform":
        s.update(strategy="uniform", params={}, solve_budget=e.budget)
    elif f.strategy == "multiscale":
        s.update(strategy="multiscale", params={"scales": 1, "token_size": patch}, solve_budget=e.budget)
    elif f.strategy == "greedy":
        s.update(strategy="greedy", saliency={"method": SELECTOR_SALIENCY, "params": {}},
                 params={"patch_sizes": powers(*f.size_range()), "budget": e.budget, "token_size": patch})
    elif f.strategy == "learned_selector":
        s.update(strategy="learned_selector", params={"k": e.budget, "model": model})
    else:
        raise ValueError(f"no settings for strategy {f.strategy!r}")
    return normalize_settings(s)
