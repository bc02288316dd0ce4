"""The Query control (query-aware patching) of Patch layout, Saliency and Token pruning.

A *query* says where the user wants detail; the library mixes its map into the importance with a
weight (``adapatch.query``, docs/query.md). This module only draws the widgets and turns what the
user did into the settings' ``{"query": Query dict, "weight": w}``:

* **none**, **region** (a box or lasso dragged on a Plotly image, ``st.plotly_chart(on_select=...)``;
  points clicked on it, through an invisible grid of scatter markers; or typed exactly under
  "Exact region": a box ``(y0, x0, y1, x1)`` or points), **class** (a class
  of the picked model: ImageNet names for 1000-class models) and **text** (only where
  ``adapatch.model.query_maps.text_available()`` says it can run; otherwise its one-line reason);
* the **query weight** and, for regions, the soft edge (a fraction of the image's shorter side).

The kind, weight, class and text are the user's settings (``state.DEFAULTS``); a region belongs to
one image (``state.query_region``, keyed by the image's digest), so a box drawn on one image never
applies to another. Region coordinates are the image's pixels; a model-frame result (model scorers
on Token pruning) gets them scaled to the model's input (``to_frame``). Bad input (a box without
area, a lasso beside the image, unparsable points) gives one short line, never a traceback.
"""

from __future__ import annotations

import base64
import functools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from adapatch.messages import one_line
from adapatch.query import Query, region_mask

from . import compute, state
from .images import ImageEntry, md_escape

KIND_LABELS = {"none": "None", "region": "Region", "class": "Class", "text": "Text"}
DRAW_LABELS = {"box": "Box", "lasso": "Lasso", "points": "Points (click)"}
DRAW_SIDE = 768
"""Longest side, in pixels, of the image on the drawing surface (coordinates are scaled back)."""
FALLOFF_MAX = 0.30
MAX_POLYGON_VERTICES = 256
"""A lasso is thinned to at most this many vertices (settings stay small; the shape barely changes)."""
REGION_COLOR = "#00e5ff"
VERSIONS = "ap_query_draw_version"  # digest -> int: a new drawing surface (fresh selection) per change
MESSAGE = "ap_query_message"  # one line to show under the controls (set by the callbacks)
BOX_KEYS = ("w_qbox_y0", "w_qbox_x0", "w_qbox_y1", "w_qbox_x1")
BOX_SEED = "ap_qbox_seed"
POINTS_KEY = "w_qpoints"
CLICK_GRID = 96
"""Clickable points: an invisible grid of this many markers along the longer side (a click snaps to
the nearest one: Plotly image traces send no click point, scatter markers do)."""
MAX_POINTS = 32
"""Clicked points kept per image (the oldest go first)."""


@dataclass(frozen=True)
class Choice:
    """What the Query control says: ``kind`` (none / region / class / text), ``weight``, and the query
    (a ``Query`` dict in the image's pixels) or None while it is incomplete, with ``note`` saying why."""

    kind: str = "none"
    weight: float = 0.0
    query: dict | None = None
    note: str | None = None
    own_model: bool = False
    """A class query whose model the control picked itself (the page shows no model of its own, so no
    model caveat either: ``note`` says when that model was not trained for the image)."""

    @property
    def active(self) -> bool:
        return self.kind != "none"

    @property
    def ready(self) -> bool:
        return self.query is not None

    def without(self, note: str) -> Choice:
        """The same choice with no usable query (``note`` says why)."""
        return replace(self, query=None, note=note)


# ------------------------------------------------------------------ geometry
def _one_line(e: BaseException) -> str:
    return one_line(e) or "this query cannot be used on this image"


