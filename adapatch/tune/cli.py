"""``python -m adapatch tune``: search patch configurations against a model's predictions.

    python -m adapatch tune SOURCE --model MODEL --out DIR [--labels FILE.csv | --labels folders]
        [--target-macs-ratio R | --max-drop D] [--budget-evals N] [--device auto|cpu|cuda]
        [--held-out 0.3] [--seed 0] [--limit N] [--strategies uniform,quadtree,...] [--engine local|ray]

SOURCE as for ``calibrate`` (a folder, a glob, a .zip or a Parquet file); MODEL as ``load_model``
takes it (``task``, a checkpoint file, a timm name or a timm export folder). Writes report.json,
report.md, pareto.png and settings.json to DIR. Exit status: 0 on success (also when no
configuration meets the target: the report says so), 2 on a usage or input error.
"""

from __future__ import annotations

import argparse
import csv
import os
import shlex
import sys
import time
from functools import partial
from typing import Any

import numpy as np

from .space import QUADTREE_IMPORTANCES, STRATEGIES


def tune_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adapatch tune",
                                description="Search patch configurations against a model's own predictions; "
                                            "keep the Pareto front of accuracy (or agreement) against MACs.")
    p.add_argument("source", help="a folder (recursive), a glob, a .zip or a .parquet file with an image-bytes column")
    p.add_argument("--model", required=True, help="task, a checkpoint file, a timm name or a timm export folder")
    p.add_argument("--out", required=True, help="output folder: report.json, report.md, pareto.png, settings.json")
    p.add_argument("--labels", default=None,
                   help="a CSV of path,label (label: a class index or the model's class name), or 'folders' (each "
                        "image's parent folder names its class); without: label-free agreement with the full grid")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--target-macs-ratio", type=float, default=None,
                   help="choose the best configuration at most this share of the full grid's MACs (default 0.4)")
    t.add_argument("--max-drop", type=float, default=None,
                   help="choose the cheapest configuration within this much of the full grid's objective")
    p.add_argument("--budget-evals", type=int, default=None,
                   help="forward passes (images through the model) the search may spend; default 20 per search image, "
                        "raised to the least the search space needs")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="who decodes and resizes the images: local (this process) or ray (Ray Data workers; "
                        "--address for a cluster); the search itself runs here, one model, batched forward passes")
    p.add_argument("--address", default=None, help="--engine ray: Ray cluster address (default: start a local Ray)")
    p.add_argument("--workers", type=int, default=None, help="--engine ray: local Ray CPUs (default: all cores)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--held-out", type=float, default=0.3, help="share of the images the search never sees (re-scored)")
    p.add_argument("--seed", type=int, default=0, help="seed of the held-out split and the rung subsets")
    p.add_argument("--limit", type=int, default=None, help="use the first N images of the source")
    p.add_argument("--strategies", default=",".join(STRATEGIES),
                   help=f"comma-separated subset of {','.join(STRATEGIES)}")
    p.add_argument("--importances", default=",".join(QUADTREE_IMPORTANCES),
                   help=f"quadtree importances, a subset of {','.join(QUADTREE_IMPORTANCES)}")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def _decode(ref, reader, side: int) -> tuple[np.ndarray | None, str | None]:
    """One item as the model's ``side x side`` frame (``resize_to_square``), or why it was skipped."""
    from ..errors import ImageError
    from ..image_io import load_image
    from ..model.task import resize_to_square
    try:
        return resize_to_square(load_image(reader.read(ref)), side), None
    except (ImageError, OSError, ValueError) as e:
        msg = " ".join(str(e).split())
        return None, msg[len("image: "):] if msg.startswith("image: ") else msg


def _ray_decode(batch: Any, items: list, side: int) -> dict:
    """Ray ``map_batches`` step: item indices -> frames (or skip reasons), order kept by index."""
    from ..dataset.sources import ItemReader
    reader = ItemReader()
    frames, reasons = [], []
    for i in batch["index"]:
        f, why = _decode(items[int(i)], reader, side)
        frames.append(np.zeros((side, side, 3), np.float32) if f is None else f)
        reasons.append(why or "")
    reader.close()
    return {"index": np.asarray(batch["index"], np.int64), "frame": np.stack(frames),
            "reason": np.array(reasons, object)}


def _read_images(source: str, limit: int | None, side: int, engine: str = "local", address: str | None = None,
                 workers: int | None = None) -> tuple[list[np.ndarray], list[str], list[dict]]:
    """The source's images as the model's frames, their paths, and the files skipped with a reason;
    ``engine="ray"`` decodes and resizes on Ray workers (Ray Data), in source order."""
    from ..dataset.sources import ItemReader, open_source
    src = open_source(source)
    refs = list(src.items)[:limit] if limit else list(src.items)
    if engine == "ray":
        from ..dataset.engines import start_ray
        start_ray(address, workers)
        import ray
        ctx = ray.data.DataContext.get_current()
        ctx.execution_options.preserve_order = True
        ctx.enable_progress_bars = False
        ds = ray.data.from_items([{"index": i} for i in range(len(refs))]).map_batches(
            partial(_ray_decode, items=refs, side=side), batch_size=64, batch_format="numpy")
        got: list[tuple[int, np.ndarray | None, str | None]] = []
        for b in ds.iter_batches(batch_size=256, batch_format="numpy"):
            for i, f, why in zip(b["index"], b["frame"], b["reason"]):
                got.append((int(i), None if why else np.asarray(f, np.float32), str(why) or None))
        decoded = [(f, why) for _, f, why in sorted(got, key=lambda g: g[0])]
    else:
        reader = ItemReader()
        decoded = [_decode(ref, reader, side) for ref in refs]
        reader.close()
    images, paths, skipped = [], [], []
    for ref, (f, why) in zip(refs, decoded):
        if f is None:
            skipped.append({"path": ref.path, "reason": why or "cannot read this file"})
        else:
            images.append(f)
            paths.append(ref.path)
    return images, paths, skipped


