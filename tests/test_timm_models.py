"""adapatch's ViT against the real timm: every ``vit_*``/``deit_*`` architecture loads through the
file path and reproduces timm's outputs, or is refused with one line that names the feature.

Runs in the timm environment (``pytest -m timm``; see README: CI builds it with torch 2.14.1,
torchvision 0.29.1 and the latest timm, and again with timm 0.9.16). Models are built with random
weights (``pretrained=False``) and one block, so the whole list takes a few minutes on 2 cores;
very wide models are narrowed (``embed_dim``) for the numeric check, their real config is still
read off a ``meta``-device build.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.timm

import adapatch as ap  # noqa: E402
from adapatch.model import load_model, load_model_bytes  # noqa: E402
from adapatch.model.timm.build import meta_build, timm_arch_config  # noqa: E402
from adapatch.model.weights import load_timm  # noqa: E402

NAMES = sorted(set(timm.list_models("vit_*") + timm.list_models("deit_*")))
COVERAGE = 0.80 if int(timm.__version__.split(".")[0]) >= 1 else 0.70
"""The share that must load and match: 80% of timm 1.x's list (the issue's bar; 1.0.31: 180 of 222).
timm 0.9.16's shorter list is 29% hybrid-CNN and relpos models, all refused by name, so its bar is
70% (measured 79 of 111; every architecture it does not refuse matches)."""
HEAD_DIM = 32  # the numeric check narrows every model to 32 channels per head


def _build(name: str):
    """A one-block random timm model of ``name``, narrowed to 32 channels per head (the same heads,
    options and input size: only the width shrinks, so the whole list runs in minutes), and its
    kwargs. Falls back to the real width where the architecture does not take ``embed_dim``."""
    meta = meta_build(timm, name)
    heads = meta.blocks[0].attn.num_heads
    torch.manual_seed(0)
    for kw in ({"depth": 1, "embed_dim": heads * HEAD_DIM}, {"depth": 1}):
        try:
            return timm.create_model(name, pretrained=False, **kw).eval(), kw
        except Exception:  # noqa: BLE001 - an architecture that fixes its width
            continue
    raise AssertionError(f"{name} does not build with depth=1")


def _save_with_config(tm, name: str, kw: dict, folder) -> str:
    """The model as a Hugging Face-style folder: ``model.safetensors`` + timm's ``config.json``."""
    from safetensors.torch import save_file
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tm.state_dict().items()}, str(folder / "model.safetensors"))
    pc = dict(getattr(tm, "pretrained_cfg", None) or {})
    cfg = {"architecture": name, "model_args": kw, "num_classes": tm.num_classes,
           "pretrained_cfg": {k: pc[k] for k in ("mean", "std") if k in pc}}
    (folder / "config.json").write_text(json.dumps(cfg))
    return str(folder / "model.safetensors")


def _check(name: str, folder) -> tuple[str, str]:
    """("ok", max relative error) or ("refused", message)."""
    try:
        timm_arch_config(name)
    except ValueError as e:
        return "refused", str(e)
    tm, kw = _build(name)
    ours = load_model(_save_with_config(tm, name, kw, folder), device="cpu")
    s, p = ours.config.img_size, ours.config.patch_size
    x = torch.randn(2, 3, s, s, generator=torch.Generator().manual_seed(1))
    c = ours.config.grid_size * p  # timm leaves out a remainder (so400m/14 at 384): so does the layout
    lay = ap.uniform(c, c, p)
    with torch.no_grad():
        ref = tm(x)
        fixed = ours(x)
        adaptive = ours(x[..., :c, :c].contiguous(), [lay, lay])
    scale = float(ref.abs().max())
    err = max(float((ref - fixed).abs().max()), float((ref - adaptive).abs().max())) / scale
    return ("ok" if err <= 1e-4 else "mismatch"), f"{err:.2e}"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    out = {}
    for n in NAMES:
        out[n] = _check(n, tmp_path_factory.mktemp(n))
    return out


