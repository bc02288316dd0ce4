"""Query mixing in every strategy and pruner: weight 0 is the query-blind result bit for bit, weight 1
follows the query alone, a box query pulls the finest tokens into the box at equal tokens, and
budgets, exact tiling, the exact tokens-vs-threshold curve and the threshold solver still hold."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapatch as ap
from adapatch.query import Query, box_max
from tests.model_helpers import assert_budget_used, tiny_task_model
from tests.strategies import images

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
size_pairs = st.sampled_from([(1, 1), (2, 8), (4, 16), (8, 32), (8, 8), (16, 64)])
BOX = (300, 300, 430, 430)  # astronaut: the lower-right quarter, away from the face


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    from skimage import data
    return data.chelsea().astype(np.float32) / 255


def _inside(lay: ap.PatchLayout, box=BOX) -> np.ndarray:
    """Tokens whose centre lies in ``box``."""
    b = lay.boxes.astype(np.float64)
    cy, cx = b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 2] / 2
    y0, x0, y1, x1 = box
    return (cy >= y0) & (cy < y1) & (cx >= x0) & (cx < x1)


def _random_map(img: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    kind = seed % 3
    if kind == 0:
        return rng.random((h, w)).astype(np.float32)
    if kind == 1:  # a hard box
        y0, x0 = rng.integers(0, h), rng.integers(0, w)
        return ap.query_map(img, box=(y0, x0, rng.integers(y0 + 1, h + 1), rng.integers(x0 + 1, w + 1)), falloff=0)
    return ap.query_map(img, points=[(rng.integers(0, h), rng.integers(0, w))], falloff=float(rng.integers(0, 20)))


# ----------------------------------------------------------------------------- weight 0: bit for bit
LAYOUTS = [
    ("quadtree", {"importance": "std", "budget": 700}),
    ("quadtree", {"importance": "distortion", "budget": 700, "min_size": 8, "max_size": 64}),
    ("quadtree", {"importance": "std", "threshold": 0.12}),
    ("quadtree", {"importance": "distortion", "threshold": 0.05, "min_size": 8, "max_size": 64}),
    ("quadtree", {"importance": "entropy", "budget": 700}),
    ("quadtree", {"importance": "mean_saliency", "budget": 700}),
    ("greedy", {"budget": 900}),
    ("greedy", {"budget": 700, "uncovered": "drop"}),
    ("greedy", {"budget": 900, "allocation": "distortion", "patch_sizes": (16, 32, 64)}),
    ("greedy", {"budget": 500, "allocation": "distortion", "uncovered": "drop"}),
]


@pytest.mark.parametrize("strategy, params", LAYOUTS, ids=lambda x: str(x))
def test_weight_zero_is_the_query_blind_layout_bit_for_bit(astronaut, strategy, params):
    q = ap.query_map(astronaut, box=BOX)
    blind = ap.make_layout(astronaut, strategy, **params)
    for query in (q, Query.of(box=BOX), {"box": list(BOX)}, "not even read"):
        lay = ap.make_layout(astronaut, strategy, query=query, query_weight=0.0, **params)
        assert np.array_equal(lay.boxes, blind.boxes) and np.array_equal(lay.dropped, blind.dropped)
        assert lay == blind  # params too
    # and a weight above 0 changes it (the query is read)
    assert not np.array_equal(ap.make_layout(astronaut, strategy, query=q, query_weight=0.8, **params).boxes,
                              blind.boxes)


def test_weight_zero_path_importance_and_pruning_bit_for_bit(astronaut):
    q = ap.query_map(astronaut, box=BOX)
    for imp in ("std", "distortion"):
        a = ap.path_importance(astronaut, importance=imp)
        b = ap.path_importance(astronaut, importance=imp, query=q, query_weight=0)
        assert np.array_equal(a.values, b.values)
    u8 = (astronaut * 255).round().astype(np.uint8)  # the compiled 8-bit path is kept at weight 0
    assert np.array_equal(ap.path_importance(u8, importance="distortion").values,
                          ap.path_importance(u8, importance="distortion", query=q, query_weight=0).values)
    lay = ap.uniform(*astronaut.shape[:2], 16)
    scores = ap.token_scores(ap.saliency(astronaut), lay)
    assert ap.prune(lay, scores, 0.3) == ap.prune(lay, scores, 0.3, query=q, query_weight=0)


# ----------------------------------------------------------------------------- the box pulls tokens
@pytest.mark.parametrize("strategy, params", [
    ("quadtree", {"importance": "std"}), ("quadtree", {"importance": "distortion"}),
    ("quadtree", {"importance": "distortion", "min_size": 8, "max_size": 64}),
    ("greedy", {}), ("greedy", {"allocation": "distortion"})], ids=str)
@pytest.mark.parametrize("name", ["astronaut", "chelsea"])
def test_box_query_concentrates_the_finest_tokens_in_the_box(request, strategy, params, name):
    img = request.getfixturevalue(name)
    box = BOX if name == "astronaut" else (30, 350, 200, 450)  # chelsea: background right of the cat
    budget = ap.uniform(*img.shape[:2], 16).num_tokens // 2
    q = ap.query_map(img, box=box, falloff=16)
    blind = ap.layout_for_budget(img, strategy, budget, **params)
    before = int(_inside(blind, box).sum())
    for w in (0.5, 1.0):
        lay = ap.layout_for_budget(img, strategy, budget, query=q, query_weight=w, **params)
        lay.validate()
        assert lay.num_tokens <= budget
        inside = _inside(lay, box)
        assert inside.sum() > before  # more tokens in the box than the query-blind layout has
        # the box is tiled by the finest size the strategy uses there
        assert lay.boxes[inside, 2].mean() < blind.boxes[_inside(blind, box), 2].mean()
    # weight 1: no split away from the query: a token finer than the coarsest size lies in a
    # coarsest-size cell that the query touches
    big = lay.boxes[:, 2].max()
    fine = lay.boxes[lay.boxes[:, 2] < big]
    cells = np.stack([fine[:, 0] // big * big, fine[:, 1] // big * big, np.full(len(fine), big)], axis=1)
    assert len(fine) and (box_max(q, cells) > 0).all()
    assert (box_max(q, blind.boxes[blind.boxes[:, 2] < blind.boxes[:, 2].max()]) == 0).any()  # not so blind


@pytest.mark.parametrize("strategy, params", [
    ("quadtree", {"importance": "std"}), ("quadtree", {"importance": "distortion"}),
    ("quadtree", {"importance": "entropy", "min_size": 4}), ("greedy", {}),
    ("greedy", {"allocation": "distortion", "uncovered": "drop"})], ids=str)
def test_weight_one_follows_the_query_alone(astronaut, chelsea, strategy, params):
    """At weight 1 the content has no say: two different photos give the same layout."""
    h, w = 256, 384
    a, b = astronaut[:h, :w], chelsea[:h, :w]
    q = ap.query_map(a, polygon=[(20, 30), (60, 300), (200, 100)], falloff=12)
    la = ap.layout_for_budget(a, strategy, 300, query=q, query_weight=1.0, **params)
    lb = ap.layout_for_budget(b, strategy, 300, query=Query.of(polygon=[(20, 30), (60, 300), (200, 100)],
                                                                falloff=12), query_weight=1.0, **params)
    assert np.array_equal(la.boxes, lb.boxes) and np.array_equal(la.dropped, lb.dropped)


def test_map_query_and_dict_give_the_same_layout(astronaut):
    kw = {"budget": 600, "importance": "std"}
    a = ap.quadtree(astronaut, query=ap.query_map(astronaut, box=BOX, falloff=5), query_weight=0.4, **kw)
    b = ap.quadtree(astronaut, query=Query.of(box=BOX, falloff=5), query_weight=0.4, **kw)
    c = ap.quadtree(astronaut, query={"kind": "box", "box": list(BOX), "falloff": 5}, query_weight=0.4, **kw)
    assert np.array_equal(a.boxes, b.boxes) and np.array_equal(b.boxes, c.boxes)
    assert a.params["query"] == "map" and b.params["query"] == Query.of(box=BOX, falloff=5).to_dict()
    assert b.params["query_weight"] == 0.4


def test_batch_with_query_equals_one_by_one(rng):
    imgs = rng.random((3, 40, 56, 3)).astype(np.float32)
    maps = rng.random((3, 40, 56)).astype(np.float32)
    for imp in ("std", "distortion"):
        for query in (maps, maps[1], Query.of(points=[(5, 7)], falloff=9)):
            lays = ap.quadtree_batch(imgs, budget=60, min_size=4, max_size=16, importance=imp, token_size=4,
                                     query=query, query_weight=0.6)
            for i, lay in enumerate(lays):
                one = query[i] if isinstance(query, np.ndarray) and query.ndim == 3 else query
                ref = ap.quadtree(imgs[i], budget=60, min_size=4, max_size=16, importance=imp, token_size=4,
                                  query=one, query_weight=0.6)
                assert np.array_equal(lay.boxes, ref.boxes)


# ----------------------------------------------------------------------------- budgets, curve, solver
@SETTINGS
@given(img=images(), sizes=size_pairs, extra=st.integers(0, 300), imp=st.sampled_from(ap.IMPORTANCE_MEASURES),
       w=st.floats(0.05, 1.0), seed=st.integers(0, 1000), with_threshold=st.booleans())
def test_budget_respected_and_used_with_a_query(img, sizes, extra, imp, w, seed, with_threshold):
    q = _random_map(img, seed)
    n0 = ap.uniform(*img.shape[:2], sizes[1]).num_tokens
    budget = n0 + extra
    thr = 0.05 if with_threshold else None
    kw = {"min_size": sizes[0], "max_size": sizes[1], "importance": imp, "query": q, "query_weight": w}
    lay = ap.quadtree(img, threshold=thr, budget=budget, **kw)
    lay.validate()
    assert lay.num_tokens <= budget
    curve = ap.threshold_curve(img, **kw)
    assert_budget_used(lay, curve, budget, thr, imp)  # a split of mixed importance 0 is never made


@SETTINGS
@given(img=images(min_side=8), sizes=size_pairs, imp=st.sampled_from(ap.IMPORTANCE_MEASURES),
       w=st.floats(0.05, 1.0), seed=st.integers(0, 1000))
def test_curve_is_exact_and_solver_smallest_with_a_query(img, sizes, imp, w, seed):
    q = _random_map(img, seed)
    kw = {"min_size": sizes[0], "max_size": sizes[1], "importance": imp, "query": q, "query_weight": w}
    curve = ap.threshold_curve(img, **kw)
    ts = np.linspace(0, 1, 11)
    tokens = [ap.quadtree(img, threshold=t, **kw).num_tokens for t in ts]
    assert list(curve.tokens_at(ts)) == tokens
    assert all(a >= b for a, b in itertools.pairwise(tokens))
    for budget in (curve.base_tokens, curve.base_tokens + 7, (curve.base_tokens + curve.max_tokens) // 2):
        t = ap.threshold_for_budget(img, budget, **kw)
        assert t == curve.threshold_for(budget) and 0 <= t <= 1
        lay = ap.quadtree(img, threshold=t, **kw)
        lay.validate()
        assert lay.num_tokens <= budget
        if t > 0:
            lower = curve.tokens_at(np.nextafter(t, 0))
            assert lower > budget or lower == curve.tokens_at(t)
        # the layout the curve's values give is the quadtree's at that threshold
        assert np.array_equal(ap.path_importance(img, **kw).layout(t).boxes, lay.boxes)


@pytest.mark.parametrize("imp", ["std", "entropy"])
@pytest.mark.parametrize("w", [0.0, 0.3, 1.0])
def test_solver_threshold_gives_exactly_the_budget_layout(astronaut, imp, w):
    """Best-first by path importance: at a budget the curve reaches exactly, budget mode and
    threshold mode at the solver's threshold make the same layout, with a query too."""
    q = ap.query_map(astronaut, polygon=[(250, 250), (260, 500), (480, 380)], falloff=30)
    kw = {"min_size": 8, "max_size": 64, "importance": imp, "query": q, "query_weight": w}
    curve = ap.threshold_curve(astronaut, **kw)
    for n in (300, 900, 2000):
        t = ap.threshold_for_budget(astronaut, n, **kw)
        exact = curve.tokens_at(t)
        a = ap.quadtree(astronaut, threshold=t, **kw)
        b = ap.quadtree(astronaut, budget=exact, **kw)
        assert a.num_tokens == exact <= n
        assert np.array_equal(a.boxes, b.boxes)


