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

from dataclasses import asdict, dataclass, field
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layout import PatchLayout
from ..validation import check_choice, check_float, check_int
from .embed import AdaptivePatchEmbed, TokenBatch
from .posenc import PosMLP, sample_pos_embed

POS_MODES = ("interp", "mlp", "interp+mlp")
MAX_DIM = 16384
"""Largest token width a ``ViTConfig`` accepts (ViT-22B is 6144 wide)."""
MAX_CLASSES = 1_000_000


def _three_floats(name: str, value) -> tuple[float, float, float]:
    """``value`` as a tuple of 3 finite floats (per-channel mean / std)."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != 3:
        raise ValueError(f"{name} must be 3 numbers (one per RGB channel), got {value!r}"[:200])
    return tuple(check_float(f"{name}[{i}]", v) for i, v in enumerate(value))


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

    def __post_init__(self) -> None:
        check_int("img_size", self.img_size, 1, 8192)
        check_int("patch_size", self.patch_size, 1, 1024)
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size must be a multiple of patch_size, got {self.img_size} and {self.patch_size}")
        check_int("dim", self.dim, 1, MAX_DIM)
        check_int("depth", self.depth, 1, 256)
        check_int("heads", self.heads, 1, 256)
        if self.dim % self.heads:
            raise ValueError(f"dim must be divisible by heads, got dim={self.dim}, heads={self.heads}")
        check_float("mlp_ratio", self.mlp_ratio, 0.0, 64.0)
        if int(self.dim * self.mlp_ratio) < 1:
            raise ValueError(f"mlp_ratio must give an MLP of at least one unit, got {self.mlp_ratio!r} at dim {self.dim}")
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

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ViTConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def key_padding_mask(mask: torch.Tensor | None) -> torch.Tensor | None:
    """``[B, N]`` bool (True = real token) -> ``[B, 1, 1, N]`` attention mask for SDPA."""
    return None if mask is None else mask[:, None, None, :]


class Attention(nn.Module):
    """Multi-head self-attention (timm names ``qkv``, ``proj``).

    ``attn_mask``: bool, True = may attend, broadcastable to ``[B, heads, N, N]``.
    ``policy``: float ``[B, N]`` key weights in [0, 1] (DynamicViT-style soft/straight-through
    token dropping used in training); a query always attends to itself so no row is empty.
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
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
        return self.proj(out.transpose(1, 2).reshape(b, n, c)), attn


