"""Variable-token ViT: timm-format weights, fixed-grid equivalence, batching, weight loading."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import adapatch
from adapatch.model import (DynamicBatcher, ViTConfig, VisionTransformer, create_model, forward_packed,
                            forward_padded, load_model, read_state_dict, sample_pos_embed)

torch.set_num_threads(1)
D, DEPTH, HEADS, P, IMG, CLASSES = 48, 2, 3, 8, 32, 7


def timm_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with timm's vit_* names and shapes, made without adapatch's model."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g) * 0.2  # noqa: E731
    n = (IMG // P) ** 2 + 1
    sd = {"cls_token": r(1, 1, D), "pos_embed": r(1, n, D), "patch_embed.proj.weight": r(D, 3, P, P),
          "patch_embed.proj.bias": r(D), "norm.weight": 1 + r(D), "norm.bias": r(D),
          "head.weight": r(CLASSES, D), "head.bias": r(CLASSES)}
    for i in range(DEPTH):
        b = f"blocks.{i}."
        sd.update({b + "norm1.weight": 1 + r(D), b + "norm1.bias": r(D), b + "attn.qkv.weight": r(3 * D, D),
                   b + "attn.qkv.bias": r(3 * D), b + "attn.proj.weight": r(D, D), b + "attn.proj.bias": r(D),
                   b + "norm2.weight": 1 + r(D), b + "norm2.bias": r(D), b + "mlp.fc1.weight": r(4 * D, D),
                   b + "mlp.fc1.bias": r(4 * D), b + "mlp.fc2.weight": r(D, 4 * D), b + "mlp.fc2.bias": r(D)})
    return sd


def reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """A plain functional ViT forward (timm semantics) written independently of adapatch."""
    t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=P).flatten(2).transpose(1, 2)
    t = torch.cat([sd["cls_token"].expand(x.shape[0], -1, -1), t], 1) + sd["pos_embed"]
    b, n, _ = t.shape
    hd = D // HEADS
    for i in range(DEPTH):
        p = f"blocks.{i}."
        h = F.layer_norm(t, (D,), sd[p + "norm1.weight"], sd[p + "norm1.bias"], eps=1e-6)
        q, k, v = F.linear(h, sd[p + "attn.qkv.weight"], sd[p + "attn.qkv.bias"]).reshape(
            b, n, 3, HEADS, hd).permute(2, 0, 3, 1, 4)
        a = ((q @ k.transpose(-2, -1)) * hd ** -0.5).softmax(-1)
        t = t + F.linear((a @ v).transpose(1, 2).reshape(b, n, D), sd[p + "attn.proj.weight"], sd[p + "attn.proj.bias"])
        h = F.layer_norm(t, (D,), sd[p + "norm2.weight"], sd[p + "norm2.bias"], eps=1e-6)
        t = t + F.linear(F.gelu(F.linear(h, sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"])),
                         sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"])
    t = F.layer_norm(t, (D,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return F.linear(t[:, 0], sd["head.weight"], sd["head.bias"])


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    from safetensors.torch import save_file
    sd = timm_state_dict()
    path = tmp_path_factory.mktemp("w") / "vit.safetensors"
    save_file(sd, str(path))
    return sd, load_model(path, device="cpu", heads=HEADS, preprocess="half")


def test_timm_state_dict_reproduces_reference_forward(loaded):
    sd, model = loaded
    assert model.pretrained and model.config.dim == D and model.config.depth == DEPTH
    assert set(model.state_dict()) == set(sd)
    x = torch.randn(2, 3, IMG, IMG, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.forward_fixed(x), reference_forward(sd, x), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pos_mode", ["interp", "interp+mlp", "mlp"])
def test_uniform_layout_equals_fixed_grid(loaded, pos_mode):
    _, base = loaded
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(**{**base.config.to_dict(), "pos_mode": pos_mode})).eval()
    model.load_state_dict(base.state_dict(), strict=False)
    if model.pos_mlp is not None:
        torch.nn.init.normal_(model.pos_mlp.fc2.weight, std=0.1)  # non-trivial MLP
    x = torch.randn(3, 3, IMG, IMG, generator=torch.Generator().manual_seed(2))
    lay = adapatch.uniform(IMG, IMG, P)
    with torch.no_grad():
        fixed = model.forward_fixed(x)
        var = model(x, [lay] * 3)
    torch.testing.assert_close(var, fixed, atol=1e-5, rtol=1e-5)
    assert not torch.equal(fixed[0], fixed[1])


def test_pos_embed_sampled_on_grid_is_exact_and_interpolates_between():
    g = 4
    pos = torch.randn(1, g * g, 5)
    c = (torch.arange(g) + 0.5) / g
    cy, cx = torch.meshgrid(c, c, indexing="ij")
    yx = torch.stack([cy.ravel(), cx.ravel()], -1)[None]
    assert torch.equal(sample_pos_embed(pos, yx, torch.arange(g * g)[None]), pos)
    torch.testing.assert_close(sample_pos_embed(pos, yx), pos, atol=1e-6, rtol=0)  # grid_sample path
    mid = torch.tensor([[[0.5 / g, 1.0 / g]]])  # halfway between cells (0,0) and (0,1)
    torch.testing.assert_close(sample_pos_embed(pos, mid)[0, 0], (pos[0, 0] + pos[0, 1]) / 2, atol=1e-6, rtol=0)


def test_tokenize_matches_core_extract_patches():
    rng = np.random.default_rng(0)
    img = rng.random((40, 56, 3), dtype=np.float32)  # not a multiple of 32: canvas padding
    model = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=24, depth=1, heads=2, num_classes=3))
    lays = [adapatch.quadtree(img, min_size=4, max_size=32, budget=b, importance="std") for b in (20, 60)]
    t = torch.from_numpy(img).permute(2, 0, 1)[None].expand(2, -1, -1, -1)
    tb = model.tokenize(t, lays)
    for i, lay in enumerate(lays):
        ref = adapatch.extract_patches(img, lay, size=8, device="cpu")
        torch.testing.assert_close(tb.patches[i, :lay.num_tokens], ref, atol=1e-6, rtol=0)
        np.testing.assert_allclose(tb.coords[i, :lay.num_tokens].numpy(), lay.normalized(), atol=1e-6)
    assert tb.mask is not None and tb.mask.sum(1).tolist() == [lay.num_tokens for lay in lays]


def test_pad_mask_batch_equals_one_by_one_and_packing(loaded):
    _, model = loaded
    rng = np.random.default_rng(3)
    imgs = rng.random((4, IMG, IMG, 3), dtype=np.float32)
    lays = [adapatch.quadtree(im, min_size=4, max_size=16, budget=b, importance="std") for im, b in zip(imgs, (10, 25, 40, 64))]
    assert len({lay.num_tokens for lay in lays}) == 4
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    with torch.no_grad():
        batched = model(x, lays)
        single = torch.cat([model(x[i:i + 1], [lays[i]]) for i in range(4)])
        seqs = [model.embed(model.tokenize(x[i:i + 1], [lays[i]]))[0] for i in range(4)]
        packed, padded = forward_packed(model, seqs), forward_padded(model, seqs)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(padded, single, atol=1e-5, rtol=1e-5)


def test_dynamic_batcher_groups_by_token_count():
    counts = [5, 50, 6, 49, 7, 48, 5]
    b = DynamicBatcher(counts, batch_size=3)
    batches = list(b)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(counts)))
    assert [sorted(np.asarray(counts)[x].tolist()) for x in batches] == [[5, 5, 6], [7, 48, 49], [50]]
    capped = list(DynamicBatcher(counts, batch_size=10, max_tokens=100))
    assert all(len(x) * max(np.asarray(counts)[x]) <= 100 for x in capped)
    assert b.padding_fraction() < 0.5
    with pytest.raises(ValueError, match="max_tokens"):
        DynamicBatcher(counts, max_tokens=10)
    with pytest.raises(ValueError, match="batch_size"):
        DynamicBatcher(counts, batch_size=0)


def test_load_torch_file_and_refuse_code_pickle(tmp_path, loaded):
    sd, _ = loaded
    ok = tmp_path / "vit.pth"
    torch.save({"model": sd}, ok)
    assert torch.equal(read_state_dict(ok)["pos_embed"], sd["pos_embed"])
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pth"
    torch.save({"x": _Evil(str(marker))}, bad)
    with pytest.raises(ValueError, match="refusing"):
        read_state_dict(bad)
    assert not marker.exists()
    with pytest.raises(ValueError, match="path"):
        read_state_dict(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="timm"):
        load_model("vit_tiny_patch16_224_not_a_file")  # no timm here -> clear error, no download


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_presets_and_validation():
    m = create_model("ViT-Ti", device="cpu", depth=1)
    assert m.config.dim == 192 and m.config.heads == 3 and not m.pretrained
    assert m.pos_embed.shape == (1, 197, 192)
    assert ViTConfig(img_size=30, patch_size=8).grid_size == 3  # a remainder is left out, as timm's conv does
    for kw, name in [({"img_size": 4, "patch_size": 8}, "img_size"), ({"dim": 10, "heads": 3}, "dim"),
                     ({"pos_mode": "sincos"}, "pos_mode")]:
        with pytest.raises(ValueError, match=name):
            ViTConfig(**kw)
    with pytest.raises(ValueError, match="preset"):
        create_model("ViT-H")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_gpu_agreement(loaded):
    _, model = loaded
    rng = np.random.default_rng(4)
    imgs = rng.random((3, IMG, IMG, 3), dtype=np.float32)
    lays = [adapatch.quadtree(im, min_size=4, max_size=16, budget=b, importance="std") for im, b in zip(imgs, (10, 25, 40))]
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    with torch.no_grad():
        cpu = model.cpu()(x, lays)
        gpu = model.cuda()(x.cuda(), lays).cpu()
    model.cpu()
    torch.testing.assert_close(gpu, cpu, atol=1e-4, rtol=1e-4)
