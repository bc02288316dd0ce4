"""Single-image entry points for the app: pruned-token maps and learned patch selection.

Layout-based calls (pruning) cut the tokens from the image as it is, at the layout's boxes,
resize each to the model's patch size and use relative positions, so any image size runs; the
bundled task model was trained on 64x64 images with 8-32 px patches, so give it images of that
size (``resize_for_model``). Grid-based calls (selector) resize the image to the model's
``img_size`` and return results in that frame (``selector_layout``) or as a grid map.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import cv2
import numpy as np
import torch

from ..layout import PatchLayout, uniform
from ..query import box_max, describe_query, mix_scores, resolve_query, token_query
from ..validation import check_float, check_int, check_rgb
from .pruning import forward_pruned, prune_from, score_tokens
from .selector import select_topk
from .task import TaskModel, as_vit, prepare_image


class PruneResult(NamedTuple):
    """Kept token indices (ascending, into ``layout.boxes``), the pruned layout, per-token
    scores (float64 ``[N]``) and the class predicted from the kept tokens (None when the model
    has no classifier head)."""

    kept: np.ndarray
    layout: PatchLayout
    scores: np.ndarray
    prediction: int | None


def _prune(image: np.ndarray, layout: PatchLayout, model, keep_ratio: float, layer: int | None, method: str,
           device, query=None, query_weight: float = 0.0) -> PruneResult:
    if not isinstance(layout, PatchLayout):
        raise ValueError(f"layout must be a PatchLayout, got {type(layout).__name__}")
    img = check_rgb(image)
    if img.shape[:2] != (layout.height, layout.width):
        raise ValueError(f"layout must be made for this image ({img.shape[0]}x{img.shape[1]}), "
                         f"got {layout.height}x{layout.width}")
    keep_ratio = check_float("keep_ratio", keep_ratio, 0.0, 1.0)
    vit = as_vit(model)
    pruner = model.pruner if isinstance(model, TaskModel) else None
    if method == "learned" and pruner is None:
        raise ValueError("model must be a TaskModel with a trained pruner for learned pruning (load_task_model())")
    if layer is None:
        layer = model.prune_layer if isinstance(model, TaskModel) else len(vit.blocks) // 2
    if method == "attention" and not vit.pretrained:
        raise ValueError("model has random weights (pretrained=False): attention-based pruning is not meaningful")
    tq, qw = token_query(query, layout, query_weight, image=img, device=device)
    x = prepare_image(img, vit, device, resize=False)
    model.to(x.device)
    with torch.no_grad():
        tb = vit.tokenize(x, [layout])
        if tq is None:
            out = forward_pruned(vit, tb, layer, keep_ratio, method, pruner)
        else:  # the scorer's scores mixed with the query (adapatch.pruning), then the same cut
            st = score_tokens(vit, tb, layer, method, pruner)
            mixed = mix_scores(st.scores[0].double().cpu().numpy(), tq, qw)
            st.scores = torch.as_tensor(mixed, dtype=st.scores.dtype, device=st.scores.device)[None]
            out = prune_from(vit, st, keep_ratio)
    kept = out.kept[0][out.kept_valid[0]].cpu().numpy().astype(np.int64)
    extra = {} if tq is None else {"prune_query": describe_query(query), "prune_query_weight": qw}
    pruned = layout.with_tokens(kept, keep_ratio=keep_ratio, pruned_by=method, prune_layer=layer, **extra)
    pred = int(out.logits[0].argmax()) if vit.config.num_classes else None
    return PruneResult(kept, pruned, out.scores[0].double().cpu().numpy(), pred)


def pruned_macs(model, result: PruneResult) -> tuple[int, int]:
    """``(full, pruned)`` MACs of ``model`` on ``result``'s layout: every token through every block,
    against the pruned run (all tokens up to the prune layer, the kept ones after it, plus EViT's
    fused token). Same formula as ``adapatch.efficiency`` (``latency.model_macs``)."""
    from .latency import model_macs
    cfg = as_vit(model).config
    lay = result.layout
    n = lay.num_tokens + len(lay.dropped)
    layer = int(lay.params.get("prune_layer", 0))
    extra = 1 if lay.params.get("pruned_by") == "attention" and len(lay.dropped) else 0
    return model_macs(cfg, n), model_macs(cfg, n, prune_layer=layer, kept_tokens=lay.num_tokens, extra_tokens=extra)


def model_grid(model) -> PatchLayout:
    """The model's own fixed grid: ``uniform(img_size, img_size, patch_size)`` (the frame of
    ``resize_for_model``)."""
    cfg = as_vit(model).config
    return uniform(cfg.img_size, cfg.img_size, cfg.patch_size)


def prune_tokens_learned(image: np.ndarray, layout: PatchLayout, model: TaskModel, keep_ratio: float = 0.5,
                         layer: int | None = None, device: str | torch.device = "auto", *, query=None,
                         query_weight: float = 0.0) -> PruneResult:
    """Learned ``TokenPruner`` at ``layer`` (default: the model's trained layer).

    ``query`` (a map ``[H, W]`` in [0, 1], an ``adapatch.Query`` or its dict) with ``query_weight``
    in [0, 1]: tokens are kept by ``(1 - w) * minmax(scores) + w * Q`` (``Q`` the max of the query
    map over the token's box; ``adapatch.pruning``), and ``scores`` are those mixed values. Weight 0
    does not read the query.
    """
    return _prune(image, layout, model, keep_ratio, layer, "learned", device, query, query_weight)


def prune_tokens_attention(image: np.ndarray, layout: PatchLayout, model, keep_ratio: float = 0.5,
                           layer: int | None = None, device: str | torch.device = "auto", *, query=None,
                           query_weight: float = 0.0) -> PruneResult:
    """EViT attentive pruning: keep the tokens CLS attends to most, fuse the rest into one.

    ``query``/``query_weight``: as ``prune_tokens_learned``; the fused token then weights the pruned
    tokens by their mixed scores.
    """
    return _prune(image, layout, model, keep_ratio, layer, "attention", device, query, query_weight)


@torch.no_grad()
def selector_importance(image: np.ndarray, model: TaskModel, device: str | torch.device = "auto") -> np.ndarray:
    """Float32 ``[G, G]`` keep probabilities (sigmoid of the selector's logits), row-major grid."""
    if not isinstance(model, TaskModel):
        raise ValueError("model must be a TaskModel with a trained selector (load_task_model())")
    x = prepare_image(image, model.vit, device)
    model.to(x.device)
    g = model.selector.grid_size
    return torch.sigmoid(model.selector(x))[0].reshape(g, g).float().cpu().numpy()


@torch.no_grad()
def selector_layout(image: np.ndarray, model: TaskModel, k: int | None = None,
                    device: str | torch.device = "auto", query: Any = None,
                    query_weight: float = 0.0) -> PatchLayout:
    """The model's uniform grid (on the image resized to ``img_size``) keeping the top-``k`` cells.

    ``k`` defaults to the budget the selector was trained with. ``query``/``query_weight``
    (``adapatch.query``): the cells are ranked by ``(1 - w) * minmax(logit) + w * max(query over the
    cell)``, as pruning mixes a query (ties by the selector's logit); the map is of ``image``
    (resized with it to the model's input when they differ). ``w = 0`` does not read the query:
    the query-blind layout, bit for bit.
    """
    if not isinstance(model, TaskModel):
        raise ValueError("model must be a TaskModel with a trained selector (load_task_model())")
    cfg = model.config
    n = cfg.grid_size ** 2
    k = model.task_config.get("selector_k", n // 4) if k is None else check_int("k", k, 1, n)
    qmap, w = resolve_query(query, image, query_weight, device)
    x = prepare_image(image, model.vit, device)
    model.to(x.device)
    lay = uniform(cfg.img_size, cfg.img_size, cfg.patch_size)
    with torch.no_grad():
        logits = model.selector(x)
    if qmap is None:
        idx = select_topk(logits, k)[0].cpu().numpy()
        return lay.with_tokens(idx, strategy="learned_selector", k=k)
    if qmap.shape != (cfg.img_size, cfg.img_size):
        qmap = cv2.resize(np.asarray(qmap, np.float32), (cfg.img_size, cfg.img_size), interpolation=cv2.INTER_AREA)
    logit = logits[0].double().cpu().numpy()
    mixed = mix_scores(logit, box_max(qmap, lay.boxes), w)
    idx = np.sort(np.lexsort((-logit, -mixed))[:k])  # ties of the mix (a flat query at w = 1): by the selector
    return lay.with_tokens(idx, strategy="learned_selector", k=k, query=describe_query(query), query_weight=w)
