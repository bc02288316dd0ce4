"""Patch layout: strategy, importance, threshold, patch sizes and budget -> overlay and numbers."""

from __future__ import annotations

import streamlit as st

import adapatch as ap
from adapatch.app_support import (
    compute,
    model_source,
    model_view,
    query_ui,
    recipes,
    state,
    ui,
)
from adapatch.app_support.images import ImageEntry

IMPORTANCE_HELP = {
    "std": "standard deviation of the pixels in the square",
    "variance": "variance of the pixels",
    "mean_saliency": "mean of the saliency map (method from the Saliency page)",
    "max_saliency": "maximum of the saliency map",
    "entropy": "grey-level entropy of the square",
    "distortion": "error a split removes from what 16 px tokens see (rate-distortion)",
}
ALLOCATION_HELP = {"saliency": "saliency (most salient cells first)",
                   "distortion": "distortion (most error removed per token)"}
IMPLIED_KEY = "w_threshold_implied"
"""Key of the disabled threshold slider shown in budget mode (never the user's ``w_threshold``)."""


def _clamp(lo: int, hi: int):
    return lambda v: int(min(max(int(v), lo), hi))


def selector_view(entry: ImageEntry, top, left, right) -> None:
    """The learned selector's keep probabilities and its top-k layout, in the model's input frame."""
    with left:
        picked = model_source.picker()
        if picked is None:
            return
        model_source.summary(*picked)
        from adapatch.model import describe_model
        d = describe_model(picked[1])
        if not d["has_selector"]:
            st.warning("The learned selector is part of the bundled task model only; pick it to see this view.",
                       icon=":material/block:")
            return
        cells = d["grid_size"] ** 2
        k = state.widget("selector_k", st.slider, "Tokens kept (top-k cells)", 1, cells, clamp=_clamp(1, cells),
                         help=f"The selector scores each of the model's {cells} grid cells; the k most likely are kept.")
        vit = state.widget("vit", st.selectbox, "ViT preset (for MACs)", options=ap.VIT_PRESETS)
        choice = query_ui.controls(entry, picked=picked)
    main = query_ui.beside(right, entry, choice, "layout")  # the drawing surface, before anything is computed
    choice = query_ui.checked(entry, choice)
    settings = recipes.layout_settings(strategy="learned_selector")
    frame_shape = compute.frame(entry, settings).shape[:2]  # region coordinates go to the model's input
    settings = recipes.with_query(settings, query_ui.record(choice, entry, frame_shape))
    lay = compute.layout(entry, settings)
    eff = ap.efficiency(lay, vit)
    slots = ui.efficiency_metrics(eff, lay, container=top, against_finest=True)
    size = d["img_size"]
    with right:
        model_source.image_caveat(picked[0], state.current_key())
    with main:
        query_ui.note(choice)
        c1, c2 = st.columns(2)
        c1.image(model_view.selector_png(entry, settings), output_format="PNG", width="stretch",
                 caption=f"Learned selector: keep probability of each {d['patch_size']} px cell "
                         "(turbo: blue 0 → red 1)")
        ranked = (f", ranked by the selector mixed with the {choice.query['kind']} query (weight {choice.weight:.2f})"
                  if choice.ready else "")
        c2.image(compute.overlay_png(entry, settings, kind="tokens"), output_format="PNG", width="stretch",
                 caption=f"Top-{k} of {cells} cells kept{ranked}; dropped cells dimmed and tinted blue")
        st.caption(f"Both in the model's {size}x{size} input frame: the image resized to {size}x{size} (aspect not "
                   "kept). The numbers above are for this frame.")
        if choice.ready:
            query_ui.query_heatmap(entry, choice, st.columns(2)[0])  # the size of the pictures above
    ui.fidelity_metrics(slots, compute.fidelity(entry, settings, state.device()))
    if choice.ready:
        query_ui.comparison(entry, recipes.query_pair(settings), choice, kind="tokens",
                            budget_note=f"The same {k} cells kept on both sides; query weight {choice.weight:.2f}.")
    ui.export_section(entry, settings, lay, kind="tokens", key="layout_export")


