"""A Vision Transformer that accepts variable-size patch tokens, with timm's parameter names.

The module tree mirrors timm's ``VisionTransformer`` (``cls_token``, ``pos_embed``,
``patch_embed.proj``, ``blocks.{i}.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2``, ``norm``,
``head``), so a ``vit_*``/``deit_*`` state dict loads unchanged. Two input paths:

* ``forward_fixed(images)``: the ordinary fixed-grid ViT (Conv2d patch embedding).
* ``forward(images, layouts)``: any ``PatchLayout`` per image; tokens are padded to the longest
  sequence and padding is excluded with a key mask (``F.scaled_dot_product_attention``).

With the uniform layout of the model's patch size both paths give the same logits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layout import PatchLayout
from ..validation import check_choice, check_float, check_int
from .embed import AdaptivePatchEmbed, TokenBatch
from .posenc import PosMLP, sample_pos_embed

POS_MODES = ("interp", "mlp", "interp+mlp")
POOLS = ("token", "avg", "max", "avgmax", "map")
"""Heads: the class token (``token``), a mean / max / both over the patch tokens, or attention
pooling with a learned latent query (``map``, SigLIP-style); as timm's ``global_pool``."""
ACTS = ("gelu", "gelu_tanh", "quick_gelu", "silu")
MLPS = ("mlp", "glu", "swiglu")
"""``mlp``: fc1 -> act -> fc2; ``glu``: one fc1 of twice the width split into value and gate (timm
``GluMlp``; ``gate_last`` says which half is gated); ``swiglu``: separate ``fc1_g`` / ``fc1_x``."""
NORMS = ("layernorm", "rmsnorm")
MAX_DIM = 16384
"""Largest token width a ``ViTConfig`` accepts (ViT-22B is 6144 wide)."""
MAX_CLASSES = 1_000_000


