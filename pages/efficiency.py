"""Efficiency: tokens, FLOPs and speedup for every loaded image at once, with a plain summary."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, recipes, state, ui
from adapatch.app_support.images import md_escape, sample_keys
from adapatch.report import EfficiencySummary, efficiency_rows, efficiency_summary, mean_speedups

STRATEGIES = ("quadtree", "greedy", "uniform 16 px")
"""The layouts compared per image: the Patch layout page's settings for each strategy, and the grid."""


def _settings(name: str, entry) -> dict:
    """The settings of ``name`` for ``entry``: a budget is the Patch layout page's fraction of this
    image's 16 px grid, kept within the strategy's range on this image."""
    if name == "uniform 16 px":
        return {**recipes.layout_settings(strategy="uniform"), "params": {"patch_size": 16}}
    return recipes.layout_settings(strategy=name, entry=entry)


@st.fragment
def efficiency_view() -> None:
    with ui.guard():
        c1, c2, c3 = st.columns([1, 1, 2])
        include_samples = state.widget("eff_samples", c1.toggle, "Include the bundled samples",
                                       help="Uploaded images are always included.")
        with_fidelity = c2.toggle("Fidelity (slower)", value=True, key="w_eff_fid")
        c3.caption("Quadtree and greedy use the settings of the Patch layout page (sizes, threshold, importance, "
                   "budget). A budget is relative: the same share of each image's 16 px grid.")
        keys = [e.key for e in state.uploaded_entries()] + (sample_keys() if include_samples else [])
        if not keys:
            st.info("Upload images in the sidebar, or include the bundled samples.", icon=":material/info:")
            return
        items = []
        progress = st.progress(0.0, text="computing layouts…") if len(keys) > 3 else None
        for j, key in enumerate(keys):
            try:
                entry = state.entry(key)
            except ap.ImageError:
                continue
            for sname in STRATEGIES:
                try:
                    settings = _settings(sname, entry)
                    lay = compute.layout(entry, settings)
                except ValueError as e:  # e.g. settings the library refuses on this image: note it, keep going
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
        fig = px.bar(bars, x="image", y="tokens", color="strategy", barmode="group", height=380, log_y=True,
                     color_discrete_sequence=["#e8603c", "#ffa421", "#8a8d91", "#c5c8cc"],
                     title="Tokens per image (fewer is cheaper; log scale: images of any size side by side)")
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text=None, xaxis_title=None)
        st.plotly_chart(fig, config=ui.PLOT_CONFIG, key="eff_bars")

        st.markdown("**Theoretical speed-up over the uniform 16 px grid, all images together**: ViT MACs of the "
                    "16 px grids / MACs of the layouts, ratio of totals (each image weighs by its compute, not one vote each)")
        speedups = mean_speedups(rows, vits, exclude=["uniform 16 px"])
        if speedups:
            speed = pd.DataFrame(speedups).T[vits]
            st.dataframe(speed.style.format("×{:.2f}").highlight_max(axis=0, color="rgba(33, 195, 84, 0.35)"),
                         width="stretch")
        else:
            st.caption("No adaptive layout could be computed with the current settings (see the notes above).")
        summaries = [x for x in (efficiency_summary(rows, s, state.get("vit")) for s in dict.fromkeys(df["strategy"]))
                     if x is not None]
        st.markdown("**Per strategy, all images together**")
        st.dataframe(_summary_table(summaries), width="stretch")
        with st.expander("Per-image numbers", icon=":material/table:"):
            st.dataframe(df, width="stretch", hide_index=True)
        summary = next((x for x in summaries if x.strategy == "quadtree"), None)
        if summary is not None:
            st.info(md_escape(_summary_text(summary)), icon=":material/summarize:")


def _summary_table(summaries: list[EfficiencySummary]) -> pd.DataFrame:
    """One row per strategy: token statistics per image and the ratios of totals, labelled as such."""
    rows = []
    for s in summaries:
        psnr = "–" if s.psnr is None else f"{s.psnr:.2f}"
        if s.lossless_images:
            psnr += f" ({s.lossless_images} lossless left out)"
        rows.append({
            "strategy": s.strategy, "images": s.images, "total tokens": f"{s.total_tokens:,}",
            "mean tokens / image": f"{s.tokens:,.0f}", "p50 tokens / image": f"{s.p50_tokens:,}",
            "p95 tokens / image": f"{s.p95_tokens:,}", "max tokens / image": f"{s.max_tokens:,}",
            "tokens / MP": f"{s.tokens_per_mp:,.0f}",
            "fewer tokens than uniform 16 px (ratio of totals)": f"{100 * s.reduction_vs_uniform16:.1f}%",
            "fewer tokens than the finest patch's grid (ratio of totals)": f"{100 * s.reduction_vs_uniform_min:.1f}%",
            f"{s.vit} MACs vs uniform 16 px, ratio of totals": ui.speedup_phrase(s.speedup_vs_uniform16),
            "mean PSNR dB (lossy images)": psnr,
            "mean SSIM": "–" if s.ssim is None else f"{s.ssim:.4f}",
        })
    return pd.DataFrame(rows).set_index("strategy")


def _summary_text(s: EfficiencySummary) -> str:
    """The summary as sentences for a slide (ratios over several images are ratios of totals)."""
    n = s.images
    if n == 1:
        text = (f"On this image the quadtree layout uses {s.total_tokens:,} tokens ({s.tokens_per_mp:,.0f} per "
                "megapixel). ")
    else:
        text = (f"Across {n} images the quadtree layout uses {s.total_tokens:,} tokens in all: {s.tokens:,.0f} per "
                f"image on average (median {s.p50_tokens:,}, p95 {s.p95_tokens:,}, max {s.max_tokens:,}), "
                f"{s.tokens_per_mp:,.0f} per megapixel. ")
    every = "all these images" if n > 1 else "this image"
    text += (f"Against a fixed grid with the same finest detail ({s.finest_size} px) that is "
             f"{ui.fewer_phrase(s.reduction_vs_uniform_min)} tokens; against the standard 16 px ViT grid "
             f"{ui.fewer_phrase(s.reduction_vs_uniform16)}, and for {s.vit} {ui.speedup_phrase(s.speedup_vs_uniform16)} "
             f"in theory (MACs of {every} together). ")
    if s.psnr is not None:
        text += f"What the model sees stays close to the original: PSNR {s.psnr:.1f} dB"
        if s.lossless_images:
            text += (f" on average over the {s.psnr_images} image{'s' if s.psnr_images != 1 else ''} not kept "
                     f"losslessly ({s.lossless_images} lossless, left out of the mean)")
        elif n > 1:
            text += " on average"
        text += f", SSIM {s.ssim:.3f}. "
    elif s.lossless_images:
        text += f"What the model sees is the original itself (lossless on {every}). "
    if n > 1:
        text += (f"Biggest saving: {s.best_image} ({ui.fewer_phrase(s.best_reduction)} tokens than 16 px); "
                 f"smallest: {s.worst_image} ({ui.fewer_phrase(s.worst_reduction)}). Flat images save the most; "
                 "raise the threshold or lower the budget on the Patch layout page to trade detail for tokens.")
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