def box_from_range(xr, yr, shape: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)) -> tuple[int, ...]:
    """The end-exclusive pixel box ``(y0, x0, y1, x1)`` of a dragged range (plot coordinates: pixel ``i``
    of the drawn image centred at ``i``, that image ``scale = (sy, sx)`` times smaller than the image):
    the pixels whose centres it covers, clipped to the image. ValueError when it covers none."""
    h, w = shape
    sy, sx = scale
    (ya, yb), (xa, xb) = sorted(float(v) for v in yr), sorted(float(v) for v in xr)
    if not all(math.isfinite(v) for v in (ya, yb, xa, xb)):
        raise ValueError("the box has no coordinates")
    # edges in image pixels (0 = the image's top/left edge); pixel i is covered if i + 0.5 lies inside
    ey0, ey1, ex0, ex1 = (ya + 0.5) * sy, (yb + 0.5) * sy, (xa + 0.5) * sx, (xb + 0.5) * sx
    if ey1 <= 0 or ex1 <= 0 or ey0 >= h or ex0 >= w:
        raise ValueError("the box lies outside the image: drag it over the picture")
    y0, x0 = max(0, math.ceil(ey0 - 0.5)), max(0, math.ceil(ex0 - 0.5))
    y1, x1 = min(h, math.floor(ey1 - 0.5) + 1), min(w, math.floor(ex1 - 0.5) + 1)
    if y1 <= y0 or x1 <= x0:
        raise ValueError("the box has no area (it covers no pixel): drag a larger one")
    return y0, x0, y1, x1


def polygon_from_lasso(xs, ys, shape: tuple[int, int], scale: tuple[float, float] = (1.0, 1.0)) -> list[list[float]]:
    """The lasso's vertices as image pixel positions ``[[y, x], ...]`` (thinned to
    ``MAX_POLYGON_VERTICES``); ValueError when it has fewer than 3 or covers no pixel of the image."""
    sy, sx = scale
    pts = [[round((float(y) + 0.5) * sy - 0.5, 1), round((float(x) + 0.5) * sx - 0.5, 1)] for x, y in zip(xs, ys)
           if math.isfinite(float(x)) and math.isfinite(float(y))]
    if len(pts) < 3:
        raise ValueError("the lasso needs at least 3 points: draw a loop around the region")
    if len(pts) > MAX_POLYGON_VERTICES:
        keep = np.unique(np.linspace(0, len(pts) - 1, MAX_POLYGON_VERTICES).round().astype(int))
        pts = [pts[i] for i in keep]
    try:
        region_mask(shape, Query.of(polygon=pts))
    except ValueError:
        raise ValueError("the lasso covers no pixel of the image: draw it over the picture") from None
    return pts


def point_from_click(x: float, y: float, shape: tuple[int, int], scale: tuple[float, float]) -> list[float]:
    """A click at display coordinates ``(x, y)`` (display pixel ``i`` centred at ``i``) as ``[y, x]``
    in the image's pixels (the inverse of how ``draw_figure`` places a point), within the image."""
    h, w = shape
    sy, sx = scale
    py = min(max((float(y) + 0.5) * sy - 0.5, 0.0), h - 1.0)
    px = min(max((float(x) + 0.5) * sx - 0.5, 0.0), w - 1.0)
    return [round(py, 1), round(px, 1)]


def parse_points(text: str) -> list[list[float]]:
    """``"120, 200; 140 260"`` -> ``[[120, 200], [140, 260]]`` (y, x pairs); ValueError with one line."""
    pairs = [p for p in str(text).replace("\n", ";").split(";") if p.strip()]
    if not pairs:
        raise ValueError("points: type at least one 'y, x' pair (pairs separated by ';')")
    out = []
    for p in pairs:
        parts = p.replace(",", " ").split()
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise ValueError(f"points: {p.strip()[:30]!r} is not a 'y, x' pair of numbers") from None
        if len(vals) != 2 or not all(math.isfinite(v) for v in vals):
            raise ValueError(f"points: {p.strip()[:30]!r} is not a 'y, x' pair of numbers")
        out.append(vals)
    return out


