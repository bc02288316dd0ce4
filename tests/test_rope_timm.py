"""``adapatch.model.rope`` against the real timm (run in the timm venv: ``pytest -m timm``).

For every RoPE architecture ``timm.list_models`` has among ``vit_*`` (and ``eva02_*``) of the
``eva`` module: build it on the ``meta`` device with two blocks (nothing is materialised, the 5B/7B
included), read its ``RopeConfig`` there, materialise only its rope module on the CPU, and check
that the rotary table of the uniform grid equals the one ``Eva`` feeds its blocks, bit for bit (and
a non-square grid where timm can rebuild for one). A few small models run a real forward to check
what each block receives (per block for RoPE-Mixed) and that ``apply_rope`` equals timm's attention
arithmetic. Directly built rope modules cover the options no registered model uses. Adapts to the
timm version (1.0.x and 0.9.16, whose Eva has only ``eva02_*`` RoPE models).
"""

from __future__ import annotations

import inspect
import json

import pytest
import torch

pytestmark = [pytest.mark.timm]
timm = pytest.importorskip("timm")

from timm.layers import pos_embed_sincos as pes

from adapatch.model.rope import (
    RopeConfig,
    RopeEmbedding,
    apply_rope,
    grid_centers,
    layer_rope,
    rope_embedding,
)
from adapatch.model.timm.rope import rope_config_from_timm

ATOL = 1e-6


def _eva_rope_models() -> list[str]:
    eva = set(timm.list_models(module="eva"))
    return [m for m in timm.list_models("vit_*") + timm.list_models("eva02_*") if m in eva]


MODELS = _eva_rope_models()


def _create(name: str, **kw) -> torch.nn.Module:
    try:
        return timm.create_model(name, pretrained=False, depth=2, **kw)
    except (AssertionError, ValueError, TypeError):
        # per-block grouped-query settings (Sapiens2) are sized for the full depth
        return timm.create_model(name, pretrained=False, depth=2, num_kv_heads=1, **kw)


HUGE = ("enormous", "giant", "gigantic", "_5b_", "_7b_")


def _meta_model(name: str) -> torch.nn.Module:
    """``name`` with two blocks on the meta device; weight init (meaningless there, and slow) skipped.

    Old timm (0.9) cannot build an Eva on meta (it reads drop-path rates with ``.item()``): small
    models are then built on the CPU, huge ones skipped."""
    from contextlib import ExitStack
    from unittest import mock

    from timm.models import eva

    with ExitStack() as stack:
        stack.enter_context(mock.patch.object(eva, "trunc_normal_", lambda *a, **k: None))
        if hasattr(eva.Eva, "init_weights"):
            stack.enter_context(mock.patch.object(eva.Eva, "init_weights", lambda *a, **k: None))
        try:
            with torch.device("meta"):
                return _create(name)
        except RuntimeError as e:
            if "meta" not in str(e):
                raise
    if any(h in name for h in HUGE):
        pytest.skip(f"this timm cannot build {name} on the meta device, and it is too large to materialise")
    return _create(name)


def _materialise(rope: torch.nn.Module) -> torch.nn.Module:
    """A CPU copy of a meta-built timm rope module (same class, same settings)."""
    if hasattr(rope, "init_non_persistent_buffers"):
        rope.to_empty(device="cpu")
        rope.init_non_persistent_buffers()
        if getattr(rope, "freqs", None) is not None:
            with torch.no_grad():
                rope.freqs.copy_(torch.randn_like(rope.freqs))
        return rope.eval()
    # old timm (0.9.x): rebuild from what Eva passed to the constructor
    assert type(rope).__name__ == "RotaryEmbeddingCat"
    return type(rope)(rope.dim, max_res=rope.max_res, temperature=rope.temperature, in_pixels=rope.in_pixels,
                      feat_shape=rope.feat_shape, ref_feat_shape=rope.ref_feat_shape).eval()


def _eva_table(model: torch.nn.Module, rope: torch.nn.Module, grid: tuple[int, int]) -> torch.Tensor:
    """What ``Eva._pos_embed`` hands the blocks (eval mode, no patch dropout)."""
    if getattr(model, "dynamic_img_size", False) or getattr(rope, "feat_shape", "absent") is None:
        return rope.get_embed(shape=grid)
    if hasattr(rope, "feat_shape"):
        return rope.get_embed()
    return rope.get_embed(shape=grid)


