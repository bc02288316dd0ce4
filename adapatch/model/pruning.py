"""Token pruning inside the encoder, at a chosen layer.

* ``TokenPruner``: the seed's learned MLP scorer on token features; keep the top-k by ratio.
  Trained (``forward_pruned_train``) through a straight-through top-k mask applied as a
  DynamicViT-style attention policy, so the frozen ViT's task loss reaches the scorer.
* Attentive pruning (EViT): keep the tokens the CLS token attends to most in the block before
  the cut (mean over heads) and fuse the rest into one token, their attention-weighted mean.

Both return the kept token indices (into the layout's ``boxes``), so a caller can build the
pruned layout with ``layout.with_tokens(kept)`` and draw it. At inference the kept tokens are
really gathered, so the later blocks run on fewer tokens (measured speed-up, not a mask).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..pruning import keep_count
from ..validation import check_choice, check_float, check_int
from .embed import TokenBatch

METHODS = ("learned", "attention")


class TokenPruner(nn.Module):
    """Learned token scorer: LayerNorm -> Linear(D, D/4) -> GELU -> Linear(., 1)."""

    def __init__(self, dim: int, hidden: int | None = None) -> None:
        super().__init__()
        check_int("dim", dim, 1)
        hidden = hidden or max(8, dim // 4)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, N]`` (higher = keep) for tokens ``[B, N, D]`` (no CLS)."""
        return self.fc2(self.act(self.fc1(self.norm(tokens))))[..., 0]


def keep_counts(valid_counts: torch.Tensor, keep_ratio: float) -> torch.Tensor:
    """Tokens kept per image: ``adapatch.keep_count`` (the one rule) of each image's count."""
    return torch.as_tensor(keep_count(valid_counts.detach().cpu().numpy(), keep_ratio), device=valid_counts.device)


