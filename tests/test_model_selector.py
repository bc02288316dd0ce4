"""Learned patch selector (relaxations, gradients, training), latency helpers, experiment smoke run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import adapatch
from adapatch.model import (LearnedPatchSelector, ViTConfig, VisionTransformer, compare_pad_pack, latency_curve,
                            load_task_model, model_macs, relaxed_mask, selector_importance, selector_layout,
                            sparsity_penalty)

torch.set_num_threads(1)


@pytest.mark.parametrize("relaxation", ["topk", "gumbel"])
def test_gradients_reach_selector_through_relaxation(relaxation):
    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=24, depth=2, heads=2, num_classes=4))
    sel = LearnedPatchSelector(32, 4, 4)
    from adapatch.experiments.train import selector_forward_train
    x = torch.randn(3, 3, 32, 32)
    logits, s = selector_forward_train(vit, sel, x, 5, relaxation)
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2])) + sparsity_penalty(s, 0.3)
    loss.backward()
    grads = [p.grad for p in sel.parameters()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


def test_topk_relaxation_is_hard_with_exactly_k():
    logits = torch.randn(4, 16, requires_grad=True)
    m = relaxed_mask(logits, 5, "topk", generator=torch.Generator().manual_seed(0))
    hard = m.detach()
    torch.testing.assert_close(hard.sum(1), torch.full((4,), 5.0))
    assert torch.all((hard.abs() < 1e-6) | ((hard - 1).abs() < 1e-6))
    nonoise = relaxed_mask(logits, 5, "topk", noise=False)
    top = torch.topk(logits, 5, 1).indices
    torch.testing.assert_close(nonoise.detach().gather(1, top), torch.ones(4, 5))
    with pytest.raises(ValueError, match="k"):
        relaxed_mask(logits, 0, "topk")
    with pytest.raises(ValueError, match="relaxation"):
        relaxed_mask(logits, 3, "sinkhorn")
    with pytest.raises(ValueError, match="img_size"):
        LearnedPatchSelector(48, 8)


def test_sparsity_penalty():
    z = torch.zeros(2, 10)
    assert float(sparsity_penalty(z)) == pytest.approx(0.5)
    assert float(sparsity_penalty(z, 0.25)) == pytest.approx(0.0625)


def test_short_training_lowers_loss():
    from adapatch.experiments.cluttered_digits import DatasetConfig, make_dataset
    from adapatch.experiments.train import train_selector, train_vit
    torch.manual_seed(0)
    d = make_dataset(DatasetConfig(n_train=320, n_test=16, size=32, scale=3, n_distractors=0, noise=0.02, seed=0))
    vit = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=32, depth=2, heads=2, num_classes=10))
    log = train_vit(vit, d["train_x"], d["train_y"], epochs=5, batch_size=32, lr=3e-3, seed=0)
    assert log[-1]["loss"] < log[0]["loss"] - 0.05
    sel = LearnedPatchSelector(32, 4, 4)
    slog = train_selector(vit, sel, d["train_x"], d["train_y"], 8, epochs=2, batch_size=32, seed=0)
    assert all(np.isfinite(r["loss"]) for r in slog)


def test_latency_helpers_and_macs_match_core_formula():
    cfg = ViTConfig(img_size=224, patch_size=16, dim=768, depth=12, heads=12, num_classes=1000)
    assert model_macs(cfg, 196) == adapatch.vit_flops(196, "ViT-B")
    small = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=24, depth=1, heads=2, num_classes=3))
    rows = latency_curve(small, [4, 16], batch_sizes=(1,), device="cpu", repeats=2, warmup=1)
    assert [r["tokens"] for r in rows] == [4, 16] and all(r["ms"] > 0 for r in rows)
    pp = compare_pad_pack(small, [3, 9, 16], device="cpu", repeats=2, warmup=1)
    assert pp["max_abs_diff"] < 1e-4 and pp["faster"] in ("pad+mask", "packing")


@pytest.mark.slow
def test_experiment_quick_run_and_task_api(tmp_path):
    from adapatch.experiments.__main__ import main
    out = tmp_path / "m"
    res = main(["--out", str(out), "--quick", "--threads", "1"])
    for f in ("task_vit.safetensors", "task_pruner.safetensors", "task_selector.safetensors", "config.json",
              "results.json", "results.md"):
        assert (out / f).is_file()
    rows = json.loads((out / "results.json").read_text())["rows"]
    # 9 original rows + distortion quadtree x2, equal-token uniform (budget 28), multiscale x2
    assert len(rows) == len(res["rows"]) == 14 and all(0 <= r["accuracy"] <= 1 for r in rows)
    task, cfg = load_task_model(out, device="cpu")
    assert task.pretrained and cfg["prune_layer"] == task.prune_layer
    img = np.random.default_rng(0).random((80, 70, 3), dtype=np.float32)
    imp = selector_importance(img, task, device="cpu")
    assert imp.shape == (8, 8) and (0 <= imp).all() and (imp <= 1).all()
    lay = selector_layout(img, task, k=10, device="cpu")
    assert lay.num_tokens == 10 and (lay.height, lay.width) == (64, 64)
    lay.validate()
    top = np.sort(np.argsort(-imp.ravel(), kind="stable")[:10])
    np.testing.assert_array_equal(lay.boxes, adapatch.uniform(64, 64, 8).boxes[top])