def test_every_timm_vit_loads_and_matches_or_is_refused_in_one_line(sweep) -> None:
    bad = {n: r for n, r in sweep.items() if r[0] == "mismatch"}
    assert not bad, f"silent mismatches: {bad}"
    for n, (kind, msg) in sweep.items():
        if kind == "refused":
            assert "\n" not in msg and len(msg) <= 300 and n in msg and "refused" in msg, (n, msg)
    ok = sum(r[0] == "ok" for r in sweep.values())
    print(json.dumps({"timm": timm.__version__, "architectures": len(sweep), "load_and_match": ok,
                      "refused": len(sweep) - ok}))
    assert ok / len(sweep) >= COVERAGE, f"{ok}/{len(sweep)} architectures load and match"


def _raw_bytes(tm) -> bytes:
    from safetensors.torch import save
    return save({k: v.contiguous() for k, v in tm.state_dict().items()})


def test_huge_and_giant_head_counts_are_never_guessed(tmp_path) -> None:
    for name, heads in (("vit_huge_patch14_224", 16), ("vit_giant_patch14_224", 16)):
        if name not in NAMES:
            continue
        assert meta_build(timm, name).blocks[0].attn.num_heads == heads
        assert timm_arch_config(name).heads == heads  # by name: read off timm's architecture
        torch.manual_seed(0)
        tm = timm.create_model(name, pretrained=False, depth=1).eval()
        data = _raw_bytes(tm)
        # a bare state dict of an unknown width does not say its heads: refused, naming heads=
        cfg_wo_name = dict(preprocess="half")
        if tm.embed_dim not in (192, 384, 768, 1024):
            with pytest.raises(ValueError, match="heads="):
                load_model_bytes(data, "w.safetensors", device="cpu", **cfg_wo_name)
        ours = load_model_bytes(data, "w.safetensors", device="cpu", heads=heads, preprocess="half")
        x = torch.randn(1, 3, 224, 224)
        with torch.no_grad():
            torch.testing.assert_close(ours(x), tm(x), atol=1e-4 * float(tm(x).abs().max()), rtol=0)
        # through the config.json path: exact, no heads= needed
        path = _save_with_config(tm, name, {"depth": 1}, tmp_path / name)
        assert load_model(path, device="cpu").config.heads == heads


def test_deit_normalisation_is_imagenet_and_never_guessed(tmp_path) -> None:
    torch.manual_seed(0)
    tm = timm.create_model("deit_tiny_patch16_224", pretrained=False, depth=1).eval()
    with pytest.raises(ValueError, match="preprocess="):
        load_model_bytes(_raw_bytes(tm), "deit.safetensors", device="cpu")
    path = _save_with_config(tm, "deit_tiny_patch16_224", {"depth": 1}, tmp_path / "deit")
    cfg = load_model(path, device="cpu").config
    assert cfg.mean == pytest.approx(timm.data.IMAGENET_DEFAULT_MEAN)
    assert cfg.std == pytest.approx(timm.data.IMAGENET_DEFAULT_STD)
    assert timm_arch_config("deit_tiny_patch16_224").mean == pytest.approx(timm.data.IMAGENET_DEFAULT_MEAN)


def test_offline_timm_name_fails_fast_with_the_whole_reason(monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    name = "vit_tiny_patch16_224.augreg_in21k_ft_in1k"
    t0 = time.perf_counter()
    with pytest.raises(ValueError) as info:
        load_timm(name, device="cpu")
    took = time.perf_counter() - t0
    msg = str(info.value)
    assert took < 5.0, took
    assert "\n" not in msg and not msg.endswith("…") and name in msg and "offline" in msg, msg


def test_unsupported_architectures_are_refused_before_any_download(monkeypatch) -> None:
    calls = []
    real = timm.create_model
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append(k.get("pretrained")) or real(*a, **k))
    for name, feature in (("vit_base_r50_s16_224", "hybrid CNN stem"), ("vit_relpos_base_patch16_224", "relpos")):
        if name not in NAMES:
            continue
        with pytest.raises(ValueError, match=feature):
            load_timm(name, device="cpu")
    assert True not in calls  # never asked for pretrained weights


