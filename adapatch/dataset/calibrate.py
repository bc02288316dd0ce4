"""Dataset calibration: one pass over the images, then the exact threshold for a compute target.

``scan`` runs the per-image step on an engine and fills a ``CurveStore``; ``calibrate`` solves
the targets on it and returns a ``Calibration`` (report, curve, layouts at the threshold), and
``Calibration.write(out)`` writes ``report.json``, ``report.md`` and ``layouts.parquet``.

Targets are caps: the solved threshold is the smallest one whose layouts meet every target given
(one of mean tokens per image, tokens per megapixel or FLOPs ratio against uniform 16 px, plus an
optional p95 cap). Outputs are written under a temporary name and renamed at the end, report.json
last, so an interrupted run never leaves a report that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import __version__
from ..efficiency import VIT_PRESETS
from ..image_io import DEFAULT_MAX_PIXELS
from ..resize import WORK_MAX_PIXELS
from ..validation import check_choice
from .arrow import LayoutWriter
from .curve import OBJECTIVES, DatasetCurve, DatasetStats, Objectives, dataset_curve, extremes, solve_threshold
from .engines import ENGINES, default_workers, run_local, run_ray
from .records import CALIBRATION_IMPORTANCE, CurveSettings
from .sources import SourceSpec, open_source
from .store import CurveStore

EXTREMES = 4
"""Images listed at each end (fewest and most tokens) in the report."""


def _progress(total: int, enabled: bool, desc: str):
    from tqdm.auto import tqdm
    return tqdm(total=total, disable=not enabled, desc=desc, unit="img", dynamic_ncols=True, leave=False)


def scan(source: SourceSpec, settings: CurveSettings | None = None, *, engine: str = "local",
         workers: int | None = None, address: str | None = None, column: str | None = None,
         progress: bool = False, store_dir: str | None = None) -> CurveStore:
    """Run the per-image step over ``source`` and return the finished ``CurveStore``.

    Unreadable, damaged, empty or oversized files are recorded in ``store.skipped`` with a
    one-line reason and skipped; an empty or unlistable source raises ``SourceError``.
    """
    settings = settings or CurveSettings()
    check_choice("engine", engine, ENGINES)
    src = open_source(source, column=column)
    store = CurveStore(settings, store_dir)
    store.source = src.description
    try:
        results = (run_local(src.items, settings, workers) if engine == "local"
                   else run_ray(src.items, settings, workers, address))
        with _progress(len(src), progress, "images") as bar:
            for r in results:
                store.add(r)
                bar.update(1)
        store.finish()
    except BaseException:
        store.close()
        raise
    if store.n_images == 0:
        store.close()
        first = store.skipped[0]["reason"] if store.skipped else "no images"
        raise ValueError(f"no image in {src.description} could be used ({len(store.skipped)} skipped; "
                         f"first: {first})")
    return store


@dataclass
class Targets:
    """Compute targets (caps) for the solver; at most one of the first three, plus an optional p95 cap."""

    mean_tokens: float | None = None
    tokens_per_mp: float | None = None
    flops_ratio: float | None = None
    p95_tokens: float | None = None

    def __post_init__(self) -> None:
        main = [k for k in ("mean_tokens", "tokens_per_mp", "flops_ratio") if getattr(self, k) is not None]
        if len(main) > 1:
            raise ValueError(f"give one of mean_tokens, tokens_per_mp or flops_ratio, got {', '.join(main)}")
        for k, v in self.items():
            if not np.isfinite(v) or v <= 0:
                raise ValueError(f"target {k} must be a positive number, got {v}")

    def items(self) -> list[tuple[str, float]]:
        return [(k, float(getattr(self, k))) for k in OBJECTIVES if getattr(self, k) is not None]

    def to_dict(self) -> dict:
        return dict(self.items())


DEFAULT_TARGETS = Targets(flops_ratio=0.5)
"""Used when no target is given: half the FLOPs of the uniform 16 px grid."""


@dataclass
class Calibration:
    """A solved calibration: the threshold, the dataset's statistics and curve, and its store."""

    threshold: float
    stats: DatasetStats
    curve: DatasetCurve
    targets: Targets
    settings: CurveSettings
    store: CurveStore
    engine: str
    workers: int
    seconds: float
    per_target: dict[str, float] = field(default_factory=dict)

    def tokens(self) -> np.ndarray:
        """Tokens per image at the threshold (store order = source order)."""
        return self.store.tokens_at(np.array([self.threshold]))[:, 0]

    def extremes(self, k: int = EXTREMES) -> dict[str, list[dict]]:
        """The ``k`` images with the fewest and the most tokens (``curve.extremes``)."""
        return extremes(self.store, self.threshold, k)

    def layouts(self) -> Iterator[tuple[str, Any]]:
        """``(path, layout)`` of every image at the threshold, in source order."""
        for i in range(self.store.n_images):
            yield self.store.paths[i], self.store.layout(i, self.threshold)

    def report(self) -> dict:
        """The calibration report (``report.json``): the keys of the CLI contract, then details."""
        s, st = self.settings, self.stats
        return {
            "threshold": self.threshold, "images": st.images, "skipped": list(self.store.skipped),
            "mean_tokens": st.mean_tokens, "p50_tokens": st.p50_tokens, "p95_tokens": st.p95_tokens,
            "max_tokens": st.max_tokens, "tokens_per_mp": st.tokens_per_mp,
            "flops_ratio_vs_uniform16": st.flops_ratio_vs_uniform16,
            "min_size": s.min_size, "max_size": s.max_size, "importance": s.importance, "engine": self.engine,
            "seconds": self.seconds,
            "targets": self.targets.to_dict(), "threshold_per_target": self.per_target, "vit": st.vit,
            "min_tokens": st.min_tokens, "total_tokens": st.total_tokens,
            "uniform16_mean_tokens": st.uniform16_mean_tokens, "token_size": s.token_size,
            "max_pixels": s.max_pixels, "work_pixels": s.work_pixels, "workers": self.workers,
            "source": getattr(self.store, "source", ""),
            "skipped_count": len(self.store.skipped), "extremes": self.extremes(),
            "curve": self.curve.to_dict(), "adapatch_version": __version__, "strategy": "quadtree",
        }

    def write(self, out: str | os.PathLike, layouts: bool = True) -> dict[str, str]:
        """Write ``report.json``, ``report.md`` and ``layouts.parquet`` into ``out`` (atomically)."""
        report = self.report()
        files = {"report.md": lambda p: _write_text(p, report_markdown(report))}
        if layouts:
            files["layouts.parquet"] = lambda p: _write_layouts(p, self.layouts())
        files["report.json"] = lambda p: _write_text(p, json.dumps(report, indent=1))
        return write_atomically(out, files)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Calibration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def _write_layouts(path: str, items) -> None:
    with LayoutWriter(path) as w:
        for p, lay in items:
            w.add(p, lay)


