"""The ``ViTConfig`` that timm-named tensors imply, and what they cannot say.

A state dict in timm's names (``VisionTransformer`` or ``Eva``) gives the width, depth, patch
size, grid, prefix tokens, MLP kind, norms and head; ``config_from_state_dict`` reads them. Three
things it cannot give are never guessed: the head count at an unusual width (``heads=``; known
from ``q_norm``, the architecture's size word or timm's standard widths), the input
normalisation (``preprocess=`` one of ``PREPROCESS``, or ``mean=``/``std=``) and which half of a
GLU gates (``gate_last=``). ``inferred_config`` returns the config with placeholders and the
messages naming what is unknown, so a loader can first check the tensors
(``adapatch.model.weights.check_state_dict``) and then say what is missing.
"""

from __future__ import annotations

import math
import re
from typing import Any

import torch

from ..messages import as_value_error
from ..validation import check_choice
from .timm.arch import timm_state_dict
from .vit import ViTConfig

_HEADS_BY_DIM = {192: 3, 384: 6, 768: 12, 1024: 16}
"""Head counts timm uses at these widths in every ``vit_*``/``deit_*`` architecture (checked against
timm's whole list by ``tests/test_timm_models.py``); any other width must say its heads."""
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
PREPROCESS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "clip": (CLIP_MEAN, CLIP_STD),
    "half": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
"""Input normalisations by name (``preprocess=``): ImageNet (DeiT, most timm ImageNet weights), OpenAI
CLIP, and mean = std = 0.5 (Google's augreg ``vit_*`` and SigLIP weights)."""
NORMALISATION_UNKNOWN = ("the file does not say how images are normalised: pass preprocess='imagenet' (DeiT, most "
                         "timm ImageNet weights), 'clip' (OpenAI CLIP) or 'half' (mean = std = 0.5: augreg vit_*, "
                         "SigLIP), or mean=/std=")
_SIZE_HEADS = {"tiny": 3, "small": 6, "base": 12, "large": 16, "huge": 16, "giant": 16, "gigantic": 16}


def apply_preprocess(overrides: dict) -> dict:
    """``overrides`` with ``preprocess=`` (a ``PREPROCESS`` name) turned into ``mean``/``std``."""
    o = dict(overrides)
    pre = o.pop("preprocess", None)
    if pre is not None:
        check_choice("preprocess", pre, PREPROCESS)
        if "mean" in o or "std" in o:
            raise ValueError("give either preprocess= or mean=/std=, not both")
        o["mean"], o["std"] = PREPROCESS[pre]
    return o


def heads_from_name(name: str) -> int | None:
    """Heads of a timm architecture named by its size word (``vit_huge_patch14_224`` -> 16), or None."""
    m = re.match(r"(?:vit|deit|eva02?)_(tiny|small|base|large|huge|giant|gigantic)_", str(name))
    return _SIZE_HEADS.get(m.group(1)) if m else None


_BLOCK_KEY = re.compile(r"blocks\.(\d+)\.")


def config_from_state_dict(sd: dict[str, torch.Tensor], **overrides) -> ViTConfig:
    """Infer a ``ViTConfig`` from timm-named tensors (timm ``VisionTransformer`` or ``Eva`` names).

    What tensors cannot say (the head count at an unusual width, the input normalisation, which
    half of a GLU gates) must come from ``overrides`` (``heads=``, ``preprocess=`` or
    ``mean=``/``std=``, ``gate_last=``): the loader never guesses them. Every failure (missing keys,
    tensors of the wrong rank, an invalid config, an unknown) is a one-line ``ValueError``. The
    config is not checked against all the tensors here: ``model_from_state_dict`` does that
    before it builds anything (``check_state_dict``).
    """
    cfg, unknown = inferred_config(sd, overrides)
    if unknown:
        raise ValueError(unknown[0])
    return cfg


def inferred_config(sd: dict[str, torch.Tensor], overrides: dict) -> tuple[ViTConfig, list[str]]:
    """The inferred config (placeholders where unknown) and the messages naming what is unknown."""
    try:
        return _config_from_state_dict(sd, overrides)
    except Exception as e:  # noqa: BLE001
        raise as_value_error(e, "not a timm ViT state dict") from None


