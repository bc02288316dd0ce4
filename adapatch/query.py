"""Query-aware patching: a map of where the user wants detail, and how it mixes into importance.

A *query* says where to spend tokens: a region (a box, a polygon, clicked points) with a soft
falloff around it (foveation), the evidence for a class from a ViT, or a text prompt through an
image-text model. ``query_map`` turns any of them into a float32 map ``[H, W]`` in [0, 1] (1 =
"detail here"); ``Query`` is the same description as a plain dataclass with a JSON round trip
(``to_dict`` / ``from_dict``), so exported settings can record it.

Every layout strategy and pruner takes ``query=`` (a map, a ``Query`` or its dict) and
``query_weight=w`` in [0, 1] and mixes it into its importance as ``(1 - w) * content + w * query``
(docs/query.md): the content importance normalised to [0, 1] per image (layouts: divided by its
maximum over the tree; token scores: min-max), the query's importance of a square (or token) the
*maximum* of the map over its pixels in the image. ``w = 0`` is the query-blind result, bit for
bit (the query is not read); ``w = 1`` follows the query alone.

Region geometry: ``box=(y0, x0, y1, x1)`` in pixels, end-exclusive, inside the image; polygon
vertices and points are ``(y, x)`` pixel positions (pixel ``(r, c)`` is centred at ``(r, c)``, as a
Plotly image trace draws it), rounded to the nearest pixel; a polygon is filled by OpenCV
(boundary pixels included) and may reach past the image as long as it covers one of its pixels.
``falloff`` is the width in pixels of the soft edge: the map is 1 on the region and
``1 - smoothstep(d / falloff)`` at distance ``d`` (exact Euclidean distance transform), so it falls
smoothly to exactly 0 at ``falloff`` px; 0 gives the hard mask; None is 10% of the shorter side.

Class and text maps come from the model package (torch), through the plug-in registry
(``adapatch.plugins``, kinds ``"class"`` and ``"text"``): this module never names the model
package, which imports ``adapatch.pruning`` and so sits above it; ``adapatch.model_plugins`` names
``adapatch.model.query_maps``, imported on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from . import plugins
from .validation import check_float, check_int

QUERY_KINDS = ("box", "polygon", "points", "class", "text")
REGION_KINDS = ("box", "polygon", "points")
DEFAULT_FALLOFF_FRACTION = 0.1
"""``falloff=None``: this fraction of the image's shorter side, in pixels."""
_FIELDS = ("kind", "box", "polygon", "points", "falloff", "model", "target", "text")
_COORD_LIMIT = 1 << 24  # vertices and points beyond this are not pixel positions


def _fmt(v: Any) -> str:
    """A short one-line repr for error messages."""
    s = " ".join(repr(v).split())
    return s if len(s) <= 80 else s[:77] + "..."


def _pairs(name: str, value: Any, minimum: int) -> tuple[tuple[float, float], ...]:
    """``value`` as a tuple of ``(y, x)`` float pairs (at least ``minimum``), or ValueError naming it."""
    what = f"{name} must be a list of (y, x) pixel positions"
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what}, got {_fmt(value)}") from None
    if arr.ndim != 2 or arr.shape[1] != 2:
        if arr.size == 0:
            raise ValueError(f"{name} is empty: it needs at least {minimum} (y, x) pixel position(s)")
        raise ValueError(f"{what}, got {_fmt(value)}")
    if len(arr) < minimum:
        raise ValueError(f"{name} needs at least {minimum} (y, x) pixel positions, got {len(arr)}")
    if not np.isfinite(arr).all() or np.abs(arr).max() > _COORD_LIMIT:
        raise ValueError(f"{what} (finite, within ±{_COORD_LIMIT}), got {_fmt(value)}")
    return tuple((float(y), float(x)) for y, x in arr)