def write_atomically(out: str | os.PathLike, files: dict) -> dict[str, str]:
    """Write each ``{name: writer(path)}`` into a temporary folder inside ``out``, then rename every
    file into place in order (put the file that marks completion last)."""
    out = os.fspath(out)
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, f".partial-{os.getpid()}-{time.time_ns()}")
    os.makedirs(tmp)
    try:
        for name, writer in files.items():
            writer(os.path.join(tmp, name))
        done = {}
        for name in files:
            dst = os.path.join(out, name)
            os.replace(os.path.join(tmp, name), dst)
            done[name] = dst
        return done
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def solve(store: CurveStore, targets: Targets, vit: str = "ViT-B") -> tuple[float, dict[str, float]]:
    """The smallest threshold meeting every target (each is a cap, so: the largest of the per-target
    thresholds), and the per-target thresholds."""
    per = {k: solve_threshold(store, k, v, vit) for k, v in targets.items()}
    return (max(per.values()) if per else 0.0), per


def calibrate(source: SourceSpec, targets: Targets | None = None, *, vit: str = "ViT-B", min_size: int = 8,
              max_size: int = 64, importance: str = CALIBRATION_IMPORTANCE, token_size: int = 16,
              max_pixels: int = DEFAULT_MAX_PIXELS, work_pixels: int = WORK_MAX_PIXELS, engine: str = "local",
              workers: int | None = None,
              address: str | None = None, column: str | None = None, progress: bool = False,
              out: str | os.PathLike | None = None) -> Calibration:
    """Calibrate the quadtree threshold over ``source`` for ``targets`` (default: half the FLOPs of
    uniform 16 px). With ``out``, also write the report and ``layouts.parquet`` there. The returned
    ``Calibration`` holds a spill store on disk: close it (or use ``with``) when done."""
    check_choice("vit", vit, VIT_PRESETS)
    targets = targets or DEFAULT_TARGETS
    settings = CurveSettings(min_size, max_size, importance, token_size, max_pixels=max_pixels,
                             work_pixels=work_pixels)
    t0 = time.perf_counter()
    store = scan(source, settings, engine=engine, workers=workers, address=address, column=column, progress=progress)
    try:
        threshold, per = solve(store, targets, vit)
        obj = Objectives(store, vit)
        cal = Calibration(threshold, obj.stats(threshold), dataset_curve(store, vit), targets, settings, store,
                          engine, workers or default_workers(), 0.0, per)
        cal.seconds = time.perf_counter() - t0
        if out is not None:
            cal.write(out)
    except BaseException:
        store.close()
        raise
    return cal


