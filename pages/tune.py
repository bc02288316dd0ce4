"""Tune: search patch configurations against a model's own predictions (``adapatch.tune``), see the
Pareto front of accuracy (or label-free agreement) against MACs, open a configuration on Patch layout."""

from __future__ import annotations

import streamlit as st

from adapatch.app_support import model_source, state, ui
from adapatch.app_support import tune_view as tv
from adapatch.app_support.images import md_escape

TITLE = "Tune for the task"


def inputs(ref, model) -> tuple[tv.TuneImages | tuple[str, int] | None, dict]:
    """The images, target, budget and search space widgets; returns the images (None: not ready;
    ``("digits", n)``: held-out digits, made at Run time) and the keyword arguments of
    ``tune_view.execute``."""
    from adapatch.model import describe_model
    from adapatch.model.classes import class_names
    from adapatch.tune import DEFAULT_LEVELS, QUADTREE_IMPORTANCES, STRATEGIES
    d = describe_model(model)
    size, is_task = int(d["img_size"]), ref.kind == "task"
    source = state.widget("tune_source", st.radio, "Images", options=list(tv.SOURCES), format_func=tv.SOURCES.get,
                          help="The bundled digit samples and held-out digits carry their digit (accuracy with the "
                               "bundled model); uploads are label-free unless a labels CSV is given (agreement of "
                               "the top-1 class with the model's own full grid).")
    images: tv.TuneImages | tuple[str, int] | None = None
    notes: list[str] = []
    if source == "samples":
        images = tv.sample_images(size, labelled=is_task)
        notes.append("Only 8 images: a toy set to see the view work (about 6 searched, 2 held out). Use the "
                     "held-out digits for numbers worth quoting.")
    elif source == "digits":
        n = state.widget("tune_digits", st.slider, "Held-out digits", *tv.HELD_OUT_DIGITS[:2], step=10,
                         help="The first N images of the bundled task's held-out split (the model never trained "
                              "on them), with their digits.")
        images = ("digits", int(n))  # made at Run time (the split is generated once per server)
    else:
        files = st.file_uploader("Images or zip files", type=list(tv.ZIP_TYPES), accept_multiple_files=True,
                                 key="tune_files", help=f"At most {tv.MAX_IMAGES} images; each is resized to the "
                                                        f"model's {size}x{size} input, as the model sees it.")
        labels_file = st.file_uploader("Labels (optional CSV: path,label)", type=["csv"], key="tune_labels",
                                       help="A class index or class name per image, matched by name or file name. "
                                            "Without: label-free.")
        if files and is_task:  # the rule of model_source.not_trained_for: its predictions mean nothing here
            st.warning("The bundled model was trained on 64x64 cluttered digits only: on other images its "
                       "predictions, and so the agreement this search keeps, are not meaningful.",
                       icon=":material/warning:")
        if files:
            images = tv.session_upload_images(files, size)
            if labels_file is not None:
                images.labels = tv.csv_labels(labels_file.getvalue(), images.names, int(d["num_classes"] or 0),
                                              class_names(d["num_classes"]))
            for s in images.skipped:
                st.warning(f"Skipped **{md_escape(s['path'])}**: {md_escape(s['reason'])}",
                           icon=":material/broken_image:")
            notes += images.notes
        else:
            st.info("Upload images (or a zip of them) to tune on your own set.", icon=":material/upload:")
    if source != "upload" and not is_task:
        notes.append("The digits' labels are the bundled model's classes: with another model the search is "
                     "label-free (agreement with its own full grid).")
    for n in notes:
        st.caption(n)
    target = state.widget("tune_target", st.radio, "Target", options=list(tv.TARGETS), format_func=tv.TARGETS.get,
                          horizontal=True)
    if target == "macs":
        state.widget("tune_macs", st.slider, "MACs ratio (of the full grid's)", 0.05, 1.0, step=0.05,
                     help="The chosen configuration is the best on the front at most this share of the model's "
                          "MACs on its full patch grid.")
    else:
        state.widget("tune_drop", st.slider, "Largest drop (objective, absolute)", 0.0, 0.3, step=0.01,
                     help="The chosen configuration is the cheapest on the front within this much of the full "
                          "grid's accuracy (or agreement).")
    state.widget("tune_budget", st.number_input, "Budget (forward passes)", min_value=1, step=500,
                 placeholder="automatic: 20 per search image",
                 help="Images through the model the search may spend (successive halving fits its rungs to it). "
                      "Empty: 20 per search image, raised to the least the search space needs.")
    with st.expander("Search space", key="tune_space"):  # a key: it stays open when elements above change
        strategies = _multi("tune_strategies", "Strategies", STRATEGIES,
                            "learned_selector runs only with the bundled model (it has the selector).")
        importances = _multi("tune_importances", "Quadtree importances", QUADTREE_IMPORTANCES, None)
        levels = _multi("tune_levels", "MACs levels tried", sorted(set(tv.LEVEL_OPTIONS) | set(DEFAULT_LEVELS)),
                        "Compute levels (share of the full grid's MACs) each configuration is tried at.",
                        default=DEFAULT_LEVELS)
        state.widget("tune_held_out", st.slider, "Held out (share of the images)", 0.1, 0.5, step=0.05,
                     help="The search never sees these; the chosen configuration is re-scored on them.")
        state.widget("tune_seed", st.number_input, "Seed", min_value=0, step=1)
    kw = {"target": state.get("tune_target"), "macs": state.get("tune_macs"), "drop": state.get("tune_drop"),
          "budget": None if state.get("tune_budget") is None else int(state.get("tune_budget")),
          "held_out": float(state.get("tune_held_out")), "seed": int(state.get("tune_seed")),
          "strategies": strategies, "importances": importances, "levels": levels,
          "device": model_source.run_device()}
    return images, kw


