"""One lambda over a dataset: equal-slope calibration against per-image layouts at EQUAL TOTAL TOKENS.

    python benchmarks/bench_lambda.py [--out benchmarks/results/lambda-DATE.json] [--rounds 9] [--quick]

The dataset target: one ``distortion`` lambda (the squared error a split must remove per
added token, ``adapatch.quadtree_engine.LAMBDA_UNIT``) calibrated over a varied set lets tokens flow
to the images that need them; at equal total tokens it should keep >= 1 dB more (PSNR of the pooled
MSE) than per-image uniform grids at 20/35/50% of the 16 px grid, and more than per-image budget
layouts at the same shares.

Images (``IMAGES``): scikit-image's bundled data, 8-bit levels. Most are area-resized to a long side
of 384 px (``LONG_SIDE``; the smaller ones, coins and page, are native 384 px wide already), plus a
120x180 thumbnail (chelsea), microaneurysms at its native 102x102, an odd-size native crop of
rocket (333x517) and a 1500x2000 composite (four 750x1000 tiles: retina and hubble at native or
reduced resolution, astronaut and chelsea upscaled bicubically). ``flat`` is one colour.

For each share ``s`` of each image's 16 px grid:

* (a) ``uniform``: ``layout_for_budget(img, "uniform", round(s * n16_i))`` per image (square patches
  of any integer size); ``T`` = the sum of their actual tokens; ``n_i`` = each image's count.
* (b) per-image budget layouts at ``n_i``: ``quadtree(img, budget=n_i, min_size=16, max_size=64,
  importance="distortion")``, ``multiscale(img, n_i)`` and, where the library has it,
  ``default_layout(img, n_i)`` (the budget-mode default: multiscale with one scale, the better of the
  quadtree and the uniform grid).
* (c) ``one_lambda``: the smallest lambda whose threshold-mode quadtrees (16-64 px, distortion) have
  at most ``T`` tokens in total, solved exactly from the union of the images' ``threshold_curve``
  breakpoints; layouts are ``quadtree(img, threshold=lambda, ...)``.
* (d) ``one_old_threshold``: the seed's distortion threshold (``2 sqrt(gain / (3 s^2))`` clipped to
  [0, 1], a square splits when it and every ancestor exceed it), one value over the set solved the
  same way; layouts built from ``quadtree_engine.prepare(...).gains`` with ``path_minima``/``leaves``.

Fidelity: ``adapatch.fidelity(img, layout, device="cpu")`` (what a 16 px embedding sees, against the
full-resolution original). Per method: total tokens; ``pooled_psnr`` = 10 log10(1 / MSE_pool), with
MSE_pool = sum_i SSE_i / sum_i (3 H_i W_i) (squared errors over every pixel and channel of every
image, each image weighted by its pixel count; values in [0, 1]; the composite is 3.0 of the set's
5.5 MP); ``pooled_psnr_equal_weights`` = the same with every image's MSE weighted equally; mean and
median per-image PSNR (capped at 100 dB: the flat image, and any image given its whole 16 px grid,
which a 16 px embedding sees losslessly, count 100) and the mean without ``flat``; mean per-image
SSIM; how many images fall below their uniform grid.

Also, per image at 30% of its 16 px grid: dPSNR/dSSIM vs the equal-token uniform grid of the
distortion quadtree and multiscale (as bench_rd.py), and the speed of ``quadtree(img, budget=N,
min_size=16, max_size=64, importance="distortion")`` vs ``multiscale(img, N)`` (N = 30%) at 1 MP
(chelsea resized to 1152x864) and 9 MP (a 3000x3000 composite), round-robin in the same run,
median ms and their ratio. The library is called as is: re-run it after multiscale changes.

``hull``: one lambda over each image's ``ap.rd_hull`` (multiscale's threshold mode: the lower
convex hull of the quadtree's Lagrangian layouts and uniform grids of a 28-size ladder), solved
exactly from the hulls' slopes; the PSNRs reported are measured with ``fidelity`` on the chosen
layouts.
Deterministic (no random draws; ``--seed`` is recorded for form). Prints JSON (also ``--out``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import adapatch as ap  # noqa: E402
from adapatch import quadtree_engine as qe  # noqa: E402
from adapatch.fidelity import MAX_PSNR  # noqa: E402
from adapatch.layout import PatchLayout  # noqa: E402

LONG_SIDE = 384
SHARES = (0.20, 0.35, 0.50)
RD_SHARE = 0.30
QT_CALLS = 5  # speed: quadtree (and default) calls per round (~100x faster than multiscale)
MIN, MAX = 16, 64
QT = dict(min_size=MIN, max_size=MAX, importance="distortion")
IMAGES = ("astronaut", "chelsea", "coffee", "rocket", "camera", "coins", "hubble_deep_field", "retina", "moon",
          "clock", "text", "page", "brick", "grass", "gravel", "immunohistochemistry", "cell", "colorwheel", "flat",
          "chelsea_thumb", "microaneurysms", "rocket_crop", "composite_2000x1500")
HAS_DEFAULT = hasattr(ap, "default_layout")  # the budget-mode default (78fb53b on): multiscale, scales=1
METHODS = ("uniform", "quadtree_budget", "multiscale") + (("default_budget",) if HAS_DEFAULT else ()) + (
    "one_lambda", "one_old_threshold", "hull")


def q8(a: np.ndarray) -> np.ndarray:
    """float32 RGB in [0, 1] on 8-bit levels (what a decoded image holds)."""
    return (np.round(np.clip(a, 0.0, 1.0) * 255.0) / 255.0).astype(np.float32)


def raw(name: str) -> np.ndarray:
    from skimage import data
    a = np.asarray(getattr(data, name)())
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    return (a[..., :3] / 255.0).astype(np.float32)


def resize(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if (h, w) == img.shape[:2]:
        return img
    down = h * w < img.shape[0] * img.shape[1]
    return q8(cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if down else cv2.INTER_CUBIC))


def long_side(img: np.ndarray, side: int) -> np.ndarray:
    h, w = img.shape[:2]
    if max(h, w) <= side:
        return img
    f = side / max(h, w)
    return resize(img, max(1, round(h * f)), max(1, round(w * f)))


def cover(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize to cover ``h x w`` (aspect kept), then centre-crop."""
    ih, iw = img.shape[:2]
    f = max(h / ih, w / iw)
    r = resize(img, max(h, round(ih * f)), max(w, round(iw * f)))
    y, x = (r.shape[0] - h) // 2, (r.shape[1] - w) // 2
    return np.ascontiguousarray(r[y:y + h, x:x + w])


