"""The Tune page in a real browser: a long run on held-out digits stops on Stop (and says how far it
got, keeping nothing); a run on the bundled digit samples draws the Pareto chart; clicking a point
of the front picks that configuration, and "Open on Patch layout" lands there with its settings.

Screenshots for a human to look at: ``test-artifacts/e2e/tune_result.png`` (the chart, table and
held-out score), ``tune_hover.png`` (a point's hover) and ``tune_patch_layout.png`` (the opened
configuration).
"""

from __future__ import annotations

import re

from tests.e2e.test_app_browser import IDLE, _no_exception, _wait_idle


def _goto_tune(page, app_url: str) -> None:
    page.goto(app_url)
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=90_000)
    _wait_idle(page, timeout=90_000)
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name="Tune").click()
    page.get_by_role("heading", name="Tune for the task").first.wait_for(timeout=90_000)
    _wait_idle(page, timeout=90_000)
    assert "/tune-for-task" in page.url


def _shot(page, path) -> None:
    page.set_viewport_size({"width": 1440, "height": 2200})
    page.wait_for_timeout(600)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size({"width": 1440, "height": 1000})


def _keep_only(page, main, label: str, values: list[str]) -> None:
    """Remove every tag of the multiselect ``label`` that is not in ``values`` (its "Remove x" buttons)."""
    box = main.locator('[data-testid="stMultiSelect"]').filter(has_text=label)

    def tags() -> list[str]:
        return box.locator("[data-tag]").locator("visible=true").evaluate_all(
            "els => els.map(e => e.getAttribute('aria-label'))")

    for _ in range(12):  # one at a time: a click during the rerun of the previous one may be lost
        extra = [t for t in tags() if t not in values]
        if not extra:
            break
        box.get_by_role("button", name=f"Remove {extra[0]}", exact=True).locator("visible=true").first.click()
        _wait_idle(page)
    assert sorted(set(tags())) == sorted(values)


def _centre(el) -> tuple[float, float]:
    """The centre of ``el`` on the page (Plotly's drag layer covers its points, so locator actions on a
    point are refused: the mouse goes there instead)."""
    el.scroll_into_view_if_needed()
    b = el.bounding_box()
    return b["x"] + b["width"] / 2, b["y"] + b["height"] / 2


def test_tune_stop_run_chart_and_open(page, app_url, artifacts):
    _goto_tune(page, app_url)
    _no_exception(page)
    main = page.locator('[data-testid="stMain"]')

    # a long run (500 held-out digits, every strategy) ends on Stop, within a configuration
    main.get_by_text("Held-out digits of the task (labelled)").click()
    _wait_idle(page)
    thumb = main.locator('[data-testid="stSlider"]').filter(has_text="Held-out digits").get_by_role("slider")
    thumb.focus()
    page.keyboard.press("End")
    _wait_idle(page)
    main.get_by_role("button", name=re.compile("Run")).click()
    progress = main.locator('[data-testid="stProgress"]')
    progress.get_by_text(re.compile(r"configurations scored")).first.wait_for(timeout=120_000)
    main.get_by_role("button", name=re.compile("Stop")).click()
    _wait_idle(page, timeout=60_000)
    warning = main.get_by_text(re.compile(r"The run stopped after \d+ of \d+ configurations"))
    warning.wait_for(timeout=30_000)
    assert main.locator('[data-testid="stPlotlyChart"]').count() == 0  # nothing of it kept

    # a run on the 8 bundled digit samples (uniform grids and std quadtrees: a short search on a busy
    # machine): the chart, the table, the held-out score
    main.get_by_text("Bundled digit samples (8, labelled)").click()
    _wait_idle(page)
    main.get_by_text("Search space").click()
    _keep_only(page, main, "Strategies", ["uniform", "quadtree"])
    _keep_only(page, main, "Quadtree importances", ["std"])
    main.get_by_role("button", name=re.compile("Run")).click()
    chart = main.locator('[data-testid="stPlotlyChart"]')
    chart.first.wait_for(timeout=120_000)
    _wait_idle(page, timeout=60_000)
    _no_exception(page)
    chart.locator(".main-svg").first.wait_for(state="visible", timeout=30_000)
    assert main.get_by_text(re.compile(r"Re-scored on the \d+ held-out image")).count() == 1
    main.locator('[data-testid="stDataFrame"]').first.wait_for(timeout=30_000)
    assert main.get_by_role("button", name=re.compile("Stop")).count() == 0  # gone once the run ends
    _shot(page, artifacts / "tune_result.png")

    # hover a front point: its configuration shows
    traces = chart.locator(".scatterlayer .trace")
    front = traces.nth(1).locator("path.point")
    n = front.count()
    assert n >= 1
    x, y = _centre(front.nth(0))
    page.mouse.move(x - 8, y)
    page.mouse.move(x, y, steps=4)
    hover = page.locator(".hoverlayer .hovertext")
    hover.first.wait_for(timeout=10_000)
    said = hover.first.text_content()
    assert "strategy" in said and "tokens" in said and "MACs ratio" in said, said
    page.screenshot(path=str(artifacts / "tune_hover.png"))

    # click front points until one that Patch layout can show is picked (uniform grids are on Compare)
    box = main.locator('[data-testid="stSelectbox"]').filter(has_text="Configuration (or click a point)")
    picked = None
    for i in range(n):
        front = chart.locator(".scatterlayer .trace").nth(1).locator("path.point")
        page.mouse.click(*_centre(front.nth(i)))
        _wait_idle(page)
        shown = box.locator("input").input_value().lstrip("★ ").strip()
        assert re.fullmatch(r"(quadtree|multiscale|greedy|learned_selector|uniform)[^@]*@ \d\.\d\d", shown), shown
        if not shown.startswith("uniform"):
            picked = shown
            break
    assert picked is not None, "no front point other than uniform"
    page.wait_for_selector(IDLE)
    main.get_by_role("button", name=re.compile("Open on Patch layout")).click()
    page.get_by_role("heading", name="Patch layout").first.wait_for(timeout=60_000)
    _wait_idle(page, timeout=60_000)
    _no_exception(page)
    note = page.locator('[data-testid="stAlertContentInfo"]').filter(has_text="Tune result")
    note.first.wait_for(timeout=10_000)
    assert picked in note.first.inner_text()
    strategy = picked.split()[0]
    sel = page.locator('[data-testid="stSelectbox"]').filter(has_text="Strategy")
    assert sel.first.locator("input").input_value() == ("selector" if strategy == "learned_selector" else strategy)
    _shot(page, artifacts / "tune_patch_layout.png")
    assert page.real_errors() == []
