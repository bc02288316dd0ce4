import json

import numpy as np
import pytest

import adapatch as ap
from adapatch.layout import PatchLayout


def test_uniform_grid_is_row_major_and_tiles():
    lay = ap.uniform(50, 70, 16).validate()
    assert lay.canvas == (64, 80)
    assert lay.num_tokens == 4 * 5
    assert lay.boxes[:6].tolist() == [[0, 0, 16], [0, 16, 16], [0, 32, 16], [0, 48, 16], [0, 64, 16], [16, 0, 16]]


def test_validate_rejects_overlap_and_gap():
    good = ap.uniform(32, 32, 16)
    overlap = PatchLayout(32, 32, (32, 32), np.concatenate([good.boxes, [[0, 0, 16]]]))
    with pytest.raises(ValueError, match="tile"):
        overlap.validate()
    gap = PatchLayout(32, 32, (32, 32), good.boxes[1:])
    with pytest.raises(ValueError, match="tile"):
        gap.validate()
    outside = PatchLayout(32, 32, (32, 32), [[0, 0, 64]])
    with pytest.raises(ValueError, match="outside"):
        outside.validate()


def test_json_round_trip_and_with_tokens():
    lay = ap.uniform(40, 40, 8)
    pruned = lay.with_tokens(np.arange(0, lay.num_tokens, 3))
    pruned.validate()
    back = PatchLayout.from_json(pruned.to_json())
    assert back == pruned
    assert json.loads(pruned.to_json())["num_tokens"] == pruned.num_tokens
    assert back.num_tokens + len(back.dropped) == lay.num_tokens


def test_counts_and_uniform_tokens():
    lay = ap.uniform(100, 30, 16)
    assert lay.counts_per_size() == {16: 7 * 2}
    assert lay.uniform_tokens(8) == 13 * 4
    assert np.allclose(lay.normalized()[0], [8 / 100, 8 / 30, 16 / 100])
