"""Attention saliency of a ViT: last-layer CLS attention and attention rollout.

Registered with the core's saliency registry as ``"attention"`` (``attention_method``):
``adapatch.model_plugins`` names this module as the ``"attention"`` saliency plug-in
(``adapatch.plugins``), and it is imported the first time that method is asked for. A model with
random weights has meaningless attention, so these functions refuse a model whose ``pretrained``
flag is False unless ``allow_random=True`` (for tests and timing).
With no model given, the registered method uses the bundled task model (trained here, on
cluttered digits; see ``adapatch.model.load_task_model``).

Images of any size are resized to the model's ``img_size`` (area interpolation), run on the
fixed grid, and the token map is upsampled back to the image size (bilinear).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from ..saliency import register_saliency
from ..validation import check_choice, check_float
from .task import as_vit, prepare_image

MODES = ("cls", "rollout")
HEAD_FUSIONS = ("mean", "max")


def _fuse(a: torch.Tensor, head_fusion: str) -> torch.Tensor:
    return a.mean(dim=1) if head_fusion == "mean" else a.amax(dim=1)


def read_row(m: torch.Tensor, num_prefix: int, has_cls: bool) -> torch.Tensor:
    """``[B, N]`` from a ``[B, T, T]`` map: the class token's row over the patch tokens, or (no class
    token: average-pool and attention-pool models) the mean row of the patch tokens."""
    if has_cls:
        return m[:, 0, num_prefix:]
    return m[:, num_prefix:, num_prefix:].mean(dim=1)


def cls_attention(attns: list[torch.Tensor], head_fusion: str = "mean", num_prefix: int = 1,
                  has_cls: bool = True) -> torch.Tensor:
    """``[B, N]``: attention of the CLS query on each patch token in the last block (without a
    class token: the mean attention each patch token receives from the patch tokens)."""
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    return read_row(_fuse(attns[-1], head_fusion), num_prefix, has_cls)


def rollout(attns: list[torch.Tensor], head_fusion: str = "mean", discard_ratio: float = 0.9, num_prefix: int = 1,
            has_cls: bool = True) -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020) ``[B, N]`` from CLS to the patch tokens.

    Per block: fuse heads (mean or max), zero the ``discard_ratio`` lowest entries (never the
    CLS->CLS entry), add the identity for the residual, renormalise rows, multiply through.
    """
    check_choice("head_fusion", head_fusion, HEAD_FUSIONS)
    discard_ratio = check_float("discard_ratio", discard_ratio, 0.0, 0.99)
    b, _, t, _ = attns[0].shape
    eye = torch.eye(t, device=attns[0].device, dtype=attns[0].dtype)
    result = eye.expand(b, t, t)
    for a in attns:
        f = _fuse(a, head_fusion)
        if discard_ratio > 0:
            flat = f.reshape(b, -1).clone()
            n_drop = int(flat.shape[1] * discard_ratio)
            low = torch.topk(flat, n_drop, dim=1, largest=False).indices
            keep0 = flat[:, 0].clone()
            flat.scatter_(1, low, 0.0)
            flat[:, 0] = keep0
            f = flat.reshape(b, t, t)
        f = (f + eye) / 2
        f = f / f.sum(dim=-1, keepdim=True)
        result = f @ result
    return read_row(result, num_prefix, has_cls)


@torch.no_grad()
def attention_tokens(image: np.ndarray, model, mode: str = "rollout", head_fusion: str = "mean",
                     discard_ratio: float = 0.9, device: str | torch.device = "auto",
                     allow_random: bool = False) -> np.ndarray:
    """Float32 ``[G, G]`` token-grid attention of ``image`` (resized to the model's input)."""
    check_choice("mode", mode, MODES)
    vit = as_vit(model)
    if not vit.pretrained and not allow_random:
        raise ValueError("model has random weights (pretrained=False): its attention is not meaningful. "
                         "Load weights (load_model / load_task_model) or pass allow_random=True explicitly.")
    x = prepare_image(image, vit, device)
    vit = vit.to(x.device)
    g = vit.config.grid_size
    _, attns = vit.forward_features(vit.embed_fixed(x), return_attn=True, rope=vit.rope_fixed(x.device))
    npt, has_cls = vit.num_prefix_tokens, vit.cls_token is not None
    m = cls_attention(attns, head_fusion, npt, has_cls) if mode == "cls" \
        else rollout(attns, head_fusion, discard_ratio, npt, has_cls)
    return m[0].reshape(g, g).float().cpu().numpy()


def attention_saliency(image: np.ndarray, model, mode: str = "rollout", head_fusion: str = "mean",
                       discard_ratio: float = 0.9, device: str | torch.device = "auto",
                       allow_random: bool = False) -> np.ndarray:
    """Float32 ``[H, W]`` in [0, 1]: CLS attention or rollout, upsampled to the image size."""
    grid = attention_tokens(image, model, mode, head_fusion, discard_ratio, device, allow_random)
    h, w = np.shape(image)[:2]
    up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_LINEAR)
    lo, hi = float(up.min()), float(up.max())
    return ((up - lo) / (hi - lo)).astype(np.float32) if hi > lo else np.zeros((h, w), np.float32)


@register_saliency("attention", "ViT attention (CLS or rollout). Default model: the bundled cluttered-digits task ViT, "
                   "trained here; "
                   "its attention is meaningful on that task's images (Model page), not on photos.",
                   defaults={"model": None, "mode": "rollout", "head_fusion": "mean", "discard_ratio": 0.9},
                   param_ranges={"discard_ratio": (0.0, 0.99, 0.01)},
                   param_choices={"mode": MODES, "head_fusion": HEAD_FUSIONS})
def attention_method(image: np.ndarray, model=None, mode: str = "rollout", head_fusion: str = "mean",
                      discard_ratio: float = 0.9) -> np.ndarray:
    """Registry entry: ``model=None`` uses the bundled task model (raises if it is missing); a
    string is a model source (``"task"``, a checkpoint path, a timm name; ``resolve_model``),
    loaded once and kept (``cache=True``: the last two sources) rather than on every call.
    Runs on the model's own device."""
    if model is None:
        from .sources import resolve_model  # the one cache of the bundled model
        model = resolve_model(device="auto")
    elif isinstance(model, str):
        from .sources import resolve_model
        model = resolve_model(model, cache=True)
    device = next(as_vit(model).parameters()).device  # run where the model lives: a shared model never moves
    return attention_saliency(image, model, mode, head_fusion, discard_ratio, device=device)
