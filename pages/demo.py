"""Demo: a short guided story for stakeholders, five preset scenes stepped with Next/Back.

Each step shows its layout (and what it is compared with), the key numbers, an export of the
settings that reproduce it, and a button that opens the same settings on the Patch layout page.
Each scene runs on its own curated image, or on the sidebar's current image (uploads included).
The scenes and every number come from ``adapatch.app_support.demo``; this page arranges widgets.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from adapatch.app_support import demo, state, ui
from adapatch.app_support.images import md_escape

LABELS = {i: f"{i + 1} · {s.label}" for i, s in enumerate(demo.SCENES)}  # plain dict (format_func)
LAST = len(demo.SCENES) - 1


def navigation() -> int:
    """The step selector and Back/Next; returns the current step."""
    i = demo.current_step()
    c1, c2, c3 = st.columns([6, 1, 1], vertical_alignment="bottom")
    seed: dict[str, Any] = {} if demo.STEP_WIDGET in st.session_state else {"default": i}
    pick = c1.segmented_control("Scene", list(LABELS), format_func=LABELS.__getitem__, key=demo.STEP_WIDGET,
                                required=True, on_change=demo.picked, **seed)
    i = int(pick) if pick is not None else i
    c2.button("Back", icon=":material/arrow_back:", key="demo_back", on_click=demo.go_to, args=(i - 1,),
              disabled=i == 0, width="stretch")
    c3.button("Next", icon=":material/arrow_forward:", icon_position="right", key="demo_next", type="primary",
              on_click=demo.go_to, args=(i + 1,), disabled=i == LAST, width="stretch")
    return i


def image_source() -> str:
    """The choice of image: each scene's own ("scene") or the sidebar's current image ("sidebar")."""
    names = {"scene": "Each scene's own image", "sidebar": f"The sidebar's image: {md_escape(state.current().name)}"}
    return state.widget(demo.SOURCE, st.segmented_control, "Image", options=list(names), format_func=names.get,
                        required=True, help="Run the scenes on their curated images, or on the image picked in the "
                                            "sidebar (your uploads included). The scene about the task model's "
                                            "digits always uses its own 64x64 digit.")


def panel_metrics(view: demo.StepView, p: demo.Panel, container, per_row: int) -> None:
    """Tokens, PSNR (the main panel's against the next one), compute and, for the digit, the prediction."""
    main = p is view.main
    other = view.panels[1]
    model = view.scene.beside == "model"
    items: list[tuple[str, str, str | None, str]] = [("Tokens", ui.fmt_int(p.tokens), None,
              f"Tokens of this layout; the budget was {view.budget} ({view.scene.fraction:.0%} of the 16 px grid).")]
    gap = p.psnr - other.psnr
    delta = (f"{gap:+.2f} dB" if abs(gap) >= 0.005 else "same") if main and max(p.psnr, other.psnr) < 100 else None
    items.append(("PSNR (dB)", ui.fmt_psnr(p.psnr), delta,
                  f"What the model sees (each patch resized to a {view.scene.token_size} px token) against the "
                  "original image; higher is closer." + (f" The change is against the {other.short} layout beside it."
                                                         if delta else "")))
    items.append(("MACs ratio" if model else "GMACs ratio",
                  f"×{p.macs_ratio:.3f}" if not model else f"×{p.macs_ratio:.2f}",
                  None, f"Multiply-accumulates of one forward pass against {view.reference}: "
                        + (f"{p.macs / 1e6:.1f} M." if model else f"{p.macs / 1e9:.1f} G.")))
    if model:
        right = p.prediction == view.truth
        items.append(("Predicts", str(p.prediction), f"{'right' if right else 'wrong'} · {p.confidence:.0%} sure",
                      f"The task model's class from these tokens; the true digit is {view.truth}."))
    for start in range(0, len(items), per_row):
        cols = container.columns(per_row)
        for col, (label, value, d, help_) in zip(cols, items[start:start + per_row]):
            if label == "Predicts":
                col.metric(label, value, delta=d, delta_color="normal" if (d or "").startswith("right") else "inverse",
                           delta_arrow="off", help=help_)
            else:
                col.metric(label, value, delta=d, delta_arrow="off" if d in (None, "same") else "auto",
                           delta_color="off" if d == "same" else "normal", help=help_)


def pictures(view: demo.StepView) -> None:
    panels = view.panels
    if view.scene.stacked:  # a wide panorama: one above the other, full width
        for p in panels:
            st.image(p.png, output_format="PNG", width="stretch", caption=f"{p.label} · {ui.count_text(p.tokens)}")
            panel_metrics(view, p, st.container(), 4)
        return
    if view.scene.beside == "model":
        cols = st.columns(len(panels), gap="medium")
        for col, p in zip(cols, panels):
            col.image(p.png, output_format="PNG", width="stretch", caption=f"{p.label} · {ui.count_text(p.tokens)}")
            panel_metrics(view, p, col, 2)
        return
    square = view.main.layout.height == view.main.layout.width
    cols = st.columns([1, 1, 0.5] if square else [1, 1], gap="medium")  # square images: not taller than the screen
    for col, p in zip(cols, panels):
        col.image(p.png, output_format="PNG", width="stretch", caption=f"{p.label} · {ui.count_text(p.tokens)}")
        panel_metrics(view, p, col, 3)


def reproduce(i: int, view: demo.StepView) -> None:
    """Export this step's settings; open them on the Patch layout page, with the step's image."""
    sc = view.scene
    own = state.current_key() if view.own_image else None  # the step ran on the sidebar's image
    c1, c2, c3 = st.columns([1, 1.1, 2.6], vertical_alignment="center")
    c1.download_button("Export this step", data=view.settings_json(), file_name=demo.export_name(i, sc),
                       mime="application/json", on_click="ignore", icon=":material/download:", key="demo_export",
                       width="stretch", help="The settings JSON of adapatch.export: "
                                             "adapatch.export.layout_from_settings(image, settings) gives exactly "
                                             "the layout shown above.")
    dataset = sc.image.startswith("dataset:") and own is None
    # st.switch_page through state.switch_page keeps the session's images (uploads and the demo's own)
    if c2.button("Open in Patch layout", icon=":material/grid_view:", key="demo_open", width="stretch",
                 on_click=demo.open_step, args=(sc, own),
                 help="Sets the Patch layout page to this step's strategy, sizes and budget share (replacing "
                      "yours there: the page lists what changed), selects this image"
                      + (" (added to the sidebar's image list)" if dataset else "") + " and opens it."):
        state.switch_page("pages/layout.py")
    if dataset and demo.layout_key(sc, view.digest) is None:
        file = sc.image.split(":", 1)[1]
        c3.caption(f"`{file}` is an image of the bundled dataset: opening the step adds it to the sidebar's image "
                   "list. The exported settings reproduce this layout on the same file.")
        c3.download_button("Download the image", data=demo.image_bytes(sc), file_name=file, key="demo_image",
                           on_click="ignore", icon=":material/image:", type="tertiary")
    else:
        c3.caption("The exported settings reproduce this layout exactly: "
                   "`adapatch.export.layout_from_settings(image, settings)`.")


def step(i: int, source: str) -> None:
    sc = demo.SCENES[i]
    own = source == "sidebar" and sc.any_image
    with st.spinner("Computing this step…" if own else "Computing this step (once per server)…"):
        view = demo.own_step_view(sc.key, state.device(), state.current()) if own \
            else demo.step_view(sc.key, state.device())
    st.subheader(f"{i + 1}. {sc.title}")
    st.markdown(sc.story)
    if source == "sidebar" and not own:
        st.caption("This scene needs the task model's own 64x64 digits, so it keeps its digit; the other scenes "
                   "run on the sidebar's image.")
    closest = (" · closest uniform grid: square patches whose token count is the closest to the adaptive layout's"
               if sc.beside in ("uniform", "model") else "")
    st.caption(f"Image: **{md_escape(view.entry_name)}**{' (the sidebar’s)' if own else ''}, {view.size} · budget "
               f"{sc.fraction:.0%} of its 16 px grid = {ui.count_text(view.budget)} · box colour = patch size{closest}")
    pictures(view)
    ui.patch_size_scale({s for p in view.panels for s in p.layout.sizes}, demo.enlarge_factor(view.main.layout))
    st.info(view.takeaway(), icon=":material/lightbulb:")
    if view.held_out:
        parts = [f"{r['layout']} ({ui.count_text(r['tokens'])}) **{r['accuracy']:.1%}**" for r in view.held_out]
        st.caption("Accuracy on the task's held-out test images (bundled results of "
                   "`python -m adapatch.experiments`): " + " · ".join(parts) + ".")
    if view.budget_rows:
        st.markdown(f"**The same {sc.fraction:.0%} on "
                    + ("the sidebar's image (first row) and " if view.own_image else "") + "each scene's image**")
        st.dataframe(pd.DataFrame(view.budget_rows), hide_index=True, width="stretch")
    reproduce(i, view)


ui.page_header("Demo", "Adaptive patching in five scenes: each step has settings chosen to show one point, on its "
                       "own image or on the sidebar's. Step through with Next and Back; export a step's settings or "
                       "open them on the Patch layout page.")
with ui.guard("demo"):
    _source = image_source()
    step(navigation(), _source)