def _freqs(rope: torch.nn.Module) -> torch.Tensor | None:
    return getattr(rope, "freqs", None)


# ------------------------------------------------------------------------------ every model

def test_models_found():
    assert MODELS, "timm lists no eva models"
    if hasattr(pes, "RotaryEmbeddingDinoV3"):  # timm 1.0.x with the RoPE ViT zoo
        for family in ("rope_mixed", "_pe_", "dinov3", "sapiens2", "lingbot", "rope_reg"):
            assert any(family in m for m in MODELS), family


@pytest.mark.parametrize("name", MODELS)
def test_uniform_grid_matches_timm(name):
    model = _meta_model(name)
    rope = getattr(model, "rope", None)
    if rope is None:
        pytest.skip(f"{name} has no rotary embedding")
    cfg = rope_config_from_timm(rope, model)  # read on the meta device
    assert RopeConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    real = _materialise(rope)
    assert rope_config_from_timm(real, verify=True) == cfg  # the real tables agree with the meta read
    ref = _eva_table(model, real, grid)
    mine = rope_embedding(cfg, grid_centers(grid), grid, freqs=_freqs(real))
    assert mine.shape == ref.shape
    torch.testing.assert_close(mine, ref, atol=ATOL, rtol=0)
    # the module form, batched: [B, 1, N, D] (or [depth, B, heads, N, D] for mixed)
    emb = RopeEmbedding(cfg, head_dim=cfg.head_dim)
    if emb.freqs is not None:
        with torch.no_grad():
            emb.freqs.copy_(real.freqs)
    centers = grid_centers(grid).expand(2, -1, -1)
    out = emb(centers, grid)
    if cfg.per_layer:
        assert out.shape == (cfg.depth, 2) + ref.shape[1:]
        torch.testing.assert_close(out[:, 1], ref, atol=ATOL, rtol=0)
    else:
        assert out.shape == (2, 1) + ref.shape
        torch.testing.assert_close(out[1, 0], ref, atol=ATOL, rtol=0)
    # a non-square grid, where this timm can rebuild the table for another shape
    other = (14, 20)
    if getattr(real, "feat_shape", None) is not None and hasattr(real, "update_feat_shape") and cfg.kind == "cat":
        real.update_feat_shape(other)
        ref2 = real.get_embed()
    elif cfg.kind != "cat" or getattr(real, "feat_shape", None) is None:
        ref2 = real.get_embed(shape=other)
    else:
        return  # old timm, cached table: covered by the direct-module variants below
    mine2 = rope_embedding(cfg, grid_centers(other), other, freqs=_freqs(real))
    torch.testing.assert_close(mine2, ref2, atol=ATOL, rtol=0)


# ---------------------------------------------------------------------- forward path, small

FORWARD = [
    "vit_small_patch16_rope_224",  # cat, 'xy', temperature 100
    "vit_medium_patch16_rope_reg1_gap_256",  # cat, a register token, EvaAttention, ref_feat_shape
    "vit_pe_core_tiny_patch16_384",  # cat, grid_offset 1, 'xy', ref_feat_shape
    "vit_small_patch16_rope_mixed_224",  # mixed: one table per block
    "vit_tiny_patch16_dinov3_qkvb",  # dinov3, 4 registers, rotate_half
    "eva02_tiny_patch14_224",  # EVA-02 (also in timm 0.9)
]


