"""Checkpoint loading cannot be made to build a model bigger than the file, fails in one line,
and the small source fixes around it (suffix case, device "auto", cached string models, timm names)."""

from __future__ import annotations

import io
import json
import sys
import types

import numpy as np
import pytest
import torch
from safetensors.torch import save

import adapatch as ap
from adapatch.model import ViTConfig, VisionTransformer, create_model, load_model, load_model_bytes, save_model
from adapatch.model import weights
from adapatch.model.weights import check_state_dict, config_param_count, load_timm


def _small_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return create_model("ViT-Ti", device="cpu", img_size=32, depth=2, num_classes=10)


@pytest.fixture(scope="module")
def vit() -> VisionTransformer:
    return _small_vit()


@pytest.fixture
def nothing_built(monkeypatch):
    """Building any VisionTransformer from weights.py with memory fails the test (a refusal must come
    first); a build on the ``meta`` device (shapes only, no memory) is how the check reads shapes."""
    real = weights.VisionTransformer

    def refuse(*a, **k):
        if torch.get_default_device().type != "meta":
            raise AssertionError("a VisionTransformer was built before the config was checked")
        return real(*a, **k)
    monkeypatch.setattr(weights, "VisionTransformer", refuse)


def _with_meta(sd: dict, meta: str) -> bytes:
    return save({k: v.contiguous() for k, v in sd.items()}, metadata={"adapatch.config": meta})


