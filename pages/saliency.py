"""Saliency: where the image has detail worth tokens (method, parameters, heatmap, histogram)."""

from __future__ import annotations

import streamlit as st

import adapatch as ap
from adapatch import render
from adapatch.app_support import compute, model_caveats, model_source, query_ui, recipes, state, ui
from adapatch.app_support.images import ImageEntry, md_escape

PARAM_LABELS: dict[tuple[str, str], tuple[str, str]] = {
    ("edges", "low"): ("Weak-edge threshold", "Canny's lower gradient threshold (0-255): weaker edges count only where "
                                              "they touch a strong one. Lower finds fainter detail."),
    ("edges", "high"): ("Strong-edge threshold", "Canny's upper gradient threshold (0-255): gradients above it are "
                                                 "edges for sure. Lower marks more of the image as detail."),
    ("edges", "sigma"): ("Blur radius (px)", "Standard deviation of the Gaussian that spreads the edges into a "
                                            "density map; larger = smoother map. Unused when a blur kernel is set."),
    ("edges", "ksize"): ("Blur kernel (px)", "0: blur by the radius above (reflected border). An odd size: OpenCV's "
                                            "fixed-size blur (15 = the original seed implementation)."),
    ("variance", "window"): ("Window (px)", "Side of the square over which the local standard deviation of grey "
                                           "levels is taken; larger = coarser detail."),
    ("entropy", "window"): ("Window (px)", "Side of the square over which the grey-level histogram is taken."),
    ("entropy", "bins"): ("Grey-level bins", "Histogram bins of the local entropy; more bins see finer contrast."),
    ("spectral", "scale"): ("Working width (px)", "The image is shrunk to this width before the spectrum is taken; "
                                                 "smaller = larger structures."),
    ("spectral", "sigma"): ("Blur radius (px)", "Gaussian blur of the residual map, at the working width."),
    ("attention", "mode"): ("Attention", "cls: the class token's attention in the last block; rollout: attention "
                                        "multiplied through all blocks."),
    ("attention", "head_fusion"): ("Head fusion", "How the heads' attention maps are combined (rollout)."),
    ("attention", "discard_ratio"): ("Discarded share", "Share of the weakest attention links dropped in each "
                                                       "block before the rollout (0-0.99)."),
}
"""Readable label and help of each saliency parameter; the library's parameter name stays in the help
(and in the exported settings), so the label and the code can be matched."""


def param_label(method: str, name: str) -> tuple[str, str]:
    """``(label, help)`` of a saliency parameter: a readable label, and help text ending with the
    library's own parameter name (unknown parameters keep their name as the label)."""
    label, help_ = PARAM_LABELS.get((method, name), (name, ""))
    return label, (help_ + " " if help_ else "") + f"Library parameter: `{name}`."


def _param_widget(method: str, name: str, default, rng, current, choices=None):
    key = f"w_sal_{method}_{name}"
    label, help_ = param_label(method, name)
    if choices:  # categorical parameter: the registry lists its values
        options = list(choices)
        fmt = (lambda v: "0 (use the blur radius)" if v == 0 else f"{v} px") if (method, name) == ("edges", "ksize") \
            else str
        return st.selectbox(label, options, index=options.index(current) if current in options else 0, key=key,
                            format_func=fmt, help=help_)
    if rng is None:  # no UI range published: a plain number input
        if isinstance(default, bool) or not isinstance(default, (int, float)):
            st.caption(f"{label} = {default!r} (fixed)")
            return default
        return st.number_input(label, value=current, key=key, help=help_)
    lo, hi, step = rng
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, step, default)):
        return st.slider(label, int(lo), int(hi), int(min(max(current, lo), hi)), step=int(step), key=key, help=help_)
    return st.slider(label, float(lo), float(hi), float(min(max(current, lo), hi)), step=float(step), key=key,
                     help=help_)


