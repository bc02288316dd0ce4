"""``PatchLayout`` <-> Arrow tables and ``layouts.parquet`` (readable by pandas, pyarrow and Ray).

One row per image: ``path`` (string), ``height``, ``width``, ``tokens`` (int32), ``boxes`` (list of
``[y, x, size]`` int32 triples), then what a full round trip needs: ``canvas_height``,
``canvas_width``, ``dropped`` (boxes without a token), ``strategy`` and ``params`` (JSON).
Columns are built from flat numpy arrays (no per-box Python objects).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Sequence

import numpy as np

from ..layout import BOX_DTYPE, PatchLayout, jsonable


def _schema():
    import pyarrow as pa
    box = pa.list_(pa.int32(), 3)
    return pa.schema([
        ("path", pa.string()), ("height", pa.int32()), ("width", pa.int32()), ("tokens", pa.int32()),
        ("boxes", pa.list_(box)), ("canvas_height", pa.int32()), ("canvas_width", pa.int32()),
        ("dropped", pa.list_(box)), ("strategy", pa.string()), ("params", pa.string()),
    ])


def _box_lists(arrays: Sequence[np.ndarray]):
    import pyarrow as pa
    counts = np.fromiter((len(a) for a in arrays), np.int64, len(arrays))
    offsets = np.zeros(len(arrays) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    flat = (np.concatenate([np.asarray(a, np.int32).reshape(-1, 3) for a in arrays]) if arrays
            else np.zeros((0, 3), np.int32))
    triples = pa.FixedSizeListArray.from_arrays(pa.array(flat.ravel(), pa.int32()), 3)
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), triples)


def layouts_to_arrow(layouts: Sequence[PatchLayout], paths: Sequence[str]):
    """A ``pyarrow.Table`` (schema in the module doc) of ``layouts``, one row per image."""
    import pyarrow as pa
    if len(layouts) != len(paths):
        raise ValueError(f"need one path per layout, got {len(paths)} paths for {len(layouts)} layouts")
    cols = {
        "path": pa.array([str(p) for p in paths], pa.string()),
        "height": pa.array([lay.height for lay in layouts], pa.int32()),
        "width": pa.array([lay.width for lay in layouts], pa.int32()),
        "tokens": pa.array([lay.num_tokens for lay in layouts], pa.int32()),
        "boxes": _box_lists([lay.boxes for lay in layouts]),
        "canvas_height": pa.array([lay.canvas[0] for lay in layouts], pa.int32()),
        "canvas_width": pa.array([lay.canvas[1] for lay in layouts], pa.int32()),
        "dropped": _box_lists([lay.dropped for lay in layouts]),
        "strategy": pa.array([lay.strategy for lay in layouts], pa.string()),
        "params": pa.array([json.dumps(jsonable(lay.params), sort_keys=True) for lay in layouts], pa.string()),
    }
    return pa.Table.from_pydict(cols, schema=_schema())


def _boxes_column(col) -> list[np.ndarray]:
    """Per-row ``[n, 3]`` boxes from a list-of-triples column, without Python objects per box."""
    import pyarrow as pa
    col = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    offsets = np.asarray(col.offsets.to_numpy(zero_copy_only=False), np.int64)
    flat = col.values.flatten().to_numpy(zero_copy_only=False).astype(BOX_DTYPE).reshape(-1, 3)
    base = offsets[0]
    return [flat[a - base:b - base] for a, b in itertools.pairwise(offsets)]


def layouts_from_arrow(table) -> list[PatchLayout]:
    """The layouts of a table written by ``layouts_to_arrow`` (or read from ``layouts.parquet``)."""
    names = set(table.column_names)
    need = {"height", "width", "boxes"}
    if not need <= names:
        raise ValueError(f"not a layouts table: missing {', '.join(sorted(need - names))}")
    n = table.num_rows
    h = table.column("height").to_numpy()
    w = table.column("width").to_numpy()
    boxes = _boxes_column(table.column("boxes"))
    dropped = _boxes_column(table.column("dropped")) if "dropped" in names else [np.zeros((0, 3), BOX_DTYPE)] * n
    if "canvas_height" in names:
        ch, cw = table.column("canvas_height").to_numpy(), table.column("canvas_width").to_numpy()
    else:  # a minimal table: the canvas is the extent of the boxes
        ch = [max(int(hh), int((b[:, 0] + b[:, 2]).max(initial=0))) for hh, b in zip(h, boxes)]
        cw = [max(int(ww), int((b[:, 1] + b[:, 2]).max(initial=0))) for ww, b in zip(w, boxes)]
    strategy = table.column("strategy").to_pylist() if "strategy" in names else ["custom"] * n
    params = [json.loads(p) if p else {} for p in table.column("params").to_pylist()] if "params" in names else [{}] * n
    return [PatchLayout(int(h[i]), int(w[i]), (int(ch[i]), int(cw[i])), boxes[i], dropped[i], strategy[i], params[i])
            for i in range(n)]


class LayoutWriter:
    """Writes ``layouts.parquet`` in row groups as layouts arrive (memory: one row group)."""

    def __init__(self, path: str | os.PathLike, row_group: int = 1024) -> None:
        import pyarrow.parquet as pq
        self.path = os.fspath(path)
        self.row_group = row_group
        self._writer = pq.ParquetWriter(self.path, _schema(), compression="zstd")
        self._layouts: list[PatchLayout] = []
        self._paths: list[str] = []
        self.rows = 0

    def add(self, path: str, layout: PatchLayout) -> None:
        self._layouts.append(layout)
        self._paths.append(path)
        if len(self._layouts) >= self.row_group:
            self._flush()

    def _flush(self) -> None:
        if self._layouts:
            self._writer.write_table(layouts_to_arrow(self._layouts, self._paths))
            self.rows += len(self._layouts)
            self._layouts, self._paths = [], []

    def close(self) -> None:
        self._flush()
        self._writer.close()

    def __enter__(self) -> LayoutWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_layouts(path: str | os.PathLike, items: Iterable[tuple[str, PatchLayout]]) -> int:
    """Write ``(path, layout)`` pairs to a Parquet file; returns the number of rows."""
    with LayoutWriter(path) as w:
        for p, lay in items:
            w.add(p, lay)
    return w.rows


def read_layouts(path: str | os.PathLike) -> tuple[list[str], list[PatchLayout]]:
    """``(paths, layouts)`` of a ``layouts.parquet``."""
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    return table.column("path").to_pylist(), layouts_from_arrow(table)
