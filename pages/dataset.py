"""Dataset: one quadtree threshold for a whole dataset, solved for a compute target."""

from __future__ import annotations

import numpy as np
import streamlit as st

import adapatch as ap
from adapatch.app_support import dataset_view as dv
from adapatch.app_support import recipes, state, ui
from adapatch.app_support.images import md_escape
from adapatch.dataset import InfeasibleTarget, Targets

MANIFESTS = "ds_upload_manifests"  # session: {file id: listed upload} (hashed and listed once)


def source_picker() -> dv.DatasetSource | None:
    """The source row: bundled set or uploads (uploader on this page, kept while it is open)."""
    c1, c2 = st.columns([1, 2.2], vertical_alignment="center")
    kind = state.widget("ds_source", c1.segmented_control, "Images", options=list(dv.SOURCE_LABELS),
                        format_func=dv.SOURCE_LABELS.get, required=True) or "samples"
    if kind == "samples":
        src = dv.bundled_source()
        c2.caption(f"**{src.description}**: small photos, document pages, diagrams, flat images and the task "
                   "model's cluttered digits, bundled with adapatch.")
        return src
    c2.caption(f"PNG, JPEG, WebP, BMP, TIFF, GIF or .zip files of them: at most {dv.MAX_UPLOAD_FILES} images and "
               f"{dv.MAX_UPLOAD_BYTES // 2**20} MB in all. Kept for this session (also when you open another page) "
               "until cleared, never stored.")
    key = dv.uploader_key()
    files = st.file_uploader("Upload images or .zip files", type=dv.upload_types(), accept_multiple_files=True,
                             key=key, label_visibility="collapsed", on_change=dv.on_uploader_change, args=(key,))
    kept, left_out = dv.sync_kept(files)
    for note in left_out:
        st.warning(md_escape(note), icon=":material/warning:")
    manifests = st.session_state.setdefault(MANIFESTS, {})
    uploaded = dv.upload_source(kept, manifests)
    if uploaded is None:
        st.info("Upload images (or .zip files of images) to calibrate them, or pick the bundled sample set.",
                icon=":material/upload_file:")
        return None
    c1, c2 = st.columns([3, 1], vertical_alignment="center")
    shown = set(dv.file_ids(files))
    away = sum(1 for k in kept if k.file_id not in shown)
    c1.caption(f":material/inventory_2: Kept: {dv.kept_summary(kept)}"
               + (f", {away} of them from before you left this page (the uploader above only lists new ones)"
                  if away else "") + ".")
    c2.button("Clear kept uploads", key="ds_clear_kept", icon=":material/delete_sweep:", on_click=dv.clear_kept,
              help="Forgets the uploaded files of this page (a new, empty uploader).")
    src = uploaded
    st.caption(md_escape(src.description))
    for note in src.notes:
        st.warning(md_escape(note), icon=":material/warning:")
    return src


def _apply(importance: str, sizes: tuple[int, int], threshold: float) -> None:
    """The Patch layout page's settings for this calibration: the quadtree at exactly this threshold
    (inserted in the slider's scale as it is), without a query (the calibration is query-blind: a
    query would make it a threshold of the mixed importance)."""
    state.put("strategy", "quadtree")
    state.put("use_budget", False)
    state.put("importance", importance)
    state.put("sizes", (int(sizes[0]), int(sizes[1])))
    state.put("query_kind", "none")
    recipes.set_threshold(recipes.threshold_kind(importance), float(threshold))