def composite(names: tuple[str, ...], rows: int, cols: int, th: int, tw: int) -> np.ndarray:
    tiles = [cover(raw(n), th, tw) for n in names]
    return np.ascontiguousarray(np.concatenate(
        [np.concatenate(tiles[r * cols:(r + 1) * cols], axis=1) for r in range(rows)], axis=0))


def load(name: str) -> np.ndarray:
    if name == "flat":
        return q8(np.full((256, 384, 3), (0.2, 0.5, 0.7), np.float32))
    if name == "chelsea_thumb":
        return resize(raw("chelsea"), 120, 180)
    if name == "rocket_crop":
        return np.ascontiguousarray(raw("rocket")[41:41 + 333, 67:67 + 517])
    if name == "composite_2000x1500":
        return composite(("retina", "hubble_deep_field", "astronaut", "chelsea"), 2, 2, 750, 1000)
    img = raw(name)
    if name == "microaneurysms":
        return img
    return long_side(img, LONG_SIDE)


# ---------------------------------------------------------------- old threshold (the seed's unit)

class OldThreshold:
    """The seed's distortion threshold mode: value ``min(1, 2 sqrt(gain / (3 s^2)))`` per square,
    a square splits at ``t`` iff the path minimum of the values over its ancestry exceeds ``t``."""

    def __init__(self, img: np.ndarray):
        p = qe.prepare(img, None, MIN, MAX, "distortion")
        vals = [np.minimum(2.0 * np.sqrt(g / (3.0 * s * s)), 1.0) for g, s in zip(p.gains, p.sizes)]
        paths = qe.path_minima(vals + [p.levels[-1]])
        flat = np.concatenate([x[0].ravel() for x in paths]) if paths else np.zeros(0)
        params = {"importance": "distortion_old", "min_size": MIN, "max_size": MAX}
        self.record = ap.PathImportance(p.height, p.width, p.canvas, p.sizes, flat, params)
        self.curve = self.record.curve()  # exact, with the splits' real token increments

    def layout(self, t: float) -> PatchLayout:
        return self.record.layout(t)


def solve_one(curves: list[ap.ThresholdCurve], total: int) -> float:
    """Smallest threshold whose summed tokens over ``curves`` are <= ``total`` (exact: the union of
    the breakpoints is one curve)."""
    t = np.concatenate([c.thresholds for c in curves])
    inc = np.concatenate([c.increments if c.increments is not None else np.full(len(c.thresholds), 3)
                          for c in curves])
    order = np.argsort(t, kind="stable")
    union = ap.ThresholdCurve(t[order], sum(c.base_tokens for c in curves), {}, inc[order])
    return union.threshold_for(total)


