"""Patch layout: strategy, importance, threshold, patch sizes and budget -> overlay and numbers."""

from __future__ import annotations

import streamlit as st

import adapatch as ap
from adapatch import threshold_scale
from adapatch.app_support import (
    compute,
    model_caveats,
    model_source,
    model_view,
    query_ui,
    recipes,
    state,
    ui,
)
from adapatch.app_support.images import ImageEntry, md_escape

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
                         help=f"The selector scores each of the model's {cells} grid cells; the k most likely "
                              "are kept.")
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
        model_caveats.image_caveat(picked[0], state.current_key())
    with main:
        query_ui.note(choice)
        c1, c2 = st.columns(2)
        c1.image(model_view.selector_png(entry, settings), output_format="PNG", width="stretch",
                 caption=f"Learned selector: keep probability of each {d['patch_size']} px cell "
                         "(turbo: blue 0 → red 1)")
        ranked = (f", ranked by the selector mixed with the {choice.query['kind']} query (weight {choice.weight:.2f})"
                  if choice.query is not None else "")
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


THRESHOLD_KEY = "w_threshold"
"""Key of the user's threshold slider (threshold mode)."""
SHOWN = "ap_threshold_shown"
"""Session key: ``(kind, threshold)`` the threshold slider was last set to by the page. A widget value
that differs from it was set by the user; one that equals it is old, and the stored setting wins (the
budget switched off, a Dataset threshold applied, another importance)."""


def _scale_caption(scale: threshold_scale.ThresholdScale, shown: str, curve) -> str:
    """What the threshold means and how the slider maps to it (``shown``: the slider's label of it;
    ``curve``: the quadtree's ``ThresholdCurve`` or multiscale's ``RDHull``)."""
    ends = (f"0 ({curve.tokens_at(0.0):,} tokens), then {ui.fmt_sig(scale.thresholds[1])} … "
            f"{ui.fmt_sig(scale.thresholds[-1])} ({curve.tokens_at(scale.thresholds[-1]):,} tokens)")
    how = f"Log scale, ×{scale.step_factor:.3g} a step, where this image's token count changes: {ends}."
    if threshold_scale.is_hull(curve):
        return (f"{shown} ({ui.LAMBDA_UNIT_TEXT}): the layout of least error + λ × tokens among the distortion "
                f"quadtree's and the uniform grids' (this image's rate-distortion hull). {how} The coarsest "
                "layouts (uniform grids) get a position each.")
    if scale.unbounded:
        return (f"{shown} ({ui.LAMBDA_UNIT_TEXT}): every added token removes at least "
                f"λ of squared error (least error + λ × tokens). {how}")
    what = "the importance mixed with the query" if "query" in curve.params else "the importance"
    return f"{shown} (a threshold on {what}, in [0, 1]: a square splits while above it). {how}"


def implied_by(curve, tokens: int) -> float:
    """The threshold ``tokens`` imply on ``curve``: ``ThresholdCurve.threshold_for``, or for an
    ``RDHull`` ``recipes.hull_threshold_for`` (a budget below its coarsest layout: that layout)."""
    if threshold_scale.is_hull(curve):
        return recipes.hull_threshold_for(curve, tokens)
    return curve.threshold_for(tokens)


