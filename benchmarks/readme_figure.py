"""The README's overview figure: the same token count, three layouts, PSNR against the original.

    python benchmarks/readme_figure.py [--sample astronaut] [--fraction 0.35] [--out assets/readme/overview.png]

Columns: the equal-token uniform grid, the quadtree with the old default importance (``std``) and
with the budget-mode default (``distortion``), all at the uniform grid's token count; top row the
layouts, bottom row what a 16 px embedding sees. The numbers in the labels are computed here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import adapatch as ap  # noqa: E402
from adapatch.samples import load_sample  # noqa: E402


def label(img: np.ndarray, text: str) -> np.ndarray:
    bar = np.full((34, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (8, 23), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (20, 20, 20), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--sample", default="astronaut")
    p.add_argument("--fraction", type=float, default=0.35)
    p.add_argument("--side", type=int, default=448)
    p.add_argument("--out", type=Path, default=Path("assets/readme/overview.png"))
    args = p.parse_args()
    img = load_sample(args.sample)
    h, w = img.shape[:2]
    uni = ap.layout_for_budget(img, "uniform", round(args.fraction * ap.uniform(h, w, 16).num_tokens))
    n = uni.num_tokens
    cols = [("uniform %d px" % uni.params["patch_size"], uni),
            ("quadtree, std", ap.quadtree(img, budget=n, min_size=16, max_size=64, importance="std")),
            ("quadtree, distortion", ap.quadtree(img, budget=n, min_size=16, max_size=64))]
    panels = []
    for name, lay in cols:
        fid = ap.fidelity(img, lay, device="cpu")
        top = ap.render.layout_overlay(img, lay, max_side=args.side)
        bottom = ap.render._to_uint8(ap.reconstruct(img, lay, device="cpu"), top.shape[:2])
        text = f"{name}: {lay.num_tokens} tokens, PSNR {fid['psnr']:.2f} dB"
        panels.append(np.concatenate([label(top, text), np.full((4, top.shape[1], 3), 255, np.uint8), bottom], 0))
        print(text)
    sep = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    out = np.concatenate([panels[0], sep, panels[1], sep, panels[2]], axis=1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), out[..., ::-1])
    print(f"wrote {args.out} ({out.shape[1]}x{out.shape[0]})")


if __name__ == "__main__":
    main()
