"""Efficiency: tokens, FLOPs and speedup for every loaded image at once, with a plain summary."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, recipes, state, ui
from adapatch.app_support.images import md_escape, sample_keys


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
        rows = []
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
                row = {"image": entry.name, "strategy": sname}
                for vit in ap.VIT_PRESETS:
                    eff = ap.efficiency(lay, vit)
                    row.update(tokens=eff["tokens"], uniform16=eff["uniform16_tokens"],
                               reduction=eff["token_reduction_vs_uniform16"], min_size=eff["min_size"],
                               uniform_min=eff["uniform_min_tokens"],
                               reduction_min=eff["token_reduction_vs_uniform_min"])
                    row[f"{vit} GMACs"] = eff["flops"] / 1e9
                    row[f"{vit} speedup"] = eff["speedup_vs_uniform16"]
                if with_fidelity:
                    fid = compute.fidelity(entry, settings, state.device())
                    row.update(psnr=fid["psnr"], ssim=fid["ssim"])
                rows.append(row)
            if progress is not None:
                progress.progress((j + 1) / len(keys), text=f"computed {j + 1} of {len(keys)} images")
        if progress is not None:
            progress.empty()
        df = pd.DataFrame(rows)
        q = df[df["strategy"] == "quadtree"]
        bars = df[["image", "strategy", "tokens"]]
        if len(q):  # the fixed grid with the adaptive layout's finest detail, from efficiency()
            finest = int(q["min_size"].iloc[0])
            bars = pd.concat([bars, pd.DataFrame({"image": q["image"], "strategy": f"uniform {finest} px",
                                                  "tokens": q["uniform_min"]})])
        fig = px.bar(bars, x="image", y="tokens", color="strategy", barmode="group", height=380,
                     color_discrete_sequence=["#e8603c", "#ffa421", "#8a8d91", "#c5c8cc"],
                     title="Tokens per image (fewer is cheaper)")
        fig.update_layout(margin=dict(l=10, r=10, t=40, b=10), legend_title_text=None, xaxis_title=None)
        st.plotly_chart(fig, config=ui.PLOT_CONFIG, key="eff_bars")

        vits = list(ap.VIT_PRESETS)
        st.markdown("**Theoretical speedup over the uniform 16 px grid** (FLOPs ratio, per ViT preset)")
        speed = df[df["strategy"] != "uniform 16 px"].pivot_table(index="strategy", values=[f"{v} speedup" for v in vits],
                                                                  aggfunc="mean")
        speed.columns = [c.replace(" speedup", "") for c in speed.columns]
        st.dataframe(speed[vits].style.format("×{:.2f}").highlight_max(axis=0, color="rgba(33, 195, 84, 0.35)"),
                     width="stretch")
        with st.expander("Per-image numbers", icon=":material/table:"):
            st.dataframe(df, width="stretch", hide_index=True)

        vit = state.get("vit")
        if len(q):
            n = len(q)
            best = q.loc[q["reduction"].idxmax()]
            worst = q.loc[q["reduction"].idxmin()]
            finest = int(q["min_size"].iloc[0])
            text = (f"Across {n} image{'s' if n != 1 else ''}, the quadtree layout uses on average "
                    f"{q['tokens'].mean():,.0f} tokens. A fixed grid with the same finest detail ({finest} px) "
                    f"needs {q['uniform_min'].mean():,.0f} ({ui.fewer_phrase(q['reduction_min'].mean())} for the "
                    f"adaptive layout); the standard 16 px ViT grid needs {q['uniform16'].mean():,.0f} "
                    f"({ui.fewer_phrase(q['reduction'].mean())}). For {vit} that is "
                    f"{ui.speedup_phrase(q[f'{vit} speedup'].mean())} than the 16 px grid, in theory (FLOPs). ")
            if with_fidelity and "psnr" in q:
                text += (f"What the model sees stays close to the original: PSNR {q['psnr'].mean():.1f} dB, "
                         f"SSIM {q['ssim'].mean():.3f} on average. ")
            if n > 1:
                text += (f"Biggest saving: {best['image']} ({ui.fewer_phrase(best['reduction'])} tokens than 16 px); "
                         f"smallest: {worst['image']} ({ui.fewer_phrase(worst['reduction'])}). Flat images save the most; "
                         "raise the threshold or set a budget on the Patch layout page to trade detail for tokens.")
            st.info(md_escape(text), icon=":material/summarize:")


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
