"""A screenshot of every page of the app's navigation at 1440x900, for a person to look at.

Visits each page listed in ``app.py``'s ``PAGES`` (read from the file, so a new page is included),
waits until the script finished and the pictures loaded, asserts there is no exception and no
error element, and saves ``test-artifacts/e2e/pages/<page>.png`` (the 1440x900 viewport) and
``<page>_full.png`` (the whole page, 1440 px wide). The Demo page is also shot at every step, and a
dataset scene (an image that is not a bundled sample) is opened on Patch layout with its button.
"""

from __future__ import annotations

import re
from pathlib import Path

from adapatch.app_support import demo

ROOT = Path(__file__).resolve().parents[2]
IDLE = '[data-testid="stApp"][data-test-script-state="notRunning"]'
VIEWPORT = {"width": 1440, "height": 900}
EXPECTED = ["Patch layout", "Demo", "Saliency", "Token pruning", "Compare", "Efficiency", "Dataset", "Model", "Tune"]
SETTLED_JS = """() => {
  const main = document.querySelector('[data-testid="stMain"]');
  if (!main) return false;
  const imgs = [...main.querySelectorAll('img')];
  const spinning = main.querySelectorAll('[data-testid="stSpinner"], [data-testid="stSkeleton"]').length;
  return spinning === 0 && imgs.every(i => i.complete && i.naturalWidth > 0);
}"""


def navigation_pages() -> list[tuple[str, str]]:
    """``(title, url_path)`` of every ``st.Page`` in app.py's ``PAGES``, in navigation order."""
    text = (ROOT / "app.py").read_text()
    block = text[text.index("PAGES = ["):text.index("]", text.index("PAGES = ["))]
    pages = re.findall(r'st\.Page\([^)]*?title="([^"]+)"[^)]*?url_path="([^"]+)"', block)
    assert pages, "no st.Page(...) found in app.py's PAGES"
    return pages


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")


def _settle(page, timeout: float = 120_000) -> None:
    """The script finished (twice in a row, to let a rerun it triggered start) and the pictures loaded."""
    for _ in range(2):
        page.wait_for_timeout(300)
        page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_function(SETTLED_JS, timeout=timeout)
    page.wait_for_timeout(600)  # charts and images finish laying out
    page.wait_for_selector(IDLE, timeout=timeout)


def _check(page, where: str) -> None:
    assert page.locator('[data-testid="stException"]').count() == 0, f"a traceback reached the page ({where})"
    errors = page.locator('[data-testid="stAlertContentError"]')
    assert errors.count() == 0, f"error shown on {where}: {errors.first.inner_text()}"


CONTENT_HEIGHT_JS = """() => Math.max(document.documentElement.scrollHeight,
  ...[...document.querySelectorAll('[data-testid="stMain"], [data-testid="stMain"] *')]
     .filter(e => e.scrollHeight > e.clientHeight + 1 && getComputedStyle(e).overflowY !== 'visible')
     .map(e => e.scrollHeight + e.getBoundingClientRect().top))"""