def threshold_widget(curve: ap.ThresholdCurve | None, budget: recipes.Budget | None, quad: bool) -> float:
    """The Importance threshold slider. With a budget (quadtree) it is disabled and shows the threshold
    the budget implies (``ThresholdCurve.threshold_for``: the threshold-mode quadtree of the same
    importance and sizes with at most the budget's tokens), under its own key, so the user's own
    threshold setting is kept and comes back when the budget is turned off. Returns the threshold
    the view stands for."""
    if not (quad and budget is not None and curve is not None):
        return state.widget("threshold", st.slider, "Importance threshold", 0.0, 1.0, step=0.005, format="%.4f",
                            disabled=not quad or budget is not None,
                            help="Without a budget: a square splits while its importance is above this value."
                                 + ("" if quad else " (quadtree only)"))
    implied = curve.threshold_for(budget.tokens)
    st.session_state[IMPLIED_KEY] = float(min(max(implied, 0.0), 1.0))  # a display-only widget: set, never read
    st.slider("Importance threshold", 0.0, 1.0, step=0.005, format="%.4f", disabled=True, key=IMPLIED_KEY,
              help="Set by the budget: the threshold at which the threshold-mode quadtree (same importance and "
                   "sizes) uses at most the budget's tokens. Turn the budget off to set your own threshold.")
    n = curve.tokens_at(implied)
    st.caption(f"The budget implies threshold {implied:.4f} (threshold mode: {n:,} token{'s' if n != 1 else ''}, "
               "the same or fewer)")
    return implied


