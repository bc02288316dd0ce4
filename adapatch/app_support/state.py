"""Session state the app owns: the image store, the current image and the settings.

Widget state is lost when a page no longer draws the widget, so every setting that must survive
a page switch lives in ``st.session_state[SETTINGS]`` (a plain dict). Widgets are bound to it with
``widget``: the widget's key is seeded from the setting before the widget is drawn, and the value
the widget returns is written back.
"""

from __future__ import annotations

import inspect
from typing import Any

import streamlit as st

from ..errors import ImageError
from ..strategies import BUDGET_DEFAULT
from .images import (
    MAX_UPLOADS,
    ImageEntry,
    clean_name,
    decode_upload,
    load_sample_entry,
    sample_keys,
    task_sample_keys,
    upload_error_line,
)

IMAGES = "ap_images"  # dict key -> ImageEntry for uploaded images (samples come from the cache)
UPLOADS = "ap_uploads"  # dict file_id -> {"name", "key" | None, "error" | None[, "kept": True]}
CURRENT = "ap_current"  # key of the image being explored
SETTINGS = "ap_settings"
DEVICE = "ap_device"
DETACHED = "ap_uploads_detached"  # the uploader widget lost its files (st.switch_page): keep ours
DEFAULT_IMAGE = "sample:astronaut"
FORCED = "ap_forced_widgets"  # names whose widget value set_widget has just set (no value= for them)
QUERY_REGIONS = "ap_query_regions"  # image digest -> {"shape": [h, w], "query": Query dict of a region}

DEFAULTS: dict[str, Any] = {
    # saliency
    "saliency_method": "edges",
    "saliency_params": {},  # method -> {param: value}
    "heat_alpha": 0.55,
    "colormap": "turbo",
    # layout
    "strategy": BUDGET_DEFAULT["strategy"],  # the library's budget-mode default (ap.default_layout): multiscale
    "scales": BUDGET_DEFAULT["scales"],  # multiscale's search in budget mode: 1 = fast (the default), 6 = thorough
    "importance": "distortion",  # the quadtree's (README: equal-token results)
    "greedy_allocation": "saliency",
    # threshold mode: the user's threshold per kind (``recipes.threshold_kind``: the importance, "+query" when
    # mixed with a query). None yet: threshold mode starts at the threshold the budget setting implies on the
    # image (``recipes.implied_threshold``; 30% of the 16 px grid by default), never at a fixed number that
    # is nearly the finest grid for lambda and the coarsest for another importance.
    "thresholds": {},
    "sizes": (16, 64),  # min 16 = the token size: smaller boxes carry no more pixels (docs/app.md)
    "use_budget": True,
    "budget_fraction": 0.30,  # of the image's 16 px grid (relative: the same on every image; Patch layout,
    #                           Compare and Efficiency share it)
    "vit": "ViT-B",
    "show_recon": False,
    # model picker (app_support.model_source): "task" | "file" | "timm"
    "model_source": "task",
    "model_timm_name": "",
    "model_preprocess": "imagenet",  # input normalisation of an uploaded checkpoint that does not say its own
    "selector_k": 16,
    # pruning
    "prune_patch": 16,
    "prune_scorer": "mean",
    "keep_ratio": 0.5,
    # compare
    "compare_n": 3,
    "compare_configs": [  # A: the budget-mode default; B and C: its two candidates; D: the old threshold
        {"strategy": "multiscale", "importance": "distortion", "sizes": (16, 64), "scales": BUDGET_DEFAULT["scales"]},
        {"strategy": "quadtree", "importance": "distortion", "sizes": (16, 64)},
        {"strategy": "uniform", "importance": "distortion", "sizes": (16, 64)},
        {"strategy": "quadtree", "importance": "std", "sizes": (16, 64)},
    ],
    # efficiency
    "eff_samples": True,
    # query-aware patching (app_support.query_ui): the kind and weight are the user's for
    # every image; a region is per image (``query_region``, keyed by the image's digest)
    "query_kind": "none",  # none | region | class | text
    "query_weight": 0.5,
    "query_draw": "box",  # box | lasso | points: what a drag (or click) on the image draws
    "query_falloff": 0.10,  # soft edge of a region, as a fraction of the image's shorter side
    "query_class": 0,
    "query_text": "",
}


@st.cache_data(max_entries=16, show_spinner=False)
def sample_entry(name: str) -> ImageEntry:
    """A bundled sample, decoded once per server (shared by all sessions; read-only)."""
    return load_sample_entry(name)


def init() -> None:
    """Create the app's keys once per session."""
    ss = st.session_state
    if SETTINGS not in ss:
        ss[SETTINGS] = {k: (v.copy() if isinstance(v, (dict, list)) else v) for k, v in DEFAULTS.items()}
        ss[SETTINGS]["compare_configs"] = [dict(c) for c in DEFAULTS["compare_configs"]]
    ss.setdefault(IMAGES, {})
    ss.setdefault(UPLOADS, {})
    ss.setdefault(CURRENT, DEFAULT_IMAGE if DEFAULT_IMAGE in sample_keys() else (sample_keys() or [""])[0])
    ss.setdefault(DEVICE, "auto")


