"""Cluttered digits: scikit-learn's bundled 8x8 digits, enlarged and placed at random on a
larger noisy canvas with distractor fragments of other digits. Only a small region matters, the
setting where adaptive tokenisation should help. Train and test use disjoint source digits
(held-out writers' samples, split by source image), so test accuracy is not memorisation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..validation import check_float, check_int


@dataclass
class DatasetConfig:
    """Canvas ``size``, digit ``scale`` (8 px -> 8*scale), distractor count and size, noise."""

    n_train: int = 12000
    n_test: int = 2000
    size: int = 64
    scale: int = 3
    n_distractors: int = 4
    fragment: int = 4  # source pixels per side of a distractor fragment
    noise: float = 0.08
    test_fraction: float = 0.25
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("n_train", self.n_train, 1)
        check_int("n_test", self.n_test, 1)
        check_int("scale", self.scale, 1, 16)
        check_int("size", self.size, 8 * self.scale, 1024)
        check_int("n_distractors", self.n_distractors, 0, 64)
        check_int("fragment", self.fragment, 1, 8)
        check_float("noise", self.noise, 0.0, 1.0)
        check_float("test_fraction", self.test_fraction, 0.05, 0.95)

    def to_dict(self) -> dict:
        return asdict(self)


def source_digits(cfg: DatasetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Enlarged source digits ``[M, 8s, 8s]`` in [0, 1] and labels, split train / test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0)[:, None]
    big = F.interpolate(x, scale_factor=cfg.scale, mode="bilinear", align_corners=False)[:, 0].clamp(0, 1).numpy()
    rng = np.random.default_rng(cfg.seed)
    perm = rng.permutation(len(big))
    n_test = int(round(len(big) * cfg.test_fraction))
    te, tr = perm[:n_test], perm[n_test:]
    return big[tr], d.target[tr], big[te], d.target[te]


def paste(canvas: np.ndarray, patch: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> None:
    """``canvas[i, y:y+h, x:x+w] = max(canvas, patch[i])`` for all i at once."""
    n, h, w = patch.shape
    iy = ys[:, None, None] + np.arange(h)[None, :, None]
    ix = xs[:, None, None] + np.arange(w)[None, None, :]
    ib = np.arange(n)[:, None, None]
    canvas[ib, iy, ix] = np.maximum(canvas[ib, iy, ix], patch)


def add_distractors(canvas: np.ndarray, src: np.ndarray, count: int, f: int, rng: np.random.Generator) -> None:
    """Paste ``count`` fragments (``f`` px squares of random source digits, dimmed 0.6-1.0) at random
    places on every canvas ``[n, s, s]`` (vectorised over images; the two-digit task uses it too)."""
    n, s, d = int(canvas.shape[0]), int(canvas.shape[1]), int(src.shape[1])
    for _ in range(count):
        pick = rng.integers(0, len(src), n)
        oy, ox = rng.integers(0, d - f + 1, n), rng.integers(0, d - f + 1, n)
        frag = src[pick[:, None, None], oy[:, None, None] + np.arange(f)[None, :, None],
                   ox[:, None, None] + np.arange(f)[None, None, :]]
        paste(canvas, frag * rng.uniform(0.6, 1.0, (n, 1, 1)).astype(np.float32),
               rng.integers(0, s - f + 1, n), rng.integers(0, s - f + 1, n))


def _compose(src: np.ndarray, labels: np.ndarray, n: int, cfg: DatasetConfig, rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s, d = cfg.size, src.shape[1]
    canvas = np.zeros((n, s, s), np.float32)
    add_distractors(canvas, src, cfg.n_distractors, cfg.fragment * cfg.scale, rng)
    pick = rng.integers(0, len(src), n)
    ys, xs = rng.integers(0, s - d + 1, n), rng.integers(0, s - d + 1, n)
    paste(canvas, src[pick], ys, xs)
    canvas += rng.normal(0.0, cfg.noise, canvas.shape).astype(np.float32)
    np.clip(canvas, 0.0, 1.0, out=canvas)
    return canvas, labels[pick].astype(np.int64), np.stack([ys, xs], 1)


def make_dataset(cfg: DatasetConfig | None = None) -> dict[str, np.ndarray]:
    """``{"train_x", "train_y", "test_x", "test_y", "train_pos", "test_pos"}``; images are grey
    float32 ``[n, size, size]`` in [0, 1] (use ``to_rgb``), pos is the digit's top-left corner."""
    cfg = cfg or DatasetConfig()
    tr_src, tr_lab, te_src, te_lab = source_digits(cfg)
    rng = np.random.default_rng(cfg.seed + 1)
    trx, try_, trp = _compose(tr_src, tr_lab, cfg.n_train, cfg, rng)
    tex, tey, tep = _compose(te_src, te_lab, cfg.n_test, cfg, rng)
    return {"train_x": trx, "train_y": try_, "train_pos": trp, "test_x": tex, "test_y": tey, "test_pos": tep}


def held_out_split(cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """``{"test_x", "test_y", "test_pos"}`` exactly as ``make_dataset(cfg)`` makes them.

    Both splits draw from one generator, train first, so the test images depend on ``n_train``
    (and on every other field): the train split is composed too, then dropped. A shorter test
    split is not a prefix of a longer one either (each draw is vectorised over the split), so take
    a subset by slicing this one, not by lowering ``n_test``.
    """
    data = make_dataset(cfg)
    return {k: data[k] for k in ("test_x", "test_y", "test_pos")}


def to_rgb(grey: np.ndarray) -> np.ndarray:
    """``[..., H, W]`` grey -> ``[..., H, W, 3]`` float32 (the layout functions' image format)."""
    return np.repeat(grey[..., None], 3, axis=-1)
