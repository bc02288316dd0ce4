"""Forward latency vs token count for ViT-Ti/S/B (random weights: timing only), next to the
MACs prediction, plus pad+mask vs packing on variable-length batches. Prints JSON.

    python benchmarks/bench_latency.py [--threads 2] [--batch 8] [--repeats 5] [--device auto]
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
import torch

from adapatch.model import compare_pad_pack, create_model, latency_curve


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--presets", default="ViT-Ti,ViT-S,ViT-B")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tokens = [25, 49, 98, 147, 196]
    out = {"environment": {"torch": torch.__version__, "threads": args.threads, "machine": platform.machine(),
                           "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None},
           "curves": {}, "pad_vs_pack": {}}
    rng = np.random.default_rng(0)
    for preset in args.presets.split(","):
        torch.manual_seed(0)
        model = create_model(preset, device=args.device).eval()
        out["curves"][preset] = latency_curve(model, tokens, (1, args.batch), args.device, args.repeats, 1)
        mixed = sorted(rng.integers(25, 197, args.batch).tolist())
        out["pad_vs_pack"][preset] = [
            compare_pad_pack(model, mixed, args.device, args.repeats, 1),
            compare_pad_pack(model, [196] + [25] * (args.batch - 1), args.device, args.repeats, 1),
        ]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
