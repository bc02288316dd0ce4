"""``distortion`` thresholds are lambda: the layout of least ``error + lambda * tokens``, exactly.

The collapse points of ``quadtree_engine.lagrangian_levels`` are checked against a brute-force search
over every pruning of small trees (83,522 prunings of a depth-3 tree per root), and the quadtree,
its exact curve and solver against the same optimum on real images.
"""

from __future__ import annotations

import numpy as np
import pytest

import adapatch as ap
from adapatch.quadtree_engine import LAMBDA_UNIT, lagrangian_levels, path_minima, prepare


def _prunings(gains: list[np.ndarray], level: int, y: int, x: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pruning of the subtree at ``(level, y, x)``: (error removed, tokens) per pruning."""
    if level == len(gains):  # a leaf: cannot split
        return np.zeros(1), np.ones(1, np.int64)
    kids = [_prunings(gains, level + 1, 2 * y + dy, 2 * x + dx) for dy in (0, 1) for dx in (0, 1)]
    g, t = kids[0]
    for kg, kt in kids[1:]:
        g = (g[:, None] + kg[None, :]).ravel()
        t = (t[:, None] + kt[None, :]).ravel()
    return np.concatenate([[0.0], g + gains[level][0, y, x]]), np.concatenate([[1], t])


def _rule(gains: list[np.ndarray], lam_levels: list[np.ndarray], lam: float) -> tuple[float, int]:
    """(error removed, tokens) of the path rule at ``lam``: squares whose path minimum exceeds it split."""
    p = path_minima(lam_levels + [np.zeros((1, 1, 1))])
    removed = sum(float(g[pm > lam].sum()) for g, pm in zip(gains, p))
    splits = sum(int((pm > lam).sum()) for pm in p)
    return removed, gains[0][0].size + 3 * splits


def _random_gains(rng: np.random.Generator, roots: tuple[int, int], depth: int, kind: str) -> list[np.ndarray]:
    out = []
    for d in range(depth):
        shape = (1, roots[0] << d, roots[1] << d)
        if kind == "integers":  # ties everywhere
            g = rng.integers(0, 6, shape).astype(np.float64)
        elif kind == "sparse":  # zero-gain parents over busy children
            g = rng.exponential(1.0, shape) * (rng.random(shape) < 0.4)
        else:  # children gaining more than parents: many collapse points come from deep subtrees
            g = rng.exponential(1.0, shape) * (4.0 ** d)
        out.append(g)
    return out


@pytest.mark.parametrize("kind", ["integers", "sparse", "growing"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapse_points_give_every_lambda_the_optimal_pruning(kind, seed):
    rng = np.random.default_rng(seed)
    depth = 3
    gains = _random_gains(rng, (1, 2), depth, kind)
    lam_levels = [lv / LAMBDA_UNIT for lv in lagrangian_levels(gains)]  # in gain units
    # all prunings of the tree: the roots are independent, so the optimum is the sum of theirs
    per_root = [_prunings(gains, 0, 0, x) for x in range(2)]
    breaks = np.unique(np.concatenate([lv.ravel() for lv in lam_levels]))
    between = (breaks[:-1] + breaks[1:]) / 2
    lams = np.concatenate([[0.0, breaks[-1] * 1.5 + 1], between, breaks])
    for lam in lams:
        best = sum(float(np.min(-g + lam * t)) for g, t in per_root)
        removed, tokens = _rule(gains, lam_levels, lam)
        assert -removed + lam * tokens == pytest.approx(best, abs=1e-9 * (1 + abs(best))), lam
        if lam in between or lam == lams[1]:  # not a breakpoint: the optimum is unique in tokens
            fewest = sum(int(t[np.isclose(-g + lam * t, np.min(-g + lam * t), rtol=0, atol=1e-9)].min())
                         for g, t in per_root)
            assert tokens == fewest, lam


def test_a_parent_that_gains_nothing_splits_for_its_children():
    # the pixel checkerboard's case: a 64 px square gains 0, its 32 px children gain E/4 each
    gains = [np.zeros((1, 1, 1)), np.full((1, 2, 2), 1.0)]
    lam = lagrangian_levels(gains)
    assert lam[0][0, 0, 0] == pytest.approx(4.0 / 15 * LAMBDA_UNIT)  # +15 tokens remove 4
    assert np.allclose(lam[1], 1.0 / 3 * LAMBDA_UNIT)


@pytest.fixture(scope="module")
def photos():
    from skimage import data
    out = {"coffee": data.coffee()[::2, ::2], "text": np.repeat(data.text()[:, :, None], 3, axis=2),
           "brick": np.repeat(data.brick()[:300, :250, None], 3, axis=2)}
    return {k: np.ascontiguousarray(v, np.float32) / 255.0 for k, v in out.items()}


@pytest.mark.parametrize("name", ["coffee", "text", "brick"])
def test_quadtree_at_lambda_is_the_lagrangian_optimum(photos, name):
    img = photos[name]
    prep = prepare(img, None, 16, 128, "distortion")
    gains = prep.gains
    # the optimum by dynamic programming over the real tree: the best (error removed - lambda * added
    # tokens) of each subtree, bottom-up
    curve = ap.threshold_curve(img, min_size=16, max_size=128, importance="distortion")
    for lam in (0.0, 3.0, 30.0, 300.0, 3000.0):
        g = lam / LAMBDA_UNIT
        value = np.maximum(gains[-1] - 3 * g, 0.0)
        for lv in range(len(gains) - 2, -1, -1):
            kids = value.reshape(1, value.shape[1] // 2, 2, value.shape[2] // 2, 2).sum(axis=(2, 4))
            value = np.maximum(gains[lv] - 3 * g + kids, 0.0)
        lay = ap.quadtree(img, threshold=lam, min_size=16, max_size=128, importance="distortion")
        assert lay.num_tokens == curve.tokens_at(lam)
        removed, tokens = _rule(gains, prep.levels[:-1], lam)
        assert tokens == lay.num_tokens
        assert removed - g * (tokens - curve.base_tokens) == pytest.approx(float(value.sum()), rel=1e-9, abs=1e-9)
    for budget in (curve.base_tokens, curve.base_tokens + 100, (curve.base_tokens + curve.max_tokens) // 2):
        t = curve.threshold_for(budget)
        assert ap.quadtree(img, threshold=t, min_size=16, max_size=128, importance="distortion").num_tokens <= budget


def test_lambda_is_unbounded_but_not_negative_and_other_importances_stay_in_unit_range(photos):
    img = photos["coffee"]
    flat = ap.quadtree(img, threshold=1e9, min_size=16, max_size=64, importance="distortion")
    assert flat.num_tokens == len(ap.uniform(*img.shape[:2], 64).boxes)
    with pytest.raises(ValueError, match="threshold"):
        ap.quadtree(img, threshold=-1.0, importance="distortion")
    with pytest.raises(ValueError, match="threshold"):
        ap.quadtree(img, threshold=2.0, importance="std")
    with pytest.raises(ValueError, match="threshold"):  # with a query, distortion mixes into [0, 1] too
        ap.quadtree(img, threshold=2.0, importance="distortion", query=np.ones(img.shape[:2], np.float32),
                    query_weight=0.5)