def settings() -> dict[str, Any]:
    init()
    return st.session_state[SETTINGS]


def get(name: str) -> Any:
    return settings().get(name, DEFAULTS.get(name))


def put(name: str, value: Any) -> None:
    settings()[name] = value


def widget(name: str, factory, *args, clamp=None, options=None, **kwargs):
    """Draw ``factory(label, ..., key="w_<name>")`` seeded from setting ``name``; store and return its value.

    The widget's initial value comes from the setting (``value=``, or ``index=`` when ``options``
    are given for a selectbox/radio, ``default=`` for segmented controls), so a widget that was
    not drawn on the previous page comes back with the user's value. ``clamp(value) -> value``
    fixes a stored value that no longer fits the widget (e.g. a budget outside a new range).
    """
    value = get(name)
    if clamp is not None:
        value = clamp(value)
    if options is not None:  # how the widget takes its initial value, from its own signature
        options = list(options)
        accepts = inspect.signature(factory).parameters
        if "index" in accepts:  # selectbox, radio
            kwargs["index"] = options.index(value) if value in options else 0
            args = (*args, options)
        elif "default" in accepts:  # segmented control, pills
            kwargs["default"] = value if value in options else options[0]
            args = (*args, options)
        else:  # select_slider
            kwargs["value"] = value
            kwargs["options"] = options
    elif name not in st.session_state.get(FORCED, ()):  # set_widget: the widget's key holds the value already
        kwargs["value"] = value
    st.session_state.get(FORCED, set()).discard(name)
    out = factory(*args, key=f"w_{name}", **kwargs)
    put(name, out)
    return out


def set_widget(name: str, value: Any) -> None:
    """Set setting ``name`` and the value its widget (``w_<name>``, drawn later in this run) shows,
    overriding what the widget held: for a setting the app itself changes while its widget stays on
    the page (e.g. the budget when it is switched on). Call before the widget is drawn."""
    put(name, value)
    st.session_state[f"w_{name}"] = value
    st.session_state.setdefault(FORCED, set()).add(name)  # widget() then passes no value= (no warning)


# ------------------------------------------------------------------ images
def sync_uploads(files: list | None) -> list[str]:
    """Decode new uploads (once per file id), forget removed ones; return keys of new good images.

    A file that fails gets one error line in ``UPLOADS`` and does not stop the others.
    """
    init()
    ss = st.session_state
    records: dict[str, dict] = ss[UPLOADS]
    images: dict[str, ImageEntry] = ss[IMAGES]
    files = list(files or [])
    ids = [getattr(f, "file_id", None) or f"{getattr(f, 'name', '')}:{i}" for i, f in enumerate(files)]
    new_keys: list[str] = []
    for fid, f in zip(ids, files):
        if fid in records:
            continue
        name = clean_name(getattr(f, "name", "upload"))
        rec: dict[str, Any] = {"name": name, "key": None, "error": None}
        good = sum(1 for r in records.values() if r["key"] and not r.get("kept"))
        try:
            if good >= MAX_UPLOADS:
                raise ImageError(f"only {MAX_UPLOADS} images are kept per session; remove some first")
            data = f.getvalue() if hasattr(f, "getvalue") else f.read()
            entry = decode_upload(name, data)
            images[entry.key] = entry
            rec["key"] = entry.key
            new_keys.append(entry.key)
        except (ImageError, ValueError, OSError, MemoryError) as e:
            rec["error"] = upload_error_line(e)
        except Exception as e:  # a decoder bug must not take the session down  # noqa: BLE001
            rec["error"] = upload_error_line(e)
        records[fid] = rec
    from_uploader = [k for k, r in records.items() if not r.get("kept")]  # not the app's own (add_image)
    if ss.get(DETACHED) and set(from_uploader) <= set(ids):
        ss[DETACHED] = False  # the uploader shows every file again: removals count again
    if not ss.get(DETACHED):
        for fid in [k for k in from_uploader if k not in ids]:  # removed from the uploader
            del records[fid]
    live = {r["key"] for r in records.values() if r["key"]}
    for key in [k for k in images if k not in live]:
        del images[key]
    if ss[CURRENT] not in live and not ss[CURRENT].startswith("sample:"):
        ss[CURRENT] = DEFAULT_IMAGE
    return new_keys


def add_image(entry: ImageEntry, label: str = "Upload") -> str:
    """Put ``entry`` (an upload-like image the app itself opens, e.g. a Demo step's bundled dataset
    image from ``images.decode_upload``) in the session's image list, next to the uploads, and return
    its key. It is kept like an upload (across page switches, cached by its digest) but does not
    depend on the sidebar's uploader: removing files there never removes it, and it does not count
    towards ``MAX_UPLOADS``. Adding the same image again (same key) changes nothing. ``label``: the
    word the sidebar's list shows before its name (``source_label``), e.g. "Sample" for a bundled file."""
    init()
    ss = st.session_state
    records: dict[str, dict] = ss[UPLOADS]
    if entry.key not in ss[IMAGES]:
        ss[IMAGES][entry.key] = entry
    if not any(r["key"] == entry.key for r in records.values()):
        records[f"app:{entry.key}"] = {"name": entry.name, "key": entry.key, "error": None, "kept": True,
                                       "label": label}
    return entry.key


