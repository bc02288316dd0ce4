"""End-to-end fixtures: ``streamlit run app.py`` on a free loopback port, Debian's Chromium via Playwright.

Tests here are marked ``e2e``. They need ``/usr/bin/chromium`` (``apt-get install -y chromium``;
CI installs it) and skip with that reason when it is missing. Screenshots and the measured latency
go to ``test-artifacts/e2e/`` (gitignored).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "e2e: end-to-end tests in a real browser (Playwright + Debian chromium)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.e2e)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def app_url(artifacts: Path):
    """The app served by a real ``streamlit run`` (headless, loopback, free port)."""
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium (/usr/bin/chromium) is missing: apt-get install -y chromium")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    port = _free_port()
    log = open(artifacts / "streamlit.log", "w")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.headless", "true",
         "--server.port", str(port), "--server.address", "127.0.0.1", "--browser.gatherUsageStats", "false",
         "--server.fileWatcherType", "none"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}; see {artifacts / 'streamlit.log'}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.read().decode().strip() == "ok":
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("streamlit did not become healthy within 60 s")
            time.sleep(0.25)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="session")
def browser(app_url: str):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)


MEDIA_FILE = re.compile(r"/media/[0-9a-f]+\.\w+")
GENERIC_404 = "Failed to load resource: the server responded with a status of 404"


def real_errors(pg) -> list[str]:
    """The page's console errors, less Streamlit's superseded-media race, plus any image still broken.

    When a rerun replaces an image while the browser is still fetching the old one, Streamlit has
    already dropped the old media file: a 404 on ``/media/<hash>`` (and a "Failed to load resource"
    and an "Image source error" line for it) that the user never sees, since the new image replaces
    it. Such entries are dropped when no ``<img>`` on the page points at that file any more. Every
    other error counts, and so does any image on the page that failed to load.
    """
    shown = pg.eval_on_selector_all("img", "els => els.map(e => e.src)")
    broken = pg.eval_on_selector_all("img", "els => els.filter(e => e.complete && e.naturalWidth === 0 "
                                             "&& e.src).map(e => e.src)")
    out, dropped = [], 0
    for e in pg.console_errors:
        m = MEDIA_FILE.search(e)
        if m and not any(m.group(0) in src for src in shown):
            dropped += e.startswith("HTTP 404")
            continue
        out.append(e)
    while dropped and any(e.startswith(GENERIC_404) for e in out):
        out.remove(next(e for e in out if e.startswith(GENERIC_404)))
        dropped -= 1
    return out + [f"broken image on the page: {src}" for src in broken]


@pytest.fixture
def page(browser, app_url: str, request, artifacts: Path):
    """A fresh browser page (own session) with console errors and page errors collected."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
    pg = context.new_page()
    pg.console_errors = []  # type: ignore[attr-defined]
    pg.on("console", lambda m: m.type == "error" and pg.console_errors.append(m.text))
    pg.on("pageerror", lambda e: pg.console_errors.append(f"pageerror: {e}"))
    pg.on("requestfailed", lambda r: pg.console_errors.append(f"request failed: {r.url} {r.failure}"))
    pg.on("response", lambda r: r.status >= 400 and pg.console_errors.append(f"HTTP {r.status}: {r.url}"))
    pg.real_errors = lambda: real_errors(pg)  # type: ignore[attr-defined]
    yield pg
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:  # what the page looked like when the test failed
        try:
            pg.screenshot(path=str(artifacts / f"FAILED_{request.node.name}.png"), full_page=True)
        except Exception:  # noqa: BLE001 - best effort
            pass
    context.close()
