"""Query maps: region kinds (box, polygon, points) with falloff, the Query dataclass and its JSON round
trip, dispatch of class/text queries to adapatch.model.query_maps, and one-line errors naming the
parameter."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest

import adapatch as ap
from adapatch.query import Query, box_max, node_max, resolve_query

IMG = np.zeros((60, 80, 3), np.float32)


def test_box_hard_mask_is_exactly_the_box():
    m = ap.query_map(IMG, box=(10, 20, 30, 50), falloff=0)
    assert m.dtype == np.float32 and m.shape == (60, 80)
    ref = np.zeros((60, 80), np.float32)
    ref[10:30, 20:50] = 1
    assert np.array_equal(m, ref)


@pytest.mark.parametrize("kw", [{"box": (10, 20, 30, 50)}, {"polygon": [(10, 10), (10, 50), (40, 30)]},
                                {"points": [(5, 5), (30, 70)]}])
@pytest.mark.parametrize("falloff", [0.0, 3.0, 12.5, None])
def test_region_is_one_inside_and_decays_with_distance(kw, falloff):
    m = ap.query_map(IMG, falloff=falloff, **kw)
    hard = ap.query_map(IMG, falloff=0, **kw) > 0
    assert m.min() >= 0 and m.max() <= 1 and np.isfinite(m).all()
    assert (m[hard] == 1).all()  # inside = 1
    f = 0.1 * 60 if falloff is None else falloff
    # exact Euclidean distance to the region, by brute force
    yy, xx = np.nonzero(hard)
    gy, gx = np.mgrid[:60, :80]
    d = np.sqrt((gy[..., None] - yy) ** 2 + (gx[..., None] - xx) ** 2).min(axis=-1)
    if f == 0:
        assert np.array_equal(m, hard.astype(np.float32))  # falloff 0 = hard mask
    else:
        assert (m[d >= f] == 0).all()  # exactly 0 beyond the falloff width
        near = (d > 0) & (d < f)
        assert (m[near] > 0).all() and (m[near] < 1).all()
        # non-increasing in distance, and the documented smoothstep
        order = np.argsort(d.ravel(), kind="stable")
        assert (np.diff(m.ravel()[order]) <= 1e-6).all()
        t = np.minimum(d / f, 1)
        assert np.allclose(m, 1 - t * t * (3 - 2 * t), atol=1e-3)


def test_polygon_fill_and_points_rounding():
    m = ap.query_map(IMG, polygon=[(10, 10), (10, 30), (30, 30), (30, 10)], falloff=0)
    assert m[10:31, 10:31].all() and m.sum() == 21 * 21  # vertices are pixel centres, boundary filled
    p = ap.query_map(IMG, points=[(3.4, 7.6), (59.4, 79.49)], falloff=0)
    assert p[3, 8] == 1 and p[59, 79] == 1 and p.sum() == 2
    # a polygon may reach past the image (a lasso past the edge) while it covers some pixel
    q = ap.query_map(IMG, polygon=[(-10, -10), (-10, 20), (20, -10)], falloff=0)
    assert q[0, 0] == 1 and q.sum() > 0


def test_query_dataclass_round_trip_and_equivalence():
    cases = [Query.of(box=(1, 2, 30, 40), falloff=4), Query.of(polygon=[(0, 0), (0, 9.5), (9, 0)]),
             Query.of(points=[(3, 4)], falloff=0.0), Query.of(model="task", target=7),
             Query.of(text="a red car"), Query.of(text="dog", model="ViT-B-32")]
    for q in cases:
        d = q.to_dict()
        assert Query.from_dict(json.loads(json.dumps(d))) == q
        assert d["kind"] == q.kind
    q = cases[0]
    assert np.array_equal(ap.query_map(IMG, q), ap.query_map(IMG, box=(1, 2, 30, 40), falloff=4))
    assert np.array_equal(ap.query_map(IMG, q.to_dict()), ap.query_map(IMG, q))
    # a dict without kind reads like the keywords
    assert Query.from_dict({"box": [1, 2, 30, 40], "falloff": 4}) == q


@pytest.mark.parametrize("kwargs, name", [
    ({"box": (0, 0, 61, 10)}, "box"),            # outside the image
    ({"box": (-1, 0, 10, 10)}, "box"),
    ({"box": (10, 10, 10, 20)}, "box"),          # empty
    ({"box": (1, 2, 3)}, "box"),
    ({"box": (0.5, 0, 10, 10)}, "box"),
    ({"polygon": []}, "polygon"),                # empty
    ({"polygon": [(1, 1), (5, 5)]}, "polygon"),   # two vertices
    ({"polygon": [(1, 1), (5, 5), (9, 9)]}, "polygon"),  # on one line
    ({"polygon": [(100, 100), (100, 120), (120, 100)]}, "polygon"),  # misses the image
    ({"polygon": [(1, np.nan), (5, 5), (9, 1)]}, "polygon"),
    ({"points": []}, "points"),
    ({"points": [(10, 10), (60, 3)]}, "points"),  # outside
    ({"points": [(-1, 3)]}, "points"),
    ({"box": (0, 0, 10, 10), "falloff": -1}, "falloff"),
    ({"box": (0, 0, 10, 10), "falloff": float("inf")}, "falloff"),
    ({"box": (0, 0, 10, 10), "points": [(1, 1)]}, "one kind"),
    ({"box": (0, 0, 10, 10), "text": "cat"}, "one kind"),
    ({"text": "cat", "target": 3, "model": "task"}, "one kind"),
    ({}, "query needs one of"),
    ({"model": "task"}, "target"),
    ({"target": 3}, "model"),
    ({"target": -1, "model": "task"}, "target"),
    ({"text": "  "}, "text"),
    ({"box": (0, 0, 10, 10), "model": "task"}, "model"),
    ({"text": "cat", "falloff": 3}, "falloff"),
])
def test_bad_queries_are_one_line_errors_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError) as e:
        ap.query_map(IMG, **kwargs)
    msg = str(e.value)
    assert name in msg and "\n" not in msg


@pytest.mark.parametrize("d, name", [
    ({"kind": "circle", "box": [0, 0, 1, 1]}, "kind"),
    ({"kind": "box", "box": [0, 0, 5, 5], "radius": 3}, "radius"),
    ({"kind": "box"}, "box"),
    ({"kind": "box", "box": [0, 0, 5, 5], "text": "x"}, "one kind"),
    ("box", "query"),
])
def test_bad_query_dicts(d, name):
    with pytest.raises(ValueError) as e:
        Query.from_dict(d)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_query_and_keywords_together_are_refused():
    with pytest.raises(ValueError, match="either query="):
        ap.query_map(IMG, Query.of(box=(0, 0, 5, 5)), box=(0, 0, 5, 5))


def test_loaded_model_is_not_recorded():
    with pytest.raises(ValueError, match="model must be a name"):
        Query.of(model=object(), target=1).to_dict()


@pytest.fixture
def fake_query_maps(monkeypatch):
    """A stand-in for adapatch.model.query_maps (the real one runs a ViT): records its calls."""
    mod = types.ModuleType("adapatch.model.query_maps")
    calls = []

    def class_evidence_map(image, model, target, device="auto"):
        calls.append(("class", model, target, device))
        h, w = image.shape[:2]
        return np.linspace(-0.5, 1.5, h * w, dtype=np.float32).reshape(h, w) * (target + 1) / 8

    def text_map(image, text, model=None, device="auto"):
        calls.append(("text", text, model, device))
        return np.full(image.shape[:2], 0.25, np.float32)

    mod.class_evidence_map, mod.text_map = class_evidence_map, text_map
    monkeypatch.setitem(sys.modules, "adapatch.model.query_maps", mod)
    return calls


def test_class_and_text_queries_dispatch_to_the_model_maps(fake_query_maps):
    m = ap.query_map(IMG, model="task", target=3, device="cpu")
    assert m.shape == (60, 80) and m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1  # clipped
    t = ap.query_map(IMG, Query.of(text="a red car"))
    assert np.all(t == 0.25)
    assert fake_query_maps == [("class", "task", 3, "cpu"), ("text", "a red car", None, "auto")]
    with pytest.raises(ValueError, match="needs the image"):  # shape-only callers (prune) get maps
        resolve_query(Query.of(model="task", target=1), (60, 80), 0.5)


def test_resolve_query_weight_zero_does_not_read_the_query():
    assert resolve_query("not a map", IMG, 0.0) == (None, 0.0)
    assert resolve_query(None, IMG, 0.7) == (None, 0.7)
    with pytest.raises(ValueError, match="query_weight"):
        resolve_query(None, IMG, 1.5)
    with pytest.raises(ValueError, match="query must be a map"):
        resolve_query(np.zeros((10, 10)), IMG, 0.5)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        resolve_query(np.full((60, 80), 2.0), IMG, 0.5)


def test_node_and_box_max_equal_direct_maxima(rng):
    h, w = 37, 53
    q = rng.random((h, w)).astype(np.float32)
    canvas = (64, 64)
    levels = node_max(q[None], canvas, [32, 16, 8])
    pad = np.zeros(canvas)
    pad[:h, :w] = q
    for s, lv in zip([32, 16, 8], levels):
        direct = pad.reshape(64 // s, s, 64 // s, s).max(axis=(1, 3))
        assert np.array_equal(lv[0], direct)
    boxes = np.array([[0, 0, 7], [30, 40, 13], [36, 52, 5], [40, 0, 8], [5, 9, 1], [0, 0, 64]])
    direct = [pad[y:y + s, x:x + s].max() for y, x, s in boxes]
    assert np.array_equal(box_max(q, boxes), direct)
