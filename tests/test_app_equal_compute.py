"""Equal compute wherever a winner is named, under ``AppTest``.

* A layout that leaves more than 5% of its token budget unused (greedy on a flat image: its saliency
  rule gives flat cells the largest patch whatever budget is left) says so next to its numbers on
  Patch layout, Compare and Efficiency.
* No page marks a layout as faster or better unless it is compared at equal tokens: Compare ranks and
  highlights only the layouts at the budget; Efficiency highlights no speed-up (at one budget those
  that spend it have the same, and a larger one is tokens not spent).
* Compare and Patch layout share one budget setting.
* A lossless reconstruction reads "lossless" on every page, never "100.00".
* Efficiency's budget-mode summary says what differs between images (quality), not that flat images
  save the most, and does not repeat the reduction against the same grid twice.
"""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")

import adapatch as ap
from adapatch.app_support import recipes
from adapatch.budgets import relative_budget
from tests.app_helpers import app, metric, ok

GREEN = "background-color"


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def flat_image(n: int = 512) -> np.ndarray:
    """A smooth gradient with one 64 px square of noise: the edge map is zero almost everywhere."""
    y, x = np.mgrid[0:n, 0:n] / n
    a = np.stack([0.3 + 0.4 * x, 0.5 + 0.2 * y, 0.6 - 0.3 * x * y], -1)
    a[64:128, 64:128] = np.random.default_rng(0).random((64, 64, 3))
    return (a * 255).astype(np.uint8)


def _upload(at, name: str = "flat.png", image: np.ndarray | None = None):
    at.file_uploader(key="uploader").set_value([(name, _png(flat_image() if image is None else image),
                                                 "image/png")]).run()
    ok(at)
    return at


def _unused_warnings(at) -> list[str]:
    return [w.value.replace("\\", "") for w in at.warning if "unused" in w.value]


def _highlighted_rows(df_element) -> set[int]:
    """Rows of an ``st.dataframe`` whose cells the Styler colours (``T_..._row<i>_col<j>`` rules)."""
    css = df_element.proto.arrow_data.styler.styles
    return {int(m) for m in re.findall(r"row(\d+)_col\d+[^{]*\{[^}]*" + GREEN, css)}


def _greedy_tokens(img: np.ndarray, budget: int) -> int:
    f = img.astype(np.float32) / 255
    return ap.layout_for_budget(f, "greedy", budget, "edges", patch_sizes=[16, 32, 64]).num_tokens


# ------------------------------------------------------------------ the library side of the note
def test_budget_use_says_when_a_layout_is_short_of_its_budget() -> None:
    short = recipes.BudgetUse(1_201, 4_915, "greedy", "saliency", cap=16_384)
    assert short.short and not short.equal and round(short.unused, 3) == 0.756
    note = short.note()
    assert "1,201 of its 4,915-token budget (76% unused)" in note and "not at equal tokens" in note
    assert "saliency rule" in note
    spent = recipes.BudgetUse(4_913, 4_915, "quadtree")
    assert not spent.short and spent.equal and spent.note()  # a note exists but is never shown (not short)
    capped = recipes.BudgetUse(1_024, 3_000, "quadtree", cap=1_024)
    assert "at most 1,024 tokens" in capped.note()
    grid = recipes.BudgetUse(324, 307, "uniform", closest=True)  # no square grid within 5% of 307 on 512x512
    assert grid.equal and not grid.within and "6% over the budget" in grid.caveat("C")
    assert recipes.BudgetUse(300, 307, "uniform", closest=True).caveat("C") is None
    kept = recipes.budget_use({"strategy": "multiscale", "params": {"budget": 307, "scales": 1}}, 289, 512, 512,
                              {"base_size": 31, "levels_used": 0})
    assert kept.short and "the uniform grid of 31 px patches, the finest square grid within the budget" in kept.note()
    exact = recipes.budget_use({"strategy": "quadtree", "params": {"budget": 14, "min_size": 16}}, 4, 96, 128,
                               psnr=100.0)
    assert exact.lossless and "more tokens would keep nothing more" in exact.note()
    assert recipes.settings_budget({"solve_budget": 12, "params": {}}) == 12
    assert recipes.settings_budget({"solve_budget": None, "params": {"budget": 7}}) == 7
    assert recipes.settings_budget({"params": {"threshold": 0.1, "budget": None}}) is None
    note = recipes.strategy_unused_note("greedy", {"a": short, "b": spent, "c": None})
    assert note is not None and "on 1 of 3 images (a: 1,201 of 4,915 tokens, 76% unused" in note
    assert recipes.strategy_unused_note("quadtree", {"b": spent}) is None