@st.fragment
def calibration_view(source: dv.DatasetSource) -> None:
    with ui.guard("dataset"):
        top = st.container()
        left, right = st.columns([1, 2.6], gap="medium")
        with left:
            st.markdown("**Quadtree**")
            importance = state.widget("ds_importance", st.selectbox, "Importance measure", options=dv.IMPORTANCES,
                                      help="What makes a square worth splitting. distortion (the default) keeps the "
                                           "most of each image at equal tokens.")
            sizes = state.widget("ds_sizes", st.select_slider, "Patch sizes (px)", options=list(dv.SIZE_OPTIONS),
                                 clamp=lambda v: tuple(v) if v and len(tuple(v)) == 2 and set(v) <= set(dv.SIZE_OPTIONS)
                                 else (16, 64),
                                 help="Smallest and largest patch; every power of two in between is used.")
            settings = dv.curve_settings(importance, sizes)
            with st.spinner(f"Scanning {len(source.names)} images (once per image set and quadtree settings)…"):
                scanned = dv.scan_source(source, settings)
            store = scanned.store
            st.caption(f"Scanned {store.n_images} images in {scanned.seconds:.2f} s, once for these settings; moving a "
                       "target only re-solves.")
            st.markdown("**Compute target**")
            vit = state.widget("vit", st.selectbox, "ViT preset (for MACs)", options=ap.VIT_PRESETS)
            kind = state.widget("ds_target_kind", st.selectbox, "Target", options=list(dv.TARGET_KINDS),
                                format_func=dv.TARGET_KINDS.get,
                                help="A cap: the solved threshold is the smallest whose layouts meet it (and the "
                                     "p95 cap, if set). MACs: multiply-accumulates of the ViT preset (what ViT "
                                     "papers report as FLOPs), summed over the dataset, against the uniform 16 px "
                                     "grid.")
            share = float(state.get("ds_target_share") or 0.5)
            rng = dv.target_range(store, kind, vit, share=share)
            name = f"ds_target_{kind}"
            if rng.fixed:
                target = rng.hi
                st.caption(f"{dv.TARGET_KINDS[kind]}: {target:g} at every threshold (no square can split with "
                           "these sizes).")
            else:
                def clamp(v):
                    """Mean tokens are seeded from the share, on these images (not another set's token count);
                    tokens per MP and the MACs ratio are relative already: a stored one is fitted to the range."""
                    if kind == "mean_tokens" or v is None:
                        return rng.default
                    return min(max(type(rng.lo)(v), rng.lo), rng.hi)

                target = state.widget(name, st.slider, dv.TARGET_KINDS[kind] + " (at most)", rng.lo, rng.hi,
                                      step=type(rng.lo)(rng.step), clamp=clamp,
                                      format="%.3f" if kind == "flops_ratio" else "%d",
                                      help=f"From {rng.lo:g} (no square splits: the largest threshold) to {rng.hi:g} "
                                           "(every square splits: threshold 0), on this dataset.")
                if kind == "mean_tokens":
                    if target != rng.default:  # moved by the user: that share is carried to other images
                        share = dv.grid_share(store, target)
                        state.put("ds_target_share", share)
                    st.caption(dv.share_caption(store, float(target), share))
            p95_lo, p95_hi = dv.p95_range(store)
            use_p95 = state.widget("ds_use_p95", st.toggle, "Also cap p95 tokens per image",
                                   help="Keeps the heaviest images in check too: 95% of the images at or below "
                                        "the cap.")
            p95 = None
            if use_p95:
                p95 = state.widget("ds_p95", st.number_input, "p95 tokens per image (at most)", min_value=1, step=1,
                                   clamp=lambda v: int(v) if v else max(p95_lo, (p95_lo + p95_hi) // 2),
                                   help=f"Reachable on this dataset: {p95_lo:,} (no split) to {p95_hi:,} "
                                        "(every split).")
        targets = Targets(**{kind: float(target)}, p95_tokens=float(p95) if p95 else None)
        curve = dv.curve(source, settings, vit)
        try:
            solved = dv.solve_targets(store, targets, vit)
        except InfeasibleTarget as e:
            with right:
                st.warning(md_escape(dv.infeasible_message(e)), icon=":material/block:")
                st.plotly_chart(dv.dataset_curve_figure(curve, None, None, kind, float(target), p95,
                                                log_x=importance == "distortion"), config=ui.PLOT_CONFIG,
                                key="ds_curve")
            skipped_list(source, store)
            return
        t, s = solved.threshold, solved.stats
        with left:
            opens = ("on this set's image with the median tokens" if source.kind == "uploads"
                     else "on the image picked in the sidebar")
            if st.button("Apply on Patch layout", type="primary", icon=":material/grid_view:", key="ds_apply",
                         help=f"Sets the Patch layout page to a quadtree ({importance}, {sizes[0]}-{sizes[1]} px, no "
                              f"budget) at exactly this threshold and opens it {opens}. This set's median image and "
                              "the gallery's images are added to the sidebar's image list (those of an earlier "
                              "Apply leave it)."):
                _apply(importance, sizes, t)
                keys = dv.add_to_picker(source, store, t)
                if source.kind == "uploads" and keys:
                    state.set_current(keys[0])
                    st.session_state.pop("w_image", None)  # the sidebar re-seeds its image box from the current one
                state.switch_page("pages/layout.py")

        values = dv.metric_values(s)
        cols = top.columns([1.25, 1, 1, 1, 1, 1, 1.1])
        cols[0].metric("Threshold", values["Threshold"], help=f"Solved exactly: {t!r}. The smallest threshold whose "
                       "layouts meet every target (squares split while their importance is above it).")
        cols[1].metric("Mean tokens", values["Mean tokens"],
                       delta=(lambda d: d and f"{d} vs 16 px")(
                           ui.fmt_delta_pct(s.mean_tokens / s.uniform16_mean_tokens - 1)),
                       delta_color="inverse", help=f"Per image; uniform 16 px: {s.uniform16_mean_tokens:,.1f}.")
        cols[2].metric("p50 tokens", values["p50 tokens"], help="Median tokens per image (nearest rank).")
        cols[3].metric("p95 tokens", values["p95 tokens"], help="95% of the images have at most this many tokens.")
        cols[4].metric("Max tokens", values["Max tokens"], help=f"Fewest: {s.min_tokens:,}.")
        u16_mp = float(store.uniform16.sum() / store.megapixels.sum())
        cols[5].metric("Tokens / MP", values["Tokens / MP"], help="All tokens / all megapixels of the dataset "
                       f"(uniform 16 px: {u16_mp:,.0f}).")
        cols[6].metric(f"MACs ratio {vit}", values[f"MACs ratio {vit}"],
                       help=f"{vit} multiply-accumulates of all the layouts / those of the uniform 16 px grids "
                            "(a ratio of totals; what ViT papers call FLOPs). Lower is cheaper.")

        with right:
            st.plotly_chart(dv.dataset_curve_figure(curve, t, s, kind, float(target), p95,
                                                    log_x=importance == "distortion"),
                            config=ui.PLOT_CONFIG, key="ds_curve")
            tokens = store.tokens_at(np.array([t]))[:, 0]
            st.plotly_chart(dv.tokens_histogram_figure(tokens, t), config=ui.PLOT_CONFIG, key="ds_hist")
            per = ", ".join(f"{dv.TARGET_KINDS.get(k, 'p95 tokens per image')} {v:.6g}"
                            for k, v in solved.per_target.items())
            st.caption(f"Threshold per target: {per}. The answer is the largest of them (each target is a cap).")

        gallery(source, settings, store, t)
        downloads(source, scanned, solved, settings, curve)


def gallery(source: dv.DatasetSource, settings, store, threshold: float) -> None:
    ext = dv.extremes(store, threshold)
    st.subheader("Extremes at this threshold")
    st.caption("The quadtree of each image at the solved threshold; colour = patch size.")
    dv.gallery_scale(store, ext, threshold)
    rows = ([("All images, fewest tokens first", ext["all"])] if "all" in ext else
            [(f"Fewest tokens ({dv.GALLERY})", ext["fewest"]), (f"Most tokens ({dv.GALLERY})", ext["most"])])
    for title, items in rows:
        st.markdown(f"**{title}**")
        cols = st.columns(dv.GALLERY)
        for j, row in enumerate(items):
            with cols[j % dv.GALLERY]:
                try:
                    png = dv.overlay_png(source, settings, store, row["index"], threshold)
                except (ap.ImageError, ValueError, OSError, KeyError) as e:
                    st.caption(md_escape(f"{row['path']}: {e}"))
                    continue
                st.image(png, output_format="PNG", width="stretch", caption=md_escape(dv.gallery_caption(row, source)))


def skipped_list(source: dv.DatasetSource, store) -> None:
    """Files that could not be used, each with its one-line reason (the report lists them too)."""
    skipped = list(source.skipped) + list(store.skipped)
    if skipped:
        with st.expander(f"Skipped files ({len(skipped)})", icon=":material/broken_image:", expanded=True):
            st.dataframe([{"file": r["path"], "reason": r["reason"]} for r in skipped], width="stretch",
                         hide_index=True)


def downloads(source: dv.DatasetSource, scanned, solved, settings, curve) -> None:
    skipped_list(source, scanned.store)
    cal = dv.calibration(scanned, solved, settings, curve)
    st.subheader("Export")
    c1, c2, c3 = st.columns([1, 1, 2.4])
    c1.download_button("report.json", data=lambda: dv.report_json(cal, source), file_name="report.json",
                       mime="application/json", on_click="ignore", key="ds_report", icon=":material/data_object:")
    c2.download_button("layouts.parquet", data=lambda: dv.layouts_parquet(cal), file_name="layouts.parquet",
                       mime="application/vnd.apache.parquet", on_click="ignore", key="ds_layouts",
                       icon=":material/table:")
    c3.caption("The same files as `python -m adapatch calibrate`: the report (threshold, statistics, curve, extremes, "
               "skipped files) and every image's layout at the threshold, one row per image. Built when clicked.")


dv.init_settings()
ui.page_header("Dataset calibration",
               "One quadtree threshold for a whole dataset, solved exactly for a compute target: one pass computes "
               "every image's tokens at every threshold, then the smallest threshold meeting the target is found "
               "without re-running the patcher.")
with ui.guard("images"):
    _source = source_picker()
    if _source is not None:
        calibration_view(_source)
