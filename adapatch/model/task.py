"""The bundled task model (ViT + token pruner + patch selector) and image preparation.

``adapatch/assets/model`` (package data) holds what ``python -m adapatch.experiments`` trained on cluttered digits:
``task_vit.safetensors`` (timm names), ``task_pruner.safetensors``,
``task_selector.safetensors`` and ``config.json``. Loading never downloads anything.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn

from ..device import resolve_device
from ..samples import ASSETS_DIR
from ..validation import check_rgb
from .pruning import TokenPruner
from .selector import LearnedPatchSelector
from .vit import VisionTransformer, ViTConfig

ASSET_DIR = ASSETS_DIR / "model"


class TaskModel(nn.Module):
    """A trained ViT with its learned ``pruner`` (at ``prune_layer``) and patch ``selector``."""

    def __init__(self, vit: VisionTransformer, pruner: TokenPruner, selector: LearnedPatchSelector,
                 prune_layer: int, config: dict | None = None) -> None:
        super().__init__()
        self.vit, self.pruner, self.selector = vit, pruner, selector
        self.prune_layer = int(prune_layer)
        self.task_config = dict(config or {})

    @property
    def pretrained(self) -> bool:
        return self.vit.pretrained

    @property
    def config(self) -> ViTConfig:
        return self.vit.config


def as_vit(model) -> VisionTransformer:
    """The ``VisionTransformer`` inside ``model`` (a ``TaskModel`` or a ViT)."""
    if isinstance(model, TaskModel):
        return model.vit
    if isinstance(model, VisionTransformer):
        return model
    raise ValueError(f"model must be a VisionTransformer or TaskModel, got {type(model).__name__}")


def resize_for_model(image: np.ndarray, model) -> np.ndarray:
    """The image resized (aspect not kept) to the model's ``img_size`` square, float32 [0, 1].

    Area interpolation when shrinking, bilinear when enlarging.
    """
    return resize_to_square(image, as_vit(model).config.img_size)


def resize_to_square(image: np.ndarray, s: int) -> np.ndarray:
    """``resize_for_model`` for a model whose input is ``s x s`` (no model object needed: workers
    that decode a dataset for a model call this)."""
    a = check_rgb(image)
    if a.shape[:2] == (s, s):
        return a
    interp = cv2.INTER_AREA if a.shape[0] > s or a.shape[1] > s else cv2.INTER_LINEAR
    return cv2.resize(a, (s, s), interpolation=interp)


def prepare_image(image: np.ndarray, model, device: str | torch.device = "auto", resize: bool = True) -> torch.Tensor:
    """Normalised ``[1, 3, S, S]`` model input (``resize=False`` keeps the image's own size)."""
    a = resize_for_model(image, model) if resize else check_rgb(image)
    t = torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].to(resolve_device(device))
    return as_vit(model).normalize(t)


def load_task_model(path: str | Path | None = None, device: str | torch.device = "auto") -> tuple[TaskModel, dict]:
    """The bundled cluttered-digits model and its config (``pretrained=True``: trained here)."""
    from safetensors.torch import load_file

    from .weights import model_from_state_dict

    d = Path(path) if path is not None else ASSET_DIR
    cfg_file = d / "config.json"
    if not cfg_file.is_file():
        raise ValueError(f"no task model at {str(d)!r}: run `python -m adapatch.experiments --out {d}` to train it")
    cfg = json.loads(cfg_file.read_text())
    dev = resolve_device(device)
    vit = model_from_state_dict(load_file(str(d / "task_vit.safetensors")), ViTConfig.from_dict(cfg["vit"]),
                                "bundled task model (trained by adapatch.experiments)", dev)
    pruner = TokenPruner(vit.config.dim)
    pruner.load_state_dict(load_file(str(d / "task_pruner.safetensors")))
    sel = LearnedPatchSelector(**cfg["selector"])
    sel.load_state_dict(load_file(str(d / "task_selector.safetensors")))
    tm = TaskModel(vit, pruner, sel, cfg["prune_layer"], cfg).to(dev).eval()
    return tm, cfg

