"""Engines that run the per-image step over a source and stream the results back in source order.

* ``local`` (default): a process pool over the machine's cores. Tasks are small item references
  (the workers read the bytes), results are compact path importances; both are streamed, so
  memory does not grow with the dataset.
* ``ray``: Ray Data. File sources are read with ``ray.data.read_binary_files``; zip and Parquet
  items are read by the workers; ``map_batches`` runs the same per-image step; the driver streams
  the batches into the same store (``iter_batches``). Works on a local Ray (``num_cpus`` =
  ``workers``) or an existing cluster (``address="auto"``). Optional: ``pip install adapatch[ray]``.

Both yield ``ItemResult``s from the same function (``records.process_bytes``), so a dataset gives
the same store, curve and threshold whichever engine ran it.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import numpy as np

from .records import CurveSettings, ItemResult, process_bytes, process_item
from .sources import ItemReader, ItemRef

ENGINES = ("local", "ray")
RAY_BATCH = 64
"""Images per Ray ``map_batches`` call (per-task overhead is paid once per batch)."""

_SETTINGS: CurveSettings | None = None
_READER: ItemReader | None = None


def default_workers() -> int:
    """Cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _init_worker(settings: CurveSettings) -> None:
    global _SETTINGS, _READER
    _SETTINGS, _READER = settings, ItemReader()
    try:  # one image per process: numba's and OpenCV's own threads would only compete
        import cv2
        cv2.setNumThreads(1)
    except Exception:  # noqa: BLE001 - optional tuning
        pass


def _work(task: tuple[int, ItemRef]) -> tuple:
    """One item in a worker; the result travels as a flat tuple (``_pack``): cheap to pickle."""
    assert _SETTINGS is not None and _READER is not None
    return _pack(process_item(task[0], task[1], _READER, _SETTINGS))


def _pack(r: ItemResult) -> tuple:
    if r.record is None:
        return (r.index, r.reason)
    rec = r.record
    return (r.index, rec.height, rec.width, rec.values.tobytes(), json.dumps(rec.params, sort_keys=True))


