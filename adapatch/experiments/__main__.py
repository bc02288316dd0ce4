"""``python -m adapatch.experiments [--out DIR] [--quick] [--seed N] [--threads N]``: train and
evaluate the cluttered-digits experiment, write weights, config, results and sample images.

``python -m adapatch.experiments --eval-only [--out DIR] [--threads N]``: evaluate the checkpoint
already in ``DIR`` (default: the package's bundled model, adapatch/assets/model) on its training
run's held-out split, without retraining, and rewrite ``results.json`` (keeping the training log)
and ``results.md``. The rows cover the whole split; ``results.json``'s ``subset_check`` holds the
exact correct counts, tokens and MACs on its first ``SUBSET_N`` images, which
tests/test_experiments_eval.py recomputes in seconds.

``python -m adapatch.experiments --query-experiment [--out DIR] [--seed N] [--query-n N] [--threads N]``:
query-aware patching on two cluttered digits (``query_eval``), with the checkpoint in
``DIR`` unchanged; writes ``query_results.json`` and ``query_results.md`` there."""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..device import resolve_device
from ..model.pruning import TokenPruner
from ..model.selector import LearnedPatchSelector
from ..model.task import ASSET_DIR, TaskModel
from ..model.vit import VisionTransformer, ViTConfig
from ..model.weights import save_model
from .cluttered_digits import DatasetConfig, make_dataset, to_rgb
from .eval_only import evaluate_checkpoint, write_eval_only
from .evaluate import evaluate, markdown_table
from .train import train_pruner, train_selector, train_vit

FULL = {"n_train": 12000, "n_test": 2000, "vit_epochs": 24, "pruner_epochs": 2, "selector_epochs": 3,
        "n_latency": 100, "n_timing": 1024, "rounds": 3}
