"""Progressive refinement: coarse tokens first, split where it matters, stop when the model is sure.

Each image starts from a coarse layout (the model's grid at twice its patch size by default), runs
through the model, and while its top-1 probability is under ``tau`` the ``k`` best-scoring tokens
that can still split are replaced by their four children (the layout stays an exact tiling) and the
model runs again, re-running every block on the new layout (CF-ViT's re-run, without its feature
reuse). It stops when the model is confident, when the token budget is spent, when nothing can
split, or after ``max_steps`` passes. Every pass is counted in MACs (``model_macs``, the
``adapatch.efficiency`` convention): a refined image pays for its coarse passes too.

Scores that choose what to split (``SCORES``):

* ``"attention"``: the class token's attention on each patch token in the last block, read from the
  same pass (no extra cost); where the model looks;
* ``"content"``: the squared error of a flat patch over the token's pixels (variance x area, from
  integral images): where the pixels vary, whatever the model thinks.

The refinement itself does not depend on ``tau``: ``trace`` runs every image to the end once and
``at_tau`` reads off the result for any threshold, which is how ``solve_tau`` fits a threshold to a
target mean MACs on a held-out set (as DVT fits its exits) without re-running the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from ..layout import PatchLayout, sort_boxes, uniform
from ..validation import check_choice, check_float, check_int
from .latency import model_macs
from .task import as_vit, prepare_image, resize_for_model

SCORES = ("attention", "content")
MODES = ("rerun", "inplace")
EXIT_REASONS = ("confident", "budget", "nothing_to_split", "max_steps")
TOP = 5
"""Classes kept per step (the most probable), so a 1000-class model's trace stays small."""


@dataclass
class Step:
    """One pass: the layout it ran, its tokens and MACs, the most probable classes."""

    layout: dict
    tokens: int
    macs: int
    top_classes: list[int]
    top_probs: list[float]

    @property
    def confidence(self) -> float:
        return float(self.top_probs[0])

    @property
    def prediction(self) -> int:
        return int(self.top_classes[0])


