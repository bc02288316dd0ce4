"""ViT weights: local files (safetensors / safe ``torch.load``), their checks, and the model built
from them; timm's pretrained weights by name go through the same build.

Nothing is downloaded at import or test time. A pickle that needs code execution is refused:
``torch.load(..., weights_only=True)`` only. Before any module is built, the config is checked
against the tensors (``check_state_dict``), so a small file cannot make a large model. Where the
config comes from: ``save_model``'s metadata, a ``config.json`` beside the file (adapatch's, or
timm's: ``adapatch.model.timm.build.config_from_timm_json``), else the tensors
(``adapatch.model.config_inference``). A timm name is only resolved when timm is installed (it is
optional) and its hub is reachable (``adapatch.model.timm.hub``); otherwise ``load_model`` says so.
"""

from __future__ import annotations

import io
import json
import math
import pickle
from pathlib import Path

import torch

from ..device import resolve_device
from ..messages import as_value_error, first_line, one_line
from ..model_refs import CHECKPOINT_SUFFIXES
from ..validation import check_choice
from .config_inference import IMAGENET_MEAN, IMAGENET_STD, PREPROCESS, config_from_state_dict, inferred_config
from .timm.arch import timm_state_dict
from .timm.build import config_from_timm_json
from .timm.hub import not_loadable, pretrained
from .vit import VisionTransformer, ViTConfig

__all__ = [
    "IMAGENET_MEAN", "IMAGENET_STD", "PREPROCESS", "PRESETS", "check_state_dict", "config_from_metadata",
    "config_from_state_dict", "config_param_count", "create_model", "load_model", "load_model_bytes", "load_timm",
    "model_from_state_dict", "normalisation_known", "read_state_dict", "read_state_dict_bytes",
    "safetensors_metadata", "save_model",
]

# timm's vit_{tiny,small,base}_patch16_224 (augreg weights: mean = std = 0.5)
PRESETS: dict[str, dict] = {
    "ViT-Ti": dict(dim=192, depth=12, heads=3, name="vit_tiny_patch16_224"),
    "ViT-S": dict(dim=384, depth=12, heads=6, name="vit_small_patch16_224"),
    "ViT-B": dict(dim=768, depth=12, heads=12, name="vit_base_patch16_224"),
}


def create_model(preset: str = "ViT-Ti", device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """A randomly initialised ViT of a preset size (``pretrained=False``); ``overrides`` go to ``ViTConfig``."""
    check_choice("preset", preset, PRESETS)
    cfg = ViTConfig(**{"img_size": 224, "patch_size": 16, "num_classes": 1000, **PRESETS[preset], **overrides})
    return VisionTransformer(cfg).to(resolve_device(device))


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
        raise ValueError(f"{name} is not a readable PyTorch checkpoint: {first_line(e)}") from None
    return _tensors_only(sd, name)


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
        except Exception as e:  # noqa: BLE001 - safetensors raises its own error type on a bad header
            raise ValueError(f"{path.name} is not a readable safetensors file: {first_line(e)}") from None
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
        raise as_value_error(e, f"{name} could not be read") from None


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
        except Exception as e:  # noqa: BLE001 - SafetensorError: bad header or truncated file
            raise ValueError(f"{name} is not a readable safetensors file: {first_line(e)}") from None
        return _tensors_only(sd, name)
    return _torch_load(io.BytesIO(bytes(data)), name)


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
        raise ValueError(one_line(f"{source}: its adapatch config metadata is invalid: {first_line(e)}")) from None


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
        raise ValueError(f"weights do not match the ViT: {first_line(e)}") from None
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
            raise as_value_error(e, f"{path.name} could not be loaded") from None
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
        raise as_value_error(e, f"{name} could not be loaded") from None


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
        cfg, unknown = inferred_config(sd, overrides)
        check_state_dict(timm_state_dict(sd), cfg, source)  # what the tensors say is wrong comes first
        if unknown:
            raise ValueError(unknown[0])
    model = model_from_state_dict(sd, cfg, source, device)
    if meta.get("adapatch.pretrained") == "false":
        model.pretrained = False
        model.weights_source = f"{source} (random weights: saved by adapatch from an untrained model)"
    return model


def load_timm(name: str, device: str | torch.device = "auto", **overrides) -> VisionTransformer:
    """Pretrained weights of a timm ``vit_*``/``deit_*`` model via timm, as adapatch's ViT.

    The tensors, config and data config come from ``adapatch.model.timm.hub.pretrained`` (the
    architecture is checked on the ``meta`` device before anything is downloaded; offline, only
    cached weights load and a miss fails at once); the ViT is built from them here and keeps
    timm's data config as ``model.data_config``. Every failure is a one-line ``ValueError``."""
    got = pretrained(name, **overrides)
    name = str(name).strip()
    try:
        model = model_from_state_dict(got.state_dict, got.config, f"timm {name}", device)
        model.data_config = got.data_config
        return model
    except Exception as e:  # noqa: BLE001
        raise as_value_error(e, not_loadable(name)) from None


def save_model(model: VisionTransformer, path: str | Path) -> None:
    """Write the ViT's tensors (timm names) to ``.safetensors``, with its config and whether it is
    trained (``model.pretrained``) as metadata, so ``load_model`` rebuilds it exactly and keeps
    refusing the attention of an untrained one. Set ``model.pretrained = True`` after training."""
    from safetensors.torch import save_file
    meta = {"adapatch.config": json.dumps(model.config.to_dict()),
            "adapatch.pretrained": "true" if model.pretrained else "false"}
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path), metadata=meta)
