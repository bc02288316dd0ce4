"""Where a model comes from and what it is: the bundled task model, a checkpoint, a timm name.

``resolve_model("task")`` is the bundled cluttered-digits ``TaskModel`` (ViT + trained pruner +
selector); any other string goes to ``load_model`` (a local ``.safetensors``/``.pt``/``.pth``/``.bin``
file, or a timm name when timm is installed); ``cache=True`` keeps the last two such models.
``describe_model`` summarises a loaded model in plain fields (for the app's "what is loaded" panel).
Nothing here downloads anything by itself.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..device import resolve_device
from ..model_refs import TASK
from .task import TaskModel, as_vit, load_task_model
from .vit import VisionTransformer


@lru_cache(maxsize=2)
def _task_model(device: str) -> TaskModel:
    return load_task_model(device=device)[0]


@lru_cache(maxsize=2)
def _loaded_model(source: str, device: str, stamp: tuple | None) -> VisionTransformer:
    """``load_model(source)``, kept for the last two (source, device, file stamp) keys."""
    from .weights import load_model
    return load_model(source, device=device)


def _file_stamp(source: str) -> tuple | None:
    """(size, mtime) of a local file, so a cached model is reloaded when the file changes; None otherwise."""
    try:
        st = Path(source).stat()
    except (OSError, ValueError):
        return None
    return (st.st_size, st.st_mtime_ns)


def resolve_model(source: str | TaskModel | VisionTransformer | None = TASK,
                  device: str | torch.device = "auto", cache: bool = False) -> TaskModel | VisionTransformer:
    """A model object for ``source``: a model is returned as is, ``"task"`` (or None) is the
    bundled task model (loaded once per device), any other string is ``load_model(source)``.

    ``device`` defaults to ``"auto"`` (``adapatch.device.resolve_device``: CUDA when present, like
    every model call). With ``cache=True`` a checkpoint or timm model is shared with earlier calls
    for the same source and device (the last two are kept; a checkpoint file that changed on disk
    is read again): treat it as read-only."""
    if isinstance(source, (TaskModel, VisionTransformer)):
        return source
    dev = str(resolve_device(device))
    if source is None or source == TASK:
        return _task_model(dev)
    if not isinstance(source, str) or not source.strip():
        raise ValueError(f"model must be 'task', a checkpoint path or a timm name, got {source!r}")
    source = source.strip()
    if cache:
        return _loaded_model(source, dev, _file_stamp(source))
    from .weights import load_model
    return load_model(source, device=dev)


def architecture_options(cfg) -> list[str]:
    """The timm options a config uses, in words (empty for the classic ViT)."""
    out = []
    if cfg.reg_tokens:
        out.append(f"{cfg.reg_tokens} register tokens")
    if cfg.dist_token:
        out.append("distillation token")
    if cfg.global_pool != "token":
        out.append({"avg": "average-pool head", "max": "max-pool head", "avgmax": "avg+max-pool head",
                    "map": "attention-pool head"}[cfg.global_pool] + ("" if cfg.class_token else ", no class token"))
    if cfg.rope:
        out.append(f"RoPE ({cfg.rope.get('kind', '?')})" + ("" if cfg.pos_embed else ", no pos_embed"))
    for flag, words in (("layer_scale", "LayerScale"), ("norm_pre", "pre-norm"), ("qk_norm", "qk-norm"),
                        ("fc_norm", "fc_norm")):
        if getattr(cfg, flag):
            out.append(words)
    if cfg.mlp != "mlp":
        out.append({"glu": "GLU MLP", "swiglu": "SwiGLU MLP"}[cfg.mlp])
    if cfg.norm == "rmsnorm":
        out.append("RMSNorm")
    return out


def describe_model(model: TaskModel | VisionTransformer) -> dict[str, Any]:
    """Plain facts about a loaded model: source, architecture, input and patch size, parts."""
    vit = as_vit(model)
    cfg = vit.config
    task = isinstance(model, TaskModel)
    return {
        "source": vit.weights_source,
        "name": cfg.name,
        "architecture": " · ".join([f"ViT · width {cfg.dim} · depth {cfg.depth} · {cfg.heads} heads",
                                    *architecture_options(cfg)]),
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