# ----------------------------------------------------------------------------- strategies, pruning
def test_uniform_accepts_and_ignores_a_query(astronaut):
    q = ap.query_map(astronaut, box=BOX)
    assert ap.layout_for_budget(astronaut, "uniform", 500, query=q, query_weight=1.0) == \
        ap.layout_for_budget(astronaut, "uniform", 500)
    assert ap.make_layout(astronaut, "uniform", patch_size=32, query=q, query_weight=0.5) == \
        ap.make_layout(astronaut, "uniform", patch_size=32)
    with pytest.raises(ValueError, match="query_weight"):
        ap.make_layout(astronaut, "uniform", patch_size=32, query=q, query_weight=1.5)


@pytest.mark.parametrize("call", [
    lambda img, q, w: ap.quadtree(img, budget=400, query=q, query_weight=w),
    lambda img, q, w: ap.greedy(img, budget=900, query=q, query_weight=w),
    lambda img, q, w: ap.path_importance(img, query=q, query_weight=w),
    lambda img, q, w: ap.prune(ap.uniform(*img.shape[:2], 32), np.zeros(256), 0.5, query=q, query_weight=w),
])
@pytest.mark.parametrize("q, w, name", [
    (np.zeros((10, 10)), 0.5, "query must be a map"),
    (np.full((512, 512), 1.5), 0.5, "query map values"),
    ("a box", 0.5, "query must be a map"),
    (None, -0.1, "query_weight"),
    (None, 2, "query_weight"),
    ({"box": [0, 0, 600, 10]}, 0.5, "box must lie inside"),
    ({"kind": "box", "box": [0, 0, 5, 5], "size": 3}, 0.5, "unknown query key"),
    (Query.of(box=(0, 0, 5, 5), falloff=1), float("nan"), "query_weight"),
])
def test_bad_queries_in_strategies_are_one_line_errors(astronaut, call, q, w, name):
    with pytest.raises(ValueError) as e:
        call(astronaut, q, w)
    assert name in str(e.value) and "\n" not in str(e.value)


