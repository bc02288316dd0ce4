"""Token budgets relative to the image, so images of different sizes are treated alike.

An absolute budget (say 300 tokens) means "almost lossless" on a 256x256 photo and "a handful of
tokens per text line" on a 4000x800 panorama. A relative budget scales with the image:

* ``fraction``: a fraction of the uniform 16 px grid's tokens (0.3 = 30% of what a ViT/16 spends);
* ``tokens_per_mp``: tokens per megapixel of the original image.

``relative_budget`` turns either into the absolute token count of one image (at least one token).
``RelativeBudget`` is the plain, JSON-serialisable setting the app keeps between images.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from .validation import check_choice, check_float, check_int

BUDGET_UNITS = ("fraction", "tokens_per_mp")
"""How a relative budget is expressed: fraction of the 16 px grid, or tokens per megapixel."""
UNIFORM_PATCH = 16


def uniform16_tokens(height: int, width: int) -> int:
    """Tokens of the uniform 16 px grid over a ``height`` x ``width`` image (ceil on both sides)."""
    height = check_int("height", height, 1)
    width = check_int("width", width, 1)
    return math.ceil(height / UNIFORM_PATCH) * math.ceil(width / UNIFORM_PATCH)


@dataclass(frozen=True)
class RelativeBudget:
    """A per-image budget: ``value`` in ``unit`` (``"fraction"`` of the 16 px grid or ``"tokens_per_mp"``)."""

    unit: str
    value: float

    def __post_init__(self) -> None:
        check_choice("unit", self.unit, BUDGET_UNITS)
        if self.unit == "fraction":
            check_float("fraction", self.value, 0.0, 1e6)
        else:
            check_float("tokens_per_mp", self.value, 0.0, 1e9)
        if self.value <= 0:
            raise ValueError(f"a relative budget must be > 0, got {self.value}")

    def tokens(self, height: int, width: int) -> int:
        """The absolute budget for one image (rounded to the nearest token, at least 1)."""
        return relative_budget(height, width, **{self.unit: self.value})

    def to_dict(self) -> dict:
        return asdict(self)


def relative_budget(height: int, width: int, *, fraction: float | None = None,
                    tokens_per_mp: float | None = None) -> int:
    """The token budget of a ``height`` x ``width`` image from exactly one relative setting.

    ``fraction`` of the uniform 16 px grid's tokens, or ``tokens_per_mp`` tokens per megapixel;
    rounded to the nearest integer and never below 1 token.
    """
    if (fraction is None) == (tokens_per_mp is None):
        raise ValueError("give exactly one of fraction= or tokens_per_mp=")
    n16 = uniform16_tokens(height, width)
    if fraction is not None:
        fraction = check_float("fraction", fraction, 0.0)
        if fraction <= 0:
            raise ValueError(f"fraction must be > 0, got {fraction}")
        raw = fraction * n16
    else:
        tokens_per_mp = check_float("tokens_per_mp", tokens_per_mp, 0.0)
        if tokens_per_mp <= 0:
            raise ValueError(f"tokens_per_mp must be > 0, got {tokens_per_mp}")
        raw = tokens_per_mp * height * width / 1e6
    return max(1, int(math.floor(raw + 0.5)))
