"""``PatchLayout``: the result of every layout strategy, a set of square boxes ``(y, x, size)``.

Coordinates are in pixels of the *canvas*: the image padded at the bottom and right (by edge
replication) up to ``canvas = (canvas_height, canvas_width)``. Boxes lie inside the canvas, and
every original pixel ``(r, c)`` with ``r < height`` and ``c < width`` lies in exactly one box of
``boxes`` (a token) or ``dropped`` (a region the layout gives no token). Padding pixels lie in at
most one box: a box wholly in the padding would hold no pixel of the image, so layouts leave such
regions uncovered (a quadtree's squares straddling the edge split into fewer than four tokens).
Boxes are kept in row-major order of their top-left corner, the order of a ViT's fixed grid.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

BOX_DTYPE = np.int32


def _as_boxes(a: Any) -> np.ndarray:
    arr = np.asarray(a if a is not None else np.zeros((0, 3)), dtype=np.int64)
    if arr.size == 0:
        arr = arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"boxes must have shape [N, 3] of (y, x, size), got {arr.shape}")
    return arr.astype(BOX_DTYPE)


def sort_boxes(boxes: np.ndarray) -> np.ndarray:
    """Row-major order of the top-left corners (y first, then x)."""
    if len(boxes) == 0:
        return boxes
    return boxes[np.lexsort((boxes[:, 1], boxes[:, 0]))]


@dataclass(eq=False)
class PatchLayout:
    """Variable-size square patches covering an image.

    Attributes:
        height, width: size of the original image in pixels.
        canvas: ``(canvas_height, canvas_width)``, the padded area the boxes lie in (they tile
            the image; parts of the padding may be left uncovered).
        boxes: int32 ``[N, 3]`` of ``(y, x, size)``, one row per token.
        dropped: int32 ``[M, 3]`` boxes that are part of the tiling but get no token
            (budget exhausted, pruned).
        strategy: name of the strategy that made the layout.
        params: the strategy's parameters (JSON-serialisable), enough to reproduce it.
    """

    height: int
    width: int
    canvas: tuple[int, int]
    boxes: np.ndarray
    dropped: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), BOX_DTYPE))
    strategy: str = "custom"
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.height = int(self.height)
        self.width = int(self.width)
        self.canvas = (int(self.canvas[0]), int(self.canvas[1]))
        self.boxes = _as_boxes(self.boxes)
        self.dropped = _as_boxes(self.dropped)

    # ------------------------------------------------------------------ summaries
    @property
    def num_tokens(self) -> int:
        """Number of tokens (kept boxes)."""
        return len(self.boxes)

    @property
    def sizes(self) -> list[int]:
        """Distinct patch sizes among the tokens, ascending."""
        return sorted(int(s) for s in np.unique(self.boxes[:, 2]))

    def counts_per_size(self) -> dict[int, int]:
        """Token count per patch size, ascending by size."""
        sizes, counts = np.unique(self.boxes[:, 2], return_counts=True)
        return {int(s): int(c) for s, c in zip(sizes, counts)}

    def uniform_tokens(self, patch_size: int) -> int:
        """Tokens of a fixed grid of ``patch_size`` over the same image (ceil on both sides)."""
        return math.ceil(self.height / patch_size) * math.ceil(self.width / patch_size)

    def kept_area_fraction(self) -> float:
        """Fraction of the image's pixels covered by tokens (1.0 unless boxes were dropped)."""
        total = self.height * self.width
        b = self.boxes.astype(np.int64)
        inside = ((np.minimum(b[:, 0] + b[:, 2], self.height) - np.minimum(b[:, 0], self.height))
                  * (np.minimum(b[:, 1] + b[:, 2], self.width) - np.minimum(b[:, 1], self.width)))
        return float(inside.sum() / total) if total else 0.0

    # ------------------------------------------------------------------ checks
    def validate(self) -> PatchLayout:
        """Prove that ``boxes`` and ``dropped`` together tile the image exactly.

        Every original pixel is covered exactly once, every padding pixel of the canvas at most
        once (boxes wholly in the padding hold no pixel of the image; layouts leave them out).
        Checked by painting box counts with a 2-D difference array (one cumulative sum per axis),
        so the cost is one canvas-sized array, not a loop over pixels. Raises ``ValueError`` if not.
        """
        ch, cw = self.canvas
        if ch < self.height or cw < self.width:
            raise ValueError(f"canvas {self.canvas} is smaller than the image {(self.height, self.width)}")
        allb = np.concatenate([self.boxes, self.dropped]).astype(np.int64)
        if len(allb) == 0:
            raise ValueError("layout has no boxes")
        y, x, s = allb[:, 0], allb[:, 1], allb[:, 2]
        if (s < 1).any():
            raise ValueError("box sizes must be >= 1")
        if (y < 0).any() or (x < 0).any() or (y + s > ch).any() or (x + s > cw).any():
            raise ValueError("a box lies outside the canvas")
        diff = np.zeros((ch + 1, cw + 1), np.int64)
        np.add.at(diff, (y, x), 1)
        np.add.at(diff, (y + s, x), -1)
        np.add.at(diff, (y, x + s), -1)
        np.add.at(diff, (y + s, x + s), 1)
        cover = diff.cumsum(0).cumsum(1)[:ch, :cw]
        image = cover[:self.height, :self.width]
        if not (image == 1).all():
            bad = int((image != 1).sum())
            raise ValueError(f"boxes do not tile the image: {bad} pixels covered 0 or 2+ times")
        if (cover > 1).any():
            bad = int((cover > 1).sum())
            raise ValueError(f"boxes overlap in the padding: {bad} pixels covered 2+ times")
        return self

    # ------------------------------------------------------------------ geometry helpers
    def centers(self) -> np.ndarray:
        """Float ``[N, 2]`` of token centres ``(cy, cx)`` in pixels."""
        b = self.boxes.astype(np.float64)
        return np.stack([b[:, 0] + b[:, 2] / 2, b[:, 1] + b[:, 2] / 2], axis=1)

    def normalized(self) -> np.ndarray:
        """Float32 ``[N, 3]`` of ``(cy / H, cx / W, size / max(H, W))`` for position encodings."""
        c = self.centers()
        h, w = self.height, self.width
        out = np.stack([c[:, 0] / h, c[:, 1] / w, self.boxes[:, 2] / max(h, w)], axis=1)
        return out.astype(np.float32)

    def with_tokens(self, keep: np.ndarray, strategy: str | None = None, **extra: Any) -> PatchLayout:
        """A layout keeping only the tokens ``keep`` (indices or bool mask); the rest are dropped."""
        keep = np.asarray(keep)
        mask = keep if keep.dtype == bool else np.isin(np.arange(self.num_tokens), keep)
        if mask.shape != (self.num_tokens,):
            raise ValueError(f"keep mask must have length {self.num_tokens}, got {mask.shape}")
        dropped = sort_boxes(np.concatenate([self.dropped, self.boxes[~mask]]))
        return PatchLayout(
            self.height, self.width, self.canvas, self.boxes[mask], dropped,
            strategy or self.strategy, {**self.params, **extra},
        )

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """Plain-Python form (ints, lists) for JSON."""
        return {
            "format": "adapatch.PatchLayout/1",
            "height": self.height,
            "width": self.width,
            "canvas": list(self.canvas),
            "strategy": self.strategy,
            "params": jsonable(self.params),
            "num_tokens": self.num_tokens,
            "boxes": self.boxes.tolist(),
            "dropped": self.dropped.tolist(),
        }

    def to_json(self, indent: int | None = None) -> str:
        """Serialise to a JSON string (``from_json`` reads it back exactly)."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PatchLayout:
        """Inverse of ``to_dict``."""
        try:
            return cls(
                height=d["height"], width=d["width"], canvas=tuple(d["canvas"]),
                boxes=np.asarray(d["boxes"], dtype=np.int64).reshape(-1, 3),
                dropped=np.asarray(d.get("dropped", []), dtype=np.int64).reshape(-1, 3),
                strategy=d.get("strategy", "custom"), params=dict(d.get("params", {})),
            )
        except (KeyError, TypeError) as e:
            raise ValueError(f"not a PatchLayout dict: {e}") from None

    @classmethod
    def from_json(cls, text: str) -> PatchLayout:
        """Read a layout written by ``to_json``."""
        return cls.from_dict(json.loads(text))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PatchLayout):
            return NotImplemented
        return (
            (self.height, self.width, self.canvas, self.strategy) ==
            (other.height, other.width, other.canvas, other.strategy)
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.dropped, other.dropped)
            and jsonable(self.params) == jsonable(other.params)
        )

    def __repr__(self) -> str:
        return (f"PatchLayout({self.height}x{self.width}, tokens={self.num_tokens}, "
                f"sizes={self.counts_per_size()}, dropped={len(self.dropped)}, strategy={self.strategy!r})")


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return x


def padded_canvas(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Smallest canvas of multiples of ``multiple`` that holds a ``height x width`` image."""
    return (-(-height // multiple) * multiple, -(-width // multiple) * multiple)


def uniform(height: int, width: int, patch_size: int = 16) -> PatchLayout:
    """The fixed ViT grid of ``patch_size`` squares as a layout (row-major token order)."""
    from .validation import check_int

    height = check_int("height", height, 1)
    width = check_int("width", width, 1)
    patch_size = check_int("patch_size", patch_size, 1, 4096)
    ch, cw = padded_canvas(height, width, patch_size)
    ys, xs = np.mgrid[0:ch:patch_size, 0:cw:patch_size]
    boxes = np.stack([ys.ravel(), xs.ravel(), np.full(ys.size, patch_size)], axis=1)
    return PatchLayout(height, width, (ch, cw), boxes, strategy="uniform",
                       params={"patch_size": patch_size})


def uniform_for_budget(height: int, width: int, budget: int) -> PatchLayout:
    """The equal-token uniform baseline: a grid of square patches of *any* integer size whose token
    count is the closest to ``budget`` (ties: the fewer tokens).

    This is what a ViT user gets by resizing the image so that a fixed grid has about ``budget``
    patches. The counts ``ceil(H / s) * ceil(W / s)`` of all sizes ``s`` are compared at once.
    """
    from .validation import check_int

    height = check_int("height", height, 1)
    width = check_int("width", width, 1)
    budget = check_int("budget", budget, 1)
    sizes = np.arange(1, max(height, width) + 1, dtype=np.int64)
    counts = -(-height // sizes) * -(-width // sizes)
    err = np.abs(counts - budget)
    best = np.flatnonzero(err == err.min())
    size = int(sizes[best[np.argmin(counts[best])]])  # counts fall with size: fewer tokens wins ties
    return uniform(height, width, size)
