"""Equal compute in Chromium at 1440 px, on images the project does not bundle: a 3000x3000 flat photo
(chelsea, upscaled: its edge map is almost all zero) and three more uploads with long file names.

* Patch layout, greedy: the note that it leaves most of its budget unused is on screen beside the numbers.
* Compare (B set to greedy): the note.
* Efficiency: the note; the x labels of the tokens chart do not overlap (their boxes, measured in the
  page). Which cells are highlighted is drawn on a canvas: tests/test_app_equal_compute.py checks it.

Screenshots: ``test-artifacts/e2e/equal_compute/``.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.e2e.test_page_screenshots import _go, _settle, _shoot

MAIN = '[data-testid="stMain"]'


@pytest.fixture(scope="module")
def uploads(tmp_path_factory) -> list[Path]:
    import skimage.data as d

    folder = tmp_path_factory.mktemp("equal_compute")
    big = folder / "big_3000.jpg"
    Image.fromarray(d.chelsea()).resize((3000, 3000), Image.BICUBIC).save(big, quality=90)
    out = [big]
    for name, img in (("photo_gravel_from_the_garden_path.jpg", d.gravel()), ("coffee_cup_on_a_table.png", d.coffee()),
                      ("IMG_20240101_123456789.jpg", d.rocket())):
        a = np.asarray(img)
        a = np.stack([a] * 3, -1) if a.ndim == 2 else a
        Image.fromarray(a).save(folder / name)
        out.append(folder / name)
    return out


def _select(page, label: str, option: str, nth: int = 0) -> None:
    box = page.locator(f'{MAIN} [data-testid="stSelectbox"]').filter(has_text=label).nth(nth)
    box.get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    _settle(page)


def _unused_notes(page) -> list[str]:
    alerts = page.locator(f'{MAIN} [data-testid="stAlert"] [data-testid="stMarkdownContainer"]').all_inner_texts()
    return [a for a in alerts if "unused" in a]


def test_equal_compute_in_the_browser(page, app_url, artifacts, uploads):
    out = artifacts / "equal_compute"
    out.mkdir(parents=True, exist_ok=True)
    page.goto(app_url)
    page.locator(f"{MAIN} h1").first.wait_for(timeout=120_000)
    _settle(page)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files([str(p) for p in uploads])
    page.locator('[data-testid="stSidebar"]').get_by_text("3000x3000").first.wait_for(timeout=120_000)
    _settle(page)
    sidebar_image = page.locator('[data-testid="stSidebar"] [data-testid="stSelectbox"]').first
    sidebar_image.get_by_role("combobox").click()
    page.get_by_role("option").filter(has_text="big_3000.jpg").first.click()
    _settle(page)

    # Patch layout, greedy: the note beside the numbers
    _select(page, "Strategy", "greedy")
    notes = _unused_notes(page)
    assert len(notes) == 1 and notes[0].startswith("greedy uses"), notes
    _shoot(page, out / "layout_greedy.png")

    # Compare, B greedy: the note, and greedy's row never marked best
    _go(page, "Compare", "compare-at-budget")
    _select(page, "Strategy", "greedy", nth=1)
    notes = _unused_notes(page)
    assert len(notes) == 1 and notes[0].startswith("B: greedy"), notes
    _shoot(page, out / "compare_greedy.png")

    # Efficiency: the note, x labels apart
    _go(page, "Efficiency", "efficiency-report")
    notes = _unused_notes(page)
    assert [n for n in notes if n.startswith("greedy leaves") and "big_3000.jpg" in n], notes
    rects = page.evaluate("""() => [...[...document.querySelectorAll('[data-testid="stPlotlyChart"]')][0]
        .querySelectorAll('g.xtick text')].map(t => { const r = t.getBoundingClientRect();
        return [r.left, r.right, t.textContent]; })""")
    assert len(rects) >= 4
    rects.sort()
    for (l1, r1, t1), (l2, r2, t2) in pairwise(rects):
        assert r1 <= l2 + 1, f"x labels overlap: {t1!r} ({l1:.0f}-{r1:.0f}) and {t2!r} ({l2:.0f}-{r2:.0f})"
    _shoot(page, out / "efficiency.png")
    assert page.real_errors() == [], page.real_errors()