def _three_floats(name: str, value) -> tuple[float, float, float]:
    """``value`` as a tuple of 3 finite floats (per-channel mean / std)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}"[:200])
    r, g, b = (check_float(f"{name}[{i}]", v) for i, v in enumerate(value))
    return r, g, b


@dataclass
class ViTConfig:
    """Architecture of a ViT (timm's ``vit_*_patch{p}_{img}`` fields) plus adapatch extras."""

    img_size: int = 224
    patch_size: int = 16
    dim: int = 192
    depth: int = 12
    heads: int = 3
    mlp_ratio: float = 4.0
    num_classes: int = 1000
    qkv_bias: bool = True
    pos_mode: str = "interp"  # see POS_MODES; "interp" is pure timm
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    name: str = "custom"
    extra: dict = field(default_factory=dict)
    # timm VisionTransformer / Eva options (defaults: the classic ViT of the fields above)
    class_token: bool = True
    reg_tokens: int = 0
    dist_token: bool = False
    no_embed_class: bool = False
    pos_embed: bool = True
    global_pool: str = "token"
    fc_norm: bool = False
    final_norm: bool = True
    norm_pre: bool = False
    layer_scale: bool = False
    qk_norm: bool = False
    attn_norm: bool = False
    mlp_norm: bool = False
    mlp: str = "mlp"
    gate_last: bool = True
    act: str = "gelu"
    norm: str = "layernorm"
    norm_eps: float = 1e-6
    patch_bias: bool = True
    proj_bias: bool = True
    attn_pool: dict = field(default_factory=dict)
    rope: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_int("img_size", self.img_size, 1, 8192)
        check_int("patch_size", self.patch_size, 1, 1024)
        if self.img_size < self.patch_size:
            raise ValueError(f"img_size must be at least patch_size, got {self.img_size} and {self.patch_size}")
        check_int("dim", self.dim, 1, MAX_DIM)
        check_int("depth", self.depth, 1, 256)
        check_int("heads", self.heads, 1, 256)
        if self.dim % self.heads:
            raise ValueError(f"dim must be divisible by heads, got dim={self.dim}, heads={self.heads}")
        check_float("mlp_ratio", self.mlp_ratio, 0.0, 64.0)
        if int(self.dim * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must give an MLP of at least one unit, got {self.mlp_ratio!r} "
                             f"at dim {self.dim}")
        check_int("num_classes", self.num_classes, 0, MAX_CLASSES)
        if not isinstance(self.qkv_bias, bool):
            raise ValueError(f"qkv_bias must be true or false, got {self.qkv_bias!r}")
        if not isinstance(self.pos_mode, str):
            raise ValueError(f"pos_mode must be one of {', '.join(map(repr, POS_MODES))}; got {self.pos_mode!r}")
        check_choice("pos_mode", self.pos_mode, POS_MODES)
        self.mean = _three_floats("mean", self.mean)
        self.std = _three_floats("std", self.std)
        if min(self.std) <= 0:
            raise ValueError(f"std must be 3 positive numbers, got {list(self.std)}")
        if not isinstance(self.name, str):
            raise ValueError(f"name must be a string, got {self.name!r}")
        if not isinstance(self.extra, dict):
            raise ValueError(f"extra must be a dict, got {type(self.extra).__name__}")
        for flag in ("class_token", "dist_token", "no_embed_class", "pos_embed", "fc_norm", "final_norm", "norm_pre",
                     "layer_scale", "qk_norm", "attn_norm", "mlp_norm", "gate_last", "patch_bias", "proj_bias"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        check_int("reg_tokens", self.reg_tokens, 0, 1024)
        for name, choices in (("global_pool", POOLS), ("mlp", MLPS), ("act", ACTS), ("norm", NORMS)):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {getattr(self, name)!r}")
            check_choice(name, getattr(self, name), choices)
        check_float("norm_eps", self.norm_eps, 0.0, 1.0)
        if self.global_pool == "token" and not self.class_token:
            raise ValueError("global_pool='token' needs a class token (class_token=True)")
        if self.dist_token and not (self.class_token and self.global_pool == "token"):
            raise ValueError("a distillation token needs a class token and global_pool='token'")
        if not self.pos_embed and "interp" in self.pos_mode and not self.rope:
            raise ValueError("a ViT without pos_embed needs rotary embeddings (rope) or pos_mode='mlp'")
        for name in ("attn_pool", "rope"):
            if not isinstance(getattr(self, name), dict):
                raise ValueError(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        if (self.global_pool == "map") != bool(self.attn_pool):
            raise ValueError("global_pool='map' and attn_pool (its settings) go together")

    @property
    def grid_size(self) -> int:
        """Patches per side of the fixed grid; an ``img_size`` that is not a multiple of the patch
        size leaves its remainder out, as timm's strided patch embedding does (SigLIP so400m/14 at 384)."""
        return self.img_size // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: class, distillation and register tokens (timm's order)."""
        return int(self.class_token) + int(self.dist_token) + self.reg_tokens

    @property
    def pos_prefix(self) -> int:
        """Prefix tokens that have a ``pos_embed`` row (0 when ``no_embed_class``, as in DeiT-III)."""
        return 0 if self.no_embed_class else self.num_prefix_tokens

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ViTConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def key_padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``[B, N]`` bool (True = real token) -> ``[B, 1, 1, N]`` attention mask for SDPA."""
    return None if mask is None else mask[:, None, None, :]


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)`` (OpenAI CLIP's activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_act(name: str) -> nn.Module:
    """The activation called ``name`` (see ``ACTS``)."""
    factories: dict[str, Callable[[], nn.Module]] = {
        "gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"), "quick_gelu": QuickGELU, "silu": nn.SiLU}
    return factories[name]()


def make_norm(cfg: ViTConfig, width: int) -> nn.Module:
    """The config's normalisation layer over ``width`` channels (LayerNorm or RMSNorm, its eps)."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(width, eps=cfg.norm_eps)
    return nn.LayerNorm(width, eps=cfg.norm_eps)


class LayerScale(nn.Module):
    """Per-channel residual scale (timm ``LayerScale``, parameter ``gamma``)."""

    def __init__(self, dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Attention(nn.Module):
    """Multi-head self-attention (timm names ``qkv``, ``q_norm``, ``k_norm``, ``norm``, ``proj``).

    ``attn_mask``: bool, True = may attend, broadcastable to ``[B, heads, N, N]``.
    ``policy``: float ``[B, N]`` key weights in [0, 1] (DynamicViT-style soft/straight-through
    token dropping used in training); a query always attends to itself so no row is empty.
    ``rope``: rotary embedding of the patch tokens (``adapatch.model.rope``); the first
    ``num_prefix`` tokens (class, registers) are not rotated.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, cfg: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ViTConfig(dim=dim, heads=heads, qkv_bias=qkv_bias)
        self.num_heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = make_norm(cfg, self.head_dim) if cfg.qk_norm else nn.Identity()
        self.k_norm = make_norm(cfg, self.head_dim) if cfg.qk_norm else nn.Identity()
        self.norm = make_norm(cfg, dim) if cfg.attn_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=cfg.proj_bias)
        self.rope_half = bool(cfg.rope.get("rotate_half", False)) if cfg.rope else False

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                return_attn: bool = False, rope: torch.Tensor | None = None, num_prefix: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:
            from .rope import apply_rope
            q = apply_rope(q, rope, num_prefix, self.rope_half).type_as(v)
            k = apply_rope(k, rope, num_prefix, self.rope_half).type_as(v)
        attn = None
        if policy is None and not return_attn:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        else:
            logits = (q * self.scale) @ k.transpose(-2, -1)
            if attn_mask is not None:
                logits = logits.masked_fill(~attn_mask, float("-inf"))
            if policy is None:
                attn = logits.softmax(dim=-1)
            else:
                eye = torch.eye(n, device=x.device, dtype=x.dtype)
                p = policy[:, None, None, :]
                p = p + (1.0 - p) * eye
                e = torch.exp(logits - logits.amax(dim=-1, keepdim=True)) * p
                attn = e / (e.sum(dim=-1, keepdim=True) + 1e-6)
            out = attn @ v
        return self.proj(self.norm(out.transpose(1, 2).reshape(b, n, c))), attn


class Mlp(nn.Module):
    """The block's MLP (timm names): ``fc1 -> act -> [norm] -> fc2``; ``glu``: ``fc1`` twice as wide,
    one half gating the other (``GluMlp``); ``swiglu``: ``act(fc1_g(x)) * fc1_x(x)`` (``SwiGLU``)."""

    def __init__(self, dim: int, hidden: int, cfg: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ViTConfig(dim=dim, heads=1)
        self.kind, self.gate_last = cfg.mlp, cfg.gate_last
        if self.kind == "swiglu":
            self.fc1_g = nn.Linear(dim, hidden)
            self.fc1_x = nn.Linear(dim, hidden)
        else:
            self.fc1 = nn.Linear(dim, hidden * (2 if self.kind == "glu" else 1))
        self.act = make_act(cfg.act)
        self.norm = make_norm(cfg, hidden) if cfg.mlp_norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "swiglu":
            h = self.act(self.fc1_g(x)) * self.fc1_x(x)
        elif self.kind == "glu":
            a, g = self.fc1(x).chunk(2, dim=-1)
            h = a * self.act(g) if self.gate_last else self.act(a) * g
        else:
            h = self.act(self.fc1(x))
        return self.fc2(self.norm(h))


class Block(nn.Module):
    """Pre-norm transformer block (timm names ``norm1``, ``attn``, ``ls1``, ``norm2``, ``mlp``, ``ls2``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 cfg: ViTConfig | None = None) -> None:
        super().__init__()
        cfg = cfg or ViTConfig(dim=dim, heads=heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias)
        self.norm1 = make_norm(cfg, dim)
        self.attn = Attention(dim, heads, qkv_bias, cfg)
        self.ls1 = LayerScale(dim) if cfg.layer_scale else nn.Identity()
        self.norm2 = make_norm(cfg, dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), cfg)
        self.ls2 = LayerScale(dim) if cfg.layer_scale else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                return_attn: bool = False, rope: torch.Tensor | None = None, num_prefix: int = 0
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, attn = self.attn(self.norm1(x), attn_mask, policy, return_attn, rope, num_prefix)
        x = x + self.ls1(y)
        return x + self.ls2(self.mlp(self.norm2(x))), attn


class AttentionPool(nn.Module):
    """Attention pooling with learned latent queries (timm ``AttentionPoolLatent``, the ``map`` head).

    ``settings``: ``latent_len`` (queries), ``mlp_ratio`` of its MLP, ``qk_norm``; padded keys are
    masked, so a batch of different token counts pools each image over its own tokens only."""

    def __init__(self, dim: int, heads: int, cfg: ViTConfig) -> None:
        super().__init__()
        s = cfg.attn_pool
        heads = int(s.get("heads", heads))
        self.num_heads, self.head_dim = heads, dim // heads
        self.latent_len = int(s.get("latent_len", 1))
        self.latent = nn.Parameter(torch.zeros(1, self.latent_len, dim))
        self.q = nn.Linear(dim, dim, bias=cfg.qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=cfg.qkv_bias)
        self.q_norm = make_norm(cfg, self.head_dim) if s.get("qk_norm") else nn.Identity()
        self.k_norm = make_norm(cfg, self.head_dim) if s.get("qk_norm") else nn.Identity()
        self.proj = nn.Linear(dim, dim)
        self.norm = make_norm(cfg, dim)
        hidden = int(dim * float(s.get("mlp_ratio", cfg.mlp_ratio)))
        self.mlp = Mlp(dim, hidden, ViTConfig(dim=dim, heads=1, act=cfg.act, norm=cfg.norm, norm_eps=cfg.norm_eps))
        self.pool = str(s.get("pool", "token"))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, c = x.shape
        q = self.q(self.latent.expand(b, -1, -1)).reshape(b, self.latent_len, self.num_heads, self.head_dim)
        k, v = self.kv(x).reshape(b, n, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q, k = self.q_norm(q.transpose(1, 2)), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_padding_mask(mask))
        out = self.proj(out.transpose(1, 2).reshape(b, self.latent_len, c))
        out = out + self.mlp(self.norm(out))
        return out[:, 0] if self.pool == "token" else out.mean(1)


def pool_tokens(x: torch.Tensor, kind: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, N, D]`` patch tokens -> ``[B, D]`` by ``avg``, ``max`` or ``avgmax`` over the real ones."""
    if mask is None:
        avg, mx = x.mean(1), x.amax(1)
    else:
        m = mask[..., None].to(x.dtype)
        avg = (x * m).sum(1) / m.sum(1).clamp(min=1)
        mx = x.masked_fill(~mask[..., None], float("-inf")).amax(1)
    if kind == "avgmax":
        return 0.5 * (avg + mx)
    return {"avg": avg, "max": mx}[kind]


class VisionTransformer(nn.Module):
    """ViT with timm parameter names that also runs on variable-size patch layouts.

    Inputs are normalised images ``[B, 3, H, W]`` (``(x - mean) / std``, see ``normalize``).
    ``pretrained`` is False for random weights; attention-based outputs refuse such models.
    The sequence is ``[class] [distillation] [registers] patches`` (timm's order); the config's
    timm options (LayerScale, pre-norm, qk-norm, pooling heads, RoPE...) are described on ``ViTConfig``.
    """

    data_config: dict[str, Any]
    """timm's data config, on a model loaded from timm (``load_timm``); unset otherwise."""

    def __init__(self, config: ViTConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = config or ViTConfig(**kwargs)
        self.config = cfg
        self.pretrained = False
        self.weights_source = "random initialisation"
        d = cfg.dim
        self.num_prefix_tokens = cfg.num_prefix_tokens
        self.patch_embed = AdaptivePatchEmbed(cfg.img_size, cfg.patch_size, d, bias=cfg.patch_bias)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if cfg.dist_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, d)) if cfg.reg_tokens else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.pos_prefix + cfg.grid_size ** 2, d)) if cfg.pos_embed else None
        self.pos_mlp = PosMLP(d, zero_init=cfg.pos_mode == "interp+mlp") if "mlp" in cfg.pos_mode else None
        self.rope = None
        if cfg.rope:
            from .rope import RopeEmbedding
            self.rope = RopeEmbedding(cfg.rope, heads=cfg.heads, head_dim=d // cfg.heads, depth=cfg.depth)
        self.norm_pre = make_norm(cfg, d) if cfg.norm_pre else nn.Identity()
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cfg.qkv_bias, cfg) for _ in range(cfg.depth))
        self.norm = make_norm(cfg, d) if cfg.final_norm and not cfg.fc_norm else nn.Identity()
        self.attn_pool = AttentionPool(d, cfg.heads, cfg) if cfg.global_pool == "map" else None
        self.fc_norm = make_norm(cfg, d) if cfg.final_norm and cfg.fc_norm else nn.Identity()
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self.head_dist = ((nn.Linear(d, cfg.num_classes) if cfg.num_classes else nn.Identity())
                          if cfg.dist_token else None)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for t in (self.cls_token, self.dist_token, self.reg_token):
            if t is not None:
                nn.init.normal_(t, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear) and not getattr(m, "_zero_init", False):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(m.weight)
                bias = getattr(m, "bias", None)  # RMSNorm has none
                if bias is not None:
                    nn.init.zeros_(bias)
        if self.attn_pool is not None:
            nn.init.trunc_normal_(self.attn_pool.latent, std=self.config.dim ** -0.5)

    # ------------------------------------------------------------------ inputs
    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> model input (``(x - mean) / std``)."""
        mean = torch.tensor(self.config.mean, device=images01.device, dtype=images01.dtype)[:, None, None]
        std = torch.tensor(self.config.std, device=images01.device, dtype=images01.dtype)[:, None, None]
        return (images01 - mean) / std

    def tokenize(self, images: torch.Tensor, layouts: Sequence[PatchLayout]) -> TokenBatch:
        """Patches, coordinates and padding mask for a batch of images and their layouts."""
        return self.patch_embed.tokenize(images, layouts)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, P, D]`` for patch tokens ``x`` ``[B, N, D]``: the class / distillation / register
        tokens with their ``pos_embed`` rows (``P`` may be 0)."""
        parts: list[torch.Tensor] = [t for t in (self.cls_token, self.dist_token, self.reg_token) if t is not None]
        if not parts:
            return x[:, :0]
        p = torch.cat(parts, dim=1)
        if self.config.pos_prefix and self.pos_embed is not None:
            p = p + self.pos_embed[:, :self.config.pos_prefix]
        return p.expand(x.shape[0], -1, -1)

    def patch_pos_embed(self) -> torch.Tensor:
        """``[1, G*G, D]``: the ``pos_embed`` rows of the patch grid."""
        assert self.pos_embed is not None  # called for models with a pos_embed only
        return self.pos_embed[:, self.config.pos_prefix:]

    def embed(self, tb: TokenBatch) -> torch.Tensor:
        """``[B, P + N, D]``: prefix tokens + projected patches + position encoding (then ``norm_pre``).
        Rotary embeddings, when the model has them, are applied in attention (``rope_for``)."""
        x = self.patch_embed.project(tb.patches)
        x = x + self.position(tb.coords, tb.grid_idx)
        return self.norm_pre(torch.cat([self.prefix(x), x], dim=1))

    def position(self, coords: torch.Tensor, grid_idx: torch.Tensor) -> torch.Tensor | int:
        """Position encoding ``[B, N, D]`` from normalised ``(cy, cx, size)`` coordinates."""
        pos: torch.Tensor | int = 0
        if "interp" in self.config.pos_mode and self.pos_embed is not None:
            pos = sample_pos_embed(self.patch_pos_embed(), coords[..., :2], grid_idx)
        if self.pos_mlp is not None:
            pos = pos + self.pos_mlp(coords)
        return pos

    def rope_for(self, centers: torch.Tensor | None, grid: tuple[float, float]) -> torch.Tensor | None:
        """Rotary embeddings of patch tokens centred at ``centers`` ``[B, N, 2]`` (in patch-grid
        cells) on an image whose uniform grid is ``grid``; None for a model without RoPE."""
        if self.rope is None or centers is None:
            return None
        return self.rope(centers, grid)

    def token_centers(self, tb: TokenBatch, hw: tuple[int, int]) -> torch.Tensor:
        """``[B, N, 2]`` patch centres of a token batch in units of the model's patch grid."""
        from .rope import centers_from_normalized
        return centers_from_normalized(tb.coords, hw, self.config.patch_size)

    # ------------------------------------------------------------------ encoder
    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                         return_attn: bool = False, start: int = 0, end: int | None = None,
                         rope: torch.Tensor | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run blocks ``start:end`` (all by default; final norm only after the last block).

        ``mask``: ``[B, N]`` bool (True = real token) or a full ``[B, 1, N, N]`` mask (packing).
        ``rope``: the patch tokens' rotary embeddings (``rope_for``); per block when it has a
        leading depth axis (learned mixed RoPE). Returns the tokens and the attention
        probabilities of each block when ``return_attn``.
        """
        am = key_padding_mask(mask) if mask is not None and mask.ndim == 2 else mask
        attns = []
        end = len(self.blocks) if end is None else end
        per_block = rope is not None and rope.ndim == 5
        for i in range(start, end):
            r = rope[i] if per_block and rope is not None else rope
            x, a = self.blocks[i](x, am, policy, return_attn, r, self.num_prefix_tokens)
            if return_attn:
                attns.append(a)
        if end == len(self.blocks):
            x = self.norm(x)
        return x, attns

    def forward_head(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits (or pooled features when ``num_classes`` is 0) from the encoder's tokens.

        ``mask``: ``[B, N]`` bool over the whole sequence (True = real token) so that average and
        attention pooling ignore padding."""
        npt = self.num_prefix_tokens
        pm = None if mask is None or mask.ndim != 2 else mask[:, npt:]
        pool = self.config.global_pool
        if pool == "token":
            if self.head_dist is not None:
                return (self.head(self.fc_norm(x[:, 0])) + self.head_dist(self.fc_norm(x[:, 1]))) / 2
            return self.head(self.fc_norm(x[:, 0]))
        if pool == "map":
            assert self.attn_pool is not None  # built for global_pool "map"
            if self.config.attn_pool.get("include_prefix"):
                return self.head(self.fc_norm(self.attn_pool(x, None if mask is None or mask.ndim != 2 else mask)))
            return self.head(self.fc_norm(self.attn_pool(x[:, npt:], pm)))
        return self.head(self.fc_norm(pool_tokens(x[:, npt:], pool, pm)))

    def forward_tokens(self, tb: TokenBatch, policy: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for an already tokenised batch (``policy``: optional ``[B, N]`` token weights)."""
        x = self.embed(tb)
        npt = self.num_prefix_tokens
        mask = None if tb.mask is None else F.pad(tb.mask, (npt, 0), value=True)
        if policy is not None:
            policy = F.pad(policy, (npt, 0), value=1.0)
        x, _ = self.forward_features(x, mask, policy, rope=self.tokens_rope(tb))
        return self.forward_head(x, mask)

    def tokens_rope(self, tb: TokenBatch) -> torch.Tensor | None:
        """The rotary embeddings of a token batch (None without RoPE)."""
        if self.rope is None:
            return None
        hw = tb.hw
        if hw is None:
            raise ValueError("this model uses rotary position embeddings: the token batch must carry its image size")
        p = self.config.patch_size
        return self.rope_for(self.token_centers(tb, hw), (hw[0] / p, hw[1] / p))

    def forward(self, images: torch.Tensor, layouts: Sequence[PatchLayout] | None = None) -> torch.Tensor:
        """Logits ``[B, classes]``; ``layouts=None`` runs the fixed grid (``forward_fixed``)."""
        if layouts is None:
            return self.forward_fixed(images)
        return self.forward_tokens(self.tokenize(images, layouts))

    def embed_fixed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, P + G*G, D]``: the fixed grid's tokens (Conv2d patch embedding, learned ``pos_embed``)
        after the prefix tokens; the one fixed-grid embedding (``forward_fixed``, attention maps)."""
        _b, _, h, w = images.shape
        if (h, w) != (self.config.img_size, self.config.img_size):
            raise ValueError(f"images must be {self.config.img_size}x{self.config.img_size} for the fixed grid, "
                             f"got {h}x{w}; use forward(images, layouts) for other sizes")
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        pos = self.patch_pos_embed() if self.pos_embed is not None else 0
        if self.config.pos_mode == "mlp":
            pos = 0
        if self.pos_mlp is not None:
            pos = pos + self.pos_mlp(self.patch_embed.grid_coords(images.device, images.dtype))[None]
        x = x + pos
        return self.norm_pre(torch.cat([self.prefix(x), x], dim=1))

    def rope_fixed(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
        """Rotary embeddings of the fixed grid (None without RoPE)."""
        if self.rope is None:
            return None
        g = self.config.grid_size
        c = torch.arange(g, device=device, dtype=dtype) + 0.5
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        return self.rope_for(torch.stack([cy.ravel(), cx.ravel()], -1)[None], (g, g))

    def forward_fixed(self, images: torch.Tensor) -> torch.Tensor:
        """The ordinary fixed-grid ViT forward (Conv2d patch embedding, learned ``pos_embed``)."""
        x, _ = self.forward_features(self.embed_fixed(images), rope=self.rope_fixed(images.device))
        return self.forward_head(x)