@dataclass
class ProgressiveResult:
    """One image's refinement: every step up to the exit, why it stopped, and what it cost."""

    steps: list[Step]
    exit_reason: str
    params: dict = field(default_factory=dict)

    @property
    def prediction(self) -> int:
        return self.steps[-1].prediction

    @property
    def confidence(self) -> float:
        return self.steps[-1].confidence

    @property
    def macs(self) -> int:
        """MACs of every pass made."""
        return int(sum(s.macs for s in self.steps))

    @property
    def tokens(self) -> int:
        """Tokens of the last pass."""
        return self.steps[-1].tokens

    def layout(self, step: int = -1) -> PatchLayout:
        return PatchLayout.from_dict(self.steps[step].layout)

    def to_dict(self) -> dict[str, Any]:
        return {"format": "adapatch.ProgressiveResult/1", "steps": [asdict(s) for s in self.steps],
                "exit_reason": self.exit_reason, "prediction": self.prediction, "confidence": self.confidence,
                "macs": self.macs, "tokens": self.tokens, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProgressiveResult:
        return cls([Step(**s) for s in d["steps"]], str(d["exit_reason"]), dict(d.get("params") or {}))


# ------------------------------------------------------------------ splitting
def splittable(layout: PatchLayout, min_size: int) -> np.ndarray:
    """Bool per token: its box is at least twice ``min_size`` and even, so its four children are whole
    boxes of at least ``min_size``."""
    s = layout.boxes[:, 2]
    return (s >= 2 * min_size) & (s % 2 == 0)


def split_tokens(layout: PatchLayout, idx: np.ndarray) -> PatchLayout:
    """``layout`` with the tokens ``idx`` replaced by their four quadrants (an exact tiling again)."""
    idx = np.asarray(idx, np.int64)
    if len(idx) == 0:
        return layout
    b = layout.boxes[idx].astype(np.int64)
    h = b[:, 2] // 2
    kids = np.concatenate([np.stack([b[:, 0] + dy * h, b[:, 1] + dx * h, h], 1) for dy in (0, 1) for dx in (0, 1)])
    keep = np.ones(layout.num_tokens, bool)
    keep[idx] = False
    # children lying wholly in the padding carry no pixel: they are no tokens (as in the quadtree)
    inside = (kids[:, 0] < layout.height) & (kids[:, 1] < layout.width)
    boxes = sort_boxes(np.concatenate([layout.boxes[keep].astype(np.int64), kids[inside]]))
    dropped = sort_boxes(np.concatenate([layout.dropped.astype(np.int64), kids[~inside]]))
    return PatchLayout(layout.height, layout.width, layout.canvas, boxes, dropped, strategy="progressive",
                       params=dict(layout.params))


def content_scores(frame: np.ndarray, layout: PatchLayout) -> np.ndarray:
    """Per token, the squared error of its flat mean over the box's pixels (all channels), from
    integral images (boxes clipped to the image)."""
    a = np.asarray(frame, np.float64)
    ii = np.zeros((a.shape[0] + 1, a.shape[1] + 1, a.shape[2]))
    ii2 = np.zeros_like(ii)
    ii[1:, 1:] = a.cumsum(0).cumsum(1)
    ii2[1:, 1:] = (a * a).cumsum(0).cumsum(1)
    y0, x0, s = layout.boxes[:, 0], layout.boxes[:, 1], layout.boxes[:, 2]
    y1, x1 = np.minimum(y0 + s, a.shape[0]), np.minimum(x0 + s, a.shape[1])

    def box(t: np.ndarray) -> np.ndarray:
        return t[y1, x1] - t[y0, x1] - t[y1, x0] + t[y0, x0]

    n = np.maximum((y1 - y0) * (x1 - x0), 1)[:, None]
    sx, sxx = box(ii), box(ii2)
    return np.clip(sxx - sx * sx / n, 0, None).sum(1)


def choose_split(layout: PatchLayout, scores: np.ndarray, k: int, min_size: int, max_tokens: int
                 ) -> np.ndarray | str:
    """Positions of the ``k`` best-scoring splittable tokens (ties: the larger box, then the earlier
    token), fewer when a split would pass ``max_tokens``; the exit reason when none can split."""
    ok = splittable(layout, min_size)
    if not ok.any():
        return "nothing_to_split"
    room = (max_tokens - layout.num_tokens) // 3
    if room < 1:
        return "budget"
    cand = np.flatnonzero(ok)
    order = np.lexsort((cand, -layout.boxes[cand, 2], -np.asarray(scores, np.float64)[cand]))
    return cand[order[:min(k, room)]]


def refine(layout: PatchLayout, scores: np.ndarray, k: int, min_size: int, max_tokens: int) -> PatchLayout | str:
    """``layout`` with ``choose_split``'s tokens split (or its exit reason)."""
    idx = choose_split(layout, scores, k, min_size, max_tokens)
    return idx if isinstance(idx, str) else split_tokens(layout, idx)


# ------------------------------------------------------------------ running
def _passes(vit, x: torch.Tensor, layouts: list[PatchLayout], batch_size: int
            ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Softmax ``[B, C]`` and per image the class token's last-block attention on each of its tokens;
    images with equal token counts share a batch (no padding)."""
    probs = np.zeros((len(layouts), int(vit.config.num_classes)), np.float64)
    attn: list[np.ndarray] = [np.zeros(0)] * len(layouts)
    counts = np.array([lay.num_tokens for lay in layouts])
    npt, has_cls = vit.num_prefix_tokens, vit.cls_token is not None
    from .attention import read_row
    with torch.inference_mode():
        for c in np.unique(counts):
            pos = np.flatnonzero(counts == c)
            for i in range(0, len(pos), batch_size):
                p = pos[i:i + batch_size]
                tb = vit.tokenize(x[p], [layouts[j] for j in p])
                h, attns = vit.forward_features(vit.embed(tb), return_attn=True, rope=vit.tokens_rope(tb))
                probs[p] = torch.softmax(vit.forward_head(h).double(), -1).cpu().numpy()
                rows = read_row(attns[-1].mean(dim=1), npt, has_cls).double().cpu().numpy()
                for j, r in zip(p, rows):
                    attn[j] = r
    return probs, attn


def trace(model, images: Sequence[np.ndarray], *, score: str = "attention", k: int = 4,
          start: PatchLayout | None = None, max_tokens: int | None = None, max_steps: int = 8,
          tau: float = float("inf"), mode: str = "rerun", cut: int | None = None,
          device: str | torch.device = "auto", batch_size: int = 128) -> list[ProgressiveResult]:
    """Refine every image (resized to the model's input) step by step; with the default ``tau``
    (never confident) to the end, which ``at_tau`` reads for any threshold. Batched: the images
    still refining run together at each step, whatever step the others stopped at.

    ``start``: the first layout of every image (default: the model's grid at twice its patch size,
    a quarter of its tokens); ``k``: tokens split per step; ``max_tokens``: at most this many tokens
    (default: the model's full grid); tokens never split below the model's patch size.
    ``mode``: ``"rerun"`` runs every block again on each refined layout; ``"inplace"`` splits the
    tokens after block ``cut`` (default: half the depth) and runs only the children through the
    blocks before it (``adapatch.model.split_in_place``; one image at a time)."""
    check_choice("score", score, SCORES)
    check_choice("mode", mode, MODES)
    k = check_int("k", k, 1)
    max_steps = check_int("max_steps", max_steps, 1, 64)
    tau = float(tau)
    vit = as_vit(model)
    cfg = vit.config
    if not cfg.num_classes:
        raise ValueError("model has no classifier head: there is no confidence to stop on")
    if vit.rope is not None:
        raise ValueError("progressive refinement does not support rotary position embeddings yet")
    side, patch = int(cfg.img_size), int(cfg.patch_size)
    grid_tokens = uniform(side, side, patch).num_tokens
    max_tokens = grid_tokens if max_tokens is None else check_int("max_tokens", max_tokens, 1)
    start = start if start is not None else uniform(side, side, 2 * patch)
    if (start.height, start.width) != (side, side):
        raise ValueError(f"start must be a layout of the model's {side}x{side} input, got {start.height}x{start.width}")
    frames = [resize_for_model(np.asarray(im, np.float32), model) for im in images]
    if not frames:
        return []
    x = torch.cat([prepare_image(f, vit, device, resize=False) for f in frames])
    model.to(x.device)
    cut = len(vit.blocks) // 2 if cut is None else check_int("cut", cut, 0, len(vit.blocks))
    params = {"score": score, "k": k, "max_tokens": max_tokens, "max_steps": max_steps, "tau": tau,
              "patch_size": patch, "mode": mode, **({"cut": cut} if mode == "inplace" else {})}
    if mode == "inplace":
        return [_trace_inplace(vit, x[i:i + 1], frames[i], start, score, k, patch, max_tokens, max_steps, tau, cut,
                               params) for i in range(len(frames))]
    layouts = [start] * len(frames)
    steps: list[list[Step]] = [[] for _ in frames]
    reasons: list[str | None] = [None] * len(frames)
    active = list(range(len(frames)))
    while active:
        probs, attn = _passes(vit, x[active], [layouts[i] for i in active], batch_size)
        still = []
        for j, i in enumerate(active):
            lay = layouts[i]
            top = np.argsort(-probs[j], kind="stable")[:TOP]
            steps[i].append(Step(lay.to_dict(), lay.num_tokens, model_macs(cfg, lay.num_tokens),
                                 [int(c) for c in top], [float(probs[j][c]) for c in top]))
            if probs[j][top[0]] >= tau:
                reasons[i] = "confident"
                continue
            if len(steps[i]) >= max_steps:
                reasons[i] = "max_steps"
                continue
            s = attn[j] if score == "attention" else content_scores(frames[i], lay)
            nxt = refine(lay, s, k, patch, max_tokens)
            if isinstance(nxt, str):
                reasons[i] = nxt
                continue
            layouts[i] = nxt
            still.append(i)
        active = still
    return [ProgressiveResult(st_, str(r), params) for st_, r in zip(steps, reasons)]


def _trace_inplace(vit, x: torch.Tensor, frame: np.ndarray, start: PatchLayout, score: str, k: int, patch: int,
                   max_tokens: int, max_steps: int, tau: float, cut: int, params: dict) -> ProgressiveResult:
    """``trace`` of one image, splitting in place (``split_in_place``)."""
    from .split_in_place import full_pass, split_macs, split_pass
    cfg = vit.config
    h, w, canvas = start.height, start.width, start.canvas
    dropped = start.dropped.astype(np.int64)
    cp = full_pass(vit, x, start, cut)
    macs = model_macs(cfg, start.num_tokens)
    steps: list[Step] = []
    while True:
        seq = PatchLayout(h, w, canvas, cp.boxes, strategy="progressive")  # sequence order
        record = PatchLayout(h, w, canvas, sort_boxes(cp.boxes.astype(np.int64)), sort_boxes(dropped),
                             strategy="progressive", params={"mode": "inplace"})
        top = np.argsort(-cp.probs, kind="stable")[:TOP]
        steps.append(Step(record.to_dict(), seq.num_tokens, int(macs), [int(c) for c in top],
                          [float(cp.probs[c]) for c in top]))
        if cp.probs[top[0]] >= tau:
            return ProgressiveResult(steps, "confident", params)
        if len(steps) >= max_steps:
            return ProgressiveResult(steps, "max_steps", params)
        s = cp.attention if score == "attention" else content_scores(frame, seq)
        idx = choose_split(seq, s, k, patch, max_tokens)
        if isinstance(idx, str):
            return ProgressiveResult(steps, idx, params)
        n_before = seq.num_tokens
        # the same split on the sequence (which holds no dropped boxes): its dropped boxes are the
        # children lying wholly in the padding, which hold no pixel and get no token
        dropped = np.concatenate([dropped, split_tokens(seq, idx).dropped.astype(np.int64)])
        cp = split_pass(vit, x, cp, idx, h, w, canvas)
        macs = split_macs(cfg, n_before, len(idx), len(cp.boxes) - (n_before - len(idx)), cut)


def at_tau(traces: Sequence[ProgressiveResult], tau: float) -> list[ProgressiveResult]:
    """What ``trace(..., tau=tau)`` gives, read from full traces: each image stops at its first step
    whose top-1 probability reaches ``tau`` (else where its trace stopped)."""
    tau = check_float("tau", tau, 0.0, 1.0)
    out = []
    for t in traces:
        stop = next((i for i, s in enumerate(t.steps) if s.confidence >= tau), None)
        if stop is None:
            out.append(ProgressiveResult(list(t.steps), t.exit_reason, {**t.params, "tau": tau}))
        else:
            out.append(ProgressiveResult(list(t.steps[:stop + 1]), "confident", {**t.params, "tau": tau}))
    return out


def solve_tau(traces: Sequence[ProgressiveResult], target_macs: float) -> float:
    """The largest confidence threshold whose mean MACs per image over ``traces`` is at most
    ``target_macs`` (0 when even stopping every image at its first step costs more)."""
    target_macs = check_float("target_macs", target_macs, 0.0)
    cands = np.unique(np.concatenate([[0.0, 1.0]] + [[s.confidence for s in t.steps] for t in traces]))
    best = 0.0
    for tau in cands:  # mean MACs rises with tau: the last candidate under the target
        if np.mean([r.macs for r in at_tau(traces, float(tau))]) <= target_macs:
            best = float(tau)
        else:
            break
    return best
