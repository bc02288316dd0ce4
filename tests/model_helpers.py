"""A tiny random task model the pruning tests share (attention code paths only, not accuracy)."""

from __future__ import annotations


def tiny_task_model():
    """Seeded: ViT (32 px input, 8 px patches, width 24, depth 3, 5 classes), a pruner whose scores
    spread (fc2 drawn with std 1) and a selector; marked pretrained so attention paths run."""
    import torch

    from adapatch.model import LearnedPatchSelector, TaskModel, TokenPruner, VisionTransformer, ViTConfig

    torch.manual_seed(0)
    vit = VisionTransformer(ViTConfig(img_size=32, patch_size=8, dim=24, depth=3, heads=2, num_classes=5,
                                      pos_mode="interp+mlp")).eval()
    vit.pretrained = True  # test stand-in for trained weights (attention code paths only)
    pruner = TokenPruner(24).eval()
    torch.nn.init.normal_(pruner.fc2.weight, std=1.0)
    return TaskModel(vit, pruner, LearnedPatchSelector(32, 4, 4).eval(), prune_layer=1)


def assert_budget_used(lay, curve, budget: int, threshold, importance: str) -> None:
    """Budget mode uses its budget: every split the threshold allows is made, or one more (3 tokens)
    would not fit. With ``distortion`` a split of importance 0 is never made, even with budget left."""
    if importance == "distortion":
        reachable = curve.tokens_at(0.0 if threshold is None else threshold)
    else:
        reachable = curve.max_tokens if threshold is None else curve.tokens_at(threshold)
    assert lay.num_tokens == min(reachable, lay.num_tokens) and (
        lay.num_tokens == reachable or budget - lay.num_tokens < 3)