def threshold_widget(curve, budget: recipes.Budget, use_budget: bool,
                     switched_off: bool = False) -> tuple[float, threshold_scale.ThresholdScale]:
    """The Importance threshold slider (quadtree): a select slider over the image's threshold scale
    (``adapatch.threshold_scale``: 0, then log-spaced over where the token count changes, then the
    coarsest), labelled with the threshold itself (``λ = 37.2`` for ``distortion``). The value that
    reaches the library and the settings is the threshold; a stored one off the scale (a Dataset
    threshold, the one a budget implied) is inserted as it is, so it is used exactly.

    With a budget it is disabled and shows the threshold the budget implies
    (``ThresholdCurve.threshold_for``: the threshold-mode quadtree of the same importance and sizes with
    at most the budget's tokens), under its own key. Without one it shows the user's threshold of this
    kind (``recipes.threshold_kind``); none yet, or ``switched_off`` (the budget was just turned off):
    the threshold ``budget`` implies. Returns ``(threshold, scale)``.

    ``curve`` may be ``multiscale``'s ``RDHull`` (threshold mode only): lambda over the image's
    rate-distortion hull, the same kind of threshold as the distortion quadtree's."""
    ss = st.session_state
    scale = threshold_scale.threshold_scale(curve)
    kind = recipes.curve_kind(curve)
    unit = ("λ, the squared error a split must remove per added token (8-bit grey levels² of MSE over 256 px, one "
            "16 px token's area)" if scale.unbounded else "a threshold on the importance, in [0, 1]")
    implied = implied_by(curve, budget.tokens)  # budget.tokens is within the curve's range (layout_budget)
    if use_budget:
        options = [float(v) for v in scale.including(implied)]
        labels = ui.threshold_labels(options, scale.unbounded)
        ss[IMPLIED_KEY] = float(implied)  # a display-only widget: set, never read
        ss.pop(SHOWN, None)
        st.select_slider("Importance threshold", options=options, format_func=labels.get, disabled=True,
                         key=IMPLIED_KEY,
                         help=f"Set by the budget: {unit}; the smallest at which the threshold-mode quadtree (same "
                              "importance and sizes) uses at most the budget's tokens. Turn the budget off to set "
                              "your own (it starts here).")
        n = curve.tokens_at(implied)
        st.caption(f"The budget implies {labels[float(implied)]}"
                   + (f" ({ui.LAMBDA_UNIT_TEXT})" if scale.unbounded else "")
                   + f" (threshold mode: {n:,} token{'s' if n != 1 else ''}, the same or fewer)")
        return implied, scale
    shown = ss.get(SHOWN)
    if switched_off:  # threshold mode starts where the budget was: the threshold it implied
        recipes.set_threshold(kind, implied)
    elif THRESHOLD_KEY in ss and shown is not None and shown[0] == kind and ss[THRESHOLD_KEY] != shown[1]:
        recipes.set_threshold(kind, float(ss[THRESHOLD_KEY]))  # the user moved it
    value = recipes.stored_threshold(kind)
    if value is None:  # no threshold of this kind yet: the one the budget setting implies
        value = implied
    value = float(min(max(value, 0.0), scale.limit))
    options = [float(v) for v in scale.including(value)]
    labels = ui.threshold_labels(options, scale.unbounded)
    ss[THRESHOLD_KEY] = value  # what the slider shows is the stored threshold (the frontend follows)
    ss[SHOWN] = (kind, value)
    out = float(st.select_slider(
        "Importance threshold", options=options, format_func=labels.get, key=THRESHOLD_KEY,
        help=f"Without a budget: {unit}. The slider moves on a log scale over where this image's token count "
             "changes (Home: 0, the finest layout; End: the coarsest). The threshold itself is what the settings "
             "and the export keep."
             + (" multiscale: the layout of least error + λ × tokens among the distortion quadtree's layouts and "
                "uniform grids of 28 sizes; λ is shared with the quadtree." if threshold_scale.is_hull(curve) else "")))
    recipes.set_threshold(kind, out)
    st.caption(_scale_caption(scale, labels[out], curve))
    return out, scale


def _candidate_text(hull, lam: float) -> str:
    """Which candidate ``hull`` takes at ``lam``: "the quadtree (16-64 px boxes)" or "the uniform grid of
    45 px patches"."""
    k = int(hull.index(lam))
    if hull.kinds[k] == "uniform":
        return f"the uniform grid of {int(hull.values[k])} px patches"
    p = hull.params
    return f"the distortion quadtree ({p['token_size']}-{p['token_size'] << p['levels']} px boxes)"