class _Unpacker:
    """Rebuilds ``ItemResult``s from ``_pack`` tuples (paths from the item list, params parsed once)."""

    def __init__(self, items: Sequence[ItemRef], settings: CurveSettings) -> None:
        self.items, self.settings = items, settings
        self.sizes = [settings.max_size >> k for k in range(int(np.log2(settings.max_size // settings.min_size)) + 1)]
        self.params: dict[str, dict] = {}

    def __call__(self, t: tuple) -> ItemResult:
        from ..layout import padded_canvas
        from ..quadtree import PathImportance
        index = t[0]
        path = self.items[index].path
        if len(t) == 2:
            return ItemResult(index, path, reason=t[1])
        _, h, w, raw, params = t
        if params not in self.params:
            self.params[params] = json.loads(params)
        rec = PathImportance(h, w, padded_canvas(h, w, self.settings.max_size), self.sizes,
                             np.frombuffer(raw, np.float64), self.params[params])
        return ItemResult(index, path, record=rec)


def _context() -> mp.context.BaseContext:
    """fork is fastest, but a child forked while another thread holds a lock (torch's thread pools,
    OpenCV's, a Streamlit app's background threads) can hang on that lock forever: fork only from a
    single-threaded process without torch."""
    if sys.platform.startswith("linux") and "torch" not in sys.modules and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if sys.platform.startswith("linux") else "spawn")


def run_local(items: Sequence[ItemRef], settings: CurveSettings, workers: int | None = None) -> Iterator[ItemResult]:
    """Process ``items`` on a pool of ``workers`` processes (in this process when 1), in order."""
    workers = default_workers() if workers is None else max(1, int(workers))
    tasks = ((i, ref) for i, ref in enumerate(items))
    if workers == 1 or len(items) <= 2:
        reader = ItemReader()
        try:
            for i, ref in tasks:
                yield process_item(i, ref, reader, settings)
        finally:
            reader.close()
        return
    chunk = max(1, min(32, len(items) // (workers * 8)))
    unpack = _Unpacker(items, settings)
    with _context().Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        for t in pool.imap(_work, tasks, chunksize=chunk):
            yield unpack(t)


# ---------------------------------------------------------------------------------------------- Ray
def _ray_map(batch: Any, settings: CurveSettings, by_path: dict | None, items: list | None) -> dict:
    """Ray ``map_batches`` step: raw bytes (or item indices) -> results as flat columns; ``by_path``
    (file sources, bytes read by Ray) or ``items`` (workers read the items) is given."""
    results: list[ItemResult] = []
    if by_path is not None:
        for data, path in zip(batch["bytes"], batch["path"]):
            index, display = by_path[_norm(path)]
            results.append(process_bytes(index, display, bytes(data), settings))
    else:
        assert items is not None  # run_ray passes one of the two
        reader = ItemReader()
        for index in batch["index"]:
            results.append(process_item(int(index), items[int(index)], reader, settings))
        reader.close()
    ok = [r.record is not None for r in results]
    return {
        "index": np.array([r.index for r in results], np.int64),
        "path": np.array([r.path for r in results], object),
        "reason": np.array([r.reason or "" for r in results], object),
        "ok": np.array(ok, bool),
        "height": np.array([r.record.height if r.record else 0 for r in results], np.int64),
        "width": np.array([r.record.width if r.record else 0 for r in results], np.int64),
        "values": np.array([r.record.values.tobytes() if r.record else b"" for r in results], object),
        "params": np.array([json.dumps(r.record.params, sort_keys=True) if r.record else "" for r in results], object),
    }


def _norm(path: str) -> str:
    return os.path.normpath(os.path.abspath(str(path).removeprefix("local://")))


def start_ray(address: str | None = None, workers: int | None = None) -> None:
    """Connect to Ray: an existing cluster at ``address`` (e.g. ``"auto"``), or a local one with
    ``workers`` CPUs. Raises ``RuntimeError`` with an install hint when Ray is missing."""
    try:
        import ray
    except ImportError:
        raise RuntimeError("engine='ray' needs Ray: pip install 'adapatch[ray]'") from None
    if ray.is_initialized():
        return
    kwargs: dict = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=workers or default_workers(), **kwargs)


def run_ray(items: Sequence[ItemRef], settings: CurveSettings, workers: int | None = None,
            address: str | None = None, on_start: Callable[[], None] | None = None) -> Iterator[ItemResult]:
    """Process ``items`` with Ray Data; results stream back in batches (order restored by the store)."""
    from ..layout import padded_canvas
    from ..quadtree import PathImportance
    start_ray(address, workers)
    import ray
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    if on_start is not None:
        on_start()
    # files go through read_binary_files; a list naming one file twice cannot be mapped back by path,
    # so then (and for zip, Parquet and in-memory items) the workers read the items themselves
    files = all(ref.kind == "file" for ref in items) and len({_norm(r.container) for r in items}) == len(items)
    cpus = int(ray.available_resources().get("CPU", workers or 1)) or 1
    blocks = max(1, min(len(items) // RAY_BATCH, 4 * cpus))  # a few blocks per CPU: less per-task overhead
    if files:
        by_path = {_norm(ref.container): (i, ref.path) for i, ref in enumerate(items)}
        ds = ray.data.read_binary_files([ref.container for ref in items], include_paths=True,
                                        ignore_missing_paths=True, override_num_blocks=blocks)
        ds = ds.map_batches(partial(_ray_map, settings=settings, by_path=by_path, items=None),
                            batch_size=RAY_BATCH, batch_format="numpy")
    else:
        ds = ray.data.from_items([{"index": i} for i in range(len(items))], override_num_blocks=blocks)
        ds = ds.map_batches(partial(_ray_map, settings=settings, by_path=None, items=list(items)),
                            batch_size=RAY_BATCH, batch_format="numpy")
    sizes = [settings.max_size >> k for k in range(int(np.log2(settings.max_size // settings.min_size)) + 1)]
    seen = set()
    params_cache: dict[str, dict] = {}
    for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
        for j in range(len(batch["index"])):
            index, path = int(batch["index"][j]), str(batch["path"][j])
            seen.add(index)
            if not batch["ok"][j]:
                yield ItemResult(index, path, reason=str(batch["reason"][j]))
                continue
            h, w = int(batch["height"][j]), int(batch["width"][j])
            key = str(batch["params"][j])
            params = params_cache.setdefault(key, json.loads(key))
            vals = np.frombuffer(batch["values"][j], np.float64).copy()
            yield ItemResult(index, path, record=PathImportance(h, w, padded_canvas(h, w, settings.max_size),
                                                                sizes, vals, params))
    for i, ref in enumerate(items):  # files Ray could not list or read at all
        if i not in seen:
            yield ItemResult(i, ref.path, reason="cannot read file (Ray skipped it)")
