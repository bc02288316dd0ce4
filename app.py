"""adapatch explorer: ``streamlit run app.py``.

Page config, the shared sidebar (image source and device) and the navigation over the pages in
``pages/``. Pages only arrange widgets and call ``adapatch`` (through the cached wrappers in
``adapatch.app_support``); the image and every setting live in ``st.session_state`` so they
survive page switches.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="adapatch · adaptive patching for ViTs",
                   page_icon=str(Path(__file__).with_name("assets") / "favicon.png"), layout="wide",
                   initial_sidebar_state="expanded")

import adapatch as ap  # noqa: E402  (after set_page_config, which must come first)
from adapatch.app_support import state  # noqa: E402
from adapatch.app_support.images import COMPUTE_MAX_PIXELS, DECODE_MAX_PIXELS, UPLOAD_TYPES, md_escape  # noqa: E402
from adapatch.app_support.ui import guard  # noqa: E402

PAGES = [
    st.Page("pages/layout.py", title="Patch layout", icon=":material/grid_view:", url_path="patch-layout",
            default=True),
    st.Page("pages/demo.py", title="Demo", icon=":material/slideshow:", url_path="demo-story"),
    st.Page("pages/saliency.py", title="Saliency", icon=":material/local_fire_department:", url_path="saliency-map"),
    st.Page("pages/pruning.py", title="Token pruning", icon=":material/content_cut:", url_path="token-pruning"),
    st.Page("pages/compare.py", title="Compare", icon=":material/compare:", url_path="compare-at-budget"),
    st.Page("pages/efficiency.py", title="Efficiency", icon=":material/speed:", url_path="efficiency-report"),
    st.Page("pages/dataset.py", title="Dataset", icon=":material/dataset:", url_path="dataset-calibration"),
    st.Page("pages/model.py", title="Model", icon=":material/neurology:", url_path="task-model"),
    st.Page("pages/tune.py", title="Tune", icon=":material/tune:", url_path="tune-for-task"),
]
# Url paths differ from the file names on purpose: otherwise a page's hash equals the one Streamlit derives for a legacy
# ``pages/`` file, and AppTest (1.67) then reruns the page script alone, skipping this entrypoint.


def _image_label(key: str) -> str:
    if key.startswith("sample:"):
        from adapatch.samples import describe_sample
        name = key[len("sample:"):]
        return f"Sample · {name} ({describe_sample(name)})"
    try:
        return f"{state.source_label(key)} · {state.entry(key).name}"
    except ap.ImageError:
        return "Upload · (removed)"


def sidebar():
    state.init()
    sb = st.sidebar
    sb.markdown("### :material/image: Image")
    files = sb.file_uploader(
        "Upload images", type=list(UPLOAD_TYPES), accept_multiple_files=True, key="uploader",
        help=(f"PNG, JPEG, WebP, BMP or TIFF, up to {DECODE_MAX_PIXELS / 1e6:g} megapixels. Decoded in memory, "
              f"never stored; images over {COMPUTE_MAX_PIXELS / 1e6:.1f} MP are downscaled for interactive use."))
    new = state.sync_uploads(files)
    for rec in state.upload_records():
        if rec["error"]:
            sb.error(f"**{md_escape(rec['name'])}**: {md_escape(rec['error'])}", icon=":material/broken_image:")

    options = state.image_options()
    ss = st.session_state
    if new:
        state.set_current(new[0])
        ss["w_image"] = new[0]
    if ss.get("w_image") not in options:
        ss["w_image"] = state.current_key() if state.current_key() in options else options[0]
    labels = {k: _image_label(k) for k in options}  # plain dict: format_func must not need the session
    key = sb.selectbox("Image to explore", options, key="w_image", format_func=lambda k: labels.get(k, k))
    state.set_current(key)
    with guard("image"):
        entry = state.current()
        sb.caption(md_escape(entry.describe()))

    sb.markdown("### :material/memory: Device")
    device_box = sb.container()  # the picker is drawn after the page (device_panel)
    if ss.get("w_device") is not None:  # the picker's value, for the page that runs before it is drawn
        ss[state.DEVICE] = ss["w_device"]
    sb.divider()
    sb.caption("adapatch: fewer, larger patches where the image is flat; more, smaller ones where it has "
               "detail. Every number shown comes from the `adapatch` library.")
    return device_box


def device_panel(box) -> None:
    """The device picker, in its sidebar slot, drawn after the page: listing devices imports torch
    (about 2 s on a cold server), which the page's first paint does not need."""
    ss = st.session_state
    devices = ap.available_devices()
    if ss.get("w_device") not in devices:
        ss["w_device"] = ss[state.DEVICE] if ss[state.DEVICE] in devices else "auto"
    dev = box.selectbox("Compute device", devices, key="w_device",
                        help="Used for patch extraction, reconstruction (PSNR/SSIM) and every model call "
                             "(attention, pruning scorers, selector, agreement). 'auto' = CUDA when present; CUDA "
                             "is offered only when present.")
    ss[state.DEVICE] = dev
    box.caption(f"In use: **{ap.resolve_device(dev).type.upper()}**"
                + ("" if "cuda" in devices else " · no CUDA on this machine"))


def _warm_up_worker() -> None:
    """Process-wide warm-up: torch (the device list, reconstruction) and every compiled (numba) kernel
    of the opening view, on a tiny image, so no later run waits for an import or a kernel load."""
    import numpy as np
    try:
        tiny = np.random.default_rng(0).random((48, 40, 3)).astype(np.float32)
        ap.multiscale(tiny, budget=9)  # the opening view's default strategy first
        ap.threshold_curve(tiny, min_size=16, max_size=32, importance="distortion")
        lay = ap.quadtree(tiny, budget=7, min_size=16, max_size=32)
        ap.fidelity(tiny, lay, device="cpu")
        from adapatch.quality import quadtree_quality, uniform_quality
        quadtree_quality(tiny, 16, 32, ssim_points=2)
        uniform_quality(tiny, sizes=[16, 20], ssim_points=2)
        ap.available_devices()  # torch: the device picker, "auto" fidelity, reconstruction
        ap.reconstruct(tiny, lay, device="cpu")
    except Exception:  # a warm-up never breaks the app (logged); the real call reports the problem
        import logging
        logging.getLogger("adapatch.app").exception("warm-up failed")


@st.cache_resource(show_spinner=False)
def warm_up():
    """Start ``_warm_up_worker`` once per server process, in the background (the first session's
    script goes on drawing its page meanwhile)."""
    import threading
    thread = threading.Thread(target=_warm_up_worker, name="adapatch-warm-up", daemon=True)
    thread.start()
    return thread


page = st.navigation(PAGES)  # before the sidebar, so its widgets get the same ids in every run
device_box = sidebar()
warm_up()
page.run()
device_panel(device_box)
