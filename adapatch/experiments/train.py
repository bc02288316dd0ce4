"""Training loops of the cluttered-digits experiment (seeded, CPU-friendly).

* ``train_vit``: the tiny ViT on a mixture of tokenisations, so one set of weights serves every
  row of the results table: uniform fine (8 px) and coarse (16 px) grids, quadtree layouts at
  random budgets, and random subsets of the fine grid (robustness to dropped tokens).
* ``train_pruner``: the ``TokenPruner`` scorer with the ViT frozen, through the straight-through
  top-k policy (``forward_pruned_train``) at random keep ratios.
* ``train_selector``: the ``LearnedPatchSelector`` end to end through the frozen ViT with the
  perturbed straight-through top-k relaxation; loss = cross-entropy + sparsity penalty.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..importance import TOKEN_SIZE
from ..layout import uniform
from ..model.embed import TokenBatch
from ..model.pruning import TokenPruner, forward_pruned_train
from ..model.selector import LearnedPatchSelector, relaxed_mask, sparsity_penalty
from ..model.vit import VisionTransformer
from ..quadtree import quadtree_batch
from .cluttered_digits import to_rgb

QT_MIN, QT_MAX = 8, 32


def quadtree_layouts(grey: np.ndarray, budget: int, importance: str = "std", token_size: int = TOKEN_SIZE) -> list:
    """Quadtree layouts (8-32 px, at most ``budget`` tokens) of grey images; ``importance`` as in
    ``adapatch.quadtree`` (``token_size``, the side of the model's token, only matters for
    ``"distortion"``: pass the model's patch size)."""
    return quadtree_batch(to_rgb(grey), min_size=QT_MIN, max_size=QT_MAX, budget=budget, importance=importance,
                          token_size=token_size)


def batch_tensor(model: VisionTransformer, grey: np.ndarray, device: torch.device) -> torch.Tensor:
    """Normalised ``[B, 3, H, W]`` model input from grey images ``[B, H, W]``."""
    t = torch.from_numpy(grey).to(device)[:, None].expand(-1, 3, -1, -1)
    return model.normalize(t)


def _schedule(opt: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def _loop(name: str, params, n: int, epochs: int, batch_size: int, lr: float, seed: int,
          step_fn: Callable[[np.ndarray, np.random.Generator], torch.Tensor], log: list, wd: float = 0.05) -> None:
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    steps = epochs * (n // batch_size)
    sched = _schedule(opt, steps, max(1, steps // 20))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    for ep in range(epochs):
        perm = rng.permutation(n)
        losses = []
        for i in range(n // batch_size):
            idx = perm[i * batch_size:(i + 1) * batch_size]
            loss = step_fn(idx, rng)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for g in opt.param_groups for p in g["params"]], 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
        log.append({"stage": name, "epoch": ep + 1, "loss": float(np.mean(losses)),
                    "first_loss": losses[0], "seconds": time.perf_counter() - t0})
        print(f"[{name}] epoch {ep + 1}/{epochs} loss {np.mean(losses):.4f} ({time.perf_counter() - t0:.0f}s)",
              flush=True)


def train_vit(model: VisionTransformer, x: np.ndarray, y: np.ndarray, epochs: int, batch_size: int = 128,
              lr: float = 1e-3, seed: int = 0, log: list | None = None) -> list:
    """Train on the tokenisation mixture; returns the per-epoch log."""
    log = [] if log is None else log
    dev = next(model.parameters()).device
    h, w = x.shape[1:]
    fine = uniform(h, w, model.config.patch_size)
    coarse = uniform(h, w, 2 * model.config.patch_size)
    budgets = np.arange(10, fine.num_tokens, 3)
    yt = torch.from_numpy(y).to(dev)
    model.train()

    def step(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        imgs = batch_tensor(model, x[idx], dev)
        r = rng.random()
        if r < 0.3:
            lays = [fine] * len(idx)
        elif r < 0.45:
            lays = [coarse] * len(idx)
        elif r < 0.8:
            lays = quadtree_layouts(x[idx], int(rng.choice(budgets)))
        else:
            lays = None
        if lays is None:  # random subset of the fine grid, 25-75 % of the tokens
            tb = model.tokenize(imgs, [fine] * len(idx))
            k = int(rng.integers(fine.num_tokens // 4, 3 * fine.num_tokens // 4 + 1))
            keep = torch.from_numpy(np.sort(np.argsort(rng.random((len(idx), fine.num_tokens)), 1)[:, :k], 1)).to(dev)
            tb = tb.select(keep)
        else:
            tb = model.tokenize(imgs, lays)
        return F.cross_entropy(model.forward_tokens(tb), yt[idx])

    _loop("vit", model.parameters(), len(x), epochs, batch_size, lr, seed, step, log)
    model.eval()
    return log


def train_pruner(model: VisionTransformer, pruner: TokenPruner, x: np.ndarray, y: np.ndarray, layer: int,
                 epochs: int, batch_size: int = 128, lr: float = 2e-3, seed: int = 0, log: list | None = None,
                 keep_ratios: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)) -> list:
    """Train the scorer with the ViT frozen, keep ratio drawn per batch."""
    log = [] if log is None else log
    dev = next(model.parameters()).device
    fine = uniform(x.shape[1], x.shape[2], model.config.patch_size)
    yt = torch.from_numpy(y).to(dev)
    model.eval().requires_grad_(False)
    pruner.train()

    def step(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        tb = model.tokenize(batch_tensor(model, x[idx], dev), [fine] * len(idx))
        logits = forward_pruned_train(model, tb, layer, float(rng.choice(keep_ratios)), pruner)
        return F.cross_entropy(logits, yt[idx])

    _loop("pruner", pruner.parameters(), len(x), epochs, batch_size, lr, seed, step, log, wd=0.0)
    model.requires_grad_(True)
    pruner.eval()
    return log


def selector_forward_train(model: VisionTransformer, selector: LearnedPatchSelector, imgs: torch.Tensor, k: int,
                           relaxation: str = "topk", tau: float = 0.5,
                           generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits of the ViT on the selector's relaxed mask, and the selector logits."""
    fine = uniform(imgs.shape[2], imgs.shape[3], model.config.patch_size)
    tb: TokenBatch = model.tokenize(imgs, [fine] * imgs.shape[0])
    sel = selector(imgs)
    mask = relaxed_mask(sel, k, relaxation, tau, noise=selector.training, generator=generator)
    return model.forward_tokens(tb, policy=mask), sel


def train_selector(model: VisionTransformer, selector: LearnedPatchSelector, x: np.ndarray, y: np.ndarray, k: int,
                   epochs: int, batch_size: int = 128, lr: float = 3e-3, lam: float = 1.0, seed: int = 0,
                   relaxation: str = "topk", log: list | None = None) -> list:
    """End-to-end selector training through the frozen ViT: CE + lam * (keep fraction - k/N)^2."""
    log = [] if log is None else log
    dev = next(model.parameters()).device
    yt = torch.from_numpy(y).to(dev)
    target = k / model.config.grid_size ** 2
    gen = torch.Generator(device=dev).manual_seed(seed)
    model.eval().requires_grad_(False)
    selector.train()

    def step(idx: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        logits, sel = selector_forward_train(model, selector, batch_tensor(model, x[idx], dev), k, relaxation,
                                             generator=gen)
        return F.cross_entropy(logits, yt[idx]) + lam * sparsity_penalty(sel, target)

    _loop("selector", selector.parameters(), len(x), epochs, batch_size, lr, seed, step, log, wd=0.0)
    model.requires_grad_(True)
    selector.eval()
    return log
