"""Token counts and ViT FLOPs of a layout, against the uniform grid.

FLOPs follow the convention of ViT papers, which report multiply-accumulates (MACs) as "FLOPs":

    per block (N tokens, width D, MLP ratio 4):  12 * N * D^2  +  2 * N^2 * D
        (QKV 3ND^2 + attention output projection ND^2 + MLP 8ND^2; QK^T and AV N^2 D each)
    whole model:  L * block  +  patch embedding N_p * D * 3 * p^2  +  head D * classes

with N = N_p + 1 (the CLS token). Adaptive layouts embed every patch at p = 16 (resized), so
their embedding cost is that of N_p 16x16 patches. This reproduces DeiT-S 4.6, ViT-B 17.6 and
ViT-L 61.6 GMACs at 224x224.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TypedDict

import numpy as np

from .layout import PatchLayout
from .validation import check_choice, check_int


@dataclass(frozen=True)
class ViTPreset:
    """Size of a ViT: width, depth, heads (MLP ratio 4)."""

    name: str
    dim: int
    depth: int
    heads: int
    num_classes: int = 1000


VIT_PRESETS: dict[str, ViTPreset] = {
    "ViT-Ti": ViTPreset("ViT-Ti", 192, 12, 3),
    "ViT-S": ViTPreset("ViT-S", 384, 12, 6),
    "ViT-B": ViTPreset("ViT-B", 768, 12, 12),
    "ViT-L": ViTPreset("ViT-L", 1024, 24, 16),
}


def vit_flops(num_tokens: int, vit: str = "ViT-B", patch_size: int = 16, cls_token: bool = True) -> int:
    """MACs of one forward pass with ``num_tokens`` patch tokens (formula in the module doc)."""
    num_tokens = check_int("num_tokens", num_tokens, 0)
    patch_size = check_int("patch_size", patch_size, 1, 1024)
    return int(vit_macs(np.int64(num_tokens), vit, patch_size, cls_token))


def vit_macs(num_tokens: np.ndarray | np.integer, vit: str = "ViT-B", patch_size: int = 16,
             cls_token: bool = True) -> np.ndarray:
    """``vit_flops`` for an array of token counts at once (int64 MACs, same shape)."""
    p = VIT_PRESETS[check_choice("vit", vit, VIT_PRESETS)]
    t = np.asarray(num_tokens, dtype=np.int64)
    n = t + (1 if cls_token else 0)
    d = p.dim
    block = 12 * n * d * d + 2 * n * n * d
    return p.depth * block + t * d * 3 * patch_size * patch_size + d * p.num_classes


class Efficiency(TypedDict):
    """What ``efficiency`` returns (a plain dict: it goes into JSON and tables as it is)."""

    vit: str
    tokens: int
    uniform16_tokens: int
    min_size: int
    uniform_min_tokens: int
    flops: int
    uniform16_flops: int
    uniform_min_flops: int
    flops_ratio_vs_uniform16: float
    flops_ratio_vs_uniform_min: float
    token_reduction_vs_uniform16: float
    token_reduction_vs_uniform_min: float
    speedup_vs_uniform16: float
    speedup_vs_uniform_min: float


def efficiency(layout: PatchLayout, vit: str = "ViT-B", patch_size: int = 16) -> Efficiency:
    """Tokens, MACs and ratios against the uniform 16 px grid and the uniform ``min_size`` grid."""
    check_choice("vit", vit, VIT_PRESETS)
    tokens = layout.num_tokens
    if "min_size" in layout.params:
        min_size = int(layout.params["min_size"])
    elif layout.params.get("patch_sizes"):
        min_size = int(min(layout.params["patch_sizes"]))
    else:
        min_size = int(min(layout.sizes)) if tokens else patch_size
    u16 = layout.uniform_tokens(16)
    umin = layout.uniform_tokens(min_size)
    f = vit_flops(tokens, vit, patch_size)
    f16 = vit_flops(u16, vit, patch_size)
    fmin = vit_flops(umin, vit, patch_size)
    return {
        "vit": vit,
        "tokens": tokens,
        "uniform16_tokens": u16,
        "min_size": min_size,
        "uniform_min_tokens": umin,
        "flops": f,
        "uniform16_flops": f16,
        "uniform_min_flops": fmin,
        "flops_ratio_vs_uniform16": f / f16,
        "flops_ratio_vs_uniform_min": f / fmin,
        "token_reduction_vs_uniform16": 1.0 - tokens / u16,
        "token_reduction_vs_uniform_min": 1.0 - tokens / umin,
        "speedup_vs_uniform16": f16 / f if f else float("inf"),
        "speedup_vs_uniform_min": fmin / f if f else float("inf"),
    }


def preset_table() -> list[dict]:
    """The presets as plain dicts (for display and JSON)."""
    return [asdict(p) for p in VIT_PRESETS.values()]
