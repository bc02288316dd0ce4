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

``token_agreement`` compares adaptive layouts *and* pruning at equal tokens: per token count (a
fraction of the model's full grid), each method's top-1 agreement with the full-grid prediction and
the mean KL divergence of its softmax from the full grid's (see its doc).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..layout import PatchLayout
from ..messages import one_line
from ..pruning import keep_count, prune, token_scores
from ..validation import check_choice, check_float, check_int
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


# ------------------------------------------------------------------ agreement and KL at equal tokens
LAYOUT_METHODS = ("quadtree", "uniform")
"""Adaptive-layout methods of ``token_agreement``: the budget quadtree (its default importance,
``distortion``) and the equal-token uniform grid (``adapatch.uniform_for_budget``)."""
DEFAULT_FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
"""Token counts of ``token_agreement`` as fractions of the model's full grid."""
METHOD_LABELS = {"quadtree": "quadtree (distortion)", "uniform": "uniform grid",
                 "prune_mean": "pruning · saliency mean", "prune_max": "pruning · saliency max",
                 "prune_learned": "pruning · learned scorer", "prune_attention": "pruning · EViT attention"}
"""Display names of ``token_agreement``'s methods (pruning methods are ``"prune_" + scorer``)."""


def prune_method(scorer: str) -> str:
    """The ``token_agreement`` method name of a pruning scorer (``"prune_" + scorer``)."""
    return f"prune_{scorer}"


@dataclass
class TokenAgreement:
    """``token_agreement``'s result: per method (``methods``: layouts, then ``"prune_<scorer>"``) and
    per point (``fractions`` of the full grid, ``budgets`` the common token count there), the mean
    tokens per image the method used (``tokens``), the share of images whose top-1 class equals the
    full grid's (``agreement``, in [0, 1]), the mean KL(full || method) of the softmax outputs in nats
    (``kl``) and each image's predicted class (``predictions[method][point][image]``). ``None`` marks
    a point a method cannot reach (``notes`` says why); a method that cannot run at all is listed in
    ``unavailable`` with its one-line reason, its values all ``None``."""

    fractions: list[float]
    budgets: list[int]
    total_tokens: int
    full_predictions: list[int]
    methods: list[str]
    tokens: dict[str, list[float | None]] = field(default_factory=dict)
    agreement: dict[str, list[float | None]] = field(default_factory=dict)
    kl: dict[str, list[float | None]] = field(default_factory=dict)
    predictions: dict[str, list[list[int] | None]] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    num_classes: int = 0
    prune_layer: int = 0
    saliency: str = ""
    quadtree: dict = field(default_factory=dict)

    @property
    def num_images(self) -> int:
        return len(self.full_predictions)

    @property
    def available(self) -> list[str]:
        """The methods that ran (not in ``unavailable``)."""
        return [m for m in self.methods if m not in self.unavailable]

    def to_dict(self) -> dict:
        """Plain JSON types (``None`` where a value is missing)."""
        return {"fractions": list(self.fractions), "budgets": list(self.budgets), "total_tokens": self.total_tokens,
                "full_predictions": list(self.full_predictions), "methods": list(self.methods),
                "tokens": {k: list(v) for k, v in self.tokens.items()},
                "agreement": {k: list(v) for k, v in self.agreement.items()},
                "kl": {k: list(v) for k, v in self.kl.items()},
                "predictions": {k: [None if p is None else list(p) for p in v] for k, v in self.predictions.items()},
                "unavailable": dict(self.unavailable), "notes": dict(self.notes), "num_classes": self.num_classes,
                "prune_layer": self.prune_layer, "saliency": self.saliency, "quadtree": dict(self.quadtree)}

    @classmethod
    def from_dict(cls, d: dict) -> TokenAgreement:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def _unique_choices(name: str, values: Sequence[str], choices: Sequence[str]) -> list[str]:
    if isinstance(values, str):
        values = [values]
    out: list[str] = []
    for v in values:
        check_choice(name, v, choices)
        if v not in out:
            out.append(v)
    return out


def _quadtree_frame(grid_cells: int, patch: int, max_cells: int) -> tuple[int, int]:
    """``(cell, squares)``: the quadtree works on the model frame resized so a grid cell is ``cell``
    px (the power of two at or above the patch size; the patch size itself when it is one), with
    squares of 1 to ``squares`` cells: the largest power of two <= ``max_cells`` that divides the grid,
    so the squares tile exactly the model's grid and the full budget gives exactly its cells."""
    cell = 1 << (patch - 1).bit_length()
    squares = 1
    while squares * 2 <= max_cells and grid_cells % (squares * 2) == 0:
        squares *= 2
    return cell, squares


def _budgets(side: int, total: int, fractions: Sequence[float], uniform_counts: bool,
             quadtree_base: int | None) -> list[tuple[float, int]]:
    """One common token count per fraction (the first fraction of a repeated count kept): the uniform
    grid's count closest to ``fraction * total`` when the uniform grid is compared (its counts are
    the sparsest), any count otherwise; a count the quadtree reaches exactly (``base + 3k``) is
    preferred when one is nearly as close (10% of the target)."""
    if uniform_counts:
        sizes = np.arange(1, side + 1, dtype=np.int64)
        counts = np.unique((-(-side // sizes)) ** 2)
    else:
        counts = np.arange(1, total + 1, dtype=np.int64)
    counts = counts[counts <= total]
    out: list[tuple[float, int]] = []
    for f in fractions:
        target = max(1.0, f * total)
        err = np.abs(counts - target) / target
        if quadtree_base is not None:
            exact = (counts >= quadtree_base) & ((counts - quadtree_base) % 3 == 0)
            err = err + np.where(exact, 0.0, 0.1)
        n = int(counts[np.argmin(err)])  # counts ascend: ties go to the fewer tokens
        if n not in [b for _, b in out]:
            out.append((float(f), n))
    return out


def _quadtree_layouts(work: np.ndarray, budget: int, cell: int, squares: int, patch: int, side: int,
                      grid_cells: int) -> list[PatchLayout]:
    """Budget quadtrees of the work frames ``[B, G*cell, G*cell, 3]``, boxes scaled back to the model frame."""
    from ..quadtree import quadtree_batch
    lays = quadtree_batch(work, budget=budget, min_size=cell, max_size=cell * squares, token_size=cell)
    canvas = grid_cells * patch
    out = []
    for lay in lays:
        boxes = lay.boxes.astype(np.int64) * patch // cell
        out.append(PatchLayout(side, side, (canvas, canvas), boxes, strategy="quadtree",
                               params={**lay.params, "budget": budget, "cell": cell, "patch_size": patch}))
    return out


def _work_frames(frames: Sequence[np.ndarray], grid_cells: int, patch: int, cell: int) -> np.ndarray:
    """The model frames, padded (edge) to whole grid cells and resized so a cell is ``cell`` px."""
    import cv2
    out = []
    for f in frames:
        pad = grid_cells * patch - f.shape[0]
        a = cv2.copyMakeBorder(f, 0, pad, 0, pad, cv2.BORDER_REPLICATE) if pad else f
        if cell != patch:
            s = grid_cells * cell
            a = cv2.resize(a, (s, s), interpolation=cv2.INTER_AREA if s < a.shape[0] else cv2.INTER_LINEAR)
        out.append(np.ascontiguousarray(a, dtype=np.float32))
    return np.stack(out)


def _kl_and_top1(logp_full: torch.Tensor, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: KL(full || method) in nats (float64, >= 0) and the method's top-1 class."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    kl = (logp_full.exp() * (logp_full - logp)).sum(-1).clamp(min=0.0)
    return kl, logits.argmax(-1)


def token_agreement(model, images: Sequence[np.ndarray], fractions: Sequence[float] = DEFAULT_FRACTIONS,
                    strategies: Sequence[str] = LAYOUT_METHODS, scorers: Sequence[str] = SCORERS,
                    saliency: str = "edges", saliency_params: dict | None = None, max_cells: int = 4,
                    batch_size: int = 16, device: str | torch.device = "auto",
                    progress: Callable[[int, int], None] | None = None) -> TokenAgreement:
    """Top-1 agreement and KL against the full grid, at equal tokens, for adaptive layouts and pruning.

    ``images`` (RGB arrays) are resized to the model's input (``resize_for_model``). The reference is
    the model's prediction on its own full patch grid (``model_grid``, ``N`` tokens). For each
    fraction ``f`` one common token count ``n ~ f * N`` is used by every method (``_budgets``: the
    uniform grid's count nearest to ``f * N``, since its counts are the sparsest; repeated counts are
    dropped), and each method's softmax is compared with the full grid's:

    * ``"quadtree"``: ``adapatch.quadtree`` with a budget of ``n`` and its default importance
      (``distortion``), cells of the model's grid as its smallest squares and up to ``max_cells``
      cells a side (a power of two dividing the grid, so ``n = N`` is the full grid again); it uses
      ``n`` or up to 2 tokens fewer, and cannot go below its coarsest tiling (``notes``);
    * ``"uniform"``: the equal-token uniform grid (``adapatch.uniform_for_budget``, any patch size);
    * ``"prune_<scorer>"`` for each of ``scorers`` (see ``prune_agreement``): keep ``n`` of the ``N``
      grid tokens; ``learned`` / ``attention`` prune inside the encoder (all ``N`` tokens before the
      prune layer; EViT adds its one fused token), ``mean`` / ``max`` before it.

    Any ``VisionTransformer`` (class token or pooled head, registers, distillation token, RoPE) or
    ``TaskModel`` with a classifier head. A method that cannot run on this model (no trained pruner,
    random weights for attention, RoPE inside the encoder, a saliency that fails) is reported in
    ``unavailable`` with its one-line reason instead of raising. Images run in batches of
    ``batch_size``; ``progress(done, total)`` is called after each method and point of a batch.
    """
    if len(images) == 0:
        raise ValueError("images must hold at least one image")
    if isinstance(fractions, (int, float)):
        fractions = [fractions]
    fracs = [check_float("fraction", f, 0.0, 1.0) for f in fractions]
    if not fracs or min(fracs) <= 0:
        raise ValueError(f"fractions must be one or more numbers in (0, 1], got {list(fractions)!r}")
    strategies = _unique_choices("strategy", strategies, LAYOUT_METHODS)
    scorers = _unique_choices("scorer", scorers, SCORERS)
    if not strategies and not scorers:
        raise ValueError(f"name at least one strategy ({', '.join(LAYOUT_METHODS)}) or scorer ({', '.join(SCORERS)})")
    max_cells = check_int("max_cells", max_cells, 1, 64)
    batch_size = check_int("batch_size", batch_size, 1)
    vit = as_vit(model)
    cfg = vit.config
    if not cfg.num_classes:
        raise ValueError("model has no classifier head: there is no prediction to agree with")
    pruner = model.pruner if isinstance(model, TaskModel) else None
    layer = model.prune_layer if isinstance(model, TaskModel) else len(vit.blocks) // 2
    grid = model_grid(model)
    total, side, patch = grid.num_tokens, cfg.img_size, cfg.patch_size
    cells = -(-side // patch)
    cell, squares = _quadtree_frame(cells, patch, max_cells)
    base = (cells // squares) ** 2
    points = _budgets(side, total, fracs, "uniform" in strategies, base if "quadtree" in strategies else None)
    methods = list(strategies) + [prune_method(s) for s in scorers]
    npts = len(points)
    out = TokenAgreement([f for f, _ in points], [n for _, n in points], total, [], methods,
                         num_classes=int(cfg.num_classes), prune_layer=layer,
                         saliency=saliency if set(scorers) & set(SALIENCY_SCORERS) else "",
                         quadtree={"cell": cell, "max_squares": squares, "min_tokens": base})
    if "learned" in scorers and pruner is None:
        out.unavailable["prune_learned"] = "needs a trained TokenPruner, which only the bundled task model has"
    if "attention" in scorers and not vit.pretrained:
        out.unavailable["prune_attention"] = ("model has random weights (pretrained=False): attention-based "
                                              "pruning is not meaningful")
    if "quadtree" in strategies and any(n < base for _, n in points):
        out.notes["quadtree"] = (f"needs at least {base} tokens (its largest squares, {squares}x{squares} cells of the "
                                 f"{cells}x{cells} grid)")
    sums = {m: {"agree": np.zeros(npts), "kl": np.zeros(npts), "tokens": np.zeros(npts)} for m in methods}
    preds: dict[str, list[list[int]]] = {m: [[] for _ in range(npts)] for m in methods}
    reached = {m: np.ones(npts, bool) for m in methods}
    if "quadtree" in methods:
        reached["quadtree"] = np.array([n >= base for _, n in points])
    chunks = [list(range(i, min(i + batch_size, len(images)))) for i in range(0, len(images), batch_size)]
    steps, done = len(chunks) * len(methods) * npts, 0

    def step(k: int = 1) -> None:
        nonlocal done
        done += k
        if progress is not None and k:
            progress(done, steps)

    full_preds: list[int] = []
    for chunk in chunks:
        frames = [resize_for_model(images[i], model) for i in chunk]
        x = torch.cat([prepare_image(f, vit, device, resize=False) for f in frames])
        model.to(x.device)
        b = len(chunk)
        with torch.no_grad():
            tb = vit.tokenize(x, [grid] * b)
            full_logits = vit.forward_tokens(tb)
            logp_full = torch.log_softmax(full_logits.double(), dim=-1)
            full_preds += [int(p) for p in full_logits.argmax(-1).cpu()]
            for method in methods:
                if method in out.unavailable:
                    step(npts)
                    continue
                counted = 0
                try:
                    runs = _method_runs(method, vit, x, tb, grid, frames, points, reached[method], layer, pruner,
                                        model, saliency, saliency_params, (cells, patch, cell, squares, side))
                    for j, res in enumerate(runs):
                        counted += 1
                        if res is not None:
                            logits, ntok = res
                            kl, top1 = _kl_and_top1(logp_full, logits)
                            s = sums[method]
                            s["agree"][j] += float((top1 == logp_full.argmax(-1)).sum())
                            s["kl"][j] += float(kl.sum())
                            s["tokens"][j] += float(ntok)
                            preds[method][j] += [int(p) for p in top1.cpu()]
                        step()
                except ValueError as e:  # this model cannot run the method: say why, keep the others
                    out.unavailable[method] = one_line(e)
                    step(npts - counted)
    n_img = len(images)
    out.full_predictions = full_preds
    for m in methods:
        ok = m not in out.unavailable
        r = reached[m]
        for name, key in (("agreement", "agree"), ("kl", "kl"), ("tokens", "tokens")):
            getattr(out, name)[m] = [float(sums[m][key][j] / n_img) if ok and r[j] else None for j in range(npts)]
        out.predictions[m] = [preds[m][j] if ok and r[j] else None for j in range(npts)]
    return out


def _method_runs(method: str, vit, x: torch.Tensor, tb, grid: PatchLayout, frames: Sequence[np.ndarray],
                 points: Sequence[tuple[float, int]], reached: np.ndarray, layer: int, pruner, model,
                 saliency: str, saliency_params: dict | None, geom: tuple[int, int, int, int, int]):
    """Yield, per point, ``(logits, total tokens over the batch)`` of ``method`` (None where not reached).

    A generator, so the work before the first point (the saliency maps, the blocks before the cut)
    raises its ``ValueError`` before any point is counted."""
    from ..layout import uniform_for_budget
    cells, patch, cell, squares, side = geom
    total = grid.num_tokens
    if method == "quadtree":
        work = _work_frames(frames, cells, patch, cell)
        for j, (_, n) in enumerate(points):
            if not reached[j]:
                yield None
                continue
            lays = _quadtree_layouts(work, n, cell, squares, patch, side, cells)
            yield vit.forward_tokens(vit.tokenize(x, lays)), sum(lay.num_tokens for lay in lays)
        return
    if method == "uniform":
        for _, n in points:  # the model's own grid when it has the count (img_size not a multiple of the patch)
            lay = grid if n == total else uniform_for_budget(side, side, n)
            yield vit.forward_tokens(vit.tokenize(x, [lay] * len(frames))), lay.num_tokens * len(frames)
        return
    scorer = method[len("prune_"):]
    if scorer in METHODS:
        cut = score_tokens(vit, tb, layer, scorer, pruner)  # the blocks before the cut run once
        for _, n in points:
            res = prune_from(vit, cut, n / total)
            yield res.logits, int(res.kept_valid.sum())
        return
    maps = _saliency_maps(frames, model, saliency, saliency_params)
    scores = [token_scores(m, grid, scorer) for m in maps]
    for _, n in points:
        kept = [prune(grid, s, n / total) for s in scores]
        yield vit.forward_tokens(vit.tokenize(x, kept)), sum(k.num_tokens for k in kept)
