import numpy as np
import pytest
import torch

import adapatch as ap


def test_uniform16_patches_are_vit_patches(astronaut):
    img = astronaut[:224, :224]
    lay = ap.uniform(224, 224, 16)
    p = ap.extract_patches(img, lay, 16, device="cpu")
    t = torch.from_numpy(img).permute(2, 0, 1)
    ref = t.unfold(1, 16, 16).unfold(2, 16, 16).permute(1, 2, 0, 3, 4).reshape(-1, 3, 16, 16)
    assert torch.equal(p, ref)


def test_area_resize_and_reconstruct(astronaut):
    lay = ap.quadtree(astronaut, threshold=0.2, min_size=8, max_size=32)
    p = ap.extract_patches(astronaut, lay, 16, device="cpu")
    assert p.shape == (lay.num_tokens, 3, 16, 16)
    big = np.nonzero(lay.boxes[:, 2] == 32)[0][0]
    y, x, s = lay.boxes[big]
    block = astronaut[y:y + s, x:x + s].reshape(16, 2, 16, 2, 3).mean(axis=(1, 3))
    np.testing.assert_allclose(p[big].permute(1, 2, 0).numpy(), block, atol=1e-6)
    rec = ap.reconstruct(astronaut, lay, 16, device="cpu")
    small = lay.boxes[lay.boxes[:, 2] <= 16]
    y, x, s = small[0]
    np.testing.assert_allclose(rec[y:y + s, x:x + s], astronaut[y:y + s, x:x + s], atol=1e-6)
    assert ap.fidelity(astronaut, ap.uniform(512, 512, 8))["psnr"] == 100.0
    f = ap.fidelity(astronaut, lay)
    assert 15 < f["psnr"] < 100 and 0 < f["ssim"] < 1


def test_fidelity_improves_with_tokens(astronaut):
    coarse = ap.fidelity(astronaut, ap.quadtree(astronaut, threshold=0.5))
    fine = ap.fidelity(astronaut, ap.quadtree(astronaut, threshold=0.1))
    assert fine["psnr"] > coarse["psnr"] and fine["ssim"] > coarse["ssim"]


def test_flops_reproduce_published_numbers():
    assert round(ap.vit_flops(196, "ViT-S") / 1e9, 1) == 4.6
    assert round(ap.vit_flops(196, "ViT-B") / 1e9, 1) == 17.6
    assert round(ap.vit_flops(196, "ViT-L") / 1e9, 1) == 61.6


def test_efficiency_ratios(astronaut):
    lay = ap.quadtree(astronaut, threshold=0.3)
    e = ap.efficiency(lay, vit="ViT-S")
    assert e["tokens"] == lay.num_tokens and e["uniform16_tokens"] == 1024 and e["uniform_min_tokens"] == 4096
    assert e["flops"] == ap.vit_flops(lay.num_tokens, "ViT-S")
    assert e["flops_ratio_vs_uniform16"] == pytest.approx(e["flops"] / ap.vit_flops(1024, "ViT-S"))
    with pytest.raises(ValueError, match="vit"):
        ap.efficiency(lay, vit="ViT-XXL")


def test_token_scores_and_prune(astronaut):
    lay = ap.uniform(512, 512, 16)
    sal = ap.saliency(astronaut, "edges")
    sc = ap.token_scores(sal, lay)
    y, x, s = lay.boxes[37]
    assert sc[37] == pytest.approx(sal[y:y + s, x:x + s].mean())
    mx = ap.token_scores(sal, lay, reduce="max")
    assert mx[37] == pytest.approx(sal[y:y + s, x:x + s].max())
    pr = ap.prune(lay, sc, 0.3).validate()
    assert pr.num_tokens == ap.keep_count(1024, 0.3) == 308
    assert sc[np.isin(np.arange(1024), np.nonzero((lay.boxes[:, None] == pr.boxes[None]).all(-1).any(1))[0])].min() \
        >= np.sort(sc)[::-1][307] - 1e-12


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available on this machine")
def test_cpu_and_gpu_agree(astronaut):
    lay = ap.quadtree(astronaut, threshold=0.2)
    a = ap.extract_patches(astronaut, lay, 16, device="cpu")
    b = ap.extract_patches(astronaut, lay, 16, device="cuda").cpu()
    torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    np.testing.assert_allclose(ap.reconstruct(astronaut, lay, device="cpu"),
                               ap.reconstruct(astronaut, lay, device="cuda"), atol=1e-6)


def test_device_choice():
    assert ap.resolve_device("cpu").type == "cpu"
    assert ap.resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA"):
            ap.resolve_device("cuda")
    with pytest.raises(ValueError, match="device"):
        ap.resolve_device("tpu")