# ------------------------------------------------------------------ Patch layout
def test_patch_layout_notes_greedy_s_unused_budget_next_to_its_numbers() -> None:
    at = _upload(app().run())
    assert not _unused_warnings(at)  # multiscale spends its budget
    at.selectbox(key="w_strategy").set_value("greedy").run()
    ok(at)
    budget = relative_budget(512, 512, fraction=0.3)
    tokens = _greedy_tokens(flat_image(), budget)
    assert tokens < 0.95 * budget  # the case: most of the budget left
    assert int(metric(at, "Tokens").replace(",", "")) == tokens
    notes = _unused_warnings(at)
    assert len(notes) == 1 and f"uses {tokens:,} of its {budget:,}-token budget" in notes[0]
    at.toggle(key="w_use_budget").set_value(False).run()  # threshold mode: no budget, no note
    ok(at)
    assert not _unused_warnings(at)


# ------------------------------------------------------------------ Compare
def test_compare_ranks_and_highlights_only_layouts_at_equal_tokens() -> None:
    at = _upload(app().run())
    at.switch_page("pages/compare.py").run()
    ok(at)
    at.selectbox(key="w_cmp_1_strategy").set_value("greedy").run()
    ok(at)
    table = at.dataframe[0]
    df = table.value
    budget = relative_budget(512, 512, fraction=0.3)
    assert df["tokens"].iloc[1] == _greedy_tokens(flat_image(), budget) < 0.95 * budget
    notes = _unused_warnings(at)
    assert len(notes) == 1 and notes[0].startswith("B: greedy")
    assert 1 not in _highlighted_rows(table)  # greedy is never marked best: it is not at equal tokens
    verdicts = [e.value.replace("\\", "") for e in list(at.success) + list(at.info) if "At a budget of" in e.value]
    assert len(verdicts) == 1 and "B is not at equal tokens" in verdicts[0]
    assert "B: greedy" not in verdicts[0].split("B is not")[0]  # not named the winner
    assert "C has 324 tokens, 6% over the budget" in verdicts[0]  # the closest grid, off by more than 5%: said


def test_compare_highlights_the_best_among_equal_token_layouts() -> None:
    at = app().run()
    at.switch_page("pages/compare.py").run()
    ok(at)
    table = at.dataframe[0]
    assert not _unused_warnings(at)
    assert _highlighted_rows(table)  # astronaut at 30%: every layout at the budget, the best marked
    assert len(at.success) == 1 and "not at equal tokens" not in at.success[0].value


# ------------------------------------------------------------------ Efficiency
def test_efficiency_marks_no_speed_up_and_notes_the_unused_budget() -> None:
    at = app().run()
    at.session_state["ap_settings"]["eff_samples"] = False
    _upload(at)
    at.switch_page("pages/efficiency.py").run()
    ok(at)
    speed = next(d for d in at.dataframe if list(d.value.columns[:2]) == ["ViT-Ti", "ViT-S"])
    assert speed.value.loc["greedy", "ViT-B"] > speed.value.loc["quadtree", "ViT-B"]  # greedy "faster"...
    assert not _highlighted_rows(speed)  # ...but not marked: it is not at equal tokens
    notes = _unused_warnings(at)
    assert len(notes) == 1 and notes[0].startswith("greedy") and "flat.png" in notes[0]
    assert any("Equal compute" in c.value for c in at.caption)
    summary = next(d for d in at.dataframe if "PSNR dB (of the mean MSE)" in d.value.index)
    row = summary.value.loc["budget used, ratio of totals (images under 95%)"]
    assert row["uniform 16 px"] == "– (no budget)" and float(row["quadtree"].rstrip("%")) >= 95
    assert float(row["greedy"].split("%")[0]) < 95 and row["greedy"].endswith("(1 of 1)")


