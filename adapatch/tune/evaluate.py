"""Scoring one configuration on a set of images with a model: layouts in the model's frame, the
model's predictions through them, and the MACs they cost.

The reference is the model's prediction on its own full patch grid (``model_grid``). A config's
objective is the accuracy against labels when they are given, else the label-free agreement of its
top-1 class with the full grid's (with the mean KL(full || config) of the softmax outputs beside it).
Forward passes are counted (``forwards``: images through the encoder), which is what the search's
budget is spent in. Images with equal token counts share a batch, so padding never changes a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..device import resolve_device
from ..greedy import greedy
from ..layout import PatchLayout, uniform_for_budget
from ..model.api import model_grid
from ..model.latency import model_macs
from ..model.selector import select_topk, selector_macs
from ..model.task import TaskModel, as_vit
from ..multiscale import multiscale
from ..quadtree import PathImportance, path_importance
from .space import Config, Family

SELECTOR_SALIENCY = "edges"
"""The greedy strategy's saliency (its default)."""


def powers(min_size: int, max_size: int) -> list[int]:
    """``min_size, 2*min_size, ..., max_size``."""
    out, s = [], int(min_size)
    while s <= max_size:
        out.append(s)
        s *= 2
    return out


@dataclass
class Scores:
    """Per image of one config: predicted class, KL(full || config) in nats, tokens, MACs and the
    log-softmax ``[n, classes]`` (for the probability of a label)."""

    predictions: np.ndarray
    kl: np.ndarray
    tokens: np.ndarray
    macs: np.ndarray
    logp: np.ndarray