def check_region(query: dict, shape: tuple[int, int]) -> dict:
    """The region ``query`` checked on an image of ``shape`` (the library's one-line ValueError)."""
    q = Query.from_dict(query)
    region_mask(shape, q)
    return q.to_dict()


def to_frame(query: dict, shape: tuple[int, int], frame_shape: tuple[int, int]) -> dict:
    """A region ``query`` in the pixels of an image of ``shape`` scaled to a ``frame_shape`` resize of
    it (the model's input); other kinds, and equal shapes, unchanged."""
    h, w = (int(v) for v in shape)
    fh, fw = (int(v) for v in frame_shape[:2])
    kind = query.get("kind")
    if (h, w) == (fh, fw) or kind not in ("box", "polygon", "points"):
        return dict(query)
    fy, fx = fh / h, fw / w
    q = dict(query)
    if kind == "box":
        y0, x0, y1, x1 = query["box"]
        fy0, fx0 = min(math.floor(y0 * fy), fh - 1), min(math.floor(x0 * fx), fw - 1)
        q["box"] = [fy0, fx0, max(fy0 + 1, min(fh, math.ceil(y1 * fy))),
                    max(fx0 + 1, min(fw, math.ceil(x1 * fx)))]
    else:
        q[kind] = [[round((y + 0.5) * fy - 0.5, 2), round((x + 0.5) * fx - 0.5, 2)] for y, x in query[kind]]
    if query.get("falloff") is not None:
        q["falloff"] = round(float(query["falloff"]) * min(fy, fx), 2)
    return q


