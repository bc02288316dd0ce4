"""Efficiency: tokens, MACs and speed-up for every loaded image at once, with a plain summary."""

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
            table, help_ = _per_image_table(df, vits)
            st.dataframe(table, width="stretch", hide_index=True,
                         column_config={k: st.column_config.Column(help=v) for k, v in help_.items()})
        summary = next((x for x in summaries if x.strategy == "quadtree"), None)
        if summary is not None:
            st.info(md_escape(_summary_text(summary)), icon=":material/summarize:")


def _per_image_columns(vits: list[str]) -> dict[str, tuple[str, object, str | None]]:
    """``efficiency_rows`` key -> (column name a reader understands, its format, its help)."""
    cols: dict[str, tuple[str, object, str | None]] = {
        "image": ("image", None, None), "strategy": ("strategy", None, None),
        "tokens": ("tokens", "{:,}", "Tokens of this layout (what the ViT processes)."),
        "pixels": ("pixels", "{:,}", "Height x width of the image."),
        "uniform16": ("tokens, uniform 16 px", "{:,}", "Tokens of the standard ViT grid of 16 px patches."),
        "reduction": ("fewer tokens than uniform 16 px", ui.fmt_pct,
                      "1 - tokens / tokens of the 16 px grid (negative: more tokens than the grid)."),
        "min_size": ("finest patch (px)", "{:,}", "The layout's smallest patch size."),
        "uniform_min": ("tokens, uniform finest patch", "{:,}",
                        "Tokens of a fixed grid at the layout's finest patch size (the same finest detail)."),
        "reduction_min": ("fewer tokens than uniform finest patch", ui.fmt_pct,
                          "1 - tokens / tokens of the finest patch's grid."),
    }
    for v in vits:
        cols[f"{v} GMACs"] = (f"{v} GMACs", "{:.2f}", f"{v} multiply-accumulates, in billions. {ui.MACS_HELP}")
        cols[f"{v} uniform16 GMACs"] = (f"{v} GMACs, uniform 16 px", "{:.2f}",
                                        f"{v} GMACs of the 16 px grid of the same image.")
        cols[f"{v} speedup"] = (f"{v} speed-up vs uniform 16 px", "×{:.2f}",
                                f"{v} MACs of the 16 px grid / MACs of this layout (theoretical, this image).")
    cols["psnr"] = ("PSNR (dB)", ui.fmt_psnr, "What the model sees against the original; lossless: an exact copy.")
    cols["ssim"] = ("SSIM", "{:.4f}", "Structural similarity of what the model sees (luminance).")
    return cols


def _per_image_table(df: pd.DataFrame, vits: list[str]):
    """The per-image rows with human column names, fractions as percentages: (Styler, column help)."""
    cols = {k: c for k, c in _per_image_columns(vits).items() if k in df.columns}
    out = df[list(cols)].rename(columns={k: c[0] for k, c in cols.items()})
    fmt = {name: f for name, f, _ in cols.values() if f is not None}
    return out.style.format(fmt, na_rep="–"), {name: h for name, _, h in cols.values() if h}


def _psnr_cell(s: EfficiencySummary) -> str:
    """The summary's PSNR (of the mean MSE), with how many images were lossless."""
    if s.psnr is None:
        return "–"
    if s.lossless_images == s.psnr_images:
        return "lossless"
    text = f"{s.psnr:.2f}"
    return text + f" ({s.lossless_images} of {s.psnr_images} images lossless)" if s.lossless_images else text


def _summary_table(summaries: list[EfficiencySummary]) -> pd.DataFrame:
    """One row per strategy: token statistics per image and the ratios of totals, labelled as such."""
    rows = []
    for s in summaries:
        rows.append({
            "strategy": s.strategy, "images": s.images, "total tokens": f"{s.total_tokens:,}",
            "mean tokens / image": f"{s.tokens:,.0f}", "p50 tokens / image": f"{s.p50_tokens:,}",
            "p95 tokens / image": f"{s.p95_tokens:,}", "max tokens / image": f"{s.max_tokens:,}",
            "tokens / MP": f"{s.tokens_per_mp:,.0f}",
            "fewer tokens than uniform 16 px (ratio of totals)": ui.fmt_pct(s.reduction_vs_uniform16),
            "fewer tokens than the finest patch's grid (ratio of totals)": ui.fmt_pct(s.reduction_vs_uniform_min),
            f"{s.vit} MACs vs uniform 16 px, ratio of totals": ui.speedup_phrase(s.speedup_vs_uniform16),
            "PSNR dB (of the mean MSE)": _psnr_cell(s),
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
    if s.psnr is not None and s.lossless_images == s.psnr_images:
        text += f"What the model sees is the original itself (lossless on {every}). "
    elif s.psnr is not None:
        text += f"What the model sees stays close to the original: PSNR {s.psnr:.1f} dB"
        if n > 1:
            text += " (of the mean squared error over the images"
            text += f"; {s.lossless_images} of them lossless)" if s.lossless_images else ")"
        text += f", SSIM {s.ssim:.3f}{' on average' if n > 1 else ''}. "
    if n > 1:
        text += (f"Biggest saving: {s.best_image} ({ui.fewer_phrase(s.best_reduction)} tokens than 16 px); "
                 f"smallest: {s.worst_image} ({ui.fewer_phrase(s.worst_reduction)}). Flat images save the most; "
                 "raise the threshold or lower the budget on the Patch layout page to trade detail for tokens.")
    return text


st.title("Efficiency")
st.caption("Every loaded image at once: tokens per strategy, MACs (in GMACs) and theoretical speed-up for the ViT "
           f"presets, and a summary you can paste into a slide. {ui.MACS_HELP}")
efficiency_view()

st.subheader("Measured, not just predicted")
st.caption("MACs are a prediction. Below: wall-clock forward latency of ViT-Ti/S/B against the token count, and "
           "the bundled task model's accuracy and measured speed-up per method, both bundled measurements (each "
           "caption says where they were made; details, and a live measurement, on the Model page).")
with ui.guard("model results"):
    from adapatch.app_support import model_view

    model_view.latency_chart("eff_latency")  # each captioned with where and when it was measured
    model_view.results_table()
