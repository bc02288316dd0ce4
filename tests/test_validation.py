"""One image check (``validation.check_rgb``): every entry point refuses a bad image with the
same message."""

import numpy as np
import pytest

import adapatch as ap
from adapatch.validation import check_rgb


@pytest.mark.parametrize("bad", [np.zeros((8, 8)), np.zeros((8, 8, 4)), np.zeros((0, 8, 3)), np.zeros((2, 8, 8, 3))])
def test_every_entry_point_says_the_same(bad):
    calls = [lambda: ap.quadtree(bad, threshold=0.1), lambda: ap.greedy(bad, np.zeros(bad.shape[:2])),
             lambda: ap.saliency(bad, "edges"), lambda: ap.multiscale(bad, 10),
             lambda: ap.quadtree(bad, budget=10)]
    if bad.ndim == 4:
        calls = calls[1:4]  # quadtree takes a batch
    messages = set()
    for call in calls:
        with pytest.raises(ValueError, match=r"image must be a float RGB array") as e:
            call()
        messages.add(str(e.value).split(", got shape")[0].replace(" (or a batch [B, H, W, 3])", ""))
    assert len(messages) == 1


def test_check_rgb_returns_contiguous_float32_and_batches():
    a = check_rgb(np.ones((5, 4, 3), np.float64)[::-1])
    assert a.dtype == np.float32 and a.flags.c_contiguous and a.shape == (5, 4, 3)
    assert check_rgb(np.ones((5, 4, 3)), batch=True).shape == (1, 5, 4, 3)