def _multi(name: str, label: str, options, help_text: str | None, default=None) -> list:
    """A multiselect bound to setting ``name`` (None: every option, or ``default``)."""
    options = list(options)
    value = state.get(name)
    if value is None:
        value = list(default) if default is not None else options
    key = f"w_{name}"
    if key not in st.session_state:
        st.session_state[key] = [v for v in value if v in options]
    out = st.multiselect(label, options, key=key, help=help_text)
    state.put(name, list(out))
    return list(out)


def run_section(ref, model, images, kw) -> None:
    """The Run button; while it runs, the progress bar and Stop."""
    if st.button("Run", type="primary", icon=":material/play_arrow:", key="tune_run", disabled=images is None):
        if isinstance(images, tuple):
            from adapatch.model import describe_model
            images = tv.held_out_digits(images[1], int(describe_model(model)["img_size"]), ref.kind == "task")
        st.session_state[tv.ACTIVE] = {"done": 0, "total": 0, "what": ""}
        bar = st.progress(0.0, text="Starting…")
        stop = st.empty()  # a click on Stop reruns the page, which ends the run (tune_view's module docs)
        stop.button("Stop", icon=":material/stop:", key="tune_stop",
                    help="Ends the run after the configuration being scored; nothing of it is kept.")
        try:
            run = tv.execute(images, model, ref.name, ref.label, progress=tv.progress_callback(bar), **kw)
        except Exception:  # a refused setting (e.g. too small a budget) is no stopped run: the guard shows it
            st.session_state.pop(tv.ACTIVE, None)
            raise
        st.session_state.pop(tv.ACTIVE, None)
        tv.keep(run)
        st.session_state["w_tune_run"] = run.id  # the run picker (drawn below) shows the new run
        bar.empty()
        stop.empty()


