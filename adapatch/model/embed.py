"""``AdaptivePatchEmbed``: variable-size patches -> fixed-width tokens, batched.

Every box of every layout in a batch is cut from the (edge-padded) image, resized to the model's
``patch_size`` with area interpolation (block mean when larger, replication when smaller; the
same rule as ``adapatch.extract_patches``) and projected with the ViT's ``patch_embed.proj``
Conv2d weights used as one linear map. Gathering is one indexed read per distinct patch size
over the whole batch; there is no loop over patches or images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..layout import PatchLayout
from ..patches import area_resize


@dataclass
class TokenBatch:
    """A padded batch of patch tokens before projection.

    patches: ``[B, N, 3, p, p]``; coords: ``[B, N, 3]`` normalised ``(cy, cx, size)``;
    grid_idx: ``[B, N]`` long, the pos_embed cell a token coincides with or -1;
    mask: ``[B, N]`` bool (True = real token) or None when no image needed padding;
    counts: tokens per image.
    """

    patches: torch.Tensor
    coords: torch.Tensor
    grid_idx: torch.Tensor
    mask: torch.Tensor | None
    counts: list[int]
    hw: tuple[int, int] | None = None
    """The images' size ``(H, W)``: RoPE models place tokens by centre in patch-grid cells."""

    def select(self, idx: torch.Tensor, valid: torch.Tensor | None = None) -> TokenBatch:
        """Tokens ``idx`` ``[B, k]`` of each image (``valid`` ``[B, k]`` marks real ones)."""
        b = torch.arange(idx.shape[0], device=idx.device)[:, None]
        counts = valid.sum(1).tolist() if valid is not None else [idx.shape[1]] * idx.shape[0]
        mask = None if valid is None or bool(valid.all()) else valid
        return TokenBatch(self.patches[b, idx], self.coords[b, idx], self.grid_idx[b, idx], mask, counts, self.hw)


class AdaptivePatchEmbed(nn.Module):
    """Patch embedding for fixed grids (``proj`` Conv2d, timm name) and arbitrary layouts."""

    def __init__(self, img_size: int, patch_size: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.img_size = img_size
        self.patch_size = patch_size
        self.grid_size = img_size // patch_size
        self.proj = nn.Conv2d(3, dim, kernel_size=patch_size, stride=patch_size, bias=bias)

    def project(self, patches: torch.Tensor) -> torch.Tensor:
        """``[..., 3, p, p]`` -> ``[..., D]`` with the Conv2d weights as one linear map."""
        w = self.proj.weight
        return F.linear(patches.flatten(-3), w.reshape(w.shape[0], -1), self.proj.bias)

    def grid_coords(self, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``[G*G, 3]`` normalised ``(cy, cx, size)`` of the fixed grid, row-major."""
        g = self.grid_size
        c = (torch.arange(g, device=device, dtype=dtype) + 0.5) / g
        cy, cx = torch.meshgrid(c, c, indexing="ij")
        return torch.stack([cy.ravel(), cx.ravel(), torch.full_like(cy.ravel(), 1.0 / g)], dim=1)

    def tokenize(self, images: torch.Tensor, layouts: Sequence[PatchLayout]) -> TokenBatch:
        """Cut, resize and pad the tokens of ``layouts`` from ``images`` ``[B, 3, H, W]``."""
        return tokenize(images, layouts, self.patch_size, self.grid_size)

    def forward(self, images: torch.Tensor, layouts: Sequence[PatchLayout]) -> tuple[torch.Tensor, TokenBatch]:
        """Projected tokens ``[B, N, D]`` (no position encoding) and the token batch."""
        tb = self.tokenize(images, layouts)
        return self.project(tb.patches), tb


def tokenize(images: torch.Tensor, layouts: Sequence[PatchLayout], patch_size: int, grid_size: int) -> TokenBatch:
    """See ``AdaptivePatchEmbed.tokenize``; ``grid_size`` is the pos_embed grid side."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    bsz, _, h, w = images.shape
    if len(layouts) != bsz:
        raise ValueError(f"layouts must have one layout per image ({bsz}), got {len(layouts)}")
    for lay in layouts:
        if (lay.height, lay.width) != (h, w):
            raise ValueError(f"layouts must be made for {h}x{w} images, got {lay.height}x{lay.width}")
        if lay.num_tokens == 0:
            raise ValueError("layouts must have at least one token")
    dev, p = images.device, patch_size
    counts = [lay.num_tokens for lay in layouts]
    boxes = np.concatenate([lay.boxes for lay in layouts]).astype(np.int64)
    bidx = np.repeat(np.arange(bsz), counts)
    ch = max(lay.canvas[0] for lay in layouts)
    cw = max(lay.canvas[1] for lay in layouts)
    canvas = images if (ch, cw) == (h, w) else F.pad(images, (0, cw - w, 0, ch - h), mode="replicate")
    t = len(boxes)
    flat = torch.empty((t, 3, p, p), dtype=images.dtype, device=dev)
    ys, xs, ss = boxes[:, 0], boxes[:, 1], boxes[:, 2]
    for s in np.unique(ss):
        s = int(s)
        sel = np.nonzero(ss == s)[0]
        by, bx, bb = ys[sel], xs[sel], torch.as_tensor(bidx[sel], device=dev)
        if (by % s == 0).all() and (bx % s == 0).all() and ch % s == 0 and cw % s == 0:
            grid = canvas.reshape(bsz, 3, ch // s, s, cw // s, s).permute(0, 2, 4, 1, 3, 5)
            tiles = grid[bb, torch.as_tensor(by // s, device=dev), torch.as_tensor(bx // s, device=dev)]
        else:  # unaligned boxes: index arithmetic, still one gather per size
            ar = torch.arange(s, device=dev)
            yy = torch.as_tensor(by, device=dev)[:, None] + ar
            xx = torch.as_tensor(bx, device=dev)[:, None] + ar
            tiles = canvas[bb[:, None, None], :, yy[:, :, None], xx[:, None, :]].permute(0, 3, 1, 2)
        tiles = area_resize(tiles, p)
        flat[torch.as_tensor(sel, device=dev)] = tiles
    # normalised coordinates and exact grid cells
    coords = np.stack([(ys + ss / 2) / h, (xs + ss / 2) / w, ss / max(h, w)], axis=1).astype(np.float32)
    gidx = np.full(t, -1, np.int64)
    if h % grid_size == 0 and w % grid_size == 0 and h == w:
        cell = h // grid_size
        on = (ss == cell) & (ys % cell == 0) & (xs % cell == 0)
        gidx[on] = (ys[on] // cell) * grid_size + xs[on] // cell
    nmax = max(counts)
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.arange(t) - offsets[bidx]
    bi, ri = torch.as_tensor(bidx, device=dev), torch.as_tensor(rank, device=dev)
    patches = torch.zeros((bsz, nmax, 3, p, p), dtype=images.dtype, device=dev)
    patches[bi, ri] = flat
    coord_t = torch.zeros((bsz, nmax, 3), dtype=images.dtype, device=dev)
    coord_t[bi, ri] = torch.as_tensor(coords, device=dev, dtype=images.dtype)
    grid_t = torch.full((bsz, nmax), -1, dtype=torch.long, device=dev)
    grid_t[bi, ri] = torch.as_tensor(gidx, device=dev)
    mask = None
    if min(counts) != nmax:
        mask = torch.zeros((bsz, nmax), dtype=torch.bool, device=dev)
        mask[bi, ri] = True
    return TokenBatch(patches, coord_t, grid_t, mask, counts, (h, w))
