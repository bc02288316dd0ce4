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


def test_seed_absolute_variance_cutoffs_against_a_literal_loop():
    """``variance_cutoffs``: the seed's form of the size rule (absolute cut-offs on the saliency
    variance of each cell), checked cell by cell against a plain loop, with and without a budget."""
    from skimage import data

    img = data.coffee().astype(np.float32) / 255  # 400x600: a 416x608 canvas of 32 px cells (edge-padded)
    sal = ap.saliency(img, "edges")
    cut = (0.03, 0.01)
    lay = ap.greedy(img, sal, patch_sizes=(8, 16, 32), variance_cutoffs=cut)
    lay.validate()
    padded = np.pad(sal, ((0, 416 - 400), (0, 608 - 600)), mode="edge").astype(np.float64)
    for cy in range(0, 416, 32):
        for cx in range(0, 608, 32):
            v = padded[cy:cy + 32, cx:cx + 32].var()
            want = 8 if v >= cut[0] else 16 if v >= cut[1] else 32
            inside = lay.boxes[(lay.boxes[:, 0] >= cy) & (lay.boxes[:, 0] < cy + 32)
                               & (lay.boxes[:, 1] >= cx) & (lay.boxes[:, 1] < cx + 32)]
            assert set(inside[:, 2]) == {want}, (cy, cx, v)
    capped = ap.greedy(img, sal, patch_sizes=(8, 16, 32), variance_cutoffs=cut, budget=lay.num_tokens // 2)
    capped.validate()
    assert capped.num_tokens <= lay.num_tokens // 2 and capped.params["variance_cutoffs"] == list(cut)
    # no cut-offs: the relative rule, unchanged
    assert ap.greedy(img, sal, patch_sizes=(8, 16, 32)).params.get("variance_cutoffs") is None


@pytest.mark.parametrize("cutoffs, match", [
    ((0.01, 0.03), "descending"), ((0.3, 0.01), r"\[0, 0.25\]"), ((0.01,), "2 descending"),
    ("ab", "numbers|descending"),
])
def test_bad_variance_cutoffs_are_one_line_errors(cutoffs, match):
    img = np.random.default_rng(0).random((64, 64, 3)).astype(np.float32)
    with pytest.raises(ValueError, match=match) as e:
        ap.greedy(img, patch_sizes=(8, 16, 32), variance_cutoffs=cutoffs)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="allocation='saliency'"):
        ap.greedy(img, patch_sizes=(8, 16, 32), variance_cutoffs=(0.02, 0.01), allocation="distortion")
    with pytest.raises(ValueError, match="take no query"):
        ap.greedy(img, patch_sizes=(8, 16, 32), variance_cutoffs=(0.02, 0.01), query=np.ones((64, 64)),
                  query_weight=0.5)
    # refused before any map is made: a class query on a missing model file never loads it
    with pytest.raises(ValueError, match="take no query"):
        ap.greedy(img, patch_sizes=(8, 16, 32), variance_cutoffs=(0.02, 0.01), query_weight=0.5,
                  query={"kind": "class", "model": "/nonexistent/model.safetensors", "target": 1})