def _check_box(box: Any) -> tuple[int, int, int, int]:
    msg = "box must be (y0, x0, y1, x1): four integer pixel coordinates, end-exclusive"
    if isinstance(box, (str, bytes, dict)) or not hasattr(box, "__len__") or len(box) != 4:
        raise ValueError(f"{msg}, got {_fmt(box)}")
    out = []
    for v in box:
        if isinstance(v, bool) or not (hasattr(v, "__index__") or (isinstance(v, float) and v.is_integer())):
            raise ValueError(f"{msg}, got {_fmt(box)}")
        out.append(int(v))
    y0, x0, y1, x1 = out
    if y1 <= y0 or x1 <= x0:
        raise ValueError(f"box is empty: it needs y0 < y1 and x0 < x1, got {tuple(out)}")
    return y0, x0, y1, x1


def _polygon_area(vertices: tuple[tuple[float, float], ...]) -> float:
    v = np.asarray(vertices)
    y, x = v[:, 0], v[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class Query:
    """One query: ``kind`` and that kind's parameters (the others stay None).

    * ``"box"``: ``box=(y0, x0, y1, x1)``; ``"polygon"``: ``polygon=[(y, x), ...]`` (3+ vertices, not
      all on a line); ``"points"``: ``points=[(y, x), ...]``; each with ``falloff`` (pixels, >= 0;
      None = 10% of the shorter side).
    * ``"class"``: ``model`` (anything ``adapatch.model.resolve_model`` accepts: ``"task"``, a
      checkpoint path, a timm name, or a loaded model) and ``target`` (class index).
    * ``"text"``: ``text`` and optionally ``model`` (an image-text model; None = the default one).

    ``Query.of(box=...)`` infers the kind from the keywords, as ``query_map`` does.
    """

    kind: str
    box: tuple[int, int, int, int] | None = None
    polygon: tuple[tuple[float, float], ...] | None = None
    points: tuple[tuple[float, float], ...] | None = None
    falloff: float | None = None
    model: Any = None
    target: int | None = None
    text: str | None = None

    def __post_init__(self) -> None:
        kind = self.kind
        if kind not in QUERY_KINDS:
            raise ValueError(f"query kind must be one of {', '.join(map(repr, QUERY_KINDS))}; got {_fmt(kind)}")
        given = [k for k in REGION_KINDS if getattr(self, k) is not None]
        if self.text is not None:
            given.append("text")
        if self.target is not None:
            given.append("target")
        own = {"box": "box", "polygon": "polygon", "points": "points", "class": "target", "text": "text"}[kind]
        others = [g for g in given if g != own]
        if own not in given:
            raise ValueError(f"a {kind!r} query needs {own}=")
        if others:
            raise ValueError(f"give one kind of query: a {kind!r} query got {', '.join(o + '=' for o in others)} too")
        if kind in REGION_KINDS:
            if self.model is not None:
                raise ValueError(f"model= goes with target= (a class query) or text=, not with {kind}=")
            if self.falloff is not None:
                object.__setattr__(self, "falloff", check_float("falloff", self.falloff, 0.0))
        elif self.falloff is not None:
            raise ValueError(f"falloff applies to region queries (box, polygon, points), not to a {kind!r} query")
        if kind == "box":
            object.__setattr__(self, "box", _check_box(self.box))
        elif kind == "polygon":
            poly = _pairs("polygon", self.polygon, 3)
            if _polygon_area(poly) == 0.0:
                raise ValueError("polygon is degenerate: its vertices enclose no area (all on one line)")
            object.__setattr__(self, "polygon", poly)
        elif kind == "points":
            object.__setattr__(self, "points", _pairs("points", self.points, 1))
        elif kind == "class":
            if self.model is None:
                raise ValueError("a class query needs model= (\"task\", a checkpoint path, a timm name "
                                 "or a loaded model)")
            object.__setattr__(self, "target", check_int("target", self.target, 0))
        else:
            if not isinstance(self.text, str) or not self.text.strip():
                raise ValueError(f"text must be a non-empty string, got {_fmt(self.text)}")

    @classmethod
    def of(cls, *, box: Any = None, polygon: Any = None, points: Any = None, falloff: float | None = None,
           model: Any = None, target: int | None = None, text: str | None = None) -> Query:
        """The query the keywords describe (exactly one kind), as ``query_map`` reads them."""
        kinds = [k for k, v in (("box", box), ("polygon", polygon), ("points", points)) if v is not None]
        if text is not None:
            kinds.append("text")
        if target is not None or (model is not None and text is None):
            kinds.append("class")
        if not kinds:
            raise ValueError("query needs one of box=, polygon=, points=, target= (with model=) or text=")
        if len(kinds) > 1:
            names = {"class": "target=/model=", "text": "text="}
            raise ValueError(f"give one kind of query, got {' and '.join(names.get(k, k + '=') for k in kinds)}")
        if kinds == ["class"] and target is None:
            raise ValueError("a class query needs target= (the class index) with model=")
        return cls(kinds[0], box=box, polygon=polygon, points=points, falloff=falloff, model=model,
                   target=target, text=text)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``from_dict`` inverts it); a model must be given by name to be recorded."""
        d: dict[str, Any] = {"kind": self.kind}
        if self.kind == "box":
            assert self.box is not None  # __post_init__ requires it for a box query
            d["box"] = list(self.box)
        elif self.kind in ("polygon", "points"):
            d[self.kind] = [list(p) for p in getattr(self, self.kind)]
        elif self.kind == "class":
            d["target"] = self.target
        else:
            d["text"] = self.text
        if self.falloff is not None:
            d["falloff"] = self.falloff
        if self.model is not None:
            if not isinstance(self.model, str):
                raise ValueError("query model must be a name (a string) to be recorded, "
                                 f"got a {type(self.model).__name__}")
            d["model"] = self.model
        return d

    @classmethod
    def from_dict(cls, d: Any) -> Query:
        """The ``Query`` of a dict (``to_dict``'s, or the keywords of ``Query.of`` with an optional kind)."""
        if isinstance(d, Query):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"query must be a Query or a dict with kind and its parameters, got {type(d).__name__}")
        unknown = sorted(str(k) for k in set(d) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown query key(s) {unknown}; allowed: {', '.join(_FIELDS)}")
        kw = {k: v for k, v in d.items() if k != "kind"}
        if "kind" not in d:
            return cls.of(**kw)
        if not isinstance(d["kind"], str):
            raise ValueError(f"query kind must be one of {', '.join(map(repr, QUERY_KINDS))}; got {_fmt(d['kind'])}")
        return cls(d["kind"], **kw)


def as_query(query: Any) -> Query:
    """``query`` (a ``Query`` or its dict) as a ``Query``."""
    return Query.from_dict(query)


def default_falloff(height: int, width: int) -> float:
    """``falloff=None``: 10% of the shorter side, in pixels."""
    return DEFAULT_FALLOFF_FRACTION * min(height, width)


def _pixel(v: np.ndarray) -> np.ndarray:
    """Nearest pixel index of positions ``v`` (pixel ``i`` is centred at ``i``; halves round up)."""
    return np.floor(v + 0.5).astype(np.int64)


def region_mask(shape: tuple[int, int], query: Query) -> np.ndarray:
    """Bool ``[H, W]``: the pixels of a region query (no falloff); ValueError when it misses the image."""
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), bool)
    if query.kind == "box":
        assert query.box is not None  # Query requires it for a box query
        y0, x0, y1, x1 = query.box
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise ValueError(f"box must lie inside the {h}x{w} image (0 <= y0 < y1 <= {h}, 0 <= x0 < x1 <= {w}), "
                             f"got {query.box}")
        mask[y0:y1, x0:x1] = True
    elif query.kind == "points":
        assert query.points is not None  # Query requires them for a points query
        p = _pixel(np.asarray(query.points))
        bad = np.flatnonzero((p[:, 0] < 0) | (p[:, 0] >= h) | (p[:, 1] < 0) | (p[:, 1] >= w))
        if len(bad):
            raise ValueError(f"points must lie inside the {h}x{w} image (0 <= y < {h}, 0 <= x < {w}); "
                             f"point {int(bad[0])} is {query.points[bad[0]]}")
        mask[p[:, 0], p[:, 1]] = True
    elif query.kind == "polygon":
        p = _pixel(np.asarray(query.polygon))
        fill = np.zeros((h, w), np.uint8)
        cv2.fillPoly(fill, [np.ascontiguousarray(p[:, ::-1], np.int32)], 1)  # OpenCV wants (x, y)
        mask = fill.astype(bool)
        if not mask.any():
            raise ValueError(f"polygon covers no pixel of the {h}x{w} image")
    else:
        raise ValueError(f"query of kind {query.kind!r} is not a region")
    return mask


