"""Batching sequences of different lengths: pad + key mask, packing, and a dynamic batcher.

* Pad + mask: sequences padded to the longest; padding is excluded as attention *keys*; every
  linear layer still pays for the padding.
* Packing: sequences concatenated into one ``[1, sum N_i, D]`` row with a block-diagonal
  attention mask, so linear layers see no padding, but the dense masked attention costs
  ``(sum N_i)^2`` instead of ``sum N_i^2``.
* ``DynamicBatcher``: sort images by token count and cut batches so padding stays small; this
  is what makes pad + mask cheap (see ``benchmarks/bench_latency.py`` for the measured choice).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..validation import check_int


def pad_sequences(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, Nmax, D]`` zero-padded batch and ``[B, Nmax]`` bool mask (True = real token)."""
    if not seqs:
        raise ValueError("seqs must hold at least one sequence")
    lens = torch.tensor([s.shape[0] for s in seqs])
    x = torch.nn.utils.rnn.pad_sequence(list(seqs), batch_first=True)
    mask = torch.arange(x.shape[1])[None] < lens[:, None]
    return x, mask.to(x.device)


def pack_sequences(seqs: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[1, T, D]`` packed row, ``[1, 1, T, T]`` block-diagonal bool mask, start offsets ``[B]``."""
    if not seqs:
        raise ValueError("seqs must hold at least one sequence")
    dev = seqs[0].device
    lens = torch.tensor([s.shape[0] for s in seqs], device=dev)
    seg = torch.repeat_interleave(torch.arange(len(seqs), device=dev), lens)
    mask = seg[:, None] == seg[None, :]
    starts = torch.cumsum(lens, 0) - lens
    return torch.cat(list(seqs))[None], mask[None, None], starts


def forward_padded(model, seqs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits of embedded sequences (``[N_i, D]``, CLS first) through pad + key mask."""
    x, full_mask = pad_sequences(seqs)
    mask = None if bool(full_mask.all()) else full_mask
    x, _ = model.forward_features(x, mask)
    return model.forward_head(x, mask)


def forward_packed(model, seqs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits of embedded sequences through packing (block-diagonal SDPA mask)."""
    if model.config.global_pool != "token" or model.dist_token is not None or model.rope is not None:
        raise ValueError("packing needs a model read from its class token alone (global_pool='token', no "
                         "distillation token, no RoPE); use forward_padded")
    x, mask, starts = pack_sequences(seqs)
    x, _ = model.forward_features(x, mask)
    return model.head(model.fc_norm(x[0, starts]))


class DynamicBatcher:
    """Batches of indices with similar token counts.

    Images are sorted by token count (stable, so equal counts keep their order) and cut into
    batches of at most ``batch_size`` images and at most ``max_tokens`` padded tokens
    (``len(batch) * max count``). Yields numpy index arrays into the original order.
    """

    def __init__(self, token_counts: Sequence[int] | np.ndarray, batch_size: int = 64,
                 max_tokens: int | None = None) -> None:
        counts = np.asarray(token_counts, dtype=np.int64)
        if counts.ndim != 1 or (counts < 1).any():
            raise ValueError("token_counts must be a 1-D sequence of positive integers")
        self.batch_size = check_int("batch_size", batch_size, 1)
        self.max_tokens = None if max_tokens is None else check_int("max_tokens", max_tokens, 1)
        if self.max_tokens is not None and counts.size and self.max_tokens < counts.max():
            raise ValueError(f"max_tokens must be >= the largest token count ({counts.max()}), got {max_tokens}")
        self.counts = counts
        self._batches = self._plan()

    def _plan(self) -> list[np.ndarray]:
        order = np.argsort(self.counts, kind="stable")
        batches: list[np.ndarray] = []
        cur: list[int] = []
        for i in order:  # one pass over images (not patches): planning, not a hot path
            n = self.counts[i]
            if cur and (len(cur) >= self.batch_size or
                        (self.max_tokens is not None and (len(cur) + 1) * n > self.max_tokens)):
                batches.append(np.asarray(cur))
                cur = []
            cur.append(i)
        if cur:
            batches.append(np.asarray(cur))
        return batches

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)

    def padding_fraction(self) -> float:
        """Share of padded slots over all batches (0 = no padding)."""
        slots = sum(len(b) * self.counts[b].max() for b in self._batches)
        return 1.0 - float(self.counts.sum()) / slots if slots else 0.0


def pad_to(x: torch.Tensor, n: int, value: float = 0.0) -> torch.Tensor:
    """Pad dim 1 of ``x`` to length ``n``."""
    pad = [0, 0] * (x.ndim - 2) + [0, n - x.shape[1]]
    return F.pad(x, pad, value=value)
