"""The Patch layout page's latency: a slider move at 1 MP, on a 4000x800 panorama and on a 3000x3000
upload (computed at 2048x2048, the app's compute limit), its parts, the quality-chart pass, and
(optional) a cold first visit and slider moves in a real headless Chromium. Prints JSON.

    python benchmarks/bench_app.py [--repeats 9] [--browser] [--cold 3] [--images 1024x1024,3000x3000]

* ``apptest``: per image and strategy (``multiscale``: the page's default, fast search, ``scales=1``;
  ``quadtree``: distortion, picked on the page) and mode (``budget``: the budget slider;
  ``threshold``: the lambda slider, over the quadtree's curve or multiscale's hull):
  ``rerun_ms``, a slider move through ``streamlit.testing.v1.AppTest`` (the whole script reruns,
  sidebar, PSNR/SSIM and charts included, so this bounds the fragment rerun from above), median of
  ``--repeats`` moves to values not seen before (no cache hits); ``cached_rerun_ms``: the same script
  with every result cached (the floor: Streamlit, widgets, figures); ``layout_only_ms``: the
  library's layout alone for the same settings (``ap.default_layout`` / ``ap.quadtree`` /
  ``RDHull.layout``), the baseline measured in the same run; ``switch_ms``: the rerun that turned the
  budget off (multiscale: it builds the image's hull, once per image).
* ``parts_*``: the page's compute path called directly (layout, overlay JPEG, fidelity, the
  fidelity of before: torch reconstruction + scikit-image SSIM, the quality pass), and the budget
  step of the default strategy (``default_step_ms``: ``ap.default_layout`` + the overlay JPEG, what
  comes before the token number and the picture; PSNR/SSIM come after them).
* ``--browser``: ``streamlit run app.py`` on a free port and Debian's Chromium (as ``tests/e2e``):
  keydown to new token number / new overlay loaded / rerun done, for the threshold slider at 1 MP,
  the budget slider at 1 MP, on the panorama and on the 3000x3000 upload (the default strategy; first
  press warms caches, left out of the median).
* ``--cold N``: N fresh servers, each visited twice: title, token number, overlay and idle times of
  the first (cold) and second visit.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import adapatch as ap  # noqa: E402
from adapatch.budgets import relative_budget  # noqa: E402
from adapatch.samples import load_sample  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(1000 * statistics.median(times), 1)


def images() -> dict[str, np.ndarray]:
    one_mp = cv2.resize(load_sample("astronaut"), (1024, 1024), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    tiles = [cv2.resize(load_sample(n), (800, 800), interpolation=cv2.INTER_AREA)
             for n in ("astronaut", "coffee", "rocket", "page", "diagram")]
    names = ("astronaut", "coffee", "rocket", "page", "diagram", "coffee", "rocket", "astronaut", "page")
    big = [cv2.resize(load_sample(n), (1000, 1000), interpolation=cv2.INTER_CUBIC) for n in names]
    mosaic = np.concatenate([np.concatenate(big[r * 3:r * 3 + 3], axis=1) for r in range(3)], axis=0)
    return {"1024x1024": one_mp.astype(np.float32), "4000x800": np.concatenate(tiles, axis=1).clip(0, 1),
            "3000x3000": mosaic.clip(0, 1).astype(np.float32)}


def computed(img: np.ndarray) -> np.ndarray:
    """The image as the app computes on it: the PNG upload decoded, downscaled to the compute limit."""
    from adapatch.app_support.images import fit_for_compute
    return fit_for_compute(ap.load_image(png_bytes(img)))[0]


def png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


# ------------------------------------------------------------------ AppTest reruns
def apptest_reruns(name: str, img: np.ndarray, repeats: int, strategy: str = "multiscale") -> dict:
    from streamlit.testing.v1 import AppTest

    from adapatch.threshold_scale import threshold_scale

    data = png_bytes(img)
    loaded = computed(img)
    h, w = loaded.shape[:2]
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.run()
    at.file_uploader(key="uploader").set_value((f"{name}.png", data, "image/png")).run()
    assert not at.exception, [e.value for e in at.exception]
    if strategy != "multiscale":  # the page's default
        at.selectbox(key="w_strategy").set_value(strategy).run()
    out: dict = {"computed_at": f"{w}x{h}"}
    for mode in ("budget", "threshold"):
        switch = None
        if mode == "threshold":
            t0 = time.perf_counter()
            at.toggle(key="w_use_budget").set_value(False).run()  # multiscale: builds the image's hull
            switch = round(1000 * (time.perf_counter() - t0), 1)
            if strategy == "multiscale":
                hull = ap.rd_hull(loaded)
                curve, scale = hull, threshold_scale(hull)
            else:
                curve = ap.threshold_curve(loaded, min_size=16, max_size=64, importance="distortion")
                scale = threshold_scale(curve)
            values = [float(scale.threshold_at(p)) for p in range(40, 40 + 10 * repeats, 10)]  # log steps
        else:
            values = [0.20 + 0.01 * i for i in range(repeats)]
        times = []
        for v in values:
            t0 = time.perf_counter()
            if mode == "budget":
                at.slider(key="w_budget_fraction").set_value(v).run()
            else:
                at.select_slider(key="w_threshold").set_value(v).run()
            times.append(time.perf_counter() - t0)
        assert not at.exception and not at.error, [e.value for e in at.exception] + [e.value for e in at.error]
        cached = []
        for _ in range(max(3, repeats // 2)):
            t0 = time.perf_counter()
            at.run()
            cached.append(time.perf_counter() - t0)
        v0 = values[0]
        if mode == "budget" and strategy == "multiscale":
            layout_only = _median_ms(lambda v0=v0: ap.default_layout(loaded, relative_budget(h, w, fraction=v0)),
                                     repeats)
        elif mode == "budget":
            layout_only = _median_ms(lambda v0=v0: ap.quadtree(loaded, min_size=16, max_size=64,
                                                               budget=relative_budget(h, w, fraction=v0)), repeats)
        elif strategy == "multiscale":
            layout_only = _median_ms(lambda v0=v0, hull=curve: hull.layout(v0), repeats)  # from the hull
        else:
            layout_only = _median_ms(lambda v0=v0: ap.quadtree(loaded, threshold=v0, min_size=16, max_size=64,
                                                               importance="distortion"), repeats)
        out[mode] = {"rerun_ms": round(1000 * statistics.median(times), 1),
                     "rerun_all_ms": [round(1000 * t) for t in times],
                     "cached_rerun_ms": round(1000 * statistics.median(cached), 1),
                     "layout_only_ms": layout_only}
        if switch is not None:
            out[mode]["switch_ms"] = switch
    return out


# ------------------------------------------------------------------ the compute path, directly
def parts(img: np.ndarray, repeats: int) -> dict:
    from skimage.metrics import structural_similarity

    from adapatch import render
    from adapatch.app_support.compute import jpeg_bytes
    from adapatch.app_support.images import to_display
    from adapatch.fidelity import luminance
    from adapatch.quality import SSIM_POINTS, quadtree_quality, uniform_quality

    img = computed(img)
    h, w = img.shape[:2]
    lay = ap.quadtree(img, min_size=16, max_size=64, budget=relative_budget(h, w, fraction=0.3))
    base = to_display(img, 1024)
    ap.fidelity(img, lay, device="cpu")  # kernels loaded
    fractions = iter(np.linspace(0.2, 0.6, 1000))  # a new budget every step (no cache in the library anyway)

    def default_step() -> None:  # a budget step of the page's default: the layout, then the overlay JPEG
        d = ap.default_layout(img, relative_budget(h, w, fraction=float(next(fractions))))
        jpeg_bytes(render.layout_overlay(base, d, max_side=1024))

    t0 = time.perf_counter()
    hull = ap.rd_hull(img)
    hull_s = time.perf_counter() - t0
    lams = iter(np.geomspace(max(float(hull.slopes[-1]), 1e-3), float(hull.slopes[0]), 1000))

    def before() -> None:  # the fidelity of before: torch reconstruction, scikit-image SSIM
        rec = ap.reconstruct(img, lay, device="cpu")
        structural_similarity(luminance(img), luminance(rec), data_range=1.0, win_size=7)

    t0 = time.perf_counter()
    quadtree_quality(img, 16, 64, ssim_points=SSIM_POINTS)
    uniform_quality(img, ssim_points=SSIM_POINTS)
    quality_s = time.perf_counter() - t0
    return {
        "computed_at": f"{w}x{h}",
        "default_layout_ms": _median_ms(lambda: ap.default_layout(img, relative_budget(h, w, fraction=0.3)), repeats),
        "default_step_ms": _median_ms(default_step, repeats),
        "thorough_layout_ms": _median_ms(lambda: ap.layout_for_budget(img, "multiscale",
                                                                      relative_budget(h, w, fraction=0.3), scales=6),
                                         max(1, repeats // 3)),
        "hull_build_ms": round(1000 * hull_s, 1),
        "hull_layout_ms": _median_ms(lambda: hull.layout(float(next(lams))), repeats),
        "layout_ms": _median_ms(lambda: ap.quadtree(img, min_size=16, max_size=64,
                                                    budget=relative_budget(h, w, fraction=0.3)), repeats),
        "overlay_jpeg_ms": _median_ms(lambda: jpeg_bytes(render.layout_overlay(base, lay, max_side=1024)), repeats),
        "overlay_png_ms": _median_ms(lambda: render.to_png_bytes(render.layout_overlay(base, lay, max_side=1024)),
                                     repeats),
        "fidelity_ms": _median_ms(lambda: ap.fidelity(img, lay, device="cpu"), repeats),
        "fidelity_before_ms": _median_ms(before, max(3, repeats // 3)),
        "quality_pass_ms": round(1000 * quality_s, 1),
    }


# ------------------------------------------------------------------ real browser
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``streamlit run app.py`` as the e2e tests start it (headless, loopback, free port)."""

    def __enter__(self) -> str:
        port = _free_port()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
             "--server.fileWatcherType", "none"], cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        return url
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("streamlit did not become healthy within 60 s")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
MEASURE_JS = (ROOT / "tests" / "e2e" / "test_app_browser.py").read_text().split('MEASURE_JS = """', 1)[1].split('"""', 1)[0]