def falloff_map(mask: np.ndarray, falloff: float, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Float32 ``[H, W]``: 1 on ``mask``, ``1 - smoothstep(d / falloff)`` at distance ``d`` from it
    (exact Euclidean: OpenCV's precise distance transform, or in closed form when ``mask`` is ``box``)."""
    falloff = check_float("falloff", falloff, 0.0)
    if falloff == 0.0 or mask.all():
        return mask.astype(np.float32)
    if box is not None:  # distance to a box: per axis, the gap to [lo, hi - 1]
        y0, x0, y1, x1 = box
        gy = np.maximum(np.maximum(y0 - np.arange(mask.shape[0]), np.arange(mask.shape[0]) - (y1 - 1)), 0)
        gx = np.maximum(np.maximum(x0 - np.arange(mask.shape[1]), np.arange(mask.shape[1]) - (x1 - 1)), 0)
        d = np.sqrt(np.add.outer(gy.astype(np.float32) ** 2, gx.astype(np.float32) ** 2))
    else:
        d = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    t = np.minimum(d / np.float32(falloff), np.float32(1.0))
    out = 1.0 - t * t * (3.0 - 2.0 * t)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def _region_map(h: int, w: int, q: Query) -> np.ndarray:
    return falloff_map(region_mask((h, w), q), default_falloff(h, w) if q.falloff is None else q.falloff,
                       q.box if q.kind == "box" else None)


def check_query_map(m: Any, shape: tuple[int, ...], name: str = "query") -> np.ndarray:
    """The query map as float32 (not copied when it is already; never written to) after checking its
    shape and that it lies in [0, 1]."""
    try:
        arr = np.asarray(m, dtype=np.float32)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a map {tuple(shape)} in [0, 1], a Query or a dict; got {_fmt(m)}") from None
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} must be a map of the image's shape {tuple(shape)} with values in [0, 1] "
                         f"(or a Query / dict); got shape {arr.shape}")
    if arr.size and (not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} map values must be finite and in [0, 1]")
    return arr


