"""Dataset calibration at scale: engine throughput against decoding alone, flat memory, Ray's overhead.

    python benchmarks/bench_dataset.py [--images 2000] [--stream 20000] [--workers 2] [--ray] [--out FILE]

* **Throughput.** ``--images`` JPEGs of ImageNet-like size (500x375, quality 90, crops of the
  scikit-image and scikit-learn photos, seeded) are written to a temporary folder. In the same
  run, the same local process pool (same workers and chunking) only *decodes* them (PIL to an RGB
  array: the floor any calibration pays), then the calibration engine runs on them (decode + path
  importances + the store), round-robin ``--rounds`` times. Reported: images/s of both, their
  ratios and the median ratio (target >= 0.85), and the in-process milliseconds per image of each
  step (median over 200 images).
* **Memory.** ``adapatch.dataset.scan`` streams a list of ``--stream`` paths (the folder's files
  repeated) while a sampler records the RSS of the driver and its workers every 50 ms; reported:
  the RSS after 5% of the images and the peak after that (target: growth <= 300 MB); then, on that
  store, the seconds to solve each kind of target and to build the dataset curve.
* **Ray** (``--ray``): the same folder with ``engine="ray"`` on a local Ray with ``--workers`` CPUs;
  reported: ``ray.init`` seconds, the first run (Ray's workers import adapatch), a second run and
  its images/s against the local engine's, and whether the reports are identical.

Prints one JSON object (and writes it to ``--out``).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from adapatch.dataset import Targets, calibrate, dataset_curve, scan, solve  # noqa: E402
from adapatch.dataset.engines import _context, default_workers  # noqa: E402
from adapatch.dataset.records import CurveSettings  # noqa: E402

SIZE = (500, 375)


def photos() -> list[np.ndarray]:
    import skimage.data as sd
    from sklearn.datasets import load_sample_images
    out = [sd.astronaut(), sd.chelsea(), sd.coffee(), sd.rocket(), sd.immunohistochemistry(), sd.hubble_deep_field(),
           np.stack([sd.camera()] * 3, -1), np.stack([sd.coins()] * 3, -1), np.stack([sd.text()] * 3, -1),
           np.stack([sd.page()] * 3, -1), np.stack([sd.moon()] * 3, -1), sd.retina()]
    out += list(load_sample_images().images)
    return [np.ascontiguousarray(p[..., :3]) for p in out]


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` 500x375 JPEGs: random crops (40-100% of each side) of the photos, resized, some flipped."""
    rng = np.random.default_rng(seed)
    srcs = photos()
    paths = []
    for i in range(n):
        p = srcs[i % len(srcs)]
        h, w = p.shape[:2]
        ch, cw = int(h * rng.uniform(0.4, 1.0)), int(w * rng.uniform(0.4, 1.0))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        im = Image.fromarray(p[y:y + ch, x:x + cw]).resize(SIZE, Image.BILINEAR)
        if rng.random() < 0.5:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        path = folder / f"img_{i:05d}.jpg"
        im.save(path, quality=90)
        paths.append(path)
    return paths


def decode(data: bytes) -> np.ndarray:
    """The floor: PIL decodes the file to an RGB array (no copy for RGB files, no checks)."""
    im = Image.open(io.BytesIO(data))
    im.load()
    return np.asarray(im if im.mode == "RGB" else im.convert("RGB"))


def _decode(path: str) -> tuple[int, int]:
    with open(path, "rb") as f:
        return decode(f.read()).shape[:2]


