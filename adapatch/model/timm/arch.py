"""Read a timm ViT's architecture into a ``ViTConfig``, and its state dict into adapatch's names.

timm builds a ``vit_*``/``deit_*`` model as one of a few classes (``VisionTransformer``,
``VisionTransformerDistilled``, ``Eva`` for the RoPE families, ``VisionTransformerRelPos``...),
each with many options. ``config_from_timm`` reads every option adapatch reproduces off a model
*instance* (a model built on the ``meta`` device is enough: nothing is downloaded or allocated),
and refuses, with a one-line ``ValueError`` that names the feature, any option it does not
reproduce. So a model either loads and matches timm, or is refused before any weights move:
there is no silent mismatch. Nothing here imports timm; it only reads attributes.

``timm_state_dict`` renames an ``Eva`` state dict into the ``VisionTransformer`` names adapatch
uses (``gamma_1`` -> ``ls1.gamma``, ``q_bias``/``v_bias`` -> ``qkv.bias``, separate
``q_proj``/``k_proj``/``v_proj`` -> one ``qkv``), so one module tree serves every family.
"""

from __future__ import annotations

import torch

from ..vit import VisionTransformer, ViTConfig
from .rope import rope_config_from_timm

SUPPORTED_CLASSES = ("VisionTransformer", "VisionTransformerDistilled", "Eva")
_CLASS_FEATURE = {
    "VisionTransformerRelPos": "relative position bias (relpos)",
    "VisionTransformerSAM": "windowed attention with relative positions (SAM)",
}
_BLOCK_FEATURE = {
    "ParallelScalingBlock": "parallel attention/MLP blocks",
    "ParallelThingsBlock": "parallel attention/MLP blocks",
    "DiffParallelScalingBlock": "differential attention",
    "ResPostBlock": "post-norm blocks",
    "EvaBlockPostNorm": "post-norm blocks",
}


class Unsupported(ValueError):
    """A timm option adapatch does not reproduce (the message names it)."""


def _name(obj) -> str:
    return type(obj).__name__


def _is_identity(m) -> bool:
    return m is None or _name(m) == "Identity"


def _norm_kind(m, where: str) -> tuple[str, float]:
    """``("layernorm" | "rmsnorm", eps)`` of a timm norm layer."""
    n = _name(m)
    if n in ("LayerNorm", "LayerNormFp32", "FastLayerNorm"):
        if not getattr(m, "elementwise_affine", True) or getattr(m, "bias", True) is None:
            raise Unsupported(f"a LayerNorm without affine bias ({where})")
        return "layernorm", float(m.eps)
    if n in ("RmsNorm", "RMSNorm", "RmsNormFp32", "FastRmsNorm"):
        if getattr(m, "weight", None) is None:
            raise Unsupported(f"an RMSNorm without weight ({where})")
        return "rmsnorm", float(m.eps)
    raise Unsupported(f"the normalisation layer {n} ({where})")


def _act_kind(m) -> str:
    n = _name(m)
    if n == "GELU":
        return "gelu_tanh" if getattr(m, "approximate", "none") == "tanh" else "gelu"
    if n == "GELUTanh":
        return "gelu_tanh"
    if n == "QuickGELU":
        return "quick_gelu"
    if n in ("SiLU", "Swish"):
        return "silu"
    raise Unsupported(f"the activation {n}")


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, float)) else (int(v[0]), int(v[1]))


def config_from_timm(tm, name: str = "timm model") -> ViTConfig:
    """The ``ViTConfig`` that reproduces timm model ``tm`` (``Unsupported`` names what does not)."""
    try:
        return _config_from_timm(tm, name)
    except Unsupported as e:
        raise Unsupported(f"{name} is refused: adapatch does not reproduce {e} yet") from None