def finest_in_region(layout, query: dict) -> tuple[int, int, int]:
    """``(inside, finest, size)``: of ``layout``'s finest tokens (its smallest size), how many are in
    the region of ``query`` (in the layout's image pixels). A box or lasso: the token's centre lies in
    the hard region (without its soft edge). Points: the token is in the points' neighbourhood, where
    the query map is above 0: it contains a point, or its centre lies within the soft edge of one (a
    point alone is one pixel, which a token's centre almost never hits)."""
    boxes = np.asarray(layout.boxes).reshape(-1, 3)
    if len(boxes) == 0:
        return 0, 0, 0
    size = int(boxes[:, 2].min())
    fine = boxes[boxes[:, 2] == size]
    q = Query.from_dict(query)
    if q.kind == "points":
        return near_points(fine, size, q, layout.height, layout.width), len(fine), size
    mask = region_mask((layout.height, layout.width), q)
    cy = np.clip(fine[:, 0] + size // 2, 0, layout.height - 1)
    cx = np.clip(fine[:, 1] + size // 2, 0, layout.width - 1)
    return int(mask[cy, cx].sum()), len(fine), size


def near_points(fine: np.ndarray, size: int, query: Query, height: int, width: int) -> int:
    """How many of the ``size`` px boxes ``fine`` (rows ``y, x, size``) are in the neighbourhood of
    ``query``'s points: a box that contains a point, or whose centre lies within the soft edge
    (``query.falloff``, else the library's default) of one. Vectorised over boxes x points (at most
    ``MAX_POINTS`` points)."""
    from adapatch.query import default_falloff
    pts = np.asarray(query.points, np.float64).reshape(-1, 2)
    if len(fine) == 0 or len(pts) == 0:
        return 0
    pix = np.rint(pts)  # the pixel a point is in (pixel i is centred at i)
    y0, x0 = fine[:, 0:1].astype(np.float64), fine[:, 1:2].astype(np.float64)
    contains = ((pix[:, 0] >= y0) & (pix[:, 0] < y0 + size) & (pix[:, 1] >= x0) & (pix[:, 1] < x0 + size)).any(1)
    edge = default_falloff(height, width) if query.falloff is None else float(query.falloff)
    cy, cx = y0 + (size - 1) / 2, x0 + (size - 1) / 2
    near = (np.hypot(pts[:, 0] - cy, pts[:, 1] - cx) < edge).any(1)
    return int((contains | near).sum())


def describe(query: dict | None) -> str:
    """A short label: "box (y0, x0, y1, x1)", "lasso of 12 points", "class 3", "text 'a red car'"."""
    if not query:
        return "no query"
    kind = query["kind"]
    if kind == "box":
        return "box (y0, x0, y1, x1) = (" + ", ".join(str(int(v)) for v in query["box"]) + ")"
    if kind == "polygon":
        return f"lasso of {len(query['polygon'])} points"
    if kind == "points":
        pts = query["points"]
        n = f"{len(pts)} point{'s' if len(pts) != 1 else ''}"
        if len(pts) > 4:
            return n
        return n + " (y, x): " + "; ".join(f"({float(y):g}, {float(x):g})" for y, x in pts)
    if kind == "class":
        return f"class {query['target']} of {query.get('model', 'the model')}"
    return f"text {query['text']!r}"


# ------------------------------------------------------------------ state
def _version(digest: str) -> int:
    return st.session_state.setdefault(VERSIONS, {}).get(digest, 0)


def _bump(digest: str) -> None:
    """A fresh drawing surface for this image (its old selection outline goes away)."""
    v = st.session_state.setdefault(VERSIONS, {})
    v[digest] = v.get(digest, 0) + 1


def _say(text: str | None) -> None:
    st.session_state[MESSAGE] = text


def _store(digest: str, shape: tuple[int, int], query: dict | None) -> None:
    state.set_query_region(digest, shape, query)
    _bump(digest)


def _on_draw(chart_key: str, digest: str, shape: tuple[int, int], scale: tuple[float, float]) -> None:
    """``on_select`` callback of the drawing surface: the last box or lasso becomes the region."""
    sel = (st.session_state.get(chart_key) or {}).get("selection") or {}
    boxes, lassos, points = list(sel.get("box") or []), list(sel.get("lasso") or []), list(sel.get("points") or [])
    if not boxes and not lassos and not points:
        return  # a click that cleared the selection: the stored region stays
    try:
        if points and not boxes and not lassos:
            region = state.query_region(digest, shape)
            old = list(region["points"]) if region and region.get("kind") == "points" else []
            new = [point_from_click(p["x"], p["y"], shape, scale) for p in points]
            query = Query.of(points=(old + new)[-MAX_POINTS:]).to_dict()
        elif lassos:
            last = lassos[-1]
            query = Query.of(polygon=polygon_from_lasso(last["x"], last["y"], shape, scale)).to_dict()
        else:
            last = boxes[-1]
            query = Query.of(box=box_from_range(last["x"], last["y"], shape, scale)).to_dict()
    except (ValueError, KeyError, TypeError) as e:
        _say(_one_line(e) if isinstance(e, ValueError) else "that selection has no usable coordinates")
        _bump(digest)
        return
    _say(None)
    _store(digest, shape, query)


def _on_box(digest: str, shape: tuple[int, int]) -> None:
    try:
        box = [int(st.session_state[k]) for k in BOX_KEYS]
        query = check_region(Query.of(box=box).to_dict(), shape)
    except (ValueError, TypeError, KeyError) as e:
        _say(_one_line(e))
        return
    _say(None)
    _store(digest, shape, query)


def _on_points(digest: str, shape: tuple[int, int]) -> None:
    try:
        query = check_region(Query.of(points=parse_points(st.session_state.get(POINTS_KEY, ""))).to_dict(), shape)
    except (ValueError, TypeError) as e:
        _say(_one_line(e))
        return
    _say(None)
    _store(digest, shape, query)


def _on_clear(digest: str, shape: tuple[int, int]) -> None:
    _say(None)
    _store(digest, shape, None)


def _seed_box(entry: ImageEntry, region: dict | None) -> None:
    """Fill the exact-box inputs from the image's region (a box) or a centred default, whenever the
    image or its region changes (never while the user is typing)."""
    seed = (entry.digest, compute.canonical(region))
    if st.session_state.get(BOX_SEED) == seed:
        return
    h, w = entry.height, entry.width
    if region and region.get("kind") == "box":
        vals = region["box"]
    else:
        vals = [h // 4, w // 4, max(h // 4 + 1, 3 * h // 4), max(w // 4 + 1, 3 * w // 4)]
    for k, v in zip(BOX_KEYS, vals):
        st.session_state[k] = int(v)
    st.session_state[BOX_SEED] = seed


# ------------------------------------------------------------------ widgets
@functools.lru_cache(maxsize=1)
def text_reason() -> str | None:
    """None when text queries can run here, else the one-line reason (``text_available``). Without
    open_clip installed the answer needs no torch (``open_clip_missing``), so a first paint stays fast."""
    from adapatch.model_refs import open_clip_missing
    missing = open_clip_missing()
    if missing is not None:
        return missing
    from adapatch.model.query_maps import text_available
    return text_available()


def controls(entry: ImageEntry, picked: tuple[Any, Any] | None = None, picker: bool = True) -> Choice:
    """The Query widgets (left column): kind, weight, and the kind's own input. ``picked``: the model
    the page already picked (its picker is drawn once per page); else, for a class query, the model
    picker is drawn here (``picker``). A region comes from ``surface`` (drawn next to the result)."""
    st.markdown("**Query** · where to spend tokens")
    why_text = text_reason()
    kinds = [k for k in KIND_LABELS if k != "text" or why_text is None]
    kind = state.widget("query_kind", st.radio, "Query", options=kinds, format_func=KIND_LABELS.get,
                        horizontal=True, label_visibility="collapsed",
                        help="Region: drag a box or lasso on the image; class: a class of the picked model "
                             "(its evidence map); text: an image-text model's map of your words.")
    if why_text is not None:
        st.caption(f"Text queries: unavailable here, {md_escape(why_text)}.")
    weight = state.widget("query_weight", st.slider, "Query weight", 0.0, 1.0, step=0.05, format="%.2f",
                          disabled=kind == "none",
                          help="importance = (1 - w) · content + w · query (the library's mixing rule): 0 is "
                               "the query-blind layout exactly, 1 follows the query alone.")
    msg = st.session_state.pop(MESSAGE, None)
    if msg:
        st.warning(md_escape(msg), icon=":material/warning:")
    if kind == "region":
        state.widget("query_draw", st.radio, "Draw on the image", options=list(DRAW_LABELS),
                     format_func=DRAW_LABELS.get, horizontal=True)
        frac = state.widget("query_falloff", st.slider, "Soft edge (of the shorter side)", 0.0, FALLOFF_MAX,
                            step=0.01, format="percent",
                            help="The query map falls from 1 on the region to 0 over this distance (smoothstep).")
        region = state.query_region(entry.digest, (entry.height, entry.width))
        if region is None:
            return Choice(kind, weight, note="Drag a box or lasso on the image, or click points (or give an exact "
                                             "box under 'Exact region').")
        region["falloff"] = round(float(frac) * min(entry.height, entry.width), 2)
        return Choice(kind, weight, Query.from_dict(region).to_dict())
    if kind == "class":
        return _class_choice(weight, picked, picker)
    if kind == "text":
        text = state.widget("query_text", st.text_input, "Text", placeholder="a red car", max_chars=200)
        if not str(text or "").strip():
            return Choice(kind, weight, note="Type what to look for.")
        return Choice(kind, weight, Query.of(text=str(text).strip()).to_dict())
    return Choice(kind, weight)


def _class_choice(weight: float, picked, picker: bool) -> Choice:
    from . import model_source
    own = picked is None
    if picked is None:
        if not picker:
            return Choice("class", weight, note="Pick a model for a class query.")
        picked = model_source.picker()
        if picked is None:
            return Choice("class", weight, note="Pick a model for a class query.")
    ref, model = picked
    from adapatch.model import describe_model
    from adapatch.model.classes import class_label
    n = describe_model(model)["num_classes"]
    if not n:
        return Choice("class", weight, note="This model has no classifier head: a class query needs one.")
    target = state.widget("query_class", st.selectbox, "Class", options=list(range(int(n))),
                          format_func=lambda i: class_label(i, n),
                          help="The class whose evidence (gradient x attention of the picked model) says where "
                               "to spend tokens.")
    return Choice("class", weight, Query(kind="class", model=ref.name, target=int(target)).to_dict(),
                  own_model=own)


@st.cache_data(max_entries=16, show_spinner=False)
def _jpeg_uri(digest: str, side: int, _image: np.ndarray) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(compute.jpeg_bytes(_image)).decode()


def draw_figure(entry: ImageEntry, region: dict | None, dragmode: str = "box") -> tuple[go.Figure, tuple[float, float]]:
    """The drawing surface: the image (display size, JPEG) as a Plotly image trace, the current
    region outlined; and the scale ``(sy, sx)`` from its pixels to the image's."""
    disp = compute.display_image(entry, DRAW_SIDE)
    dh, dw = disp.shape[:2]
    sy, sx = entry.height / dh, entry.width / dw
    shapes: list[dict] = []
    line = {"color": REGION_COLOR, "width": 2}
    if region and region["kind"] == "box":
        y0, x0, y1, x1 = region["box"]
        shapes.append({"type": "rect", "x0": x0 / sx - 0.5, "x1": x1 / sx - 0.5, "y0": y0 / sy - 0.5,
                       "y1": y1 / sy - 0.5, "line": line})
    elif region and region["kind"] == "polygon":
        pts = [((x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5) for y, x in region["polygon"]]
        path = "M " + " L ".join(f"{x:.1f},{y:.1f}" for x, y in pts) + " Z"
        shapes.append({"type": "path", "path": path, "line": line})
    elif region and region["kind"] == "points":
        r = max(3.0, 0.012 * max(dh, dw))
        for y, x in region["points"]:
            cx, cy = (x + 0.5) / sx - 0.5, (y + 0.5) / sy - 0.5
            shapes.append({"type": "circle", "x0": cx - r, "x1": cx + r, "y0": cy - r, "y1": cy + r, "line": line})
    data: list[dict] = [{"type": "image", "source": _jpeg_uri(entry.digest, DRAW_SIDE, disp), "hoverinfo": "skip"}]
    clicking = dragmode == "points"
    if clicking:  # invisible markers to click on (a drag does nothing: fixed axes, pan)
        step = max(dh, dw) / CLICK_GRID
        ys, xs = np.meshgrid(np.arange(step / 2 - 0.5, dh - 0.5, step), np.arange(step / 2 - 0.5, dw - 0.5, step),
                             indexing="ij")
        data.append({"type": "scatter", "mode": "markers", "x": np.round(xs.ravel(), 2).tolist(),
                     "y": np.round(ys.ravel(), 2).tolist(), "hoverinfo": "none", "showlegend": False,
                     "marker": {"size": max(4.0, 400 / CLICK_GRID), "opacity": 0},
                     "selected": {"marker": {"opacity": 0}}, "unselected": {"marker": {"opacity": 0}}})
    drag = "pan" if clicking else ("lasso" if dragmode == "lasso" else "select")
    spec = {
        "data": data,
        "layout": {"dragmode": drag, "shapes": shapes, "hovermode": "closest",
                   "margin": {"l": 0, "r": 0, "t": 0, "b": 0}, "height": int(min(560, max(200, 400 * dh / dw))),
                   "xaxis": {"visible": False, "range": [-0.5, dw - 0.5], "fixedrange": clicking},
                   "yaxis": {"visible": False, "range": [dh - 0.5, -0.5], "scaleanchor": "x", "fixedrange": clicking},
                   "newselection": {"line": {"color": REGION_COLOR, "dash": "dot"}}},
    }
    return go.Figure(spec, _validate=False), (sy, sx)


def beside(right, entry: ImageEntry, choice: Choice, page: str):
    """With an active query, split ``right`` into the drawing surface (or the original, for class and
    text queries) and the column the page's result goes in, drawn before anything is computed;
    returns that column (``right`` itself without a query)."""
    if not choice.active:
        return right
    with right:
        ask, main = st.columns(2, gap="small")
    with ask:
        if choice.kind == "region":
            surface(entry, choice, page)
        else:
            st.image(compute.display_image(entry), width="stretch", caption="Original")
    return main


def surface(entry: ImageEntry, choice: Choice, page: str) -> None:
    """The drawing surface and the exact-region inputs (region queries). A drag calls ``_on_draw``
    before the rerun, so the region is stored before anything is computed."""
    shape = (entry.height, entry.width)
    region = state.query_region(entry.digest, shape)
    fig, scale = draw_figure(entry, region, state.get("query_draw"))
    key = f"qdraw_{page}_{entry.digest[:12]}_{_version(entry.digest)}"
    st.plotly_chart(fig, key=key, on_select=functools.partial(_on_draw, key, entry.digest, shape, scale),
                    selection_mode=("points", "box", "lasso"), config={"displayModeBar": False, "scrollZoom": False,
                                                             "doubleClick": False}, width="stretch")
    how = (f"Click points on the image (each click adds one, up to {MAX_POINTS})"
           if state.get("query_draw") == "points" else f"Drag a {state.get('query_draw')} on the image")
    st.caption(f"{how}: the query region ({describe(region)}{', cyan' if region else ''}).")
    _seed_box(entry, region)
    with st.expander("Exact region (pixels)", icon=":material/straighten:"):
        h, w = shape
        c = st.columns(4)
        for col, k, label, hi in zip(c, BOX_KEYS, ("y0", "x0", "y1", "x1"), (h, w, h, w)):
            col.number_input(label, min_value=0, max_value=int(hi), step=1, key=k)
        st.button("Use this box", key="w_qbox_apply", on_click=_on_box, args=(entry.digest, shape),
                  help="End-exclusive pixel box (y0, x0, y1, x1) of this image.")
        st.text_input("Points (y, x; y, x; …)", key=POINTS_KEY, placeholder="120, 200; 140, 260")
        b1, b2 = st.columns(2)
        b1.button("Use these points", key="w_qpoints_apply", on_click=_on_points, args=(entry.digest, shape))
        b2.button("Clear the region", key="w_qclear", on_click=_on_clear, args=(entry.digest, shape),
                  disabled=region is None)


def checked(entry: ImageEntry, choice: Choice) -> Choice:
    """``choice`` with its query map computed once (cached): a query that cannot run here (a class
    query on random weights, a model that fails) becomes no query, with the one-line reason."""
    if choice.query is None:  # not ready
        return choice
    try:
        compute.query_map(entry, choice.query)
    except ValueError as e:
        return choice.without(_one_line(e))
    return choice


def record(choice: Choice, entry: ImageEntry, frame_shape: tuple[int, int] | None = None) -> dict | None:
    """The settings' ``query``: ``{"query": Query dict, "weight": w}`` (region coordinates scaled to
    ``frame_shape`` when the result is computed on a model-frame resize), or None."""
    if choice.query is None:  # not ready
        return None
    q = choice.query
    if frame_shape is not None:
        q = to_frame(q, (entry.height, entry.width), frame_shape)
    return {"query": q, "weight": float(choice.weight)}


def note(choice: Choice, warned: bool = False) -> None:
    """Say why an active query is not in use; for a class query of a model the control picked itself,
    warn when that model was not trained for the image (``model_source.image_caveat``: the rule and
    the words the pages' own model views use), unless the page has just warned (``warned``)."""
    if choice.query is not None and choice.own_model and choice.query.get("kind") == "class" and not warned:
        from . import model_caveats
        model_caveats.image_caveat(choice.query.get("model", ""), state.current_key(),
                                  what="the class query (its map of evidence for that digit, and the layout "
                                       "it shapes)")
    if choice.active and not choice.ready and choice.note:
        st.info(md_escape(choice.note), icon=":material/info:")


def query_heatmap(entry: ImageEntry, choice: Choice, container=None) -> None:
    """The query map as its own heatmap over the image, with its colour bar."""
    c = container or st
    alpha, cmap = state.get("heat_alpha"), state.get("colormap")
    assert choice.query is not None  # drawn for a ready choice only
    qmap = compute.query_map(entry, choice.query)
    c.image(compute.map_heatmap_png(entry, "query|" + compute.query_key(choice.query), qmap, alpha, cmap),
            output_format="PNG", width="stretch", caption=f"Query map: {md_escape(describe(choice.query))}")
    from .ui import colorbar
    colorbar(cmap, "query map, 0 (no wish) to 1 (spend tokens here)", labels=("0", "0.5", "1"), container=c)


def saliency_heatmap(entry: ImageEntry, spec: dict, container=None, what: str = "Content saliency") -> None:
    """The content saliency (``spec``) as a heatmap, next to the query map."""
    c = container or st
    alpha, cmap = state.get("heat_alpha"), state.get("colormap")
    c.image(compute.heatmap_png(entry, spec, alpha, cmap), output_format="PNG", width="stretch",
            caption=f"{what}: {md_escape(spec['method'])} (scaled per image to [0, 1])")


def comparison(entry: ImageEntry, pair: tuple[dict, dict], choice: Choice, *, kind: str = "layout",
               budget_note: str = "") -> None:
    """With and without the query at equal tokens, side by side: overlays, tokens, PSNR/SSIM and, for
    a region, the share of the finest (pruning: kept) tokens inside it."""
    from . import ui
    st.subheader("With and without the query, at equal tokens")
    if budget_note:
        st.caption(budget_note)
    cols = st.columns(2, gap="medium")
    region = choice.query if choice.query and choice.query["kind"] in ("box", "polygon", "points") else None
    for col, label, s in zip(cols, ("With the query", "Without the query"), pair):
        lay = compute.layout(entry, s)
        full = compute.full_settings(entry, s)
        from adapatch.export import in_model_frame
        if kind == "tokens" or in_model_frame(full):
            png = compute.overlay_png(entry, s, kind="tokens" if kind == "tokens" else "layout")
            col.image(png, output_format="PNG", width="stretch")
        else:
            col.image(compute.overlay_jpeg(entry, s), output_format="JPEG", width="stretch")
        fid = compute.fidelity(entry, s, state.device())
        side = label.split()[0].lower()
        m = [c for _ in range(2) for c in col.columns(2)]  # two rows of two: whole labels and values at 1440 px
        m[0].metric(f"Tokens · {side}", ui.fmt_int(lay.num_tokens),
                    help=f"{label}: tokens of this layout (the same budget on both sides).")
        m[1].metric(f"PSNR dB · {side}", ui.fmt_psnr(fid["psnr"]))
        m[2].metric(f"SSIM · {side}", f"{fid['ssim']:.4f}")
        if region:
            frame_q = to_frame(region, (entry.height, entry.width), (lay.height, lay.width))
            inside, total, size = finest_in_region(lay, frame_q)
            what = "kept tokens" if kind == "tokens" else f"finest ({size} px) tokens"
            points = region["kind"] == "points"
            where = ("are near a point: contain one, or have their centre within the soft edge of one (where the "
                     "query map is above 0)" if points else
                     "have their centre in the region (the hard region, without its soft edge)")
            m[3].metric(f"{'Near points' if points else 'In region'} · {side}",
                        f"{inside}/{total}" if total else "–",
                        delta=(f"{100 * inside / total:.0f}%" if total else None), delta_color="off",
                        delta_arrow="off", help=f"Of the {what}, how many {where}.")
        col.caption(f"**{label}** · {ui.count_text(lay.num_tokens)}")
