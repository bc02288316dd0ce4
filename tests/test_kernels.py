"""The compiled column sums behind the quadtree's block statistics, against numpy."""

import numpy as np
import pytest

from adapatch.kernels import column_sums


@pytest.mark.parametrize("m", [1, 2, 4, 8, 16, 32])
@pytest.mark.parametrize("cols", [1, 5, 96, 3 * 257])
def test_column_sums_equal_numpy(rng, m, cols):
    x = rng.random((4 * 32, cols), dtype=np.float32)
    c1 = np.full((x.shape[0] // m, cols), np.nan)
    c2 = np.full_like(c1, np.nan)
    column_sums(x, m, c1, c2)
    v = x.reshape(-1, m, cols).astype(np.float64)
    np.testing.assert_allclose(c1, v.sum(axis=1), rtol=1e-13)
    np.testing.assert_allclose(c2, (v * v).sum(axis=1), rtol=1e-13)


def test_column_sums_are_exactly_pairwise_float64(rng):
    """Eight rows are added as a fixed pairwise tree in float64 (no reassociation): the result is
    bit-for-bit the same on every machine."""
    x = rng.random((8, 64), dtype=np.float32)
    c1, c2 = np.empty((1, 64)), np.empty((1, 64))
    column_sums(x, 8, c1, c2)
    a = x.astype(np.float64)
    s = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
    q = a * a
    qs = ((q[0] + q[1]) + (q[2] + q[3])) + ((q[4] + q[5]) + (q[6] + q[7]))
    assert np.array_equal(c1[0], s) and np.array_equal(c2[0], qs)


def test_rgb8_distortion_path_is_bit_identical_to_float():
    """The 8-bit path of the distortion importance (dataset calibration) reads bytes directly; its
    path importances equal those of the float image load_image gives, bit for bit."""
    import adapatch as ap
    from adapatch.image_io import BYTE_TO_FLOAT
    rng = np.random.default_rng(5)
    for trial in range(12):
        h, w = (1, 1) if trial == 0 else (int(rng.integers(1, 140)), int(rng.integers(1, 170)))
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        if trial % 2:  # smooth content with edges, like a photo
            a = np.clip(np.cumsum(rng.integers(-3, 4, (h, w, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
        for mn, mx, ts in [(8, 64, 16), (16, 128, 16), (8, 32, 16), (4, 64, 8), (8, 64, 32), (16, 16, 16)]:
            u = ap.path_importance(a, min_size=mn, max_size=mx, importance="distortion", token_size=ts)
            f = ap.path_importance(BYTE_TO_FLOAT[a], min_size=mn, max_size=mx, importance="distortion", token_size=ts)
            assert np.array_equal(u.values, f.values) and u.params == f.params and u.canvas == f.canvas
    a = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)  # other importances: converted, then the float path
    assert np.array_equal(ap.path_importance(a, importance="std").values,
                          ap.path_importance(BYTE_TO_FLOAT[a], importance="std").values)


def test_load_rgb8_matches_load_image():
    import io

    from PIL import Image

    import adapatch as ap
    from adapatch.image_io import BYTE_TO_FLOAT, load_rgb8
    rng = np.random.default_rng(6)
    rgb = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    for mode in ("RGB", "L", "RGBA", "P", "CMYK", "LA"):
        buf = io.BytesIO()
        im = Image.fromarray(rgb).convert(mode)
        im.save(buf, "TIFF" if mode == "CMYK" else "PNG")
        data = buf.getvalue()
        got = load_rgb8(data)
        assert got.dtype == np.uint8, mode
        assert np.array_equal(BYTE_TO_FLOAT[got], ap.load_image(data)), mode
    buf = io.BytesIO()
    Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(buf, "PNG")  # 16-bit: stays float
    assert load_rgb8(buf.getvalue()).dtype == np.float32