@pytest.mark.parametrize("name", ["vit_base_patch16_clip_224", "vit_small_patch14_dinov2",
                                  "vit_small_patch14_reg4_dinov2", "vit_base_patch16_siglip_224",
                                  "deit3_small_patch16_224" if "deit3_small_patch16_224" in NAMES else "deit_small_patch16_224"])
def test_adaptive_layouts_on_clip_dinov2_register_and_siglip_models(name, tmp_path) -> None:
    if name not in NAMES:
        pytest.skip(f"{name} is not in timm {timm.__version__}")
    tm, kw = _build(name)
    ours = load_model(_save_with_config(tm, name, kw, tmp_path / name), device="cpu")
    s, p = ours.config.img_size, ours.config.patch_size
    img = np.random.default_rng(0).random((s, s, 3)).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None]
    uni = ap.uniform(s, s, p)
    lo = 1 << (p - 1).bit_length()  # quadtree boxes are powers of two: 16 px for a 14 px model
    with torch.no_grad():
        ref = tm(x)
        tol = 1e-4 * float(ref.abs().max())
        torch.testing.assert_close(ours(x, [uni]), ref, atol=tol, rtol=0)
        lay = ap.quadtree(img, budget=uni.num_tokens // 3, min_size=lo, max_size=4 * lo)
        out = ours(torch.cat([x, x]), [lay, uni])  # a batch of two token counts (padding + masks)
    assert lay.num_tokens < uni.num_tokens and out.shape[0] == 2 and torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], ref, atol=tol, rtol=0)
    assert ours.num_prefix_tokens == tm.num_prefix_tokens


def test_timm_version_is_reported() -> None:
    print(json.dumps({"timm": timm.__version__, "torch": torch.__version__,
                      "offline": os.environ.get("HF_HUB_OFFLINE", "")}))


@pytest.mark.parametrize("name", ["deit_tiny_patch16_224", "vit_small_patch14_reg4_dinov2",
                                  "vit_base_patch16_rope_reg1_gap_256", "vit_base_patch16_siglip_224"])
def test_app_views_run_on_random_timm_models(name, tmp_path) -> None:
    """What the app's model views call, on randomly initialised timm models: attention saliency
    (only with allow_random: random weights are never shown as attention by default) and the
    agreement-vs-tokens view (full grid agrees with itself; pruning a RoPE model is reported
    unavailable with its reason, not raised)."""
    from adapatch.model.agreement import token_agreement
    from adapatch.model.attention import attention_saliency
    if name not in NAMES:
        pytest.skip(f"{name} is not in timm {timm.__version__}")
    _, kw = _build(name)
    kw = {**kw, "num_classes": 10}  # feature-only models (DINOv2, SigLIP towers) get a classifier to agree on
    torch.manual_seed(0)
    tm = timm.create_model(name, pretrained=False, **kw).eval()
    ours = load_model(_save_with_config(tm, name, kw, tmp_path / name), device="cpu")
    ours.pretrained = False  # random weights, as built here
    img = np.random.default_rng(0).random((96, 128, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="random"):
        attention_saliency(img, ours, device="cpu")
    sal = attention_saliency(img, ours, device="cpu", allow_random=True)
    assert sal.shape == (96, 128) and float(sal.min()) >= 0 and float(sal.max()) <= 1
    res = token_agreement(ours, [img], fractions=(0.5, 1.0), scorers=("mean", "attention"), device="cpu")
    assert res.total_tokens == ours.config.grid_size ** 2
    assert res.agreement["uniform"][-1] == 1.0 and res.kl["uniform"][-1] < 1e-5
    if ours.rope is not None:
        assert "prune_attention" in res.unavailable
