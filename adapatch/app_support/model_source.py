"""The app's model picker: the bundled task model, a local checkpoint file, or a timm name.

The chosen source and timm name are app settings (``state.DEFAULTS``: ``model_source``,
``model_timm_name``), so they survive page switches. An uploaded checkpoint is read in memory
(``adapatch.model.load_model_bytes``: safetensors, or ``torch.load(weights_only=True)``; a pickle
that would run code is refused) and never written to disk; its bytes stay in this session
(``MODEL_FILE``, one file, <= the upload limit) so the model can be rebuilt if the bounded
resource cache dropped it. Loaded models are shared, read-only, in ``st.cache_resource``, one per
device: every model is loaded on the device its calls run on (``run_device``: the sidebar's, "auto"
resolved, CUDA when present), so a shared model never moves between devices.
A source that failed to load is remembered per session with its one-line reason (``MODEL_ERRORS``)
so an unreachable hub is not retried, and a bad upload not parsed again, on every rerun.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import streamlit as st

from adapatch.messages import first_line, one_line
from adapatch.model_refs import CHECKPOINT_SUFFIXES

from . import state
from .images import clean_name, digest_of, md_escape

SOURCES = {"task": "Bundled task model (cluttered digits)", "file": "Local checkpoint file",
           "timm": "timm model name"}
PREPROCESS_LABELS = {"imagenet": "ImageNet mean/std (DeiT, most timm ImageNet weights)",
                     "clip": "OpenAI CLIP mean/std", "half": "mean = std = 0.5 (augreg ViTs, SigLIP)"}
"""Input normalisations offered for an uploaded checkpoint that does not say its own (default: ImageNet)."""
CHECKPOINT_TYPES = tuple(s.lstrip(".") for s in CHECKPOINT_SUFFIXES)  # the file uploader's types
MODEL_FILE = "ap_model_file"  # {"name", "digest", "data", "file_id"} of the uploaded checkpoint
MODEL_ERRORS = "ap_model_errors"  # {ModelRef.key: one-line reason} of sources that failed to load
MODEL_UPLOAD = "ap_model_upload"  # {"file_id", "error"} of the last checkpoint upload read
NO_FILE = "(no checkpoint uploaded)"
log = logging.getLogger("adapatch.app")


@dataclass(frozen=True)
class ModelRef:
    """Which model: ``kind`` (task / file / timm), ``name`` as settings and snippets write it
    ("task", the file name, the timm name) and, for files, the content digest."""

    kind: str
    name: str
    digest: str = ""
    preprocess: str = ""
    """For a file that does not say its input normalisation: the one picked (``PREPROCESS_LABELS``)."""

    @property
    def key(self) -> str:
        """Cache key: different files with the same name never share results."""
        file_key = f"file:{self.digest}" + (f":{self.preprocess}" if self.preprocess else "")
        return {"task": "task", "file": file_key}.get(self.kind, f"timm:{self.name}")

    @property
    def label(self) -> str:
        """Name for captions."""
        return "the bundled task model" if self.kind == "task" else self.name

    @property
    def ready(self) -> bool:
        return self.kind == "task" or (self.kind == "file" and bool(self.digest)) or (
            self.kind == "timm" and bool(self.name))


def timm_unavailable() -> str | None:
    """Why timm cannot be used here (one line, in words), or None when ``import timm`` works."""
    try:
        importlib.import_module("timm")
    except Exception as e:  # ImportError, or a broken install  # noqa: BLE001
        log.debug("import timm failed: %s: %s", type(e).__name__, e)  # the kind of failure: for the log only
        return timm_reason(e)
    return None


def timm_reason(e: BaseException) -> str:
    """What is wrong with timm, said in words (never an exception class name), from the error
    ``import timm`` raised: not installed, a package it needs missing, or an installed timm whose
    torchvision does not match torch."""
    detail = first_line(e) if str(e).strip() else ""
    if isinstance(e, ModuleNotFoundError):  # a module that is not there: timm itself, or one it needs
        missing = str(getattr(e, "name", None) or "")
        if missing == "timm" or (not missing and "'timm'" in detail):
            return "timm is not installed: pip install timm to load models by name"
        top = missing.split(".")[0]
        if top and top != "timm":
            return (f"timm is installed but cannot be imported: it needs {top}, which is not installed "
                    f"(pip install {top})")
    if "torchvision" in detail:
        return ("timm is installed but cannot be imported: its torchvision does not match torch"
                + (f" ({detail})" if detail else "") + "; install the torchvision built for this torch")
    return ("timm is installed but cannot be imported" + (f": {detail}" if detail else "")
            + " (see the server log)")


def _session() -> Any:
    state.init()
    ss = st.session_state
    ss.setdefault(MODEL_ERRORS, {})
    return ss


def current_ref() -> ModelRef:
    """The picked model source (not necessarily loadable: see ``ModelRef.ready``)."""
    ss = _session()
    kind = state.get("model_source")
    if kind == "file":
        f = ss.get(MODEL_FILE)
        return ModelRef("file", f["name"], f["digest"], file_preprocess(f)) if f else ModelRef("file", NO_FILE)
    if kind == "timm" and timm_unavailable() is None:
        return ModelRef("timm", str(state.get("model_timm_name") or "").strip())
    return ModelRef("task", "task")


def run_device(device: str | None = None) -> str:
    """The device model calls run on: ``device`` (default: the sidebar's choice, ``state.device()``)
    with "auto" resolved by ``adapatch.resolve_device`` ("cpu" / "cuda"; CUDA when present)."""
    from adapatch.device import resolve_device
    return str(resolve_device(state.device() if device is None else device))


def file_preprocess(f: dict) -> str:
    """The normalisation to load an uploaded file with: "" when the file says its own, else the
    setting picked under the uploader (``model_preprocess``, ImageNet by default)."""
    if f.get("known"):
        return ""
    pre = state.get("model_preprocess")
    return pre if pre in PREPROCESS_LABELS else "imagenet"


@st.cache_resource(max_entries=2, show_spinner="Loading the checkpoint…")
def _file_model(digest: str, name: str, device: str, preprocess: str, _data: bytes):
    from adapatch.model import load_model_bytes
    return load_model_bytes(_data, name, device=device, **({"preprocess": preprocess} if preprocess else {}))


@st.cache_resource(max_entries=2, show_spinner="Loading the timm model (downloads weights from timm's hub)…")
def _timm_model(name: str, device: str):
    from adapatch.model.weights import load_timm
    return load_timm(name, device=device)


def load(ref: ModelRef, device: str | None = None):
    """The model for ``ref`` on ``device`` (default: the sidebar's, ``run_device``), cached per
    device; raises ``ValueError`` with one line when it cannot be had."""
    ss = _session()
    if not ref.ready:
        raise ValueError("no checkpoint file is uploaded yet: upload one under Model, or pick another source"
                         if ref.kind == "file" else "enter a timm model name under Model")
    if ref.key in ss[MODEL_ERRORS]:
        raise ValueError(ss[MODEL_ERRORS][ref.key])
    dev = run_device(device)  # before the try: a device problem is not this model's to remember
    try:
        if ref.kind == "task":  # the library's one cache of the bundled model (one per device)
            from adapatch.model.sources import resolve_model
            return resolve_model("task", device=dev)
        if ref.kind == "file":
            f = ss.get(MODEL_FILE)
            if not f or f["digest"] != ref.digest:
                raise ValueError("this checkpoint is no longer loaded; upload it again")
            return _file_model(f["digest"], f["name"], dev, file_preprocess(f), f["data"])
        return _timm_model(ref.name, dev)
    except Exception as e:  # noqa: BLE001 - remembered, whatever it is, so a rerun does not retry it
        ss[MODEL_ERRORS][ref.key] = _reason(e)
        raise ValueError(ss[MODEL_ERRORS][ref.key]) from None


def _reason(e: Exception) -> str:
    """One line (<= 300 characters) saying why a model could not be had, in words: the library's
    ``ValueError`` text as it is; anything else as a plain sentence (its kind goes to the log)."""
    if isinstance(e, ValueError):
        text = str(e)
    else:
        log.warning("model could not be loaded: %s: %s", type(e).__name__, e)
        detail = first_line(e) if str(e).strip() else ""
        if isinstance(e, ImportError):
            text = f"a package the model needs cannot be imported: {detail or getattr(e, 'name', None) or 'no detail'}"
        elif isinstance(e, MemoryError):
            text = "not enough memory to load this model"
        else:
            text = f"the model could not be loaded: {detail or 'no detail (see the server log)'}"
    return one_line(text)


def current_model(device: str | None = None) -> tuple[ModelRef, Any]:
    """The picked model, loaded on ``device`` (default: the sidebar's; raises ``ValueError`` with one line)."""
    ref = current_ref()
    return ref, load(ref, device)


def checkpoint_name(raw: str) -> str:
    """An uploaded file's name fit to show and to write in settings, its suffix kept (it picks the reader)."""
    suffix = PurePath(str(raw)).suffix.lower()
    suffix = clean_name(suffix)[:12] if suffix else ""
    name = clean_name(raw)
    return name if name.lower().endswith(suffix) else clean_name(PurePath(str(raw)).stem)[:40] + suffix


def accept_upload(name: str, data: bytes, file_id: str = "", device: str | None = None) -> ModelRef:
    """Load an uploaded checkpoint from its bytes; on success it becomes this session's file.

    Raises ``ValueError`` (one line) for an unreadable, code-running or non-ViT checkpoint; the
    previous file, if any, stays. A failure is remembered for these bytes (``MODEL_ERRORS``), so
    the same file is not parsed again in this session (``Forget``/a new upload of other bytes only).
    """
    from adapatch.model.weights import normalisation_known
    ss = _session()
    name = checkpoint_name(name)
    digest = digest_of(bytes(data))
    f = {"name": name, "digest": digest, "data": bytes(data), "file_id": file_id,
         "known": normalisation_known(bytes(data), name)}
    ref = ModelRef("file", name, digest, file_preprocess(f))
    if ref.key in ss[MODEL_ERRORS]:
        raise ValueError(ss[MODEL_ERRORS][ref.key])
    try:  # validates: raises before anything is kept
        _file_model(digest, name, run_device(device), ref.preprocess, bytes(data))
    except Exception as e:  # noqa: BLE001
        ss[MODEL_ERRORS][ref.key] = _reason(e)
        raise ValueError(ss[MODEL_ERRORS][ref.key]) from None
    ss[MODEL_FILE] = f
    ss[MODEL_ERRORS].pop(ref.key, None)
    return ref


def forget_upload() -> None:
    _session().pop(MODEL_FILE, None)


# ------------------------------------------------------------------ widgets
def _file_widgets() -> None:
    ss = _session()
    f = st.file_uploader(f"Checkpoint ({', '.join(CHECKPOINT_SUFFIXES)})", type=list(CHECKPOINT_TYPES),
                         key="w_model_file",
                         help="A timm-format ViT state dict. Read in memory, never stored; .pt/.pth/.bin files load "
                              "with torch.load(weights_only=True): a pickle that would run code is refused.")
    last = ss.get(MODEL_UPLOAD) or {}
    if f is not None:
        fid = getattr(f, "file_id", "") or f.name
        if last.get("file_id") != fid:  # each upload is read once (a forgotten one is not taken back)
            last = {"file_id": fid, "error": None}
            try:
                accept_upload(f.name, f.getvalue(), fid)
            except Exception as e:  # noqa: BLE001 - remembered: the upload is not read again on a rerun
                last["error"] = _reason(e)
            ss[MODEL_UPLOAD] = last
        if last.get("error"):
            st.error(md_escape(last["error"]), icon=":material/error:")
    kept = ss.get(MODEL_FILE)
    if kept and not kept.get("known"):
        state.widget("model_preprocess", st.selectbox, "Input normalisation", options=list(PREPROCESS_LABELS),
                     format_func=PREPROCESS_LABELS.get,
                     help="This file does not say how its inputs were normalised, so pick it (default: ImageNet "
                          "mean/std, what DeiT and most timm ImageNet weights use). A wrong choice shifts every "
                          "logit. Files saved by adapatch (save_model) carry their own.")
    if kept:
        st.caption(f"Using **{md_escape(kept['name'])}** ({len(kept['data']) / 1e6:.1f} MB, kept in this session "
                   "only).")
        st.button("Forget this checkpoint", key="w_model_forget", on_click=forget_upload, icon=":material/delete:")


def _timm_widgets() -> None:
    ss = _session()
    name = state.widget("model_timm_name", st.text_input, "timm model name", placeholder="vit_small_patch16_224",
                        help="A timm vit_*/deit_* name (other timm models are refused), e.g. vit_small_patch16_224. "
                             "The weights come from timm's hub, so this needs network access on the server.")
    key = f"timm:{str(name or '').strip()}"
    if key in ss[MODEL_ERRORS] and st.button("Try again", key="w_model_retry", icon=":material/refresh:"):
        ss[MODEL_ERRORS].pop(key, None)


def picker(device: str | None = None) -> tuple[ModelRef, Any] | None:
    """Draw the model picker; return ``(ref, model)``, the model loaded on ``device`` (default: the
    sidebar's), or None (with the reason shown)."""
    reason = timm_unavailable()
    options = [k for k in SOURCES if k != "timm" or reason is None]
    kind = state.widget("model_source", st.radio, "Model", options=options, format_func=lambda k: SOURCES[k],
                        help="Which ViT the model-based views run.")
    if reason is not None:
        st.caption(f"{SOURCES['timm']}: unavailable, {md_escape(reason)}.")
    if kind == "file":
        _file_widgets()
    elif kind == "timm":
        _timm_widgets()
    ref = current_ref()
    if not ref.ready:
        st.info("Upload a checkpoint file to use it." if ref.kind == "file" else "Enter a timm model name.",
                icon=":material/info:")
        return None
    try:
        model = load(ref, device)
    except ValueError as e:
        st.error(md_escape(one_line(e)), icon=":material/error:")
        return None
    return ref, model


def summary(ref: ModelRef, model) -> None:
    """What is loaded, in plain words, and what its maps mean."""
    from adapatch.model import describe_model

    d = describe_model(model)
    parts = "yes" if d["has_pruner"] else "no", "yes" if d["has_selector"] else "no"
    st.markdown(
        f"**Loaded:** {md_escape(SOURCES[ref.kind])}"
        + (f" · {md_escape(ref.name)}" if ref.kind != "task" else "")
        + f"  \n{md_escape(d['architecture'])} · {d['params'] / 1e6:.2f} M parameters"
        + f"  \ninput {d['img_size']}x{d['img_size']} px · patch {d['patch_size']} px ({d['grid_size']}x"
        f"{d['grid_size']} grid) · {d['num_classes'] or 'no'} classes"
        + f"  \ntrained pruner: **{parts[0]}** · trained selector: **{parts[1]}**")
    if ref.kind == "task":
        st.caption("The bundled model is a tiny ViT trained here on 64x64 cluttered digits: its attention, scores "
                   "and selection mean something on digit images only (the *digit* samples in the sidebar), not "
                   "on photos.")
    elif not d["pretrained"]:
        st.warning("Random weights: this file was saved by adapatch from an untrained model. Its attention and "
                   "scores mean nothing, so the attention views refuse it.", icon=":material/warning:")
    elif ref.kind == "file":
        st.caption("Weights from your file: adapatch cannot tell whether they are trained, so maps and scores are "
                   "only as meaningful as those weights.")
    else:
        st.caption("Pretrained weights from timm (preprocessing from timm's data config; 1000-class models' "
                   "predictions are shown with their ImageNet class names).")


def not_trained_for(model: ModelRef | str, image_key: str) -> bool:
    """True when ``model`` (a ref, or the model name a class query records) is the bundled task
    model and the image ``image_key`` is not one of its digit samples: what the model says about
    such an image (attention, scores, selection, class evidence) means nothing. Other models: False
    (adapatch cannot tell what they were trained on)."""
    from adapatch.samples import list_task_samples
    is_task = model.kind == "task" if isinstance(model, ModelRef) else model == "task"
    return is_task and image_key[len("sample:"):] not in list_task_samples()
