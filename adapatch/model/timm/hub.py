"""The model hub (Hugging Face) that timm and open_clip download weights from, and timm's
pretrained ViTs.

Nothing is downloaded at import or test time. ``hub_reachable`` asks whether the hub answers
(``HF_HUB_OFFLINE`` respected) so that an offline machine fails at once instead of retrying over
the network; ``hub_offline`` makes the hub clients answer from the local cache only.
``pretrained`` gets a timm ``vit_*``/``deit_*`` model's pretrained tensors, its ``ViTConfig`` and
timm's data config, checking the architecture on the ``meta`` device before any download;
``adapatch.model.weights.load_timm`` builds the ViT from them.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import torch

from ...messages import as_value_error, first_line, one_line
from ..config_inference import apply_preprocess
from ..vit import ViTConfig
from .arch import config_from_timm
from .build import import_timm, timm_arch_config

TIMM_PREFIXES = ("vit_", "deit_")
"""timm model families this ViT reproduces; other timm names are refused before timm is asked."""


HUB_HOST = ("huggingface.co", 443)
OFFLINE_PROBE_S = 3.0


def hub_reachable(timeout: float = OFFLINE_PROBE_S) -> bool:
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
def hub_offline():
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


@dataclass
class TimmPretrained:
    """A timm model's pretrained tensors (timm's names), the ``ViTConfig`` that reproduces it
    (timm's mean/std unless overridden) and timm's data config for it (lists for tuples)."""

    state_dict: dict[str, torch.Tensor]
    config: ViTConfig
    data_config: dict[str, Any] = field(default_factory=dict)


def pretrained(name: str, **overrides) -> TimmPretrained:
    """Pretrained weights of a timm ``vit_*``/``deit_*`` model via timm, with its config.

    The architecture is checked first, on the ``meta`` device, so an unsupported model is refused
    before anything is downloaded. Offline (``HF_HUB_OFFLINE`` set, or the hub not answering in
    ``OFFLINE_PROBE_S`` s) only cached weights load, and a miss fails at once. The normalisation is
    timm's data config for the model unless ``overrides`` say otherwise (``preprocess=`` or
    ``mean=``/``std=``, and any other ``ViTConfig`` field). Every failure is a one-line ``ValueError``."""
    name = str(name).strip()
    if not name.startswith(TIMM_PREFIXES):
        raise ValueError(one_line(f"{name!r} is not a local checkpoint file nor a timm vit_*/deit_* model name "
                                  "(only those timm ViT families load)"))
    timm = import_timm()
    cfg = timm_arch_config(name)  # refuses before any download
    online = hub_reachable()
    try:
        if online:
            tm = timm.create_model(name, pretrained=True)
        else:
            with hub_offline():
                tm = timm.create_model(name, pretrained=True)
    except Exception as e:  # noqa: BLE001 - hub unreachable, not cached, no pretrained tag
        why = "offline and its weights are not cached" if not online else first_line(e)
        raise ValueError(one_line(f"timm could not provide pretrained weights for {name!r}: {why}")) from None
    try:
        try:
            dc = dict(timm.data.resolve_model_data_config(tm))
        except AttributeError:  # a timm without resolve_model_data_config: the model's pretrained_cfg
            dc = dict(getattr(tm, "pretrained_cfg", None) or {})
        cfg = config_from_timm(tm, name)
        dc.setdefault("mean", cfg.mean)
        dc.setdefault("std", cfg.std)
        cfg = ViTConfig.from_dict({**cfg.to_dict(), "mean": tuple(dc["mean"]), "std": tuple(dc["std"]),
                                   **apply_preprocess(overrides)})
        sd = tm.state_dict()
    except Exception as e:  # noqa: BLE001
        raise as_value_error(e, not_loadable(name)) from None
    return TimmPretrained(sd, cfg, {k: (list(v) if isinstance(v, tuple) else v) for k, v in dc.items()})


def not_loadable(name: str) -> str:
    """The prefix of a one-line error about timm model ``name`` that adapatch cannot load."""
    return f"timm model {name!r} is not a ViT adapatch can load"
