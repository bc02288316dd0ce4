import json

import numpy as np
import pytest

import adapatch as ap
from adapatch.dataset.curve import percentile
from adapatch.fidelity import MAX_PSNR
from adapatch.report import mean_psnr


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
        assert row["pixels"] == lay.height * lay.width
        for vit in ap.VIT_PRESETS:
            eff = ap.efficiency(lay, vit)
            assert row[f"{vit} GMACs"] == pytest.approx(eff["flops"] / 1e9)
            assert row[f"{vit} uniform16 GMACs"] == pytest.approx(eff["uniform16_flops"] / 1e9)
            assert row[f"{vit} speedup"] == pytest.approx(eff["speedup_vs_uniform16"])
        assert ("psnr" in row) == (fid is not None)
    json.dumps(rows)


def test_mean_speedups_and_summary(items):
    rows = ap.efficiency_rows(items)
    sp = ap.mean_speedups(rows, exclude=["uniform 16 px"])
    assert list(sp) == ["quadtree"]
    q = [r for r in rows if r["strategy"] == "quadtree"]
    total = sum(r["ViT-S uniform16 GMACs"] for r in q) / sum(r["ViT-S GMACs"] for r in q)
    assert sp["quadtree"]["ViT-S"] == pytest.approx(total)
    s = ap.efficiency_summary(rows, "quadtree", "ViT-S")
    assert s.images == 2 and s.finest_size == 8
    assert s.tokens == pytest.approx(np.mean([r["tokens"] for r in q]))
    assert s.total_tokens == sum(r["tokens"] for r in q)
    assert s.best_image == "flat" and s.worst_image == "astronaut"  # a flat image needs the fewest tokens
    assert s.best_reduction > s.worst_reduction
    assert s.speedup_vs_uniform16 == pytest.approx(sp["quadtree"]["ViT-S"])
    assert s.ssim is not None
    # the flat image is reconstructed losslessly (PSNR capped at MAX_PSNR): an error of 0 in the mean MSE
    flat_psnr = next(r["psnr"] for r in q if r["image"] == "flat")
    assert flat_psnr == MAX_PSNR
    assert s.lossless_images == 1 and s.psnr_images == 2
    astro = next(r["psnr"] for r in q if r["image"] == "astronaut")
    assert s.psnr == pytest.approx(astro + 10 * np.log10(2))  # half the astronaut's MSE: +3.01 dB
    json.dumps(s.to_dict())
    grid = ap.efficiency_summary(rows, "uniform 16 px")
    assert grid.psnr is None and grid.ssim is None and grid.reduction_vs_uniform16 == pytest.approx(0.0)
    assert grid.speedup_vs_uniform16 == pytest.approx(1.0)
    assert ap.efficiency_summary(rows, "greedy") is None
    with pytest.raises(ValueError, match="vit"):
        ap.efficiency_summary(rows, "quadtree", "ViT-XXL")


@pytest.fixture(scope="module")
def panorama_rows():
    """One flat 4000x800 panorama (few large patches, huge saving) and four small detailed images
    (every 8 px cell split: more tokens than the 16 px grid)."""
    rng = np.random.default_rng(7)
    items = []
    pano = np.full((800, 4000, 3), 0.4, np.float32)
    lay = ap.quadtree(pano, threshold=0.1, min_size=16, max_size=64)
    items.append(("panorama", "quadtree", lay, {"psnr": MAX_PSNR, "ssim": 1.0}))  # lossless: capped PSNR
    for i, (h, w) in enumerate([(96, 128), (128, 128), (64, 96), (160, 96)]):
        img = rng.random((h, w, 3), dtype=np.float32)
        lay = ap.quadtree(img, threshold=0.0, min_size=8, max_size=32, importance="std")
        items.append((f"small{i}", "quadtree", lay, {"psnr": 20.0 + i, "ssim": 0.5 + 0.1 * i}))
    return ap.efficiency_rows(items)