@st.fragment
def layout_view(entry: ImageEntry) -> None:
    with ui.guard():
        top = st.container()
        left, right = st.columns([1, 2.6], gap="medium")
        with left:
            st.markdown("**Layout settings**")
            strategy = state.widget("strategy", st.selectbox, "Strategy", options=list(recipes.LAYOUT_STRATEGY_LABELS),
                                    format_func=lambda s: recipes.LAYOUT_STRATEGY_LABELS.get(s, s),
                                    help="quadtree: split squares whose importance exceeds the threshold; "
                                         "greedy: give the most salient cells the smallest patches within a budget; "
                                         "multiscale: the best of quadtrees on several base patch sizes and the "
                                         "uniform grid at the budget, by the error of what the model sees; "
                                         "selector: the learned patch selector of the bundled model keeps the "
                                         "top-k cells of its grid.")
            strategy = strategy or "quadtree"
        if strategy == "learned_selector":
            selector_view(entry, top, left, right)
            return
        with left:
            quad = strategy == "quadtree"
            if quad or strategy != "greedy":
                importance = state.widget("importance", st.selectbox, "Importance measure",
                                          options=ap.IMPORTANCE_MEASURES,
                                          format_func=lambda m: f"{m} · {IMPORTANCE_HELP.get(m, '')}",
                                          disabled=not quad, help="What makes a square worth splitting (quadtree). "
                                          "distortion (the default) keeps the most of the image at equal tokens.")
            else:
                importance = state.get("importance")
                state.widget("greedy_allocation", st.selectbox, "Allocation", options=list(ALLOCATION_HELP),
                             format_func=ALLOCATION_HELP.get,
                             help="How greedy gives each cell of the largest size its patch size.")
            sizes = state.widget("sizes", st.select_slider, "Patch sizes (px)", options=list(recipes.SIZE_OPTIONS),
                                 clamp=lambda v: tuple(v) if len(tuple(v)) == 2 else (8, 64),
                                 help="Smallest and largest patch; every power of two in between is used.")
            min_size, max_size = recipes.fit_sizes(entry.height, entry.width, sizes)  # a small image: fitted
            note = recipes.sizes_note(entry.height, entry.width, sizes)
            if note:
                st.caption(note)
            use_budget = state.widget("use_budget", st.toggle, "Token budget",
                                      help="Cap the number of tokens (quadtree refines best-first until it is used; "
                                           "the threshold is then not used).")
            threshold_slot = st.container()  # filled once the budget is known: it shows the threshold implied
            curve = (compute.threshold_curve(entry, recipes.current_saliency(), min_size, max_size, importance)
                     if quad else None)
            top_f = recipes.fraction_max(sizes[0])  # the range depends on the sizes, never on the image
            state.widget("budget_fraction", st.slider, "Budget (% of the 16 px grid)", recipes.FRACTION_MIN, top_f,
                         step=recipes.FRACTION_STEP, format="percent", clamp=recipes.clamp_fraction(top_f),
                         disabled=not (use_budget or strategy == "multiscale"),
                         help="A share of the tokens a ViT/16 spends on the image, so every image gets the same "
                              "relative compute (switching images keeps the share)."
                              + (" multiscale always works to a budget." if strategy == "multiscale" else ""))
            budget = recipes.layout_budget(entry, strategy, (min_size, max_size), importance)
            if use_budget or strategy == "multiscale":
                st.caption(budget.caption())
            vit = state.widget("vit", st.selectbox, "ViT preset (for MACs)", options=ap.VIT_PRESETS)
            show_recon = state.widget("show_recon", st.toggle, "Show what the model sees",
                                      help="Each token resampled to 16x16 and painted back at its box.")
            choice = query_ui.controls(entry)
        main = query_ui.beside(right, entry, choice, "layout")  # the drawing surface, before anything is computed
        choice = query_ui.checked(entry, choice)
        query = query_ui.record(choice, entry)
        with threshold_slot:  # with a query, the curve of the mixed importance
            qcurve = (compute.threshold_curve(entry, recipes.current_saliency(), min_size, max_size, importance, query)
                      if curve is not None and query is not None else curve)
            threshold = threshold_widget(qcurve, budget if use_budget else None, quad)

        settings = recipes.with_query(recipes.layout_settings(entry=entry), query)
        lay = compute.layout(entry, settings)
        eff = ap.efficiency(lay, vit)
        slots = ui.efficiency_metrics(eff, lay, container=top)

        with main:
            if show_recon:
                st.image(compute.reconstruction_png(entry, settings, state.device()), output_format="PNG",
                         width="stretch", caption="What the model sees: every token resampled to 16 px and painted back")
            else:  # JPEG at display size: ~10 ms to encode where PNG takes ~90 ms at 1024 px (download: PNG)
                st.image(compute.overlay_jpeg(entry, settings), output_format="JPEG", width="stretch",
                         caption=f"{ui.fmt_int(lay.num_tokens)} tokens · {recipes.describe(settings)}"
                                 " · colour = patch size")
        if choice.active:
            with right:
                query_ui.note(choice)
                qa, qb = st.columns(2, gap="small")
                if choice.ready:
                    query_ui.query_heatmap(entry, choice, qa)
                query_ui.saliency_heatmap(entry, recipes.current_saliency(), qb,
                                          what="Content saliency (saliency importances and greedy use it)")
        fid = compute.fidelity(entry, settings, state.device())  # after the numbers and the overlay, before the
        ui.fidelity_metrics(slots, fid)  # charts: the browser fetches the overlay while this runs
        c1, c2 = st.columns([1, 1.6])
        with c1:
            ui.size_legend(lay, key="layout_legend")
        with c2:
            if curve is not None and use_budget and importance == "distortion":
                q, u = compute.quality_curves(entry, min_size, max_size)
                st.plotly_chart(ui.quality_figure([q, u], lay.num_tokens, fid["psnr"], fid["ssim"]),
                                config=ui.PLOT_CONFIG, key="layout_quality")
                st.caption(f"Quadtree: PSNR at every budget, SSIM exact at {len(q.ssim)} budgets spread over the range; "
                           f"uniform: {len(u.tokens)} patch sizes (SSIM at {len(u.ssim)}); the current layout's values "
                           "are exact. All against the original image."
                           + (" The curves are without the query; the current layout has it." if query else ""))
            elif curve is not None:  # budget mode: the threshold it implies, on the curve, and the budget line
                fig = (ui.curve_figure(qcurve, threshold, qcurve.tokens_at(threshold), budget.tokens,
                                       label="threshold the budget implies") if use_budget else
                       ui.curve_figure(qcurve, threshold, lay.num_tokens, None))
                st.plotly_chart(fig, config=ui.PLOT_CONFIG, key="layout_curve")
            elif strategy == "multiscale":
                p = lay.params
                won = (f"the uniform grid of {p['base_size']} px patches (no adaptive layout kept more here)"
                       if p["levels_used"] == 0 else
                       f"a quadtree of {p['base_size']}-{p['base_size'] << p['levels_used']} px boxes")
                st.info(f"Best at this budget, by the squared error of what the model sees: {won}. "
                        "Candidates: quadtrees on several base patch sizes and the equal-token uniform grid.",
                        icon=":material/info:")
            else:
                st.info("The tokens-vs-threshold curve applies to the quadtree; greedy spends the budget "
                        "on the most salient cells (saliency method from the Saliency page), or by "
                        "rate-distortion allocation.", icon=":material/info:")
        if choice.ready:
            tokens = budget.tokens if use_budget or strategy == "multiscale" else lay.num_tokens
            query_ui.comparison(entry, recipes.query_pair(settings, tokens), choice,
                                budget_note=f"Both solved for {tokens:,} tokens (the library's budget mode), same "
                                            f"strategy and sizes; query weight {choice.weight:.2f}.")
        ui.export_section(entry, settings, lay, key="layout_export")


with ui.guard("image"):
    _entry = state.current()
    ui.page_header("Patch layout",
                   "Fewer, larger patches where the image is flat; more, smaller ones where it has detail. "
                   "Move the threshold or the budget and watch the tokens and fidelity change.", _entry)
    layout_view(_entry)
