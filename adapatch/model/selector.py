"""``LearnedPatchSelector``: a light CNN scores the ViT's token grid; the top-k cells are kept.

The selector sees the whole image at low cost (a few strided convolutions) and outputs one
logit per grid cell (row-major, the ViT's token order). Only the selected tokens enter the ViT.
Training is end to end through a differentiable relaxation of the discrete choice:

* ``"topk"``: perturbed straight-through top-k: hard top-k of ``logits + Gumbel noise`` in the
  forward pass, gradient of ``sigmoid((g - t) / tau)`` (``t`` between the k-th and (k+1)-th
  value) in the backward pass; exactly k tokens.
* ``"gumbel"``: binary Gumbel-softmax (concrete) per cell with a straight-through 0/1 sample;
  the count is free, pushed down by ``sparsity_penalty``.

Loss = task loss + ``lambda * sparsity_penalty`` (expected keep fraction, or its squared
distance to a target). The mask acts as a DynamicViT attention policy in training, which in the
forward pass equals running the ViT on the kept tokens only (what inference does).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..validation import check_choice, check_float, check_int

RELAXATIONS = ("topk", "gumbel")


class LearnedPatchSelector(nn.Module):
    """CNN ``[B, 3, S, S] -> [B, G*G]`` importance logits; ``S / G`` must be a power of two >= 2."""

    def __init__(self, img_size: int = 64, grid_size: int = 8, width: int = 16) -> None:
        super().__init__()
        img_size = check_int("img_size", img_size, 2)
        grid_size = check_int("grid_size", grid_size, 1)
        width = check_int("width", width, 1, 512)
        r = img_size // grid_size
        if img_size % grid_size or r < 2 or r & (r - 1):
            raise ValueError(f"img_size / grid_size must be a power of two >= 2, got {img_size} / {grid_size}")
        self.img_size, self.grid_size = img_size, grid_size
        layers, c = [], 3
        for i in range(int(math.log2(r))):
            out = min(width * 2 ** i, 128)
            layers += [nn.Conv2d(c, out, 3, stride=2, padding=1), nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
            c = out
        layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, 1, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[B, G*G]`` for normalised images (resized to ``img_size`` if needed)."""
        if images.shape[-2:] != (self.img_size, self.img_size):
            images = F.interpolate(images, size=(self.img_size, self.img_size), mode="area")
        return self.net(images).flatten(1)


def select_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Indices ``[B, k]`` (ascending) of the k highest logits per row."""
    k = check_int("k", k, 1, logits.shape[1])
    return torch.sort(torch.topk(logits, k, dim=1).indices, dim=1).values


def _gumbel(shape: torch.Size, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    u = torch.rand(shape, device=like.device, dtype=like.dtype, generator=generator).clamp(1e-6, 1 - 1e-6)
    return -torch.log(-torch.log(u))


def relaxed_mask(logits: torch.Tensor, k: int | None = None, relaxation: str = "topk", tau: float = 1.0,
                 noise: bool = True, generator: torch.Generator | None = None) -> torch.Tensor:
    """Straight-through 0/1 mask ``[B, N]``: hard in the forward pass, differentiable backward."""
    check_choice("relaxation", relaxation, RELAXATIONS)
    tau = check_float("tau", tau, 1e-3, 100.0)
    if relaxation == "topk":
        if k is None:
            raise ValueError("k must be given for relaxation='topk'")
        k = check_int("k", k, 1, logits.shape[1])
        g = logits + _gumbel(logits.shape, logits, generator) if noise else logits
        vals, idx = torch.topk(g, min(k + 1, g.shape[1]), dim=1)
        thr = vals[:, k - 1] if k == g.shape[1] else (vals[:, k - 1] + vals[:, k]) / 2
        hard = torch.zeros_like(g).scatter_(1, idx[:, :k], 1.0)
        soft = torch.sigmoid((g - thr[:, None].detach()) / tau)
    else:
        u = torch.rand(logits.shape, device=logits.device, dtype=logits.dtype, generator=generator)
        u = u.clamp(1e-6, 1 - 1e-6)
        lg = torch.log(u) - torch.log1p(-u) if noise else torch.zeros_like(logits)
        soft = torch.sigmoid((logits + lg) / tau)
        hard = (soft > 0.5).to(logits.dtype)
    return hard + soft - soft.detach()


def sparsity_penalty(logits: torch.Tensor, target: float | None = None) -> torch.Tensor:
    """Expected keep fraction ``mean(sigmoid(logits))``, or its squared distance to ``target``."""
    p = torch.sigmoid(logits).mean()
    if target is None:
        return p
    target = check_float("target", target, 0.0, 1.0)
    return (p - target) ** 2


def selector_macs(selector: LearnedPatchSelector) -> int:
    """MACs of the learned selector's CNN on one image (convolutions only)."""
    total, hw = 0, selector.img_size
    for m in selector.net:
        if isinstance(m, torch.nn.Conv2d):
            hw = hw // m.stride[0]
            total += hw * hw * m.out_channels * m.in_channels * m.kernel_size[0] * m.kernel_size[1]
    return int(total)
