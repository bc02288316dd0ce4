"""Token pruning: score the uniform grid's tokens, keep the top fraction, see what is dropped."""

from __future__ import annotations

import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, recipes, state, ui
from adapatch.app_support.images import ImageEntry


@st.fragment
def pruning_view(entry: ImageEntry) -> None:
    with ui.guard():
        top = st.container()
        left, right = st.columns([1, 3], gap="medium")
        with left:
            st.markdown("**Pruning settings**")
            patch = state.widget("prune_patch", st.selectbox, "Grid patch size (px)", options=[8, 16, 32],
                                 help="The fixed ViT grid whose tokens are scored and pruned.")
            scorer = state.widget("prune_scorer", st.selectbox, "Token scorer", options=list(recipes.PRUNE_SCORERS),
                                  format_func=lambda s: recipes.PRUNE_SCORERS[s],
                                  help="Saliency (method from the Saliency page) averaged or maxed over each token.")
            keep = state.widget("keep_ratio", st.slider, "Keep ratio", 0.05, 1.0, step=0.05, format="%.2f",
                                help="Fraction of tokens kept (the highest-scoring ones).")
            vit = state.widget("vit", st.selectbox, "ViT preset for FLOPs", options=ap.VIT_PRESETS)
            st.caption(f"Saliency: **{recipes.current_saliency()['method']}** (change it on the Saliency page).")
        settings = recipes.prune_settings(keep, patch, scorer)
        lay = compute.layout(entry, settings)
        eff = ap.efficiency(lay, vit)
        slots = ui.efficiency_metrics(eff, lay, container=top)
        with right:
            c1, c2 = st.columns(2)
            c1.image(compute.overlay_png(entry, settings, kind="tokens"), output_format="PNG", width="stretch",
                     caption=f"Kept {ui.fmt_int(lay.num_tokens)} of {ui.fmt_int(lay.num_tokens + len(lay.dropped))} "
                             f"tokens; dropped tokens dimmed")
            c2.image(compute.reconstruction_png(entry, settings, state.device()), output_format="PNG",
                     width="stretch", caption="What the model sees: dropped tokens carry no information (mean colour)")
        ui.fidelity_metrics(slots, compute.fidelity(entry, settings, state.device()))
        ui.export_section(entry, settings, lay, kind="tokens", key="prune_export")


with ui.guard("image"):
    _entry = state.current()
    ui.page_header("Token pruning", "A standard ViT grid, each token scored by saliency; only the best-scoring "
                   "fraction reaches the transformer.", _entry)
    pruning_view(_entry)