def test_prune_with_a_query(astronaut):
    lay = ap.uniform(*astronaut.shape[:2], 16)
    scores = ap.token_scores(ap.saliency(astronaut), lay)
    q = ap.query_map(astronaut, box=(0, 0, 128, 128), falloff=0)  # 64 tokens of 16 px
    keep = 64 / lay.num_tokens
    full = ap.prune(lay, scores, keep, query=q, query_weight=1.0)
    assert full.num_tokens == 64 and (full.boxes[:, :2] < 128).all()  # exactly the box's tokens
    assert full.params["prune_query"] == "map" and full.params["prune_query_weight"] == 1.0
    half = ap.prune(lay, scores, keep, query=Query.of(box=(0, 0, 128, 128), falloff=0), query_weight=0.5)
    blind = ap.prune(lay, scores, keep)
    in_box = lambda x: int(((x.boxes[:, 0] < 128) & (x.boxes[:, 1] < 128)).sum())
    assert in_box(blind) < in_box(half) <= in_box(full)
    # the mix is (1 - w) * minmax(scores) + w * Q: check the ranking directly
    s = (scores - scores.min()) / (scores.max() - scores.min())
    qt = ((lay.boxes[:, 0] < 128) & (lay.boxes[:, 1] < 128)).astype(float)
    order = np.lexsort((np.arange(len(s)), -(0.5 * s + 0.5 * qt)))
    assert set(map(tuple, half.boxes.tolist())) == set(map(tuple, lay.boxes[np.sort(order[:64])].tolist()))
    with pytest.raises(ValueError, match="needs the image"):
        ap.prune(lay, scores, 0.5, query=Query.of(model="task", target=1), query_weight=0.5)


