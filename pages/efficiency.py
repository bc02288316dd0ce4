"""Efficiency: tokens, FLOPs and speedup for every loaded image at once, with a plain summary."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, recipes, state, ui
from adapatch.app_support.images import md_escape, sample_keys
from adapatch.report import EfficiencySummary, efficiency_rows, efficiency_summary, mean_speedups


def _strategies() -> dict[str, dict]:
    """The layouts compared per image: the Patch layout page's settings for each strategy, and the grid."""
    return {
        "quadtree": recipes.layout_settings(strategy="quadtree"),
        "greedy": recipes.layout_settings(strategy="greedy"),
        "uniform 16 px": {**recipes.layout_settings(strategy="uniform"), "params": {"patch_size": 16}},
    }


@st.fragment
def efficiency_view() -> None:
    with ui.guard():
        c1, c2, c3 = st.columns([1, 1, 2])
        include_samples = state.widget("eff_samples", c1.toggle, "Include the bundled samples",
                                       help="Uploaded images are always included.")
        with_fidelity = c2.toggle("Fidelity (slower)", value=True, key="w_eff_fid")
        c3.caption("Quadtree and greedy use the settings of the Patch layout page "
                   "(sizes, threshold, importance, budget).")
        keys = [e.key for e in state.uploaded_entries()] + (sample_keys() if include_samples else [])
        if not keys:
            st.info("Upload images in the sidebar, or include the bundled samples.", icon=":material/info:")
            return
        strategies = _strategies()
        items = []
        progress = st.progress(0.0, text="computing layouts…") if len(keys) > 3 else None
        for j, key in enumerate(keys):
            try:
                entry = state.entry(key)
            except ap.ImageError:
                continue
            for sname, settings in strategies.items():
                try:
                    lay = compute.layout(entry, settings)
                except ValueError as e:  # e.g. a budget below this image's minimum: note it, keep going
                    st.caption(md_escape(f"{entry.name} · {sname}: {e}"))
                    continue
                fid = compute.fidelity(entry, settings, state.device()) if with_fidelity else None
                items.append((entry.name, sname, lay, fid))
            if progress is not None:
                progress.progress((j + 1) / len(keys), text=f"computed {j + 1} of {len(keys)} images")
        if progress is not None:
            progress.empty()
        if not items:
            st.info("No layout could be computed for these images with the current settings.", icon=":material/info:")
            return
        vits = list(ap.VIT_PRESETS)
        rows = efficiency_rows(items, vits)
        df = pd.DataFrame(rows)
        q = df[df["strategy"] == "quadtree"]
        bars = df[["image", "strategy", "tokens"]]
        if len(q):  # the fixed grid with the adaptive layout's finest detail, from efficiency()
            bars = pd.concat([bars, pd.DataFrame({"image": q["image"], "strategy": f"uniform {int(q['min_size'].min())} px",
                                                  "tokens": q["uniform_min"]})])
        fig = px.bar(bars, x="image", y="tokens", color="strategy", barmode="group", height=380,
                     color_discrete_sequence=["#e8603c", "#ffa421", "#8a8d91", "#c5c8cc"],
                     title="Tokens per image (fewer is cheaper)")
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text=None, xaxis_title=None)
        st.plotly_chart(fig, config=ui.PLOT_CONFIG, key="eff_bars")

        st.markdown("**Theoretical speedup over the uniform 16 px grid** (FLOPs ratio, per ViT preset)")
        speedups = mean_speedups(rows, vits, exclude=["uniform 16 px"])
        if speedups:
            speed = pd.DataFrame(speedups).T[vits]
            st.dataframe(speed.style.format("×{:.2f}").highlight_max(axis=0, color="rgba(33, 195, 84, 0.35)"),
                         width="stretch")
        else:
            st.caption("No adaptive layout could be computed with the current settings (see the notes above).")
        with st.expander("Per-image numbers", icon=":material/table:"):
            st.dataframe(df, width="stretch", hide_index=True)
        summary = efficiency_summary(rows, "quadtree", state.get("vit"))
        if summary is not None:
            st.info(md_escape(_summary_text(summary)), icon=":material/summarize:")


def _summary_text(s: EfficiencySummary) -> str:
    """The summary as sentences for a slide."""
    n = s.images
    text = (f"Across {n} image{'s' if n != 1 else ''}, the quadtree layout uses on average {s.tokens:,.0f} tokens. "
            f"A fixed grid with the same finest detail ({s.finest_size} px) needs {s.uniform_min_tokens:,.0f} "
            f"({ui.fewer_phrase(s.reduction_vs_uniform_min)} for the adaptive layout); the standard 16 px ViT grid "
            f"needs {s.uniform16_tokens:,.0f} ({ui.fewer_phrase(s.reduction_vs_uniform16)}). For {s.vit} that is "
            f"{ui.speedup_phrase(s.speedup_vs_uniform16)} than the 16 px grid, in theory (FLOPs). ")
    if s.psnr is not None:
        text += (f"What the model sees stays close to the original: PSNR {s.psnr:.1f} dB, SSIM {s.ssim:.3f} "
                 "on average. ")
    if n > 1:
        text += (f"Biggest saving: {s.best_image} ({ui.fewer_phrase(s.best_reduction)} tokens than 16 px); "
                 f"smallest: {s.worst_image} ({ui.fewer_phrase(s.worst_reduction)}). Flat images save the most; "
                 "raise the threshold or set a budget on the Patch layout page to trade detail for tokens.")
    return text


st.title("Efficiency")
st.caption("Every loaded image at once: tokens per strategy, FLOPs and theoretical speedup for the ViT presets, "
           "and a summary you can paste into a slide.")
efficiency_view()

st.subheader("Measured, not just predicted")
st.caption("FLOPs are a prediction. Wall-clock forward latency of ViT-Ti/S/B against the token count, measured "
           "on this machine, and the bundled task model's accuracy and measured speed-up per method "
           "(details on the Model page).")
with ui.guard("model results"):
    from adapatch.app_support import model_view

    model_view.latency_chart("eff_latency")
    model_view.results_table()
