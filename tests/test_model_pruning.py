"""Token pruning (learned scorer, EViT attention) and attention saliency."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import adapatch
from adapatch.model import (ViTConfig, VisionTransformer,
                            attention_saliency, forward_pruned, forward_pruned_train, prune_tokens_attention,
                            prune_tokens_learned, rollout)
from adapatch.model.pruning import topk_keep
from tests.model_helpers import tiny_task_model

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def task():
    return tiny_task_model()


@pytest.mark.parametrize("keep", [0.5, 0.3, 1.0, 0.01])
@pytest.mark.parametrize("method", ["learned", "attention"])
def test_pruners_keep_exactly_k_and_indices_match_map(task, keep, method):
    rng = np.random.default_rng(0)
    img = rng.random((32, 32, 3), dtype=np.float32)
    lay = adapatch.quadtree(img, min_size=4, max_size=16, budget=40, importance="std")
    fn = prune_tokens_learned if method == "learned" else prune_tokens_attention
    res = fn(img, lay, task, keep_ratio=keep, device="cpu")
    k = adapatch.keep_count(lay.num_tokens, keep)
    assert len(res.kept) == k == res.layout.num_tokens
    assert np.all(np.diff(res.kept) > 0)
    np.testing.assert_array_equal(res.layout.boxes, lay.boxes[res.kept])
    res.layout.validate()
    # kept = the k highest scores
    order = np.lexsort((np.arange(lay.num_tokens), -res.scores))
    assert set(res.kept.tolist()) == set(order[:k].tolist())


def test_batched_pruning_with_padding_keeps_per_image_counts(task):
    vit = task.vit
    rng = np.random.default_rng(1)
    imgs = rng.random((3, 32, 32, 3), dtype=np.float32)
    lays = [adapatch.quadtree(im, min_size=4, max_size=16, budget=b, importance="std") for im, b in zip(imgs, (10, 31, 64))]
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    with torch.no_grad():
        tb = vit.tokenize(x, lays)
        out = forward_pruned(vit, tb, 2, 0.5, "attention")
        singles = [forward_pruned(vit, vit.tokenize(x[i:i + 1], [lays[i]]), 2, 0.5, "attention") for i in range(3)]
    for i, lay in enumerate(lays):
        assert int(out.kept_valid[i].sum()) == adapatch.keep_count(lay.num_tokens, 0.5)
        assert (out.kept[i][out.kept_valid[i]] < lay.num_tokens).all()
        assert torch.equal(out.kept[i][out.kept_valid[i]], singles[i].kept[0])
        torch.testing.assert_close(out.logits[i], singles[i].logits[0], atol=1e-5, rtol=1e-5)


def test_pruner_training_forward_equals_inference_and_gets_gradients(task):
    vit, pruner = task.vit, task.pruner
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    tb = vit.tokenize(x, [adapatch.uniform(32, 32, 8)] * 4)
    with torch.no_grad():
        inf = forward_pruned(vit, tb, 1, 0.5, "learned", pruner, fuse=False).logits
    pruner.zero_grad()
    train = forward_pruned_train(vit, tb, 1, 0.5, pruner)
    torch.testing.assert_close(train, inf, atol=1e-5, rtol=1e-5)
    train.sum().backward()
    assert pruner.fc1.weight.grad is not None and pruner.fc1.weight.grad.abs().sum() > 0


def test_topk_keep_validation_and_ties():
    idx, valid = topk_keep(torch.zeros(1, 6), None, 0.5)
    assert idx.tolist() == [[0, 1, 2]] and valid.all()
    with pytest.raises(ValueError, match="keep_ratio"):
        topk_keep(torch.zeros(1, 6), None, 1.5)


def test_pruning_parameter_errors(task):
    img = np.zeros((32, 32, 3), np.float32)
    lay = adapatch.uniform(32, 32, 8)
    with pytest.raises(ValueError, match="layer"):
        prune_tokens_attention(img, lay, task, layer=0, device="cpu")
    with pytest.raises(ValueError, match="layout"):
        prune_tokens_learned(img, adapatch.uniform(16, 16, 8), task, device="cpu")
    with pytest.raises(ValueError, match="TaskModel"):
        prune_tokens_learned(img, lay, task.vit, device="cpu")


def test_attention_saliency_refuses_random_weights_and_works(task):
    rng = np.random.default_rng(5)
    img = rng.random((48, 40, 3), dtype=np.float32)
    rand = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=24, depth=2, heads=2, num_classes=5))
    with pytest.raises(ValueError, match="random weights"):
        attention_saliency(img, rand, device="cpu")
    for mode in ("cls", "rollout"):
        for fusion in ("mean", "max"):
            m = attention_saliency(img, task, mode=mode, head_fusion=fusion, device="cpu")
            assert m.shape == (48, 40) and m.dtype == np.float32
            assert m.min() == 0.0 and m.max() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="discard_ratio"):
        attention_saliency(img, task, discard_ratio=1.0, device="cpu")
    with pytest.raises(ValueError, match="mode"):
        attention_saliency(img, task, mode="grad", device="cpu")


def test_rollout_without_discard_is_row_stochastic_product():
    a = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    b = torch.softmax(torch.randn(2, 3, 5, 5), -1)
    r = rollout([a, b], "mean", 0.0)
    eye = torch.eye(5)
    fa, fb = (a.mean(1) + eye) / 2, (b.mean(1) + eye) / 2
    torch.testing.assert_close(r, (fb @ fa)[:, 0, 1:])


def test_attention_registered_with_core_saliency(task):
    img = np.random.default_rng(6).random((32, 32, 3), dtype=np.float32)
    m = adapatch.saliency(img, "attention", model=task, mode="cls")
    assert m.shape == (32, 32) and 0 <= m.min() and m.max() <= 1
    assert adapatch.saliency_methods()["attention"].available


# ------------------------------------------------------------------ agreement with the full grid
def test_score_tokens_then_prune_from_is_forward_pruned(task):
    from adapatch.model.pruning import prune_from, score_tokens
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.random((2, 3, 32, 32), dtype=np.float32))
    lay = adapatch.uniform(32, 32, 8)
    with torch.no_grad():
        tb = task.vit.tokenize(x, [lay, lay])
        for method in ("learned", "attention"):
            cut = score_tokens(task.vit, tb, 1, method, task.pruner)
            for keep in (0.25, 0.5, 1.0):
                a = forward_pruned(task.vit, tb, 1, keep, method, task.pruner)
                b = prune_from(task.vit, cut, keep)
                torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=0)
                assert torch.equal(a.kept, b.kept) and torch.equal(a.kept_valid, b.kept_valid)


@pytest.fixture(scope="module")
def bundled():
    from adapatch.model import load_task_model
    from adapatch.samples import list_task_samples, load_sample
    names = list_task_samples()
    if not names:
        pytest.skip("no bundled task samples")
    return load_task_model(device="cpu")[0], [load_sample(n) for n in names]


def test_agreement_is_one_at_keep_ratio_one_and_a_share_elsewhere(bundled):
    from adapatch.export import PRUNE_SCORERS
    from adapatch.model.agreement import DEFAULT_KEEP_RATIOS, SCORERS, prune_agreement
    model, images = bundled
    assert SCORERS == PRUNE_SCORERS  # one series per scorer the settings format knows
    res = prune_agreement(model, images, device="cpu")
    assert res.keep_ratios == list(DEFAULT_KEEP_RATIOS) and res.keep_ratios[-1] == 1.0
    assert list(res.agreement) == list(SCORERS)
    assert res.num_images == len(images) and res.total_tokens == 64
    assert res.kept_tokens == [adapatch.keep_count(64, r) for r in res.keep_ratios]
    for scorer, shares in res.agreement.items():
        assert len(shares) == len(res.keep_ratios)
        assert all(0.0 <= s <= 1.0 for s in shares), (scorer, shares)
        assert all(abs(s * len(images) - round(s * len(images))) < 1e-9 for s in shares)  # a share of images
        assert shares[-1] == 1.0, (scorer, shares)  # every token kept: the full grid's prediction
    again = prune_agreement(model, images, device="cpu")
    assert again.to_dict() == res.to_dict()  # deterministic


def test_agreement_matches_the_per_image_api(bundled):
    """The batched sweep gives the predictions ``prune_tokens_*`` give one image at a time, and the
    saliency scorers the predictions of the ViT on ``adapatch.prune``'s kept tokens."""
    from adapatch.model import model_grid, prepare_image
    from adapatch.model.agreement import prune_agreement
    model, images = bundled
    grid = model_grid(model)
    res = prune_agreement(model, images, keep_ratios=[0.3, 0.6], device="cpu")
    with torch.no_grad():
        full = [int(model.vit(prepare_image(im, model.vit, "cpu"), [grid]).argmax()) for im in images]
    assert res.full_predictions == full
    for i, keep in enumerate((0.3, 0.6)):
        for scorer, fn in (("learned", prune_tokens_learned), ("attention", prune_tokens_attention)):
            preds = [fn(im, grid, model, keep_ratio=keep, device="cpu").prediction for im in images]
            assert res.agreement[scorer][i] == np.mean([p == f for p, f in zip(preds, full)])
        preds = []
        for im in images:
            lay = adapatch.prune(grid, adapatch.token_scores(adapatch.saliency(im, "edges"), grid, "max"), keep)
            with torch.no_grad():
                preds.append(int(model.vit(prepare_image(im, model.vit, "cpu"), [lay]).argmax()))
        assert res.agreement["max"][i] == np.mean([p == f for p, f in zip(preds, full)])


def test_agreement_checks_its_inputs(task, bundled):
    from adapatch.model.agreement import prune_agreement
    model, images = bundled
    rng = np.random.default_rng(0)
    small = [rng.random((32, 32, 3), dtype=np.float32)]
    with pytest.raises(ValueError, match="scorer"):
        prune_agreement(model, images[:1], scorers=["nope"], device="cpu")
    with pytest.raises(ValueError, match="at least one"):
        prune_agreement(model, [], device="cpu")
    with pytest.raises(ValueError, match="keep_ratio"):
        prune_agreement(model, images[:1], keep_ratios=[1.5], device="cpu")
    with pytest.raises(ValueError, match="trained pruner"):
        prune_agreement(task.vit, small, scorers=["learned"], device="cpu")  # a plain ViT has no pruner
    random_vit = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=24, depth=2, heads=2, num_classes=3))
    with pytest.raises(ValueError, match="random weights"):
        prune_agreement(random_vit, small, scorers=["attention"], device="cpu")
    res = prune_agreement(random_vit, small, keep_ratios=[0.5, 1.0], scorers=["mean"], device="cpu")
    assert res.agreement["mean"][-1] == 1.0 and res.prune_layer == 1