def decode_throughput(paths: list[Path], workers: int) -> float:
    """Images/s of decoding alone on the same pool as the local engine."""
    chunk = max(1, min(32, len(paths) // (workers * 8)))
    t0 = time.perf_counter()
    with _context().Pool(workers) as pool:
        for _ in pool.imap(_decode, [str(p) for p in paths], chunksize=chunk):
            pass
    return len(paths) / (time.perf_counter() - t0)


def engine_throughput(folder: Path, n: int, workers: int, engine: str = "local") -> tuple[float, object]:
    t0 = time.perf_counter()
    store = scan(str(folder), CurveSettings(), engine=engine, workers=workers)
    dt = time.perf_counter() - t0
    return n / dt, store


def in_process_breakdown(paths: list[Path]) -> dict:
    """Median milliseconds per image, in this process: decode alone, decode to 8-bit as calibration
    does (``load_rgb8``), and the whole per-image step (decode + path importances)."""
    from adapatch.dataset.records import image_record
    from adapatch.image_io import load_rgb8
    datas = [p.read_bytes() for p in paths]
    settings = CurveSettings()

    def per_image(fn) -> float:
        ts = []
        for d in datas:
            t0 = time.perf_counter()
            fn(d)
            ts.append(time.perf_counter() - t0)
        return round(float(np.median(ts)) * 1e3, 3)

    per_image(lambda d: image_record(d, settings))  # warm
    return {"decode": per_image(decode),
            "load_rgb8": per_image(load_rgb8), "calibration_step": per_image(lambda d: image_record(d, settings))}


class RssSampler:
    """RSS (MB) of this process and its children, sampled every ``period`` s."""

    def __init__(self, period: float = 0.05) -> None:
        self.period, self.samples, self._stop = period, [], threading.Event()

    def _rss(self) -> float:
        total = 0
        pids = [os.getpid()]
        try:
            kids = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").read_text().split()
            pids += [int(k) for k in kids]
        except OSError:
            pass
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            except OSError:
                pass
        return total / 1024

    def run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self._rss()))
            time.sleep(self.period)

    def __enter__(self) -> "RssSampler":
        self._t = threading.Thread(target=self.run, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap_ = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap_.add_argument("--images", type=int, default=2000)
    ap_.add_argument("--stream", type=int, default=20000)
    ap_.add_argument("--workers", type=int, default=default_workers())
    ap_.add_argument("--ray", action="store_true")
    ap_.add_argument("--rounds", type=int, default=3, help="round-robin repeats of the throughput pair")
    ap_.add_argument("--out", type=Path)
    args = ap_.parse_args()
    out: dict = {"machine": {"cpus": os.cpu_count(), "workers": args.workers, "python": platform.python_version()},
                 "images": args.images, "image_size": list(SIZE)}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        folder.mkdir()
        paths = make_jpegs(folder, args.images)
        out["mean_file_kb"] = round(float(np.mean([p.stat().st_size for p in paths])) / 1024, 1)
        engine_throughput(folder, args.images, args.workers)[1].close()  # warm: page cache, numba cache
        decodes, rates = [], []
        for _ in range(args.rounds):  # round-robin: both see the same machine state
            decodes.append(decode_throughput(paths, args.workers))
            rate, store = engine_throughput(folder, args.images, args.workers)
            store.close()
            rates.append(rate)
        ratios = [r / d for r, d in zip(rates, decodes)]
        out["throughput"] = {"decode_only_img_s": [round(d, 1) for d in decodes],
                             "calibration_img_s": [round(r, 1) for r in rates],
                             "ratio_vs_decode": [round(x, 3) for x in ratios],
                             "median_ratio": round(float(np.median(ratios)), 3), "target_ratio": 0.85,
                             "in_process_ms_per_image": in_process_breakdown(paths[:200])}

        if args.stream:
            listing = [str(paths[i % len(paths)]) for i in range(args.stream)]
            with RssSampler() as rss:
                t0 = time.perf_counter()
                st = scan(listing, CurveSettings(), workers=args.workers)
                dt = time.perf_counter() - t0
            solve_s = {}
            for targets in (Targets(mean_tokens=150), Targets(tokens_per_mp=800), Targets(flops_ratio=0.4),
                            Targets(p95_tokens=300)):
                t0 = time.perf_counter()
                solve(st, targets)
                solve_s[next(iter(targets.to_dict()))] = round(time.perf_counter() - t0, 2)
            t0 = time.perf_counter()
            dataset_curve(st)
            curve_s = round(time.perf_counter() - t0, 2)
            spill_mb = round(st.n_values * 8 / 1e6, 1)
            st.close()
            xs = rss.samples
            start = xs[0][0]
            warm = [r for t, r in xs if t - start > 0.05 * dt] or [xs[-1][1]]
            out["memory"] = {"images": args.stream, "seconds": round(dt, 1), "rss_mb_at_5pct": round(warm[0], 1),
                             "rss_mb_peak_after": round(max(warm), 1),
                             "growth_mb": round(max(warm) - warm[0], 1), "target_growth_mb": 300,
                             "note": "driver + worker processes; the list repeats the folder's files",
                             "spill_mb": spill_mb, "solve_seconds": solve_s, "curve_seconds": curve_s}

        if args.ray:
            t0 = time.perf_counter()
            with calibrate(str(folder), Targets(mean_tokens=150), workers=args.workers) as a:
                ra = a.report()
            local_s = time.perf_counter() - t0
            from adapatch.dataset.engines import start_ray
            t0 = time.perf_counter()
            start_ray(None, args.workers)
            startup = time.perf_counter() - t0
            t0 = time.perf_counter()
            with calibrate(str(folder), Targets(mean_tokens=150), workers=args.workers, engine="ray") as b:
                rb = b.report()
            ray_first = time.perf_counter() - t0  # Ray's workers import adapatch and load numba's cache
            t0 = time.perf_counter()
            with calibrate(str(folder), Targets(mean_tokens=150), workers=args.workers, engine="ray") as b:
                rb = b.report()
            ray_s = time.perf_counter() - t0
            same = {k: ra[k] == rb[k] for k in ra if k not in ("engine", "seconds")}
            out["ray"] = {"local_seconds": round(local_s, 2), "ray_seconds": round(ray_s, 2),
                          "ray_startup_seconds": round(startup, 2), "ray_first_run_seconds": round(ray_first, 2),
                          "ray_img_s": round(args.images / ray_s, 1), "local_img_s": round(args.images / local_s, 1),
                          "overhead_ratio": round(ray_s / local_s, 2),
                          "identical_report": all(same.values()), "threshold": ra["threshold"],
                          "differing_keys": [k for k, v in same.items() if not v]}
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