def results(run: tv.TuneRun) -> None:
    r = run.result
    obj = r.objective
    st.subheader(f"Result · {run.model_label} · {run.images.description}")
    c = r.chosen
    cols = st.columns([1.7, 1, 1, 0.8])  # the chosen configuration's name is the longest value
    cols[0].metric("Chosen", c.config.key if c is not None else "none meets the target")
    if c is not None:
        h = r.held_out.get("chosen")
        cols[1].metric(f"{obj.capitalize()} (search)", tv.pct(c.objective),
                       delta=f"{100 * (c.objective - r.full_grid['objective']):+.1f} pts vs full grid",
                       help=f"On the {len(r.search_images)} search images; full grid "
                            f"{tv.pct(r.full_grid['objective'])}.")
        if h:
            cols[2].metric(f"{obj.capitalize()} (held out)", tv.pct(h["objective"]),
                           delta=f"{100 * (h['objective'] - c.objective):+.1f} pts vs search",
                           help=f"On the {r.held_out['images']} held-out images the search never saw.")
        cols[3].metric("MACs ratio", f"{c.macs_ratio:.3f}", help=f"{c.mean_tokens:.1f} tokens per image on average, "
                       f"of the full grid's {r.full_grid['mean_tokens']:.0f}. {ui.MACS_HELP}")
        said = tv.held_out_text(run)
        if said:
            (st.warning if said[1] else st.caption)(said[0])
    else:
        st.warning("No configuration on the front meets the target: loosen it, or add strategies or levels.",
                   icon=":material/block:")
    st.caption("Objective: " + ("accuracy against the labels" if obj == "accuracy" else
                             "label-free: how often the top-1 class equals the model's own on its full grid")
               + f" · {len(r.search_images)} search images, {len(r.held_out_images)} held out · "
               f"{r.forwards:,} forward passes (budget {r.budget_evals:,}) · {run.report['seconds']:.1f} s on "
               f"{run.device}.")

    picks = [e.config.key for e in run.final]
    pick_key = f"w_tune_pick_{run.id}"
    if pick_key not in st.session_state or st.session_state[pick_key] not in picks:
        st.session_state[pick_key] = c.config.key if c is not None else r.front[0].config.key
    fig_slot, right = st.columns([1.8, 1], gap="medium")
    with right:
        st.markdown("**Open a configuration**")
        chart_state = st.session_state.get(f"tune_chart_{run.id}")
        clicked = tv.selection_keys(chart_state)
        if clicked and st.session_state.get(tv.PICKED) != (run.id, clicked):  # a new click on the chart
            st.session_state[tv.PICKED] = (run.id, clicked)
            st.session_state[pick_key] = clicked[0]
        key = st.selectbox("Configuration (or click a point)", picks, key=pick_key,
                           format_func=lambda k: ("★ " if c is not None and k == c.config.key else "") + k)
        e = run.by_key(key)
        split = dict.fromkeys(r.held_out_images, "held out")
        idx = st.selectbox("Image", list(range(len(run.images.names))), key=f"w_tune_image_{run.id}",
                           format_func=lambda i: f"{run.images.names[i]} ({split.get(i, 'search')})")
        blocked = tv.NOT_ON_LAYOUT.get(e.config.family.strategy)
        if st.button("Open on Patch layout", icon=":material/grid_view:", key="tune_open", disabled=blocked is not None,
                     on_click=tv.open_config, args=(run.id, key, int(idx)),
                     help="Sets the Patch layout page to this configuration (replacing yours there: the page lists "
                          "what changed) and opens it on the image picked here, at the model's input size."):
            state.switch_page("pages/layout.py")
        if blocked:
            st.caption(blocked + ".")
        for label, data, name, mime in tv.downloads(run, e):
            st.download_button(label, data=data, file_name=name, mime=mime, on_click="ignore",
                               icon=":material/download:", key=f"tune_dl_{name}")
    with fig_slot:
        st.plotly_chart(tv.pareto_figure(run, key), on_select="rerun", selection_mode="points",
                        key=f"tune_chart_{run.id}", config=ui.PLOT_CONFIG)
    st.markdown("**Pareto front** (search split; ★ chosen)")
    st.dataframe(tv.front_rows(run), hide_index=True, width="stretch")


with ui.guard("tune"):
    tv.init_settings()
    ui.page_header(TITLE, "Search strategy, importance, patch sizes and compute level against the model's own "
                          "predictions; keep the Pareto front of accuracy (or label-free agreement) against MACs, "
                          "re-scored on images the search never saw.")
    stopped = tv.take_stopped()
    if stopped:
        st.warning(stopped, icon=":material/stop_circle:")
    setup, about = st.columns([1, 1.2], gap="large")
    about.markdown(tv.ABOUT)
    with setup:
        picked = model_source.picker()
    if picked is not None:
        ref, model = picked
        with setup:
            images, kw = inputs(ref, model)
            run_section(ref, model, images, kw)
    kept = tv.runs()
    if kept:
        if len(kept) > 1:
            ids = [k.id for k in kept]
            shown = st.selectbox("Run", ids, format_func=lambda i: next(k.label for k in kept if k.id == i),
                                 key="w_tune_run", help=f"The last {tv.KEEP_RUNS} runs of this session are kept.")
            run = next(k for k in kept if k.id == shown)
        else:
            run = kept[0]
        results(run)