def hull_caption(hull, lam: float, tokens: int) -> str:
    """Multiscale's threshold mode in words: the candidate taken at ``lam`` and what the hull holds."""
    kinds = list(hull.kinds)
    n_uniform = kinds.count("uniform")
    quad_from = next((int(t) for t, k in zip(hull.tokens, kinds) if k == "quadtree"), None)
    held = (f"{len(kinds)} layouts on this image's hull: {n_uniform} uniform grid{'s' if n_uniform != 1 else ''}"
            + (f" and the quadtree's from {quad_from:,} tokens up" if quad_from is not None else
               " (no quadtree layout keeps more here)"))
    return (f"At {ui.fmt_threshold(lam, True)} this image takes {_candidate_text(hull, lam)}: {tokens:,} tokens, the "
            f"least error + λ × tokens of {held}.")


def multiscale_won(lay: ap.PatchLayout) -> str:
    """Which candidate multiscale's budget mode kept, from the layout's params."""
    p = lay.params
    if p["levels_used"] == 0:
        return f"the uniform grid of {p['base_size']} px patches (no quadtree kept more here)"
    return f"a distortion quadtree of {p['base_size']}-{p['base_size'] << p['levels_used']} px boxes"


@st.fragment
def layout_view(entry: ImageEntry) -> None:
    with ui.guard():
        top = st.container()
        left, right = st.columns([1, 2.6], gap="medium")
        with left:
            st.markdown("**Layout settings**")
            strategy = state.widget("strategy", st.selectbox, "Strategy", options=list(recipes.LAYOUT_STRATEGY_LABELS),
                                    format_func=lambda s: recipes.LAYOUT_STRATEGY_LABELS.get(s, s),
                                    help="multiscale (the default): with a budget, the better of the distortion "
                                         "quadtree and the equal-token uniform grid by the error of what the model "
                                         "sees (Search: fast), or of quadtrees on several base patch sizes "
                                         "(thorough); without one, λ over the image's rate-distortion hull. "
                                         "quadtree: split squares whose importance exceeds the threshold; "
                                         "greedy: give the most salient cells the smallest patches within a budget; "
                                         "selector: the learned patch selector of the bundled model keeps the "
                                         "top-k cells of its grid.")
            strategy = strategy or recipes.DEFAULT_STRATEGY
        if strategy == "learned_selector":
            selector_view(entry, top, left, right)
            return
        with left:
            quad = strategy == "quadtree"
            multi = strategy == "multiscale"
            if quad or strategy != "greedy":
                importance = state.widget("importance", st.selectbox, "Importance measure",
                                          options=ap.IMPORTANCE_MEASURES,
                                          format_func=lambda m: f"{m} · {IMPORTANCE_HELP.get(m, '')}",
                                          disabled=not quad, help="What makes a square worth splitting (quadtree). "
                                          "distortion (the default) keeps the most of the image at equal tokens. "
                                          "multiscale always compares layouts by distortion.")
            else:
                importance = state.get("importance")
                state.widget("greedy_allocation", st.selectbox, "Allocation", options=list(ALLOCATION_HELP),
                             format_func=ALLOCATION_HELP.get,
                             help="How greedy gives each cell of the largest size its patch size.")
            sizes = state.widget("sizes", st.select_slider, "Patch sizes (px)", options=list(recipes.SIZE_OPTIONS),
                                 clamp=lambda v: tuple(v) if len(tuple(v)) == 2 else (8, 64),
                                 help="Smallest and largest patch; every power of two in between is used. "
                                      "multiscale: 16-64 px quadtree boxes and uniform grids of any size; the "
                                      "smallest patch sets its budget's range.")
            min_size, max_size = recipes.fit_sizes(entry.height, entry.width, sizes)  # a small image: fitted
            note = recipes.sizes_note(entry.height, entry.width, sizes)
            if note:
                st.caption(note)
            was_budget = bool(state.get("use_budget"))
            use_budget = state.widget("use_budget", st.toggle, "Token budget",
                                      help="Cap the number of tokens (quadtree refines best-first until it is used; "
                                           "multiscale keeps the candidate of least error within it; the threshold "
                                           "is then not used). Switching it on starts the budget at the threshold "
                                           "layout's tokens; off, the threshold starts at the one the budget implied.")
            if multi:
                state.widget("scales", st.selectbox, "Search", options=list(recipes.SEARCH_LABELS),
                             format_func=recipes.SEARCH_LABELS.get, clamp=recipes.search_scales,
                             disabled=not use_budget,
                             help="multiscale's search with a budget. fast (the default): the 16-64 px distortion "
                                  "quadtree against the equal-token uniform grid, by exact error (never keeps less "
                                  "than the uniform grid; ~20 ms at 1 MP). thorough: quadtrees on 6 base patch "
                                  "sizes as well (30-300x slower, ~0.2 dB more on average). Without a budget "
                                  "multiscale uses λ over the image's hull instead.")
            threshold_slot = st.container()  # filled once the query and the budget are known
            budget_slot = st.container()  # filled once the query is known (switching the budget on needs it)
            curve = (compute.threshold_curve(entry, recipes.current_saliency(), min_size, max_size, importance)
                     if quad else None)
            hull = compute.rd_hull(entry) if multi and not use_budget else None  # threshold mode only: built once
            vit = state.widget("vit", st.selectbox, "ViT preset (for MACs)", options=ap.VIT_PRESETS)
            show_recon = state.widget("show_recon", st.toggle, "Show what the model sees",
                                      help="Each token resampled to 16x16 and painted back at its box.")
            choice = query_ui.controls(entry)
        main = query_ui.beside(right, entry, choice, "layout")  # the drawing surface, before anything is computed
        choice = query_ui.checked(entry, choice)
        query = query_ui.record(choice, entry)
        refused = hull is not None and query is not None and query["weight"] > 0
        if refused:  # the library refuses a query in multiscale's threshold mode: say so, go on without it
            query = None
        qcurve = (compute.threshold_curve(entry, recipes.current_saliency(), min_size, max_size, importance, query)
                  if curve is not None and query is not None else curve)  # with a query: the mixed importance's
        with budget_slot:
            top_f = recipes.fraction_max(sizes[0])  # the range depends on the sizes, never on the image
            if (quad or multi) and use_budget and not was_budget:  # switched on: the budget starts at the
                kind = recipes.curve_kind(qcurve) if quad else recipes.MULTISCALE_KIND  # threshold layout's tokens
                mine = recipes.stored_threshold(kind)  # (none stored: threshold mode showed the budget's own
                if mine is not None:  # implied threshold, and the budget stays)
                    tokens = qcurve.tokens_at(mine) if qcurve is not None else compute.rd_hull(entry).tokens_at(mine)
                    state.set_widget("budget_fraction", recipes.fraction_for_tokens(entry, int(tokens), top_f))
            state.widget("budget_fraction", st.slider, "Budget (% of the 16 px grid)", recipes.FRACTION_MIN, top_f,
                         step=recipes.FRACTION_STEP, format="percent", clamp=recipes.clamp_fraction(top_f),
                         disabled=not use_budget,
                         help="A share of the tokens a ViT/16 spends on the image, so every image gets the same "
                              "relative compute (switching images keeps the share).")
            budget = recipes.layout_budget(entry, strategy, (min_size, max_size), importance)
            if use_budget:
                st.caption(budget.caption())
        threshold, scale = None, None
        if qcurve is not None or hull is not None:
            with threshold_slot:
                threshold, scale = threshold_widget(qcurve if quad else hull, budget, use_budget,
                                                    switched_off=was_budget and not use_budget)
        elif multi:
            threshold_slot.caption("Budget off: λ (error per added token) over this image's rate-distortion hull.")

        settings = recipes.with_query(recipes.layout_settings(entry=entry, threshold=threshold), query)
        lay = compute.layout(entry, settings)
        eff = ap.efficiency(lay, vit)
        slots = ui.efficiency_metrics(eff, lay, container=top)
        unused_slot = top.empty()  # under the numbers: a note when they are not at the budget's tokens

        with main:
            warned = model_caveats.settings_caveat(settings, state.current_key())  # the digits model's attention
            if refused:
                st.warning(f"{compute.MULTISCALE_QUERY_REFUSED}. The layout below is without the query.",
                           icon=":material/block:")
            if show_recon:
                st.image(compute.reconstruction_png(entry, settings, state.device()), output_format="PNG",
                         width="stretch",
                         caption="What the model sees: every token resampled to 16 px and painted back")
            else:  # JPEG at display size: ~10 ms to encode where PNG takes ~90 ms at 1024 px (download: PNG)
                st.image(compute.overlay_jpeg(entry, settings), output_format="JPEG", width="stretch",
                         caption=f"{ui.count_text(lay.num_tokens)} · {recipes.describe(settings)}"
                                 " · colour = patch size")
                ui.patch_size_scale(lay.sizes, compute.small_image_factor(lay.height, lay.width))
        if choice.active:
            with right:
                query_ui.note(choice, warned=warned)
                qa, qb = st.columns(2, gap="small")
                if choice.ready:
                    query_ui.query_heatmap(entry, choice, qa)
                query_ui.saliency_heatmap(entry, recipes.current_saliency(), qb,
                                          what="Content saliency (saliency importances and greedy use it)")
        fid = compute.fidelity(entry, settings, state.device())  # after the numbers and the overlay, before the
        ui.fidelity_metrics(slots, fid)  # charts: the browser fetches the overlay while this runs
        use = (recipes.budget_use(settings, lay.num_tokens, lay.height, lay.width, lay.params, fid["psnr"])
               if use_budget else None)
        if use is not None and use.short:
            unused_slot.warning(md_escape(use.note()), icon=":material/data_usage:")
        c1, c2 = st.columns([1, 1.6])
        with c1:
            ui.size_legend(lay, key="layout_legend")
        with c2:
            if (curve is not None and use_budget and importance == "distortion") or (multi and use_budget):
                q_lo, q_hi = (min_size, max_size) if quad else recipes.fit_sizes(entry.height, entry.width, (16, 64))
                q, u = compute.quality_curves(entry, q_lo, q_hi)
                st.plotly_chart(ui.quality_figure([q, u], lay.num_tokens, fid["psnr"], fid["ssim"]),
                                config=ui.PLOT_CONFIG, key="layout_quality")
                st.caption((f"multiscale · {recipes.search_word(lay.params['scales'])} kept {multiscale_won(lay)} at "
                            "this budget, by the squared error of what the model sees; the two curves are its fast "
                            "search's candidates" + (" (thorough also tries quadtrees on other base sizes)"
                                                     if lay.params["scales"] != 1 else "") + ". " if multi else "")
                           + f"Quadtree: PSNR at every budget, SSIM exact at {len(q.ssim)} budgets spread over the "
                           f"range; uniform: {len(u.tokens)} patch sizes (SSIM at {len(u.ssim)}); the current "
                           "layout's values are exact. All against the original image."
                           + (" The curves are without the query; the current layout has it." if query else ""))
            elif hull is not None:  # multiscale's threshold mode: tokens vs lambda over the hull
                assert threshold is not None  # its slider is drawn whenever there is a hull
                st.plotly_chart(ui.threshold_curve_figure(hull, threshold, lay.num_tokens, None, scale=scale,
                                                title="Tokens vs threshold λ · multiscale: quadtree and uniform grids"),
                                config=ui.PLOT_CONFIG, key="layout_curve")
                st.caption(hull_caption(hull, threshold, lay.num_tokens))
            elif curve is not None:  # the threshold (budget mode: the one it implies) on the curve, the budget line
                assert qcurve is not None and threshold is not None  # the curve (query mixed in) and its slider
                fig = (ui.threshold_curve_figure(qcurve, threshold, int(qcurve.tokens_at(threshold)), budget.tokens,
                                       label="threshold the budget implies", scale=scale) if use_budget else
                       ui.threshold_curve_figure(qcurve, threshold, lay.num_tokens, None, scale=scale))
                st.plotly_chart(fig, config=ui.PLOT_CONFIG, key="layout_curve")
            else:
                st.info("The tokens-vs-threshold curve applies to the quadtree and multiscale; greedy spends the "
                        "budget on the most salient cells (saliency method from the Saliency page), or by "
                        "rate-distortion allocation.", icon=":material/info:")
        if choice.ready and not refused:
            tokens = budget.tokens if use_budget else lay.num_tokens
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
