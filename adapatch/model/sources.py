"""Where a model comes from and what it is: the bundled task model, a checkpoint, a timm name.

``resolve_model("task")`` is the bundled cluttered-digits ``TaskModel`` (ViT + trained pruner +
selector); any other string goes to ``load_model`` (a local ``.safetensors``/``.pt``/``.pth``
file, or a timm name when timm is installed). ``describe_model`` summarises a loaded model in
plain fields (for the app's "what is loaded" panel). Nothing here downloads anything by itself.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import torch

from .task import TaskModel, as_vit, load_task_model
from .vit import VisionTransformer

TASK = "task"
"""Source name of the bundled task model (in settings, snippets and ``resolve_model``)."""
MODEL_DEVICE = "cpu"
"""Device of model calls made from settings (app and exported snippets): the same kept tokens on
every machine, and a cached model shared between sessions is never moved between devices."""


@lru_cache(maxsize=2)
def _task_model(device: str) -> TaskModel:
    return load_task_model(device=device)[0]


def resolve_model(source: str | TaskModel | VisionTransformer | None = TASK,
                  device: str | torch.device = MODEL_DEVICE) -> TaskModel | VisionTransformer:
    """A model object for ``source``: a model is returned as is, ``"task"`` (or None) is the
    bundled task model (loaded once per device), any other string is ``load_model(source)``."""
    if isinstance(source, (TaskModel, VisionTransformer)):
        return source
    if source is None or source == TASK:
        return _task_model(str(torch.device(device)))
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"model must be 'task', a checkpoint path or a timm name, got {source!r}")
    from .weights import load_model
    return load_model(source.strip(), device=device)


def describe_model(model: TaskModel | VisionTransformer) -> dict[str, Any]:
    """Plain facts about a loaded model: source, architecture, input and patch size, parts."""
    vit = as_vit(model)
    cfg = vit.config
    task = isinstance(model, TaskModel)
    return {
        "source": vit.weights_source,
        "name": cfg.name,
        "architecture": f"ViT · width {cfg.dim} · depth {cfg.depth} · {cfg.heads} heads",
        "params": int(sum(p.numel() for p in vit.parameters())),
        "img_size": cfg.img_size,
        "patch_size": cfg.patch_size,
        "grid_size": cfg.grid_size,
        "num_classes": cfg.num_classes,
        "pretrained": bool(vit.pretrained),
        "has_pruner": task and model.pruner is not None,
        "has_selector": task and model.selector is not None,
        "task_model": task,
    }
