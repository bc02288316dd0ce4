"""ViT weights: presets, local files (safetensors / safe ``torch.load``), timm by name.

Nothing is downloaded at import or test time. A timm name is only resolved when timm is
installed (it is optional) and its hub is reachable; otherwise ``load_model`` says so.
A pickle that needs code execution is refused: ``torch.load(..., weights_only=True)`` only.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import pickle
import re
from pathlib import Path

import torch

from ..device import resolve_device
from ..model_refs import CHECKPOINT_SUFFIXES
from ..validation import check_choice
from .timm_arch import config_from_timm, timm_state_dict
from .vit import ViTConfig, VisionTransformer

# timm's vit_{tiny,small,base}_patch16_224 (augreg weights: mean = std = 0.5)
PRESETS: dict[str, dict] = {
    "ViT-Ti": dict(dim=192, depth=12, heads=3, name="vit_tiny_patch16_224"),
    "ViT-S": dict(dim=384, depth=12, heads=6, name="vit_small_patch16_224"),
    "ViT-B": dict(dim=768, depth=12, heads=12, name="vit_base_patch16_224"),
}
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


def create_model(preset: str = "ViT-Ti", device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """A randomly initialised ViT of a preset size (``pretrained=False``); ``overrides`` go to ``ViTConfig``."""
    check_choice("preset", preset, PRESETS)
    cfg = ViTConfig(**{"img_size": 224, "patch_size": 16, "num_classes": 1000, **PRESETS[preset], **overrides})
    return VisionTransformer(cfg).to(resolve_device(device))


TIMM_PREFIXES = ("vit_", "deit_")
"""timm model families this ViT reproduces; other timm names are refused before timm is asked."""


def _apply_preprocess(overrides: dict) -> dict:
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
    return _one_line((str(e).strip().splitlines() or [type(e).__name__])[0], 200)


def _one_line(text: object, limit: int = 300) -> str:
    """``text`` on one line, at most ``limit`` characters, cut at a word boundary (with an ellipsis)."""
    t = " ".join(str(text).split())
    if len(t) <= limit:
        return t
    cut = t[:limit - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > limit // 2 else t[:limit - 1]) + "…"


def _as_value_error(e: Exception, what: str) -> ValueError:
    """``e`` as a one-line ``ValueError``: a ValueError keeps its text, anything else (TypeError,
    RuntimeError, MemoryError...) is named and prefixed with ``what``."""
    if isinstance(e, ValueError):
        return ValueError(_one_line(e))
    return ValueError(_one_line(f"{what}: {_first_line(e)}"))


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
    if path.suffix.lower() == ".safetensors":
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
    is refused with a ``ValueError``). Any other suffix is refused. Every failure is a one-line
    ``ValueError``.
    """
    try:
        return _read_state_dict_bytes(data, name)
    except Exception as e:  # noqa: BLE001 - an upload must never surface as anything but one line
        raise _as_value_error(e, f"{name} could not be read") from None


def _read_state_dict_bytes(data: bytes, name: str) -> dict[str, torch.Tensor]:
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
    cfg, unknown = _inferred_config(sd, overrides)
    if unknown:
        raise ValueError(unknown[0])
    return cfg


def _inferred_config(sd: dict[str, torch.Tensor], overrides: dict) -> tuple[ViTConfig, list[str]]:
    """The inferred config (placeholders where unknown) and the messages naming what is unknown."""
    try:
        return _config_from_state_dict(sd, overrides)
    except Exception as e:  # noqa: BLE001
        raise _as_value_error(e, "not a timm ViT state dict") from None


