"""Reading timm's rotary-embedding modules into ``adapatch.model.rope.RopeConfig``.

``rope_config_from_timm`` reads the hyperparameters off a timm ``RotaryEmbeddingCat``,
``RotaryEmbeddingMixed``, ``RotaryEmbeddingDinoV3`` or ``RotaryEmbeddingMRope`` (an ``Eva``'s
``model.rope``; a module built on the ``meta`` device is enough), checks any real tables it holds
against ``adapatch.model.rope``'s, and checks that the model's attention applies them as adapatch
will. Nothing here imports timm: it reads attributes and class names.
"""

from __future__ import annotations

import sys
from typing import Any, TypeGuard

import torch
import torch.nn as nn

from ..rope import RopeConfig, grid_centers, rope_bands, rope_embedding

__all__ = ["rope_config_from_timm"]


def _class_names(obj: Any) -> set[str]:
    return {c.__name__ for c in type(obj).__mro__}


def _real(t: Any) -> TypeGuard[torch.Tensor]:
    """A tensor whose values can be read (not on the meta device)."""
    return isinstance(t, torch.Tensor) and t.device.type != "meta"


def rope_config_from_timm(rope: nn.Module, model: nn.Module | None = None, verify: bool = True) -> RopeConfig:
    """The ``RopeConfig`` of a timm rotary-embedding module (``model.rope`` of an ``Eva``).

    Works on modules built on the ``meta`` device (hyperparameters are read from attributes,
    never from non-persistent buffers there). Supports timm 1.0.x's ``RotaryEmbeddingCat``,
    ``RotaryEmbeddingMixed``, ``RotaryEmbeddingDinoV3`` and ``RotaryEmbeddingMRope``, and the older
    ``RotaryEmbeddingCat`` (timm 0.9/early 1.0: no grid offset/indexing, and a cached table that
    ignores ``temperature``). ``model``: the timm model, to check that its attention blocks apply
    the table the way this module will (layout, prefix tokens, head size, per-block tables).
    ``verify``: where the module holds real (non-meta) tables, recompute them and refuse on a
    mismatch. Raises a one-line ``ValueError`` naming anything unsupported.
    """
    names = _class_names(rope)
    if "RotaryEmbeddingCat" in names:
        cfg = _cat_config(rope)
    elif "RotaryEmbeddingDinoV3" in names:
        cfg = _dinov3_config(rope)
    elif "RotaryEmbeddingMixed" in names:
        cfg = _mixed_config(rope)
    elif "RotaryEmbeddingMRope" in names:
        cfg = _mrope_config(rope)
    elif "RotaryEmbedding" in names:
        raise ValueError("unsupported rotary embedding RotaryEmbedding (separate sin/cos tables); "
                         "only the concatenated kinds used by Eva are supported")
    else:
        raise ValueError(f"unsupported rotary embedding {type(rope).__name__}")
    if verify:
        _verify_tables(rope, cfg)
    if model is not None:
        _check_model(cfg, rope, model)
    return cfg


# The readers below take timm's module as ``Any``: its hyperparameters are plain attributes, which
# nn.Module's stub types as tensors or modules.
def _mrope_config(rope: Any) -> RopeConfig:
    return RopeConfig(kind="mrope", head_dim=int(rope.dim), rotate_half=True, grid_indexing=rope.grid_indexing,
                      temperature=float(rope.temperature), mrope_section=tuple(rope.mrope_section), **_augs(rope))


def _augs(rope: Any) -> dict:
    return {k: getattr(rope, k, None) for k in ("shift_coords", "jitter_coords", "rescale_coords")}


