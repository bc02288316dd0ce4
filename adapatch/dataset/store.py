"""Per-image path importances of a whole dataset, spilled to disk so memory stays flat.

Each image's ``PathImportance.values`` (float64, trailing zeros dropped: the squares that can never
split, such as the finest level of the distortion importance) is appended to one binary file; only a few
integers per image (size, token base, offset) and its path stay in memory. Every dataset
question is then a *scan* of that file in bounded chunks: token counts at a set of thresholds
(``tokens_at``), the values inside a threshold bracket (for the exact solver), or one image's
layout at a threshold. Images are kept in source order (``finish`` sorts by source index), so
every engine that processed the same source yields the same store, bit for bit.

A split adds the tokens of its children that hold an image pixel, less one (3 inside the image,
fewer where it straddles the edge: ``quadtree_engine.split_increments``). That depends only on an
image's size and the settings, so it is not stored: each scan decodes every value's square (level,
row, column) from its position and the image's size, vectorised over the chunk (``_increments``).
Values whose split adds no token (the corner square straddling the image, squares wholly in the
padding) are no breakpoints of the token count: scans weigh them 0 and the solver never looks at them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..budgets import uniform16_tokens
from ..layout import PatchLayout, padded_canvas
from ..quadtree import PathImportance
from ..quadtree_engine import split_sizes
from .records import CurveSettings, ItemResult

CHUNK_VALUES = 1 << 21
"""Values read per scan step (16 MiB of float64): the memory a scan costs, whatever the dataset size."""


class CurveStore:
    """The dataset's per-image curves: a spill file plus small per-image arrays (see the module doc)."""

    def __init__(self, settings: CurveSettings, directory: str | os.PathLike | None = None) -> None:
        self.settings = settings
        self._own_dir = directory is None
        self.directory = tempfile.mkdtemp(prefix="adapatch-curves-") if directory is None else os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._spill_path = os.path.join(self.directory, "values.f64")
        self._spill = open(self._spill_path, "wb")  # noqa: SIM115 - open while images are added; finish/close shut it
        self._rows: list[tuple[int, int, int, int, int, int]] = []  # index, height, width, stored, offset, total
        self._paths: list[str] = []
        self._skipped: list[tuple[int, str, str]] = []
        self._written = 0
        self.params: dict[str, Any] | None = None
        self.finished = False
        self.source = ""  # where the images came from, for the reader (set by whoever scans)

    # ------------------------------------------------------------------ building
    def add(self, result: ItemResult) -> None:
        """Append one image's result (a record, or a skip with its reason)."""
        if self.finished:
            raise RuntimeError("the store is finished")
        if result.record is None:
            self._skipped.append((result.index, result.path, result.reason or "unknown error"))
            return
        rec = result.record
        if self.params is None:
            self.params = dict(rec.params)
        vals = np.ascontiguousarray(rec.values, dtype=np.float64)
        nz = np.flatnonzero(vals)
        kept = vals[:nz[-1] + 1] if len(nz) else vals[:0]  # trailing zeros never split: not stored
        self._spill.write(kept.tobytes())
        self._rows.append((result.index, rec.height, rec.width, len(kept), self._written, len(vals)))
        self._written += len(kept)
        self._paths.append(result.path)

    def finish(self) -> CurveStore:
        """Close the spill file and order the images by source index."""
        if self.finished:
            return self
        self._spill.close()
        rows = np.asarray(self._rows, np.int64).reshape(-1, 6)
        order = np.argsort(rows[:, 0], kind="stable")
        rows = rows[order]
        self.source_index = rows[:, 0]
        self.heights = rows[:, 1]
        self.widths = rows[:, 2]
        self.counts = rows[:, 3]
        self._file_offsets = rows[:, 4]
        self._full_counts = rows[:, 5]
        self.paths = [self._paths[i] for i in order]
        self._rows, self._paths = [], []
        s0 = self.settings.max_size
        self.base_tokens = (-(-self.heights // s0)) * (-(-self.widths // s0))
        self.uniform16 = np.array([uniform16_tokens(h, w) for h, w in zip(self.heights, self.widths)], np.int64)
        self.skipped = [{"path": p, "reason": r} for _, p, r in sorted(self._skipped)]
        self.finished = True
        return self

    # ------------------------------------------------------------------ reading
    @property
    def n_images(self) -> int:
        return len(self.heights)

    @property
    def n_values(self) -> int:
        """Stored values (every non-zero path importance; zeros never split at a threshold >= 0)."""
        return int(self.counts.sum())

    @property
    def megapixels(self) -> np.ndarray:
        return self.heights * self.widths / 1e6

    def values_of(self, i: int) -> np.ndarray:
        """Image ``i``'s path importances (store order), all of them (trailing zeros restored)."""
        out = np.zeros(int(self._full_counts[i]))
        with open(self._spill_path, "rb") as f:
            f.seek(int(self._file_offsets[i]) * 8)
            out[:int(self.counts[i])] = np.fromfile(f, np.float64, int(self.counts[i]))
        return out

    @property
    def sizes(self) -> list[int]:
        """The square sizes of every image's quadtree, descending (``max_size`` ... ``min_size``)."""
        return split_sizes(self.settings.min_size, self.settings.max_size)

    def record(self, i: int) -> PathImportance:
        """Image ``i``'s ``PathImportance`` (everything its quadtree depends on)."""
        h, w = int(self.heights[i]), int(self.widths[i])
        return PathImportance(h, w, padded_canvas(h, w, self.settings.max_size), self.sizes, self.values_of(i),
                              dict(self.params or {}))

    def _increments(self, first: int, stop: int) -> np.ndarray:
        """int8: the tokens each stored value's split adds (``quadtree_engine.split_increments``) for
        images ``first..stop-1``, aligned with ``scan``'s values. Each image's values are its levels
        concatenated (coarse to fine, row-major), so a value's square follows from its position: one
        segment per (image, level), whose attributes are repeated over its values (no per-value loop)."""
        sizes = np.asarray(self.sizes[:-1], np.int64)
        n_lv = len(sizes)
        counts = self.counts[first:stop]
        if n_lv == 0 or counts.sum() == 0:
            return np.zeros(int(counts.sum()), np.int8)
        h, w = self.heights[first:stop, None], self.widths[first:stop, None]
        s0 = self.settings.max_size
        ch, cw = -(-h // s0) * s0, -(-w // s0) * s0
        gw = cw // sizes  # [m, L]: squares per row, per image and level
        ends = np.cumsum((ch // sizes) * gw, axis=1)
        starts = ends - (ch // sizes) * gw
        seg = np.clip(np.minimum(ends, counts[:, None]) - starts, 0, None).ravel()  # stored values per segment
        rep = [np.repeat(a.ravel().astype(np.int32), seg) for a in
               (np.broadcast_to(sizes, gw.shape), gw, np.broadcast_to(h, gw.shape), np.broadcast_to(w, gw.shape))]
        s, gwr, hr, wr = rep
        local = np.arange(int(seg.sum()), dtype=np.int32) - np.repeat((np.cumsum(seg) - seg).astype(np.int32), seg)
        r, c = np.divmod(local, gwr)
        y, x, half = r * s, c * s, s // 2
        ny = (y < hr).astype(np.int8) + (y + half < hr)
        nx = (x < wr).astype(np.int8) + (x + half < wr)
        return np.maximum(ny * nx - 1, 0).astype(np.int8)

    def layout(self, i: int, threshold: float) -> PatchLayout:
        """Image ``i``'s quadtree at ``threshold`` (equal to ``quadtree(image, threshold=...)``)."""
        return self.record(i).layout(threshold)

    def scan(self, chunk_values: int = CHUNK_VALUES) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
        """``(first, stop, image_ids, values, increments)`` chunks covering every value once, whole
        images ``first..stop-1`` per chunk, in store order (``image_ids`` are store indices;
        ``increments``: the tokens each value's split adds, ``_increments``)."""
        self._need_finished()
        with open(self._spill_path, "rb") as f:
            start = 0
            n = self.n_images
            while start < n:
                stop, total = start, 0
                while stop < n and (stop == start or total + self.counts[stop] <= chunk_values):
                    total += int(self.counts[stop])
                    stop += 1
                offs = self._file_offsets[start:stop]
                if np.array_equal(offs[1:], offs[:-1] + self.counts[start:stop - 1]):  # contiguous on disk
                    f.seek(int(offs[0]) * 8)
                    vals = np.fromfile(f, np.float64, total)
                else:  # written out of source order (a parallel engine): one read per image
                    parts = []
                    for i in range(start, stop):
                        f.seek(int(self._file_offsets[i]) * 8)
                        parts.append(np.fromfile(f, np.float64, int(self.counts[i])))
                    vals = np.concatenate(parts)
                ids = np.repeat(np.arange(start, stop), self.counts[start:stop])
                yield start, stop, ids, vals, self._increments(start, stop)
                start = stop

    def counts_at(self, thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(splits, added)``, each ``[n_images, G]`` int64, at each threshold (ascending): how many
        squares whose split adds tokens split (``#{p > t, inc > 0}``) and the tokens they add (the sum
        of their increments), per image; one scan."""
        t = np.asarray(thresholds, np.float64)
        if t.ndim != 1 or (len(t) > 1 and (np.diff(t) < 0).any()):
            raise ValueError("thresholds must be a 1-D ascending array")
        g = len(t)
        splits = np.zeros((self.n_images, g), np.int64)
        added = np.zeros((self.n_images, g), np.int64)
        for first, stop, ids, vals, inc in self.scan():
            adds = inc > 0
            below = np.searchsorted(t, vals[adds], side="left")  # thresholds strictly below each value
            m = stop - first
            key = (ids[adds] - first) * (g + 1) + below
            for out, weights in ((splits, None), (added, inc[adds])):
                hist = np.bincount(key, weights, minlength=m * (g + 1)).reshape(m, g + 1)
                out[first:first + m] = np.rint(np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:])
        return splits, added

    def split_counts(self, thresholds: np.ndarray) -> np.ndarray:
        """``[n_images, G]`` int64: how many squares of each image split at each threshold, of those
        whose split adds tokens (``#{p > t}``); ``thresholds`` ascending."""
        return self.counts_at(thresholds)[0]

    def tokens_at(self, thresholds: np.ndarray) -> np.ndarray:
        """``[n_images, G]`` token counts of every image's quadtree at each threshold."""
        return self.base_tokens[:, None] + self.counts_at(thresholds)[1]

    def values_between(self, lo: float, hi: float, stride: int = 1) -> np.ndarray:
        """Distinct values in the open interval ``(lo, hi)`` of the squares whose split adds tokens
        (the token counts' breakpoints), ascending; with ``stride > 1`` only every ``stride``-th such
        value in store order is taken (a deterministic sample)."""
        taken, seen = [], 0
        for _, _, _, vals, inc in self.scan():
            sel = vals[(vals > lo) & (vals < hi) & (inc > 0)]
            if stride > 1:
                idx = np.arange(seen, seen + len(sel))
                seen += len(sel)
                sel = sel[idx % stride == 0]
            taken.append(np.unique(sel))
        return np.unique(np.concatenate(taken)) if taken else np.zeros(0)

    def max_value(self) -> float:
        """The largest breakpoint: the largest value whose split adds tokens (0 if none)."""
        return max((float(v[a > 0].max()) for _, _, _, v, a in self.scan() if (a > 0).any()), default=0.0)

    def _need_finished(self) -> None:
        if not self.finished:
            raise RuntimeError("call finish() first")

    # ------------------------------------------------------------------ cleanup
    def close(self) -> None:
        """Delete the spill file (and the directory when the store made it)."""
        if not self._spill.closed:
            self._spill.close()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)
        elif os.path.exists(self._spill_path):
            os.remove(self._spill_path)

    def __enter__(self) -> CurveStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
