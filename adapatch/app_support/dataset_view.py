"""The Dataset page's helpers: its sources (the bundled sample set, uploads), the cached scan, the
solver call, the figures and the gallery overlays.

The scan (every image's path importances, ``adapatch.dataset.scan``) is the only slow step. It is an
``st.cache_resource`` (shared by all sessions, bounded, the spill store deleted when evicted) keyed on
the source's content digest and the quadtree settings; the source's bytes are passed as a callable
that runs only on a miss. Everything a target slider changes (the threshold, the statistics, the
histogram, the gallery) re-reads that store through ``adapatch.dataset`` (milliseconds), never the
images, except the eight gallery overlays (cached per image and threshold).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import math
import os
import tempfile
import time
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
import streamlit as st

from adapatch import render
from adapatch.dataset import (
    Calibration,
    CurveSettings,
    CurveStore,
    DatasetCurve,
    DatasetStats,
    InfeasibleTarget,
    Objectives,
    Targets,
    dataset_curve,
    scan,
    solve,
)
from adapatch.dataset import extremes as dataset_extremes
from adapatch.dataset.sources import IMAGE_SUFFIXES
from adapatch.image_io import load_image
from adapatch.importance import IMPORTANCE_MEASURES, SALIENCY_MEASURES
from adapatch.messages import one_line

from . import state
from .images import UPLOAD_TYPES, clean_name, decode_upload, digest_of, to_display

# ------------------------------------------------------------------ settings
DEFAULTS: dict[str, Any] = {
    "ds_source": "samples",  # "samples" | "uploads"
    "ds_importance": "distortion",
    "ds_sizes": (16, 64),
    "ds_target_kind": "mean_tokens",
    "ds_target_mean_tokens": None,  # the slider's last value (tokens); its seed is ds_target_share
    "ds_target_share": 0.5,  # the mean-tokens target as a share of the uniform 16 px grid: carried to new images
    "ds_target_tokens_per_mp": None,
    "ds_target_flops_ratio": None,
    "ds_use_p95": False,
    "ds_p95": None,
}
"""The page's settings (in ``state.settings()``, next to the other pages'; the ViT preset is shared)."""

IMPORTANCES = tuple(m for m in IMPORTANCE_MEASURES if m not in SALIENCY_MEASURES)
"""Measures the page offers: the ones that need no saliency map (saliency-based ones depend on the
Saliency page's method; use them on the Patch layout page)."""
SIZE_OPTIONS = (4, 8, 16, 32, 64, 128)
TARGET_KINDS = {
    "mean_tokens": "Mean tokens per image",
    "tokens_per_mp": "Tokens per megapixel",
    "flops_ratio": "MACs ratio vs uniform 16 px",
}
SOURCE_LABELS = {"samples": "Bundled sample set", "uploads": "Upload images"}

MAX_UPLOAD_FILES = 500
"""Most images taken from one upload (zip members count one each)."""
MAX_UPLOAD_BYTES = 200 * 2**20
"""Most bytes taken from one upload (zip members counted uncompressed)."""
GALLERY = 4
"""Images shown at each end (fewest and most tokens)."""
GALLERY_SIDE = 400
"""Longest side of a gallery overlay; smaller images are enlarged (nearest neighbour) towards it."""
SCAN_CACHE = 4
"""Scans kept (per server): each is a few integers per image in memory plus a spill file on disk."""
KEEP_MAX_FILES = MAX_UPLOAD_FILES
KEEP_MAX_BYTES = MAX_UPLOAD_BYTES
"""Uploaded files kept per session across page switches (their encoded bytes, as uploaded): no more
than one calibration can use, so keeping them costs what the open uploader already held."""
KEPT = "ds_kept_uploads"  # session: {file id: KeptFile}, in upload order
UPLOADER_IDS = "ds_uploader_ids"  # session: the file ids the uploader held on its last run
UPLOADER_GEN = "ds_uploader_gen"  # session: bumped by "Clear" (a new, empty uploader widget)
PICKER_KEYS = "ds_picker_keys"  # session: image keys the last "Apply" added to the sidebar's list


def init_settings() -> None:
    """Add the page's defaults to the session's settings once (the other pages' are in ``state``)."""
    s = state.settings()
    for k, v in DEFAULTS.items():
        s.setdefault(k, v)


# ------------------------------------------------------------------ sources
@dataclass
class DatasetSource:
    """What the page calibrates: a content digest (the cache key), the items' names, how to get the
    bytes (only on a cache miss, and per gallery image) and the files dropped before the scan."""

    kind: str  # "samples" | "uploads"
    digest: str
    description: str
    names: list[str]
    read: Callable[[str], bytes] = field(repr=False)
    skipped: list[dict] = field(default_factory=list)  # {path, reason}: not listed for the scan
    notes: list[str] = field(default_factory=list)
    categories: dict[str, str] = field(default_factory=dict)  # name -> category (bundled set)

    def mapping(self) -> dict[str, bytes]:
        """``{name: bytes}``: the ``adapatch.dataset`` source (read now, in order)."""
        return {n: self.read(n) for n in self.names}


@lru_cache(maxsize=4)
def _files_digest(stamp: tuple) -> str:
    h = hashlib.sha1()
    for name, path, _size, _mtime in stamp:
        h.update(name.encode() + b"\0" + digest_of(Path(path).read_bytes()).encode())
    return h.hexdigest()


def bundled_source() -> DatasetSource:
    """The bundled sample set (``adapatch.samples.dataset_sample_paths``), named by file name."""
    from adapatch.samples import dataset_category, dataset_sample_paths
    paths = {p.name: p for p in dataset_sample_paths()}
    if not paths:
        raise ValueError("the bundled sample set is missing from this installation")
    stamp = tuple((n, str(p), p.stat().st_size, p.stat().st_mtime_ns) for n, p in paths.items())
    cats = {n: dataset_category(n) for n in paths}
    counts = Counter(cats.values())
    desc = (f"{len(paths)} images in {len(counts)} categories ("
            + ", ".join(f"{c} {k}" for c, k in counts.items()) + ")")
    return DatasetSource("samples", "samples:" + _files_digest(stamp), desc, list(paths),
                         lambda n: paths[n].read_bytes(), categories=cats)


def _upload_manifest(f) -> dict:
    """One uploaded file, listed once per file id: its digest, and for a zip its image members."""
    name = clean_name(getattr(f, "name", "upload"))
    data = f.getvalue() if hasattr(f, "getvalue") else f.read()
    man: dict[str, Any] = {"name": name, "digest": digest_of(data), "size": len(data), "zip": False,
                           "members": [], "error": None}
    if name.lower().endswith(".zip"):
        man["zip"] = True
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                man["members"] = [(i.filename, int(i.file_size)) for i in zf.infolist()
                                  if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
                                  and not Path(i.filename).name.startswith("._")]
            if not man["members"]:
                man["error"] = "the zip file holds no images (" + ", ".join(IMAGE_SUFFIXES) + ")"
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            man["error"] = "not a readable zip file: " + (" ".join(str(e).split())[:120] or type(e).__name__)
    elif not data:
        man["error"] = "the file is empty"
    return man


def upload_source(files: list | None, manifests: dict | None = None) -> DatasetSource | None:
    """The uploaded images and zip files as one source (None when nothing is uploaded).

    ``manifests`` (``{file id: manifest}``, e.g. kept in the session) saves re-hashing and re-listing
    files on every rerun. At most ``MAX_UPLOAD_FILES`` images and ``MAX_UPLOAD_BYTES`` are taken,
    in upload order; the rest is reported in ``notes``. Unreadable zips and empty files go to
    ``skipped`` with their reason; bad images inside are found by the scan (``store.skipped``).
    """
    files = list(files or [])
    if not files:
        return None
    manifests = {} if manifests is None else manifests
    ids = [getattr(f, "file_id", None) or f"{getattr(f, 'name', '')}:{i}" for i, f in enumerate(files)]
    for fid, f in zip(ids, files):
        if fid not in manifests:
            manifests[fid] = _upload_manifest(f)
    for fid in [k for k in manifests if k not in ids]:
        del manifests[fid]
    by_id = dict(zip(ids, files))
    items: dict[str, tuple[str, str | None]] = {}  # display name -> (file id, zip member or None)
    skipped: list[dict] = []
    total_bytes, left_out, h = 0, 0, hashlib.sha1()
    for fid in ids:
        man = manifests[fid]
        if man["error"]:
            skipped.append({"path": man["name"], "reason": man["error"]})
            continue
        entries = ([(f"{man['name']}/{m}", m, size) for m, size in man["members"]] if man["zip"]
                   else [(man["name"], None, man["size"])])
        for shown, member, size in entries:
            if len(items) >= MAX_UPLOAD_FILES or total_bytes + size > MAX_UPLOAD_BYTES:
                left_out += 1
                continue
            key, k = shown, 2
            while key in items:  # the same name twice: keep both
                key, k = f"{shown} ({k})", k + 1
            items[key] = (fid, member)
            total_bytes += size
            h.update(f"{key}\0{man['digest']}\0{member or ''}\0".encode())
    notes = []
    if left_out:
        notes.append(f"Only the first {len(items)} images ({total_bytes / 2**20:.0f} MB) are used: the page takes at "
                     f"most {MAX_UPLOAD_FILES} images and {MAX_UPLOAD_BYTES // 2**20} MB per upload; "
                     f"{left_out} more left out. Calibrate larger sets with `python -m adapatch calibrate`.")
    zips: dict[str, zipfile.ZipFile] = {}

    def read(name: str) -> bytes:
        fid, member = items[name]
        f = by_id[fid]
        if member is None:
            return bytes(f.getvalue())
        if fid not in zips:
            zips[fid] = zipfile.ZipFile(io.BytesIO(f.getvalue()))
        return zips[fid].read(member)

    n_files = len(files)
    desc = (f"{len(items)} image file{'s' if len(items) != 1 else ''} from {n_files} upload"
            f"{'s' if n_files != 1 else ''}")
    return DatasetSource("uploads", "uploads:" + h.hexdigest(), desc, list(items), read, skipped, notes)


# ------------------------------------------------------------------ uploads kept across page switches
@dataclass(frozen=True)
class KeptFile:
    """An uploaded file's bytes, kept in the session: Streamlit's uploader forgets its files when the
    page is left, the calibration must not. Reads like an ``UploadedFile`` for ``upload_source``."""

    file_id: str
    name: str
    digest: str
    data: bytes = field(repr=False)

    def getvalue(self) -> bytes:
        return self.data


def file_ids(files: list | None) -> list[str]:
    """The uploader's file ids (as ``upload_source`` names them)."""
    return [getattr(f, "file_id", None) or f"{getattr(f, 'name', '')}:{i}" for i, f in enumerate(files or [])]


def keep_uploads(kept: dict[str, KeptFile], files: list | None, removed: Iterable[str] = ()) -> list[str]:
    """Update ``kept`` in place: drop the files ``removed`` from the uploader, add the uploader's new
    files (the same name and content once), at most ``KEEP_MAX_FILES`` files and ``KEEP_MAX_BYTES``.
    Returns one line per file left out by those bounds (it stays unused until some are cleared)."""
    for fid in removed:
        kept.pop(fid, None)
    have = {(k.name, k.digest) for k in kept.values()}
    total = sum(len(k.data) for k in kept.values())
    left_out = []
    for fid, f in zip(file_ids(files), files or []):
        if fid in kept:
            continue
        data = bytes(f.getvalue() if hasattr(f, "getvalue") else f.read())
        name, digest = clean_name(getattr(f, "name", "upload")), digest_of(data)
        if (name, digest) in have:
            continue
        if len(kept) >= KEEP_MAX_FILES or total + len(data) > KEEP_MAX_BYTES:
            left_out.append(name)
            continue
        kept[fid] = KeptFile(fid, name, digest, data)
        have.add((name, digest))
        total += len(data)
    if not left_out:
        return []
    more = f" and {len(left_out) - 5} more" if len(left_out) > 5 else ""
    return [(f"Not kept: {', '.join(left_out[:5])}{more}. The page keeps at most {KEEP_MAX_FILES} files and "
             f"{KEEP_MAX_BYTES // 2**20} MB of uploads per session; clear the kept uploads first, or calibrate "
             "larger sets with `python -m adapatch calibrate`.")]


def uploader_key() -> str:
    """The uploader's widget key: a new one after "Clear" (a file uploader cannot be emptied by code)."""
    gen = int(st.session_state.get(UPLOADER_GEN, 0))
    return "ds_uploader" if gen == 0 else f"ds_uploader_{gen}"


def on_uploader_change(key: str) -> None:
    """The user added or removed files in the uploader: files removed there leave the kept set too.
    (Not called when the uploader comes back empty after a page switch: that is no removal.)"""
    now = set(file_ids(st.session_state.get(key)))
    removed = [fid for fid in st.session_state.get(UPLOADER_IDS, []) if fid not in now]
    keep_uploads(st.session_state.setdefault(KEPT, {}), None, removed)


def sync_kept(files: list | None) -> tuple[list[KeptFile], list[str]]:
    """Keep the uploader's new files in the session; return every kept file (in upload order) and
    the lines about files left out."""
    kept: dict[str, KeptFile] = st.session_state.setdefault(KEPT, {})
    notes = keep_uploads(kept, files)
    st.session_state[UPLOADER_IDS] = file_ids(files)
    return list(kept.values()), notes


def clear_kept() -> None:
    """Forget the kept uploads and start a new, empty uploader."""
    st.session_state[KEPT] = {}
    st.session_state[UPLOADER_IDS] = []
    st.session_state[UPLOADER_GEN] = int(st.session_state.get(UPLOADER_GEN, 0)) + 1


def kept_summary(kept: list[KeptFile]) -> str:
    """One line: how many files and bytes the session keeps."""
    n, mb = len(kept), sum(len(k.data) for k in kept) / 2**20
    return f"{n} file{'s' if n != 1 else ''} ({mb:,.1f} MB)"


# ------------------------------------------------------------------ scan (cached) and solve
@dataclass
class Scanned:
    """A finished scan: the store and how long the scan took."""

    store: CurveStore
    seconds: float


def _release(scanned: Scanned) -> None:
    scanned.store.close()


@st.cache_resource(max_entries=SCAN_CACHE, show_spinner=False, on_release=_release)
def _scan(digest: str, settings_json: str, _source: DatasetSource) -> Scanned:
    settings = CurveSettings(**json.loads(settings_json))
    t0 = time.perf_counter()
    source = _source.mapping() if _source.names else {}
    if not source:
        raise ValueError("no image to calibrate: " + ("; ".join(f"{s['path']}: {s['reason']}" for s in _source.skipped)
                                                      or "upload images or zip files"))
    store = scan(source, settings, engine="local", workers=1)  # in-process: torch may be loaded (no fork)
    store.source = _source.description
    return Scanned(store, time.perf_counter() - t0)


def curve_settings(importance: str, sizes) -> CurveSettings:
    return CurveSettings(min_size=int(sizes[0]), max_size=int(sizes[1]), importance=importance)


def scan_source(source: DatasetSource, settings: CurveSettings) -> Scanned:
    """The source scanned with ``settings`` (once per source digest and settings, per server)."""
    return _scan(source.digest, json.dumps(settings.to_dict(), sort_keys=True), source)


@st.cache_data(max_entries=32, show_spinner=False)
def _curve(digest: str, settings_json: str, vit: str, _store: CurveStore) -> DatasetCurve:
    return dataset_curve(_store, vit)


def curve(source: DatasetSource, settings: CurveSettings, vit: str) -> DatasetCurve:
    """The dataset's curve (``adapatch.dataset.dataset_curve``) for the scanned source."""
    return _curve(source.digest, json.dumps(settings.to_dict(), sort_keys=True), vit,
                  scan_source(source, settings).store)


@dataclass
class Range:
    """What a target can be on this data: ``lo`` (every image as max-size squares only: the largest threshold)
    up to ``hi`` (every split: threshold 0), both reachable, rounded outwards to the slider's step."""

    kind: str
    lo: float
    hi: float
    step: float
    default: float

    @property
    def fixed(self) -> bool:
        return self.hi <= self.lo


def target_range(store: CurveStore, kind: str, vit: str, share: float = 0.5) -> Range:
    """The slider range of target ``kind``: from what no split costs to what every split costs. The
    default is ``share`` of the uniform 16 px grid (of its tokens per image, per megapixel or MACs),
    so a target carries across image sets as a share, never as a token count of another set."""
    f1, f0 = Objectives(store, vit).bounds(kind)
    if kind == "flops_ratio":
        step, half = 0.001, share
    elif kind == "tokens_per_mp":
        step, half = 1.0, share * float(store.uniform16.sum() / store.megapixels.sum())
    else:
        step, half = 1.0, share * float(store.uniform16.mean())

    def up(v: float) -> float:  # the next step at or above v (a reachable cap)
        r = round(math.ceil(v / step - 1e-9) * step, 6)
        return r + step if r < v else r

    lo, hi = up(f1), up(f0)
    default = min(max(round(round(half / step) * step, 6), lo), hi)
    if step == 1.0:
        lo, hi, default = int(lo), int(hi), int(default)
    return Range(kind, lo, hi, step, default)


def grid_share(store: CurveStore, mean_tokens: float) -> float:
    """``mean_tokens`` per image as a share of the uniform 16 px grid's mean on this store."""
    return float(mean_tokens) / max(float(store.uniform16.mean()), 1e-12)


def share_caption(store: CurveStore, target: float, carried: float) -> str:
    """What the mean-tokens target is relative to: its share of the uniform 16 px grid here, and the
    share carried from before when these images cannot go that low."""
    u16 = float(store.uniform16.mean())
    text = (f"= {100 * grid_share(store, target):.1f}% of the uniform 16 px grid ({u16:,.1f} tokens per image on "
            "these images). The target is kept as this share: other images start at the same share.")
    if carried * u16 < target - 0.5:
        text += (f" The {100 * carried:.1f}% set before would be {carried * u16:,.1f} tokens here, below what "
                 "these images reach with max-size squares only.")
    return text


def p95_range(store: CurveStore) -> tuple[int, int]:
    """p95 tokens per image with no split and with every split."""
    lo, hi = Objectives(store).bounds("p95_tokens")
    return int(lo), int(hi)


@dataclass
class Solved:
    threshold: float
    per_target: dict[str, float]
    stats: DatasetStats
    targets: Targets


def solve_targets(store: CurveStore, targets: Targets, vit: str) -> Solved:
    """``adapatch.dataset.solve`` and the statistics at its threshold (raises ``InfeasibleTarget``)."""
    threshold, per = solve(store, targets, vit)
    return Solved(threshold, per, Objectives(store, vit).stats(threshold), targets)


def calibration(scanned: Scanned, solved: Solved, settings: CurveSettings, curve_: DatasetCurve) -> Calibration:
    """A ``Calibration`` over the cached store (never close it: the cache owns the store)."""
    return Calibration(solved.threshold, solved.stats, curve_, solved.targets, settings, scanned.store,
                       engine="local", workers=1, seconds=scanned.seconds, per_target=dict(solved.per_target))


def report_json(cal: Calibration, source: DatasetSource) -> str:
    """``report.json`` (``Calibration.report``), with the files dropped before the scan listed as skipped."""
    r = cal.report()
    if source.skipped:
        r["skipped"] = list(source.skipped) + list(r["skipped"])
        r["skipped_count"] = len(r["skipped"])
    return json.dumps(r, indent=1)


def layouts_parquet(cal: Calibration) -> bytes:
    """``layouts.parquet``: every image's quadtree at the threshold (``Calibration.write``)."""
    with tempfile.TemporaryDirectory(prefix="adapatch-dataset-") as tmp:
        paths = cal.write(tmp, layouts=True)
        with open(paths["layouts.parquet"], "rb") as f:
            return f.read()


# ------------------------------------------------------------------ gallery
@st.cache_data(max_entries=32, show_spinner=False)
def _image(digest: str, name: str, max_pixels: int, _source: DatasetSource) -> np.ndarray:
    """The image at gallery size (uint8; ``render`` scales it to the layout's display shape)."""
    return to_display(load_image(_source.read(name), max_pixels=max_pixels), GALLERY_SIDE)


@st.cache_data(max_entries=64, show_spinner=False)
def _gallery_overlay_png(digest: str, settings_json: str, index: int, threshold: float, _store: CurveStore,
                 _source: DatasetSource) -> bytes:
    name = _store.paths[index]
    image = _image(_source.digest, name, _store.settings.max_pixels, _source)
    lay = _store.layout(index, threshold)
    return render.to_png_bytes(render.layout_overlay(image, lay, max_side=GALLERY_SIDE,
                                                     enlarge=gallery_factor(lay.height, lay.width)))


def gallery_factor(height: int, width: int) -> int:
    """How many times larger a gallery overlay is drawn than the image's layout frame: tiny images (a
    20x20 icon, 64x64 digits) are enlarged so the boxes show; colours stay those of the true sizes."""
    return max(1, min(16, GALLERY_SIDE // max(int(height), int(width))))


def overlay_png(source: DatasetSource, settings: CurveSettings, store: CurveStore, index: int,
                threshold: float) -> bytes:
    """Image ``index`` of the store with its quadtree at ``threshold`` drawn over it."""
    return _gallery_overlay_png(source.digest, json.dumps(settings.to_dict(), sort_keys=True), int(index),
                                float(threshold), store, source)


def extremes(store: CurveStore, threshold: float, k: int = GALLERY) -> dict[str, list[dict]]:
    """``adapatch.dataset.extremes``; when the set has at most ``2k`` images, all of them under
    ``"all"``, fewest first."""
    ext = dataset_extremes(store, threshold, k)
    if store.n_images <= 2 * k:
        return {"all": ext["fewest"] + ext["most"][::-1]}
    return ext


def gallery_scale(store: CurveStore, ext: dict[str, list[dict]], threshold: float) -> None:
    """The overlays' colour scale over the gallery (``ui.patch_size_scale``), marking the sizes of the
    layouts shown; tiny images' enlargement for display is in their captions."""
    from . import ui
    rows = [r for items in ext.values() for r in items]
    sizes = {s for r in rows for s in store.layout(r["index"], threshold).sizes}
    small = any(gallery_factor(r["height"], r["width"]) > 1 for r in rows)
    ui.patch_size_scale(sizes, note="small images enlarged for display, by the factor in their caption (colours "
                                    "of the true sizes)" if small else None)


def gallery_caption(row: dict, source: DatasetSource) -> str:
    name = clean_name(os.path.basename(row["path"]) if source.kind == "samples" else row["path"])
    cat = source.categories.get(row["path"])
    factor = gallery_factor(row["height"], row["width"])
    return (f"{name}{f' ({cat})' if cat else ''} · {row['width']}x{row['height']} · "
            f"{row['tokens']:,} token{'s' if row['tokens'] != 1 else ''} vs {row['uniform16_tokens']:,} "
            "at uniform 16 px" + (f" · enlarged ×{factor} for display" if factor > 1 else ""))


# ------------------------------------------------------------------ "Apply on Patch layout": images for the sidebar
def picker_rows(store: CurveStore, threshold: float) -> list[dict]:
    """The images "Apply" puts in the sidebar's list: the one with the median tokens at ``threshold``
    (what Patch layout opens for an upload), then the gallery's (fewest and most), each once; at most
    ``2 * GALLERY + 1``, so a large set costs no more memory than a few uploads."""
    tok = store.tokens_at(np.array([threshold]))[:, 0]
    order = np.lexsort((np.arange(len(tok)), tok))
    median = int(order[(len(order) - 1) // 2])
    ext = extremes(store, threshold)
    rows = [{"index": median, "path": store.paths[median]}] + [r for v in ext.values() for r in v]
    first: dict[int, dict] = {}  # index -> its first row, in order
    for r in rows:
        first.setdefault(r["index"], r)
    return list(first.values())


def add_to_picker(source: DatasetSource, store: CurveStore, threshold: float) -> list[str]:
    """Decode ``picker_rows``' images (as uploads are: ``images.decode_upload``, the app's working size)
    and add them to the session's image list (``state.add_image``); the ones an earlier Apply added
    are taken out first. Returns their keys, the median image's first; a file that no longer
    decodes is left out."""
    ss = st.session_state
    current = state.current_key()
    state.forget_images(ss.get(PICKER_KEYS, []))
    label = "Sample" if source.kind == "samples" else "Upload"
    had = {r["key"] for r in state.upload_records() if r["key"]}
    keys, mine = [], []
    for row in picker_rows(store, threshold):
        try:
            entry = decode_upload(os.path.basename(row["path"]) if source.kind == "samples" else row["path"],
                                  source.read(row["path"]))
        except (ValueError, OSError, KeyError, MemoryError):  # ImageError is a ValueError
            continue
        key = state.add_image(entry, label=label)
        keys.append(key)
        if key not in had:
            mine.append(key)
    ss[PICKER_KEYS] = mine
    if current in keys:  # the same image again: it stays the current one
        state.set_current(current)
    return keys


# ------------------------------------------------------------------ figures
LINE_COLORS = {"mean": "#ff4b4b", "p50": "#4b8bff", "p95": "#ffa421", "max": "#8a8d91"}


def dataset_curve_figure(c: DatasetCurve, threshold: float | None, stats: DatasetStats | None, kind: str,
                 target: float | None, p95_cap: float | None, log_x: bool = False) -> go.Figure:
    """Tokens per image vs threshold (mean, p50, p95, max; log y), the target as a horizontal line
    (on a right-hand axis with that target's own curve when it is not in tokens per image), and the
    solved threshold as a vertical line. ``log_x``: a log threshold axis (``distortion``'s ``lambda``
    spans decades; threshold 0 is left off it)."""
    other = kind in ("tokens_per_mp", "flops_ratio")
    fig = go.Figure()  # (make_subplots would cost ~40 ms a rerun; a second y axis is two layout keys)
    keep = [i for i, t in enumerate(c.thresholds) if t > 0] if log_x else list(range(len(c.thresholds)))
    if log_x and not keep:
        log_x, keep = False, list(range(len(c.thresholds)))
    def pick(vs: list) -> list:
        return [vs[i] for i in keep]

    c = DatasetCurve(**{**c.to_dict(), **{f: pick(getattr(c, f)) for f in (
        "thresholds", "mean_tokens", "p50_tokens", "p95_tokens", "max_tokens", "tokens_per_mp", "flops_ratio")}})
    x = c.thresholds
    series = {"mean": c.mean_tokens, "p50": c.p50_tokens, "p95": c.p95_tokens, "max": c.max_tokens}
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=x, y=ys, mode="lines", name=f"{name} tokens", line=dict(color=LINE_COLORS[name],
                                 width=2.5 if name == "mean" else 1.6, dash="dot" if name == "max" else None),
                                 hovertemplate=f"threshold %{{x:.4g}}: {name} %{{y:,.1f}} tokens<extra></extra>"))
    if other:
        ys = c.tokens_per_mp if kind == "tokens_per_mp" else c.flops_ratio
        label = "tokens / MP" if kind == "tokens_per_mp" else "MACs ratio"
        fig.add_trace(go.Scatter(x=x, y=ys, mode="lines", name=label, line=dict(color="#21c354", width=2.5), yaxis="y2",
                                 hovertemplate=f"threshold %{{x:.4g}}: {label} %{{y:,.4g}}<extra></extra>"))
        fig.update_layout(yaxis2=dict(title_text=label, overlaying="y", side="right", showgrid=False,
                                      rangemode="tozero", tickmode="auto", nticks=6,
                                      tickformat=",.0f" if kind == "tokens_per_mp" else ".2f"))
    xs = [min(x), max(x)] if log_x else [0.0, max(x) if len(x) else 1.0]
    if target is not None:  # drawn as traces: a shape's label on a log axis would take log10 units
        fig.add_trace(go.Scatter(x=xs, y=[target, target], mode="lines", name=f"target {target:,.4g}",
                                 line=dict(color="#21c354" if other else LINE_COLORS["mean"], dash="dash", width=1.4),
                                 yaxis="y2" if other else "y", hovertemplate=f"target {target:,.4g}<extra></extra>"))
    if p95_cap is not None:
        fig.add_trace(go.Scatter(x=xs, y=[p95_cap, p95_cap], mode="lines", name=f"p95 cap {p95_cap:,.0f}",
                                 line=dict(color=LINE_COLORS["p95"], dash="dash", width=1.4),
                                 hovertemplate=f"p95 cap {p95_cap:,.0f}<extra></extra>"))
    if threshold is not None and (threshold > 0 or not log_x):
        right = (math.log(threshold / min(x)) > 0.6 * math.log(max(x) / min(x)) if log_x and max(x) > min(x)
                 else threshold > 0.6 * max(x))
        fig.add_vline(x=threshold, line_color="#262730", line_width=1.5, line_dash="dot",
                      annotation_text=f"{'λ' if log_x else 't'} = {threshold:.4g}",
                      annotation_position="top left" if right else "top right")
    if stats is not None:
        fig.add_trace(go.Scatter(x=[stats.threshold], y=[stats.mean_tokens], mode="markers", name="solved",
                                 marker=dict(size=11, color=LINE_COLORS["mean"], line=dict(width=2, color="white")),
                                 hovertemplate="solved: mean %{y:,.1f} tokens<extra></extra>", showlegend=False))
    marks = [v for v in (None if other else target, p95_cap) if v is not None]
    top = max([max(c.max_tokens, default=1), *marks])
    bottom = max(1, min([min(c.p50_tokens, default=1), min(c.mean_tokens, default=1), *marks]) * 0.6)
    ticks = nice_ticks(bottom, top)
    fig.update_layout(yaxis=dict(title_text="tokens per image", type="log", tickvals=ticks,
                                 ticktext=[f"{v:,}" for v in ticks]))
    fig.update_layout(height=360, margin=dict(l=10, r=10, t=36, b=10), hovermode="x unified",
                      title=dict(text="Tokens per image vs threshold (whole dataset)", font_size=13),
                      legend=dict(orientation="h", y=-0.22, x=0.0, xanchor="left", yanchor="top", font_size=11),
                      xaxis=dict(title_text="λ (error per token, levels² over 256 px), log scale" if log_x
                                 else "threshold", type="log" if log_x else "linear"))
    if log_x and len(x):  # a fixed range (log10 units): the vline shape would stretch the autorange to 10^threshold
        lo, hi = math.log10(min(x)), math.log10(max(x))
        pad = 0.03 * max(hi - lo, 1.0)
        fig.update_xaxes(range=[lo - pad, hi + pad])
    return fig


def nice_ticks(lo: float, hi: float) -> list[int]:
    """1-2-5 ticks from ``lo`` to ``hi`` (log axes: a few readable labels instead of every digit)."""
    out = [m * 10**k for k in range(0, 8) for m in (1, 2, 5)]
    inside = [v for v in out if lo * 0.8 <= v <= hi * 1.25]
    return inside or [v for v in out if v <= hi][-1:] or [1]


def tokens_histogram_figure(tokens: np.ndarray, threshold: float) -> go.Figure:
    """Images per token count at the threshold (log-spaced bins on a log axis when the counts span
    more than a factor 20), with the mean marked."""
    tokens = np.asarray(tokens, np.float64)
    lo, hi = float(tokens.min()), float(tokens.max())
    log = hi / max(lo, 1.0) > 20
    bins = int(min(40, max(8, math.sqrt(len(tokens)) * 2)))
    if log:
        edges = np.geomspace(max(lo, 1.0) * 0.95, hi * 1.05, bins + 1)
    else:
        edges = np.linspace(lo - 0.5, hi + 0.5, bins + 1) if hi > lo else np.array([lo - 0.5, lo + 0.5])
    counts, edges = np.histogram(tokens, bins=edges)
    if log:  # a bar per bin between its edges, on a log axis: drawn in log10 units with real tick labels
        left, right = np.log10(edges[:-1]), np.log10(edges[1:])
        ticks = nice_ticks(edges[0], edges[-1])
        xaxis = dict(tickvals=np.log10(ticks).tolist(), ticktext=[f"{v:,}" for v in ticks],
                     title="tokens per image (log)")
        mean_x = math.log10(max(float(tokens.mean()), 1e-9))
    else:
        left, right = edges[:-1], edges[1:]
        xaxis = dict(title="tokens per image")
        mean_x = float(tokens.mean())
    centers = (left + right) / 2
    labels = [f"{a:,.0f}–{b:,.0f}" for a, b in itertools.pairwise(edges)]
    fig = go.Figure(go.Bar(x=centers, y=counts, width=(right - left) * 0.96, marker_color="#4b8bff",
                           customdata=labels, hovertemplate="%{customdata} tokens: %{y} images<extra></extra>"))
    fig.add_vline(x=mean_x, line_color=LINE_COLORS["mean"], line_dash="dash",
                  annotation_text=f"mean {tokens.mean():,.1f}", annotation_position="top right")
    fig.update_layout(height=340, margin=dict(l=10, r=10, t=36, b=10), bargap=0, showlegend=False,
                      title=dict(text=f"Tokens per image at t = {threshold:.4g} ({len(tokens)} images)", font_size=13),
                      xaxis=xaxis, yaxis_title="images")
    return fig


def metric_values(stats: DatasetStats) -> dict[str, str]:
    """The numbers of the metrics row, formatted (used by the page and its tests)."""
    return {
        "Threshold": f"{stats.threshold:.6g}",
        "Mean tokens": f"{stats.mean_tokens:,.1f}",
        "p50 tokens": f"{stats.p50_tokens:,}",
        "p95 tokens": f"{stats.p95_tokens:,}",
        "Max tokens": f"{stats.max_tokens:,}",
        "Tokens / MP": f"{stats.tokens_per_mp:,.0f}",
        f"MACs ratio {stats.vit}": f"×{stats.flops_ratio_vs_uniform16:.3f}",
    }


def upload_types() -> list[str]:
    return [*list(UPLOAD_TYPES), "gif", "zip"]


def infeasible_message(e: InfeasibleTarget) -> str:
    return one_line(e)