def _config_from_timm(tm, name: str) -> ViTConfig:
    if isinstance(tm, VisionTransformer):  # already adapatch's ViT (e.g. a hub entry that returns one)
        return ViTConfig.from_dict({**tm.config.to_dict(), "name": name})
    cls = _name(tm)
    if cls not in SUPPORTED_CLASSES:
        raise Unsupported(_CLASS_FEATURE.get(cls, f"the timm architecture class {cls}"))
    pe = tm.patch_embed
    if getattr(pe, "backbone", None) is not None or _name(pe) != "PatchEmbed":
        raise Unsupported("a hybrid CNN stem" if getattr(pe, "backbone", None) is not None
                          else f"the patch embedding {_name(pe)}")
    if not _is_identity(getattr(pe, "norm", None)):
        raise Unsupported("a normalised patch embedding (patch_embed.norm)")
    ph, pw = _pair(pe.patch_size)
    ih, iw = _pair(pe.img_size)
    if ph != pw:
        raise Unsupported(f"non-square patches ({ph}x{pw})")
    if ih != iw:
        raise Unsupported(f"a non-square native input ({ih}x{iw}; adaptive layouts of any shape still work on "
                          "square-input models)")
    proj = pe.proj
    if tuple(proj.kernel_size) != (ph, ph) or tuple(proj.stride) != (ph, ph):
        raise Unsupported("overlapping patch embedding (kernel != stride)")
    blocks = list(tm.blocks)
    b0 = blocks[0]
    if _name(b0) in _BLOCK_FEATURE:
        raise Unsupported(_BLOCK_FEATURE[_name(b0)])
    if _name(b0) not in ("Block", "EvaBlock"):
        raise Unsupported(f"the block type {_name(b0)}")
    if any(_name(b) != _name(b0) for b in blocks):
        raise Unsupported("mixed block types")
    attn = b0.attn
    an = _name(attn)
    if an not in ("Attention", "EvaAttention", "AttentionRope"):
        raise Unsupported("differential attention" if an == "DiffAttention" else f"the attention type {an}")
    if getattr(attn, "gate", None) is not None:
        raise Unsupported("gated attention")
    heads = int(attn.num_heads)
    kv_heads = getattr(attn, "num_kv_heads", heads)
    if kv_heads is not None and int(kv_heads) != heads:
        raise Unsupported("grouped-query attention (num_kv_heads)")
    dim = int(tm.embed_dim)
    if getattr(attn, "head_dim", dim // heads) * heads != dim:
        raise Unsupported("an attention width other than the token width (attn_head_dim)")
    if getattr(tm, "is_causal", False) or getattr(tm, "attn_mask", None) is not None:
        raise Unsupported("causal attention")
    # ---- attention details
    if getattr(attn, "qkv", None) is not None:
        qkv_bias = attn.qkv.bias is not None or getattr(attn, "q_bias", None) is not None
        if getattr(attn, "q_bias", None) is not None and getattr(attn, "v_bias", None) is None:
            raise Unsupported("a query bias without a value bias")
    else:
        qkv_bias = attn.q_proj.bias is not None or attn.v_proj.bias is not None
    qk_norm = not _is_identity(getattr(attn, "q_norm", None))
    attn_norm = not _is_identity(getattr(attn, "norm", None))
    norm, eps = _norm_kind(b0.norm1, "blocks.norm1")
    for where, m in (("blocks.attn.q_norm", getattr(attn, "q_norm", None)),
                     ("blocks.attn.norm", getattr(attn, "norm", None)), ("norm_pre", getattr(tm, "norm_pre", None)),
                     ("norm", getattr(tm, "norm", None)), ("fc_norm", getattr(tm, "fc_norm", None))):
        if not _is_identity(m) and _norm_kind(m, where) != (norm, eps):
            raise Unsupported(f"a {where} unlike the blocks' norm ({_norm_kind(m, where)} vs {(norm, eps)})")
    # ---- MLP
    mlp = b0.mlp
    mn = _name(mlp)
    if mn == "Mlp":
        kind, hidden, gate_last = "mlp", mlp.fc1.out_features, True
        if getattr(mlp, "fc1", None) is None or _name(mlp.fc1) != "Linear":
            raise Unsupported("a convolutional MLP")
    elif mn == "GluMlp":
        kind, hidden, gate_last = "glu", mlp.fc1.out_features // 2, bool(getattr(mlp, "gate_last", True))
        if getattr(mlp, "chunk_dim", -1) != -1:
            raise Unsupported("a GLU MLP split on another axis")
    elif mn == "SwiGLU":
        kind, hidden, gate_last = "swiglu", mlp.fc1_g.out_features, True
    else:
        raise Unsupported(f"the MLP type {mn}")
    act = _act_kind(mlp.act)
    mlp_norm = not _is_identity(getattr(mlp, "norm", None))
    # ---- layer scale
    if _name(b0) == "EvaBlock":
        layer_scale = getattr(b0, "gamma_1", None) is not None
    else:
        layer_scale = _name(getattr(b0, "ls1", None)) == "LayerScale"
        if not layer_scale and not _is_identity(getattr(b0, "ls1", None)):
            raise Unsupported(f"the layer scale {_name(b0.ls1)}")
    # ---- tokens and position
    class_token = getattr(tm, "cls_token", None) is not None
    reg = getattr(tm, "reg_token", None)
    reg_tokens = int(reg.shape[1]) if reg is not None else int(getattr(tm, "num_reg_tokens", 0) or 0)
    dist_token = getattr(tm, "dist_token", None) is not None
    grid = ih // ph
    npt = int(class_token) + int(dist_token) + reg_tokens
    pos = getattr(tm, "pos_embed", None)
    no_embed_class = False
    if pos is not None:
        n = int(pos.shape[1])
        if n == grid * grid:
            no_embed_class = npt > 0
        elif n != grid * grid + npt:
            raise Unsupported(f"a pos_embed of {n} rows for a {grid}x{grid} grid and {npt} prefix tokens")
    rope = {}
    if getattr(tm, "rope", None) is not None:
        try:
            rope = rope_config_from_timm(tm.rope, tm).to_dict()
        except ValueError as e:
            raise Unsupported(str(e)) from None
    if pos is None and not rope:
        raise Unsupported("a ViT without any position embedding")
    # ---- head
    pool = getattr(tm, "global_pool", "token") or ""
    attn_pool = {}
    if getattr(tm, "attn_pool", None) is not None:
        ap = tm.attn_pool
        if getattr(ap, "pos_embed", None) is not None or _is_identity(getattr(ap, "q", None)):
            raise Unsupported("an attention-pool head with its own position embedding or no query projection")
        if getattr(ap, "mlp", None) is None or _name(ap.mlp) != "Mlp" or _is_identity(getattr(ap, "norm", None)):
            raise Unsupported("an attention-pool head without its MLP")
        if _norm_kind(ap.norm, "attn_pool.norm") != (norm, eps) or getattr(ap, "latent_dim", dim) != dim:
            raise Unsupported("an attention-pool head with another norm or width than the blocks")
        attn_pool = dict(latent_len=int(ap.latent_len), mlp_ratio=ap.mlp.fc1.out_features / dim,
                         heads=int(ap.num_heads), qk_norm=not _is_identity(getattr(ap, "q_norm", None)),
                         pool=str(ap.pool),
                         # Eva, and timm before ``pool_include_prefix`` existed (0.9.x), pool every token
                         include_prefix=cls == "Eva" or bool(getattr(tm, "pool_include_prefix", True)))
        if _act_kind(ap.mlp.act) != act:
            raise Unsupported("an attention-pool head with another activation")
        pool = "map"
    elif pool not in ("token", "avg", "max", "avgmax"):
        raise Unsupported(f"global_pool={pool!r} (features without pooling)")
    if getattr(tm, "pool_include_prefix", False) and pool != "map":
        raise Unsupported("pooling that includes the prefix tokens")
    has_norm, has_fc = not _is_identity(getattr(tm, "norm", None)), not _is_identity(getattr(tm, "fc_norm", None))
    if has_norm and has_fc:
        raise Unsupported("both a final norm and an fc_norm")
    head = getattr(tm, "head", None)
    if not _is_identity(head) and _name(head) != "Linear":
        raise Unsupported(f"the head {_name(head)}")
    num_classes = int(head.out_features) if head is not None and _name(head) == "Linear" else 0
    if dist_token and getattr(tm, "distilled_training", False):
        raise Unsupported("a distilled model in distillation-training mode")
    dc = getattr(tm, "pretrained_cfg", None) or {}
    mean, std = tuple(dc.get("mean", (0.5,) * 3)), tuple(dc.get("std", (0.5,) * 3))
    return ViTConfig(img_size=ih, patch_size=ph, dim=dim, depth=len(blocks), heads=heads, mlp_ratio=hidden / dim,
                     num_classes=num_classes, qkv_bias=bool(qkv_bias), mean=mean, std=std, name=name,
                     class_token=class_token, reg_tokens=reg_tokens, dist_token=dist_token,
                     no_embed_class=no_embed_class, pos_embed=pos is not None, global_pool=pool,
                     fc_norm=has_fc, final_norm=has_norm or has_fc,
                     norm_pre=not _is_identity(getattr(tm, "norm_pre", None)),
                     layer_scale=layer_scale, qk_norm=qk_norm, attn_norm=attn_norm, mlp_norm=mlp_norm, mlp=kind,
                     gate_last=gate_last, act=act, norm=norm, norm_eps=eps, patch_bias=proj.bias is not None,
                     proj_bias=attn.proj.bias is not None, attn_pool=attn_pool, rope=rope)


def timm_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` with ``Eva`` names renamed to adapatch's (``VisionTransformer``) names; other keys kept.

    ``gamma_1``/``gamma_2`` -> ``ls1.gamma``/``ls2.gamma``; ``attn.q_bias`` + ``attn.v_bias`` ->
    ``attn.qkv.bias`` (the key bias is zero in EVA); ``attn.q_proj``/``k_proj``/``v_proj`` ->
    ``attn.qkv`` (a missing bias is zero)."""
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in sd.items():
        if k.endswith((".gamma_1", ".gamma_2")):
            out[k[:-len("gamma_1")] + ("ls1.gamma" if k.endswith("1") else "ls2.gamma")] = v
        elif (".attn." in k and k.rsplit(".", 1)[-1] in ("q_bias", "v_bias", "k_bias")) \
                or any(f".attn.{p}." in k for p in ("q_proj", "k_proj", "v_proj")):
            pre, rest = k.split(".attn.", 1)
            groups.setdefault(pre + ".attn.", {})[rest] = v
        else:
            out[k] = v
    for pre, g in groups.items():
        if "q_proj.weight" in g:
            ws = [g[f"{p}_proj.weight"] for p in "qkv"]
            out[pre + "qkv.weight"] = torch.cat(ws, 0)
            bs = [g.get(f"{p}_proj.bias") for p in "qkv"]
            if any(b is not None for b in bs):
                out[pre + "qkv.bias"] = torch.cat([b if b is not None else torch.zeros_like(w[:, 0])
                                                   for b, w in zip(bs, ws)])
        elif "q_bias" in g:
            q, v = g["q_bias"], g["v_bias"]
            out[pre + "qkv.bias"] = torch.cat([q, g.get("k_bias", torch.zeros_like(q)), v])
        else:
            raise ValueError(f"unexpected attention tensors {sorted(g)} under {pre!r}")
    return out
