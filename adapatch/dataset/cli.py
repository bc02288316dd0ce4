"""``python -m adapatch calibrate`` and ``python -m adapatch layouts`` (the contract other tools use).

    python -m adapatch calibrate SOURCE --out DIR [--target-mean-tokens N | --target-tokens-per-mp X
        | --target-flops-ratio R] [--target-p95-tokens N] [--strategy quadtree] [--importance distortion]
        [--min-size 8] [--max-size 64] [--vit ViT-B] [--engine local|ray] [--address auto] [--workers N]
    python -m adapatch layouts SOURCE --threshold T --out layouts.parquet [same quadtree/engine options]

Exit status: 0 on success, 2 on a usage or input error (one line on stderr).
"""

from __future__ import annotations

import argparse
import sys

from ..efficiency import VIT_PRESETS
from ..image_io import DEFAULT_MAX_PIXELS
from ..importance import IMPORTANCE_MEASURES
from ..resize import WORK_MAX_PIXELS
from .engines import ENGINES
from .records import CALIBRATION_IMPORTANCE


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("source", help="a folder (recursive), a glob, a .zip or a .parquet file with an image-bytes column")
    p.add_argument("--strategy", choices=("quadtree",), default="quadtree", help="layout strategy (quadtree)")
    p.add_argument("--importance", choices=IMPORTANCE_MEASURES, default=CALIBRATION_IMPORTANCE,
                   help=f"quadtree importance (default {CALIBRATION_IMPORTANCE})")
    p.add_argument("--min-size", type=int, default=8, help="smallest patch, a power of two (default 8)")
    p.add_argument("--max-size", type=int, default=64, help="largest patch, a power of two (default 64)")
    p.add_argument("--engine", choices=ENGINES, default="local", help="local process pool or Ray Data")
    p.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: start a local Ray")
    p.add_argument("--workers", type=int, default=None, help="worker processes / local Ray CPUs (default: all cores)")
    p.add_argument("--column", default=None, help="Parquet column holding the image bytes")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help="images larger than this (width x height) are skipped and listed")
    p.add_argument("--work-pixels", type=int, default=WORK_MAX_PIXELS,
                   help=f"images with more pixels are downscaled to this working size first, as the app and "
                        f"python -m adapatch IMAGE do (default {WORK_MAX_PIXELS:,} = 2048x2048; 0: full resolution)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def calibrate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adapatch calibrate",
                                description="Solve the quadtree threshold that meets a compute target over a dataset.")
    _common(p)
    p.add_argument("--out", required=True, help="output folder: report.json, report.md, layouts.parquet")
    t = p.add_mutually_exclusive_group()
    t.add_argument("--target-mean-tokens", type=float, help="mean tokens per image, at most")
    t.add_argument("--target-tokens-per-mp", type=float, help="tokens per megapixel (total / total), at most")
    t.add_argument("--target-flops-ratio", type=float,
                   help="total ViT MACs / total MACs of the uniform 16 px grids, at most (default 0.5)")
    p.add_argument("--target-p95-tokens", type=float, help="cap on the 95th percentile of tokens per image "
                   "(combines with the other target)")
    p.add_argument("--vit", choices=list(VIT_PRESETS), default="ViT-B", help="ViT preset for FLOPs")
    return p


def layouts_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adapatch layouts",
                                description="Write every image's quadtree at a given threshold to Parquet.")
    _common(p)
    p.add_argument("--threshold", type=float, required=True, help="quadtree threshold in [0, 1]")
    p.add_argument("--out", required=True, help="the Parquet file to write")
    return p


def calibrate_main(argv: list[str]) -> int:
    args = calibrate_parser().parse_args(argv)
    from .calibrate import Targets, calibrate
    try:
        targets = Targets(mean_tokens=args.target_mean_tokens, tokens_per_mp=args.target_tokens_per_mp,
                          flops_ratio=args.target_flops_ratio, p95_tokens=args.target_p95_tokens)
        if not targets.items():
            targets = Targets(flops_ratio=0.5)
            print("note: no target given; using --target-flops-ratio 0.5", file=sys.stderr)
        cal = calibrate(args.source, targets, vit=args.vit, min_size=args.min_size, max_size=args.max_size,
                        importance=args.importance, max_pixels=args.max_pixels, work_pixels=args.work_pixels,
                        engine=args.engine,
                        workers=args.workers, address=args.address, column=args.column, progress=not args.quiet,
                        out=args.out)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    with cal:
        r = cal.report()
        print(f"threshold: {r['threshold']:.6g}")
        print(f"images: {r['images']}  skipped: {r['skipped_count']}  ({r['seconds']:.1f} s, engine {r['engine']})")
        print(f"tokens per image: mean {r['mean_tokens']:.1f}  p50 {r['p50_tokens']}  p95 {r['p95_tokens']}  "
              f"max {r['max_tokens']}  (uniform 16 px: mean {r['uniform16_mean_tokens']:.1f})")
        print(f"tokens per megapixel: {r['tokens_per_mp']:.1f}")
        print(f"{r['vit']} FLOPs (MACs) vs uniform 16 px, ratio of totals: {r['flops_ratio_vs_uniform16']:.4f}")
        for s in r["skipped"][:10]:
            print(f"skipped: {s['path']}: {s['reason']}")
        if len(r["skipped"]) > 10:
            print(f"skipped: ... {len(r['skipped']) - 10} more in report.json")
        print(f"wrote: {args.out}/report.json, report.md, layouts.parquet")
    return 0


def layouts_main(argv: list[str]) -> int:
    args = layouts_parser().parse_args(argv)
    from .calibrate import layouts_at
    try:
        out = layouts_at(args.source, args.threshold, args.out, min_size=args.min_size, max_size=args.max_size,
                         importance=args.importance, max_pixels=args.max_pixels, work_pixels=args.work_pixels,
                         engine=args.engine, workers=args.workers, address=args.address, column=args.column,
                         progress=not args.quiet)
    except (ValueError, RuntimeError, OSError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    print(f"rows: {out['rows']}  skipped: {len(out['skipped'])}  mean tokens: {out['mean_tokens']:.1f}")
    for s in out["skipped"][:10]:
        print(f"skipped: {s['path']}: {s['reason']}")
    print(f"wrote: {out['path']}")
    return 0
