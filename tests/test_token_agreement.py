"""``adapatch.model.agreement.token_agreement``: top-1 agreement and KL against the full grid, at equal
tokens, for adaptive layouts and pruning, on small random ViTs of several kinds (issue 13), and the
bundled ImageNet class names (``adapatch.model.classes``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adapatch.model import TaskModel, VisionTransformer, ViTConfig, load_task_model
from adapatch.model.agreement import (
    LAYOUT_METHODS,
    METHOD_LABELS,
    TokenAgreement,
    _quadtree_frame,
    _quadtree_layouts,
    _work_frames,
    prune_agreement,
    token_agreement,
)
from adapatch.model.classes import class_label, class_names
from adapatch.model.rope import RopeConfig

torch.set_num_threads(1)
SMALL = {"img_size": 64, "patch_size": 8, "dim": 32, "depth": 2, "heads": 2, "num_classes": 1000}
KINDS = {
    "classic": {},
    "pooled_registers_layerscale": {"class_token": False, "global_pool": "avg", "reg_tokens": 4, "layer_scale": True},
    "map_head": {"class_token": False, "global_pool": "map", "attn_pool": {"latent_len": 1}},
    "distilled": {"dist_token": True, "num_classes": 10},
    "patch14_not_a_multiple": {"img_size": 60, "patch_size": 14},
}


def _model(pretrained: bool = True, **over) -> VisionTransformer:
    torch.manual_seed(0)
    m = VisionTransformer(ViTConfig(**{**SMALL, **over})).eval()
    m.pretrained = pretrained  # random weights, treated as trained so attention pruning runs too
    return m


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    out = [rng.random((h, w, 3), dtype=np.float32) for h, w in ((64, 64), (80, 100), (50, 70))]
    yy, xx = np.mgrid[0:96, 0:96] / 96.0
    out.append(np.stack([yy, xx, (yy * xx)], -1).astype(np.float32))  # a smooth gradient
    return out


def _check(res: TokenAgreement, images) -> None:
    assert res.num_images == len(images)
    assert res.budgets == sorted(res.budgets) and res.budgets[-1] == res.total_tokens
    for m in res.available:
        agree, kl, tokens = res.agreement[m], res.kl[m], res.tokens[m]
        assert len(agree) == len(kl) == len(tokens) == len(res.budgets)
        assert agree[-1] == 1.0, (m, agree)  # the full budget: every method is the full grid again
        assert kl[-1] < 1e-6, (m, kl)
        assert all(k is None or k >= 0 for k in kl)
        assert all(a is None or 0.0 <= a <= 1.0 for a in agree)
        for n, t in zip(res.budgets, tokens):
            if t is not None:  # equal tokens across methods
                assert abs(t - n) <= 0.05 * n, (m, n, t)
        for p in res.predictions[m]:
            assert p is None or len(p) == len(images)
    assert json.loads(json.dumps(res.to_dict())) == res.to_dict()
    assert TokenAgreement.from_dict(res.to_dict()).to_dict() == res.to_dict()


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_method_agrees_at_the_full_grid_and_counts_are_equal(kind, images) -> None:
    model = _model(**KINDS[kind])
    res = token_agreement(model, images, device="cpu")
    _check(res, images)
    assert res.methods == ["quadtree", "uniform", "prune_mean", "prune_max", "prune_learned", "prune_attention"]
    assert set(res.unavailable) == {"prune_learned"}  # a plain ViT has no trained pruner
    assert "TokenPruner" in res.unavailable["prune_learned"]
    assert res.tokens["uniform"] == [float(n) for n in res.budgets]
    assert set(METHOD_LABELS) >= set(res.methods)


def test_counts_match_exactly_on_an_8x8_grid(images) -> None:
    res = token_agreement(_model(), images, device="cpu")
    assert res.budgets == [4, 16, 25, 49, 64]  # uniform grid counts the quadtree reaches exactly (4 + 3k)
    for m in res.available:
        assert res.tokens[m] == [4.0, 16.0, 25.0, 49.0, 64.0], m
    assert res.notes == {}


def test_deterministic(images) -> None:
    model = _model(class_token=False, global_pool="avg", reg_tokens=4, layer_scale=True)
    a = token_agreement(model, images, fractions=(0.3, 0.6, 1.0), device="cpu").to_dict()
    b = token_agreement(model, images, fractions=(0.3, 0.6, 1.0), device="cpu", batch_size=2).to_dict()
    assert a == b or _close(a, b)


def _close(a: dict, b: dict) -> bool:
    """Equal up to float noise of a different batch split (KL only)."""
    for k, va in a.items():
        if k == "kl":
            for m, v in va.items():
                assert np.allclose(np.array(v, float), np.array(b[k][m], float), atol=1e-7, equal_nan=True)
        else:
            assert va == b[k], k
    return True


def test_full_grid_reference_is_the_model_forward(images) -> None:
    from adapatch.model import model_grid, prepare_image, resize_for_model
    model = _model()
    res = token_agreement(model, images[:2], fractions=(1.0,), device="cpu")
    for im, p in zip(images[:2], res.full_predictions):
        x = prepare_image(resize_for_model(im, model), model, "cpu", resize=False)
        with torch.no_grad():
            assert int(model(x, [model_grid(model)]).argmax()) == p
            assert int(model(x).argmax()) == p  # the fixed-grid forward too (img_size a multiple of the patch)


def test_rope_model_layouts_work_and_pruning_in_the_encoder_is_unavailable(images) -> None:
    rope = RopeConfig(kind="cat", head_dim=16).to_dict()
    model = _model(pos_embed=False, rope=rope)
    res = token_agreement(model, images, device="cpu")
    assert set(res.unavailable) == {"prune_learned", "prune_attention"}
    reason = res.unavailable["prune_attention"]
    assert "rotary" in reason and "\n" not in reason
    assert res.agreement["prune_attention"] == [None] * len(res.budgets)
    assert {"quadtree", "uniform", "prune_mean", "prune_max"} <= set(res.available)
    _check(res, images)


def test_random_weights_refuse_attention_but_the_rest_runs(images) -> None:
    res = token_agreement(_model(pretrained=False), images, device="cpu")
    assert "random weights" in res.unavailable["prune_attention"]
    assert {"quadtree", "uniform", "prune_mean", "prune_max"} == set(res.available)
    _check(res, images)


def test_quadtree_below_its_coarsest_tiling_is_a_note_not_an_error(images) -> None:
    model = _model(img_size=48, patch_size=8)  # a 6x6 grid: 2x2-cell squares at most, so at least 9 tokens
    res = token_agreement(model, images[:2], fractions=(0.05, 0.25, 1.0), strategies=LAYOUT_METHODS, scorers=(),
                          device="cpu")
    assert res.quadtree == {"cell": 8, "max_squares": 2, "min_tokens": 9}
    assert res.budgets[0] < 9 and res.agreement["quadtree"][0] is None and res.tokens["uniform"][0] is not None
    assert "at least 9 tokens" in res.notes["quadtree"]
    _check(res, images[:2])


def test_quadtree_on_a_patch_14_model_tiles_the_model_frame() -> None:
    cell, squares = _quadtree_frame(4, 14, 4)
    assert (cell, squares) == (16, 4)
    rng = np.random.default_rng(0)
    frames = [rng.random((56, 56, 3), dtype=np.float32) for _ in range(2)]
    work = _work_frames(frames, 4, 14, cell)
    assert work.shape == (2, 64, 64, 3)
    for n in (1, 4, 7, 16):
        for lay in _quadtree_layouts(work, n, cell, squares, 14, 56, 4):
            lay.validate()
            assert lay.num_tokens <= n and (lay.height, lay.width, lay.canvas) == (56, 56, (56, 56))
            assert set(np.unique(lay.boxes[:, 2])) <= {14, 28, 56}
    full = _quadtree_layouts(work, 16, cell, squares, 14, 56, 4)[0]
    assert (full.boxes[:, 2] == 14).all() and full.num_tokens == 16


def test_task_model_every_scorer(images) -> None:
    from adapatch.samples import list_task_samples, load_sample
    model = load_task_model(device="cpu")[0]
    assert isinstance(model, TaskModel)
    digits = [load_sample(n) for n in list_task_samples()[:4]]
    res = token_agreement(model, digits, device="cpu")
    assert res.unavailable == {} and res.prune_layer == model.prune_layer and res.num_classes == 10
    _check(res, digits)
    old = prune_agreement(model, digits, keep_ratios=(0.25, 1.0), device="cpu")  # the old API still works
    assert old.agreement["learned"][-1] == 1.0


@pytest.mark.parametrize("bad", [{"images": []}, {"fractions": (0.0, 1.0)}, {"fractions": (1.5,)},
                                 {"strategies": ("greedy",)}, {"scorers": ("bogus",)},
                                 {"strategies": (), "scorers": ()}])
def test_bad_arguments_raise_one_line(bad, images) -> None:
    kw = {"images": images[:1], **bad}
    with pytest.raises(ValueError) as e:
        token_agreement(_model(), device="cpu", **kw)
    assert "\n" not in str(e.value)


def test_no_classifier_head_raises(images) -> None:
    with pytest.raises(ValueError, match="no classifier head"):
        token_agreement(_model(num_classes=0), images[:1], device="cpu")


def test_progress_reaches_the_total(images) -> None:
    seen = []
    token_agreement(_model(pretrained=False), images, fractions=(0.5, 1.0), batch_size=3, device="cpu",
                    progress=lambda d, t: seen.append((d, t)))
    assert seen and seen[-1][0] == seen[-1][1] and [d for d, _ in seen] == sorted(d for d, _ in seen)


# ------------------------------------------------------------------ ImageNet class names
def test_imagenet_class_names_are_bundled_in_index_order() -> None:
    names = class_names(1000)
    assert len(names) == 1000 and len(set(names)) == 1000
    assert names[0] == "tench" and names[207] == "golden retriever" and names[281] == "tabby"
    assert names[134] == "crane (bird)" and names[517] == "crane (machine)" and names[999] == "toilet tissue"
    assert class_names(10) is None and class_names(0) is None and class_names(None) is None
    assert class_label(207, 1000) == "207 · golden retriever"
    assert class_label(7, 10) == "7" and class_label(None, 1000) == "–"
