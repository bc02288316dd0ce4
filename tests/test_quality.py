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
    # a split adds 3 tokens, 1 where it straddles the image's edge (children in the padding are no tokens)
    assert np.isin(np.diff(q.tokens), (1, 2, 3)).all() and (np.diff(q.psnr) >= -1e-9).all()  # more never lose
    assert q.tokens[-1] <= ap.uniform(*shape, 16).num_tokens
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


# ------------------------------------------------------------------ SSIM and the CPU reconstruction
def _layouts(img: np.ndarray) -> dict[str, ap.PatchLayout]:
    h, w = img.shape[:2]
    q = ap.quadtree(img, budget=ap.uniform(h, w, 16).num_tokens // 3, min_size=16, max_size=64)
    return {
        "quadtree 16-64 (padded)": q,
        "quadtree 4-64": ap.quadtree(img, threshold=0.05, min_size=4, max_size=64),
        "quadtree 8-128": ap.quadtree(img, threshold=0.1, min_size=8, max_size=128, importance="std"),
        "uniform 21 px": ap.uniform(h, w, 21),
        "uniform 12 px": ap.uniform(h, w, 12),
        "uniform 7 px": ap.uniform(h, w, 7),
        "greedy": ap.greedy(img, ap.saliency(img, "edges"), patch_sizes=(8, 16, 32), budget=q.num_tokens),
        "multiscale": ap.multiscale(img, budget=q.num_tokens),
        "pruned": q.with_tokens(np.arange(q.num_tokens) % 3 == 0),
    }


@pytest.mark.parametrize("shape", [(7, 9), (33, 50), (300, 451)])
@pytest.mark.parametrize("win", [3, 5, 7])
def test_ssim_agrees_with_scikit_image(shape, win):
    from skimage.metrics import structural_similarity

    from adapatch.fidelity import ssim

    rng = np.random.default_rng(sum(shape) + win)
    x = rng.random(shape).astype(np.float32)
    y = np.clip(x + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    y[: shape[0] // 2] = np.round(y[: shape[0] // 2] * 4) / 4  # flat patches too
    ours = ssim(x, y, win_size=win)
    assert ours == pytest.approx(structural_similarity(x, y, data_range=1.0, win_size=win), abs=1e-4)  # float32
    ref64 = structural_similarity(x.astype(np.float64), y.astype(np.float64), data_range=1.0, win_size=win)
    assert ours == pytest.approx(ref64, abs=1e-9)


def test_fidelity_ssim_is_scikit_image_on_the_luminance(astronaut):
    from skimage.metrics import structural_similarity

    img = astronaut[:301, :397]
    lay = ap.quadtree(img, budget=150, min_size=16, max_size=64)
    rec = ap.reconstruct(img, lay, device="cpu")
    lum = np.array([0.299, 0.587, 0.114], np.float32)
    want = structural_similarity(img @ lum, rec @ lum, data_range=1.0, win_size=7)
    assert ap.fidelity(img, lay, device="cpu")["ssim"] == pytest.approx(want, abs=1e-4)


def test_cpu_reconstruction_is_reconstruct(astronaut):
    """OpenCV's whole-canvas resizes give what the torch reconstruction gives, on every kind of layout."""
    from adapatch.fidelity import psnr_ssim, reconstruct_cpu

    img = astronaut[:300, :451]
    for name, lay in _layouts(img).items():
        rec = reconstruct_cpu(img, lay)
        assert rec is not None, name
        ref = ap.reconstruct(img, lay, device="cpu")
        assert rec.shape == ref.shape and np.abs(rec - ref).max() < 2e-6, name
        f, g = ap.fidelity(img, lay, device="cpu"), psnr_ssim(img, ref)
        assert f["psnr"] == pytest.approx(g["psnr"], abs=1e-3) and f["ssim"] == pytest.approx(g["ssim"], abs=1e-6), name


def test_unaligned_layout_goes_through_torch(astronaut):
    """Boxes off their size's grid (a custom layout): no OpenCV shortcut, the torch reconstruction."""
    from adapatch.fidelity import psnr_ssim, reconstruct_cpu

    img = astronaut[:64, :72]
    boxes = [(y, 0, 8) for y in range(0, 64, 8)] + [(y, x, 32) for y in (0, 32) for x in (8, 40)]
    lay = ap.PatchLayout(64, 72, (64, 72), boxes).validate()
    assert reconstruct_cpu(img, lay) is None
    want = psnr_ssim(img, ap.reconstruct(img, lay, device="cpu"))
    assert ap.fidelity(img, lay, device="cpu") == pytest.approx(want)


@pytest.mark.parametrize("importance", ["distortion", "std"])
@pytest.mark.parametrize("shape", [(70, 90), (128, 192)])
def test_quadtree_ssim_points_are_the_fidelity_of_each_budget(shape, importance):
    rng = np.random.default_rng(11)
    img = rng.random((*shape, 3)).astype(np.float32)
    img[: shape[0] // 2] = np.round(img[: shape[0] // 2] * 3) / 3
    q = quadtree_quality(img, 16, 64, importance=importance, ssim_points=6)
    assert 2 <= len(q.ssim_tokens) <= 6 and np.isin(q.ssim_tokens, q.tokens).all()
    assert q.ssim_tokens[0] == q.tokens[0] and q.ssim_tokens[-1] == q.tokens[-1]  # both ends
    for n, s in zip(q.ssim_tokens, q.ssim):
        lay = ap.quadtree(img, budget=int(n), min_size=16, max_size=64, importance=importance)
        assert lay.num_tokens == n
        f = ap.fidelity(img, lay, device="cpu")
        assert f["ssim"] == pytest.approx(s, abs=1e-5)
        assert f["psnr"] == pytest.approx(q.psnr_at(n), abs=2e-3)


def test_uniform_ssim_points_are_the_fidelity_of_each_size(astronaut):
    img = astronaut[:300, :451]
    u = uniform_quality(img, sizes=[16, 21, 32, 47], ssim_points=3)
    assert list(u.ssim_tokens) == [u.tokens[0], u.tokens[2], u.tokens[3]]  # spread: both ends and between
    for n, s in zip(u.ssim_tokens, u.ssim):
        size = u.extra["sizes"][list(u.tokens).index(n)]
        assert ap.fidelity(img, ap.uniform(300, 451, size), device="cpu")["ssim"] == pytest.approx(s, abs=1e-5)
    assert u.ssim[0] == pytest.approx(1.0)
