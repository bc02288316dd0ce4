"""``distortion`` thresholds are lambda: the layout of least ``error + lambda * tokens``, exactly.

The collapse points of ``quadtree_engine.lagrangian_levels`` are checked against a brute-force search
over every pruning of small trees (83,522 prunings of a depth-3 tree per root), with splits adding 3
tokens, random increments in {0..3} (a split whose children lie partly in the padding adds fewer),
and the increments of real geometry straddling the image's edge; and the quadtree, its exact curve
and solver against the same optimum on real images whose sides are not multiples of ``max_size``.
"""

from __future__ import annotations

import numpy as np
import pytest

import adapatch as ap
from adapatch.quadtree_engine import (FREE_SPLIT, LAMBDA_UNIT, lagrangian_levels, path_minima, prepare,
                                      split_increments)


def _prunings(gains: list[np.ndarray], incs: list[np.ndarray], level: int, y: int,
              x: int) -> tuple[np.ndarray, np.ndarray]:
    """Every pruning of the subtree at ``(level, y, x)``: (error removed, tokens added) per pruning."""
    if level == len(gains):  # a leaf: cannot split
        return np.zeros(1), np.zeros(1, np.int64)
    kids = [_prunings(gains, incs, level + 1, 2 * y + dy, 2 * x + dx) for dy in (0, 1) for dx in (0, 1)]
    g, t = kids[0]
    for kg, kt in kids[1:]:
        g = (g[:, None] + kg[None, :]).ravel()
        t = (t[:, None] + kt[None, :]).ravel()
    return (np.concatenate([[0.0], g + gains[level][0, y, x]]),
            np.concatenate([[0], t + int(incs[level][y, x])]))


def _threes(gains: list[np.ndarray]) -> list[np.ndarray]:
    return [np.full(g.shape[1:], 3, np.int64) for g in gains]


def _rule(gains: list[np.ndarray], lam_levels: list[np.ndarray], lam: float,
          incs: list[np.ndarray] | None = None) -> tuple[float, int]:
    """(error removed, tokens) of the path rule at ``lam``: squares whose path minimum exceeds it split,
    each adding its increment (3 when None)."""
    incs = _threes(gains) if incs is None else incs
    p = path_minima(lam_levels + [np.zeros((1, 1, 1))])
    removed = sum(float(g[pm > lam].sum()) for g, pm in zip(gains, p))
    added = sum(int(a[pm[0] > lam].sum()) for a, pm in zip(incs, p))
    return removed, gains[0][0].size + added


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


def _random_increments(rng: np.random.Generator, gains: list[np.ndarray], kind: str) -> list[np.ndarray] | None:
    """None (3 everywhere), random increments in {0..3} on about a third of the squares, or those
    of real geometry: a 40 x 72 image under 32 px roots (depth 3: 32, 16, 8 px squares splitting
    into 16, 8, 4 px children), so squares straddle the bottom and right edges (increments 0, 1, 3)
    and some lie wholly in the padding (0)."""
    if kind == "threes":
        return None
    if kind == "random":
        out = []
        for g in gains:
            a = np.full(g.shape[1:], 3, np.int64)
            few = rng.random(a.shape) < 0.35
            a[few] = rng.integers(0, 3, int(few.sum()))
            out.append(a)
        return out
    sizes = [32 >> d for d in range(len(gains) + 1)]
    return split_increments(40, 72, (64, 96), sizes)