def _config_from_state_dict(sd: dict[str, torch.Tensor], overrides: dict) -> tuple[ViTConfig, list[str]]:
    overrides = apply_preprocess(overrides)
    sd = timm_state_dict(sd)
    for key in ("patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.norm1.weight"):
        if key not in sd:
            raise ValueError(f"not a timm ViT state dict: missing {key!r}")
    if not any(k in sd for k in ("cls_token", "pos_embed")):
        raise ValueError("not a timm ViT state dict: it has neither cls_token nor pos_embed "
                         "(rotary-embedding models need their config: a config.json or a timm name)")
    for key, ndim in (("cls_token", 3), ("pos_embed", 3), ("patch_embed.proj.weight", 4),
                      ("blocks.0.attn.qkv.weight", 2), ("head.weight", 2)):
        if key in sd and sd[key].ndim != ndim:
            raise ValueError(f"not a timm ViT state dict: {key} has {sd[key].ndim} dimensions, expected {ndim}")
    pw = sd["patch_embed.proj.weight"]
    dim, patch = int(pw.shape[0]), int(pw.shape[-1])
    if dim < 1:
        raise ValueError("not a timm ViT state dict: patch_embed.proj.weight is empty")
    class_token, dist_token = "cls_token" in sd, "dist_token" in sd
    reg = int(sd["reg_token"].shape[1]) if "reg_token" in sd else 0
    npt = int(class_token) + int(dist_token) + reg
    rows = int(sd["pos_embed"].shape[1]) if "pos_embed" in sd else 0
    grid = math.isqrt(rows)
    no_embed_class = npt > 0 and grid * grid == rows
    if not no_embed_class:
        grid = math.isqrt(max(0, rows - npt))
    depth = 1 + max(int(m.group(1)) for m in map(_BLOCK_KEY.match, sd) if m)
    if "blocks.0.mlp.fc1_g.weight" in sd:
        mlp, hidden = "swiglu", int(sd["blocks.0.mlp.fc1_g.weight"].shape[0])
    else:
        hidden = int(sd["blocks.0.mlp.fc2.weight"].shape[1])
        mlp = "glu" if int(sd["blocks.0.mlp.fc1.weight"].shape[0]) == 2 * hidden else "mlp"
    norm = "layernorm" if "blocks.0.norm1.bias" in sd else "rmsnorm"
    heads = None
    if "blocks.0.attn.q_norm.weight" in sd:
        heads = dim // int(sd["blocks.0.attn.q_norm.weight"].shape[0])
    unknown = []
    heads = overrides.get("heads") or heads or heads_from_name(overrides.get("name", "")) or _HEADS_BY_DIM.get(dim)
    if heads is None:
        unknown.append(f"the head count of this {dim}-wide ViT is not in the file: pass heads= (timm's "
                       f"architecture, its config.json, or the model card says it)")
        heads = 1
    if "mean" not in overrides and "std" not in overrides:
        unknown.append(NORMALISATION_UNKNOWN)
    if mlp == "glu" and "gate_last" not in overrides:
        unknown.append("this ViT has a gated (GLU) MLP but the file does not say which half gates: "
                       "pass gate_last= (timm GluMlp: True; SwiGLUPacked: False)")
    has_fc = "fc_norm.weight" in sd
    attn_pool = {}
    if "attn_pool.latent" in sd:
        attn_pool = dict(latent_len=int(sd["attn_pool.latent"].shape[1]),
                         mlp_ratio=int(sd["attn_pool.mlp.fc1.weight"].shape[0]) / dim,
                         qk_norm="attn_pool.q_norm.weight" in sd, pool="token", include_prefix=False)
    if attn_pool and npt and "attn_pool" not in overrides:
        unknown.append("whether this ViT's attention-pool head reads its class/register tokens depends on the timm "
                       "version that made it and is not in the file: give its timm config.json or name")
    pool = "map" if attn_pool else ("token" if class_token and not has_fc else "avg")
    kw: dict[str, Any] = dict(img_size=grid * patch, patch_size=patch, dim=dim, depth=depth, heads=heads,
              mlp_ratio=hidden / dim,
              num_classes=int(sd["head.weight"].shape[0]) if "head.weight" in sd else 0,
              qkv_bias="blocks.0.attn.qkv.bias" in sd,
              pos_mode="interp+mlp" if "pos_mlp.fc1.weight" in sd else "interp",
              class_token=class_token, reg_tokens=reg, dist_token=dist_token, no_embed_class=no_embed_class,
              pos_embed="pos_embed" in sd, global_pool=pool, fc_norm=has_fc,
              final_norm=has_fc or "norm.weight" in sd, norm_pre="norm_pre.weight" in sd,
              layer_scale="blocks.0.ls1.gamma" in sd, qk_norm="blocks.0.attn.q_norm.weight" in sd,
              attn_norm="blocks.0.attn.norm.weight" in sd, mlp_norm="blocks.0.mlp.norm.weight" in sd, mlp=mlp,
              norm=norm, patch_bias="patch_embed.proj.bias" in sd, proj_bias="blocks.0.attn.proj.bias" in sd,
              attn_pool=attn_pool)
    kw.update(overrides)
    return ViTConfig(**kw), unknown
