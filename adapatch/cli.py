"""Command line: ``python -m adapatch IMAGE [options]`` prints tokens, reduction and fidelity;
``python -m adapatch calibrate|layouts SOURCE ...`` work on datasets (``adapatch.dataset.cli``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import render
from .efficiency import VIT_PRESETS, efficiency
from .errors import ImageError
from .fidelity import fidelity
from .greedy import ALLOCATIONS
from .image_io import DEFAULT_MAX_PIXELS, open_image
from .importance import IMPORTANCE_MEASURES
from .resize import WORK_MAX_PIXELS, to_working_size
from .saliency import saliency, saliency_methods
from .samples import list_samples, sample_path
from .strategies import BUDGET_DEFAULT, layout_for_budget, make_layout


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m adapatch", description="Adaptive patch layout of an image. "
                                "Datasets: python -m adapatch calibrate SOURCE --out DIR, "
                                "python -m adapatch layouts SOURCE --threshold T --out FILE, "
                                "python -m adapatch tune SOURCE --model MODEL --out DIR (see --help of each).")
    p.add_argument("image", help=f"image file, or sample:NAME for a bundled sample ({', '.join(list_samples())})")
    p.add_argument("--strategy", choices=("quadtree", "greedy", "multiscale", "uniform"), default=None,
                   help="default: with --budget, the better of the distortion quadtree and the equal-token "
                        "uniform grid (multiscale --scales 1); without, quadtree. multiscale and uniform need "
                        "--budget (uniform: the equal-token grid of any patch size)")
    p.add_argument("--scales", type=int, default=None,
                   help="multiscale: base sizes searched (1: quadtree vs uniform grid, the budget default; "
                        "6: the thorough search, the default of --strategy multiscale)")
    p.add_argument("--threshold", type=float, default=None,
                   help="quadtree split threshold: in [0, 1] (default 0.1), or for --importance distortion "
                        "lambda >= 0, the error a split must remove per added token (default 20)")
    p.add_argument("--budget", type=int, default=None, help="maximum number of tokens")
    p.add_argument("--min-size", type=int, default=8, help="smallest patch (power of two)")
    p.add_argument("--max-size", type=int, default=32, help="largest patch (power of two)")
    p.add_argument("--importance", choices=IMPORTANCE_MEASURES, default=None,
                   help="quadtree importance (default: distortion with --budget, std without)")
    p.add_argument("--saliency", default="edges", help="saliency method for greedy / saliency importances")
    p.add_argument("--uncovered", choices=("fill", "drop"), default="fill", help="greedy: what the budget leaves")
    p.add_argument("--allocation", choices=ALLOCATIONS, default="saliency",
                   help="greedy: saliency rule or rate-distortion allocation")
    p.add_argument("--vit", choices=list(VIT_PRESETS), default="ViT-B")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="larger images are refused")
    p.add_argument("--work-pixels", type=int, default=WORK_MAX_PIXELS,
                   help=f"images with more pixels are downscaled to this working size first, as the app and "
                        f"calibrate do (default {WORK_MAX_PIXELS:,} = 2048x2048; 0: full resolution); the layout "
                        "JSON and overlay refer to the working image")
    p.add_argument("--json", type=Path, help="write the layout JSON here")
    p.add_argument("--overlay", type=Path, help="write the overlay PNG here")
    return p


SUBCOMMANDS = ("calibrate", "layouts", "tune")
"""Dataset commands (``adapatch.dataset.cli``) and the tuner (``adapatch.tune.cli``); any other first
argument is an image."""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "tune":
        from .tune.cli import tune_main
        return tune_main(argv[1:])
    if argv and argv[0] in SUBCOMMANDS:
        from .dataset import cli as dataset_cli
        return dataset_cli.calibrate_main(argv[1:]) if argv[0] == "calibrate" else dataset_cli.layouts_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        src = sample_path(args.image[7:]) if args.image.startswith("sample:") else args.image
        loaded = open_image(src, max_pixels=args.max_pixels)
        image, work = to_working_size(loaded.array, args.work_pixels)
        if args.saliency not in saliency_methods():
            raise ValueError(f"--saliency must be one of {', '.join(saliency_methods())}")
        strategy = args.strategy or ("quadtree" if args.budget is None or args.importance else "default")
        if strategy == "default":
            layout = layout_for_budget(image, "multiscale", args.budget,
                                       scales=args.scales or BUDGET_DEFAULT["scales"])
        elif strategy == "quadtree":
            needs_sal = args.importance in ("mean_saliency", "max_saliency")
            layout = make_layout(image, "quadtree", saliency(image, args.saliency) if needs_sal else None,
                                 threshold=args.threshold, budget=args.budget, min_size=args.min_size,
                                 max_size=args.max_size, importance=args.importance)
            if needs_sal:
                layout.params["saliency"] = args.saliency
        elif strategy in ("multiscale", "uniform"):
            if args.budget is None:
                raise ValueError(f"--strategy {strategy} needs --budget")
            extra = {"scales": args.scales} if strategy == "multiscale" and args.scales else {}
            layout = layout_for_budget(image, strategy, args.budget, **extra)
        else:
            sizes = []
            s = args.min_size
            while s <= args.max_size:
                sizes.append(s)
                s *= 2
            sal = args.saliency if args.allocation == "saliency" else None
            layout = make_layout(image, "greedy", sal, patch_sizes=sizes or [args.min_size],
                                 budget=args.budget, uncovered=args.uncovered, allocation=args.allocation)
        eff = efficiency(layout, vit=args.vit)
        fid = fidelity(image, layout)
    except (ImageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    h, w = image.shape[:2]
    for note in loaded.notes:
        print(f"note: {note}")
    if work is not None:
        oh, ow = loaded.shape
        print(f"note: {ow}x{oh} computed at the working size {w}x{h} (--work-pixels 0: full resolution)")
    print(f"image: {w}x{h}  strategy: {layout.strategy}  sizes: {layout.counts_per_size()}")
    print(f"tokens: {eff['tokens']}  (uniform 16 px: {eff['uniform16_tokens']}, "
          f"uniform {eff['min_size']} px: {eff['uniform_min_tokens']})")
    print(f"reduction vs uniform 16: {100 * eff['token_reduction_vs_uniform16']:.1f}%  "
          f"vs uniform {eff['min_size']}: {100 * eff['token_reduction_vs_uniform_min']:.1f}%")
    print(f"{args.vit} GMACs: {eff['flops'] / 1e9:.2f} (uniform 16: {eff['uniform16_flops'] / 1e9:.2f}, "
          f"ratio {eff['flops_ratio_vs_uniform16']:.3f})")
    print(f"fidelity: PSNR {fid['psnr']:.2f} dB  SSIM {fid['ssim']:.4f}")
    try:
        if args.json:
            args.json.write_text(layout.to_json(indent=None))
            print(f"layout: {args.json}")
        if args.overlay:
            args.overlay.write_bytes(render.to_png_bytes(render.layout_overlay(image, layout, max_side=None)))
            print(f"overlay: {args.overlay}")
    except OSError as e:
        print(f"error: cannot write output: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0