def test_summary_is_a_ratio_of_totals_not_a_mean_of_ratios(panorama_rows):
    rows = panorama_rows
    tokens = np.array([r["tokens"] for r in rows])
    u16 = np.array([r["uniform16"] for r in rows])
    umin = np.array([r["uniform_min"] for r in rows])
    assert tokens[0] < u16[0] / 10 and all(tokens[1:] > u16[1:])  # the panorama saves, the small images cost
    s = ap.efficiency_summary(rows, "quadtree", "ViT-B")
    ratio_of_totals = 1 - tokens.sum() / u16.sum()
    mean_of_ratios = np.mean([r["reduction"] for r in rows])
    assert s.reduction_vs_uniform16 == pytest.approx(ratio_of_totals)
    assert abs(ratio_of_totals - mean_of_ratios) > 0.5  # the two definitions really differ here
    assert s.reduction_vs_uniform_min == pytest.approx(1 - tokens.sum() / umin.sum())
    macs = sum(r["ViT-B GMACs"] for r in rows)
    grid = sum(r["ViT-B uniform16 GMACs"] for r in rows)
    mean_speedup = np.mean([r["ViT-B speedup"] for r in rows])
    assert s.speedup_vs_uniform16 == pytest.approx(grid / macs)
    assert abs(grid / macs - mean_speedup) > 0.5
    sp = ap.mean_speedups(rows)
    for vit in ap.VIT_PRESETS:
        assert sp["quadtree"][vit] == pytest.approx(sum(r[f"{vit} uniform16 GMACs"] for r in rows)
                                                    / sum(r[f"{vit} GMACs"] for r in rows))
    pixels = 800 * 4000 + 96 * 128 + 128 * 128 + 64 * 96 + 160 * 96
    assert s.tokens_per_mp == pytest.approx(tokens.sum() / (pixels / 1e6))
    assert s.tokens == pytest.approx(tokens.mean()) and s.uniform16_tokens == pytest.approx(u16.mean())
    assert s.best_image == "panorama"


def test_percentiles_are_nearest_rank(panorama_rows):
    s = ap.efficiency_summary(panorama_rows, "quadtree")
    tokens = sorted(r["tokens"] for r in panorama_rows)
    assert len(tokens) == 5
    # nearest rank: the smallest count with at least q% of the images at or below it
    assert s.p50_tokens == tokens[2] and s.p95_tokens == tokens[4] and s.max_tokens == tokens[4]
    assert s.p50_tokens == int(percentile(np.array(tokens), 50))
    assert s.p50_tokens == int(np.percentile(tokens, 50, method="inverted_cdf"))
    assert all(isinstance(v, int) for v in (s.p50_tokens, s.p95_tokens, s.max_tokens, s.total_tokens))
    ten = ap.efficiency_rows([(f"i{k}", "g", ap.uniform(16 * (k + 1), 16, 16), None) for k in range(10)])
    s10 = ap.efficiency_summary(ten, "g")  # tokens 1..10
    assert (s10.p50_tokens, s10.p95_tokens, s10.max_tokens) == (5, 10, 10)


def _psnr_of_mean_mse(psnrs) -> float:
    """The definition, written out: images in [0, 1], MSE = 10^(-PSNR/10), a lossless image MSE 0."""
    mse = [0.0 if p >= MAX_PSNR else 10 ** (-p / 10) for p in psnrs]
    return 10 * np.log10(1 / np.mean(mse))


def test_psnr_average_is_the_psnr_of_the_mean_mse(panorama_rows):
    s = ap.efficiency_summary(panorama_rows, "quadtree")
    psnrs = [MAX_PSNR, 20.0, 21.0, 22.0, 23.0]  # the panorama is lossless (capped), the small images are not
    assert [r["psnr"] for r in panorama_rows] == psnrs
    assert s.lossless_images == 1 and s.psnr_images == 5
    want = _psnr_of_mean_mse(psnrs)
    assert s.psnr == pytest.approx(want)
    assert s.psnr == pytest.approx(mean_psnr(psnrs))
    # the mean of the PSNRs differs by far, with the capped value (37.2 dB) and without it (21.5 dB):
    # the worst images' errors dominate the mean MSE, as they dominate what the model sees
    assert want == pytest.approx(22.33, abs=0.01)
    assert abs(np.mean(psnrs) - want) > 10 and abs(np.mean(psnrs[1:]) - want) > 0.5
    assert s.ssim == pytest.approx(np.mean([1.0, 0.5, 0.6, 0.7, 0.8]))  # SSIM is finite: every image
    lossless = [{**r, "psnr": MAX_PSNR} for r in panorama_rows]
    all_lossless = ap.efficiency_summary(lossless, "quadtree")
    assert all_lossless.psnr == MAX_PSNR and all_lossless.lossless_images == 5 and all_lossless.psnr_images == 5
    json.dumps(all_lossless.to_dict())


def test_mean_psnr():
    assert mean_psnr([30.0]) == pytest.approx(30.0)
    assert mean_psnr([10.0, 30.0]) == pytest.approx(10 * np.log10(2 / (0.1 + 0.001)))  # 12.98 dB, not 20
    assert mean_psnr([20.0, MAX_PSNR]) == pytest.approx(20.0 + 10 * np.log10(2))
    assert mean_psnr([MAX_PSNR, MAX_PSNR, float("inf")]) == MAX_PSNR
    with pytest.raises(ValueError):
        mean_psnr([])
    with pytest.raises(ValueError):
        mean_psnr([float("nan")])
