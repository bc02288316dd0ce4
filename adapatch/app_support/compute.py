"""Cached calls into ``adapatch``: one bounded ``st.cache_data`` per kind of result.

Every cached function is keyed on the image's content digest plus the settings as canonical JSON
(plus the picked model's key, ``model_source.ModelRef.key``, when the settings use a model); the
image, saliency map and model are passed as underscore arguments so Streamlit never hashes them.
Nothing here computes what the library computes: these are thin wrappers. Model-based settings
(learned/attention pruning, the learned selector) work on the image resized to the model's input
(``frame``); their pictures are enlarged (nearest neighbour) for display.

Model calls run on the selected device: the settings' ``device`` (the sidebar's, "auto" = CUDA when
present) for settings-based results, the sidebar's for the attention saliency map. The picked model
is loaded on that device (``model_source.load``), and the device is part of every cache key of a
result that used a model (in the settings' JSON, or added to the saliency spec's key).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import streamlit as st

import adapatch as ap
from adapatch import render
from adapatch.export import (
    in_model_frame,
    layout_from_settings,
    model_prune_from_settings,
    needs_saliency,
    normalize_settings,
    settings_model,
)
from adapatch.saliency import saliency_method, saliency_method_names

from .images import ImageEntry, to_display

DISPLAY_SIDE = 1024
"""Longest side, in pixels, of images sent to the browser (overlays are drawn at this size)."""
MODEL_DISPLAY_SIDE = 512
"""Model-input frames (64 px for the bundled model) are enlarged by an integer factor to about this."""
PLOT_CONFIG = {"displayModeBar": False, "responsive": True}
"""Plotly config of every chart (no mode bar)."""
DROPPED_TINT = (70, 90, 170)
"""Colour washed over dropped tokens in every model-frame token map (enlarged or not)."""


def canonical(obj: Any) -> str:
    """Stable JSON text of settings, used as a cache key."""
    return json.dumps(obj, sort_keys=True, default=lambda x: x.tolist() if hasattr(x, "tolist") else list(x))


# ------------------------------------------------------------------ saliency
def saliency_spec(method: str, params: dict | None = None) -> dict:
    """``{"method", "params"}`` with the method's defaults filled in."""
    if method not in saliency_method_names():
        raise ValueError(f"unknown saliency method {method!r}")
    return {"method": method, "params": {**saliency_method(method).defaults, **(params or {})}}


def model_key(uses_model: bool) -> str:
    """The picked model's cache key when a result depends on it (no loading needed)."""
    if not uses_model:
        return ""
    from .model_source import current_ref
    return current_ref().key


def picked_model(uses_model: bool, device: str | None = None):
    """The picked model loaded on ``device`` (default: the sidebar's), or None when not used."""
    if not uses_model:
        return None
    from .model_source import current_model
    return current_model(device)[1]


def spec_key(spec: dict, device: str | None = None) -> str:
    """Cache key of a saliency spec (for attention, the model's key and the device it runs on:
    ``device``, default the sidebar's, resolved)."""
    if spec["method"] != "attention":
        return canonical(spec) + "|"
    from .model_source import run_device
    return canonical(spec) + "|" + model_key(True) + "|" + run_device(device)


@st.cache_data(max_entries=48, show_spinner=False)
def _saliency(digest: str, key: str, spec_json: str, _image: np.ndarray, _model) -> np.ndarray:
    spec = json.loads(spec_json)
    params = dict(spec["params"])
    if _model is not None:  # attention: the picked model object instead of its name
        params["model"] = _model
    return ap.saliency(_image, spec["method"], **params)


def saliency_map(entry: ImageEntry, spec: dict, device: str | None = None) -> np.ndarray:
    """The saliency map of ``spec``; the attention method runs the picked model on ``device``
    (default: the sidebar's)."""
    uses = spec["method"] == "attention"
    return _saliency(entry.digest, spec_key(spec, device), canonical(spec), entry.array, picked_model(uses, device))


