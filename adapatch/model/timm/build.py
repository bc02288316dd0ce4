"""timm's architectures by name: importing timm, building an architecture on the ``meta`` device,
and reading its config (by name, or from timm's Hugging Face ``config.json``).

timm is optional and imported only inside these functions (``import_timm``), never at module
import. A ``meta``-device build has the architecture's modules and shapes with no weights, no
memory and no download, which is all ``adapatch.model.timm.arch.config_from_timm`` reads.
"""

from __future__ import annotations

import torch

from ...messages import first_line, one_line
from ..config_inference import apply_preprocess, config_from_state_dict
from ..vit import ViTConfig
from .arch import config_from_timm


def import_timm(required: bool = True):
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
        raise ValueError(one_line(
            f"timm is installed but does not import ({first_line(e)}): its torchvision does not match torch "
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
    timm = import_timm()
    base = name.split(".")[0]
    is_model = getattr(timm, "is_model", None)
    if is_model is not None and not is_model(base):
        raise ValueError(f"timm has no architecture called {base!r}")
    try:
        tm = meta_build(timm, base, **model_args)
    except Exception as e:  # noqa: BLE001
        raise ValueError(one_line(f"timm could not build {base!r}: {first_line(e)}")) from None
    return config_from_timm(tm, name)


def config_from_timm_json(d: dict, sd: dict[str, torch.Tensor], overrides: dict) -> ViTConfig:
    """The config of a timm Hugging Face ``config.json`` (``architecture``, ``model_args``,
    ``num_classes``, ``pretrained_cfg`` with ``mean``/``std``). With timm installed the
    architecture is built on the ``meta`` device and read exactly (``config_from_timm``); without
    it, the tensors are read with the architecture's name (heads by its size word) and its mean/std."""
    arch = str(d["architecture"])
    pc = d.get("pretrained_cfg") or {}
    norm = {k: tuple(pc[k]) for k in ("mean", "std") if k in pc}
    o = apply_preprocess(overrides)
    timm = import_timm(required=False)
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
