"""Token pruning: score the uniform grid's tokens, keep the top fraction, see what is dropped.

Scorers: saliency mean / max per token (any image, any grid), or a model's own scores (learned
``TokenPruner``, EViT attention) on the model's patch grid of the image resized to its input.
Every model call (the scorers, attention saliency, the agreement chart) runs on the sidebar's device.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

import adapatch as ap
from adapatch.app_support import compute, model_caveats, model_source, query_ui, recipes, state, ui
from adapatch.app_support import model_view as mv
from adapatch.app_support.images import ImageEntry
from adapatch.samples import task_sample_label


def _model_scorer_ready(scorer: str, device: str) -> tuple[model_source.ModelRef, Any] | None:
    """Picker for the model scorers (the model loaded on ``device``); None (with the reason shown)
    when nothing usable is picked."""
    picked = model_source.picker(device)
    if picked is None:
        return None
    ref, model = picked
    model_source.summary(ref, model)
    from adapatch.model import describe_model
    if scorer == "learned" and not describe_model(model)["has_pruner"]:
        st.warning("Learned pruning needs a trained TokenPruner; only the bundled task model has one. Pick it, "
                   "or use the attention scorer with this model.", icon=":material/block:")
        return None
    return picked


def model_macs_metric(res, model) -> tuple[str, str, str, str]:
    """``(label, value, delta, help)`` of the one MACs ratio a model scorer's numbers show: this model's
    own MACs with pruning after its block against its full grid (not a ViT preset's: the model that
    prunes is the one whose compute is saved)."""
    from adapatch.model import pruned_macs
    full, pruned = pruned_macs(model, res)
    why = (f"This model's MACs with pruning after block {res.layout.params.get('prune_layer')} against its full "
           f"grid (the blocks before the cut see every token; the same formula as the presets' GMACs). {mv.MACS_NOTE}")
    return "Model MACs ratio", f"×{pruned / full:.3f}", f"{pruned / 1e6:.1f} M of {full / 1e6:.1f} M", why


def _model_numbers(res, ref: model_source.ModelRef, model, container) -> None:
    """Prediction from the kept tokens, marked right (green) or wrong (red) against the true digit as
    the Demo marks it (the true digit only for the bundled task model on one of its digit samples:
    other models have other classes)."""
    from adapatch.model import describe_model
    from adapatch.model.classes import class_label
    c1 = container.columns([2, 5])[0]  # wide enough for "index · ImageNet name"
    pred = "no classifier head" if res.prediction is None else f"class {res.prediction}"
    key = state.current_key()
    truth = (task_sample_label(key[len("sample:"):]) if ref.kind == "task" and key.startswith("sample:")
             else None)
    named = class_label(res.prediction, describe_model(model)["num_classes"])  # "index · ImageNet name"
    if truth is not None:
        right = res.prediction == truth
        c1.metric("Prediction", pred, delta=f"{'right' if right else 'wrong'} · true digit {truth}",
                  delta_color="normal" if right else "inverse", delta_arrow="off",
                  help="What the model predicts from the tokens it kept, against the sample's true digit.")
        return
    c1.metric("Prediction", pred, delta=named if " · " in named else None, delta_color="off", delta_arrow="off",
              help="What the model predicts from the tokens it kept" + (" (index · ImageNet class name)."
                                                                         if " · " in named else "."))


@st.fragment
def pruning_view(entry: ImageEntry) -> None:
    with ui.guard():
        top = st.container()
        left, right = st.columns([1, 3], gap="medium")
        picked = None
        with left:
            st.markdown("**Pruning settings**")
            scorer = state.widget("prune_scorer", st.selectbox, "Token scorer", options=list(recipes.SCORER_LABELS),
                                  format_func=lambda s: recipes.SCORER_LABELS[s],
                                  help="Saliency (method from the Saliency page) averaged or maxed over each token, "
                                       "or a ViT's own scores: its learned TokenPruner, or EViT's CLS attention "
                                       "(the dropped tokens are fused into one).")
            model_based = scorer in recipes.MODEL_SCORERS
            patch_slot = st.empty()  # model scorers: the model's own patch size, once the model is loaded
            if not model_based:
                patch = state.widget("prune_patch", st.selectbox, "Grid patch size (px)", options=[8, 16, 32],
                                     help="The fixed ViT grid whose tokens are scored and pruned.")
            keep = state.widget("keep_ratio", st.slider, "Keep ratio", 0.05, 1.0, step=0.05, format="%.2f",
                                help="Fraction of tokens kept (the highest-scoring ones).")
            vit = state.get("vit")  # model scorers: the MACs are the picked model's own, no preset to pick
            if not model_based:
                vit = state.widget("vit", st.selectbox, "ViT preset (for MACs)", options=ap.VIT_PRESETS,
                                   help=f"The ViT whose GMACs (per image) the numbers above use. {mv.MACS_NOTE}")
            if model_based:
                dev = mv.model_device()  # the sidebar's device, "auto" resolved (CUDA when present)
                picked = _model_scorer_ready(scorer, dev)
                if picked is None:
                    return
                from adapatch.model import describe_model
                own = describe_model(picked[1])["patch_size"]
                patch_slot.selectbox("Grid patch size (px)", [own], disabled=True, key="w_prune_patch_model",
                                     help="Model scorers prune the model's own patch grid: this is its patch size.")
                st.caption(f"Model calls run on **{dev.upper()}** (the sidebar's device).")
            else:
                st.caption(f"Saliency: **{recipes.current_saliency()['method']}** (change it on the Saliency page).")
            choice = query_ui.controls(entry, picked=picked)
        main = query_ui.beside(right, entry, choice, "pruning")  # the drawing surface, before anything is computed
        choice = query_ui.checked(entry, choice)
        if picked is not None:  # a model scorer (picked above, or the page has returned)
            from adapatch.model import describe_model
            d = describe_model(picked[1])
            settings = recipes.prune_settings(keep, d["patch_size"], scorer)
            frame_shape = compute.frame(entry, settings).shape[:2]  # region coordinates go to the model's input
            settings = recipes.with_query(settings, query_ui.record(choice, entry, frame_shape))
            res = compute.model_prune(entry, settings)
            lay = res.layout
            frame_note = (f" of the model's {d['grid_size']}x{d['grid_size']} grid, on the image resized to "
                          f"{d['img_size']}x{d['img_size']} (its input)")
        else:
            settings = recipes.with_query(recipes.prune_settings(keep, patch, scorer), query_ui.record(choice, entry))
            lay = compute.layout(entry, settings)
            frame_note = ""
        eff = ap.efficiency(lay, vit)
        slots = ui.efficiency_metrics(eff, lay, container=top, against_finest=model_based,
                                      macs=model_macs_metric(res, picked[1]) if picked is not None else None)
        if picked is not None:
            _model_numbers(res, picked[0], picked[1], top)
        with right:
            warned = (model_caveats.image_caveat(picked[0], state.current_key()) if picked is not None
                      else model_caveats.settings_caveat(settings, state.current_key()))
            kept = (f"Kept {ui.fmt_int(lay.num_tokens)} of {ui.fmt_int(lay.num_tokens + len(lay.dropped))} "
                    f"tokens{frame_note}; dropped tokens dimmed{' and tinted blue' if model_based else ''}"
                    + (f" · {choice.query['kind']} query, weight {choice.weight:.2f}"
                       if choice.query is not None else ""))
            seen = ("dropped tokens shown as mean colour (EViT fuses them into one token)" if scorer == "attention"
                    else "dropped tokens carry no information (mean colour)")
            if choice.active:
                main.image(compute.overlay_png(entry, settings, kind="tokens"), output_format="PNG", width="stretch",
                           caption=kept)
                query_ui.note(choice, warned=warned)
                cols = st.columns(3 if not model_based else 2, gap="small")
                if choice.ready:
                    query_ui.query_heatmap(entry, choice, cols[0])
                if not model_based:
                    query_ui.saliency_heatmap(entry, recipes.current_saliency(), cols[1],
                                              what="Content saliency (the token scores' source)")
                cols[-1].image(compute.reconstruction_png(entry, settings, state.device()), output_format="PNG",
                               width="stretch", caption=f"What the model sees: {seen}")
            else:
                c1, c2 = st.columns(2)
                c1.image(compute.overlay_png(entry, settings, kind="tokens"), output_format="PNG", width="stretch",
                         caption=kept)
                c2.image(compute.reconstruction_png(entry, settings, state.device()), output_format="PNG",
                         width="stretch", caption=f"What the model sees: {seen}")
        ui.fidelity_metrics(slots, compute.fidelity(entry, settings, state.device()))
        if choice.ready:
            query_ui.comparison(entry, recipes.query_pair(settings), choice, kind="tokens",
                                budget_note=f"The same grid and keep ratio ({keep:.0%}) on both sides, so the same "
                                            f"number of tokens; query weight {choice.weight:.2f}.")
        ui.export_section(entry, settings, lay, kind="tokens", key="prune_export")
        st.subheader("Keep ratio vs agreement with the full grid")
        mv.agreement_chart(keep, recipes.current_saliency(), recipes.SCORER_LABELS, key="prune_agreement",
                           current=scorer)


with ui.guard("image"):
    _entry = state.current()
    ui.page_header("Token pruning", "A ViT grid, each token scored by saliency or by a model; only the "
                   "best-scoring fraction reaches the transformer.", _entry)
    pruning_view(_entry)