def _check_optimal_at_every_lambda(gains: list[np.ndarray], incs: list[np.ndarray] | None) -> None:
    lam_levels = [lv / LAMBDA_UNIT for lv in lagrangian_levels(gains, incs)]  # in gain units
    incs = _threes(gains) if incs is None else incs
    roots = gains[0].shape[1:]
    # all prunings of the tree: the roots are independent, so the optimum is the sum of theirs
    per_root = [_prunings(gains, incs, 0, y, x) for y in range(roots[0]) for x in range(roots[1])]
    free = np.concatenate([lv.ravel() for lv in lam_levels]) == FREE_SPLIT / LAMBDA_UNIT
    breaks = np.unique(np.concatenate([lv.ravel() for lv in lam_levels])[~free])
    between = (breaks[:-1] + breaks[1:]) / 2
    lams = np.concatenate([[0.0, breaks[-1] * 1.5 + 1], between, breaks])
    for lam in lams:
        best = sum(float(np.min(-g + lam * t)) for g, t in per_root)
        removed, tokens = _rule(gains, lam_levels, lam, incs)
        tokens -= gains[0][0].size
        assert -removed + lam * tokens == pytest.approx(best, abs=1e-9 * (1 + abs(best))), lam
        if lam in between or lam == lams[1]:  # not a breakpoint: the optimum is unique in tokens
            fewest = sum(int(t[np.isclose(-g + lam * t, np.min(-g + lam * t), rtol=0, atol=1e-9)].min())
                         for g, t in per_root)
            assert tokens == fewest, lam


@pytest.mark.parametrize("increments", ["threes", "random", "geometry"])
@pytest.mark.parametrize("kind", ["integers", "sparse", "growing"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_collapse_points_give_every_lambda_the_optimal_pruning(kind, seed, increments):
    rng = np.random.default_rng(seed)
    depth = 3
    roots = (2, 3) if increments == "geometry" else (1, 2)
    gains = _random_gains(rng, roots, depth, kind)
    incs = _random_increments(rng, gains, increments)
    if increments == "geometry":  # squares wholly in the padding gain nothing (prepared_from_gains)
        inside = [(np.arange(g.shape[1]) * (32 >> d) < 40)[:, None] & (np.arange(g.shape[2]) * (32 >> d) < 72)
                  for d, g in enumerate(gains)]
        gains = [g * m for g, m in zip(gains, inside)]
    _check_optimal_at_every_lambda(gains, incs)


def test_a_split_that_adds_no_token_always_pays_and_its_parent_counts_it():
    # a corner square (one child inside the image: +0 tokens) under a root straddling one edge (+1)
    gains = [np.array([[[2.0]]]), np.array([[[5.0, 0.0], [0.0, 0.0]]])]
    incs = [np.array([[1]]), np.array([[0, 0], [0, 0]])]
    lam = lagrangian_levels(gains, incs)
    assert lam[1][0, 0, 0] == FREE_SPLIT and lam[1][0, 0, 1] == 0.0  # free and useful; free and useless
    assert lam[0][0, 0, 0] == pytest.approx(7.0 * LAMBDA_UNIT)  # +1 token removes 2 + 5
    _check_optimal_at_every_lambda(gains, incs)
    # a root adding no token whose only gain is a child's that costs tokens: the child's collapse point
    gains = [np.zeros((1, 1, 1)), np.array([[[6.0, 0.0], [0.0, 0.0]]])]
    incs = [np.array([[0]]), np.array([[3, 0], [0, 0]])]
    lam = lagrangian_levels(gains, incs)
    assert lam[0][0, 0, 0] == pytest.approx(2.0 * LAMBDA_UNIT) and lam[1][0, 0, 0] == pytest.approx(2.0 * LAMBDA_UNIT)
    _check_optimal_at_every_lambda(gains, incs)


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
    incs = prep.increments()  # the sides are not multiples of 128: squares straddle the edges
    assert any((a < 3).any() for a in incs)
    curve = ap.threshold_curve(img, min_size=16, max_size=128, importance="distortion")
    for lam in (0.0, 3.0, 30.0, 300.0, 3000.0):
        g = lam / LAMBDA_UNIT
        value = np.maximum(gains[-1] - incs[-1] * g, 0.0)
        for lv in range(len(gains) - 2, -1, -1):
            kids = value.reshape(1, value.shape[1] // 2, 2, value.shape[2] // 2, 2).sum(axis=(2, 4))
            value = np.maximum(gains[lv] - incs[lv] * g + kids, 0.0)
        lay = ap.quadtree(img, threshold=lam, min_size=16, max_size=128, importance="distortion")
        lay.validate()
        assert lay.num_tokens == curve.tokens_at(lam)
        removed, tokens = _rule(gains, prep.levels[:-1], lam, incs)
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
