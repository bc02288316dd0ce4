import json

import numpy as np
import pytest

import adapatch as ap


@pytest.fixture(scope="module")
def items(astronaut):
    flat = np.full((256, 192, 3), 0.5, np.float32)
    out = []
    for name, img in (("astronaut", astronaut), ("flat", flat)):
        q = ap.quadtree(img, threshold=0.15, min_size=8, max_size=64)
        out.append((name, "quadtree", q, ap.fidelity(img, q)))
        out.append((name, "uniform 16 px", ap.uniform(*img.shape[:2], 16), None))
    return out


def test_rows_match_efficiency(items):
    rows = ap.efficiency_rows(items)
    assert len(rows) == len(items)
    for (image, strategy, lay, fid), row in zip(items, rows):
        assert (row["image"], row["strategy"], row["tokens"]) == (image, strategy, lay.num_tokens)
        for vit in ap.VIT_PRESETS:
            eff = ap.efficiency(lay, vit)
            assert row[f"{vit} GMACs"] == pytest.approx(eff["flops"] / 1e9)
            assert row[f"{vit} speedup"] == pytest.approx(eff["speedup_vs_uniform16"])
        assert ("psnr" in row) == (fid is not None)
    json.dumps(rows)


def test_mean_speedups_and_summary(items):
    rows = ap.efficiency_rows(items)
    sp = ap.mean_speedups(rows, exclude=["uniform 16 px"])
    assert list(sp) == ["quadtree"]
    q = [r for r in rows if r["strategy"] == "quadtree"]
    assert sp["quadtree"]["ViT-S"] == pytest.approx(np.mean([r["ViT-S speedup"] for r in q]))
    s = ap.efficiency_summary(rows, "quadtree", "ViT-S")
    assert s.images == 2 and s.finest_size == 8
    assert s.tokens == pytest.approx(np.mean([r["tokens"] for r in q]))
    assert s.best_image == "flat" and s.worst_image == "astronaut"  # a flat image needs the fewest tokens
    assert s.best_reduction > s.worst_reduction
    assert s.speedup_vs_uniform16 == pytest.approx(sp["quadtree"]["ViT-S"])
    assert s.psnr is not None and s.ssim is not None
    json.dumps(s.to_dict())
    grid = ap.efficiency_summary(rows, "uniform 16 px")
    assert grid.psnr is None and grid.reduction_vs_uniform16 == pytest.approx(0.0)
    assert ap.efficiency_summary(rows, "greedy") is None
    with pytest.raises(ValueError, match="vit"):
        ap.efficiency_summary(rows, "quadtree", "ViT-XXL")
