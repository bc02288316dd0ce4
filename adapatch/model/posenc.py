"""Position encodings for variable-size patches.

Two encodings, combinable (``ViTConfig.pos_mode``):

* ``sample_pos_embed``: a pretrained absolute ``pos_embed`` grid read at each patch's centre by
  bilinear interpolation (``F.grid_sample``), so fixed-grid weights stay meaningful for patches
  of any size and place. Tokens that sit exactly on a grid cell are looked up directly, which
  makes a uniform layout reproduce ``pos_embed`` bit for bit.
* ``PosMLP``: a small MLP on normalised ``(cy, cx, size)`` (the seed's encoding), which also
  tells the model how large a patch is. Zero-initialised when added to a pretrained grid, so
  loading timm weights leaves the forward unchanged.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sample_pos_embed(pos: torch.Tensor, yx: torch.Tensor, grid_idx: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, N, D]`` position vectors of a ``[1, G*G, D]`` grid at normalised centres ``yx``.

    ``yx``: ``[B, N, 2]`` of ``(cy / H, cx / W)`` in [0, 1]. ``grid_idx``: ``[B, N]`` long,
    the row-major grid cell a token coincides with, or -1 (then it is interpolated).
    """
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(f"pos must be [1, G*G, D], got {tuple(pos.shape)}")
    g = math.isqrt(pos.shape[1])
    if g * g != pos.shape[1]:
        raise ValueError(f"pos must hold a square grid, got {pos.shape[1]} positions")
    b, n = yx.shape[:2]
    d = pos.shape[2]
    exact = None
    if grid_idx is not None:
        exact = pos[0][grid_idx.clamp(min=0)]
        if bool((grid_idx >= 0).all()):
            return exact
    grid = pos.reshape(1, g, g, d).permute(0, 3, 1, 2)  # [1, D, G, G]
    pts = torch.stack([yx[..., 1] * 2 - 1, yx[..., 0] * 2 - 1], dim=-1).reshape(1, 1, b * n, 2).to(pos.dtype)
    s = F.grid_sample(grid, pts, mode="bilinear", padding_mode="border", align_corners=False)
    s = s[0, :, 0].transpose(0, 1).reshape(b, n, d)
    if exact is None or grid_idx is None:
        return s
    return torch.where((grid_idx >= 0)[..., None], exact, s)


class PosMLP(nn.Module):
    """MLP ``(cy, cx, size) -> D`` (normalised by the image size, as ``PatchLayout.normalized``)."""

    def __init__(self, dim: int, hidden: int = 64, zero_init: bool = False) -> None:
        super().__init__()
        self.fc1 = nn.Linear(3, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        if zero_init:
            nn.init.zeros_(self.fc2.weight)
            nn.init.zeros_(self.fc2.bias)
            # skipped by VisionTransformer._init_weights (Module.__setattr__'s stub admits tensors and modules only)
            self.fc2._zero_init = True  # type: ignore[assignment]

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(coords)))
