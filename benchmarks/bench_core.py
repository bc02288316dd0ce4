"""Core speed benchmark: prints JSON with timings and ratios measured in the same run.

    python benchmarks/bench_core.py [--repeat 30]

Targets (issue 2, on a 2-core CPU):
  * quadtree 1024x1024 (min 8, max 32) >= 100x faster than the seed baseline, identical boxes;
  * the same quadtree <= 5x the time of one ``image.sum()`` over the float32 image;
  * saliency + quadtree + overlay for 1024x1024 <= 50 ms median;
  * >= 1000 layouts/s for 224x224 images (batched).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import adapatch as ap  # noqa: E402
from baseline_quadtree import seed_quadtree  # noqa: E402


def median_ms(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def round_robin(fns: dict, rounds: int, inner: int = 10) -> dict[str, float]:
    """Median ms per call of each function, interleaved: every round calls each one (fast ones
    ``inner`` times), so a load spike on a shared machine hits all of them alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            n = 1 if k == "baseline" else inner
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def main() -> None:
    ap_ = argparse.ArgumentParser()
    ap_.add_argument("--repeat", type=int, default=30)
    args = ap_.parse_args()
    from skimage import data
    img = cv2.resize(data.astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255
    r = args.repeat
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "numpy": np.__version__, "opencv": cv2.__version__}, "image": "astronaut 1024x1024"}

    # 1. seed baseline vs adapatch, timed round-robin (one baseline call, then ours, per round)
    # so that load on a shared machine falls on both alike.
    var_t = 0.005
    seed_boxes = seed_quadtree(img, var_t)
    ours_var = ap.quadtree(img, threshold=4 * var_t, importance="variance")
    std_t = ap.threshold_curve(img, min_size=8, max_size=32, importance="std").threshold_for(len(seed_boxes))
    timed = round_robin({
        "baseline": lambda: seed_quadtree(img, var_t),
        "variance": lambda: ap.quadtree(img, threshold=4 * var_t, importance="variance"),
        "std": lambda: ap.quadtree(img, threshold=std_t, importance="std"),
    }, rounds=max(5, r // 2))
    base_ms = timed["baseline"]
    same = bool(np.array_equal(seed_boxes, ours_var.boxes))
    out["vs_seed_baseline"] = {
        "baseline_ms": round(base_ms, 2), "adapatch_ms": round(timed["variance"], 3),
        "speedup": round(base_ms / timed["variance"], 1), "identical_boxes": same,
        "tokens": int(ours_var.num_tokens),
        "target": ">= 100x, identical boxes", "pass": bool(base_ms / timed["variance"] >= 100 and same),
    }
    std_tokens = int(ap.quadtree(img, threshold=std_t, importance="std").num_tokens)
    out["std_vs_seed_baseline"] = {
        "note": "pixel-std importance, threshold chosen so the layout has at most the baseline's token count",
        "threshold": round(float(std_t), 5), "tokens": std_tokens, "baseline_ms": round(base_ms, 2),
        "adapatch_ms": round(timed["std"], 3), "speedup": round(base_ms / timed["std"], 1),
        "target": ">= 100x", "pass": bool(base_ms / timed["std"] >= 100),
    }

    sweep = []
    for t in (0.0005, 0.002, 0.005, 0.02):
        tm = round_robin({"baseline": lambda: seed_quadtree(img, t),
                          "ours": lambda: ap.quadtree(img, threshold=4 * t, importance="variance")}, rounds=5)
        same_t = bool(np.array_equal(seed_quadtree(img, t), ap.quadtree(img, threshold=4 * t, importance="variance").boxes))
        sweep.append({"seed_threshold": t, "tokens": int(len(seed_quadtree(img, t))), "identical_boxes": same_t,
                      "baseline_ms": round(tm["baseline"], 1), "adapatch_ms": round(tm["ours"], 3),
                      "speedup": round(tm["baseline"] / tm["ours"], 1)})
    out["vs_seed_baseline_sweep"] = sweep

    # 2. quadtree (pixel-std importance) vs one image.sum()
    sum_ms = median_ms(lambda: img.sum(), r * 3)
    for imp in ("std", "variance"):
        q_ms = median_ms(lambda: ap.quadtree(img, threshold=0.2, importance=imp), r)
        out[f"quadtree_{imp}_vs_sum"] = {"quadtree_ms": round(q_ms, 3), "image_sum_ms": round(sum_ms, 3),
                                         "ratio": round(q_ms / sum_ms, 2), "target": "<= 5",
                                         "pass": bool(q_ms / sum_ms <= 5)}
    out["quadtree_budget_ms"] = round(median_ms(lambda: ap.quadtree(img, budget=3000, importance="std"), r), 3)
    out["quadtree_budget_distortion_ms"] = round(median_ms(lambda: ap.quadtree(img, budget=3000, importance="distortion"), r), 3)
    out["threshold_curve_ms"] = round(median_ms(lambda: ap.threshold_curve(img), r), 3)

    # 3. saliency + quadtree + overlay, end to end
    def pipeline():
        sal = ap.saliency(img, "edges")
        lay = ap.quadtree(img, sal, threshold=0.3, importance="mean_saliency")
        return ap.render.layout_overlay(img, lay, max_side=1024)
    p_ms = median_ms(pipeline, r)
    out["saliency_quadtree_overlay"] = {"median_ms": round(p_ms, 2), "target_ms": 50, "pass": bool(p_ms <= 50)}

    # 4. batch throughput at 224x224
    batch = np.stack([cv2.resize(data.astronaut(), (224, 224)), cv2.resize(data.coffee(), (224, 224)),
                      cv2.resize(data.chelsea(), (224, 224)), cv2.resize(data.rocket(), (224, 224))] * 64)
    batch = batch.astype(np.float32) / 255
    b_ms = median_ms(lambda: ap.quadtree_batch(batch, threshold=0.2), max(5, r // 3))
    single_ms = median_ms(lambda: ap.quadtree(batch[0], threshold=0.2), r)
    out["batch_224"] = {"batch_size": len(batch), "layouts_per_s": round(len(batch) / (b_ms / 1e3)),
                        "single_call_layouts_per_s": round(1e3 / single_ms), "target": ">= 1000/s",
                        "pass": bool(len(batch) / (b_ms / 1e3) >= 1000)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