def _visit(page, url: str) -> dict:
    t0 = time.monotonic()
    page.goto(url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=120_000)
    t1 = time.monotonic()
    page.locator('[data-testid="stMetricValue"]').first.wait_for(timeout=120_000)
    t2 = time.monotonic()
    page.locator('[data-testid="stMain"] [data-testid="stImage"] img').first.wait_for(timeout=120_000)
    t3 = time.monotonic()
    page.wait_for_selector(IDLE, timeout=120_000)
    t4 = time.monotonic()
    return {"title_s": round(t1 - t0, 2), "tokens_s": round(t2 - t0, 2), "overlay_s": round(t3 - t0, 2),
            "idle_s": round(t4 - t0, 2)}


def _launch(p):
    return p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                             args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])


def cold_visits(n: int) -> dict:
    from playwright.sync_api import sync_playwright

    runs = []
    with sync_playwright() as p:
        browser = _launch(p)
        for _ in range(n):
            with Server() as url:
                visit = {}
                for which in ("cold", "warm"):
                    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
                    visit[which] = _visit(ctx.new_page(), url)
                    ctx.close()
                runs.append(visit)
        browser.close()
    med = {w: {k: round(statistics.median(r[w][k] for r in runs), 2) for k in runs[0][w]} for w in ("cold", "warm")}
    return {"runs": runs, "median": med,
            "note": "seconds from page.goto: page title (first paint), token number, overlay <img>, script idle"}


