import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapatch as ap
from tests.strategies import images

CORE = ["edges", "variance", "entropy", "spectral"]


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(img=images(), method=st.sampled_from(CORE))
def test_maps_in_unit_range_with_image_shape(img, method):
    m = ap.saliency(img, method)
    assert m.shape == img.shape[:2] and m.dtype == np.float32
    assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1


@pytest.mark.parametrize("method", CORE)
def test_constant_image_gives_zero_map(method):
    m = ap.saliency(np.full((40, 30, 3), 0.3, np.float32), method)
    assert not np.isnan(m).any() and (m == 0).all()


@pytest.mark.parametrize("method", CORE)
def test_detail_scores_higher_than_flat(method):
    rng = np.random.default_rng(0)
    img = np.full((128, 128, 3), 0.5, np.float32)
    img[:, 64:] = rng.random((128, 64, 3))  # right half: texture
    m = ap.saliency(img, method)
    assert m[:, 80:].mean() > m[:, :48].mean() + 0.1


def test_registry_plugs_in_new_methods():
    @ap.register_saliency("test_left", "left half", param_ranges={"gain": (0, 2, 0.1)})
    def left(image, gain=1.0):
        out = np.zeros(image.shape[:2], np.float32)
        out[:, : image.shape[1] // 2] = gain
        return out

    from adapatch.saliency import _REGISTRY
    try:
        assert "test_left" in ap.saliency_methods()
        assert ap.saliency_methods()["test_left"].defaults == {"gain": 1.0}
        img = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
        m = ap.saliency(img, "test_left", gain=3)
        assert m[:, :2].min() == 1 and m[:, 2:].max() == 0
        with pytest.raises(ValueError, match="unknown parameter"):
            ap.saliency(img, "test_left", nope=1)
    finally:
        _REGISTRY.pop("test_left", None)


def test_bad_method_and_params():
    img = np.zeros((8, 8, 3), np.float32)
    with pytest.raises(ValueError, match="method"):
        ap.saliency(img, "nope")
    with pytest.raises(ValueError, match="window"):
        ap.saliency(img, "variance", window=0)
    with pytest.raises(ValueError, match="low"):
        ap.saliency(img, "edges", low=200, high=100)
    with pytest.raises(ValueError, match="image"):
        ap.saliency(np.zeros((8, 8)), "edges")


def test_seed_exact_edges(astronaut):
    """``ksize=15`` reproduces the seed literally: Canny, ``GaussianBlur(.., (15, 15), 0)`` with
    OpenCV's default border, min-max normalised."""
    import cv2
    grey = cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY)
    canny = cv2.Canny((grey * 255 + 0.5).astype(np.uint8), 50, 150).astype(np.float32)
    blur = cv2.GaussianBlur(canny, (15, 15), 0)
    ref = (blur - blur.min()) / (blur.max() - blur.min())
    np.testing.assert_allclose(ap.saliency(astronaut, "edges", ksize=15), ref, atol=1e-6)
    assert not np.allclose(ap.saliency(astronaut, "edges"), ref, atol=1e-3)  # the default differs
    with pytest.raises(ValueError, match="odd"):
        ap.saliency(astronaut, "edges", ksize=14)