def _one_line_error(data: bytes, name: str, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        load_model_bytes(data, name, device="cpu")
    assert "\n" not in str(info.value) and len(str(info.value)) <= 300


@pytest.mark.parametrize("patch,match", [
    ({"dim": 3 * 10 ** 7}, "dim must be"),  # a width that would need petabytes
    ({"dim": 4096, "heads": 16}, "needs .* parameters but the file holds only"),
    ({"depth": 256}, "needs .* parameters but the file holds only"),
    ({"mlp_ratio": 64.0}, "needs .* parameters but the file holds only"),
    ({"img_size": 1024}, "needs .* parameters but the file holds only"),
    ({"num_classes": 5}, r"head.weight is \[10, 192\], the config needs \[5, 192\]"),
    ({"mean": 5}, "mean must be 3 numbers"),
    ({"std": [1, 2]}, "std must be 3 numbers"),
    ({"std": [0.5, "a", 0.5]}, r"std\[1\] must be a number"),
    ({"mlp_ratio": "big"}, "mlp_ratio must be a number"),
    ({"depth": 2.5}, "depth must be an integer"),
    ({"qkv_bias": "yes"}, "qkv_bias must be"),
    ({"pos_mode": ["interp"]}, "pos_mode must be"),
])
def test_malformed_or_oversized_metadata_is_refused_before_building(vit, nothing_built, patch, match) -> None:
    meta = json.dumps({**vit.config.to_dict(), **patch})
    _one_line_error(_with_meta(vit.state_dict(), meta), "m.safetensors", match)


@pytest.mark.parametrize("meta,match", [("[1, 2]", "must be a JSON object"), ("{", "not JSON"),
                                        ("[" * 100_000, "not JSON"), ("7", "must be a JSON object")],
                         ids=["list", "truncated", "deeply-nested", "number"])
def test_metadata_that_is_not_a_config_object(vit, nothing_built, meta, match) -> None:
    _one_line_error(_with_meta(vit.state_dict(), meta), "m.safetensors", match)


def test_inferred_config_is_checked_against_every_block(vit, nothing_built) -> None:
    sd = dict(vit.state_dict())
    sd["blocks.255.attn.qkv.weight"] = torch.zeros(3, 3)  # depth 256 claimed by a key name
    _one_line_error(save(sd), "deep.safetensors", "needs .* parameters|missing 'blocks.2.attn.qkv.weight'")
    sd = dict(vit.state_dict())
    sd["cls_token"] = torch.zeros(1, 1, 8192)  # width claimed by one 32 KB tensor
    _one_line_error(save(sd), "wide.safetensors", r"needs .* parameters|cls_token is \[1, 1, 8192\]")
    sd = dict(vit.state_dict())
    sd["patch_embed.proj.weight"] = torch.zeros(8192, 3, 1, 1)  # the width tensor itself, 96 KB
    _one_line_error(save(sd), "wide2.safetensors", "needs .* parameters")


def test_stride_zero_views_do_not_count_as_held_values(nothing_built) -> None:
    """A .pt file of expanded views claims every shape of a 2.4 G-parameter ViT in a few KB."""
    cfg = ViTConfig(img_size=224, patch_size=16, dim=4096, depth=12, heads=16, num_classes=1000)
    shapes = {k: v.shape for k, v in _shapes_of(cfg).items()}
    one = torch.zeros(1)
    buf = io.BytesIO()
    torch.save({k: one.expand(*s) if len(s) else one[0] for k, s in shapes.items()}, buf)
    assert len(buf.getvalue()) < 200_000
    _one_line_error(buf.getvalue(), "views.pt", "needs .* parameters but the file holds only")


def _shapes_of(cfg: ViTConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return dict(VisionTransformer(cfg).state_dict())


@pytest.mark.parametrize("kw", [
    {}, {"qkv_bias": False}, {"num_classes": 0}, {"pos_mode": "mlp"}, {"pos_mode": "interp+mlp"},
    {"mlp_ratio": 2.6667, "dim": 96, "heads": 2, "patch_size": 8, "img_size": 40},
])
def test_param_count_formula_matches_the_module(kw) -> None:
    cfg = ViTConfig(**{"img_size": 32, "patch_size": 16, "dim": 48, "depth": 2, "heads": 3, **kw})
    with torch.device("meta"):
        model = VisionTransformer(cfg)
    assert config_param_count(cfg) == sum(p.numel() for p in model.parameters())


def test_every_failure_is_a_one_line_value_error(monkeypatch) -> None:
    sd = dict(_small_vit().state_dict())
    sd["cls_token"] = torch.tensor(1.0)  # 0-d: shape[-1] would be an IndexError
    _one_line_error(save(sd), "zero_d.safetensors", "cls_token has 0 dimensions")

    def odd(sd, name):
        raise TypeError("odd\nsecond line")
    monkeypatch.setattr(weights, "_tensors_only", odd)
    with pytest.raises(ValueError, match="^a.safetensors could not be read: odd$"):
        weights.read_state_dict_bytes(save(_small_vit().state_dict()), "a.safetensors")


def test_valid_checkpoints_still_load(tmp_path) -> None:
    vit = _small_vit()
    loaded = load_model_bytes(_with_meta(vit.state_dict(), json.dumps(vit.config.to_dict())), "ok.safetensors")
    assert loaded.config == vit.config
    check_state_dict(vit.state_dict(), vit.config)
    half = {k: v.half() for k, v in vit.state_dict().items()}  # fp16 file: same number of values
    assert load_model_bytes(save(half), "half.safetensors", device="cpu", preprocess="half").config.dim == 192
    with pytest.raises(ValueError, match="preprocess="):  # a bare state dict does not say how to normalise
        load_model_bytes(save(half), "half.safetensors", device="cpu")
    imagenet = load_model_bytes(save(half), "half.safetensors", device="cpu", preprocess="imagenet").config
    assert imagenet.mean == weights.IMAGENET_MEAN and imagenet.std == weights.IMAGENET_STD


def test_upper_case_suffix_loads_from_a_path(tmp_path) -> None:
    vit = _small_vit()
    path = tmp_path / "X.SAFETENSORS"
    save_model(vit, path)
    loaded = load_model(str(path), device="cpu")
    assert loaded.config == vit.config  # metadata read: the suffix is compared lower-cased
    assert set(weights.read_state_dict(path)) == set(vit.state_dict())
    pt = tmp_path / "Y.PTH"
    torch.save(vit.state_dict(), pt)
    assert load_model(str(pt), device="cpu", preprocess="half").config.dim == 192


def test_resolve_model_accepts_device_auto() -> None:
    from adapatch.model import TASK, resolve_model
    assert resolve_model(TASK, device="auto") is resolve_model(TASK, device="auto")


def test_attention_saliency_by_name_loads_the_checkpoint_once(tmp_path, monkeypatch) -> None:
    from adapatch.model import sources
    vit = _small_vit()
    vit.pretrained = True
    path = tmp_path / "trained.safetensors"
    save_model(vit, path)
    calls = []
    real = weights.load_model
    monkeypatch.setattr(weights, "load_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    sources._loaded_model.cache_clear()
    img = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    a = ap.saliency(img, "attention", model=str(path))
    b = ap.saliency(img, "attention", model=str(path))
    np.testing.assert_array_equal(a, b)
    assert len(calls) == 1
    save_model(vit, path)  # the file changed: read again
    import os
    os.utime(path, ns=(1, 1))
    ap.saliency(img, "attention", model=str(path))
    assert len(calls) == 2
    sources._loaded_model.cache_clear()


def _fake_timm(model) -> types.ModuleType:
    mod = types.ModuleType("timm")
    mod.calls = []

    def create_model_(name: str, pretrained: bool = False, **kw):
        mod.calls.append(name)
        return model
    mod.create_model = create_model_
    mod.is_model = lambda name: True
    return mod


def test_timm_names_outside_vit_and_deit_are_refused_without_asking_timm(monkeypatch) -> None:
    fake = _fake_timm(_small_vit())
    monkeypatch.setitem(sys.modules, "timm", fake)
    for name in ("resnet50", "convnext_tiny", "swin_base_patch4_window7_224"):
        with pytest.raises(ValueError, match=r"vit_\*/deit_\*") as info:
            load_timm(name, device="cpu")
        assert "\n" not in str(info.value)
    assert fake.calls == []  # loading real timm models is tested against the real timm (tests/test_timm_models.py)


def test_non_vit_timm_model_is_a_one_line_value_error(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", _fake_timm(torch.nn.Linear(2, 2)))  # no .blocks, no cls_token
    with pytest.raises(ValueError, match="vit_oddball is refused: .*Linear") as info:
        load_timm("vit_oddball", device="cpu")
    assert "\n" not in str(info.value)


def test_app_constants_come_from_the_library() -> None:
    import inspect

    from adapatch.app_support import model_source
    from adapatch.model import sources
    assert {"." + t for t in model_source.CHECKPOINT_TYPES} == set(weights.CHECKPOINT_SUFFIXES)
    # no hard-wired model device: the app loads models on the selected one, the library defaults to "auto"
    assert not hasattr(model_source, "MODEL_DEVICE") and not hasattr(sources, "MODEL_DEVICE")
    assert inspect.signature(sources.resolve_model).parameters["device"].default == "auto"
    assert 'device="cpu"' not in inspect.getsource(model_source)


def test_checkpoint_name_keeps_names_without_a_suffix() -> None:
    from adapatch.app_support.model_source import checkpoint_name
    assert checkpoint_name("noext") == "noext"
    assert checkpoint_name("X.SAFETENSORS") == "X.SAFETENSORS"
    assert checkpoint_name("a\nb.pth") == "ab.pth"