def query_map(image: Any, query: Query | dict | None = None, *, box: Any = None, polygon: Any = None,
              points: Any = None, falloff: float | None = None, model: Any = None, target: int | None = None,
              text: str | None = None, device: Any = "auto") -> np.ndarray:
    """Float32 ``[H, W]`` in [0, 1]: where the query asks for detail (see the module docstring).

    Give exactly one kind: ``box=``, ``polygon=`` or ``points=`` (with ``falloff=``), ``model=`` with
    ``target=`` (class evidence, ``adapatch.model.query_maps.class_evidence_map``), or ``text=``
    (``text_map``, optionally with ``model=``); or a ``Query`` / its dict as ``query``. ``image`` is
    the RGB image ``[H, W, 3]`` (region kinds only read its shape). ``device`` runs the model kinds.
    Bad queries raise a one-line ``ValueError`` naming the parameter.
    """
    kw = {"box": box, "polygon": polygon, "points": points, "falloff": falloff, "model": model,
          "target": target, "text": text}
    if query is not None:
        given = [k for k, v in kw.items() if v is not None]
        if given:
            raise ValueError(f"give either query= or the query keywords, not both (got {', '.join(given)})")
        q = as_query(query)
    else:
        q = Query.of(**kw)
    shape = np.shape(image)
    if len(shape) != 3 or shape[2] != 3 or min(shape[:2]) < 1:
        raise ValueError(f"image must be an RGB array [H, W, 3], got shape {shape}")
    h, w = int(shape[0]), int(shape[1])
    if q.kind in REGION_KINDS:
        return _region_map(h, w, q)
    fn = plugins.load("query", q.kind)  # the model package's map (see the module docstring)
    if q.kind == "class":
        m = fn(image, q.model, q.target, device=device)
    else:
        m = fn(image, q.text, model=q.model, device=device)
    arr = np.asarray(m, dtype=np.float32)
    if arr.shape != (h, w) or not np.isfinite(arr).all():
        raise ValueError(f"the {q.kind} map must be finite with the image's shape {(h, w)}, got {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


# ---------------------------------------------------------------------------------------- mixing
def check_query_weight(query_weight: Any) -> float:
    """``query_weight`` as a float in [0, 1]."""
    return check_float("query_weight", query_weight, 0.0, 1.0)


def resolve_query(query: Any, image: Any, query_weight: Any = 0.0, device: Any = "auto",
                  batch: int | None = None) -> tuple[np.ndarray | None, float]:
    """``(map, weight)`` a strategy mixes in: ``map`` None when there is nothing to mix (no query,
    or weight 0: the query is not even read, so the result is the query-blind one, bit for bit).

    ``query``: a map ``[H, W]`` (or ``[B, H, W]`` with ``batch``) in [0, 1], a ``Query`` or its dict.
    ``image``: the image ``[H, W, 3]`` (a batch ``[B, H, W, 3]`` with ``batch``), or just its
    ``(H, W)`` shape where only a map or a region query can be used (``prune``).
    """
    w = check_query_weight(query_weight)
    if query is None or w == 0.0:
        return None, w
    shape_only = isinstance(image, tuple)
    shape = tuple(int(v) for v in image) if shape_only else tuple(np.shape(image))
    hw = shape[1:3] if batch is not None else shape[:2]
    if isinstance(query, (Query, dict)):
        q = as_query(query)
        if q.kind in REGION_KINDS:
            m = _region_map(hw[0], hw[1], q)
            return (m if batch is None else np.broadcast_to(m, (batch, *m.shape))), w
        if shape_only:
            raise ValueError(f"query of kind {q.kind!r} needs the image: pass query=query_map(image, query)")
        if batch is None:
            return query_map(image, q, device=device), w
        return np.stack([query_map(im, q, device=device) for im in image]), w
    arr = np.asarray(query)
    if batch is not None and arr.ndim == 3:
        return check_query_map(arr, (batch, *hw)), w
    m = check_query_map(arr, hw)
    return (m if batch is None else np.broadcast_to(m, (batch, *m.shape))), w


def describe_query(query: Any) -> Any:
    """What a layout's ``params["query"]`` records: the query's dict, or ``"map"`` for a given map."""
    if isinstance(query, (Query, dict)):
        q = as_query(query)
        try:
            return q.to_dict()
        except ValueError:  # a loaded model object: record the kind and target only
            return {k: v for k, v in (("kind", q.kind), ("target", q.target)) if v is not None}
    return "map"


def normalize_importance(values: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Per image, ``values`` (arrays ``[B, ...]`` >= 0, e.g. every split-able level of a tree) divided
    by their joint maximum (all zero stays zero): content importance in [0, 1] whose zero is kept."""
    b = values[0].shape[0]
    top = np.zeros(b)
    for v in values:
        if v.size:
            top = np.maximum(top, v.reshape(b, -1).max(axis=1))
    scale = np.where(top > 0, 1.0 / np.where(top > 0, top, 1.0), 0.0)
    return [v * scale.reshape((b,) + (1,) * (v.ndim - 1)) for v in values]


def normalize_scores(scores: np.ndarray) -> np.ndarray:
    """Token scores min-max normalised to [0, 1] (all equal: all 0). Scores have no common zero (a
    learned scorer's logits can be negative, attention shares sum to 1), so both ends are fixed."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0:
        return s.copy()
    lo, hi = float(s.min()), float(s.max())
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def mix(content: np.ndarray, query: np.ndarray, weight: float) -> np.ndarray:
    """``(1 - w) * content + w * query`` (float64)."""
    return (1.0 - weight) * np.asarray(content, np.float64) + weight * np.asarray(query, np.float64)


def node_max(qmaps: np.ndarray, canvas: tuple[int, int], sizes: Sequence[int]) -> list[np.ndarray]:
    """Max of ``qmaps`` ``[B, H, W]`` over every ``s`` px square of the canvas, ``[B, ch/s, cw/s]``
    (float64) for each of ``sizes`` (descending powers of two, ``sizes[-1]`` dividing the others).

    Only the image's pixels count (the padding is 0): a square wholly in the padding scores 0. The
    finest level is one block reduction, every coarser one a 2x2 max of the level below.
    """
    b, h, w = qmaps.shape
    m = sizes[-1]
    if (h, w) == tuple(canvas):
        pad = qmaps
    else:
        pad = np.zeros((b, canvas[0], canvas[1]), np.float32)
        pad[:, :h, :w] = qmaps
    lv = _block_max(pad, m).astype(np.float64)
    out = {m: lv}
    for s in sorted(sizes)[1:]:
        out[s] = _block_max(out[s // 2], 2) if s // 2 in out else _block_max(lv, s // m)
    return [out[s] for s in sizes]


def _block_max(x: np.ndarray, f: int) -> np.ndarray:
    """Max over ``f x f`` blocks of axes 1, 2 of ``[B, gh*f, gw*f]`` (rows, then columns: each a
    reduction over one axis, ten times faster than one over two strided axes)."""
    if f == 1:
        return x
    b, h, w = x.shape
    return x.reshape(b, h // f, f, w).max(axis=2).reshape(b, h // f, w // f, f).max(axis=3)


def box_max(qmap: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Float64 ``[N]``: the max of ``qmap`` ``[H, W]`` over each box ``(y, x, size)`` within the image.

    One OpenCV dilation (a running max, van Herk) per distinct box size; boxes may reach past the
    image (the canvas), whose pixels count as 0; no loop over boxes.
    """
    q = np.ascontiguousarray(qmap, np.float32)
    b = np.asarray(boxes, np.int64).reshape(-1, 3)
    out = np.zeros(len(b))
    if len(b) == 0:
        return out
    h, w = q.shape
    for s in np.unique(b[:, 2]):
        sel = np.flatnonzero(b[:, 2] == s)
        s = int(s)
        # pad by s at the bottom/right with 0 so every box start inside the canvas is inside the array
        padded = cv2.copyMakeBorder(q, 0, s, 0, s, cv2.BORDER_CONSTANT, value=0.0)
        if s > 1:
            kernel = np.ones((s, s), np.uint8)
            padded = cv2.dilate(padded, kernel, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT, borderValue=0.0)
        ys, xs = b[sel, 0], b[sel, 1]
        inside = (ys < h) & (xs < w)
        vals = np.zeros(len(sel))
        vals[inside] = padded[ys[inside], xs[inside]]
        out[sel] = vals
    return out


def token_query(query: Any, layout: Any, query_weight: Any = 0.0, image: Any = None,
                device: Any = "auto") -> tuple[np.ndarray | None, float]:
    """``(per-token query importance [N], weight)`` of ``layout``'s tokens (None when there is
    nothing to mix): the max of the query map over each token's box."""
    qmap, w = resolve_query(query, image if image is not None else (layout.height, layout.width), query_weight,
                            device)
    if qmap is None:
        return None, w
    return box_max(qmap, layout.boxes), w


def mix_scores(scores: np.ndarray, token_q: np.ndarray, weight: float) -> np.ndarray:
    """Token scores mixed with the query: ``(1 - w) * minmax(scores) + w * token_q`` (float64)."""
    return mix(normalize_scores(scores), token_q, weight)


__all__ = [
    "QUERY_KINDS",
    "REGION_KINDS",
    "Query",
    "box_max",
    "check_query_map",
    "check_query_weight",
    "default_falloff",
    "describe_query",
    "falloff_map",
    "mix",
    "mix_scores",
    "node_max",
    "normalize_importance",
    "normalize_scores",
    "query_map",
    "region_mask",
    "resolve_query",
    "token_query",
]