class Evaluator:
    """Scores configs on ``frames`` (float32 ``[n, S, S, 3]`` in [0, 1], the model's input frame)."""

    def __init__(self, model: Any, frames: np.ndarray, device: str | torch.device = "auto",
                 batch_size: int = 128) -> None:
        self.model = model
        self.vit = as_vit(model)
        self.cfg = self.vit.config
        if not self.cfg.num_classes:
            raise ValueError("model has no classifier head: there is no prediction to tune against")
        self.frames = np.ascontiguousarray(frames, np.float32)
        s = self.cfg.img_size
        if self.frames.ndim != 4 or self.frames.shape[1:] != (s, s, 3):
            raise ValueError(f"frames must be [n, {s}, {s}, 3] (the model's input), got {self.frames.shape}")
        self.device = resolve_device(device)
        self.model.to(self.device)
        self.batch_size = int(batch_size)
        self.patch, self.side = int(self.cfg.patch_size), int(s)
        self.grid = model_grid(model)
        self.total = self.grid.num_tokens
        self.full_macs = model_macs(self.cfg, self.total)
        self.has_selector = isinstance(model, TaskModel) and model.selector is not None
        self.selector_macs = selector_macs(model.selector) if self.has_selector else 0
        self.forwards = 0
        self._ref_logp: dict[int, np.ndarray] = {}
        self._paths: dict[tuple[str, int], PathImportance] = {}
        self._sel: dict[int, torch.Tensor] = {}
        self._thresholds: dict[str, float] = {}

    # ------------------------------------------------------------------ inputs
    def _x(self, idx: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(self.frames[idx]).permute(0, 3, 1, 2).to(self.device)
        return self.vit.normalize(t)

    def _logits(self, idx: np.ndarray, layouts: list[PatchLayout]) -> np.ndarray:
        """Log-softmax ``[len(idx), classes]`` (float64) through per-image layouts."""
        out = np.zeros((len(idx), int(self.cfg.num_classes)), np.float64)
        counts = np.array([lay.num_tokens for lay in layouts])
        with torch.inference_mode():
            for c in np.unique(counts):
                pos = np.flatnonzero(counts == c)
                for i in range(0, len(pos), self.batch_size):
                    p = pos[i:i + self.batch_size]
                    tb = self.vit.tokenize(self._x(idx[p]), [layouts[j] for j in p])
                    logits = self.vit.forward_tokens(tb)
                    out[p] = torch.log_softmax(logits.double(), dim=-1).cpu().numpy()
                    self.forwards += len(p)
        return out

    def reference(self, idx: np.ndarray) -> np.ndarray:
        """Full-grid log-softmax of images ``idx`` (each image's reference runs once)."""
        missing = np.array([i for i in idx if int(i) not in self._ref_logp], np.int64)
        if len(missing):
            logp = self._logits(missing, [self.grid] * len(missing))
            for i, row in zip(missing, logp):
                self._ref_logp[int(i)] = row
        return np.stack([self._ref_logp[int(i)] for i in idx])

    # ------------------------------------------------------------------ budgets and thresholds
    def macs(self, tokens: np.ndarray, family: Family) -> np.ndarray:
        m = np.array([model_macs(self.cfg, int(t)) for t in np.asarray(tokens).ravel()], np.float64)
        return m + (self.selector_macs if family.strategy == "learned_selector" else 0)

    def budget(self, config: Config) -> int:
        """Largest token count whose MACs (selector included) are at most ``level`` of the full grid's;
        at least 1."""
        extra = self.selector_macs if config.family.strategy == "learned_selector" else 0
        n = np.arange(1, self.total + 1)
        macs = self.macs(n, config.family) if extra else np.array([model_macs(self.cfg, int(t)) for t in n])
        ok = np.flatnonzero(macs <= config.level * self.full_macs)
        return int(n[ok[-1]]) if len(ok) else 1

    def path(self, family: Family, i: int) -> PathImportance:
        key = (family.key, int(i))
        if key not in self._paths:
            lo, hi = family.size_range()
            assert family.importance is not None  # the search space gives every quadtree family one
            self._paths[key] = path_importance(self.frames[int(i)], None, min_size=lo, max_size=hi,
                                               importance=family.importance, token_size=self.patch)
        return self._paths[key]

    def solve_threshold(self, config: Config, idx: np.ndarray) -> float:
        """The smallest quadtree threshold whose mean MACs over images ``idx`` is at most the level
        (the coarsest layout's threshold when none is): exact, from the images' curves."""
        if config.key in self._thresholds:
            return self._thresholds[config.key]
        curves = [self.path(config.family, i).curve() for i in idx]
        cand = np.unique(np.concatenate([np.asarray(c.thresholds, np.float64) for c in curves] + [np.zeros(1)]))
        target = config.level * self.full_macs

        def mean_macs(t: float) -> float:
            tok = np.array([int(c.tokens_at(t)) for c in curves])
            return float(self.macs(tok, config.family).mean())

        lo, hi = 0, len(cand) - 1  # tokens fall as the threshold rises: find the first candidate that fits
        if mean_macs(cand[hi]) > target:
            t = float(cand[hi])
        else:
            while lo < hi:
                mid = (lo + hi) // 2
                if mean_macs(cand[mid]) <= target:
                    hi = mid
                else:
                    lo = mid + 1
            t = float(cand[lo])
        self._thresholds[config.key] = t
        return t

    # ------------------------------------------------------------------ layouts and scores
    def layouts(self, config: Config, idx: np.ndarray, threshold: float | None = None) -> list[PatchLayout]:
        """The config's layout of each image ``idx`` (quadtree: at ``threshold``, solved if None)."""
        f, s = config.family, self.side
        if f.strategy == "quadtree":
            t = self.solve_threshold(config, idx) if threshold is None else threshold
            return [self.path(f, i).layout(t) for i in idx]
        n = self.budget(config)
        if f.strategy == "uniform":
            lay = self.grid if n >= self.total else uniform_for_budget(s, s, n)
            return [lay] * len(idx)
        if f.strategy == "multiscale":
            return [multiscale(self.frames[int(i)], n, scales=1, token_size=self.patch) for i in idx]
        if f.strategy == "greedy":  # it fills the image with its largest patch first: never below that grid
            lo, hi = f.size_range()
            n = max(n, (-(-s // hi)) ** 2)
            return [greedy(self.frames[int(i)], SELECTOR_SALIENCY, patch_sizes=powers(lo, hi),
                           budget=n, token_size=self.patch) for i in idx]
        if f.strategy == "learned_selector":
            logits = self._selector_logits(idx)
            k = min(n, self.total)
            top = select_topk(logits, k).cpu().numpy()
            return [self.grid.with_tokens(top[j], strategy="learned_selector", k=k) for j in range(len(idx))]
        raise ValueError(f"unknown strategy {f.strategy!r}")

    def _selector_logits(self, idx: np.ndarray) -> torch.Tensor:
        missing = [int(i) for i in idx if int(i) not in self._sel]
        with torch.inference_mode():
            for j in range(0, len(missing), self.batch_size):
                b = np.array(missing[j:j + self.batch_size])
                for i, row in zip(b, self.model.selector(self._x(b)).float().cpu()):
                    self._sel[int(i)] = row
        return torch.stack([self._sel[int(i)] for i in idx])

    def score_layouts(self, idx: np.ndarray, layouts: list[PatchLayout], extra_macs: float = 0.0) -> Scores:
        """``score`` for layouts made elsewhere (hand-picked baselines); ``extra_macs`` per image (a
        selector's CNN)."""
        idx = np.asarray(idx, np.int64)
        logp = self._logits(idx, layouts)
        ref = self.reference(idx)
        kl = np.clip((np.exp(ref) * (ref - logp)).sum(1), 0.0, None)
        tokens = np.array([lay.num_tokens for lay in layouts], np.int64)
        macs = np.array([model_macs(self.cfg, int(t)) for t in tokens], np.float64) + extra_macs
        return Scores(logp.argmax(1), kl, tokens, macs, logp)

    def score(self, config: Config, idx: np.ndarray, threshold: float | None = None) -> Scores:
        """Predictions, KL against the full grid, tokens and MACs of ``config`` on images ``idx``."""
        idx = np.asarray(idx, np.int64)
        lays = self.layouts(config, idx, threshold)
        logp = self._logits(idx, lays)
        ref = self.reference(idx)
        kl = np.clip((np.exp(ref) * (ref - logp)).sum(1), 0.0, None)
        tokens = np.array([lay.num_tokens for lay in lays], np.int64)
        return Scores(logp.argmax(1), kl, tokens, self.macs(tokens, config.family), logp)