def _config_from_state_dict(sd: dict[str, torch.Tensor], overrides: dict) -> tuple[ViTConfig, list[str]]:
    overrides = _apply_preprocess(overrides)
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
    kw = dict(img_size=grid * patch, patch_size=patch, dim=dim, depth=depth, heads=heads,
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


def config_from_metadata(text: str, overrides: dict | None = None, source: str = "checkpoint") -> ViTConfig:
    """The ``ViTConfig`` of ``save_model``'s ``adapatch.config`` metadata (JSON object of
    ``ViTConfig`` fields), ``overrides`` applied. Malformed metadata (not JSON, not an object,
    fields of the wrong type or out of range) is a one-line ``ValueError``; nothing is built."""
    try:
        d = json.loads(text)
    except Exception:  # noqa: BLE001 - ValueError, RecursionError on deep nesting
        raise ValueError(f"{source}: its adapatch config metadata is not JSON") from None
    if not isinstance(d, dict):
        raise ValueError(f"{source}: its adapatch config metadata must be a JSON object, got {type(d).__name__}")
    try:
        return ViTConfig.from_dict({**d, **(overrides or {})})
    except Exception as e:  # noqa: BLE001
        raise ValueError(_one_line(f"{source}: its adapatch config metadata is invalid: {_first_line(e)}")) from None


def _meta_state(cfg: ViTConfig) -> dict[str, torch.Size]:
    """Names and shapes of ``VisionTransformer(cfg)``'s state dict, from a model built on the ``meta``
    device (no memory is allocated, however large the config)."""
    with torch.device("meta"):
        m = VisionTransformer(cfg)
    return {k: v.shape for k, v in m.state_dict().items()}


def config_param_count(cfg: ViTConfig, pos_mlp: bool = True) -> int:
    """Parameters of ``VisionTransformer(cfg)``, computed from the config alone (nothing is built).
    ``pos_mlp=False`` leaves out the position MLP (an ``interp+mlp`` model may load without it)."""
    return sum(math.prod(s) for k, s in _meta_state(cfg).items() if pos_mlp or not k.startswith("pos_mlp."))


def _values_held(sd: dict[str, torch.Tensor]) -> int:
    """How many values the tensors really hold (distinct storages: a stride-0 view of one value
    that claims a large shape counts as the one value)."""
    held: dict[tuple, int] = {}
    for v in sd.values():
        if v.layout != torch.strided or v.device.type == "meta":
            raise ValueError("the checkpoint holds a tensor that is not a plain dense tensor")
        st = v.untyped_storage()
        key = (str(v.device), st.data_ptr())
        held[key] = max(held.get(key, 0), st.nbytes() // max(1, v.element_size()))
    return sum(held.values())


def check_state_dict(sd: dict[str, torch.Tensor], cfg: ViTConfig, source: str = "state dict") -> None:
    """Refuse (one-line ``ValueError``) a config that the tensors do not back, before any module is built.

    Every tensor the config needs must be in ``sd`` with its shape (read off a ``meta``-device
    model), and the parameters it implies must not exceed the values the file holds: loading is
    strict, so the file supplies every parameter, and a small file can never make a large model.
    """
    pos_mlp = "mlp" in cfg.pos_mode and not (cfg.pos_mode == "interp+mlp" and "pos_mlp.fc1.weight" not in sd)
    held = _values_held(sd)
    d, h = cfg.dim, int(cfg.dim * cfg.mlp_ratio)
    lower = cfg.depth * (4 * d * d + 2 * d * h)  # attention and MLP weights alone: refuse before building anything
    if lower > held:
        raise ValueError(f"{source}: its config ({cfg.depth} blocks of width {d}, {cfg.img_size} px input) needs "
                         f"at least {lower:,} parameters but the file holds only {held:,} values; refused")
    shapes = _meta_state(cfg)
    need = sum(math.prod(s) for k, s in shapes.items() if pos_mlp or not k.startswith("pos_mlp."))
    if need > held:
        raise ValueError(f"{source}: its config ({cfg.depth} blocks of width {cfg.dim}, {cfg.img_size} px input) needs "
                         f"{need:,} parameters but the file holds only {held:,} values; refused")
    for key, shape in shapes.items():
        if key.startswith("pos_mlp.") and not pos_mlp:
            continue
        t = sd.get(key)
        if t is None:
            raise ValueError(f"{source}: weights do not match its config: missing {key!r}")
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{source}: weights do not match its config: {key} is {list(t.shape)}, "
                             f"the config needs {list(shape)}")


def model_from_state_dict(sd: dict[str, torch.Tensor], config: ViTConfig | None = None, source: str = "state dict",
                          device: str | torch.device = "auto") -> VisionTransformer:
    """Build a ViT and load timm-named tensors strictly (unknown or missing keys raise).

    The config is checked against the tensors first (``check_state_dict``): nothing is built for a
    config the tensors do not back."""
    sd = timm_state_dict(sd)
    cfg = config or config_from_state_dict(sd)
    check_state_dict(sd, cfg, source)
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
    if path.suffix.lower() in CHECKPOINT_SUFFIXES or path.exists():
        try:
            return _load_file(path, device, overrides)
        except Exception as e:  # noqa: BLE001
            raise _as_value_error(e, f"{path.name} could not be loaded") from None
    return load_timm(str(source), device, **overrides)


def _load_file(path: Path, device: str | torch.device, overrides: dict) -> VisionTransformer:
    sd = read_state_dict(path)
    meta: dict[str, str] = {}
    if path.suffix.lower() == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), "pt") as f:
            meta = dict(f.metadata() or {})
    cfg_file = path.with_name("config.json")
    if "adapatch.config" not in meta and cfg_file.is_file():
        try:
            d = json.loads(cfg_file.read_text())
        except Exception:  # noqa: BLE001
            raise ValueError(f"{cfg_file} is not JSON") from None
        if not isinstance(d, dict):
            raise ValueError(f"{cfg_file} must hold a JSON object")
        if d.get("vit"):
            meta["adapatch.config"] = json.dumps(d["vit"])
        elif d.get("architecture"):  # timm's Hugging Face format
            cfg = config_from_timm_json(d, sd, overrides)
            return model_from_state_dict(sd, cfg, f"file {path.name}", device)
    return _model_with_metadata(sd, meta, f"file {path.name}", device, overrides)


