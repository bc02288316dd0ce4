"""``multiscale``'s threshold mode (``adapatch.rd_hull``): at lambda, the candidate layout of least
``error + lambda * tokens`` among the quadtree's Lagrangian layouts and uniform grids, exactly."""

from __future__ import annotations

import numpy as np
import pytest

import adapatch as ap
from adapatch.quadtree_engine import LAMBDA_UNIT
from adapatch.rd_hull import candidate_points, lower_hull
from tests.image_helpers import rgb01


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    from skimage import data
    out = {"coffee": data.coffee()[::3, ::3], "brick": data.brick()[:200, :260], "text": data.text()[:, :300],
           "colorwheel": data.colorwheel()[::3, ::3], "gravel": data.gravel()[:150, :170]}
    return {k: rgb01(v) for k, v in out.items()}


def _sse(img: np.ndarray, lay: ap.PatchLayout) -> float:
    f = ap.fidelity(img, lay, device="cpu")
    return 3.0 * img.shape[0] * img.shape[1] * 10.0 ** (-f["psnr"] / 10.0)


@pytest.mark.parametrize("name", ["coffee", "brick", "text", "colorwheel", "gravel"])
def test_every_lambda_takes_the_candidate_of_least_lagrangian(images, name):
    img = images[name]
    points, _ = candidate_points(img)
    hull = ap.rd_hull(img)
    tok = np.array([p[0] for p in points], np.float64)
    err = np.array([p[1] for p in points])
    lams = np.concatenate([[0.0], hull.slopes, (hull.slopes[:-1] + hull.slopes[1:]) / 2, [hull.slopes[0] * 2 + 1]])
    for lam in lams:
        best = float(np.min(err + lam / LAMBDA_UNIT * tok))
        assert hull.lagrangian(lam) == pytest.approx(best, rel=1e-12, abs=1e-12), lam
        lay = hull.layout(lam).validate()
        assert lay.num_tokens == hull.tokens_at(lam)
        assert lay.strategy == "multiscale" and lay.params["threshold"] == lam
    # no hull point is dominated: no candidate has as few tokens and less error
    for t, e in zip(hull.tokens, hull.error):
        assert not np.any((tok <= t) & (err < e - 1e-9 * max(e, 1.0)))


@pytest.mark.parametrize("name", ["coffee", "brick", "text"])
def test_hull_errors_are_the_layouts_errors_and_the_solver_is_exact(images, name):
    img = images[name]
    hull = ap.rd_hull(img)
    for k in range(0, len(hull.tokens), max(1, len(hull.tokens) // 8)):
        lam = float(hull.slopes[k]) if k < len(hull.slopes) else 0.0  # at a breakpoint: point k
        lay = hull.layout(lam)
        assert hull.index(lam) == k and lay.num_tokens == hull.tokens[k]
        if hull.error[k] > 1e-6:
            assert _sse(img, lay) == pytest.approx(hull.error[k], rel=2e-4)
    for budget in sorted({int(hull.tokens[0]), int(hull.tokens[len(hull.tokens) // 2]) + 1, int(hull.tokens[-1]) + 5}):
        lam = hull.threshold_for(budget)
        assert hull.tokens_at(lam) <= budget
        brute = min(float(t) for t in np.append(hull.slopes, 0.0) if hull.tokens_at(float(t)) <= budget)
        assert lam == brute
    with pytest.raises(ValueError, match="budget"):
        hull.threshold_for(int(hull.tokens[0]) - 1) if hull.tokens[0] > 1 else (_ for _ in ()).throw(ValueError("budget"))


def test_make_layout_multiscale_threshold_mode_and_its_refusals(images):
    img = images["brick"]
    lay = ap.make_layout(img, "multiscale", threshold=50.0)
    assert lay == ap.rd_hull(img).layout(50.0)
    assert ap.make_layout(img, "multiscale", threshold=50.0, scales=6) == lay  # scales: budget mode only
    with pytest.raises(ValueError, match="threshold"):
        ap.make_layout(img, "multiscale", threshold=-1.0)
    with pytest.raises(ValueError, match="query"):
        ap.make_layout(img, "multiscale", threshold=5.0, query=np.ones(img.shape[:2], np.float32), query_weight=0.5)
    assert ap.make_layout(img, "multiscale", budget=120) == ap.multiscale(img, 120)  # budget mode unchanged


def test_textures_take_in_between_grids_and_photos_the_quadtree(images):
    brick, coffee = ap.rd_hull(images["brick"]), ap.rd_hull(images["coffee"])
    mid = {int(brick.values[k]) for k, kind in enumerate(brick.kinds) if kind == "uniform"}
    assert any(16 < s < 64 and s not in (32,) for s in mid)  # a grid of an in-between size is on the hull
    assert any(kind == "quadtree" and n > 1 for kind, n in zip(coffee.kinds, coffee.tokens))


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (17, 300), (300, 17)])
def test_small_and_odd_images(shape):
    img = np.random.default_rng(3).random((*shape, 3)).astype(np.float32)
    hull = ap.rd_hull(img)
    assert hull.tokens[0] >= 1 and np.all(np.diff(hull.tokens) > 0) and np.all(np.diff(hull.error) < 0)
    assert np.all(np.diff(hull.slopes) < 0) if len(hull.slopes) > 1 else True
    for lam in (0.0, 1.0, 1e6):
        hull.layout(lam).validate()


def test_lower_hull_keeps_only_points_some_lambda_chooses():
    pts = [(1, 10.0, "a", 0), (2, 9.5, "b", 0), (3, 5.0, "c", 0), (4, 4.9, "d", 0), (5, 1.0, "e", 0), (5, 3.0, "f", 0)]
    assert [p[2] for p in lower_hull(pts)] == ["a", "c", "e"]