@st.fragment
def saliency_view(entry: ImageEntry) -> None:
    with ui.guard():
        methods = ap.saliency_methods()
        names = list(methods)
        left, right = st.columns([1, 3], gap="medium")
        with left:
            st.markdown("**Saliency settings**")
            method = state.widget("saliency_method", st.selectbox, "Method", options=names,
                                  format_func=lambda n: n if methods[n].available else f"{n} (unavailable)",
                                  help="Used here, by the saliency importances and greedy on the Patch layout "
                                       "page, and by the pruning scorer.")
            m = methods[method]
            st.caption(md_escape(m.description))
            if not m.available:
                st.warning(md_escape(f"{method} is not available: {m.reason or 'not installed'}"),
                           icon=":material/block:")
                return
            stored = state.get("saliency_params").setdefault(method, {})
            params = {}
            for name, default in m.defaults.items():
                if method == "attention" and name == "model":
                    continue  # the model picker below chooses it
                params[name] = _param_widget(method, name, default, m.param_ranges.get(name),
                                             stored.get(name, default), m.param_choices.get(name))
            stored.update(params)
            alpha = state.widget("heat_alpha", st.slider, "Heatmap opacity", 0.0, 1.0, step=0.05)
            colormap = state.widget("colormap", st.selectbox, "Colour map", options=list(render.COLORMAPS))
            picked = None
            if method == "attention":
                picked = model_source.picker()
                if picked is None:
                    return
                model_source.summary(*picked)
            choice = query_ui.controls(entry, picked=picked)
        spec = compute.saliency_spec(method, params)
        if method == "attention":
            spec["params"]["model"] = recipes.model_name()
        with right:
            if method == "attention":
                model_caveats.image_caveat(model_source.current_ref(), state.current_key())
            c1, c2 = st.columns(2)
            if choice.kind == "region":
                with c1:
                    query_ui.surface(entry, choice, "saliency")
            else:
                c1.image(compute.display_image(entry), width="stretch", caption="Original")
            choice = query_ui.checked(entry, choice)
            what = f"{method} saliency"
            if method == "attention":
                what = (f"{spec['params']['mode']} attention of {md_escape(model_source.current_ref().label)}, "
                        "upsampled from its token grid,")
            c2.image(compute.heatmap_png(entry, spec, alpha, colormap), output_format="PNG", width="stretch",
                     caption=f"{what} over the image (opacity {alpha:.2f}, {colormap})")
            ui.colorbar(colormap, "saliency, scaled per image from 0 (its least salient pixel) to 1 (its most "
                        "salient)", labels=("0 (low)", "0.5", "1 (high)"), container=c2)
            query_ui.note(choice)
            if choice.query is not None:  # ready: the query map next to the content saliency, and the two mixed
                q1, q2 = st.columns(2)
                query_ui.query_heatmap(entry, choice, q1)
                w = choice.weight
                mixed = compute.mixed_map(entry, spec, choice.query, w)
                q2.image(compute.map_heatmap_png(entry, f"mixed|{w}|{compute.spec_key(spec)}"
                                                 f"{compute.query_key(choice.query)}", mixed, alpha, colormap),
                         output_format="PNG", width="stretch",
                         caption=f"Mixed importance (1 − w) · saliency + w · query at w = {w:.2f}: the library's "
                                 "mixing rule per pixel (layouts apply it per square, pruning per token)")
            counts, edges = compute.saliency_histogram(entry, spec)
            st.plotly_chart(ui.saliency_histogram_figure(counts, edges, "Saliency values (all pixels)"),
                            config=ui.PLOT_CONFIG, key="saliency_hist")
            st.caption("A mostly-low histogram means most of the image is flat: large patches will do there.")


with ui.guard("image"):
    _entry = state.current()
    ui.page_header("Saliency", "Where the image has detail worth tokens. The method chosen here drives the "
                   "saliency importances, greedy layouts and token pruning on the other pages.", _entry)
    saliency_view(_entry)