def _shoot(page, path: Path) -> None:
    """``path``: the 1440x900 viewport as a user first sees it; ``<stem>_full.png``: the whole page (the app
    scrolls inside its main container, so the viewport is made as tall as the content for that one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    height = int(page.evaluate(CONTENT_HEIGHT_JS))
    if height > VIEWPORT["height"] + 8:
        page.set_viewport_size({"width": VIEWPORT["width"], "height": min(height + 40, 8000)})
        page.wait_for_timeout(500)
        page.wait_for_selector(IDLE, timeout=60_000)
        page.screenshot(path=str(path.with_name(f"{path.stem}_full.png")), full_page=True)
        page.set_viewport_size(VIEWPORT)
        page.wait_for_timeout(300)


def _wait_path(page, url_path: str) -> None:
    """Page switches are client-side (no load event): wait for the address to name the page (the default
    page, first in ``PAGES``, is also the bare root address)."""
    root_ok = url_path == navigation_pages()[0][1]
    page.wait_for_function("([p, root]) => { const path = location.pathname.replace(/\\/$/, '');"
                           " return path.endsWith('/' + p) || (root && path === ''); }", arg=[url_path, root_ok],
                           timeout=60_000)


def _go(page, title: str, url_path: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=title).first.click()
    _wait_path(page, url_path)
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=120_000)
    _settle(page)


def test_navigation_lists_every_page() -> None:
    assert [t for t, _ in navigation_pages()] == EXPECTED


def test_screenshot_of_every_page(page, app_url, artifacts):
    out = artifacts / "pages"
    page.set_viewport_size(VIEWPORT)
    page.goto(app_url)
    page.locator('[data-testid="stMain"] h1').first.wait_for(timeout=120_000)
    _settle(page)
    shot = []
    for title, url_path in navigation_pages():
        _go(page, title, url_path)
        _check(page, title)
        _shoot(page, out / f"{_slug(title)}.png")
        shot.append(title)
        if title == "Demo":  # every step of the story
            for i in range(len(demo.SCENES)):
                if i:
                    page.locator('[data-testid="stMain"]').get_by_role("button", name=re.compile("Next")).click()
                    page.locator('[data-testid="stMain"] h3').filter(has_text=f"{i + 1}. ").first.wait_for(
                        timeout=120_000)
                    _settle(page)
                _check(page, f"Demo step {i + 1}")
                _shoot(page, out / f"demo_step{i + 1}_{demo.SCENES[i].key}.png")
    assert shot == [t for t, _ in navigation_pages()]
    print("\nscreenshots:", ", ".join(str(p.relative_to(artifacts)) for p in sorted(out.glob("*.png"))))
    if page.console_errors:
        print("console errors:", page.console_errors)


def test_demo_dataset_scene_opens_on_patch_layout(page, app_url, artifacts):
    """A dataset scene's "Open in Patch layout" (its image is not a bundled sample, nothing uploaded): Patch
    layout opens with the dataset image selected in the sidebar and the step's token count."""
    index = next(i for i, s in enumerate(demo.SCENES) if s.image.startswith("dataset:"))
    sc = demo.SCENES[index]
    expected = demo.build_step(sc, "cpu").main.tokens
    page.set_viewport_size(VIEWPORT)
    page.goto(app_url)  # then the sidebar: a cold server answers a first deep link with a "Page not found" dialog
    main = page.locator('[data-testid="stMain"]')
    main.locator("h1").first.wait_for(timeout=120_000)
    _settle(page)
    _go(page, "Demo", "demo-story")
    main.get_by_text(f"{index + 1} · {sc.label}", exact=True).click()  # the step selector
    main.locator("h3").filter(has_text=f"{index + 1}. ").first.wait_for(timeout=120_000)
    _settle(page)
    open_button = main.get_by_role("button", name=re.compile("Open in Patch layout"))
    assert open_button.is_enabled()
    open_button.click()
    _wait_path(page, "patch-layout")
    main.get_by_role("heading", name="Patch layout").first.wait_for(timeout=120_000)
    _settle(page)
    _check(page, "Patch layout opened from the demo")
    file = sc.image.split(":", 1)[1]
    picked = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').filter(has_text="Image to explore")
    shown = picked.evaluate("e => e.textContent + ' ' + [...e.querySelectorAll('input')].map(i => i.value).join(' ')")
    assert file in shown  # the dataset image is the sidebar's current image
    assert main.get_by_text(f"{file} (bundled dataset)").count() >= 1  # and the page's
    tokens = main.locator('[data-testid="stMetric"]').filter(
        has=page.locator('[data-testid="stMetricLabel"]', has_text=re.compile(r"^\s*Tokens\s*$")))
    assert tokens.locator('[data-testid="stMetricValue"]').inner_text().strip().replace(",", "") == str(expected)
    _shoot(page, artifacts / "pages" / f"demo_opened_{sc.key}.png")
    assert not page.real_errors(), page.real_errors()
