"""Where a dataset's images come from: a folder, a glob, a list of paths, a ``.zip`` or a Parquet file.

A source is listed as small, picklable ``ItemRef``s (never the pixels), in a fixed order, so a
100k-image folder costs a list of names, not the images; each worker reads its item's bytes
itself (``read_item``). Parquet sources are read one row group at a time.
"""

from __future__ import annotations

import glob
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias, cast

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
"""Files a folder or zip source takes as images (any other file is not listed)."""
MAX_FILE_BYTES = 512 * 1024 * 1024
"""A file larger than this is skipped (listed in the report), never read into memory."""
BYTES_COLUMNS = ("image", "bytes", "image_bytes", "content", "data")
"""Parquet columns tried, in this order, when no ``column`` is given (a struct with ``bytes``
is read too, as Hugging Face datasets store images)."""

SourceSpec: TypeAlias = str | os.PathLike | Sequence[str | os.PathLike] | Mapping[str, bytes]


@dataclass(frozen=True)
class ItemRef:
    """One image of a source: ``kind`` (``file``/``zip``/``parquet``), the container, the member
    (zip entry name, or ``"row_group:row"``) and the display path used in reports."""

    kind: str
    container: str
    member: str
    path: str
    data: bytes | None = field(default=None, repr=False, compare=False)  # kind "bytes": the file itself


@dataclass(frozen=True)
class Source:
    """A listed dataset: its kind (``folder``/``glob``/``list``/``zip``/``parquet``), a description and the items."""

    kind: str
    description: str
    items: tuple[ItemRef, ...]

    def __len__(self) -> int:
        return len(self.items)


class SourceError(ValueError):
    """A source that cannot be listed (missing, empty, not a dataset)."""