def _cat_config(rope: Any) -> RopeConfig:
    dim = int(rope.dim)
    in_pixels = bool(rope.in_pixels)
    ref = getattr(rope, "ref_feat_shape", None)
    ref = tuple(int(r) for r in ref) if ref is not None else None
    legacy = not hasattr(rope, "grid_offset")
    temperature = float(rope.temperature)
    linear = getattr(rope, "linear_bands", None)
    if legacy:
        # timm <= 1.0.9: integer-index ('ij') or linspace grid, no offset; the table cached at
        # construction (feat_shape given) is built with the default temperature whatever was passed.
        if getattr(rope, "feat_shape", None) is not None:
            temperature = 10000.0
        grid_type, grid_offset, grid_indexing, rotate_half, normalize = (
            "pixel" if in_pixels else "index", 0.0, "ij", False, "separate")
        if linear is None:
            linear = _infer_linear_bands(rope, dim, in_pixels, ref, temperature)
    else:
        grid_type = getattr(rope, "grid_type", None) or ("pixel" if in_pixels else "index")
        grid_offset = float(rope.grid_offset)
        grid_indexing = getattr(rope, "grid_indexing", "ij")
        rotate_half = bool(getattr(rope, "rotate_half", False))
        normalize = getattr(rope, "normalize_coords", "separate")
    return RopeConfig(kind="cat", head_dim=dim, rotate_half=rotate_half, grid_indexing=grid_indexing,
                      grid_offset=grid_offset, temperature=temperature, in_pixels=in_pixels,
                      max_res=float(rope.max_res), linear_bands=bool(linear), grid_type=grid_type,
                      normalize_coords=normalize, ref_feat_shape=ref, **_augs(rope))


def _infer_linear_bands(rope: Any, dim: int, in_pixels: bool, ref, temperature: float) -> bool:
    """Old timm kept no ``linear_bands`` attribute; it only matters for pixel bands, where the
    module's real tables tell which spacing was used."""
    if not in_pixels:
        return False
    for linear in (False, True):
        cfg = RopeConfig(kind="cat", head_dim=dim, in_pixels=True, max_res=float(rope.max_res),
                         linear_bands=linear, grid_type="pixel", ref_feat_shape=ref, temperature=temperature)
        bands = getattr(rope, "bands", None)
        if _real(bands):
            if torch.allclose(bands.detach().float().cpu(), rope_bands(cfg), rtol=1e-5, atol=1e-6):
                return linear
            continue
        table = getattr(rope, "pos_embed", None)
        fs = getattr(rope, "feat_shape", None)
        if _real(table) and fs is not None:
            emb = rope_embedding(cfg, grid_centers(fs), fs)
            if emb.shape == table.shape and torch.allclose(table.detach().float().cpu(), emb, atol=1e-4):
                return linear
            continue
        raise ValueError("cannot tell linear_bands of an old-timm pixel-band RotaryEmbeddingCat built on the meta "
                         "device (build it on the CPU)")
    raise ValueError("an old-timm pixel-band RotaryEmbeddingCat whose tables match neither band spacing")


def _dinov3_config(rope: Any) -> RopeConfig:
    temperature = getattr(rope, "temperature", None)
    mn, mx = getattr(rope, "min_period", None), getattr(rope, "max_period", None)
    indexing = getattr(rope, "grid_indexing", "ij")
    home = sys.modules.get(type(rope).__module__)
    if indexing == "xy" and home is not None and not hasattr(home, "_build_grid"):
        # before timm's shared _build_grid, DINOv3's 'xy' kept the (row, col) channel order
        raise ValueError("dinov3 rope with grid_indexing='xy' from an older timm (its channel order differs)")
    return RopeConfig(kind="dinov3", head_dim=int(rope.dim), rotate_half=bool(getattr(rope, "rotate_half", True)),
                      grid_indexing=getattr(rope, "grid_indexing", "ij"),
                      grid_offset=float(getattr(rope, "grid_offset", 0.0)),
                      temperature=None if temperature is None else float(temperature),
                      min_period=None if mn is None or mx is None else float(mn),
                      max_period=None if mn is None or mx is None else float(mx),
                      normalize_coords=getattr(rope, "normalize_coords", "separate"), **_augs(rope))


