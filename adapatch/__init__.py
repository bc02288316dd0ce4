"""adapatch: content-aware (adaptive) patching of images for Vision Transformers.

Saliency maps, variable-size patch layouts (quadtree, saliency-greedy), patch extraction and
reconstruction, token pruning, efficiency (tokens, FLOPs) and fidelity (PSNR, SSIM) numbers,
and renderings of all of them. Model-side pieces (ViT, attention, learned pruning and patch
selection) live in ``adapatch.model``.
"""

from typing import TYPE_CHECKING

from . import (
    model_plugins,  # noqa: F401  (first: it fills adapatch.plugins before any layer is imported)
    render,
)
from .budgets import RelativeBudget, relative_budget
from .efficiency import VIT_PRESETS, ViTPreset, efficiency, vit_flops
from .errors import ImageError
from .fidelity import fidelity, psnr_ssim
from .greedy import greedy
from .image_io import DEFAULT_MAX_PIXELS, LoadedImage, load_image, open_image
from .importance import IMPORTANCE_MEASURES
from .layout import PatchLayout, uniform, uniform_for_budget
from .multiscale import multiscale
from .pruning import keep_count, prune, token_scores
from .quadtree import (
    PathImportance,
    ThresholdCurve,
    path_importance,
    quadtree,
    quadtree_batch,
    threshold_curve,
    threshold_for_budget,
)
from .query import Query, query_map
from .rd_hull import RDHull, rd_hull
from .report import EfficiencySummary, efficiency_rows, efficiency_summary, mean_speedups
from .resize import WORK_MAX_PIXELS, downscale_to_pixels, fit_size, resize_image, to_working_size, work_size
from .saliency import register_saliency, saliency, saliency_methods
from .strategies import BUDGET_DEFAULT, STRATEGIES, default_layout, layout_for_budget, make_layout

__all__ = [
    "BUDGET_DEFAULT",
    "DEFAULT_MAX_PIXELS",
    "IMPORTANCE_MEASURES",
    "STRATEGIES",
    "VIT_PRESETS",
    "WORK_MAX_PIXELS",
    "EfficiencySummary",
    "ImageError",
    "LoadedImage",
    "PatchLayout",
    "PathImportance",
    "Query",
    "RDHull",
    "RelativeBudget",
    "ThresholdCurve",
    "ViTPreset",
    "available_devices",
    "default_layout",
    "downscale_to_pixels",
    "efficiency",
    "efficiency_rows",
    "efficiency_summary",
    "extract_patches",
    "fidelity",
    "fit_size",
    "greedy",
    "keep_count",
    "layout_for_budget",
    "load_image",
    "make_layout",
    "mean_speedups",
    "multiscale",
    "open_image",
    "path_importance",
    "prune",
    "psnr_ssim",
    "quadtree",
    "quadtree_batch",
    "query_map",
    "rd_hull",
    "reconstruct",
    "register_saliency",
    "relative_budget",
    "render",
    "resize_image",
    "resolve_device",
    "saliency",
    "saliency_methods",
    "threshold_curve",
    "threshold_for_budget",
    "to_working_size",
    "token_scores",
    "uniform",
    "uniform_for_budget",
    "vit_flops",
    "work_size",
]
__version__ = "0.1.0"

# Names whose modules import torch: loaded on first use, so ``import adapatch`` (the CLI, the app's
# first paint, layout-only users) does not pay for torch.
_LAZY = {"available_devices": "device", "resolve_device": "device",
         "extract_patches": "patches", "reconstruct": "patches"}

if TYPE_CHECKING:
    from .device import available_devices, resolve_device
    from .patches import extract_patches, reconstruct


def __getattr__(name: str):
    if name in _LAZY:
        import importlib
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
