"""Cached calls into ``adapatch.model`` for the Model page (the task model is a cached resource),
and the learned selector's map of the current image for the Patch layout page."""

from __future__ import annotations

import numpy as np
import streamlit as st

import adapatch as ap
from adapatch import render

from . import compute
from .images import ImageEntry


def task_model():
    """The bundled cluttered-digits ViT + pruner + selector on ``MODEL_DEVICE`` (the library's one
    cache of it, ``resolve_model("task")``)."""
    from adapatch.model.sources import MODEL_DEVICE, resolve_model
    return resolve_model("task", device=MODEL_DEVICE)


@st.cache_data(max_entries=16, show_spinner=False)
def sample(name: str) -> tuple[np.ndarray, int]:
    from adapatch.model.results import load_task_sample
    return load_task_sample(name)


@st.cache_data(max_entries=64, show_spinner=False)
def attention_png(name: str, mode: str, head_fusion: str, discard_ratio: float, alpha: float) -> bytes:
    from adapatch.model import attention_saliency
    img, _ = sample(name)
    model = task_model()
    sal = attention_saliency(img, model, mode, head_fusion, discard_ratio, device="cpu")
    return render.to_png_bytes(render.heatmap(img, sal, alpha=alpha, max_side=64))


@st.cache_data(max_entries=64, show_spinner=False)
def selector_pngs(name: str, k: int) -> tuple[bytes, bytes]:
    """Selector keep-probabilities over the image, and the selected top-k cells."""
    from adapatch.model import resize_for_model, selector_importance, selector_layout
    img, _ = sample(name)
    model = task_model()
    small = resize_for_model(img, model)
    imp = selector_importance(img, model, device="cpu")
    imp_full = render.upscale(imp, small.shape[0] // imp.shape[0])
    lay = selector_layout(img, model, k=k, device="cpu")
    return (render.to_png_bytes(render.heatmap(small, imp_full, alpha=0.6, max_side=64)),
            render.to_png_bytes(render.token_map(small, lay, dim=0.25, max_side=64)))


@st.cache_data(max_entries=64, show_spinner=False)
def pruned(name: str, method: str, keep_ratio: float) -> tuple[bytes, int, int, int]:
    """Token map of the model's 8 px grid after pruning, kept count, total, predicted class."""
    from adapatch.model import prune_tokens_attention, prune_tokens_learned, resize_for_model
    img, _ = sample(name)
    model = task_model()
    small = resize_for_model(img, model)
    grid = ap.uniform(small.shape[0], small.shape[1], model.config.patch_size)
    fn = prune_tokens_learned if method == "learned" else prune_tokens_attention
    res = fn(small, grid, model, keep_ratio=keep_ratio, device="cpu")
    return (render.to_png_bytes(render.token_map(small, res.layout, dim=0.25, max_side=64)),
            res.layout.num_tokens, grid.num_tokens, res.prediction)


@st.cache_data(max_entries=32, show_spinner=False)
def _selector_map(digest: str, model_key: str, _image: np.ndarray, _model) -> np.ndarray:
    from adapatch.model import selector_importance
    from adapatch.model.sources import MODEL_DEVICE
    return selector_importance(_image, _model, device=MODEL_DEVICE)


def selector_map(entry: ImageEntry) -> np.ndarray:
    """The picked model's learned selector: keep probability per grid cell, float32 ``[G, G]``."""
    return _selector_map(entry.digest, compute.model_key(True), entry.array, compute.picked_model(True))


@st.cache_data(max_entries=32, show_spinner=False)
def _selector_png(digest: str, model_key: str, factor: int, alpha: float, _frame: np.ndarray,
                  _map: np.ndarray) -> bytes:
    big = render.upscale(_frame, factor)
    heat = render.upscale(_map, big.shape[0] // _map.shape[0])
    return render.to_png_bytes(render.heatmap(big, heat, alpha=alpha))


def selector_png(entry: ImageEntry, settings: dict, alpha: float = 0.6) -> bytes:
    """The selector's keep probabilities over the model-input frame, enlarged for display."""
    return _selector_png(entry.digest, compute.model_key(True), compute.display_factor(entry, settings), float(alpha),
                         compute.frame(entry, settings), selector_map(entry))


def results_table() -> None:
    """The task experiment's results table (``adapatch/assets/model/results.json``)."""
    import pandas as pd
    from adapatch.model.results import task_results

    rows = task_results()
    table = pd.DataFrame([{
        "method": r["method"], "tokens": f"{r['tokens']:g}" if r.get("tokens_after_pruning") is None
        else f"{r['tokens']:g} -> {r['tokens_after_pruning']:g}", "accuracy": r["accuracy"],
        "MACs (M)": r["macs_per_image"] / 1e6, "predicted speed-up": r["predicted_speedup"],
        "measured speed-up (batch 256)": r["speedup_batched"], "measured speed-up (batch 1)": r["speedup_batch1"],
    } for r in rows])
    fmt = st.column_config.NumberColumn
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "accuracy": fmt(format="%.3f"), "MACs (M)": fmt(format="%.2f"),
        "predicted speed-up": fmt(format="%.2fx"), "measured speed-up (batch 256)": fmt(format="%.2fx"),
        "measured speed-up (batch 1)": fmt(format="%.2fx")})


def latency_chart(key: str) -> None:
    """Measured speed-up vs tokens for a ViT preset, next to the FLOPs prediction."""
    import plotly.graph_objects as go
    from adapatch.model.results import latency_curves

    curves = latency_curves()
    preset = st.segmented_control("ViT preset (random weights, timing only)", list(curves), default="ViT-B",
                                  key=f"{key}_preset") or "ViT-B"
    fig = go.Figure()
    for batch in sorted({p["batch"] for p in curves[preset]}):
        pts = [p for p in curves[preset] if p["batch"] == batch]
        fig.add_scatter(x=[p["tokens"] for p in pts], y=[p["measured_speedup"] for p in pts],
                        mode="lines+markers", name=f"measured, batch {batch}")
    pts = [p for p in curves[preset] if p["batch"] == min(q["batch"] for q in curves[preset])]
    fig.add_scatter(x=[p["tokens"] for p in pts], y=[p["predicted_speedup"] for p in pts], mode="lines",
                    name="predicted from FLOPs", line={"dash": "dash"})
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 10, "b": 10}, xaxis_title="tokens",
                      yaxis_title="speed-up vs 196 tokens", legend={"orientation": "h"})
    st.plotly_chart(fig, config=compute.PLOT_CONFIG, key=f"{key}_chart")
    st.caption("Measured on this machine's CPU by `python benchmarks/bench_latency.py`; at batch 1 fixed "
               "overheads eat much of the saving, batched runs follow the FLOPs prediction closely.")
