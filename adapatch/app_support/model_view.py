"""Cached calls into ``adapatch.model`` for the Model page (the task model is a cached resource),
the Token pruning page's agreement chart, and the learned selector's map of the current image for
the Patch layout page.

Model calls run on the sidebar's device (``model_device``: "auto" resolved, CUDA when present).
The bundled model is kept once per device (``resolve_model("task", device=...)``) and any other
picked model that lives elsewhere is copied to the device once (``on_device``), so a model shared
between sessions is never moved. Every cached result is keyed on the device it ran on.

Charts: accuracy vs tokens of the bundled results (one series per method), keep ratio vs
prediction agreement with the full grid (``adapatch.model.agreement``), agreement and KL vs tokens of
adaptive layouts and pruning for any picked model (``token_agreement_view``), and latency vs tokens
against the MACs prediction (bundled, or measured live on this machine: ``measure_latency``).
A 1000-class model's predictions are shown as "index · ImageNet name" (``adapatch.model.classes``).
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

import numpy as np
import streamlit as st

import adapatch as ap
from adapatch import render

from . import compute, ui
from .images import ImageEntry, md_escape

LIVE_LATENCY = "ap_live_latency"  # session: {preset: adapatch.model.latency.measure_latency(...) result}
LIVE_RUN: dict[str, Any] = {"token_counts": (25, 49, 98, 196), "batch_sizes": (1, 4), "repeats": 2, "warmup": 1}
"""Size of the live latency run ("Measure on this machine"): ViT-B about 5 s on an idle 2-thread
CPU (ViT-Ti about 1 s), 15-25 s when other work shares the CPU; tests shrink it."""
MAP_COLORMAP = "turbo"
"""Colour map of the Model page's heatmaps (attention, selector keep probability); their colour bars use it."""
MACS_NOTE = "MACs are multiply-accumulates, what ViT papers report as FLOPs."
_TOP_LEGEND = {"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0}  # above the plot: clear of the x title


def model_device() -> str:
    """The device model calls run on: the sidebar's choice with "auto" resolved ("cpu" / "cuda";
    ``model_source.run_device``)."""
    from .model_source import run_device
    return run_device()


def task_model(device: str = "auto"):
    """The bundled cluttered-digits ViT + pruner + selector on ``device`` (the library's one cache
    of it per device, ``resolve_model("task", device=...)``)."""
    from adapatch.model.sources import resolve_model
    return resolve_model("task", device=device)


def _same_device(model, device: str) -> bool:
    import torch

    from adapatch.model.task import as_vit
    have = next(as_vit(model).parameters()).device
    want = torch.device(device)
    return have.type == want.type and (want.index is None or want.index == have.index)


@st.cache_resource(max_entries=2, show_spinner="Copying the model to the selected device…")
def _device_copy(model_key: str, device: str, _model):
    import copy
    return copy.deepcopy(_model).to(device).eval()


def on_device(model_key: str, model, device: str):
    """``model`` (the picked, shared one) as a model that lives on ``device``: itself when it is
    there, the bundled model's copy for that device, or a cached copy (the last two kept)."""
    if model is None or _same_device(model, device):
        return model
    if model_key == "task":
        return task_model(device)
    return _device_copy(model_key, device, model)


@st.cache_data(max_entries=16, show_spinner=False)
def sample(name: str) -> tuple[np.ndarray, int]:
    from adapatch.model.results import load_task_sample
    return load_task_sample(name)


# ------------------------------------------------------------------ the Model page's maps
@st.cache_data(max_entries=64, show_spinner=False)
def attention_map(name: str, mode: str, head_fusion: str, discard_ratio: float,
                  device: str = "auto") -> np.ndarray:
    """The task model's attention saliency of a task sample (float32 ``[64, 64]``)."""
    from adapatch.model import attention_saliency
    img, _ = sample(name)
    return attention_saliency(img, task_model(device), mode, head_fusion, discard_ratio, device=device)


@st.cache_data(max_entries=64, show_spinner=False)
def attention_png(name: str, mode: str, head_fusion: str, discard_ratio: float, alpha: float,
                  device: str = "auto") -> bytes:
    img, _ = sample(name)
    sal = attention_map(name, mode, head_fusion, discard_ratio, device)
    return render.to_png_bytes(render.heatmap(img, sal, alpha=alpha, colormap=MAP_COLORMAP, max_side=64))


@st.cache_data(max_entries=64, show_spinner=False)
def selector_result(name: str, k: int, device: str = "auto") -> tuple[np.ndarray, ap.PatchLayout]:
    """Selector keep probabilities (float32 ``[G, G]``) and its top-``k`` layout of a task sample."""
    from adapatch.model import selector_importance, selector_layout
    img, _ = sample(name)
    model = task_model(device)
    return selector_importance(img, model, device=device), selector_layout(img, model, k=k, device=device)


@st.cache_data(max_entries=64, show_spinner=False)
def selector_pngs(name: str, k: int, device: str = "auto") -> tuple[bytes, bytes]:
    """Selector keep-probabilities over the image, and the selected top-k cells."""
    from adapatch.model import resize_for_model
    img, _ = sample(name)
    small = resize_for_model(img, task_model(device))
    imp, lay = selector_result(name, k, device)
    imp_full = render.upscale(imp, small.shape[0] // imp.shape[0])
    return (render.to_png_bytes(render.heatmap(small, imp_full, alpha=0.6, colormap=MAP_COLORMAP, max_side=64)),
            render.to_png_bytes(render.token_map(small, lay, dim=0.25, max_side=64)))


@st.cache_data(max_entries=64, show_spinner=False)
def prune_result(name: str, method: str, keep_ratio: float, device: str = "auto"):
    """``adapatch.model.PruneResult`` of learned/attention pruning on the model's 8 px grid of a task sample."""
    from adapatch.model import prune_tokens_attention, prune_tokens_learned, resize_for_model
    img, _ = sample(name)
    model = task_model(device)
    small = resize_for_model(img, model)
    grid = ap.uniform(small.shape[0], small.shape[1], model.config.patch_size)
    fn = prune_tokens_learned if method == "learned" else prune_tokens_attention
    return fn(small, grid, model, keep_ratio=keep_ratio, device=device)


@st.cache_data(max_entries=64, show_spinner=False)
def pruned(name: str, method: str, keep_ratio: float, device: str = "auto") -> tuple[bytes, int, int, int]:
    """Token map of the model's 8 px grid after pruning, kept count, total, predicted class."""
    from adapatch.model import resize_for_model
    img, _ = sample(name)
    small = resize_for_model(img, task_model(device))
    res = prune_result(name, method, keep_ratio, device)
    total = res.layout.num_tokens + len(res.layout.dropped)
    return (render.to_png_bytes(render.token_map(small, res.layout, dim=0.25, max_side=64)),
            res.layout.num_tokens, total, res.prediction)


@st.cache_data(max_entries=32, show_spinner=False)
def full_grid(name: str, device: str) -> tuple[bytes, int, int, float]:
    """The model's full grid of a task sample, every token kept: token map, tokens, predicted class
    and its probability (the reference the pruned pictures are compared with)."""
    import torch

    from adapatch.model import model_grid, prepare_image, resize_for_model
    from adapatch.model.task import as_vit

    img, _ = sample(name)
    model = task_model(device)
    vit = as_vit(model)
    small = resize_for_model(img, model)
    grid = model_grid(model)
    with torch.no_grad():
        p = torch.softmax(vit.forward_tokens(vit.tokenize(prepare_image(small, vit, device, resize=False), [grid])),
                          dim=-1)[0].cpu()
    return (render.to_png_bytes(render.token_map(small, grid, dim=0.25, max_side=64)), grid.num_tokens,
            int(p.argmax()), float(p.max()))


@st.cache_data(max_entries=8, show_spinner=False)
def default_sample(keep_ratio: float, device: str) -> str:
    """The task sample a view opens on (the Model page, "Use a digit sample"): of the bundled samples
    the model classifies correctly on its full grid and after learned and attention pruning at
    ``keep_ratio``, the one it is most sure of (ties: the first). A demo opens on a right answer; the
    samples it gets wrong stay in the list. None right after pruning: the surest right on the full
    grid; none right at all: the first."""
    from adapatch.model.results import task_samples

    best, best_rank = None, (False, False, -1.0)
    for s in task_samples():
        name, label = s["name"], int(s["label"])
        _, _, pred, prob = full_grid(name, device)
        right = pred == label
        pruned_right = right and all(prune_result(name, m, keep_ratio, device).prediction == label
                                     for m in ("learned", "attention"))
        rank = (pruned_right, right, prob)
        if right and rank > best_rank:
            best, best_rank = name, rank
    return best or task_samples()[0]["name"]


def map_colorbar(container, caption: str) -> None:
    """The colour bar of the Model page's heatmaps (``MAP_COLORMAP``, 0 to 1) under one of them, drawn
    at about the width it is shown at, so its labels stay readable in a narrow column."""
    container.image(ui.colorbar_png(MAP_COLORMAP, ("0", "0.5", "1"), width=160), output_format="PNG",
                    width="stretch", caption=caption)


# ------------------------------------------------------------------ the Patch layout page's selector map
@st.cache_data(max_entries=32, show_spinner=False)
def _selector_map(digest: str, model_key: str, device: str, _image: np.ndarray, _model) -> np.ndarray:
    from adapatch.model import selector_importance
    return selector_importance(_image, on_device(model_key, _model, device), device=device)


def selector_map(entry: ImageEntry) -> np.ndarray:
    """The picked model's learned selector: keep probability per grid cell, float32 ``[G, G]``."""
    key = compute.model_key(True)
    dev = model_device()
    return _selector_map(entry.digest, key, dev, entry.array, compute.picked_model(True, dev))


@st.cache_data(max_entries=32, show_spinner=False)
def _selector_png(digest: str, model_key: str, device: str, factor: int, alpha: float, _frame: np.ndarray,
                  _map: np.ndarray) -> bytes:
    big = render.upscale(_frame, factor)
    heat = render.upscale(_map, big.shape[0] // _map.shape[0])
    return render.to_png_bytes(render.heatmap(big, heat, alpha=alpha))


def selector_png(entry: ImageEntry, settings: dict, alpha: float = 0.6) -> bytes:
    """The selector's keep probabilities over the model-input frame, enlarged for display."""
    return _selector_png(entry.digest, compute.model_key(True), model_device(),
                         compute.display_factor(entry, settings), float(alpha), compute.frame(entry, settings),
                         selector_map(entry))


# ------------------------------------------------------------------ bundled results: where they come from
@st.cache_data(max_entries=4, show_spinner=False)
def _asset_meta(file: str) -> dict:
    from adapatch.samples import ASSETS_DIR
    meta = json.loads((ASSETS_DIR / "model" / file).read_text())
    return {k: v for k, v in meta.items() if k not in ("rows", "curves")} if isinstance(meta, dict) else {}


def training_note() -> str:
    """How the bundled task model was trained, from ``results.json`` (never "on this machine")."""
    meta = _asset_meta("results.json")
    cmd = meta.get("command") or "python -m adapatch.experiments"
    text = f"trained ahead of time by `{cmd}`"
    env, secs = meta.get("train_environment") or meta.get("environment") or {}, meta.get("train_seconds")
    if env or secs:
        where = []
        if secs:
            where.append(f"{secs / 60:.0f} minutes")
        if env.get("device") or env.get("machine"):
            dev = str(env.get("device", "cpu")).upper()
            where.append(f"on an {env['machine']} {dev}" if env.get("machine") else f"on a {dev}")
        if env.get("threads"):
            where.append(f"{env['threads']} threads")
        text += f" ({', '.join(where)}, as recorded in the bundled `adapatch/assets/model/results.json`)"
    return text


# ------------------------------------------------------------------ results: table and accuracy vs tokens
def tokens_text(tokens: float) -> str:
    """Tokens per image for the results table: a whole count as it is ("64"), a mean over images
    (multiscale's budget is met per image, not exactly) to one decimal and said to be one ("28.0 mean")."""
    t = float(tokens)
    return f"{t:.0f}" if t == round(t) else f"{t:.1f} mean"


def results_table() -> None:
    """The task experiment's results table (``adapatch/assets/model/results.json``)."""
    import pandas as pd

    from adapatch.model.results import task_results

    rows = task_results()
    table = pd.DataFrame([{
        "method": r["method"], "tokens": tokens_text(r["tokens"]) if r.get("tokens_after_pruning") is None
        else f"{tokens_text(r['tokens'])} → {tokens_text(r['tokens_after_pruning'])}", "accuracy": r["accuracy"],
        "MACs (M)": r["macs_per_image"] / 1e6, "predicted speed-up": r["predicted_speedup"],
        "measured speed-up (batch 256)": r["speedup_batched"], "measured speed-up (batch 1)": r["speedup_batch1"],
    } for r in rows])
    fmt = st.column_config.NumberColumn
    over = "over the full 8 px grid (uniform 8 px)"
    st.dataframe(table, hide_index=True, width="stretch", height=ui.table_height(len(table)), column_config={
        "method": st.column_config.Column("Method"),
        "tokens": st.column_config.Column("Tokens", help="Tokens per image (a → b: pruned after block 1); a method "
                                                         "whose count varies by image: its mean over the split."),
        "accuracy": fmt("Accuracy", format="%.3f", help="On the held-out split."),
        "MACs (M)": fmt("MACs (M)", format="%.2f", help=f"Per image. {MACS_NOTE}"),
        "predicted speed-up": fmt("Speed-up (MACs)", format="%.2fx", help=f"Predicted from the MACs, {over}."),
        "measured speed-up (batch 256)": fmt("Measured, b=256", format="%.2fx",
                                             help=f"Measured speed-up {over}, batches of 256 images."),
        "measured speed-up (batch 1)": fmt("Measured, b=1", format="%.2fx",
                                           help=f"Measured speed-up {over}, one image at a time.")})
    st.caption(f"Accuracy and speed-ups: {ui.measurement_note('results.json', 'python -m adapatch.experiments')}. "
               f"{MACS_NOTE}")


_QUADTREE_MEASURE = re.compile(r"\((\w+),")
_SYMBOLS = ("circle", "x", "square", "triangle-up", "star", "cross", "triangle-down", "pentagon")
"""Marker per series, so series on top of each other (multiscale and the distortion quadtree) both show."""


def accuracy_series(rows: list[dict]) -> dict[str, list[dict]]:
    """Rows of ``results.json`` as the accuracy chart's series, one per method (in the rows' order),
    each a list of points ``{"tokens", "accuracy", "label"}`` sorted by tokens. Pruned runs are at
    the tokens kept after the cut (the blocks before it see every token)."""
    out: dict[str, list[dict]] = {}
    for r in rows:
        kind = str(r.get("kind", ""))
        tokens = float(r["tokens"])
        if kind == "uniform":
            name = "uniform grid"
        elif kind == "quadtree":
            m = _QUADTREE_MEASURE.search(str(r.get("method", "")))
            name = f"quadtree · {m.group(1)}" if m else "quadtree"
        elif kind == "multiscale":
            name = "multiscale"
        elif kind == "selector":
            name = "learned selector"
        elif kind.startswith("prune_"):
            name = {"prune_learned": "pruning · learned scorer",
                    "prune_attention": "pruning · EViT attention"}.get(kind, f"pruning · {kind[6:]}")
            if r.get("tokens_after_pruning") is not None:
                tokens = float(r["tokens_after_pruning"])
        else:
            name = kind or str(r.get("method", "other"))
        out.setdefault(name, []).append({"tokens": tokens, "accuracy": float(r["accuracy"]),
                                         "label": str(r.get("method", name))})
    return {k: sorted(v, key=lambda p: p["tokens"]) for k, v in out.items()}


def full_grid_row(rows: list[dict]) -> dict | None:
    """The reference row: the uniform grid with the most tokens (the model's full grid)."""
    grid = [r for r in rows if r.get("kind") == "uniform"]
    return max(grid, key=lambda r: r["tokens"]) if grid else None


def accuracy_chart(key: str) -> None:
    """Accuracy vs tokens of every method of the bundled results, the full grid as a reference line."""
    import plotly.graph_objects as go

    from adapatch.model.results import task_results

    rows = task_results()
    series = accuracy_series(rows)
    full = full_grid_row(rows)
    xs = [p["tokens"] for pts in series.values() for p in pts]
    log = max(xs) / max(min(xs), 1e-9) >= 10  # a log axis only when the counts span an order of magnitude
    fig = go.Figure()
    over = ui.overlapping_series(series)  # a series on top of an earlier one: dashed, open, larger
    for i, (name, pts) in enumerate(series.items()):
        pruned_ = name.startswith("pruning")
        symbol = ("diamond-open", "square-open")[i % 2] if pruned_ else _SYMBOLS[i % len(_SYMBOLS)]
        size = 10
        if name in over and not symbol.endswith("-open"):
            symbol, size = symbol + "-open", 16
        fig.add_scatter(x=[p["tokens"] for p in pts], y=[p["accuracy"] for p in pts], name=name,
                        mode="lines+markers", text=[p["label"] for p in pts],
                        line={"dash": "dot"} if pruned_ else {"dash": "dash"} if name in over else None,
                        marker={"size": size, "symbol": symbol},
                        hovertemplate="%{text}<br>%{x:g} tokens · accuracy %{y:.3f}<extra></extra>")
    if full is not None:
        fig.add_hline(y=full["accuracy"], line_dash="dash", line_color="#555", line_width=1,
                      annotation_text=f"full grid ({full['tokens']:g} tokens): {full['accuracy']:.3f}",
                      annotation_position="top left")
    fig.update_layout(height=420, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend=_TOP_LEGEND,
                      xaxis={"title": "tokens per image" + (" (log scale)" if log else ""),
                             "type": "log" if log else "linear"},
                      yaxis={"title": "accuracy (held-out split)", "tickformat": ".0%"})
    st.plotly_chart(fig, config=compute.PLOT_CONFIG, key=f"{key}_chart")
    n_test = (_asset_meta("results.json").get("eval_only") or {}).get("n_test")
    st.caption(f"Accuracy of the bundled task model{f' on {n_test:,} held-out images' if n_test else ''} against "
               "the tokens it sees, one series per method; pruned runs (dotted, open markers) sit at the tokens "
               "kept after block 1 (block 1 sees all of them)."
               + "".join(f" {a} lies on {b} (within 3% of its tokens and 0.01 of its accuracy): drawn dashed with "
                         "larger open markers." for a, b in over.items())
               + " Numbers: "
               f"{ui.measurement_note('results.json', 'python -m adapatch.experiments')}.")


# ------------------------------------------------------------------ keep ratio vs agreement with the full grid
@st.cache_data(max_entries=8, show_spinner="Running the bundled model on its digit samples at every keep ratio…")
def agreement(saliency_json: str, device: str = "auto") -> dict:
    """``adapatch.model.agreement.prune_agreement`` of the bundled task model on its bundled digit
    samples, every scorer, keep ratios 0.1..1.0 (``Agreement.to_dict()``)."""
    from adapatch.model.agreement import prune_agreement
    from adapatch.samples import list_task_samples, load_sample

    spec = json.loads(saliency_json)
    images = [load_sample(n) for n in list_task_samples()]
    res = prune_agreement(task_model(device), images, saliency=spec["method"], saliency_params=spec.get("params"),
                          device=device)
    return res.to_dict()


def agreement_chart(keep_ratio: float, saliency_spec: dict, labels: dict[str, str], key: str,
                    current: str | None = None) -> None:
    """Keep ratio vs the share of the bundled digit samples whose prediction from the kept tokens
    equals the full grid's, one series per scorer, the current keep ratio marked."""
    import plotly.graph_objects as go

    dev = model_device()
    res = agreement(json.dumps(saliency_spec, sort_keys=True, default=str), dev)
    n = len(res["full_predictions"])
    fig = go.Figure()
    for scorer, shares in res["agreement"].items():
        fig.add_scatter(x=res["keep_ratios"], y=shares, mode="lines+markers", name=labels.get(scorer, scorer),
                        customdata=res["kept_tokens"], line={"width": 3.5 if scorer == current else 2},
                        hovertemplate=(f"{labels.get(scorer, scorer)}<br>keep %{{x:.1f}} (%{{customdata}} of "
                                       f"{res['total_tokens']} tokens)<br>same prediction: %{{y:.0%}}<extra></extra>"))
    fig.add_vline(x=float(keep_ratio), line_dash="dot", line_color="#262730", line_width=1.5,
                  annotation_text=f"keep ratio {keep_ratio:.2f}", annotation_position="bottom right")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 10, "b": 10}, legend=_TOP_LEGEND,
                      xaxis={"title": "keep ratio", "range": [0.05, 1.02], "dtick": 0.1},
                      yaxis={"title": "same prediction as the full grid", "tickformat": ".0%",
                             "range": [-0.03, 1.05]})
    st.plotly_chart(fig, config=compute.PLOT_CONFIG, key=f"{key}_chart")
    sal = res["saliency"] or saliency_spec.get("method", "")
    st.caption(f"The bundled task model on its {n} digit samples: the share whose predicted digit from the kept "
               f"tokens equals the prediction from its full {res['total_tokens']}-token grid (steps of 1/{n}). "
               f"Learned and attention scorers prune after block {res['prune_layer']}; the saliency "
               f"scorers (method **{md_escape(sal)}**) drop tokens before the first block. Computed live on "
               f"{dev.upper()} (`adapatch.model.agreement.prune_agreement`), whatever image or model is picked.")


# ------------------------------------------------------------------ agreement and KL vs tokens (any picked model)
AGREEMENT_IMAGES = {"set": "Bundled image set", "current": "Current image"}
_METHOD_COLOURS = {"quadtree": "#1f77b4", "uniform": "#ff7f0e", "prune_mean": "#2ca02c", "prune_max": "#9467bd",
                   "prune_learned": "#d62728", "prune_attention": "#8c564b"}
_METHOD_SYMBOLS = {"quadtree": "circle", "uniform": "square", "prune_mean": "diamond-open", "prune_max": "x",
                   "prune_learned": "triangle-up-open", "prune_attention": "star-open"}


def agreement_images(ref_kind: str, which: str, entry: ImageEntry | None) -> tuple[str, list[np.ndarray], str]:
    """``(cache key, images, description)`` of the images the agreement view runs on: the current image,
    or a bundled set (the task model's digit samples for the bundled model, the photo samples for
    any other model)."""
    from adapatch.samples import list_samples, list_task_samples, load_sample
    if which == "current":
        if entry is None:
            raise ValueError("no current image")
        return f"image:{entry.digest}", [entry.array], f"the current image (**{md_escape(entry.name)}**)"
    names = list_task_samples() if ref_kind == "task" else list_samples()
    if not names:
        raise ValueError("no bundled samples are installed")
    kind = "digit" if ref_kind == "task" else "photo"
    return f"set:{kind}", [load_sample(n) for n in names], f"the {len(names)} bundled {kind} samples"


@st.cache_data(max_entries=16, show_spinner=False)
def _token_agreement(model_key: str, images_key: str, device: str, _model, _images: list) -> dict:
    from adapatch.model.agreement import token_agreement
    return token_agreement(_model, _images, device=device).to_dict()


def token_agreement_result(model_key: str, model, images_key: str, images: list, label: str, device: str) -> dict:
    """``adapatch.model.agreement.token_agreement(model, images).to_dict()``, cached per model key,
    images key (a digest or the bundled set) and device."""
    with st.spinner(f"Running {label} at every token count…"):
        return _token_agreement(model_key, images_key, device, model, images)


def _pred_text(res: dict, method: str, j: int) -> str:
    from adapatch.model.classes import class_label
    p = res["predictions"][method][j]
    return class_label(p[0], res["num_classes"]) if p and len(p) == 1 else ""


def token_agreement_figure(res: dict, current: bool = False):
    """Two panels over tokens per image: the share of images with the full grid's top-1 class (left)
    and the mean KL(full || method) (right), one line per method that ran (layouts solid, pruning
    dotted); ``current``: one image, its predicted class in the hover."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from adapatch.model.agreement import METHOD_LABELS

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09,
                        subplot_titles=("same top-1 class as the full grid", "mean KL(full grid ‖ method), nats"))
    for m in res["methods"]:
        if m in res["unavailable"]:
            continue
        idx = [j for j, t in enumerate(res["tokens"][m]) if t is not None]
        name = METHOD_LABELS.get(m, m)
        xs = [res["tokens"][m][j] for j in idx]
        preds = [_pred_text(res, m, j) for j in idx] if current else [""] * len(idx)
        extra = "<br>predicts %{customdata}" if current else ""
        style = {"line": {"color": _METHOD_COLOURS.get(m), "dash": "dot" if m.startswith("prune_") else None},
                 "marker": {"symbol": _METHOD_SYMBOLS.get(m, "circle"), "size": 9}, "mode": "lines+markers",
                 "legendgroup": m, "customdata": preds}
        fig.add_trace(go.Scatter(x=xs, y=[res["agreement"][m][j] for j in idx], name=name, **style,
                                 hovertemplate=f"{name}<br>%{{x:g}} tokens · same class: %{{y:.0%}}{extra}"
                                               "<extra></extra>"), row=1, col=1)
        fig.add_trace(go.Scatter(x=xs, y=[res["kl"][m][j] for j in idx], name=name, showlegend=False, **style,
                                 hovertemplate=f"{name}<br>%{{x:g}} tokens · KL %{{y:.3g}} nats{extra}"
                                               "<extra></extra>"), row=1, col=2)
    fig.update_xaxes(title_text="tokens per image", rangemode="tozero")
    fig.update_yaxes(tickformat=".0%", range=[-0.04, 1.06], row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    fig.update_layout(height=400, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      legend={"orientation": "h", "yanchor": "top", "y": -0.2, "x": 0})
    return fig


def token_agreement_view(ref, model, which: str, entry: ImageEntry | None, key: str) -> None:
    """The agreement-vs-tokens chart of the picked model on ``which`` images (``AGREEMENT_IMAGES``),
    with what is compared, what did not run and why, in captions."""
    from adapatch.model import describe_model
    from adapatch.model.agreement import METHOD_LABELS
    from adapatch.model.classes import class_label

    dev = model_device()
    images_key, images, what = agreement_images(ref.kind, which, entry)
    d = describe_model(model)
    res = token_agreement_result(ref.key, model, images_key, images, f"{ref.label} on {len(images)} "
                                 f"image{'s' if len(images) != 1 else ''}", dev)
    current = which == "current"
    st.plotly_chart(token_agreement_figure(res, current), config=compute.PLOT_CONFIG, key=f"{key}_chart")
    n, total = len(res["full_predictions"]), res["total_tokens"]
    lines = [f"At equal tokens, each method against the model's own prediction from its full grid of {total} "
             f"tokens ({d['patch_size']} px patches on the image resized to {d['img_size']}x{d['img_size']}): left, "
             f"the share of images whose top-1 class is unchanged"
             + (f" (steps of 1/{n})" if n > 1 else " (one image: 0% or 100%)")
             + "; right, the mean KL divergence of the method's softmax from the full grid's (0 = the same output). "
             f"Quadtree: budget quadtree, default (distortion) importance, squares of 1 to "
             f"{res['quadtree'].get('max_squares', 1)} grid cells a side; uniform grid: square patches of one size "
             f"with about as many tokens; pruning keeps that many of the grid's tokens (learned and EViT after "
             f"block {res['prune_layer']}, the saliency scorers, **{md_escape(res['saliency'] or 'edges')}**, before "
             f"the first block). On {what}, computed on {dev.upper()} by "
             "`adapatch.model.agreement.token_agreement`."]
    if current:
        full = md_escape(class_label(res['full_predictions'][0], res['num_classes']))
        lines.append(f"The full grid predicts **{full}**"
                     "; hover a point for what each method predicts.")
    if not d["pretrained"]:
        lines.append("This model has random weights: the chart shows how much each method changes *its* outputs, "
                     "not accuracy; attention-based pruning is refused.")
    skipped = [f"{METHOD_LABELS.get(m, m)} ({md_escape(r)})" for m, r in res["unavailable"].items()]
    if skipped:
        lines.append("Not run: " + "; ".join(skipped) + ".")
    for m, note in res["notes"].items():
        lines.append(f"{METHOD_LABELS.get(m, m)}: {md_escape(note)}; no point below that.")
    st.caption("  \n".join(lines))


# ------------------------------------------------------------------ latency vs tokens
def _measure(preset: str) -> None:
    """Run the short live latency measurement of ``preset`` with a progress bar; store it in the session."""
    from adapatch.model.latency import measure_latency

    bar = st.progress(0.0, text=f"Measuring {preset} on this machine…")

    def step(done: int, total: int) -> None:
        bar.progress(done / total, text=f"Measuring {preset} on this machine… {done}/{total}")

    res = measure_latency(preset, device=model_device(), progress=step, **LIVE_RUN)
    bar.empty()
    st.session_state.setdefault(LIVE_LATENCY, {})[preset] = res


def _forget_live(preset: str) -> None:
    st.session_state.get(LIVE_LATENCY, {}).pop(preset, None)


def live_note(res: dict) -> str:
    """Caption of a live measurement: where (CPU/CUDA) and when it ran."""
    env = res["environment"]
    where = f"CUDA, {env['cuda']}" if env.get("cuda") else f"CPU, {env.get('machine', '')}, {env['threads']} threads"
    when = datetime.fromisoformat(res["measured_at"]).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    s = res["settings"]
    return (f"Measured on this machine just now ({where}, {when}; {res['seconds']:.1f} s): {res['preset']} with "
            f"random weights, tokens {', '.join(map(str, s['token_counts']))}, batches "
            f"{', '.join(map(str, s['batch_sizes']))}, median of {_runs(s['repeats'])} after {s['warmup']} "
            f"warm-up {'run' if s['warmup'] == 1 else 'runs'} (torch {env['torch']}).")


def _runs(n: int) -> str:
    return f"{n} run" if n == 1 else f"{n} runs"


def latency_chart(key: str, measure: bool = False) -> None:
    """Measured speed-up vs tokens for a ViT preset, next to the MACs prediction: the bundled
    measurements, or this session's live ones. ``measure`` draws "Measure on this machine" (a short
    live run with a progress bar that replaces the bundled numbers) and the way back."""
    import plotly.graph_objects as go

    from adapatch.model.results import latency_curves

    curves = latency_curves()
    preset = st.segmented_control("ViT preset (random weights, timing only)", list(curves), default="ViT-B",
                                  key=f"{key}_preset") or "ViT-B"
    if measure:
        c1, c2, _ = st.columns([1, 1, 2])
        if c1.button("Measure on this machine", key=f"{key}_measure", icon=":material/timer:",
                     help=f"Re-run the latency benchmark of {preset} live here (a short run, a few seconds to "
                          "tens of seconds) and show it in place of the bundled numbers."):
            _measure(preset)
        if preset in st.session_state.get(LIVE_LATENCY, {}):
            c2.button("Back to the bundled numbers", key=f"{key}_bundled", icon=":material/undo:",
                      on_click=_forget_live, args=(preset,))
    live = st.session_state.get(LIVE_LATENCY, {}).get(preset)
    pts_all = live["curve"] if live else curves[preset]
    fig = go.Figure()
    for batch in sorted({p["batch"] for p in pts_all}):
        pts = [p for p in pts_all if p["batch"] == batch]
        fig.add_scatter(x=[p["tokens"] for p in pts], y=[p["measured_speedup"] for p in pts],
                        mode="lines+markers", name=f"measured{' live' if live else ''}, batch {batch}")
    pts = [p for p in pts_all if p["batch"] == min(q["batch"] for q in pts_all)]
    fig.add_scatter(x=[p["tokens"] for p in pts], y=[p["predicted_speedup"] for p in pts], mode="lines",
                    name="predicted from MACs", line={"dash": "dash"})
    ref = max(p["tokens"] for p in pts_all)
    fig.update_layout(height=340, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title="tokens",
                      yaxis_title=f"speed-up vs {ref} tokens", legend=_TOP_LEGEND)
    st.plotly_chart(fig, config=compute.PLOT_CONFIG, key=f"{key}_chart")
    if live:
        st.caption(live_note(live) + ("" if measure else " Back to the bundled numbers on the Model page."))
    else:
        st.caption(f"Latency: {ui.measurement_note('latency.json', 'python benchmarks/bench_latency.py')}. "
                   "At batch 1 fixed "
                   f"overheads eat much of the saving; batched runs follow the MACs prediction closely. {MACS_NOTE}")
