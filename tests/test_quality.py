"""Quality-vs-tokens curves: every point is the PSNR of the layout the library makes at that
token count, against the original image (odd sizes: the padding does not count)."""

import numpy as np
import pytest

import adapatch as ap
from adapatch.quality import quadtree_quality, uniform_quality


@pytest.mark.parametrize("shape", [(70, 90), (128, 192), (37, 300)])
def test_quadtree_curve_is_the_fidelity_of_each_budget(shape):
    rng = np.random.default_rng(7)
    img = rng.random((*shape, 3)).astype(np.float32)
    img[: shape[0] // 2] = np.round(img[: shape[0] // 2] * 3) / 3
    q = quadtree_quality(img, 16, 64)
    assert (np.diff(q.tokens) == 3).all() and (np.diff(q.psnr) >= -1e-9).all()  # more tokens never lose
    for i in np.unique(np.linspace(0, len(q.tokens) - 1, 5).astype(int)):
        lay = ap.quadtree(img, budget=int(q.tokens[i]), min_size=16, max_size=64)
        assert lay.num_tokens == q.tokens[i]
        assert ap.fidelity(img, lay, device="cpu")["psnr"] == pytest.approx(q.psnr[i], abs=2e-3)


def test_uniform_curve_is_the_fidelity_of_each_size(astronaut):
    img = astronaut[:300, :451]
    u = uniform_quality(img, sizes=[16, 21, 32, 47])
    for s, n, p in zip(u.extra["sizes"], u.tokens, u.psnr):
        lay = ap.uniform(*img.shape[:2], s)
        assert lay.num_tokens == n
        assert ap.fidelity(img, lay, device="cpu")["psnr"] == pytest.approx(p, abs=2e-3)
    assert u.psnr[0] == 100.0
