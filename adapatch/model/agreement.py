"""Does pruning change the model's answer? Prediction agreement with the full grid per keep ratio.

For a model and a set of images, ``prune_agreement`` runs each image on the model's own full
patch grid (the reference prediction) and, per scorer and keep ratio, on the pruned token set,
and reports the share of images whose prediction is unchanged:

* ``"learned"`` (the model's trained ``TokenPruner``) and ``"attention"`` (EViT: CLS attention,
  the rest fused into one token) prune inside the encoder, after the model's prune layer
  (``TaskModel.prune_layer``; half the depth for a plain ViT), exactly as
  ``prune_tokens_learned`` / ``prune_tokens_attention`` do;
* ``"mean"`` / ``"max"`` score each token by a saliency map (``adapatch.token_scores``) and keep
  the top fraction (``adapatch.prune``) before the encoder: the dropped tokens never enter it.

All images of a call run as one batch; every keep ratio keeps ``adapatch.keep_count`` tokens of the
grid (the one rule), so at ratio 1.0 every scorer keeps every token and agrees with the full grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch

from ..layout import PatchLayout
from ..pruning import keep_count, prune, token_scores
from ..validation import check_choice, check_float
from .api import model_grid
from .pruning import METHODS, prune_from, score_tokens
from .task import TaskModel, as_vit, prepare_image, resize_for_model

SALIENCY_SCORERS = ("mean", "max")
SCORERS = SALIENCY_SCORERS + METHODS
"""Every scorer of the library, in the settings format's order (``adapatch.export.PRUNE_SCORERS``)."""
DEFAULT_KEEP_RATIOS = tuple(round(0.1 * i, 1) for i in range(1, 11))
"""0.1, 0.2, ..., 1.0."""


@dataclass
class Agreement:
    """Per scorer, the share of images (in [0, 1]) whose prediction from the pruned tokens equals
    the full grid's, at each keep ratio; the tokens kept at each ratio, the reference predictions."""

    keep_ratios: list[float]
    kept_tokens: list[int]
    total_tokens: int
    full_predictions: list[int]
    agreement: dict[str, list[float]] = field(default_factory=dict)
    prune_layer: int = 0
    saliency: str = ""

    @property
    def num_images(self) -> int:
        return len(self.full_predictions)

    def to_dict(self) -> dict:
        return {"keep_ratios": list(self.keep_ratios), "kept_tokens": list(self.kept_tokens),
                "total_tokens": self.total_tokens, "full_predictions": list(self.full_predictions),
                "agreement": {k: list(v) for k, v in self.agreement.items()}, "prune_layer": self.prune_layer,
                "saliency": self.saliency}


def _scorers(model, scorers: Sequence[str]) -> list[str]:
    out = []
    for s in scorers:
        check_choice("scorer", s, SCORERS)
        if s not in out:
            out.append(s)
    if not out:
        raise ValueError(f"scorers must name at least one of {', '.join(SCORERS)}")
    if "learned" in out and not (isinstance(model, TaskModel) and model.pruner is not None):
        raise ValueError("the learned scorer needs a TaskModel with a trained pruner (load_task_model())")
    if "attention" in out and not as_vit(model).pretrained:
        raise ValueError("model has random weights (pretrained=False): attention-based pruning is not meaningful")
    if not as_vit(model).config.num_classes:
        raise ValueError("model has no classifier head: there is no prediction to agree with")
    return out


def prune_agreement(model, images: Sequence[np.ndarray], keep_ratios: Sequence[float] = DEFAULT_KEEP_RATIOS,
                    scorers: Sequence[str] = SCORERS, saliency: str = "edges", saliency_params: dict | None = None,
                    device: str | torch.device = "auto",
                    progress: Callable[[int, int], None] | None = None) -> Agreement:
    """Prediction agreement with the full grid, per scorer and keep ratio (see the module doc).

    ``images`` are RGB arrays, resized to the model's input (``resize_for_model``) here.
    ``saliency`` / ``saliency_params`` feed the ``mean`` / ``max`` scorers (the ``attention``
    saliency is given ``model``). The model runs on ``device``; it is moved there, so pass a model
    that may move (``resolve_model("task", device=...)`` keeps one per device). ``progress(done,
    total)`` is called after each scorer and ratio.
    """
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    ratios = [check_float("keep_ratio", r, 0.0, 1.0) for r in keep_ratios]
    if not ratios:
        raise ValueError("keep_ratios must hold at least one ratio")
    scorers = _scorers(model, scorers)
    vit = as_vit(model)
    pruner = model.pruner if isinstance(model, TaskModel) else None
    layer = model.prune_layer if isinstance(model, TaskModel) else len(vit.blocks) // 2
    grid = model_grid(model)
    frames = [resize_for_model(im, model) for im in images]
    x = torch.cat([prepare_image(f, vit, device, resize=False) for f in frames])
    model.to(x.device)
    total = len(scorers) * len(ratios)
    done = 0
    out = Agreement(ratios, [int(keep_count(grid.num_tokens, r)) for r in ratios], grid.num_tokens, [],
                    prune_layer=layer, saliency=saliency if set(scorers) & set(SALIENCY_SCORERS) else "")
    with torch.no_grad():
        tb = vit.tokenize(x, [grid] * len(images))
        full = vit.forward_tokens(tb).argmax(1)
        out.full_predictions = [int(p) for p in full.cpu()]
        maps = _saliency_maps(frames, model, saliency, saliency_params) if out.saliency else []
        for scorer in scorers:
            shares = []
            cut = score_tokens(vit, tb, layer, scorer, pruner) if scorer in METHODS else None
            for r in ratios:
                if cut is not None:  # the blocks before the cut run once for every ratio
                    pred = prune_from(vit, cut, r).logits.argmax(1)
                else:
                    kept = [_pruned(grid, m, scorer, r) for m in maps]
                    pred = vit.forward_tokens(vit.tokenize(x, kept)).argmax(1)
                shares.append(float((pred == full).float().mean()))
                done += 1
                if progress is not None:
                    progress(done, total)
            out.agreement[scorer] = shares
    return out


def _saliency_maps(frames: Sequence[np.ndarray], model, method: str, params: dict | None) -> list[np.ndarray]:
    """Saliency of each image in the model's input frame (the attention saliency: of ``model``)."""
    from ..saliency import saliency as compute_saliency
    params = dict(params or {})
    if method == "attention":
        params["model"] = model
    return [compute_saliency(f, method, **params) for f in frames]


def _pruned(grid: PatchLayout, sal: np.ndarray, reduce: str, keep_ratio: float) -> PatchLayout:
    return prune(grid, token_scores(sal, grid, reduce), keep_ratio)