def _mixed_config(rope: Any) -> RopeConfig:
    dim, heads, depth = int(rope.dim), int(rope.num_heads), int(rope.depth)
    if dim % heads:
        raise ValueError(f"mixed rope width {dim} is not a multiple of its {heads} heads")
    hd = dim // heads
    freqs = getattr(rope, "freqs", None)
    want = (2, depth, heads, hd // 2)
    if freqs is None or tuple(freqs.shape) != want:
        got = None if freqs is None else tuple(freqs.shape)
        raise ValueError(f"mixed rope freqs of shape {got}, expected {want}")
    return RopeConfig(kind="mixed", head_dim=hd, rotate_half=False, grid_indexing=getattr(rope, "grid_indexing", "xy"),
                      temperature=float(rope.temperature), num_heads=heads, depth=depth, **_augs(rope))


def _verify_tables(rope: Any, cfg: RopeConfig) -> None:
    """Refuse when a real table/band buffer of ``rope`` disagrees with ``cfg`` (an unknown timm variant)."""
    checks = []
    fs = getattr(rope, "feat_shape", None)
    if cfg.kind == "cat":
        checks.append(("bands", getattr(rope, "bands", None), lambda: rope_bands(cfg)))
        if fs is not None:
            checks.append(("pos_embed", getattr(rope, "pos_embed", None),
                           lambda: rope_embedding(cfg, grid_centers(fs), fs)))
    elif cfg.kind == "dinov3":
        checks.append(("periods", getattr(rope, "periods", None), lambda: rope_bands(cfg)))
        if fs is not None:
            checks.append(("pos_embed_cached", getattr(rope, "pos_embed_cached", None),
                           lambda: rope_embedding(cfg, grid_centers(fs), fs)))
    elif cfg.kind == "mrope":
        checks.append(("inv_freq", getattr(rope, "inv_freq", None), lambda: rope_bands(cfg)))
    for name, buf, make in checks:
        if not _real(buf):
            continue
        ref = make()
        got = buf.detach().cpu()
        tol = 1e-4 if got.dtype in (torch.float32, torch.float64) else 2e-2
        if got.shape != ref.shape or not torch.allclose(got.float(), ref.float(), rtol=tol, atol=tol):
            raise ValueError(f"the timm rope's {name} does not match its settings as read "
                             f"({type(rope).__name__} of an unsupported timm version?)")


def _check_model(cfg: RopeConfig, rope: nn.Module, model: nn.Module) -> None:
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return
    npt = int(getattr(model, "num_prefix_tokens", 1) or 0)
    if cfg.kind == "mixed" and len(blocks) != cfg.depth:
        raise ValueError(f"mixed rope with {cfg.depth} tables for {len(blocks)} blocks")
    for blk in blocks:
        attn = getattr(blk, "attn", None)
        if attn is None:
            continue
        half = bool(getattr(attn, "rotate_half", False))
        if half != cfg.rotate_half:
            raise ValueError(f"rope table layout (rotate_half={cfg.rotate_half}) differs from the attention's "
                             f"(rotate_half={half})")
        if not hasattr(attn, "num_prefix_tokens"):
            if npt != 1:  # old timm's EvaAttention leaves exactly the first token unrotated
                raise ValueError(f"old-timm EvaAttention rotates all but one token, but the model has {npt} "
                                 f"prefix tokens")
        elif int(attn.num_prefix_tokens) != npt:
            raise ValueError(f"attention leaves {attn.num_prefix_tokens} tokens unrotated, the model has {npt} "
                             f"prefix tokens")
        hd = getattr(attn, "head_dim", None)
        if hd is not None and int(hd) != cfg.head_dim:
            raise ValueError(f"rope head_dim {cfg.head_dim} differs from the attention head size {hd}")
        kv = getattr(attn, "num_kv_heads", None)
        heads = getattr(attn, "num_heads", None)
        if cfg.kind == "mixed" and heads is not None and int(heads) != cfg.num_heads:
            raise ValueError(f"mixed rope for {cfg.num_heads} heads in attention with {heads} heads")
        if cfg.kind == "mixed" and kv is not None and heads is not None and int(kv) != int(heads):
            raise ValueError("mixed rope with grouped-query attention (per-head tables for fewer key heads)")
