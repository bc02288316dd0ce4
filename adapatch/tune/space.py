"""What ``adapatch.tune`` searches: configuration families (strategy, importance, patch sizes) and
the compute levels each is tried at.

A ``Config`` is a ``Family`` at a ``level``: the target mean MACs of the model on the tuned images,
as a share of the model's full patch grid. Budget strategies (uniform, multiscale, greedy, the
learned selector) turn a level into a per-image token budget directly; the threshold-mode quadtree
turns it into one threshold for the whole set through the images' exact tokens-vs-threshold curves
(``adapatch.quadtree.PathImportance``), so the threshold is a searched dimension that costs no
model call and no second patcher run.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..validation import check_choice, check_float

STRATEGIES = ("uniform", "quadtree", "multiscale", "greedy", "learned_selector")
"""Every strategy the tuner can search (``learned_selector`` only for a model that has one)."""
QUADTREE_IMPORTANCES = ("std", "distortion", "entropy")
DEFAULT_LEVELS = (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.75)
"""MACs levels tried by default (share of the full grid's MACs)."""


@dataclass(frozen=True)
class Family:
    """A configuration without its compute level: the strategy and what shapes its layouts.
    Patch sizes are in pixels of the model's input frame."""

    strategy: str
    importance: str | None = None  # quadtree only
    min_size: int | None = None  # quadtree / greedy
    max_size: int | None = None

    def __post_init__(self) -> None:
        check_choice("strategy", self.strategy, STRATEGIES)
        if self.importance is not None:
            check_choice("importance", self.importance, QUADTREE_IMPORTANCES)

    @property
    def key(self) -> str:
        parts = [self.strategy]
        if self.importance:
            parts.append(self.importance)
        if self.min_size is not None:
            parts.append(f"{self.min_size}-{self.max_size}px")
        return " ".join(parts)

    def to_dict(self) -> dict:
        return asdict(self)

    def size_range(self) -> tuple[int, int]:
        """``(min_size, max_size)`` of a quadtree or greedy family."""
        if self.min_size is None or self.max_size is None:
            raise ValueError(f"the {self.strategy} family has no patch size range")
        return self.min_size, self.max_size


@dataclass(frozen=True)
class Config:
    """A family at one compute level (target mean MACs / full-grid MACs)."""

    family: Family
    level: float

    def __post_init__(self) -> None:
        check_float("level", self.level, 0.0, 1.0)

    @property
    def key(self) -> str:
        return f"{self.family.key} @ {self.level:.2f}"

    def to_dict(self) -> dict:
        return {**self.family.to_dict(), "level": self.level}


def size_ranges(patch: int, img_size: int) -> list[tuple[int, int]]:
    """Patch-size ranges to try in the model's frame: from half the model's patch (when it is at least
    4 px) or the patch itself, up to 2x or 4x the patch (at most the frame)."""
    mins = [patch] + ([patch // 2] if patch // 2 >= 4 and patch % 2 == 0 else [])
    maxs = [m for m in (2 * patch, 4 * patch) if m <= max(img_size, 2 * patch)]
    return [(a, b) for a in mins for b in maxs if _pow2_ratio(a, b)]


def _pow2_ratio(a: int, b: int) -> bool:
    r = b // a
    return b % a == 0 and r >= 2 and r & (r - 1) == 0


def families(patch: int, img_size: int, has_selector: bool, strategies=STRATEGIES,
             importances=QUADTREE_IMPORTANCES) -> list[Family]:
    """The families of the search space for a model with ``patch`` px patches on ``img_size`` frames."""
    strategies = [check_choice("strategy", s, STRATEGIES) for s in strategies]
    out: list[Family] = []
    for s in strategies:
        if s == "uniform":
            out.append(Family("uniform"))
        elif s == "quadtree":
            out += [Family("quadtree", imp, a, b) for imp in importances for a, b in size_ranges(patch, img_size)]
        elif s == "multiscale":
            out.append(Family("multiscale"))
        elif s == "greedy":
            out += [Family("greedy", None, a, b) for a, b in size_ranges(patch, img_size)]
        elif s == "learned_selector" and has_selector:
            out.append(Family("learned_selector"))
    return out


def search_space(patch: int, img_size: int, has_selector: bool, strategies=STRATEGIES,
                 importances=QUADTREE_IMPORTANCES, levels=DEFAULT_LEVELS) -> list[Config]:
    """Every family at every level."""
    levels = sorted({check_float("level", v, 0.0, 1.0) for v in levels})
    if not levels or levels[0] <= 0:
        raise ValueError(f"levels must be MACs shares in (0, 1], got {levels!r}")
    return [Config(f, v) for f in families(patch, img_size, has_selector, strategies, importances) for v in levels]