QUICK = {"n_train": 256, "n_test": 128, "vit_epochs": 1, "pruner_epochs": 1, "selector_epochs": 1, "n_latency": 5,
         "n_timing": 128, "rounds": 1}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m adapatch.experiments", description=__doc__)
    ap.add_argument("--out", default=str(ASSET_DIR),
                    help="output folder (default: the bundled model, adapatch/assets/model)")
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke run on a tiny dataset")
    ap.add_argument("--seed", type=int, default=None, help="training seed (default 0)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--vit-epochs", type=int, default=None)
    ap.add_argument("--eval-only", action="store_true",
                    help="no training: evaluate the checkpoint in --out on its held-out split and rewrite "
                         "results.json / results.md there")
    ap.add_argument("--query-experiment", action="store_true",
                    help="no training: query-aware patching on two cluttered digits with the checkpoint in --out "
                         "(--seed: the canvases' seed, default 14); writes query_results.json / query_results.md")
    ap.add_argument("--query-n", type=int, default=2000, help="--query-experiment: number of two-digit canvases")
    ap.add_argument("--tune-experiment", action="store_true",
                    help="no training: adapatch.tune on the checkpoint's held-out digits, with and without labels, "
                         "against the hand-picked rows; writes tune_results.json / tune_results.md")
    ap.add_argument("--progressive-experiment", action="store_true",
                    help="no training: progressive refinement (re-run and split in place) on the checkpoint's held-out "
                         "digits against static layouts at equal MACs; writes progressive_results.json / .md")
    ap.add_argument("--limit", type=int, default=None,
                    help="--tune-experiment / --progressive-experiment: use the first N held-out images "
                         "(progressive default 1000)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    command = "python -m adapatch.experiments " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.query_experiment:
        return _query_experiment(ap, args, command)
    if args.progressive_experiment:
        from .progressive_eval import markdown as progressive_markdown
        from .progressive_eval import run_progressive_experiment
        res = run_progressive_experiment(None, limit=args.limit or 1000, device=args.device,
                                         threads=args.threads, command=command, out=args.out)
        print(progressive_markdown(res))
        return res
    if args.tune_experiment:
        from .tune_eval import markdown as tune_markdown
        from .tune_eval import run_tune_experiment
        res = run_tune_experiment(args.out, limit=args.limit, seed=args.seed or 0, device=args.device,
                                  threads=args.threads, command=command)
        print(tune_markdown(res))
        return res
    if args.eval_only:
        for flag, given in (("--quick", args.quick), ("--seed", args.seed is not None),
                            ("--vit-epochs", args.vit_epochs is not None)):
            if given:
                ap.error(f"{flag} is for training; --eval-only takes the dataset and seed from the checkpoint's "
                         "config.json")
        return _eval_only(args, command)
    if args.seed is None:
        args.seed = 0
    plan = dict(QUICK if args.quick else FULL)
    if args.vit_epochs is not None:
        plan["vit_epochs"] = args.vit_epochs
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    dev = resolve_device(args.device)
    out = Path(args.out)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    dcfg = DatasetConfig(n_train=plan["n_train"], n_test=plan["n_test"], seed=args.seed)
    data = make_dataset(dcfg)
    vcfg = ViTConfig(img_size=dcfg.size, patch_size=8, dim=96, depth=4, heads=3, num_classes=10,
                     pos_mode="interp+mlp", mean=(0.5,) * 3, std=(0.5,) * 3, name="task_vit_cluttered_digits")
    vit = VisionTransformer(vcfg).to(dev)
    log: list = []
    train_vit(vit, data["train_x"], data["train_y"], plan["vit_epochs"], seed=args.seed, log=log)
    prune_layer, selector_k = 1, 16
    pruner = TokenPruner(vcfg.dim).to(dev)
    train_pruner(vit, pruner, data["train_x"], data["train_y"], prune_layer, plan["pruner_epochs"],
                 seed=args.seed + 1, log=log)
    scfg = {"img_size": vcfg.img_size, "grid_size": vcfg.grid_size, "width": 8}
    selector = LearnedPatchSelector(**scfg).to(dev)
    train_selector(vit, selector, data["train_x"], data["train_y"], selector_k, plan["selector_epochs"],
                   seed=args.seed + 2, log=log)
    train_seconds = time.perf_counter() - t_start
    vit.pretrained, vit.weights_source = True, "trained by adapatch.experiments"
    task = TaskModel(vit, pruner, selector, prune_layer).eval()

    rows = evaluate(task, data["test_x"], data["test_y"], n_latency=plan["n_latency"], n_timing=plan["n_timing"],
                    rounds=plan["rounds"])
    md = markdown_table(rows)
    print(md)

    from safetensors.torch import save_file
    save_model(vit, out / "task_vit.safetensors")
    save_file({k: v.cpu().contiguous() for k, v in pruner.state_dict().items()}, str(out / "task_pruner.safetensors"))
    save_file({k: v.cpu().contiguous() for k, v in selector.state_dict().items()},
              str(out / "task_selector.safetensors"))
    config = {"vit": vcfg.to_dict(), "selector": scfg, "prune_layer": prune_layer, "selector_k": selector_k,
              "dataset": dcfg.to_dict(), "plan": plan, "seed": args.seed, "quick": args.quick,
              "quadtree": {"min_size": 8, "max_size": 32, "importance": "std"}}
    (out / "config.json").write_text(json.dumps(config, indent=2))
    samples = []
    for i in range(8):
        name = f"digit_{i}_label{int(data['test_y'][i])}.png"
        img = (to_rgb(data["test_x"][i]) * 255 + 0.5).astype(np.uint8)
        cv2.imwrite(str(out / "samples" / name), img[..., ::-1])
        samples.append({"file": f"samples/{name}", "label": int(data["test_y"][i]),
                        "digit_top_left": data["test_pos"][i].tolist()})
    (out / "samples" / "labels.json").write_text(json.dumps(samples, indent=2))
    results = {
        "command": command, "rows": rows, "rows_source": "training", "train_log": log,
        "train_seconds": train_seconds, "total_seconds": time.perf_counter() - t_start,
        "environment": _environment(dev, args.threads),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(md)
    print(f"wrote {out} in {results['total_seconds']:.0f}s")
    return results


def _environment(dev: torch.device, threads: int) -> dict:
    return {"torch": torch.__version__, "device": str(dev), "threads": threads,
            "python": platform.python_version(), "machine": platform.machine()}


def _eval_only(args: argparse.Namespace, command: str) -> dict:
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    out = Path(args.out)
    t_start = time.perf_counter()
    result = evaluate_checkpoint(out, device=dev)
    seconds = time.perf_counter() - t_start
    print(markdown_table(result["rows"]))
    results = write_eval_only(out, result, command, seconds, _environment(dev, args.threads))
    check = result["subset_check"]
    sub = f", subset check on the first {check['n']}" if check is not None else ""
    print(f"evaluated {out} on {result['n_test']} held-out images ({result['samples_verified']} saved samples "
          f"matched{sub}) in {seconds:.0f}s; rewrote results.json and results.md")
    return results


def _query_experiment(ap: argparse.ArgumentParser, args: argparse.Namespace, command: str) -> dict:
    from .query_eval import compact_table, markdown_table, run_query_experiment

    for flag, given in (("--quick", args.quick), ("--eval-only", args.eval_only),
                        ("--vit-epochs", args.vit_epochs is not None)):
        if given:
            ap.error(f"{flag} does not go with --query-experiment (it trains nothing)")
    if args.query_n < 1:
        ap.error("--query-n must be >= 1")
    res = run_query_experiment(args.out, n=args.query_n, seed=14 if args.seed is None else args.seed,
                               device=args.device, threads=args.threads, command=command)
    print(markdown_table(res["rows"]))
    print(compact_table(res["rows"]))
    print(f"{args.query_n} two-digit canvases in {res['seconds']:.0f}s; wrote query_results.json and query_results.md "
          f"in {args.out}")
    return res


if __name__ == "__main__":
    main()