def topk_keep(scores: torch.Tensor, valid: torch.Tensor | None, keep_ratio: float
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept indices ``[B, kmax]`` (ascending within each row) and their validity ``[B, kmax]``.

    Image ``i`` keeps ``keep_counts(n_i)`` tokens; ties go to the earlier token.
    """
    keep_ratio = check_float("keep_ratio", keep_ratio, 0.0, 1.0)
    _b, n = scores.shape
    if valid is None:
        valid = torch.ones_like(scores, dtype=torch.bool)
    k = keep_counts(valid.sum(1), keep_ratio)
    kmax = int(k.max())
    s = scores.detach().masked_fill(~valid, float("-inf"))
    order = torch.sort(s, dim=1, descending=True, stable=True).indices[:, :kmax]
    kept_valid = torch.arange(kmax, device=scores.device)[None] < k[:, None]
    idx = torch.where(kept_valid, order, torch.full_like(order, n))  # invalid slots sort last
    idx, _ = torch.sort(idx, dim=1)
    return idx.clamp(max=n - 1), kept_valid


@dataclass
class PruneOutput:
    """Logits, kept indices ``[B, kmax]`` with validity, and the per-token scores ``[B, N]``."""

    logits: torch.Tensor
    kept: torch.Tensor
    kept_valid: torch.Tensor
    scores: torch.Tensor


def _check_layer(model, layer: int, method: str) -> int:
    low = 1 if method == "attention" else 0
    return check_int("layer", layer, low, len(model.blocks) - 1)


def forward_pruned(model, tb: TokenBatch, layer: int, keep_ratio: float, method: str = "learned",
                   pruner: TokenPruner | None = None, fuse: bool | None = None) -> PruneOutput:
    """Run blocks ``[0, layer)`` on all tokens, prune, run the rest on the kept ones.

    ``method="attention"`` (EViT) needs ``layer >= 1``; ``fuse`` (default: True for attention,
    False for learned) appends one token that is the score-weighted mean of the pruned ones.
    """
    keep_ratio = check_float("keep_ratio", keep_ratio, 0.0, 1.0)
    return prune_from(model, score_tokens(model, tb, layer, method, pruner), keep_ratio, fuse)


@dataclass
class ScoredTokens:
    """The state at the cut of ``forward_pruned``: tokens after blocks ``[0, layer)`` (CLS first),
    their validity and scores (``score_tokens``). One of these serves any number of keep ratios
    (``prune_from``)."""

    x: torch.Tensor
    valid: torch.Tensor
    scores: torch.Tensor
    layer: int
    method: str


def score_tokens(model, tb: TokenBatch, layer: int, method: str = "learned",
                 pruner: TokenPruner | None = None) -> ScoredTokens:
    """Blocks ``[0, layer)`` on all tokens and the scorer's per-token scores (the first half of
    ``forward_pruned``)."""
    check_choice("method", method, METHODS)
    layer = _check_layer(model, layer, method)
    if method == "learned" and pruner is None:
        raise ValueError("pruner must be a TokenPruner when method='learned'")
    _check_no_rope(model)
    npt = model.num_prefix_tokens
    x = model.embed(tb)
    mask = None if tb.mask is None else F.pad(tb.mask, (npt, 0), value=True)
    x, attns = model.forward_features(x, mask, return_attn=method == "attention", start=0, end=layer)
    tokens = x[:, npt:]
    valid = tb.mask if tb.mask is not None else torch.ones(tokens.shape[:2], dtype=torch.bool, device=x.device)
    if method == "attention":
        scores = attention_scores(attns[-1], npt, model.cls_token is not None, valid)
    else:
        assert pruner is not None  # checked above for method "learned"
        scores = pruner(tokens)
    return ScoredTokens(x, valid, scores, layer, method)


def attention_scores(attn: torch.Tensor, num_prefix: int, has_cls: bool, valid: torch.Tensor) -> torch.Tensor:
    """``[B, N]`` importance of each patch token from one block's attention ``[B, heads, T, T]``:
    the class token's attention on it (EViT), or, for a model without a class token, the mean
    attention it receives from the real patch tokens. Mean over heads."""
    a = attn.mean(dim=1)
    if has_cls:
        return a[:, 0, num_prefix:]
    w = valid.to(a.dtype)[..., None]
    return (a[:, num_prefix:, num_prefix:] * w).sum(1) / w.sum(1).clamp(min=1)


def _check_no_rope(model) -> None:
    if getattr(model, "rope", None) is not None:
        raise ValueError("token pruning inside the encoder does not support rotary position embeddings (RoPE) "
                         "yet; use an adaptive layout, or a model with a learned pos_embed")


def prune_from(model, st: ScoredTokens, keep_ratio: float, fuse: bool | None = None) -> PruneOutput:
    """Keep the top ``keep_ratio`` of ``st``'s tokens (optionally fuse the rest into one token) and
    run blocks ``[layer, depth)`` and the head (the second half of ``forward_pruned``)."""
    keep_ratio = check_float("keep_ratio", keep_ratio, 0.0, 1.0)
    fuse = (st.method == "attention") if fuse is None else bool(fuse)
    x, valid, scores = st.x, st.valid, st.scores
    npt = model.num_prefix_tokens
    tokens = x[:, npt:]
    idx, kept_valid = topk_keep(scores, valid, keep_ratio)
    bi = torch.arange(x.shape[0], device=x.device)[:, None]
    ones = torch.ones((x.shape[0], npt), dtype=torch.bool, device=x.device)
    parts, masks = [x[:, :npt], tokens[bi, idx]], [ones, kept_valid]
    if fuse:
        keep_mask = torch.zeros_like(valid)
        keep_mask[bi, idx] = kept_valid
        drop = valid & ~keep_mask
        w = scores if st.method == "attention" else scores.softmax(dim=1)
        w = w * drop
        fused = (w[..., None] * tokens).sum(1, keepdim=True) / w.sum(1).clamp(min=1e-12)[:, None, None]
        parts.append(fused)
        masks.append(drop.any(1, keepdim=True))
    x = torch.cat(parts, dim=1)
    keep = torch.cat(masks, dim=1)
    m = None if bool(keep.all()) else keep
    x, _ = model.forward_features(x, m, start=st.layer)
    return PruneOutput(model.forward_head(x, m), idx, kept_valid, scores)


def forward_pruned_train(model, tb: TokenBatch, layer: int, keep_ratio: float, pruner: TokenPruner) -> torch.Tensor:
    """Training forward of the learned pruner: logits with a straight-through top-k policy.

    Forward value equals ``forward_pruned(..., fuse=False)`` (pruned tokens are removed from
    every later attention); backward passes ``d loss / d mask`` to ``sigmoid(score)``.
    """
    layer = _check_layer(model, layer, "learned")
    _check_no_rope(model)
    npt = model.num_prefix_tokens
    x = model.embed(tb)
    mask = None if tb.mask is None else F.pad(tb.mask, (npt, 0), value=True)
    x, _ = model.forward_features(x, mask, start=0, end=layer)
    scores = pruner(x[:, npt:])
    valid = tb.mask if tb.mask is not None else torch.ones_like(scores, dtype=torch.bool)
    idx, kept_valid = topk_keep(scores, valid, keep_ratio)
    hard = torch.zeros_like(scores)
    hard.scatter_(1, idx, kept_valid.to(scores.dtype))
    soft = torch.sigmoid(scores)
    policy = F.pad(hard + soft - soft.detach(), (npt, 0), value=1.0)
    x, _ = model.forward_features(x, mask, policy=policy, start=layer)
    return model.forward_head(x, mask)