def forget_images(keys) -> None:
    """Take images the app itself added (``add_image``) out of the session's image list again, e.g.
    the images an earlier "Apply" of the Dataset page added, so repeated applies do not pile up.
    Sidebar uploads are never touched; a forgotten current image falls back to the default."""
    init()
    ss = st.session_state
    drop = set(keys)
    records: dict[str, dict] = ss[UPLOADS]
    for fid in [k for k, r in records.items() if r.get("kept") and r["key"] in drop]:
        del records[fid]
    live = {r["key"] for r in records.values() if r["key"]}
    for key in [k for k in drop if k in ss[IMAGES] and k not in live]:
        del ss[IMAGES][key]
    if ss[CURRENT] in drop and ss[CURRENT] not in live:
        ss[CURRENT] = DEFAULT_IMAGE


def switch_page(page: str) -> None:
    """``st.switch_page`` that keeps the session's uploads: the sidebar uploader comes back empty after
    a programmatic page switch (Streamlit 1.67), which would otherwise read as "every upload removed".
    Until the uploader shows the files again, uploads are only added, never forgotten."""
    st.session_state[DETACHED] = True
    st.switch_page(page)


def upload_records() -> list[dict]:
    init()
    return list(st.session_state[UPLOADS].values())


def image_options() -> list[str]:
    """Keys of every image the user can pick: uploads first (in upload order), then samples, then the
    task model's digit samples."""
    init()
    ups = [r["key"] for r in st.session_state[UPLOADS].values() if r["key"]]
    ups = list(dict.fromkeys(ups))  # first occurrence of each, in order
    return ups + sample_keys() + task_sample_keys()


def uploaded_entries() -> list[ImageEntry]:
    init()
    images = st.session_state[IMAGES]
    return [images[k] for k in image_options() if k in images]


def entry(key: str) -> ImageEntry:
    """The image for ``key`` (uploads from session state, samples from the bounded cache)."""
    init()
    if key.startswith("sample:"):
        return sample_entry(key[len("sample:"):])
    try:
        return st.session_state[IMAGES][key]
    except KeyError:
        raise ImageError("this image is no longer loaded; pick another one") from None


def current_key() -> str:
    init()
    return st.session_state[CURRENT]


def set_current(key: str) -> None:
    init()
    st.session_state[CURRENT] = key


def current() -> ImageEntry:
    key = current_key()
    try:
        return entry(key)
    except ImageError:
        set_current(DEFAULT_IMAGE)
        return entry(DEFAULT_IMAGE)


def device() -> str:
    init()
    return st.session_state[DEVICE]


# ------------------------------------------------------------------ query regions (per image)
def query_region(digest: str, shape: tuple[int, int]) -> dict | None:
    """The region query (a ``Query`` dict: box, polygon or points) drawn on the image ``digest`` of
    ``shape`` (h, w), or None. Stored per image, so a region never moves to another image; one
    recorded for another shape (cannot happen for one digest, but checked) is dropped."""
    init()
    rec = st.session_state.setdefault(QUERY_REGIONS, {}).get(digest)
    if rec is None:
        return None
    if tuple(rec["shape"]) != tuple(int(v) for v in shape):
        del st.session_state[QUERY_REGIONS][digest]
        return None
    return dict(rec["query"])


def set_query_region(digest: str, shape: tuple[int, int], query: dict | None) -> None:
    """Store (or with None forget) the region query of the image ``digest``."""
    init()
    regions = st.session_state.setdefault(QUERY_REGIONS, {})
    if query is None:
        regions.pop(digest, None)
    else:
        regions[digest] = {"shape": [int(shape[0]), int(shape[1])], "query": dict(query)}


# ------------------------------------------------------------------ labels and notices
NOTICE = "ap_notice"  # a line for the next page drawn (e.g. the settings "Open in Patch layout" changed)


def source_label(key: str) -> str:
    """The word the sidebar's image list shows before an image's name: "Sample" for bundled samples and
    for bundled files the app itself opened (``add_image(..., label="Sample")``), else "Upload"."""
    if key.startswith("sample:"):
        return "Sample"
    init()
    for r in st.session_state[UPLOADS].values():
        if r["key"] == key and r.get("kept"):
            return str(r.get("label") or "Upload")
    return "Upload"


def notify(text: str, page: str) -> None:
    """Leave ``text`` for the page titled ``page`` (``ui.page_header`` shows it once, then forgets it):
    addressed, so the page that set it, drawn once more before the switch, does not take it."""
    st.session_state[NOTICE] = (page, text)


def take_notice(page: str) -> str | None:
    """The notice left for the page titled ``page``, forgotten as it is read; None when there is none."""
    pending = st.session_state.get(NOTICE)
    if not pending or pending[0] != page:
        return None
    del st.session_state[NOTICE]
    return pending[1]
