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