def config_from_timm_json(d: dict, sd: dict[str, torch.Tensor], overrides: dict) -> ViTConfig:
    """The config of a timm Hugging Face ``config.json`` (``architecture``, ``model_args``,
    ``num_classes``, ``pretrained_cfg`` with ``mean``/``std``). With timm installed the
    architecture is built on the ``meta`` device and read exactly (``config_from_timm``); without
    it, the tensors are read with the architecture's name (heads by its size word) and its mean/std."""
    arch = str(d["architecture"])
    pc = d.get("pretrained_cfg") or {}
    norm = {k: tuple(pc[k]) for k in ("mean", "std") if k in pc}
    o = _apply_preprocess(overrides)
    timm = _import_timm(required=False)
    if timm is not None:
        args = dict(d.get("model_args") or {})
        if "num_classes" in d:
            args["num_classes"] = d["num_classes"]
        if "global_pool" in d and d["global_pool"] is not None:
            args["global_pool"] = d["global_pool"]
        cfg = timm_arch_config(arch, **args)
        fields = {**cfg.to_dict(), **norm, **o}
        return ViTConfig.from_dict(fields)
    return config_from_state_dict(sd, **{"name": arch, **norm, **o})


def load_model_bytes(data: bytes, name: str = "checkpoint.safetensors", device: str | torch.device = "auto",
                     **overrides) -> VisionTransformer:
    """A ViT from checkpoint bytes (see ``read_state_dict_bytes``). The architecture comes from
    ``overrides``, then the config ``save_model`` writes into safetensors files, else it is
    inferred from the tensors; an untrained ``save_model`` file keeps ``pretrained=False``.

    Whatever is wrong with the bytes (unreadable, code-running pickle, malformed metadata, a config
    the tensors do not back), the error is a one-line ``ValueError`` and no module is built for a
    config that would need more parameters than the file holds."""
    try:
        sd = read_state_dict_bytes(data, name)
        meta = safetensors_metadata(data) if str(name).lower().endswith(".safetensors") else {}
        return _model_with_metadata(sd, meta, f"file {name}", device, overrides)
    except Exception as e:  # noqa: BLE001
        raise _as_value_error(e, f"{name} could not be loaded") from None