@st.cache_data(max_entries=48, show_spinner=False)
def _histogram(digest: str, key: str, bins: int, _sal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.histogram(_sal, bins=bins, range=(0.0, 1.0))


def saliency_histogram(entry: ImageEntry, spec: dict, bins: int = 50) -> tuple[np.ndarray, np.ndarray]:
    return _histogram(entry.digest, spec_key(spec), bins, saliency_map(entry, spec))


@st.cache_data(max_entries=32, show_spinner=False)
def _heatmap_png(digest: str, key: str, alpha: float, colormap: str, max_side: int,
                 _image: np.ndarray, _sal: np.ndarray) -> bytes:
    return render.to_png_bytes(render.heatmap(_image, _sal, alpha=alpha, colormap=colormap, max_side=max_side))


def heatmap_png(entry: ImageEntry, spec: dict, alpha: float, colormap: str, max_side: int = DISPLAY_SIDE) -> bytes:
    return _heatmap_png(entry.digest, spec_key(spec), float(alpha), colormap, max_side, entry.array,
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


def settings_key(s: dict) -> str:
    """Cache key of normalised settings (the picked model's key added when they use a model)."""
    return canonical(s) + "|" + model_key(settings_model(s) is not None)


def _sal_for(entry: ImageEntry, s: dict) -> np.ndarray | None:
    return saliency_map(entry, s["saliency"], s["device"]) if needs_saliency(s) else None


@st.cache_data(max_entries=16, show_spinner=False)
def _frame(digest: str, model_key: str, _image: np.ndarray, _model) -> np.ndarray:
    from adapatch.model import resize_for_model
    return resize_for_model(_image, _model)


def frame(entry: ImageEntry, settings: dict) -> np.ndarray:
    """The image the settings' layout refers to: the image, or for model-based settings the image
    resized to the model's input (``adapatch.export.frame_image``)."""
    s = full_settings(entry, settings)
    if not in_model_frame(s):
        return entry.array
    return _frame(entry.digest, model_key(True), entry.array, picked_model(True, s["device"]))


def display_factor(entry: ImageEntry, settings: dict) -> int:
    """Integer enlargement for drawing the settings' result (1 unless it is in a small model frame)."""
    if not in_model_frame(full_settings(entry, settings)):
        return 1
    h, w = frame(entry, settings).shape[:2]
    return max(1, MODEL_DISPLAY_SIDE // max(h, w))


# ------------------------------------------------------------------ queries (query-aware patching)
def query_key(query: dict, device: str | None = None) -> str:
    """Cache key of a ``Query`` dict: for a class query also the picked model's key, and for class
    and text queries the device their model runs on (``device``, default the sidebar's, resolved)."""
    key = canonical(query) + "|"
    if query.get("kind") in ("class", "text"):
        from .model_source import run_device
        key += (model_key(True) if query["kind"] == "class" else "") + "|" + run_device(device)
    return key


@st.cache_data(max_entries=32, show_spinner="Computing the query map…")
def _query_map(tag: str, key: str, query_json: str, device: str, _image: np.ndarray, _model) -> np.ndarray:
    from dataclasses import replace
    q = ap.Query.from_dict(json.loads(query_json))
    if q.kind == "class":  # the picked model object (the dict names it only)
        q = replace(q, model=_model)
    return ap.query_map(_image, q, device=device)


def query_map_of(tag: str, image: np.ndarray, query: dict, device: str | None = None) -> np.ndarray:
    """``adapatch.query_map(image, query)``, cached per image ``tag`` (its digest, plus the frame when
    it is a model frame) and query: computed once per query, whatever the weight. A class query runs
    the picked model on ``device`` (default: the sidebar's)."""
    from .model_source import run_device
    model = picked_model(query.get("kind") == "class", device)
    return _query_map(tag, query_key(query, device), canonical(query), run_device(device), image, model)


def query_map(entry: ImageEntry, query: dict, device: str | None = None) -> np.ndarray:
    """The query map of ``query`` (a ``Query`` dict in the image's pixels) on the image itself."""
    return query_map_of(entry.digest, entry.array, query, device)


def settings_qmap(entry: ImageEntry, s: dict) -> np.ndarray | None:
    """The map of the (normalised) settings' query on the image their result refers to (``frame``),
    or None when nothing is mixed in (no query, or weight 0)."""
    q = s.get("query")
    if q is None or q["weight"] == 0:
        return None
    if not in_model_frame(s):
        return query_map(entry, q["query"], s["device"])
    tag = entry.digest + "|frame:" + model_key(True)
    return query_map_of(tag, frame(entry, s), q["query"], s["device"])


def _qtag(s: dict) -> str:
    """The part of a cache key the query map adds (already in the settings JSON; kept explicit)."""
    q = s.get("query")
    return "" if q is None else "|q:" + query_key(q["query"], s["device"])


@st.cache_data(max_entries=32, show_spinner=False)
def _mixed(digest: str, key: str, weight: float, _sal: np.ndarray, _qmap: np.ndarray) -> np.ndarray:
    from adapatch.query import mix
    return mix(_sal, _qmap, weight).astype(np.float32)


def mixed_map(entry: ImageEntry, sal_spec: dict, query: dict, weight: float) -> np.ndarray:
    """``(1 - w) * saliency + w * query map`` per pixel (``adapatch.query.mix``): the mixing rule on
    the saliency map, for display."""
    return _mixed(entry.digest, spec_key(sal_spec) + query_key(query), float(weight),
                  saliency_map(entry, sal_spec), query_map(entry, query))


def map_heatmap_png(entry: ImageEntry, key: str, values: np.ndarray, alpha: float, colormap: str,
                    max_side: int = DISPLAY_SIDE) -> bytes:
    """The heatmap PNG of any [0, 1] map of ``entry`` (a query map, a mixed map), cached by ``key``."""
    return _heatmap_png(entry.digest, key, float(alpha), colormap, max_side, entry.array, values)


@st.cache_data(max_entries=64, show_spinner=False)
def _model_prune(digest: str, key: str, settings_json: str, _image: np.ndarray, _model, _qmap=None):
    return model_prune_from_settings(_image, json.loads(settings_json), _model, qmap=_qmap)


def model_prune(entry: ImageEntry, settings: dict):
    """``adapatch.model.PruneResult`` of learned/attention prune settings (on the model's input frame)."""
    s = full_settings(entry, settings)
    return _model_prune(entry.digest, settings_key(s) + _qtag(s), canonical(s), entry.array,
                        picked_model(True, s["device"]), settings_qmap(entry, s))


@st.cache_data(max_entries=128, show_spinner=False)
def _layout(digest: str, key: str, settings_json: str, _image: np.ndarray, _sal: np.ndarray | None,
            _model, _qmap: np.ndarray | None = None, _source=None) -> ap.PatchLayout:
    return layout_from_settings(_image, json.loads(settings_json), _sal, model=_model, qmap=_qmap,
                                multiscale_source=_source)


@st.cache_resource(max_entries=4, show_spinner=False)
def _multiscale_source(digest: str, _image: np.ndarray):
    """The image's ``MultiscaleSource`` (padded image, sums of squares, scanned box errors), kept
    across budget steps: a step then refines and scores without scanning the image again."""
    from adapatch.multiscale import MultiscaleSource
    return MultiscaleSource(_image)


# ------------------------------------------------------------------ multiscale's threshold mode (rd_hull)
HULL_LEVELS = 2
"""``levels`` of the app's ``multiscale`` hull (16-64 px quadtree boxes over a 16 px token: the library's default)."""
HULL_TOKEN_SIZE = 16
"""``token_size`` of the app's ``multiscale`` hull."""
MULTISCALE_QUERY_REFUSED = ("multiscale's threshold mode does not take a query yet: turn the budget on, or use the "
                            "quadtree")
"""The one line the library's refusal says (``strategies.multiscale_at_threshold``), as the app shows it."""


@st.cache_resource(max_entries=8, show_spinner="Building this image's rate-distortion hull…")
def _hull(digest: str, levels: int, token_size: int, _image: np.ndarray):
    from adapatch.rd_hull import rd_hull
    return rd_hull(_image, levels=levels, token_size=token_size)


def rd_hull(entry: ImageEntry, levels: int = HULL_LEVELS, token_size: int = HULL_TOKEN_SIZE):
    """``adapatch.rd_hull(image, levels=, token_size=)``: built once per image, levels and token size
    (about 0.1 s at 512x512, 0.5-1 s at 1 MP, 1.5 s at 4 MP) and shared read-only (``st.cache_resource``,
    at most 8 hulls); every lambda after that is a lookup (``RDHull.layout``, ``tokens_at``)."""
    return _hull(entry.digest, int(levels), int(token_size), entry.array)


def is_hull_settings(s: dict) -> bool:
    """Whether (normalised) settings are ``multiscale``'s threshold mode: a threshold, no budget."""
    p = s["params"]
    return (s["strategy"] == "multiscale" and s.get("solve_budget") is None and p.get("budget") is None
            and p.get("threshold") is not None and s.get("prune") is None)


@st.cache_data(max_entries=128, show_spinner=False)
def _hull_layout(digest: str, key: str, levels: int, token_size: int, lam: float, _hull_obj) -> ap.PatchLayout:
    return _hull_obj.layout(lam)


def hull_layout(entry: ImageEntry, s: dict) -> ap.PatchLayout:
    """The layout of ``multiscale``'s threshold-mode settings (normalised) from the image's cached hull:
    what ``make_layout(image, "multiscale", threshold=lam, levels=, token_size=)`` gives, without building
    the hull again on every slider move. A query mixed in (weight > 0) is refused as the library refuses it."""
    p = s["params"]
    q = s.get("query")
    if q is not None and q["weight"] > 0:
        raise ValueError(MULTISCALE_QUERY_REFUSED)
    levels, token_size = int(p.get("levels", HULL_LEVELS)), int(p.get("token_size", HULL_TOKEN_SIZE))
    hull = rd_hull(entry, levels, token_size)
    return _hull_layout(entry.digest, settings_key(s), levels, token_size, float(p["threshold"]), hull)


def layout(entry: ImageEntry, settings: dict) -> ap.PatchLayout:
    """The layout ``settings`` describe for ``entry`` (see ``adapatch.export``; model-based settings
    give a layout of ``frame(entry, settings)``). The settings' query map comes from ``settings_qmap``
    (cached per query), so moving the query weight never recomputes it. ``multiscale``'s threshold
    mode comes from the image's cached hull (``hull_layout``)."""
    s = full_settings(entry, settings)
    if s["prune"] is not None and s["prune"]["model"] is not None:
        return model_prune(entry, settings).layout
    if is_hull_settings(s):
        return hull_layout(entry, s)
    uses = settings_model(s) is not None
    src = _multiscale_source(entry.digest, entry.array) if s["strategy"] == "multiscale" else None
    return _layout(entry.digest, settings_key(s) + _qtag(s), canonical(s), entry.array, _sal_for(entry, s),
                   picked_model(uses, s["device"]), settings_qmap(entry, s), src)


@st.cache_data(max_entries=48, show_spinner=False)
def _curve(digest: str, key: str, min_size: int, max_size: int, importance: str, _image: np.ndarray,
           _sal: np.ndarray | None, query_weight: float = 0.0, _qmap: np.ndarray | None = None) -> ap.ThresholdCurve:
    return ap.threshold_curve(_image, _sal, min_size=min_size, max_size=max_size, importance=importance,
                              query=_qmap, query_weight=query_weight if _qmap is not None else 0.0)


def threshold_curve(entry: ImageEntry, sal_spec: dict, min_size: int, max_size: int, importance: str,
                    query: dict | None = None) -> ap.ThresholdCurve:
    """The exact tokens-vs-threshold curve; ``query``: the settings' ``{"query", "weight"}`` (the
    curve of the mixed importance), None for the query-blind one."""
    from adapatch.importance import SALIENCY_MEASURES
    sal = saliency_map(entry, sal_spec) if importance in SALIENCY_MEASURES else None
    key = spec_key(sal_spec) if sal is not None else ""
    if query is None or query["weight"] == 0:
        return _curve(entry.digest, key, min_size, max_size, importance, entry.array, sal)
    key += "|q:" + query_key(query["query"])
    return _curve(entry.digest, key, min_size, max_size, importance, entry.array, sal, float(query["weight"]),
                  query_map(entry, query["query"]))


@st.cache_data(max_entries=32, show_spinner=False)
def _quadtree_quality(digest: str, key: str, min_size: int, max_size: int, importance: str, _image: np.ndarray,
                      _sal: np.ndarray | None):
    from adapatch.quality import SSIM_POINTS, quadtree_quality
    return quadtree_quality(_image, min_size, max_size, importance=importance, saliency=_sal, ssim_points=SSIM_POINTS)


@st.cache_data(max_entries=16, show_spinner=False)
def _uniform_quality(digest: str, _image: np.ndarray):
    from adapatch.quality import SSIM_POINTS, uniform_quality
    return uniform_quality(_image, ssim_points=SSIM_POINTS)


def uniform_quality(entry: ImageEntry):
    """PSNR (every patch size) and SSIM (``quality.SSIM_POINTS`` sizes) vs tokens of the uniform grid."""
    return _uniform_quality(entry.digest, entry.array)


def quality_curves(entry: ImageEntry, min_size: int, max_size: int, importance: str = "distortion",
                   sal_spec: dict | None = None):
    """``(quadtree, uniform)`` quality-vs-tokens curves against the original (``adapatch.quality``):
    PSNR at every budget of the budget-mode quadtree (this importance and size range) and every
    uniform patch size, SSIM at ``quality.SSIM_POINTS`` points of each; one cached pass per image
    (and size range, importance, saliency), about 0.5-1 s at 1 MP."""
    from adapatch.importance import SALIENCY_MEASURES
    sal = saliency_map(entry, sal_spec) if importance in SALIENCY_MEASURES and sal_spec is not None else None
    key = spec_key(sal_spec) if sal is not None and sal_spec is not None else ""
    q = _quadtree_quality(entry.digest, key, int(min_size), int(max_size), importance, entry.array, sal)
    return q, uniform_quality(entry)


@st.cache_data(max_entries=16, show_spinner=False)
def _sampled_quality(digest: str, key: str, settings_json: str, budgets: tuple[int, ...], label: str,
                     _image: np.ndarray, _sal: np.ndarray | None):
    from adapatch.quality import layouts_quality
    s = json.loads(settings_json)
    layouts = [layout_from_settings(_image, {**s, "solve_budget": int(b)}, _sal) for b in budgets]
    return layouts_quality(_image, layouts, label)


def sampled_quality(entry: ImageEntry, settings: dict, budgets, label: str):
    """Quality vs tokens of ``settings`` (a ``solve_budget`` strategy) solved at each of ``budgets``:
    one layout and one fidelity per budget (``quality.layouts_quality``), cached per image and settings."""
    s = full_settings(entry, {**settings, "solve_budget": None, "relative_budget": None})
    return _sampled_quality(entry.digest, settings_key(s), canonical(s), tuple(int(b) for b in budgets), label,
                            entry.array, _sal_for(entry, s))


@st.cache_data(max_entries=64, show_spinner=False)
def _fidelity(digest: str, key: str, device: str, _image: np.ndarray, _layout: ap.PatchLayout) -> dict:
    return ap.fidelity(_image, _layout, device=device)


def fidelity(entry: ImageEntry, settings: dict, device: str = "auto") -> dict:
    s = full_settings(entry, settings)
    return _fidelity(entry.digest, settings_key(s), device, frame(entry, settings), layout(entry, settings))


@st.cache_data(max_entries=64, show_spinner=False)
def _overlay_png(digest: str, key: str, kind: str, max_side: int | None, factor: int, model_frame: bool,
                 _image: np.ndarray, _layout: ap.PatchLayout) -> bytes:
    tint = DROPPED_TINT if model_frame else None  # model frames: dropped tokens washed in colour
    # a small model-input frame (dark digits) is drawn ``factor`` times larger; colours keep the true sizes
    if kind == "tokens":
        return render.to_png_bytes(render.token_map(_image, _layout, max_side=max_side, dropped_tint=tint,
                                                    enlarge=factor))
    return render.to_png_bytes(render.layout_overlay(_image, _layout, max_side=max_side, enlarge=factor))


def overlay_png(entry: ImageEntry, settings: dict, kind: str = "layout", max_side: int | None = DISPLAY_SIDE) -> bytes:
    """PNG of the layout overlay (``kind="layout"``) or pruned-token map (``"tokens"``)."""
    s = full_settings(entry, settings)
    return _overlay_png(entry.digest, settings_key(s), kind, max_side, display_factor(entry, settings),
                        in_model_frame(s), frame(entry, settings), layout(entry, settings))


DISPLAY_JPEG_QUALITY = 92
"""JPEG quality of the Patch layout overlay (no chroma subsampling, so 1 px outlines keep their colour)."""


def jpeg_bytes(image: np.ndarray, quality: int = DISPLAY_JPEG_QUALITY) -> bytes:
    """A uint8 RGB array as JPEG (4:4:4): about 10 ms at 1024 x 1024 where PNG takes about 90 ms."""
    import io

    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.asarray(image, np.uint8)).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


@st.cache_data(max_entries=64, show_spinner=False)
def _overlay_jpeg(digest: str, key: str, max_side: int, enlarge: int, _base: np.ndarray,
                  _layout: ap.PatchLayout) -> bytes:
    return jpeg_bytes(render.layout_overlay(_base, _layout, max_side=max_side, enlarge=enlarge))


def small_image_factor(height: int, width: int, side: int = MODEL_DISPLAY_SIDE) -> int:
    """Integer enlargement (nearest neighbour) that brings a small image towards ``side`` px for display:
    a browser stretching a 12x9 picture would blur it into a smudge. 1 for images of ``side`` or more."""
    return int(min(64, max(1, side // max(int(height), int(width), 1))))


def overlay_jpeg(entry: ImageEntry, settings: dict, max_side: int = DISPLAY_SIDE) -> bytes:
    """The layout overlay at display size as JPEG, drawn on the cached display-size image: what the
    Patch layout page shows on every slider move (``st.image(..., output_format="JPEG")``; the
    full-size download stays PNG). Model-frame settings: ``overlay_png``."""
    s = full_settings(entry, settings)
    if in_model_frame(s):
        raise ValueError("overlay_jpeg draws layouts of the image itself; use overlay_png for model frames")
    lay = layout(entry, settings)
    return _overlay_jpeg(entry.digest, settings_key(s), int(max_side), small_image_factor(lay.height, lay.width),
                         display_image(entry, max_side), lay)


@st.cache_data(max_entries=16, show_spinner=False)
def _reconstruction_png(digest: str, key: str, device: str, max_side: int, factor: int, _image: np.ndarray,
                        _layout: ap.PatchLayout) -> bytes:
    rec = ap.reconstruct(_image, _layout, device=device)
    return render.to_png_bytes(to_display(render.upscale(rec, factor), max_side))


def reconstruction_png(entry: ImageEntry, settings: dict, device: str = "auto", max_side: int = DISPLAY_SIDE) -> bytes:
    """What the model sees (every token resampled to 16 px and painted back), at display size."""
    s = full_settings(entry, settings)
    return _reconstruction_png(entry.digest, settings_key(s), device, max_side, display_factor(entry, settings),
                               frame(entry, settings), layout(entry, settings))


def clear_all() -> None:
    """Drop every cached result (the sidebar's "clear caches" button)."""
    st.cache_data.clear()