# ----------------------------------------------------------------------------- model pruners
@pytest.fixture(scope="module")
def task():
    return tiny_task_model()


@pytest.mark.parametrize("method", ["learned", "attention"])
def test_model_pruners_mix_the_query(task, method):
    from adapatch.model import prune_tokens_attention, prune_tokens_learned
    fn = prune_tokens_learned if method == "learned" else prune_tokens_attention
    img = np.random.default_rng(0).random((32, 32, 3), dtype=np.float32)
    lay = ap.uniform(32, 32, 4)  # 64 tokens
    q = ap.query_map(img, box=(0, 0, 8, 32), falloff=0)  # the top two rows of tokens: 16
    blind = fn(img, lay, task, keep_ratio=0.25, device="cpu")
    zero = fn(img, lay, task, keep_ratio=0.25, device="cpu", query=q, query_weight=0.0)
    assert np.array_equal(blind.kept, zero.kept) and np.array_equal(blind.scores, zero.scores)
    assert blind.prediction == zero.prediction and blind.layout == zero.layout
    one = fn(img, lay, task, keep_ratio=0.25, device="cpu", query=Query.of(box=(0, 0, 8, 32), falloff=0),
             query_weight=1.0)
    assert np.array_equal(one.kept, np.arange(16))  # exactly the box's tokens
    assert one.layout.params["prune_query_weight"] == 1.0
    half = fn(img, lay, task, keep_ratio=0.25, device="cpu", query=q, query_weight=0.5)
    s = (blind.scores - blind.scores.min()) / (blind.scores.max() - blind.scores.min())
    qt = (lay.boxes[:, 0] < 8).astype(float)
    np.testing.assert_allclose(half.scores, 0.5 * s + 0.5 * qt, atol=1e-6)
    order = np.lexsort((np.arange(64), -half.scores))
    assert set(half.kept.tolist()) == set(order[:16].tolist())
    with pytest.raises(ValueError, match="query_weight"):
        fn(img, lay, task, keep_ratio=0.25, device="cpu", query=q, query_weight=3)
