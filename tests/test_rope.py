"""``adapatch.model.rope`` without timm: the properties rotary embeddings at patch centres must have.

(The bit-exact comparison with timm's own tables is ``test_rope_timm.py``, run in the timm venv.)
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from adapatch.model.rope import (
    RopeConfig,
    RopeEmbedding,
    apply_rope,
    centers_from_boxes,
    centers_from_normalized,
    grid_centers,
    layer_rope,
    rope_bands,
    rope_embedding,
    rope_positions,
)
from adapatch.model.timm.rope import rope_config_from_timm

# one config per kind and per grid flavour (as timm's RoPE ViTs use them, plus the other options)
CONFIGS = {
    "cat_index_xy": RopeConfig(kind="cat", head_dim=16, temperature=100.0, grid_indexing="xy"),
    "cat_pe": RopeConfig(kind="cat", head_dim=16, grid_offset=1.0, grid_indexing="xy", ref_feat_shape=(14, 14)),
    "cat_pixel": RopeConfig(kind="cat", head_dim=16, in_pixels=True, grid_type="pixel", linear_bands=True),
    "cat_centered": RopeConfig(kind="cat", head_dim=16, grid_type="centered", normalize_coords="max", rotate_half=True),
    "dinov3": RopeConfig(kind="dinov3", head_dim=16, temperature=100.0, rotate_half=True),
    "dinov3_periods": RopeConfig(kind="dinov3", head_dim=16, temperature=None, min_period=0.5, max_period=30.0,
                                 normalize_coords="min", grid_offset=0.5),
    "mixed": RopeConfig(kind="mixed", head_dim=16, num_heads=2, depth=3, temperature=10.0, grid_indexing="xy"),
    "mrope": RopeConfig(kind="mrope", head_dim=16, rotate_half=True, mrope_section=(2, 3, 3)),
}
INDEX_KINDS = ["cat_index_xy", "mixed", "mrope"]  # positions = plain cell indices (no grid-size scaling)


def _emb(name: str, centers: torch.Tensor, grid=(6, 8), dtype=None) -> torch.Tensor:
    cfg = CONFIGS[name]
    mod = RopeEmbedding(cfg)
    if mod.freqs is not None:
        torch.manual_seed(0)
        mod.reset_parameters()
    return mod.to(centers.device)(centers, grid, dtype=dtype)


def _random_centers(n: int, grid=(6, 8), seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 2, generator=g, dtype=torch.float64).mul(torch.tensor(grid, dtype=torch.float64)).to(dtype)


# ------------------------------------------------------------------------------ the numbers

def test_hand_computed_table():
    """cat, 'ij', temperature 10000, head_dim 8: bands (1, 1/100); centre (1.5, 2.5) -> position (1, 2)."""
    cfg = RopeConfig(kind="cat", head_dim=8)
    torch.testing.assert_close(rope_bands(cfg), torch.tensor([1.0, 0.01]))
    emb = rope_embedding(cfg, torch.tensor([[1.5, 2.5]]), (4, 4))
    ang = torch.tensor([1.0, 0.01, 2.0, 0.02]).repeat_interleave(2)
    torch.testing.assert_close(emb, torch.cat([ang.sin(), ang.cos()])[None], atol=1e-7, rtol=0)
    half = rope_embedding(RopeConfig(kind="cat", head_dim=8, rotate_half=True), torch.tensor([[1.5, 2.5]]), (4, 4))
    a4 = torch.tensor([1.0, 0.01, 2.0, 0.02])
    torch.testing.assert_close(half, torch.cat([a4.sin(), a4.sin(), a4.cos(), a4.cos()])[None], atol=1e-7, rtol=0)
    xy = rope_embedding(RopeConfig(kind="cat", head_dim=8, grid_indexing="xy"), torch.tensor([[1.5, 2.5]]), (4, 4))
    ang_xy = torch.tensor([2.0, 0.02, 1.0, 0.01]).repeat_interleave(2)  # column's channels first
    torch.testing.assert_close(xy, torch.cat([ang_xy.sin(), ang_xy.cos()])[None], atol=1e-7, rtol=0)


def test_grid_positions_by_type():
    c = grid_centers((3, 5))
    idx = rope_positions(RopeConfig(kind="cat", head_dim=8, grid_offset=1.0), c, (3, 5))
    assert idx[:, 0].tolist() == [1.0] * 5 + [2.0] * 5 + [3.0] * 5 and idx[:5, 1].tolist() == [1, 2, 3, 4, 5]
    pix = rope_positions(RopeConfig(kind="cat", head_dim=8, in_pixels=True, grid_type="pixel"), c, (3, 5))
    torch.testing.assert_close(pix[:5, 1], torch.linspace(-1, 1, 5), atol=0, rtol=0)
    torch.testing.assert_close(pix[::5, 0], torch.linspace(-1, 1, 3), atol=0, rtol=0)
    cen = rope_positions(CONFIGS["dinov3"], c, (3, 5))
    torch.testing.assert_close(cen[:5, 1], (torch.arange(5) + 0.5) / 5 * 2 - 1)
    ref = rope_positions(RopeConfig(kind="cat", head_dim=8, ref_feat_shape=(6, 10)), c, (3, 5))
    torch.testing.assert_close(ref, (c - 0.5) * 2)


# --------------------------------------------------------------------------------- shapes

@pytest.mark.parametrize("name", list(CONFIGS))
def test_shapes(name):
    cfg = CONFIGS[name]
    d = 2 * cfg.head_dim
    one = _emb(name, grid_centers((6, 8)))
    many = _emb(name, grid_centers((6, 8)).expand(3, -1, -1))
    if cfg.per_layer:
        assert one.shape == (cfg.depth, cfg.num_heads, 48, d)
        assert many.shape == (cfg.depth, 3, cfg.num_heads, 48, d)
        torch.testing.assert_close(many[:, 2], one, atol=0, rtol=0)
        assert layer_rope(many, 1, True).shape == (3, cfg.num_heads, 48, d)
    else:
        assert one.shape == (48, d)
        assert many.shape == (3, 1, 48, d)
        torch.testing.assert_close(many[2, 0], one, atol=0, rtol=0)
        assert layer_rope(many, 1, False) is many


# ------------------------------------------------------------------------- prefix tokens

@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("npt", [0, 1, 5])
def test_prefix_tokens_unchanged(name, npt):
    cfg = CONFIGS[name]
    c = _random_centers(7)[None].expand(2, -1, -1)
    emb = layer_rope(_emb(name, c), 0, cfg.per_layer)
    heads = cfg.num_heads or 3
    q = torch.randn(2, heads, npt + 7, cfg.head_dim)
    out = apply_rope(q, emb, npt, cfg.rotate_half)
    assert out.shape == q.shape and out.dtype == q.dtype
    torch.testing.assert_close(out[:, :, :npt], q[:, :, :npt], atol=0, rtol=0)
    assert not torch.allclose(out[:, :, npt:], q[:, :, npt:])
    # a rotation: lengths of each rotated pair, hence of the vector, are kept
    torch.testing.assert_close(out.norm(dim=-1), q.norm(dim=-1), atol=1e-5, rtol=1e-5)


def test_apply_rope_refuses_mismatch():
    emb = rope_embedding(CONFIGS["cat_index_xy"], grid_centers((2, 2)), (2, 2))
    with pytest.raises(ValueError, match="head size"):
        apply_rope(torch.randn(1, 1, 5, 8), emb, 1)
    with pytest.raises(ValueError, match="positions"):
        apply_rope(torch.randn(1, 1, 6, 16), emb, 1)
    with pytest.raises(ValueError, match="num_prefix_tokens"):
        apply_rope(torch.randn(1, 1, 5, 16), emb, 9)


# ---------------------------------------------------------------- a function of position

@pytest.mark.parametrize("name", INDEX_KINDS)
@pytest.mark.parametrize("k", [1, 3])
def test_shifting_centres_is_shifting_rows(name, k):
    """'index' grids: the uniform grid shifted down by k cells is the taller grid's rows k..,
    exactly, and a patch's table depends on its centre only (not on the others, nor the order)."""
    h, w = 4, 5
    shifted = _emb(name, grid_centers((h, w)) + torch.tensor([float(k), 0.0]))
    taller = _emb(name, grid_centers((h + k, w)))
    torch.testing.assert_close(shifted, taller[..., k * w:, :], atol=0, rtol=0)
    perm = torch.randperm(h * w, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(_emb(name, grid_centers((h, w))[perm]), taller[..., :h * w, :][..., perm, :],
                               atol=0, rtol=0)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_relative_positions(name):
    """RoPE's defining property: after rotation q . k depends only on the offset between the two
    tokens (every timm grid is affine in the centre at a fixed grid size, so this holds for all)."""
    cfg = CONFIGS[name]
    a, b = _random_centers(6, seed=2, dtype=torch.float64), _random_centers(6, seed=3, dtype=torch.float64)
    shift = torch.tensor([1.75, -0.6], dtype=torch.float64)
    heads = cfg.num_heads or 1
    q = torch.randn(heads, 6, cfg.head_dim, dtype=torch.float64)
    k = torch.randn(heads, 6, cfg.head_dim, dtype=torch.float64)

    def dots(ca, cb):
        ea, eb = layer_rope(_emb(name, ca), 1, cfg.per_layer), layer_rope(_emb(name, cb), 1, cfg.per_layer)
        return (apply_rope(q, ea, 0, cfg.rotate_half) * apply_rope(k, eb, 0, cfg.rotate_half)).sum(-1)

    base = dots(a, b)
    torch.testing.assert_close(dots(a + shift, b + shift), base, atol=1e-9, rtol=1e-9)
    if name in INDEX_KINDS:  # and the plain angle offset: zero offset means no rotation of the dot
        same = dots(a, a)
        torch.testing.assert_close(same, (q * k).sum(-1), atol=1e-9, rtol=1e-9)


def test_merged_patch_sits_at_the_mean_of_its_cells():
    """A 2x2-cell patch's position (every grid type) is the mean of the four cells' positions."""
    boxes = torch.tensor([[32, 48, 32]])  # y, x, size in pixels; patch size 16 -> cells (2..3, 3..4)
    c = centers_from_boxes(boxes, 16, dtype=torch.float64)
    cells = torch.tensor([[2.5, 3.5], [2.5, 4.5], [3.5, 3.5], [3.5, 4.5]], dtype=torch.float64)
    torch.testing.assert_close(c, torch.tensor([[3.0, 4.0]], dtype=torch.float64))
    for name, cfg in CONFIGS.items():
        pos_patch = rope_positions(cfg, c, (6, 8))
        pos_cells = rope_positions(cfg, cells, (6, 8)).mean(0, keepdim=True)
        torch.testing.assert_close(pos_patch, pos_cells, atol=1e-12, rtol=0, msg=name)


# ------------------------------------------------------------------------- layouts

def _half_to_interleaved_perm(hd: int) -> torch.Tensor:
    """Index map: interleaved channel (2k, 2k+1) <- half-layout channel (k, k + hd/2)."""
    perm = torch.empty(hd, dtype=torch.long)
    perm[0::2] = torch.arange(hd // 2)
    perm[1::2] = torch.arange(hd // 2) + hd // 2
    return perm


@pytest.mark.parametrize("name", ["cat_index_xy", "cat_pe", "dinov3", "dinov3_periods"])
def test_half_and_interleaved_layouts_agree(name):
    """The same rotation in either layout: rotating a half-layout vector with the half table
    equals rotating its interleaved re-ordering with the interleaved table."""
    base = CONFIGS[name].to_dict()
    cfg_i = RopeConfig.from_dict({**base, "rotate_half": False})
    cfg_h = RopeConfig.from_dict({**base, "rotate_half": True})
    c = _random_centers(9)
    ei, eh = rope_embedding(cfg_i, c, (6, 8)), rope_embedding(cfg_h, c, (6, 8))
    hd = cfg_i.head_dim
    perm = _half_to_interleaved_perm(hd)
    x_half = torch.randn(2, 9, hd)
    out_h = apply_rope(x_half, eh, 0, True)
    out_i = apply_rope(x_half[..., perm], ei, 0, False)
    torch.testing.assert_close(out_i, out_h[..., perm], atol=1e-6, rtol=1e-6)


# ------------------------------------------------------------------ dtype and device

@pytest.mark.parametrize("name", list(CONFIGS))
def test_float32_and_float64_agree(name):
    c = _random_centers(20, dtype=torch.float64)
    e64 = _emb(name, c)
    e32 = _emb(name, c.float())
    assert e64.dtype == torch.float64 and e32.dtype == torch.float32
    # float32 rounds angles to ~1e-7 relative; pixel bands reach pi * max_res / 2 ~ 350 rad
    torch.testing.assert_close(e32.double(), e64, atol=2e-4 if CONFIGS[name].in_pixels else 2e-5, rtol=0)
    # low-precision centres are computed in float32; an explicit output dtype is honoured
    eb = _emb(name, c.to(torch.bfloat16), dtype=torch.float16)
    assert eb.dtype == torch.float16
    q = torch.randn(1, 2, 20, CONFIGS[name].head_dim, dtype=torch.bfloat16)
    assert apply_rope(q, layer_rope(eb, 0, CONFIGS[name].per_layer), 0, CONFIGS[name].rotate_half).dtype == torch.bfloat16


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.gpu
@pytest.mark.parametrize("name", list(CONFIGS))
def test_cuda_matches_cpu(name):
    c = _random_centers(30)
    torch.testing.assert_close(_emb(name, c.cuda()).cpu(), _emb(name, c), atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- centres

def test_centres_from_boxes_and_normalised_coordinates():
    p, h, w = 16, 224, 320
    ys, xs = np.meshgrid(np.arange(0, h, p), np.arange(0, w, p), indexing="ij")
    boxes = np.stack([ys.ravel(), xs.ravel(), np.full(ys.size, p)], 1)
    c = centers_from_boxes(boxes, p)
    torch.testing.assert_close(c, grid_centers((h // p, w // p)), atol=0, rtol=0)
    norm = torch.tensor(np.stack([(boxes[:, 0] + p / 2) / h, (boxes[:, 1] + p / 2) / w], 1), dtype=torch.float32)
    torch.testing.assert_close(centers_from_normalized(norm, (h, w), p), c, atol=0, rtol=0)
    odd = torch.tensor([[(5 + 3.5) / h, (7 + 3.5) / w]], dtype=torch.float32)  # a 7-pixel box at (5, 7)
    torch.testing.assert_close(centers_from_normalized(odd, (h, w), p), torch.tensor([[8.5 / p, 10.5 / p]]))


# ------------------------------------------------------------------------- the config

def test_config_json_round_trip():
    for cfg in CONFIGS.values():
        assert RopeConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert RopeConfig.from_dict(CONFIGS["cat_pe"]).ref_feat_shape == (14, 14)


@pytest.mark.parametrize("kw,match", [
    (dict(kind="axial"), "kind 'axial'"),
    (dict(kind="cat", head_dim=18), "multiple of 4"),
    (dict(kind="cat", grid_type="polar"), "grid_type"),
    (dict(kind="cat", grid_indexing="yx"), "grid_indexing"),
    (dict(kind="cat", normalize_coords="mean"), "normalize_coords"),
    (dict(kind="mixed"), "num_heads"),
    (dict(kind="mixed", num_heads=2, depth=2, rotate_half=True), "rotate_half"),
    (dict(kind="dinov3", ref_feat_shape=(4, 4), rotate_half=True, temperature=100.0), "ref_feat_shape"),
    (dict(kind="dinov3", temperature=None), "temperature"),
    (dict(kind="mrope", rotate_half=True, grid_indexing="xy"), "grid_indexing='xy'"),
    (dict(kind="mrope", rotate_half=False), "rotate_half"),
    (dict(kind="cat", temperature=-1.0), "temperature"),
    (dict(kind="cat", ref_feat_shape=(4, 4, 4)), "ref_feat_shape"),
])
def test_config_refusals(kw, match):
    with pytest.raises(ValueError, match=match) as e:
        RopeConfig(**kw)
    assert "\n" not in str(e.value)


def test_from_dict_refuses_unknown_keys_and_module_checks_the_model():
    with pytest.raises(ValueError, match="unknown rope config keys: frobnicate"):
        RopeConfig.from_dict({"kind": "cat", "frobnicate": 1})
    with pytest.raises(ValueError, match="head size"):
        RopeEmbedding(CONFIGS["cat_pe"], head_dim=32)
    with pytest.raises(ValueError, match="depth"):
        RopeEmbedding(CONFIGS["mixed"], depth=12)
    mixed = RopeEmbedding({"kind": "mixed", "head_dim": 16}, heads=4, head_dim=16, depth=2)  # completed by the ViT
    assert tuple(mixed.freqs.shape) == (2, 2, 4, 8) and list(mixed.state_dict()) == ["freqs"]
    assert list(RopeEmbedding(CONFIGS["dinov3"]).state_dict()) == []
    with pytest.raises(ValueError, match="unsupported rotary embedding Linear"):
        rope_config_from_timm(torch.nn.Linear(2, 2))


def test_grid_shape_and_centres_are_checked():
    cfg = CONFIGS["cat_pe"]
    with pytest.raises(ValueError, match="grid_shape"):
        rope_embedding(cfg, grid_centers((2, 2)), (0, 2))
    with pytest.raises(ValueError, match="grid_shape"):
        rope_embedding(cfg, grid_centers((2, 2)), (2,))
    with pytest.raises(ValueError, match="centers"):
        rope_embedding(cfg, torch.zeros(4, 3), (2, 2))
    with pytest.raises(ValueError, match="freqs"):
        rope_embedding(CONFIGS["mixed"], grid_centers((2, 2)), (2, 2))
    # non-integer grids (an image that is not a multiple of the patch size) continue the formulas
    a = rope_embedding(cfg, grid_centers((2, 2)), (14.5, 14.5))
    b = rope_embedding(cfg, grid_centers((2, 2)), (14, 14))
    assert torch.isfinite(a).all() and not torch.allclose(a, b)
    assert math.isclose(float(rope_positions(cfg, torch.tensor([[0.5, 0.5]]), (14.5, 14.5))[0, 0]), 14 / 14.5,
                        rel_tol=1e-6)
