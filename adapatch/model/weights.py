"""ViT weights: presets, local files (safetensors / safe ``torch.load``), timm by name.

Nothing is downloaded at import or test time. A timm name is only resolved when timm is
installed (it is optional) and its hub is reachable; otherwise ``load_model`` says so.
A pickle that needs code execution is refused: ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import io
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


TORCH_SUFFIXES = (".pt", ".pth", ".bin")
CHECKPOINT_SUFFIXES = (".safetensors", *TORCH_SUFFIXES)


def _torch_load(source, name: str) -> dict[str, torch.Tensor]:
    """``torch.load(source, weights_only=True)`` with one-line errors; code-running pickles refused."""
    try:
        sd = torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        detail = next((ln.strip() for ln in str(e).splitlines() if "GLOBAL" in ln), "")
        if detail:
            raise ValueError(f"refusing to load {name}: it is a pickle that would run code (only tensors are "
                             f"accepted; convert it to safetensors). {detail}") from None
        raise ValueError(f"{name} is not a readable PyTorch checkpoint (the pickle is malformed)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise ValueError(f"{name} is not a readable PyTorch checkpoint: {_first_line(e)}") from None
    return _tensors_only(sd, name)


def _first_line(e: BaseException) -> str:
    return ((str(e).strip().splitlines() or [type(e).__name__])[0])[:160]


def _tensors_only(sd: object, name: str) -> dict[str, torch.Tensor]:
    """The state dict inside a checkpoint (``state_dict`` / ``model`` wrappers unwrapped)."""
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if isinstance(sd, dict) and "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{name} does not hold a state dict of tensors")
    return sd


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or of a ``torch.save`` file loaded with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"path must be an existing weights file, got {str(path)!r}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors raises its own error type on a bad header
            raise ValueError(f"{path.name} is not a readable safetensors file: {_first_line(e)}") from None
    return _torch_load(str(path), path.name)


def read_state_dict_bytes(data: bytes, name: str = "checkpoint.safetensors") -> dict[str, torch.Tensor]:
    """Tensors of a checkpoint held in memory (an upload): never written to disk.

    ``name``'s suffix picks the reader: ``.safetensors`` -> ``safetensors.torch.load``; ``.pt``,
    ``.pth``, ``.bin`` -> ``torch.load(BytesIO, weights_only=True)`` (a pickle that would run code
    is refused with a ``ValueError``). Any other suffix is refused.
    """
    suffix = Path(str(name)).suffix.lower()
    if suffix not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{name}: checkpoint must be {', '.join(CHECKPOINT_SUFFIXES)}, got {suffix or 'no suffix'!r}")
    if not data:
        raise ValueError(f"{name} is empty")
    if suffix == ".safetensors":
        from safetensors.torch import load
        try:
            sd = load(bytes(data))
        except Exception as e:  # SafetensorError: bad header or truncated file
            raise ValueError(f"{name} is not a readable safetensors file: {_first_line(e)}") from None
        return _tensors_only(sd, name)
    return _torch_load(io.BytesIO(bytes(data)), name)


def config_from_state_dict(sd: dict[str, torch.Tensor], **overrides) -> ViTConfig:
    """Infer a ``ViTConfig`` from timm-named tensors (heads from the width unless given)."""
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                "blocks.0.mlp.fc1.weight"):
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
    try:
        missing, unexpected = model.load_state_dict(sd, strict=False)
    except RuntimeError as e:  # shape mismatch
        raise ValueError(f"weights do not match the ViT: {_first_line(e)}") from None
    missing = [k for k in missing if not (k.startswith("pos_mlp.") and cfg.pos_mode == "interp+mlp")]
    if missing or unexpected:
        raise ValueError(f"weights do not match the ViT: missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.pretrained = True
    model.weights_source = source
    return model.to(resolve_device(device)).eval()


def load_model(source: str | Path, device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """A ViT with weights from a local file, or from timm by model name when timm is installed.

    The architecture comes from ``overrides``, then the config ``save_model`` writes into a
    safetensors file, then a ``config.json`` next to the file (``ViTConfig`` fields), else it is
    inferred from the tensors. A file ``save_model`` wrote from an untrained model keeps
    ``pretrained=False`` (its attention is refused as meaningless).
    """
    path = Path(source)
    if path.suffix in CHECKPOINT_SUFFIXES or path.exists():
        sd = read_state_dict(path)
        meta: dict[str, str] = {}
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            with safe_open(str(path), "pt") as f:
                meta = dict(f.metadata() or {})
        cfg_file = path.with_name("config.json")
        if "adapatch.config" not in meta and cfg_file.is_file():
            d = json.loads(cfg_file.read_text()).get("vit", {})
            if d:
                meta["adapatch.config"] = json.dumps(d)
        return _model_with_metadata(sd, meta, f"file {path.name}", device, overrides)
    return load_timm(str(source), device, **overrides)


def load_model_bytes(data: bytes, name: str = "checkpoint.safetensors", device: str | torch.device = "auto",
                     **overrides) -> VisionTransformer:
    """A ViT from checkpoint bytes (see ``read_state_dict_bytes``). The architecture comes from
    ``overrides``, then the config ``save_model`` writes into safetensors files, else it is
    inferred from the tensors; an untrained ``save_model`` file keeps ``pretrained=False``."""
    sd = read_state_dict_bytes(data, name)
    meta = safetensors_metadata(data) if str(name).lower().endswith(".safetensors") else {}
    return _model_with_metadata(sd, meta, f"file {name}", device, overrides)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` strings of safetensors bytes (header only; {} when absent or unreadable)."""
    if len(data) < 8:
        return {}
    n = int.from_bytes(bytes(data[:8]), "little")
    if n > min(len(data) - 8, 100_000_000):
        return {}
    try:
        meta = json.loads(bytes(data[8:8 + n])).get("__metadata__") or {}
    except (ValueError, AttributeError):
        return {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _model_with_metadata(sd: dict[str, torch.Tensor], meta: dict[str, str], source: str,
                         device: str | torch.device, overrides: dict) -> VisionTransformer:
    """Build the ViT (config from metadata when present) and mark untrained ``save_model`` files."""
    if "adapatch.config" in meta:
        try:
            d = json.loads(meta["adapatch.config"])
        except ValueError:
            raise ValueError(f"{source}: its adapatch config metadata is not JSON") from None
        cfg = ViTConfig.from_dict({**d, **overrides})
    else:
        cfg = config_from_state_dict(sd, **overrides)
    model = model_from_state_dict(sd, cfg, source, device)
    if meta.get("adapatch.pretrained") == "false":
        model.pretrained = False
        model.weights_source = f"{source} (random weights: saved by adapatch from an untrained model)"
    return model


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
        raise ValueError(f"timm could not provide pretrained weights for {name!r}: {type(e).__name__}: "
                         f"{_first_line(e)}") from None
    sd = tm.state_dict()
    dc = getattr(tm, "pretrained_cfg", {}) or {}
    cfg = config_from_state_dict(sd, heads=getattr(tm.blocks[0].attn, "num_heads", None) or
                                 _HEADS_BY_DIM.get(sd["cls_token"].shape[-1], 1),
                                 mean=tuple(dc.get("mean", (0.5,) * 3)), std=tuple(dc.get("std", (0.5,) * 3)),
                                 name=name, **overrides)
    return model_from_state_dict(sd, cfg, f"timm {name}", device)


def save_model(model: VisionTransformer, path: str | Path) -> None:
    """Write the ViT's tensors (timm names) to ``.safetensors``, with its config and whether it is
    trained (``model.pretrained``) as metadata, so ``load_model`` rebuilds it exactly and keeps
    refusing the attention of an untrained one. Set ``model.pretrained = True`` after training."""
    from safetensors.torch import save_file
    meta = {"adapatch.config": json.dumps(model.config.to_dict()),
            "adapatch.pretrained": "true" if model.pretrained else "false"}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