def normalisation_known(data: bytes, name: str) -> bool:
    """Whether checkpoint bytes say how their inputs are normalised (``save_model``'s metadata);
    a bare state dict does not, and then ``preprocess=`` must be given."""
    return str(name).lower().endswith(".safetensors") and "adapatch.config" in safetensors_metadata(data)


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` strings of safetensors bytes (header only; {} when absent or unreadable)."""
    if len(data) < 8:
        return {}
    n = int.from_bytes(bytes(data[:8]), "little")
    if n > min(len(data) - 8, 100_000_000):
        return {}
    try:
        meta = json.loads(bytes(data[8:8 + n])).get("__metadata__") or {}
    except Exception:  # noqa: BLE001 - ValueError, AttributeError (not an object), RecursionError
        return {}
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}


def _model_with_metadata(sd: dict[str, torch.Tensor], meta: dict[str, str], source: str,
                         device: str | torch.device, overrides: dict) -> VisionTransformer:
    """Build the ViT (config from metadata when present) and mark untrained ``save_model`` files."""
    if "adapatch.config" in meta:
        cfg = config_from_metadata(meta["adapatch.config"], overrides, source)
    else:
        cfg, unknown = _inferred_config(sd, overrides)
        check_state_dict(timm_state_dict(sd), cfg, source)  # what the tensors say is wrong comes first
        if unknown:
            raise ValueError(unknown[0])
    model = model_from_state_dict(sd, cfg, source, device)
    if meta.get("adapatch.pretrained") == "false":
        model.pretrained = False
        model.weights_source = f"{source} (random weights: saved by adapatch from an untrained model)"
    return model


def _import_timm(required: bool = True):
    """The timm module; a one-line ``ValueError`` when it is missing (``required``; else None) or
    installed but broken (a torchvision built for another torch is the usual cause)."""
    try:
        import timm  # optional: never imported at module import time
        return timm
    except ImportError:
        if not required:
            return None
        raise ValueError("timm is not installed (pip install timm); give a .safetensors/.pt file instead") from None
    except Exception as e:  # noqa: BLE001 - e.g. RuntimeError: operator torchvision::nms does not exist
        if not required:
            return None
        raise ValueError(_one_line(
            f"timm is installed but does not import ({_first_line(e)}): its torchvision does not match torch "
            f"{torch.__version__}; install a matching pair (e.g. torch==2.14.1 torchvision==0.29.1)")) from None


class _HostLinspace(torch.overrides.TorchFunctionMode):
    """``torch.linspace`` without a device runs on the CPU: older timm (0.9.x) reads drop-path rates
    with ``.item()`` while building, which a ``meta`` tensor cannot give (thread-local, unlike a patch)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is torch.linspace and kwargs.get("device") is None:
            kwargs["device"] = "cpu"
        return func(*args, **kwargs)


def meta_build(timm, name: str, **model_args):
    """``timm.create_model(name, pretrained=False, **model_args)`` on the ``meta`` device: the
    architecture with no weights, no memory and no download (timm 0.9.x included)."""
    with torch.device("meta"), _HostLinspace():
        return timm.create_model(name, pretrained=False, **model_args)


def timm_arch_config(name: str, **model_args) -> ViTConfig:
    """The ``ViTConfig`` of timm architecture ``name``, read off a model built on the ``meta`` device
    (no weights, no memory, no download); refuses unknown names and unsupported features."""
    timm = _import_timm()
    base = name.split(".")[0]
    is_model = getattr(timm, "is_model", None)
    if is_model is not None and not is_model(base):
        raise ValueError(f"timm has no architecture called {base!r}")
    try:
        tm = meta_build(timm, base, **model_args)
    except Exception as e:  # noqa: BLE001
        raise ValueError(_one_line(f"timm could not build {base!r}: {_first_line(e)}")) from None
    return config_from_timm(tm, name)


HUB_HOST = ("huggingface.co", 443)
OFFLINE_PROBE_S = 3.0


def _hub_reachable(timeout: float = OFFLINE_PROBE_S) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within ``timeout`` s, name lookup
    included (it runs in a daemon thread, so a resolver that hangs cannot hold the caller); False
    when ``HF_HUB_OFFLINE`` is set."""
    import os
    import socket
    import threading
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return False
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(HUB_HOST, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)
    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


@contextlib.contextmanager
def _hub_offline():
    """Hugging Face hub calls inside answer from the local cache only (no retries over the network):
    ``HF_HUB_OFFLINE`` and the hub library's own flag, read at its import, both set, then restored."""
    import os
    old_env = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    mods = []
    try:
        import huggingface_hub.constants as hc
        mods.append((hc, hc.HF_HUB_OFFLINE))
        hc.HF_HUB_OFFLINE = True
    except Exception:  # noqa: BLE001 - no huggingface_hub: only the env var matters
        pass
    try:
        yield
    finally:
        for mod, val in mods:
            mod.HF_HUB_OFFLINE = val
        if old_env is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old_env


def load_timm(name: str, device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """Pretrained weights of a timm ``vit_*``/``deit_*`` model via timm.

    The architecture is checked first, on the ``meta`` device, so an unsupported model is refused
    before anything is downloaded. Offline (``HF_HUB_OFFLINE`` set, or the hub not answering in
    ``OFFLINE_PROBE_S`` s) only cached weights load, and a miss fails at once. Preprocessing is
    timm's data config for the model. Every failure is a one-line ``ValueError``."""
    name = str(name).strip()
    if not name.startswith(TIMM_PREFIXES):
        raise ValueError(_one_line(f"{name!r} is not a local checkpoint file nor a timm vit_*/deit_* model name "
                                   "(only those timm ViT families load)"))
    timm = _import_timm()
    cfg = timm_arch_config(name)  # refuses before any download
    online = _hub_reachable()
    try:
        if online:
            tm = timm.create_model(name, pretrained=True)
        else:
            with _hub_offline():
                tm = timm.create_model(name, pretrained=True)
    except Exception as e:  # noqa: BLE001 - hub unreachable, not cached, no pretrained tag
        why = "offline and its weights are not cached" if not online else _first_line(e)
        raise ValueError(_one_line(f"timm could not provide pretrained weights for {name!r}: {why}")) from None
    try:
        try:
            dc = dict(timm.data.resolve_model_data_config(tm))
        except AttributeError:  # a timm without resolve_model_data_config: the model's pretrained_cfg
            dc = dict(getattr(tm, "pretrained_cfg", None) or {})
        cfg = config_from_timm(tm, name)
        dc.setdefault("mean", cfg.mean)
        dc.setdefault("std", cfg.std)
        cfg = ViTConfig.from_dict({**cfg.to_dict(), "mean": tuple(dc["mean"]), "std": tuple(dc["std"]),
                                   **_apply_preprocess(overrides)})
        model = model_from_state_dict(tm.state_dict(), cfg, f"timm {name}", device)
        model.data_config = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dc.items()}
        return model
    except Exception as e:  # noqa: BLE001
        raise _as_value_error(e, f"timm model {name!r} is not a ViT adapatch can load") from None


def save_model(model: VisionTransformer, path: str | Path) -> None:
    """Write the ViT's tensors (timm names) to ``.safetensors``, with its config and whether it is
    trained (``model.pretrained``) as metadata, so ``load_model`` rebuilds it exactly and keeps
    refusing the attention of an untrained one. Set ``model.pretrained = True`` after training."""
    from safetensors.torch import save_file
    meta = {"adapatch.config": json.dumps(model.config.to_dict()),
            "adapatch.pretrained": "true" if model.pretrained else "false"}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
