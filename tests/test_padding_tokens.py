"""Boxes wholly in the padding are no tokens: a quadtree never has more tokens than the
``min_size`` grid of the same image, and every token count (threshold mode, its exact curve and
solver, budget mode, quality curves, dataset scans) counts a split's real increment: the children
that hold an image pixel, less one."""

from __future__ import annotations

import numpy as np
import pytest

import adapatch as ap
from adapatch.quadtree_engine import FREE_SPLIT, prepare, split_increments

SHAPES = [(864, 1152), (77, 131), (1, 1), (65, 300), (300, 65)]
SIZES = [(16, 64), (8, 32)]


def _image(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Smooth structure plus noise, so every importance splits somewhere and ties are rare."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.5 + 0.3 * np.sin(9 * xx + 4 * yy)[..., None] * np.array([1.0, 0.6, -0.4])
    return np.clip(base + 0.08 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def _grid(shape: tuple[int, int], s: int) -> int:
    return -(-shape[0] // s) * -(-shape[1] // s)


def _no_padding_box(lay: ap.PatchLayout) -> None:
    lay.validate()
    assert not ((lay.boxes[:, 0] >= lay.height) | (lay.boxes[:, 1] >= lay.width)).any()


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return _image(SHAPES[0])


def test_increments_count_the_children_inside_the_image():
    # 40 x 72 under 32 px roots (canvas 64 x 96): a split of a 32 px square makes 16 px children
    inc = split_increments(40, 72, (64, 96), [32, 16])[0]
    # rows: 0 (children at 0, 16: both inside), 32 (children at 32 inside, 48 past 40);
    # columns: 0, 32 (both inside), 64 (child at 64 inside, 80 past 72)
    assert inc.tolist() == [[3, 3, 1], [1, 1, 0]]
    inc16 = split_increments(40, 72, (64, 96), [32, 16, 8])[1]
    assert inc16[3].tolist() == [0] * 6  # the row of 16 px squares at y = 48: wholly in the padding
    assert inc16[2, 4] == 0  # (32, 64): children at 32/40 x 64/72: only (32, 64) inside


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("importance", ap.IMPORTANCE_MEASURES)
def test_threshold_zero_never_has_more_tokens_than_the_min_size_grid(big, shape, sizes, importance):
    img = big if shape == SHAPES[0] else _image(shape, 1)
    lay = ap.quadtree(img, threshold=0.0, min_size=sizes[0], max_size=sizes[1], importance=importance)
    _no_padding_box(lay)
    assert lay.num_tokens <= _grid(shape, sizes[0])
    curve = ap.threshold_curve(img, min_size=sizes[0], max_size=sizes[1], importance=importance)
    assert curve.tokens_at(0.0) == lay.num_tokens and curve.max_tokens <= _grid(shape, sizes[0])
    full = ap.quadtree(img, budget=10**7, min_size=sizes[0], max_size=sizes[1], importance=importance)
    _no_padding_box(full)
    assert full.num_tokens <= _grid(shape, sizes[0])


@pytest.mark.parametrize("importance", ["distortion", "std"])
def test_the_reported_case_no_longer_loses_to_the_16px_grid(big, importance):
    # 1152 x 864, 16-64 px: 3,924 tokens against the grid's 3,888 when padding boxes were tokens
    lay = ap.quadtree(big, threshold=0.0, min_size=16, max_size=64, importance=importance)
    assert lay.num_tokens == 3888 == ap.uniform(864, 1152, 16).num_tokens
    assert (lay.boxes[:, 2] == 16).all()


@pytest.mark.slow
def test_multiscale_candidates_hold_no_padding_box(big):
    for budget in (300, 1500, 3888, 10**6):
        lay = ap.multiscale(big, budget)
        _no_padding_box(lay)
        assert lay.num_tokens <= min(budget, 3888)


@pytest.mark.parametrize("shape", [(77, 131), (65, 300), (300, 65), (33, 250)])
@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("importance", ["distortion", "std", "entropy", "max_saliency"])
def test_curve_is_exact_at_every_breakpoint_with_straddling_squares(shape, sizes, importance):
    img = _image(shape, 2)
    prep = prepare(img, None, sizes[0], sizes[1], importance)
    assert any((a < 3).any() for a in prep.increments())  # squares straddle the edges
    pi = ap.path_importance(img, min_size=sizes[0], max_size=sizes[1], importance=importance)
    curve = pi.curve()
    top = ap.quadtree_engine.threshold_limit(importance)
    ts = np.unique(np.concatenate([[0.0], curve.thresholds[curve.thresholds < top]]))
    ts = np.unique(np.concatenate([ts, np.nextafter(ts[1:], 0.0)]))  # every breakpoint and just below it
    for t in ts:
        lay = ap.quadtree(img, threshold=float(t), min_size=sizes[0], max_size=sizes[1], importance=importance)
        assert lay.num_tokens == curve.tokens_at(t), t
        assert pi.layout(float(t)) == lay
    _no_padding_box(lay)
    # the solver: the smallest threshold within each budget, exactly
    for budget in range(curve.base_tokens, curve.max_tokens + 2):
        t = curve.threshold_for(budget)
        n = ap.quadtree(img, threshold=t, min_size=sizes[0], max_size=sizes[1], importance=importance).num_tokens
        assert n <= budget
        below = ts[ts < t]
        assert t == 0.0 or curve.tokens_at(below[-1] if len(below) else 0.0) > budget


def test_a_free_split_is_made_at_every_lambda():
    # 70 x 70 under 64 px roots: the corner root (64, 64) holds 6 x 6 pixels, one child inside: it
    # splits for free down to the 16 px box at (64, 64), at any lambda, as the Lagrangian wants
    img = _image((70, 70), 3)
    prep = prepare(img, None, 16, 64, "distortion")
    assert prep.increments()[0][1, 1] == 0 and prep.levels[0][0, 1, 1] == FREE_SPLIT
    for lam in (0.0, 10.0, 1e6):
        lay = ap.quadtree(img, threshold=lam, min_size=16, max_size=64, importance="distortion")
        assert [64, 64, 16] in lay.boxes.tolist()
    coarse = ap.quadtree(img, threshold=1e6, min_size=16, max_size=64, importance="distortion")
    assert coarse.num_tokens == 4 == ap.threshold_curve(img, min_size=16, max_size=64,
                                                         importance="distortion").tokens_at(1e6)
    assert FREE_SPLIT not in ap.threshold_curve(img, min_size=16, max_size=64, importance="distortion").thresholds


@pytest.mark.parametrize("importance", ["distortion", "std"])
def test_budgets_are_respected_and_used_with_straddling_squares(importance):
    img = _image((77, 131), 4)
    curve = ap.threshold_curve(img, min_size=8, max_size=32, importance=importance)
    reach = curve.tokens_at(0.0) if importance == "distortion" else curve.max_tokens
    for budget in range(curve.base_tokens, reach + 5):
        lay = ap.quadtree(img, budget=budget, min_size=8, max_size=32, importance=importance)
        _no_padding_box(lay)
        assert lay.num_tokens <= budget
        assert lay.num_tokens == reach or budget - lay.num_tokens < 3  # the next split would not fit


def test_query_mixing_counts_real_increments():
    img = _image((77, 131), 5)
    q = np.zeros((77, 131), np.float32)
    q[40:, 90:] = 1.0  # the corner that straddles both edges
    for importance in ("distortion", "std"):
        kw = {"min_size": 8, "max_size": 32, "importance": importance, "query": q, "query_weight": 0.6}
        curve = ap.threshold_curve(img, **kw)
        for t in np.concatenate([[0.0], curve.thresholds[::7]]):
            lay = ap.quadtree(img, threshold=float(t), **kw)
            _no_padding_box(lay)
            assert lay.num_tokens == curve.tokens_at(t)
        assert curve.tokens_at(0.0) <= _grid((77, 131), 8)
        reach = curve.tokens_at(0.0) if importance == "distortion" else curve.max_tokens
        for budget in (curve.base_tokens + 10, curve.base_tokens + 100):
            lay = ap.quadtree(img, budget=budget, **kw)
            assert lay.num_tokens <= budget and (lay.num_tokens == reach or budget - lay.num_tokens < 3)


def test_quality_curve_tokens_are_the_layouts_tokens():
    from adapatch.quality import quadtree_quality
    img = _image((65, 300), 6)
    q = quadtree_quality(img, 16, 64, ssim_points=4)
    assert (np.diff(q.tokens) > 0).all() and q.tokens[-1] == _grid((65, 300), 16)
    for n in q.tokens[::5]:
        assert ap.quadtree(img, budget=int(n), min_size=16, max_size=64).num_tokens == n
    assert np.isin(q.ssim_tokens, q.tokens).all()
