"""Cached calls into ``adapatch``: one bounded ``st.cache_data`` per kind of result.

Every cached function is keyed on the image's content digest plus the settings as canonical JSON;
the image (and saliency map) are passed as underscore arguments so Streamlit never hashes the
arrays. Nothing here computes what the library computes: these are thin wrappers.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

import adapatch as ap
from adapatch import render
from adapatch.export import layout_from_settings, needs_saliency, normalize_settings

from .images import ImageEntry, load_sample_entry, to_display

DISPLAY_SIDE = 1024
"""Longest side, in pixels, of images sent to the browser (overlays are drawn at this size)."""


def canonical(obj: Any) -> str:
    """Stable JSON text of settings, used as a cache key."""
    return json.dumps(obj, sort_keys=True, default=lambda x: x.tolist() if hasattr(x, "tolist") else list(x))


@st.cache_data(max_entries=16, show_spinner=False)
def sample_entry(name: str) -> ImageEntry:
    return load_sample_entry(name)


# ------------------------------------------------------------------ saliency
def saliency_spec(method: str, params: dict | None = None) -> dict:
    """``{"method", "params"}`` with the method's defaults filled in."""
    methods = ap.saliency_methods()
    if method not in methods:
        raise ValueError(f"unknown saliency method {method!r}")
    return {"method": method, "params": {**methods[method].defaults, **(params or {})}}


@st.cache_data(max_entries=48, show_spinner=False)
def _saliency(digest: str, spec_json: str, _image: np.ndarray) -> np.ndarray:
    spec = json.loads(spec_json)
    return ap.saliency(_image, spec["method"], **spec["params"])


def saliency_map(entry: ImageEntry, spec: dict) -> np.ndarray:
    return _saliency(entry.digest, canonical(spec), entry.array)


@st.cache_data(max_entries=48, show_spinner=False)
def _histogram(digest: str, spec_json: str, bins: int, _sal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.histogram(_sal, bins=bins, range=(0.0, 1.0))


def saliency_histogram(entry: ImageEntry, spec: dict, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    return _histogram(entry.digest, canonical(spec), bins, saliency_map(entry, spec))


@st.cache_data(max_entries=32, show_spinner=False)
def _heatmap_png(digest: str, spec_json: str, alpha: float, colormap: str, max_side: int,
                 _image: np.ndarray, _sal: np.ndarray) -> bytes:
    return render.to_png_bytes(render.heatmap(_image, _sal, alpha=alpha, colormap=colormap, max_side=max_side))


def heatmap_png(entry: ImageEntry, spec: dict, alpha: float, colormap: str, max_side: int = DISPLAY_SIDE) -> bytes:
    return _heatmap_png(entry.digest, canonical(spec), float(alpha), colormap, max_side, entry.array,
                        saliency_map(entry, spec))


@st.cache_data(max_entries=32, show_spinner=False)
def _display(digest: str, max_side: int, _image: np.ndarray) -> np.ndarray:
    return to_display(_image, max_side)


def display_image(entry: ImageEntry, max_side: int = DISPLAY_SIDE) -> np.ndarray:
    """The image as uint8 at display size."""
    return _display(entry.digest, max_side, entry.array)


# ------------------------------------------------------------------ layouts
def full_settings(entry: ImageEntry, settings: dict) -> dict:
    """``settings`` completed with the image source and resize, normalised (cache key + export)."""
    s = dict(settings)
    s["image"] = {"source": entry.source, "resize": list(entry.resize) if entry.resize else None}
    return normalize_settings(s)


def _sal_for(entry: ImageEntry, s: dict) -> np.ndarray | None:
    return saliency_map(entry, s["saliency"]) if needs_saliency(s) else None


@st.cache_data(max_entries=128, show_spinner=False)
def _layout(digest: str, settings_json: str, _image: np.ndarray, _sal: np.ndarray | None) -> ap.PatchLayout:
    return layout_from_settings(_image, json.loads(settings_json), _sal)


def layout(entry: ImageEntry, settings: dict) -> ap.PatchLayout:
    """The layout ``settings`` describe for ``entry`` (see ``adapatch.export``)."""
    s = full_settings(entry, settings)
    return _layout(entry.digest, canonical(s), entry.array, _sal_for(entry, s))


@st.cache_data(max_entries=48, show_spinner=False)
def _curve(digest: str, key: str, min_size: int, max_size: int, importance: str, _image: np.ndarray,
           _sal: np.ndarray | None) -> ap.ThresholdCurve:
    return ap.threshold_curve(_image, _sal, min_size=min_size, max_size=max_size, importance=importance)


def threshold_curve(entry: ImageEntry, sal_spec: dict, min_size: int, max_size: int, importance: str) -> ap.ThresholdCurve:
    from adapatch.importance import SALIENCY_MEASURES
    sal = saliency_map(entry, sal_spec) if importance in SALIENCY_MEASURES else None
    key = canonical(sal_spec) if sal is not None else ""
    return _curve(entry.digest, key, min_size, max_size, importance, entry.array, sal)


@st.cache_data(max_entries=64, show_spinner=False)
def _fidelity(digest: str, settings_json: str, device: str, _image: np.ndarray, _layout: ap.PatchLayout) -> dict:
    return ap.fidelity(_image, _layout, device=device)


def fidelity(entry: ImageEntry, settings: dict, device: str = "auto") -> dict:
    s = full_settings(entry, settings)
    return _fidelity(entry.digest, canonical(s), device, entry.array, layout(entry, settings))


@st.cache_data(max_entries=64, show_spinner=False)
def _overlay_png(digest: str, settings_json: str, kind: str, max_side: int | None, _image: np.ndarray,
                 _layout: ap.PatchLayout) -> bytes:
    if kind == "tokens":
        return render.to_png_bytes(render.token_map(_image, _layout, max_side=max_side))
    return render.to_png_bytes(render.layout_overlay(_image, _layout, max_side=max_side))


def overlay_png(entry: ImageEntry, settings: dict, kind: str = "layout", max_side: int | None = DISPLAY_SIDE) -> bytes:
    """PNG of the layout overlay (``kind="layout"``) or pruned-token map (``"tokens"``)."""
    s = full_settings(entry, settings)
    return _overlay_png(entry.digest, canonical(s), kind, max_side, entry.array, layout(entry, settings))


@st.cache_data(max_entries=16, show_spinner=False)
def _reconstruction_png(digest: str, settings_json: str, device: str, max_side: int, _image: np.ndarray,
                        _layout: ap.PatchLayout) -> bytes:
    rec = ap.reconstruct(_image, _layout, device=device)
    return render.to_png_bytes(to_display(rec, max_side))


def reconstruction_png(entry: ImageEntry, settings: dict, device: str = "auto", max_side: int = DISPLAY_SIDE) -> bytes:
    """What the model sees (every token resampled to 16 px and painted back), at display size."""
    s = full_settings(entry, settings)
    return _reconstruction_png(entry.digest, canonical(s), device, max_side, entry.array, layout(entry, settings))


def clear_all() -> None:
    """Drop every cached result (the sidebar's "clear caches" button)."""
    st.cache_data.clear()