def layouts_at(source: SourceSpec, threshold: float, out: str | os.PathLike, *, min_size: int = 8,
               max_size: int = 64, importance: str = CALIBRATION_IMPORTANCE, token_size: int = 16,
               max_pixels: int = DEFAULT_MAX_PIXELS, work_pixels: int = WORK_MAX_PIXELS, engine: str = "local",
               workers: int | None = None,
               address: str | None = None, column: str | None = None, progress: bool = False) -> dict:
    """Write the quadtree of every image at ``threshold`` to the Parquet file ``out``; returns a small
    summary (rows, skipped)."""
    from ..quadtree import check_threshold
    threshold = check_threshold(threshold, importance, False)
    settings = CurveSettings(min_size, max_size, importance, token_size, max_pixels=max_pixels,
                             work_pixels=work_pixels)
    with scan(source, settings, engine=engine, workers=workers, address=address, column=column,
              progress=progress) as store:
        out = os.fspath(out)
        folder = os.path.dirname(os.path.abspath(out))
        name = os.path.basename(out)
        write_atomically(folder, {name: lambda p: _write_layouts(
            p, ((store.paths[i], store.layout(i, threshold)) for i in range(store.n_images)))})
        tok = store.tokens_at(np.array([threshold]))[:, 0]
        return {"rows": store.n_images, "skipped": list(store.skipped), "mean_tokens": float(tok.mean()),
                "path": out}


def report_markdown(r: dict) -> str:
    """``report.md``: the report for people."""
    t = ", ".join(f"{OBJECTIVES[k]} <= {v:g}" for k, v in r["targets"].items()) or "none"
    lines = [
        "# adapatch calibration report", "",
        f"Source: {r['source']}  ",
        f"Quadtree: importance `{r['importance']}`, sizes {r['min_size']}-{r['max_size']} px, "
        f"token size {r['token_size']} px; engine `{r['engine']}` ({r['workers']} workers), {r['seconds']:.1f} s.", "",
        f"**Threshold: {r['threshold']:.6g}** (target: {t}; FLOPs for {r['vit']}).", "",
        "| statistic | value |", "|---|---|",
        f"| images | {r['images']} (skipped {r['skipped_count']}) |",
        f"| mean tokens per image | {r['mean_tokens']:.1f} (uniform 16 px: {r['uniform16_mean_tokens']:.1f}) |",
        f"| p50 / p95 / max tokens | {r['p50_tokens']} / {r['p95_tokens']} / {r['max_tokens']} |",
        f"| tokens per megapixel | {r['tokens_per_mp']:.1f} |",
        f"| FLOPs vs uniform 16 px (ratio of totals) | {r['flops_ratio_vs_uniform16']:.3f} |", "",
        "## Extremes at this threshold", "", "| image | size | tokens | uniform 16 px |", "|---|---|---|---|",
    ]
    for e in r["extremes"]["fewest"] + r["extremes"]["most"]:
        lines.append(f"| {_md(e['path'])} | {e['width']}x{e['height']} | {e['tokens']} | {e['uniform16_tokens']} |")
    if r["skipped"]:
        lines += ["", f"## Skipped files ({len(r['skipped'])})", "", "| file | reason |", "|---|---|"]
        lines += [f"| {_md(s['path'])} | {_md(s['reason'])} |" for s in r["skipped"][:200]]
        if len(r["skipped"]) > 200:
            lines.append(f"| ... | {len(r['skipped']) - 200} more in report.json |")
    lines.append("")
    return "\n".join(lines)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")
