"""Server memory over 200 slider-driven reruns in one browser session (issue 5).

Starts ``streamlit run app.py`` headless on a free loopback port, opens it in Debian's Chromium
(Playwright), turns the token budget off and presses ArrowRight on the importance threshold 200
times (200 distinct settings, so every rerun computes and caches something new), sampling the
server's resident memory (VmRSS) every 20 reruns. Prints JSON. Caches are bounded by entry
counts (``st.cache_data(max_entries=...)``), so memory should plateau.

    python benchmarks/bench_memory.py [--reruns 200]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    ap_ = argparse.ArgumentParser()
    ap_.add_argument("--reruns", type=int, default=200)
    args = ap_.parse_args()
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless",
                             "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             "--server.fileWatcherType", "none"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.25)
        samples = []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                  args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            page = b.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=120_000)
            page.wait_for_selector(IDLE, timeout=120_000)
            page.locator('[data-testid="stMain"]').get_by_text("Token budget", exact=True).click()
            page.wait_for_timeout(200)
            page.wait_for_selector(IDLE, timeout=120_000)
            thumb = page.locator('[data-testid="stSlider"]').filter(has_text="Importance threshold").get_by_role("slider")
            thumb.focus()
            page.keyboard.press("Home")
            page.wait_for_timeout(200)
            page.wait_for_selector(IDLE, timeout=120_000)
            samples.append({"reruns": 0, "rss_mb": round(rss_mb(proc.pid), 1)})
            t0 = time.perf_counter()
            for i in range(1, args.reruns + 1):
                page.keyboard.press("ArrowRight")
                page.wait_for_timeout(30)
                page.wait_for_selector(IDLE, timeout=120_000)
                if i % 20 == 0:
                    samples.append({"reruns": i, "rss_mb": round(rss_mb(proc.pid), 1)})
            elapsed = time.perf_counter() - t0
            errors = page.locator('[data-testid="stException"]').count()
            b.close()
        first_half = max(s["rss_mb"] for s in samples if s["reruns"] <= args.reruns // 2)
        out = {"reruns": args.reruns, "seconds": round(elapsed, 1), "samples": samples,
               "rss_start_mb": samples[0]["rss_mb"], "rss_end_mb": samples[-1]["rss_mb"],
               "growth_second_half_mb": round(samples[-1]["rss_mb"] - first_half, 1), "exceptions_on_page": errors}
        print(json.dumps(out, indent=2))
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
