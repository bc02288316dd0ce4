"""Model: the bundled task ViT's attention, learned/attention token pruning, learned patch
selection, the trained results table and measured-vs-predicted latency."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from adapatch.app_support import model_view as mv
from adapatch.app_support import ui

st.title("Model")
st.caption("A tiny ViT (patch 8, width 96, depth 4) trained on this machine by `python -m adapatch.experiments` "
           "on cluttered digits (64x64 canvases: one digit, distractor fragments, noise). It is not an ImageNet "
           "model: its attention and scores are meaningful for this task only, so the maps below use the task's "
           "own held-out images.")

with ui.guard("model"):
    from adapatch.model.results import latency_curves, task_results, task_samples

    samples = task_samples()
    names = [s["name"] for s in samples]
    labels = {s["name"]: s["label"] for s in samples}

    @st.fragment
    def maps() -> None:
        with ui.guard():
            c0, c1, c2, c3 = st.columns([1.2, 1, 1, 1])
            with c0:
                name = st.selectbox("Task image", names, key="m_sample",
                                    format_func=lambda n: f"{n} (true digit {labels[n]})")
                mode = st.segmented_control("Attention", ["rollout", "cls"], default="rollout", key="m_mode")
                fusion = st.segmented_control("Head fusion", ["mean", "max"], default="mean", key="m_fusion")
                discard = st.slider("Rollout discard ratio", 0.0, 0.99, 0.9, 0.01, key="m_discard")
                keep = st.slider("Keep ratio (pruning)", 0.05, 1.0, 0.5, 0.05, key="m_keep")
                k = st.slider("Selector top-k cells", 1, 64, 16, key="m_k")
            c1.image(mv.attention_png(name, mode or "rollout", fusion or "mean", discard, 0.55), width="stretch",
                     output_format="PNG", caption=f"{mode} attention (CLS)")
            imp_png, sel_png = mv.selector_pngs(name, k)
            c2.image(imp_png, width="stretch", output_format="PNG", caption="Learned selector: keep probability")
            c3.image(sel_png, width="stretch", output_format="PNG", caption=f"Selector: top-{k} of 64 tokens")
            p1, p2, _ = st.columns([1.2, 1, 2])
            for col, method in ((p1, "learned"), (p2, "attention")):
                png, kept, total, pred = mv.pruned(name, method, keep)
                col.image(png, width="stretch", output_format="PNG",
                          caption=f"{method} pruning after block 1: {kept}/{total} tokens kept · predicts {pred} "
                                  f"(true {labels[name]})")

    maps()

    st.subheader("Results on the held-out split")
    rows = task_results()
    table = pd.DataFrame([{
        "method": r["method"], "tokens": f"{r['tokens']:g}" if r.get("tokens_after_pruning") is None
        else f"{r['tokens']:g} -> {r['tokens_after_pruning']:g}", "accuracy": r["accuracy"],
        "MACs (M)": r["macs_per_image"] / 1e6, "predicted speed-up": r["predicted_speedup"],
        "measured speed-up (batch 256)": r["speedup_batched"], "measured speed-up (batch 1)": r["speedup_batch1"],
    } for r in rows])
    st.dataframe(table, hide_index=True, width="stretch", column_config={
        "accuracy": st.column_config.NumberColumn(format="%.3f"),
        "MACs (M)": st.column_config.NumberColumn(format="%.2f"),
        "predicted speed-up": st.column_config.NumberColumn(format="%.2fx"),
        "measured speed-up (batch 256)": st.column_config.NumberColumn(format="%.2fx"),
        "measured speed-up (batch 1)": st.column_config.NumberColumn(format="%.2fx")})

    st.subheader("Latency: measured against the FLOPs prediction")
    curves = latency_curves()
    preset = st.segmented_control("ViT preset (random weights, timing only)", list(curves), default="ViT-B",
                                  key="m_preset") or "ViT-B"
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
    st.plotly_chart(fig, config=ui.PLOT_CONFIG, key="m_latency")
    st.caption("Measured on this machine's CPU by `python benchmarks/bench_latency.py`; at batch 1 fixed "
               "overheads eat much of the saving, batched runs follow the FLOPs prediction closely.")
