import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import adapatch as ap
from tests.strategies import images


@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(img=images(), sizes=st.sampled_from([(8, 16, 32), (4, 16), (16,), (2, 4, 8, 16, 32)]),
       extra=st.integers(0, 300), uncovered=st.sampled_from(["fill", "drop"]))
def test_tiles_and_respects_budget(img, sizes, extra, uncovered):
    n0 = ap.uniform(*img.shape[:2], max(sizes)).num_tokens
    budget = n0 + extra if uncovered == "fill" else max(1, extra)
    lay = ap.greedy(img, "edges", patch_sizes=sizes, budget=budget, uncovered=uncovered)
    lay.validate()
    assert lay.num_tokens <= budget
    if uncovered == "fill":
        assert len(lay.dropped) == 0
    assert set(lay.sizes) <= set(sizes)


def test_salient_cells_served_first():
    img = np.zeros((64, 128, 3), np.float32)
    sal = np.zeros((64, 128), np.float32)
    sal[:32, :32] = np.tile([0.0, 1.0], (32, 16))  # one busy cell, the rest flat
    lay = ap.greedy(img, sal, patch_sizes=(8, 16, 32), budget=16 + 7, uncovered="fill")
    small = lay.boxes[lay.boxes[:, 2] == 8]
    assert len(small) == 16 and small[:, :2].max() < 32  # the busy cell got the finest size
    dropped = ap.greedy(img, sal, patch_sizes=(8, 16, 32), budget=16, uncovered="drop")
    assert dropped.num_tokens == 16 and len(dropped.dropped) == 7


def test_no_budget_and_errors(astronaut):
    sal = ap.saliency(astronaut, "edges")
    lay = ap.greedy(astronaut, sal).validate()
    assert lay.num_tokens > ap.uniform(512, 512, 32).num_tokens
    with pytest.raises(ValueError, match="budget"):
        ap.greedy(astronaut, sal, budget=10, uncovered="fill")
    with pytest.raises(ValueError, match="patch_sizes"):
        ap.greedy(astronaut, sal, patch_sizes=(8, 12))
    with pytest.raises(ValueError, match="uncovered"):
        ap.greedy(astronaut, sal, budget=300, uncovered="maybe")
