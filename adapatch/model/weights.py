"""ViT weights: presets, local files (safetensors / safe ``torch.load``), timm by name.

Nothing is downloaded at import or test time. A timm name is only resolved when timm is
installed (it is optional) and its hub is reachable; otherwise ``load_model`` says so.
A pickle that needs code execution is refused: ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import torch

from ..device import resolve_device
from ..validation import check_choice
from .vit import ViTConfig, VisionTransformer

# timm's vit_{tiny,small,base}_patch16_224 (augreg weights: mean = std = 0.5)
PRESETS: dict[str, dict] = {
    "ViT-Ti": dict(dim=192, depth=12, heads=3, name="vit_tiny_patch16_224"),
    "ViT-S": dict(dim=384, depth=12, heads=6, name="vit_small_patch16_224"),
    "ViT-B": dict(dim=768, depth=12, heads=12, name="vit_base_patch16_224"),
}
_HEADS_BY_DIM = {192: 3, 384: 6, 768: 12, 1024: 16}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def create_model(preset: str = "ViT-Ti", device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """A randomly initialised ViT of a preset size (``pretrained=False``); ``overrides`` go to ``ViTConfig``."""
    check_choice("preset", preset, PRESETS)
    cfg = ViTConfig(**{"img_size": 224, "patch_size": 16, "num_classes": 1000, **PRESETS[preset], **overrides})
    return VisionTransformer(cfg).to(resolve_device(device))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``torch.save`` file loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing weights file, got {str(path)!r}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        return load_file(str(path))
    try:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(f"refusing to load {path.name}: it is a pickle that would run code "
                         f"(only tensors are accepted; convert it to safetensors). Details: {e}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path.name} does not hold a state dict of tensors")
    return sd


def config_from_state_dict(sd: dict[str, torch.Tensor], **overrides) -> ViTConfig:
    """Infer a ``ViTConfig`` from timm-named tensors (heads from the width unless given)."""
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight"):
        if key not in sd:
            raise ValueError(f"not a timm ViT state dict: missing {key!r}")
    if "dist_token" in sd:
        raise ValueError("distilled DeiT checkpoints (dist_token) are not supported; use a deit_*_patch16 model")
    dim = sd["cls_token"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    grid = math.isqrt(sd["pos_embed"].shape[1] - 1)
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    kw = dict(img_size=grid * patch, patch_size=patch, dim=dim, depth=depth,
              heads=_HEADS_BY_DIM.get(dim, max(1, dim // 64)),
              mlp_ratio=sd["blocks.0.mlp.fc1.weight"].shape[0] / dim,
              num_classes=sd["head.weight"].shape[0] if "head.weight" in sd else 0,
              qkv_bias="blocks.0.attn.qkv.bias" in sd,
              pos_mode="interp+mlp" if "pos_mlp.fc1.weight" in sd else "interp")
    kw.update(overrides)
    return ViTConfig(**kw)


def model_from_state_dict(sd: dict[str, torch.Tensor], config: ViTConfig | None = None, source: str = "state dict",
                          device: str | torch.device = "auto") -> VisionTransformer:
    """Build a ViT and load timm-named tensors strictly (unknown or missing keys raise)."""
    cfg = config or config_from_state_dict(sd)
    model = VisionTransformer(cfg)
    sd = {k: v for k, v in sd.items() if k not in ("fc_norm.weight", "fc_norm.bias") or v.numel()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not (k.startswith("pos_mlp.") and cfg.pos_mode == "interp+mlp")]
    if missing or unexpected:
        raise ValueError(f"weights do not match the ViT: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.pretrained = True
    model.weights_source = source
    return model.to(resolve_device(device)).eval()


def load_model(source: str | Path, device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """A ViT with weights from a local file, or from timm by model name when timm is installed.

    A ``config.json`` next to the file (``ViTConfig`` fields) is used when present; otherwise the
    architecture is inferred from the tensors (``overrides`` take precedence).
    """
    path = Path(source)
    if path.suffix in (".safetensors", ".pt", ".pth", ".bin") or path.exists():
        sd = read_state_dict(path)
        cfg_file = path.with_name("config.json")
        if cfg_file.is_file():
            d = json.loads(cfg_file.read_text()).get("vit", {})
            cfg = ViTConfig.from_dict({**d, **overrides}) if d else config_from_state_dict(sd, **overrides)
        else:
            cfg = config_from_state_dict(sd, **overrides)
        return model_from_state_dict(sd, cfg, f"file {path.name}", device)
    return load_timm(str(source), device, **overrides)


def load_timm(name: str, device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """Weights of a timm ``vit_*``/``deit_*`` model via timm (needs timm and network access)."""
    try:
        import timm  # optional: never imported at module import time
    except ImportError:
        raise ValueError(f"{name!r} is not a local file and timm is not installed; "
                         "give a .safetensors/.pt path (no weights are downloaded without timm)") from None
    try:
        tm = timm.create_model(name, pretrained=True)
    except Exception as e:  # hub unreachable, unknown name
        raise ValueError(f"timm could not provide pretrained weights for {name!r}: {type(e).__name__}: {e}") from None
    sd = tm.state_dict()
    dc = getattr(tm, "pretrained_cfg", {}) or {}
    cfg = config_from_state_dict(sd, heads=getattr(tm.blocks[0].attn, "num_heads", None) or
                                 _HEADS_BY_DIM.get(sd["cls_token"].shape[-1], 1),
                                 mean=tuple(dc.get("mean", (0.5,) * 3)), std=tuple(dc.get("std", (0.5,) * 3)),
                                 name=name, **overrides)
    return model_from_state_dict(sd, cfg, f"timm {name}", device)


def save_model(model: VisionTransformer, path: str | Path) -> None:
    """Write the ViT's tensors (timm names) to ``.safetensors``."""
    from safetensors.torch import save_file
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