class Mlp(nn.Module):
    """Two-layer GELU MLP (timm names ``fc1``, ``fc2``)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (timm names ``norm1``, ``attn``, ``norm2``, ``mlp``)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                return_attn: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, attn = self.attn(self.norm1(x), attn_mask, policy, return_attn)
        x = x + y
        return x + self.mlp(self.norm2(x)), attn


class VisionTransformer(nn.Module):
    """ViT with timm parameter names that also runs on variable-size patch layouts.

    Inputs are normalised images ``[B, 3, H, W]`` (``(x - mean) / std``, see ``normalize``).
    ``pretrained`` is False for random weights; attention-based outputs refuse such models.
    """

    def __init__(self, config: ViTConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = config or ViTConfig(**kwargs)
        self.config = cfg
        self.pretrained = False
        self.weights_source = "random initialisation"
        d = cfg.dim
        self.patch_embed = AdaptivePatchEmbed(cfg.img_size, cfg.patch_size, d)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + cfg.grid_size ** 2, d))
        self.pos_mlp = PosMLP(d, zero_init=cfg.pos_mode == "interp+mlp") if "mlp" in cfg.pos_mode else None
        self.blocks = nn.ModuleList(Block(d, cfg.heads, cfg.mlp_ratio, cfg.qkv_bias) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)
        self.head = nn.Linear(d, cfg.num_classes) if cfg.num_classes else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear) and not getattr(m, "_zero_init", False):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ------------------------------------------------------------------ inputs
    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        """``[B, 3, H, W]`` in [0, 1] -> model input (``(x - mean) / std``)."""
        mean = torch.tensor(self.config.mean, device=images01.device, dtype=images01.dtype)[:, None, None]
        std = torch.tensor(self.config.std, device=images01.device, dtype=images01.dtype)[:, None, None]
        return (images01 - mean) / std

    def tokenize(self, images: torch.Tensor, layouts: Sequence[PatchLayout]) -> TokenBatch:
        """Patches, coordinates and padding mask for a batch of images and their layouts."""
        return self.patch_embed.tokenize(images, layouts)

    def embed(self, tb: TokenBatch) -> torch.Tensor:
        """``[B, 1 + N, D]``: CLS + projected patches + position encoding."""
        x = self.patch_embed.project(tb.patches)
        x = x + self.position(tb.coords, tb.grid_idx)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(x.shape[0], -1, -1)
        return torch.cat([cls, x], dim=1)

    def position(self, coords: torch.Tensor, grid_idx: torch.Tensor) -> torch.Tensor:
        """Position encoding ``[B, N, D]`` from normalised ``(cy, cx, size)`` coordinates."""
        pos = 0
        if "interp" in self.config.pos_mode:
            pos = sample_pos_embed(self.pos_embed[:, 1:], coords[..., :2], grid_idx)
        if self.pos_mlp is not None:
            pos = pos + self.pos_mlp(coords)
        return pos

    # ------------------------------------------------------------------ encoder
    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None, policy: torch.Tensor | None = None,
                         return_attn: bool = False, start: int = 0, end: int | None = None
                         ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Run blocks ``start:end`` (all by default; final norm only after the last block).

        ``mask``: ``[B, N]`` bool (True = real token) or a full ``[B, 1, N, N]`` mask (packing).
        Returns the tokens and the attention probabilities of each block when ``return_attn``.
        """
        am = key_padding_mask(mask) if mask is not None and mask.ndim == 2 else mask
        attns = []
        end = len(self.blocks) if end is None else end
        for blk in self.blocks[start:end]:
            x, a = blk(x, am, policy, return_attn)
            if return_attn:
                attns.append(a)
        if end == len(self.blocks):
            x = self.norm(x)
        return x, attns

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits from the (normed) CLS token."""
        return self.head(x[:, 0])

    def forward_tokens(self, tb: TokenBatch, policy: torch.Tensor | None = None) -> torch.Tensor:
        """Logits for an already tokenised batch (``policy``: optional ``[B, N]`` token weights)."""
        x = self.embed(tb)
        mask = None if tb.mask is None else F.pad(tb.mask, (1, 0), value=True)
        if policy is not None:
            policy = F.pad(policy, (1, 0), value=1.0)
        x, _ = self.forward_features(x, mask, policy)
        return self.forward_head(x)

    def forward(self, images: torch.Tensor, layouts: Sequence[PatchLayout] | None = None) -> torch.Tensor:
        """Logits ``[B, classes]``; ``layouts=None`` runs the fixed grid (``forward_fixed``)."""
        if layouts is None:
            return self.forward_fixed(images)
        return self.forward_tokens(self.tokenize(images, layouts))

    def embed_fixed(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 1 + G*G, D]``: the fixed grid's tokens (Conv2d patch embedding, learned ``pos_embed``)
        after the CLS token; the one fixed-grid embedding (``forward_fixed``, attention maps)."""
        b, _, h, w = images.shape
        if (h, w) != (self.config.img_size, self.config.img_size):
            raise ValueError(f"images must be {self.config.img_size}x{self.config.img_size} for the fixed grid, "
                             f"got {h}x{w}; use forward(images, layouts) for other sizes")
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        pos = self.pos_embed[:, 1:]
        if self.config.pos_mode == "mlp":
            pos = 0
        if self.pos_mlp is not None:
            pos = pos + self.pos_mlp(self.patch_embed.grid_coords(images.device, images.dtype))[None]
        x = x + pos
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
        return torch.cat([cls, x], dim=1)

    def forward_fixed(self, images: torch.Tensor) -> torch.Tensor:
        """The ordinary fixed-grid ViT forward (Conv2d patch embedding, learned ``pos_embed``)."""
        x, _ = self.forward_features(self.embed_fixed(images))
        return self.forward_head(x)