def _press(page, label: str, presses: int) -> dict:
    thumb = page.locator('[data-testid="stSlider"]').filter(has_text=label).get_by_role("slider")
    thumb.focus()
    tok, img, idle = [], [], []
    for _ in range(presses):
        page.evaluate(MEASURE_JS)
        page.keyboard.press("ArrowRight")
        page.wait_for_function("() => window.__lat && window.__lat.done", timeout=60_000)
        lat = page.evaluate("() => window.__lat")
        tok.append(lat["tTokens"] - lat["t0"])
        img.append(lat["tImage"] - lat["t0"])
        idle.append(lat["tIdle"] - lat["t0"])
        page.wait_for_timeout(150)
        page.wait_for_selector(IDLE, timeout=60_000)
    return {"tokens_ms": round(statistics.median(tok[1:]), 1), "overlay_ms": round(statistics.median(img[1:]), 1),
            "rerun_done_ms": round(statistics.median(idle[1:]), 1), "overlay_all_ms": [round(x) for x in img]}


def browser_sliders(imgs: dict[str, np.ndarray], presses: int) -> dict:
    from playwright.sync_api import sync_playwright

    out = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p, Server() as url:
        browser = _launch(p)
        for name, label, budget_mode in (("1024x1024", "Importance threshold", False),
                                         ("1024x1024", "Budget (% of the 16 px grid)", True),
                                         ("4000x800", "Budget (% of the 16 px grid)", True),
                                         ("3000x3000", "Budget (% of the 16 px grid)", True)):
            if name not in imgs:
                continue
            path = Path(tmp) / f"{name}.png"
            path.write_bytes(png_bytes(imgs[name]))
            ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
            page = ctx.new_page()
            _visit(page, url)
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(path))
            page.locator('[data-testid="stSidebar"]').get_by_text(name.replace("x", "x")).first.wait_for(timeout=120_000)
            page.wait_for_timeout(300)
            page.wait_for_selector(IDLE, timeout=120_000)
            if not budget_mode:
                page.locator('[data-testid="stMain"]').get_by_text("Token budget", exact=True).click()
                page.wait_for_timeout(300)
                page.wait_for_selector(IDLE, timeout=120_000)
            out[f"{name} {label}"] = _press(page, label, presses)
            ctx.close()
        browser.close()
    out["note"] = ("keydown to new token number / new overlay image loaded / script idle (fidelity and charts "
                   "included); medians without the first press")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--browser", action="store_true", help="slider latency in a real headless Chromium")
    parser.add_argument("--cold", type=int, default=0, help="cold first visits on N fresh servers (Chromium)")
    parser.add_argument("--presses", type=int, default=7)
    parser.add_argument("--no-parts", action="store_true", help="skip parts_* (e.g. on an older checkout)")
    parser.add_argument("--no-apptest", action="store_true", help="skip the AppTest reruns")
    parser.add_argument("--images", default="1024x1024,4000x800,3000x3000", help="comma-separated image names")
    parser.add_argument("--strategies", default="multiscale,quadtree", help="AppTest strategies (multiscale: default)")
    args = parser.parse_args()
    imgs = {k: v for k, v in images().items() if k in args.images.split(",")}
    out: dict = {"environment": {"machine": platform.machine(), "cpus": os.cpu_count(),
                                 "load_avg": [round(x, 2) for x in os.getloadavg()], "python": platform.python_version()},
                 "targets": {"fragment_rerun_1mp_ms": 300, "panorama_budget_overlay_ms": 400,
                             "cold_first_paint_s": 3.0, "quality_pass_1mp_ms": 1000,
                             "default_budget_step_3000x3000_ms": 300}}
    if not args.no_parts:
        for name, img in imgs.items():
            out[f"parts_{name}"] = parts(img, args.repeats)
    if not args.no_apptest:
        out["apptest"] = {f"{name} {strategy}": apptest_reruns(name, img, args.repeats, strategy)
                          for name, img in imgs.items() for strategy in args.strategies.split(",")}
    have_browser = CHROMIUM.exists()
    if args.browser or args.cold:
        try:
            import playwright  # noqa: F401
        except ImportError:
            have_browser = False
    if args.browser:
        out["browser"] = browser_sliders(imgs, args.presses) if have_browser else "skipped: no Chromium/playwright"
    if args.cold:
        out["cold_first_visit"] = cold_visits(args.cold) if have_browser else "skipped: no Chromium/playwright"
    out["environment"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