def label_index(value: str, num_classes: int, names: list[str] | None) -> int:
    """A label as a class index: an integer in range, or one of the model's class names."""
    v = value.strip()
    if v.lstrip("-").isdigit():
        i = int(v)
        if 0 <= i < num_classes:
            return i
        raise ValueError(f"label {v} is not a class index of this model (0..{num_classes - 1})")
    if names:
        low = [n.lower() for n in names]
        if v.lower() in low:
            return low.index(v.lower())
    raise ValueError(f"label {v!r} is neither a class index (0..{num_classes - 1}) nor a class name of this model")


def read_labels(spec: str, paths: list[str], num_classes: int, names: list[str] | None) -> list[int]:
    """One class index per path, from a CSV (``path,label``; a header row is allowed; paths match in
    full or by file name) or ``"folders"`` (the parent folder's name)."""
    if spec == "folders":
        raw = {p: os.path.basename(os.path.dirname(p)) for p in paths}
        missing = [p for p, v in raw.items() if not v]
        if missing:
            raise ValueError(f"--labels folders: {missing[0]} is not inside a class folder")
    else:
        with open(spec, newline="") as f:
            rows = [r for r in csv.reader(f) if r and len(r) >= 2]
        header = rows and rows[0][0].strip().lower() in ("path", "file", "filename")
        if header and not rows[0][1].strip().lstrip("-").isdigit():
            rows = rows[1:]
        table = {r[0].strip(): r[1] for r in rows}
        by_name = {os.path.basename(k): v for k, v in table.items()}
        raw = {}
        for p in paths:
            v = table.get(p, by_name.get(os.path.basename(p)))
            if v is None:
                raise ValueError(f"--labels {spec}: no label for {p}")
            raw[p] = v
    return [label_index(raw[p], num_classes, names) for p in paths]


def tune_main(argv: list[str]) -> int:
    args = tune_parser().parse_args(argv)
    t0 = time.perf_counter()
    try:
        from ..model import resolve_model
        from ..model.classes import class_names
        from .report import build_report, write_outputs
        from .search import tune
        from .settings import settings_for
        model = resolve_model(args.model, device=args.device)
        from ..model.task import as_vit
        cfg = as_vit(model).config
        images, paths, skipped = _read_images(args.source, args.limit, int(cfg.img_size), args.engine, args.address,
                                              args.workers)
        if len(images) < 2:
            raise ValueError(f"{args.source}: tune needs at least 2 readable images, got {len(images)}")
        labels = None if args.labels is None else read_labels(args.labels, paths, int(cfg.num_classes),
                                                              class_names(cfg.num_classes))
        progress = None
        if not args.quiet:
            def progress(done: int, total: int, what: str) -> None:
                print(f"\r[{done}/{total}] {what[:60]:<60}", end="", file=sys.stderr, flush=True)
        res = tune(images, model, labels, target_macs_ratio=args.target_macs_ratio, max_drop=args.max_drop,
                   budget_evals=args.budget_evals, held_out=args.held_out, seed=args.seed,
                   strategies=[s for s in args.strategies.split(",") if s],
                   importances=[s for s in args.importances.split(",") if s], device=args.device,
                   progress=progress)
        if not args.quiet:
            print(file=sys.stderr)
        settings = None if res.chosen is None else settings_for(res.chosen, args.model, cfg.img_size, cfg.patch_size,
                                                                args.device, source=str(args.source))
        command = "python -m adapatch tune " + " ".join(shlex.quote(a) for a in argv)
        report = build_report(res, args.model, command, settings, skipped)
        report["seconds"] = time.perf_counter() - t0
        write_outputs(report, args.out)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"\nerror: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    obj = res.objective
    print(f"images: {len(res.search_images)} search, {len(res.held_out_images)} held out; skipped: {len(skipped)}")
    for s in skipped[:10]:
        print(f"skipped: {s['path']}: {s['reason']}")
    print(f"full grid: {obj} {res.full_grid['objective']:.4f}")
    if res.chosen is None:
        print("chosen: none on the front meets the target (see report.md)")
    else:
        c, h = res.chosen, res.held_out.get("chosen") or {}
        print(f"chosen: {c.config.key}  {obj} {c.objective:.4f}  MACs ratio {c.macs_ratio:.3f}  "
              f"tokens {c.mean_tokens:.1f}")
        if h:
            print(f"held out: {obj} {h['objective']:.4f} (full grid {res.held_out['full_grid']['objective']:.4f})  "
                  f"MACs ratio {h['macs_ratio']:.3f}")
    print(f"forward passes: {res.forwards:,}  seconds: {report['seconds']:.1f}")
    print(f"wrote: {args.out}/report.json, report.md, pareto.png" + (", settings.json" if settings else ""))
    return 0