def open_source(spec: SourceSpec, *, column: str | None = None) -> Source:
    """List the images of ``spec``: a folder (recursive), a glob pattern, a list of paths, a
    ``.zip`` or a ``.parquet`` file, or a ``{name: bytes}`` mapping of files already in memory (the
    app's uploads). Raises ``SourceError`` with one line when it holds no image."""
    if isinstance(spec, Mapping):
        items = tuple(ItemRef("bytes", "", "", str(name), bytes(data)) for name, data in spec.items())
        return _non_empty(Source("memory", f"{len(items)} uploaded files", items), "uploads")
    if isinstance(spec, (list, tuple)):
        paths = [os.fspath(p) for p in spec]
        items = tuple(ItemRef("file", p, "", p) for p in paths)
        return _non_empty(Source("list", f"{len(paths)} listed files", items), spec)
    text = os.fspath(cast("str | os.PathLike[str]", spec))  # lists, tuples and mappings are handled above
    path = Path(text)
    if path.is_dir():
        found = sorted((p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
                       key=lambda p: p.relative_to(path).as_posix())
        items = tuple(ItemRef("file", str(p), "", p.relative_to(path).as_posix()) for p in found)
        return _non_empty(Source("folder", f"folder {text}", items), text)
    if path.is_file() and path.suffix.lower() == ".zip":
        return _non_empty(_zip_source(path), text)
    if path.is_file() and path.suffix.lower() in (".parquet", ".pq"):
        return _non_empty(_parquet_source(path, column), text)
    if any(c in text for c in "*?["):
        matches = sorted(p for p in glob.glob(text, recursive=True) if os.path.isfile(p))
        items = tuple(ItemRef("file", p, "", p) for p in matches)
        return _non_empty(Source("glob", f"glob {text}", items), text)
    if path.is_file():
        return Source("list", f"file {text}", (ItemRef("file", text, "", path.name),))
    raise SourceError(f"{text}: no such folder, file, zip, Parquet file or glob match")


def _non_empty(src: Source, spec: object) -> Source:
    if not src.items:
        raise SourceError(f"{spec}: the source holds no images (looked for {', '.join(IMAGE_SUFFIXES)})"
                          if src.kind in ("folder", "zip") else f"{spec}: the source holds no images")
    return src


def _zip_source(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(i.filename for i in zf.infolist()
                           if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
                           and not Path(i.filename).name.startswith("._"))
    except (zipfile.BadZipFile, OSError) as e:
        raise SourceError(f"{path}: not a readable zip file ({e})") from None
    return Source("zip", f"zip {path}", tuple(ItemRef("zip", str(path), n, n) for n in names))


def _parquet_columns(path: Path, column: str | None) -> tuple[str, str | None]:
    import pyarrow.parquet as pq
    schema = pq.read_schema(path)
    names = schema.names
    if column is not None:
        if column not in names:
            raise SourceError(f"{path}: no column {column!r} (columns: {', '.join(names)})")
        col = column
    else:
        found = next((c for c in BYTES_COLUMNS if c in names), None)
        if found is None:
            raise SourceError(f"{path}: no image-bytes column (tried {', '.join(BYTES_COLUMNS)}; "
                              f"columns: {', '.join(names)}); pass column=")
        col = found
    path_col = next((c for c in ("path", "file", "filename", "name") if c in names and c != col), None)
    return col, path_col


def _parquet_source(path: Path, column: str | None) -> Source:
    import pyarrow.parquet as pq
    try:
        col, path_col = _parquet_columns(path, column)
        pf = pq.ParquetFile(path)
        items: list[ItemRef] = []
        for g in range(pf.num_row_groups):
            names = (pf.read_row_group(g, columns=[path_col]).column(0).to_pylist() if path_col
                     else [None] * pf.metadata.row_group(g).num_rows)
            for r, n in enumerate(names):
                items.append(ItemRef("parquet", str(path), f"{col}:{g}:{r}", str(n) if n else f"row {len(items)}"))
    except SourceError:
        raise
    except Exception as e:  # noqa: BLE001 - pyarrow raises many types on damaged files
        raise SourceError(f"{path}: not a readable Parquet file ({' '.join(str(e).split())[:120]})") from None
    return Source("parquet", f"parquet {path} (column {col})", tuple(items))


class ItemReader:
    """Reads items' bytes, keeping the last zip / Parquet row group open (workers read items of one
    container in order, so each container is opened once per worker, not once per image)."""

    def __init__(self) -> None:
        self._zip: tuple[str, zipfile.ZipFile] | None = None
        self._group: tuple[tuple[str, str, int], list] | None = None

    def read(self, ref: ItemRef) -> bytes:
        """The item's bytes; ``OSError``/``ValueError`` with one line when unreadable or too large."""
        if ref.kind == "bytes":
            _check_size(len(ref.data or b""))
            return ref.data or b""
        if ref.kind == "file":
            size = os.path.getsize(ref.container)
            _check_size(size)
            with open(ref.container, "rb") as f:
                return f.read()
        if ref.kind == "zip":
            if self._zip is None or self._zip[0] != ref.container:
                self.close()
                self._zip = (ref.container, zipfile.ZipFile(ref.container))
            zf = self._zip[1]
            _check_size(zf.getinfo(ref.member).file_size)
            return zf.read(ref.member)
        if ref.kind == "parquet":
            col, g, r = ref.member.rsplit(":", 2)
            key = (ref.container, col, int(g))
            if self._group is None or self._group[0] != key:
                import pyarrow.parquet as pq
                self._group = (key, pq.ParquetFile(ref.container).read_row_group(int(g), columns=[col])
                               .column(0).to_pylist())
            value = self._group[1][int(r)]
            if isinstance(value, dict):  # Hugging Face style {"bytes": ..., "path": ...}
                value = value.get("bytes")
            if value is None:
                raise ValueError("no image bytes in this row")
            _check_size(len(value))
            return bytes(value)
        raise ValueError(f"unknown item kind {ref.kind!r}")

    def close(self) -> None:
        if self._zip is not None:
            self._zip[1].close()
            self._zip = None


def _check_size(size: int) -> None:
    if size > MAX_FILE_BYTES:
        raise ValueError(f"file is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES / 2**20:.0f} MiB limit")


def item_paths(items: Iterable[ItemRef]) -> list[str]:
    """Display paths of ``items`` (what reports and ``layouts.parquet`` call each image)."""
    return [i.path for i in items]