# ---------------------------------------------------------------- multiscale at lambda

def solve_hull(hulls: list, total: int) -> float:
    """Smallest lambda whose summed tokens over the images' ``ap.rd_hull`` are <= ``total`` (exact:
    the token counts change only at the hulls' slopes)."""
    cands = np.unique(np.concatenate([hh.slopes for hh in hulls] + [[0.0]]))
    tokens = sum(hh.tokens_at(cands) for hh in hulls)
    return float(cands[np.argmax(tokens <= total)])


# ---------------------------------------------------------------- measurement

def fid(img: np.ndarray, lay: PatchLayout) -> dict:
    lay.validate()
    f = ap.fidelity(img, lay, device="cpu")
    return {"tokens": lay.num_tokens, "psnr": round(f["psnr"], 4), "ssim": round(f["ssim"], 5),
            "sse": f["mse"] * img.size}


def db(mse: float) -> float:
    return MAX_PSNR if mse <= 1e-10 else min(MAX_PSNR, 10 * float(np.log10(1 / mse)))


def pooled(entries: list[dict], base: list[dict], sizes: list[int], names: list[str]) -> dict:
    """Set-level numbers of one method (``base``: the uniform entries, for the per-image counts)."""
    mse = sum(e["sse"] for e in entries) / sum(sizes)
    psnrs = [e["psnr"] for e in entries]
    d = [e["psnr"] - b["psnr"] for e, b in zip(entries, base) if not (e["psnr"] >= MAX_PSNR and b["psnr"] >= MAX_PSNR)]
    return {"total_tokens": int(sum(e["tokens"] for e in entries)),
            "pooled_psnr": round(db(mse), 3),
            "pooled_psnr_equal_weights": round(db(float(np.mean([e["sse"] / z for e, z in zip(entries, sizes)]))), 3),
            "mean_psnr": round(float(np.mean(psnrs)), 3),
            "median_psnr": round(float(np.median(psnrs)), 3),
            "mean_psnr_without_flat": round(float(np.mean([p for p, n in zip(psnrs, names) if n != "flat"])), 3),
            "mean_ssim": round(float(np.mean([e["ssim"] for e in entries])), 4),
            "images_below_uniform": int(sum(x < -1e-9 for x in d)),
            "images_lossless": int(sum(p >= MAX_PSNR for p in psnrs)),
            "median_dpsnr_vs_uniform": round(float(np.median(d)), 3) if d else 0.0}


