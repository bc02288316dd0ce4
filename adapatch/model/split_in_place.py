"""Split tokens in place: refine a layout partway through the encoder instead of re-running it.

After a pass, each block's keys and values of the blocks before the cut ``m`` and the token states
at the cut are kept (``CachedPass``). To split a token, its four children are embedded and run
through blocks ``0..m-1`` *alone*, attending to the kept keys and values of the other tokens (and to
each other): the children see the image as the coarse pass saw it. Their states at the cut then
replace their parent's, and blocks ``m..`` run on the whole new sequence, exactly.

The approximation, said plainly: before the cut the other tokens do not see the children (their
states are the coarse pass's), and the children attend to the coarse pass's keys. After the cut
everything is exact. What it saves: blocks ``0..m-1`` run on the children only (``4k`` queries
against the kept keys) instead of on every token again. ``split_macs`` counts exactly that work
(the ``adapatch.efficiency`` convention: projections, attention products, MLPs, patch embedding).

Rotary embeddings are not supported (their keys depend on positions the kept keys already carry,
but the children's rotation is not wired here); such models are refused with one line.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..layout import PatchLayout


@dataclass
class CachedPass:
    """One image's pass: tokens in sequence order (``boxes``), the kept keys/values of blocks before
    the cut (``[1, heads, P + N, head_dim]`` each), the states entering block ``cut``, the class
    probabilities and the class token's last-block attention on each patch token."""

    boxes: np.ndarray
    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    at_cut: torch.Tensor
    probs: np.ndarray
    attention: np.ndarray
    cut: int


def _qkv(block, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    a = block.attn
    b, n, _ = x.shape
    q, k, v = a.qkv(block.norm1(x)).reshape(b, n, 3, a.num_heads, a.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
    return a.q_norm(q), a.k_norm(k), v


def _finish(block, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The rest of a block after attention: projection, residuals, MLP."""
    b, n, c = x.shape
    x = x + block.ls1(block.attn.proj(block.attn.norm(out.transpose(1, 2).reshape(b, n, c))))
    return x + block.ls2(block.mlp(block.norm2(x)))


def _layout(height: int, width: int, canvas: tuple[int, int], boxes: np.ndarray) -> PatchLayout:
    return PatchLayout(height, width, canvas, np.asarray(boxes, np.int64), strategy="progressive")


def _embed(vit, x: torch.Tensor, lay: PatchLayout) -> torch.Tensor:
    """``[1, P + N, D]`` embeddings of ``lay``'s tokens in its box order (``tokenize`` keeps it)."""
    return vit.embed(vit.tokenize(x, [lay]))


def _tail(vit, h: torch.Tensor, start: int) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """Blocks ``start..`` on the whole sequence, the last one's class attention kept; softmax and
    attention row of the patch tokens."""
    from .attention import read_row
    npt, has_cls = vit.num_prefix_tokens, vit.cls_token is not None
    last = None
    for i in range(start, len(vit.blocks)):
        blk = vit.blocks[i]
        q, k, v = _qkv(blk, h)
        if i == len(vit.blocks) - 1:
            attn = ((q * blk.attn.scale) @ k.transpose(-2, -1)).softmax(-1)
            last = attn
            out = attn @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        h = _finish(blk, h, out)
    h = vit.norm(h)
    probs = torch.softmax(vit.forward_head(h).double(), -1)[0].cpu().numpy()
    assert last is not None
    row = read_row(last.mean(dim=1), npt, has_cls)[0].double().cpu().numpy()
    return h, probs, row


def check_model(vit) -> None:
    if vit.rope is not None:
        raise ValueError("splitting in place does not support rotary position embeddings yet")


def full_pass(vit, x: torch.Tensor, lay: PatchLayout, cut: int) -> CachedPass:
    """A whole pass of ``lay`` on ``x`` (``[1, 3, S, S]``, normalised), keeping what a split needs."""
    check_model(vit)
    h = _embed(vit, x, lay)
    keys, values = [], []
    with torch.inference_mode():
        for i in range(cut):
            blk = vit.blocks[i]
            q, k, v = _qkv(blk, h)
            keys.append(k)
            values.append(v)
            h = _finish(blk, h, F.scaled_dot_product_attention(q, k, v))
        at_cut = h
        _, probs, row = _tail(vit, h, cut)
    return CachedPass(np.asarray(lay.boxes, np.int64).copy(), keys, values, at_cut, probs, row, cut)


def split_pass(vit, x: torch.Tensor, prev: CachedPass, split: np.ndarray, height: int, width: int,
               canvas: tuple[int, int]) -> CachedPass:
    """``prev`` with the tokens ``split`` (positions in its sequence) replaced by their four children,
    which run alone through the blocks before the cut (module doc); the rest runs exactly."""
    npt = vit.num_prefix_tokens
    split = np.asarray(split, np.int64)
    b = prev.boxes[split]
    half = b[:, 2] // 2
    kids = np.concatenate([np.stack([b[:, 0] + dy * half, b[:, 1] + dx * half, half], 1)
                           for dy in (0, 1) for dx in (0, 1)])
    kids = kids[(kids[:, 0] < height) & (kids[:, 1] < width)]  # padding-only children are no tokens
    keep = np.ones(len(prev.boxes), bool)
    keep[split] = False
    seq_keep = torch.as_tensor(np.concatenate([np.ones(npt, bool), keep]), device=x.device)
    with torch.inference_mode():
        c = _embed(vit, x, _layout(height, width, canvas, kids))[:, npt:]
        keys, values = [], []
        for i in range(prev.cut):
            blk = vit.blocks[i]
            q, k, v = _qkv(blk, c)
            kk = torch.cat([prev.keys[i][:, :, seq_keep], k], dim=2)
            vv = torch.cat([prev.values[i][:, :, seq_keep], v], dim=2)
            keys.append(kk)
            values.append(vv)
            c = _finish(blk, c, F.scaled_dot_product_attention(q, kk, vv))
        h = torch.cat([prev.at_cut[:, seq_keep], c], dim=1)
        _, probs, row = _tail(vit, h, prev.cut)
    boxes = np.concatenate([prev.boxes[keep], kids])
    return CachedPass(boxes, keys, values, h, probs, row, prev.cut)


def split_macs(cfg, tokens_before: int, split: int, children: int, cut: int) -> int:
    """MACs of ``split_pass``: the children's patch embedding, blocks ``0..cut-1`` for the children
    (projections and MLP per child, attention against the kept keys and each other), blocks
    ``cut..`` on the whole new sequence, and the head (``model_macs``' formula, class token counted)."""
    d, depth, p = cfg.dim, cfg.depth, cfg.patch_size
    hid = cfg.mlp_ratio * d
    n_new = tokens_before - split + children + 1
    ctx = tokens_before - split + 1
    early = cut * (4 * children * d * d + 2 * children * d * hid + 2 * children * (ctx + children) * d)
    late = (depth - cut) * (4 * n_new * d * d + 2 * n_new * d * hid + 2 * n_new * n_new * d)
    return int(early + late + children * d * 3 * p * p + d * cfg.num_classes)