def test_efficiency_budget_summary_says_what_differs() -> None:
    at = app().run()
    at.switch_page("pages/efficiency.py").run()  # the bundled samples at the default 30% budget
    ok(at)
    text = next(i.value for i in at.info if "quadtree layout uses" in i.value).replace("\\", "")
    assert "Flat images save the most" not in text
    assert text.count("70% fewer") == 1  # once: the finest patch's grid is the 16 px grid itself
    assert "on every image" in text and "What differs is how much of each image those tokens keep" in text


# ------------------------------------------------------------------ one budget
def test_compare_and_patch_layout_share_one_budget() -> None:
    at = app().run()
    at.slider(key="w_budget_fraction").set_value(0.33).run()
    ok(at)
    at.switch_page("pages/compare.py").run()
    ok(at)
    assert at.slider(key="w_compare_budget_fraction").value == pytest.approx(0.33)
    b = relative_budget(448, 448, fraction=0.33)
    assert any(f"= {b:,} tokens for this 448x448 image" in c.value for c in at.caption)
    at.slider(key="w_compare_budget_fraction").set_value(0.5).run()
    ok(at)
    at.switch_page("pages/layout.py").run()
    ok(at)
    assert at.slider(key="w_budget_fraction").value == pytest.approx(0.5)
    assert int(metric(at, "Tokens").replace(",", "")) <= relative_budget(448, 448, fraction=0.5)


# ------------------------------------------------------------------ lossless reads "lossless"
@pytest.mark.parametrize("page", ["pages/layout.py", "pages/pruning.py"])
def test_a_lossless_result_reads_lossless(page: str) -> None:
    at = app().run()
    _upload(at, "grey.png", np.full((96, 128, 3), 128, np.uint8))  # every token an exact copy
    at.switch_page(page).run()
    ok(at)
    assert metric(at, "PSNR dB") == "lossless"
    assert not [m.value for m in at.metric if m.value.startswith("100.0")]
    if page == "pages/layout.py":  # 4 tokens of a 14-token budget: said, with the reason
        notes = _unused_warnings(at)
        assert len(notes) == 1 and "already the original (lossless)" in notes[0]


def _page_functions(page: str, stop: str) -> dict:
    """A page's helper functions without running the page (everything above ``stop``)."""
    from pathlib import Path

    src = (Path(__file__).resolve().parents[1] / "pages" / page).read_text()
    ns: dict = {}
    exec(compile(src[:src.index(stop)], f"pages/{page}", "exec"), ns)  # noqa: S102
    return ns


def test_a_winner_with_more_tokens_says_so() -> None:
    import pandas as pd

    more = _page_functions("compare.py", '\nwith ui.guard("image"):')["_more_tokens"]
    tokens = pd.Series({"A: multiscale": 4_761, "B: quadtree": 4_915, "C: uniform grid · 29 px": 5_041})
    assert more(tokens, "C: uniform grid · 29 px") == " C has 6% more tokens than A."
    assert more(tokens, "A: multiscale") == ""
    assert more(pd.Series({"A: x": 1_000, "B: y": 1_009}), "B: y") == ""  # within 1%: nothing to say


def test_efficiency_in_threshold_mode_says_the_tokens_differ() -> None:
    at = app().run()
    at.session_state["ap_settings"]["use_budget"] = False
    at.switch_page("pages/efficiency.py").run()
    ok(at)
    assert not _unused_warnings(at)  # no budget: nothing is "unused"
    assert any("Threshold mode" in c.value and "not at equal tokens" in c.value for c in at.caption)
    speed = next(d for d in at.dataframe if list(d.value.columns[:2]) == ["ViT-Ti", "ViT-S"])
    assert not _highlighted_rows(speed)
    text = next(i.value for i in at.info if "quadtree layout uses" in i.value).replace("\\", "")
    assert "Biggest saving against 16 px" in text and "on every image" not in text