def dataset(names: tuple[str, ...], shares: tuple[float, ...]) -> dict:
    imgs = {n: load(n) for n in names}
    info = {n: {"size": list(im.shape[:2]), "n16": ap.uniform(*im.shape[:2], 16).num_tokens} for n, im in imgs.items()}
    new_curves = {n: ap.threshold_curve(im, **QT) for n, im in imgs.items()}
    old = {n: OldThreshold(im) for n, im in imgs.items()}
    hulls = {n: ap.rd_hull(im) for n, im in imgs.items()}
    sizes = [imgs[n].size for n in names]
    out: dict = {"images": info, "shares": {}}
    for s in shares:
        per: dict[str, dict[str, dict]] = {n: {} for n in names}
        for n in names:
            im = imgs[n]
            uni = ap.layout_for_budget(im, "uniform", max(1, round(s * info[n]["n16"])))
            per[n]["uniform"] = fid(im, uni)
            per[n]["uniform"]["patch"] = uni.params["patch_size"]
            ni = uni.num_tokens
            per[n]["quadtree_budget"] = fid(im, ap.quadtree(im, budget=ni, **QT))
            ms = ap.multiscale(im, ni)
            per[n]["multiscale"] = fid(im, ms)
            per[n]["multiscale"]["base_size"] = ms.params["base_size"]
            per[n]["multiscale"]["levels_used"] = ms.params["levels_used"]
            if HAS_DEFAULT:
                dl = ap.default_layout(im, ni)
                per[n]["default_budget"] = fid(im, dl)
                per[n]["default_budget"]["levels_used"] = dl.params.get("levels_used")
        total = sum(per[n]["uniform"]["tokens"] for n in names)
        lam = solve_one(list(new_curves.values()), total)
        t_old = solve_one([o.curve for o in old.values()], total)
        lam_h = solve_hull(list(hulls.values()), total)
        for n in names:
            im = imgs[n]
            lay = ap.quadtree(im, threshold=lam, **QT)
            assert lay.num_tokens == new_curves[n].tokens_at(lam), n
            per[n]["one_lambda"] = fid(im, lay)
            lay = old[n].layout(t_old)
            assert lay.num_tokens == old[n].curve.tokens_at(t_old), n
            per[n]["one_old_threshold"] = fid(im, lay)
            hl = hulls[n].layout(lam_h)
            per[n]["hull"] = fid(im, hl)
            assert hl.num_tokens == hulls[n].tokens_at(lam_h), n
            per[n]["hull"]["pick"] = f"uniform {hl.params['base_size']} px" if hl.params["levels_used"] == 0 else "quadtree"
        base = [per[n]["uniform"] for n in names]
        summ = {m: pooled([per[n][m] for n in names], base, sizes, list(names)) for m in METHODS}
        for m in METHODS:
            assert summ[m]["total_tokens"] <= total, (m, summ[m]["total_tokens"], total)
        u = summ["uniform"]["pooled_psnr"]
        summ["targets"] = {
            "one_lambda_minus_uniform_db": round(summ["one_lambda"]["pooled_psnr"] - u, 3),
            "one_lambda_minus_uniform_equal_weights_db": round(summ["one_lambda"]["pooled_psnr_equal_weights"]
                                                              - summ["uniform"]["pooled_psnr_equal_weights"], 3),
            "one_lambda_at_least_uniform_plus_1db": summ["one_lambda"]["pooled_psnr"] >= u + 1.0,
            "one_lambda_minus_quadtree_budget_db": round(summ["one_lambda"]["pooled_psnr"]
                                                        - summ["quadtree_budget"]["pooled_psnr"], 3),
            "one_lambda_minus_multiscale_db": round(summ["one_lambda"]["pooled_psnr"]
                                                   - summ["multiscale"]["pooled_psnr"], 3),
            "one_lambda_above_every_budget_layout": summ["one_lambda"]["pooled_psnr"] > max(
                summ[m]["pooled_psnr"] for m in ("quadtree_budget", "multiscale", "default_budget") if m in summ),
            "hull_minus_uniform_db": round(summ["hull"]["pooled_psnr"] - u, 3),
        }
        for n in names:
            for m in METHODS:
                per[n][m]["sse"] = round(per[n][m]["sse"], 4)
        out["shares"][f"{s:.0%}"] = {"uniform_total_tokens": total, "lambda": round(lam, 6),
                                     "old_threshold": round(t_old, 6), "hull_lambda": round(lam_h, 6),
                                     "summary": summ, "per_image": per}
        print(f"{s:4.0%} T={total} lambda={lam:.3f} old={t_old:.4f} " + " ".join(
            f"{m}={summ[m]['pooled_psnr']:.2f}" for m in METHODS), file=sys.stderr, flush=True)
    return out


def per_image_rd(names: tuple[str, ...]) -> list[dict]:
    rows = []
    for n in names:
        im = load(n)
        n16 = ap.uniform(*im.shape[:2], 16).num_tokens
        uni = ap.layout_for_budget(im, "uniform", max(1, round(RD_SHARE * n16)))
        k = uni.num_tokens
        fu = fid(im, uni)
        fq = fid(im, ap.quadtree(im, budget=k, **QT))
        ms = ap.multiscale(im, k)
        fm = fid(im, ms)
        both = fu["psnr"] >= MAX_PSNR and fq["psnr"] >= MAX_PSNR
        extra = {}
        if HAS_DEFAULT:
            fd = fid(im, ap.default_layout(im, k))
            extra = {"default_dpsnr": 0.0 if both else round(fd["psnr"] - fu["psnr"], 3),
                     "default_dssim": round(fd["ssim"] - fu["ssim"], 4)}
        rows.append({"image": n, "size": list(im.shape[:2]), "tokens": k, "uniform_patch": uni.params["patch_size"],
                     "uniform_psnr": fu["psnr"],
                     "quadtree_dpsnr": 0.0 if both else round(fq["psnr"] - fu["psnr"], 3),
                     "quadtree_dssim": round(fq["ssim"] - fu["ssim"], 4),
                     "multiscale_dpsnr": 0.0 if both else round(fm["psnr"] - fu["psnr"], 3),
                     "multiscale_dssim": round(fm["ssim"] - fu["ssim"], 4),
                     "multiscale_pick": f"base {ms.params['base_size']}, levels {ms.params['levels_used']}", **extra})
    return rows