@pytest.mark.parametrize("name", [m for m in FORWARD if m in MODELS])
def test_blocks_receive_our_tables(name):
    torch.manual_seed(0)
    model = _create(name, num_classes=0).eval()
    cfg = rope_config_from_timm(model.rope, model)
    seen = []

    def grab(_mod, _args, kwargs):
        seen.append(kwargs.get("rope"))

    for blk in model.blocks:
        blk.register_forward_pre_hook(grab, with_kwargs=True)
    h, w = model.patch_embed.img_size
    with torch.no_grad():
        model(torch.randn(1, 3, h, w))
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    attn = model.blocks[0].attn
    heads = attn.num_heads
    hd = getattr(attn, "head_dim", model.embed_dim // heads)  # timm 0.9's EvaAttention keeps no head_dim
    rope = RopeEmbedding(cfg, heads=heads, head_dim=hd, depth=len(model.blocks))
    if rope.freqs is not None:
        with torch.no_grad():
            rope.freqs.copy_(model.rope.freqs)
    tables = rope(grid_centers(grid)[None], grid)  # batched
    assert len(seen) == len(model.blocks)
    npt = model.num_prefix_tokens
    for i, got in enumerate(seen):
        mine = layer_rope(tables, i, rope.per_layer)
        assert mine.shape == ((1, heads) if rope.per_layer else (1, 1)) + got.shape[-2:]
        torch.testing.assert_close(mine.reshape(got.shape), got, atol=ATOL, rtol=0)
        # timm's attention arithmetic on random q, prefix tokens left alone
        q = torch.randn(2, heads, npt + grid[0] * grid[1], hd)
        half = bool(getattr(attn, "rotate_half", False))
        ref = torch.cat([q[:, :, :npt], _timm_apply(q[:, :, npt:], got, half)], dim=2)
        torch.testing.assert_close(apply_rope(q, mine, npt, cfg.rotate_half), ref, atol=1e-6, rtol=0)
    # a different token subset per image (pruning): timm's patch-dropout path gathers its table rows
    # into exactly the batched shapes the centres give ([B, 1, k, D], or [depth, B, heads, k, D])
    if "pos_embed_has_batch" in inspect.signature(pes.apply_keep_indices_nlc).parameters:
        n = grid[0] * grid[1]
        gen = torch.Generator().manual_seed(0)
        keep = torch.stack([torch.randperm(n, generator=gen)[: n // 3] for _ in range(2)])
        full = _eva_table(model, model.rope, grid)
        ref = pes.apply_keep_indices_nlc(torch.zeros(2, n // 3, 1), full, keep)
        ref = ref.transpose(0, 1) if rope.per_layer else ref.unsqueeze(1)  # as Eva._pos_embed does
        torch.testing.assert_close(rope(grid_centers(grid)[keep], grid), ref, atol=ATOL, rtol=0)


def _timm_apply(x: torch.Tensor, emb: torch.Tensor, half: bool) -> torch.Tensor:
    if "half" in inspect.signature(pes.apply_rot_embed_cat).parameters:
        return pes.apply_rot_embed_cat(x, emb, half=half)
    assert not half
    return pes.apply_rot_embed_cat(x, emb)


# ------------------------------------------------------------- options beyond the model zoo

def _accepts(cls, kw: dict) -> bool:
    params = inspect.signature(cls.__init__).parameters
    return all(k in params for k in kw)


CAT_VARIANTS = [
    dict(dim=64, in_pixels=True),
    dict(dim=64, in_pixels=True, linear_bands=True, max_res=384),
    dict(dim=32, in_pixels=False, temperature=100),
    dict(dim=32, in_pixels=False, ref_feat_shape=(16, 16)),
    dict(dim=32, in_pixels=True, ref_feat_shape=(10, 12)),
    dict(dim=64, in_pixels=False, grid_offset=1.0, grid_indexing="xy", ref_feat_shape=(14, 14)),
    dict(dim=32, in_pixels=False, rotate_half=True, grid_indexing="xy"),
    dict(dim=32, in_pixels=False, grid_type="centered", normalize_coords="max", grid_offset=0.25),
    dict(dim=32, in_pixels=False, grid_type="centered", normalize_coords="min", ref_feat_shape=(8, 8)),
    dict(dim=32, in_pixels=False, grid_type="centered", grid_indexing="xy"),
    dict(dim=32, in_pixels=True, grid_type="index", grid_offset=0.5),
    dict(dim=32, in_pixels=False, grid_type="pixel", temperature=50.0),
]
SHAPES = [(14, 20), (7, 7), (1, 5)]


@pytest.mark.parametrize("kw", CAT_VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_cat_variants(kw):
    cls = pes.RotaryEmbeddingCat
    if not _accepts(cls, kw):
        pytest.skip("this timm's RotaryEmbeddingCat lacks an option")
    for shape in SHAPES:
        for cached in (False, True):
            mod = cls(**kw, feat_shape=list(shape) if cached else None).eval()
            cfg = rope_config_from_timm(mod)
            ref = mod.get_embed() if cached else mod.get_embed(shape=list(shape))
            torch.testing.assert_close(rope_embedding(cfg, grid_centers(shape), shape), ref, atol=ATOL, rtol=0)
            # the same module on meta: same settings (or a one-line refusal where they are unknowable)
            with torch.device("meta"):
                meta = cls(**kw, feat_shape=list(shape) if cached else None)
            if not hasattr(mod, "linear_bands") and kw.get("in_pixels", True):
                with pytest.raises(ValueError, match="linear_bands"):
                    rope_config_from_timm(meta)
            else:
                assert rope_config_from_timm(meta) == cfg


def test_old_cat_cached_table_ignores_temperature():
    """timm <= 1.0.9 builds a cached table with the default temperature whatever was passed."""
    mod = pes.RotaryEmbeddingCat(32, in_pixels=False, temperature=100, feat_shape=[6, 6])
    cfg = rope_config_from_timm(mod)
    assert cfg.temperature == (100.0 if hasattr(mod, "grid_offset") else 10000.0)
    torch.testing.assert_close(rope_embedding(cfg, grid_centers((6, 6)), (6, 6)), mod.get_embed(), atol=ATOL, rtol=0)


DINO_VARIANTS = [
    dict(dim=64),
    dict(dim=64, min_period=0.5, max_period=40.0, temperature=None),
    dict(dim=32, normalize_coords="max", grid_offset=0.5),
    dict(dim=32, normalize_coords="min", grid_indexing="xy"),
    dict(dim=48, rotate_half=False, temperature=10.0),
]


@pytest.mark.parametrize("kw", DINO_VARIANTS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()))
def test_dinov3_variants(kw):
    cls = getattr(pes, "RotaryEmbeddingDinoV3", None)
    if cls is None or not _accepts(cls, kw):
        pytest.skip("no RotaryEmbeddingDinoV3 (or option) in this timm")
    mod = cls(**kw).eval()
    cfg = rope_config_from_timm(mod)
    for shape in SHAPES:
        torch.testing.assert_close(rope_embedding(cfg, grid_centers(shape), shape), mod.get_embed(shape=list(shape)),
                                   atol=ATOL, rtol=0)
    cached = cls(**kw, feat_shape=[9, 5]).eval()
    torch.testing.assert_close(rope_embedding(rope_config_from_timm(cached), grid_centers((9, 5)), (9, 5)),
                               cached.get_embed(), atol=ATOL, rtol=0)


@pytest.mark.parametrize("indexing", ["xy", "ij"])
def test_mixed_module(indexing):
    cls = getattr(pes, "RotaryEmbeddingMixed", None)
    if cls is None:
        pytest.skip("no RotaryEmbeddingMixed in this timm")
    mod = cls(96, depth=3, num_heads=3, grid_indexing=indexing).eval()
    cfg = rope_config_from_timm(mod)
    assert (cfg.kind, cfg.head_dim, cfg.num_heads, cfg.depth) == ("mixed", 32, 3, 3)
    emb = RopeEmbedding(cfg.to_dict(), heads=3, head_dim=32, depth=3)
    emb.load_state_dict({"freqs": mod.freqs.detach()})  # timm's state-dict key, unchanged
    for shape in SHAPES:
        torch.testing.assert_close(emb(grid_centers(shape), shape), mod.get_embed(shape=list(shape)),
                                   atol=ATOL, rtol=0)


@pytest.mark.parametrize("dim,section", [(64, (8, 12, 12)), (72, (12, 12, 12)), (32, (4, 4, 8))])
def test_mrope_module(dim, section):
    cls = getattr(pes, "RotaryEmbeddingMRope", None)
    if cls is None:
        pytest.skip("no RotaryEmbeddingMRope in this timm")
    try:
        mod = cls(dim, mrope_section=section).eval()
    except AssertionError:
        pytest.skip("this timm's MRoPE refuses the section")
    cfg = rope_config_from_timm(mod)
    assert cfg.kind == "mrope" and cfg.rotate_half
    for shape in SHAPES:
        torch.testing.assert_close(rope_embedding(cfg, grid_centers(shape), shape), mod.get_embed(list(shape)),
                                   atol=ATOL, rtol=0)


def test_refusals():
    if hasattr(pes, "RotaryEmbedding"):
        with pytest.raises(ValueError, match="RotaryEmbedding"):
            rope_config_from_timm(pes.RotaryEmbedding(32, in_pixels=False))
    with pytest.raises(ValueError, match="unsupported rotary embedding Linear"):
        rope_config_from_timm(torch.nn.Linear(2, 2))
