"""Two cluttered digits and a query: the label is the digit the query names.

The query-aware experiment needs a task where *which* part of the image matters is
given by a question, not by the pixels. Each 64x64 canvas holds two held-out digits, one in the
left half and one in the right half (different classes, so which one the model read is always
visible in its answer), with the single-digit task's distractor fragments and noise over the
whole canvas. The query names one side; the label is that side's digit.

Why this design (no new model, no crop). The bundled task model was trained on one digit among
distractors on the whole 64x64 canvas. Here it runs on the whole two-digit canvas, unchanged, and
the only thing that steers it is the token layout: a query-aware layout spends its fine tokens on
the queried digit and leaves the other one coarse. That is the claim under test, so the model must
see both digits; a crop of the queried half would answer the question without any layout (the
query would do all the work and patching would not matter). The model never saw two digits, so
whatever it reads on a canvas it was not trained for is measured, not assumed (``query_eval``
reports how often it names the *other* digit).

Everything else follows ``cluttered_digits`` at the bundled model's settings (digits enlarged 3x
to 24 px, 4 distractor fragments of 12 px, noise 0.08) and draws its digits from that run's
*held-out* source digits (``source_digits`` with the same ``seed`` and ``test_fraction``), so the
model has never seen any digit here. Ground truth per image: both digits' pasted 24 px boxes and
their ink boxes (the tight box of the pasted digit's pixels >= ``ink_level``), the queried side,
both labels.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..validation import check_float, check_int
from .cluttered_digits import DatasetConfig, add_distractors, paste, source_digits

SIDES = ("left", "right")


@dataclass
class TwoDigitConfig:
    """``n`` canvases of side ``size`` (two digits of ``8 * scale`` px, one per half).

    ``source_seed``/``test_fraction`` pick the held-out source digits exactly as the bundled
    model's ``DatasetConfig`` does (keep them equal to its config); ``seed`` draws the canvases.
    """

    n: int = 2000
    size: int = 64
    scale: int = 3
    n_distractors: int = 4
    fragment: int = 4
    noise: float = 0.08
    test_fraction: float = 0.25
    source_seed: int = 0
    seed: int = 14
    ink_level: float = 0.25

    def __post_init__(self) -> None:
        check_int("n", self.n, 1)
        check_int("scale", self.scale, 1, 16)
        check_int("size", self.size, 16 * self.scale, 1024)  # two digits side by side
        check_int("n_distractors", self.n_distractors, 0, 64)
        check_int("fragment", self.fragment, 1, 8)
        check_float("noise", self.noise, 0.0, 1.0)
        check_float("test_fraction", self.test_fraction, 0.05, 0.95)
        check_float("ink_level", self.ink_level, 0.0, 1.0)

    @classmethod
    def from_dataset(cls, dataset: dict, n: int = 2000, seed: int = 14) -> TwoDigitConfig:
        """The config matching a trained model's ``config.json["dataset"]``."""
        keep = ("size", "scale", "n_distractors", "fragment", "noise", "test_fraction")
        return cls(n=n, seed=seed, source_seed=int(dataset.get("seed", 0)),
                   **{k: dataset[k] for k in keep if k in dataset})

    def to_dict(self) -> dict:
        return asdict(self)


def _ink_boxes(digits: np.ndarray, ys: np.ndarray, xs: np.ndarray, level: float) -> np.ndarray:
    """``[n, 4]`` (y0, x0, y1, x1), end-exclusive: the tight box of each pasted digit's pixels >= level."""
    ink = digits >= level
    rows, cols = np.asarray(ink.any(axis=2)), np.asarray(ink.any(axis=1))
    d = digits.shape[1]

    def first(m: np.ndarray) -> np.ndarray:
        return np.where(m.any(1), m.argmax(1), 0)

    def last(m: np.ndarray) -> np.ndarray:
        return np.where(m.any(1), d - m[:, ::-1].argmax(1), d)

    return np.stack([ys + first(rows), xs + first(cols), ys + last(rows), xs + last(cols)], 1).astype(np.int64)


def make_two_digits(cfg: TwoDigitConfig | None = None) -> dict[str, np.ndarray]:
    """The two-digit split, seeded (same config -> same arrays).

    Returns grey float32 ``x`` ``[n, size, size]`` in [0, 1] (``to_rgb`` for the layout functions)
    and, per image: ``side`` (0 = left is queried, 1 = right; balanced at random), ``y`` (the
    queried digit's class, the label), ``y_other`` (the other digit's, always different),
    ``labels`` ``[n, 2]`` (left, right), ``boxes`` ``[n, 2, 4]`` (the pasted ``8*scale`` px squares,
    left then right, ``(y0, x0, y1, x1)`` end-exclusive), ``ink`` ``[n, 2, 4]`` (their ink boxes),
    ``query_box`` / ``query_ink`` ``[n, 4]`` (the queried digit's) and ``half`` ``[n, 4]`` (the queried
    half of the canvas as a box).
    """
    cfg = cfg or TwoDigitConfig()
    dcfg = DatasetConfig(n_train=1, n_test=1, size=cfg.size, scale=cfg.scale, n_distractors=cfg.n_distractors,
                         fragment=cfg.fragment, noise=cfg.noise, test_fraction=cfg.test_fraction,
                         seed=cfg.source_seed)
    _, _, src, lab = source_digits(dcfg)  # the held-out source digits only
    rng = np.random.default_rng(cfg.seed)
    n, s, d = cfg.n, cfg.size, src.shape[1]
    half = s // 2
    canvas = np.zeros((n, s, s), np.float32)
    add_distractors(canvas, src, cfg.n_distractors, cfg.fragment * cfg.scale, rng)  # fragments first, digits on top
    # two source digits of different classes: the second redrawn (vectorised) until it differs
    left = rng.integers(0, len(src), n)
    right = rng.integers(0, len(src), n)
    same = lab[left] == lab[right]
    while same.any():
        right[same] = rng.integers(0, len(src), int(same.sum()))
        same = lab[left] == lab[right]
    boxes = np.zeros((n, 2, 4), np.int64)
    ink = np.zeros((n, 2, 4), np.int64)
    for j, (pick, lo) in enumerate(((left, 0), (right, half))):
        ys = rng.integers(0, s - d + 1, n)
        xs = rng.integers(lo, lo + half - d + 1, n)  # wholly inside its half
        paste(canvas, src[pick], ys, xs)
        boxes[:, j] = np.stack([ys, xs, ys + d, xs + d], 1)
        ink[:, j] = _ink_boxes(src[pick], ys, xs, cfg.ink_level)
    canvas += rng.normal(0.0, cfg.noise, canvas.shape).astype(np.float32)
    np.clip(canvas, 0.0, 1.0, out=canvas)
    side = rng.permutation(np.arange(n) % 2)  # balanced: half the queries name the left digit
    labels = np.stack([lab[left], lab[right]], 1).astype(np.int64)
    idx = np.arange(n)
    halves = np.array([[0, 0, s, half], [0, half, s, s]], np.int64)
    return {"x": canvas, "side": side.astype(np.int64), "y": labels[idx, side], "y_other": labels[idx, 1 - side],
            "labels": labels, "boxes": boxes, "ink": ink, "query_box": boxes[idx, side],
            "query_ink": ink[idx, side], "other_ink": ink[idx, 1 - side], "half": halves[side]}


__all__ = ["SIDES", "TwoDigitConfig", "make_two_digits"]