def speed(rounds: int) -> dict:
    from skimage import data
    one = q8(cv2.resize(data.chelsea() / 255.0, (1152, 864), interpolation=cv2.INTER_CUBIC).astype(np.float32))
    nine = composite(("retina", "hubble_deep_field", "astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry",
                      "text", "brick"), 3, 3, 1000, 1000)
    out: dict = {"loadavg_1min_before": round(os.getloadavg()[0], 2)}
    runs = (("1MP chelsea 864x1152", one, rounds), ("9MP composite 3000x3000", nine, max(3, (rounds + 1) // 2)))
    for label, img, r in runs:
        n = round(RD_SHARE * ap.uniform(*img.shape[:2], 16).num_tokens)
        fns = {"quadtree": lambda: ap.quadtree(img, budget=n, **QT), "multiscale": lambda: ap.multiscale(img, n)}
        if HAS_DEFAULT:
            fns["default_budget"] = lambda: ap.default_layout(img, n)
        for f in fns.values():
            f()
        t: dict[str, list[float]] = {k: [] for k in fns}
        for _ in range(r):  # round-robin: load on the machine falls on both alike
            for k, f in fns.items():
                for _ in range(1 if k == "multiscale" else QT_CALLS):
                    t0 = time.perf_counter()
                    f()
                    t[k].append(time.perf_counter() - t0)
        ms = {k: statistics.median(v) * 1e3 for k, v in t.items()}
        out[label] = {"size": list(img.shape[:2]), "budget": n, "rounds": r, "quadtree_calls_per_round": QT_CALLS,
                      "median_ms": {k: round(v, 2) for k, v in ms.items()},
                      "multiscale_over_quadtree": round(ms["multiscale"] / ms["quadtree"], 1),
                      "multiscale_within_10x": ms["multiscale"] <= 10 * ms["quadtree"]}
        if HAS_DEFAULT:
            out[label]["default_over_quadtree"] = round(ms["default_budget"] / ms["quadtree"], 2)
            out[label]["default_within_10x"] = ms["default_budget"] <= 10 * ms["quadtree"]
        out[label]["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
        print(f"speed {label}: {out[label]['median_ms']} ratio {out[label]['multiscale_over_quadtree']} "
              f"load {out[label]['loadavg_1min_after']}",
              file=sys.stderr, flush=True)
    return out


def library_state() -> dict:
    """Which adapatch ran: its git commit and uncommitted library files, when it is a git checkout."""
    import subprocess
    root = Path(ap.__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "adapatch"],
                               capture_output=True, text=True, check=True).stdout.split("\n")
        return {"path": str(root), "commit": head, "uncommitted": [d.strip() for d in dirty if d.strip()]}
    except (OSError, subprocess.CalledProcessError):
        return {"path": str(root), "commit": None, "uncommitted": None}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--rounds", type=int, default=9, help="speed: round-robin rounds at 1 MP (half at 9 MP, >= 3)")
    p.add_argument("--seed", type=int, default=0, help="recorded only: nothing is drawn at random")
    p.add_argument("--note", default=None, help="recorded in the JSON (e.g. which library snapshot ran)")
    p.add_argument("--quick", action="store_true", help="5 images, one share, 3 speed rounds (a smoke run)")
    args = p.parse_args()
    np.random.seed(args.seed)
    names, shares, rounds = IMAGES, SHARES, args.rounds
    if args.quick:
        names, shares, rounds = ("astronaut", "text", "brick", "flat", "microaneurysms"), (0.35,), 3
    lib = library_state()  # before the run: others may commit while it runs
    t0 = time.perf_counter()
    ds = dataset(names, shares)
    rd = per_image_rd(names)
    sp = speed(rounds)
    result = {
        "command": "python benchmarks/bench_lambda.py " + " ".join(sys.argv[1:]),
        "date": dt.date.today().isoformat(),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "numpy": np.__version__,
                    "opencv": cv2.__version__},
        "seconds": None,
        "library": {**lib, "note": args.note},
        "lambda_unit": "8-bit levels^2 of MSE (channels averaged) over 256 px, per added token",
        "pooling": "pooled_psnr = 10 log10(1 / (sum_i SSE_i / sum_i 3 H_i W_i)), values in [0, 1]",
        "dataset": ds,
        "rd_30pct": rd,
        "speed": sp,
    }
    result["seconds"] = round(time.perf_counter() - t0, 1)
    text = json.dumps(result, indent=1)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({"command": result["command"], "seconds": result["seconds"],
                      "summary": {k: v["summary"] for k, v in ds["shares"].items()},
                      "speed": sp}, indent=1))


if __name__ == "__main__":
    main()
