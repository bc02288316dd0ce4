"""Patch ranges fitted to small images (issue 12: "no four-digit percentages").

``recipes.fit_sizes`` lowers ``max_size`` to the power of two covering an image smaller than the
range, and raises ``min_size`` whenever the finest grid (over the canvas the quadtree pads to) would
exceed ``SMALL_IMAGE_TOKENS`` times the image's 16 px grid, whether or not ``max_size`` was lowered.
``sizes_note`` says which happened. A sweep over small and thin images and every range the Patch
layout slider offers checks the bound, its tightness, and the percentages the app shows (the
"Tokens" delta and "Reduction", formatted by ``ui``) for the layouts with the most tokens the app
can ask for. One AppTest drives the Patch layout page with a 10x10 upload and sizes 2-8.
"""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("streamlit")

import adapatch as ap
from adapatch.app_support import ui
from adapatch.app_support.recipes import (
    SIZE_OPTIONS,
    SMALL_IMAGE_TOKENS,
    fit_sizes,
    fraction_max,
    powers_between,
    sizes_note,
)
from adapatch.budgets import uniform16_tokens
from tests.app_helpers import app, metric, ok

RANGES = list(itertools.combinations_with_replacement(SIZE_OPTIONS, 2))
"""Every (min, max) the Patch layout page's size slider can set (min == max included)."""
SMALL = [(h, w) for h in range(1, 41) for w in range(1, 41)]
THIN = [(3, 200), (200, 3), (1, 40), (40, 1), (1, 500), (7, 97), (33, 17), (16, 17), (2, 130)]
FOUR_DIGITS = re.compile(r"\d{4,}(\.\d+)?%|\d{1,3}(,\d{3})+(\.\d+)?%")


def finest(h: int, w: int, lo: int, hi: int) -> int:
    """Tokens of the ``lo`` grid over the canvas the quadtree pads an ``h`` x ``w`` image to (``hi`` multiples)."""
    return (-(-h // hi) * hi // lo) * (-(-w // hi) * hi // lo)


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


# ------------------------------------------------------------------ the cases of the issue
def test_ten_by_ten_with_2_to_8_px_is_raised_not_left_at_64_tokens() -> None:
    assert uniform16_tokens(10, 10) == 1
    assert finest(10, 10, 2, 8) == 64  # what the unfitted range allowed: +6300% against one 16 px token
    assert fit_sizes(10, 10, (2, 8)) == (8, 8)  # 4 px would still be 16 tokens (16x)
    assert finest(10, 10, 8, 8) == 4 <= SMALL_IMAGE_TOKENS
    note = sizes_note(10, 10, (2, 8))
    assert note is not None and "10x10" in note and "sizes 8 px are used here" in note
    assert "below 8 px would give more than 8x the tokens of its 16 px grid" in note
    assert "smaller than the" not in note  # the largest patch (8 px) was not lowered: the note does not say so


def test_ten_by_ten_with_4_to_8_px() -> None:
    assert fit_sizes(10, 10, (4, 8)) == (8, 8)
    assert "sizes 8 px are used here" in sizes_note(10, 10, (4, 8))
    assert fit_sizes(10, 10, (8, 8)) == (8, 8) and sizes_note(10, 10, (8, 8)) is None  # 4 tokens: within 8x


def test_ten_by_ten_with_the_default_range_lowers_the_largest_patch() -> None:
    assert fit_sizes(10, 10, (16, 64)) == (16, 16)
    note = sizes_note(10, 10, (16, 64))
    assert "smaller than the 64 px patches: sizes 16 px are used here" in note and "below" not in note


@pytest.mark.parametrize("sizes", RANGES)
def test_one_pixel_image_gets_one_token(sizes) -> None:
    assert fit_sizes(1, 1, sizes) == (1, 1)
    assert finest(1, 1, 1, 1) == 1 == uniform16_tokens(1, 1)
    note = sizes_note(1, 1, sizes)
    assert note is not None and f"smaller than the {sizes[1]} px patches: sizes 1 px are used here" in note


def test_thin_image_3x200() -> None:
    # 16 px grid: 1 x 13 = 13 tokens; the 8 px canvas is 8 x 200
    assert uniform16_tokens(3, 200) == 13
    assert finest(3, 200, 2, 8) == 400  # 2 px: 31x the 16 px grid
    assert fit_sizes(3, 200, (2, 8)) == (4, 8)  # 4 px: 100 tokens, 7.7x
    assert "sizes 4-8 px are used here" in sizes_note(3, 200, (2, 8))
    assert fit_sizes(3, 200, (16, 64)) == (16, 64) and sizes_note(3, 200, (16, 64)) is None
    assert fit_sizes(3, 200, (2, 2)) == (4, 4)  # min == max: the largest follows the smallest
    assert "sizes 4 px are used here" in sizes_note(3, 200, (2, 2))
    assert fit_sizes(200, 3, (2, 8)) == (4, 8)  # the same on its side


def test_large_image_keeps_ranges_within_the_bound() -> None:
    assert fit_sizes(448, 448, (16, 64)) == (16, 64) and sizes_note(448, 448, (16, 64)) is None
    assert fit_sizes(448, 448, (8, 128)) == (8, 128)  # 4x the 16 px grid
    assert fit_sizes(448, 448, (2, 64)) == (8, 64)  # 2 px would be 64x, 4 px 16x: the rule holds at any size
    assert "On this 448x448 image" in sizes_note(448, 448, (2, 64))


# ------------------------------------------------------------------ the sweep
@pytest.mark.parametrize("shape", [SMALL, THIN], ids=["1x1..40x40", "thin"])
def test_fitted_range_is_the_least_change_within_the_bound(shape) -> None:
    for (h, w), (lo0, hi0) in itertools.product(shape, RANGES):
        lo, hi = fit_sizes(h, w, (lo0, hi0))
        cap = 1 << max(0, max(h, w) - 1).bit_length()
        assert _is_pow2(lo) and _is_pow2(hi) and lo <= hi <= max(min(hi0, cap), lo), (h, w, lo0, hi0, lo, hi)
        assert finest(h, w, lo, hi) <= SMALL_IMAGE_TOKENS * uniform16_tokens(h, w), (h, w, lo0, hi0)
        start = min(lo0, hi0, cap)
        assert lo >= start
        if lo > start:  # raised: half of it would break the bound (the least raise)
            assert finest(h, w, lo // 2, max(min(hi0, cap), lo // 2)) > SMALL_IMAGE_TOKENS * uniform16_tokens(h, w)
        assert (sizes_note(h, w, (lo0, hi0)) is None) == ((lo, hi) == (lo0, hi0))


def _image(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(h * 1000 + w)  # noise: every box is worth splitting
    return rng.random((h, w, 3)).astype(np.float32)


def _worst_layouts(img: np.ndarray, lo: int, hi: int) -> list[ap.PatchLayout]:
    """The layouts with the most tokens the Patch layout page can ask for in this fitted range:
    quadtree at threshold 0 and at its largest budget, greedy without a budget, multiscale at the
    largest budget the page offers (the ``lo`` grid of the image)."""
    h, w = img.shape[:2]
    top = ap.uniform(h, w, lo).num_tokens
    return [ap.quadtree(img, threshold=0.0, min_size=lo, max_size=hi, importance="distortion"),
            ap.quadtree(img, min_size=lo, max_size=hi, budget=finest(h, w, lo, hi), importance="distortion"),
            ap.greedy(img, patch_sizes=powers_between(lo, hi), uncovered="fill", allocation="distortion"),
            ap.multiscale(img, budget=top)]


def _shown_percentages(layout: ap.PatchLayout) -> list[str]:
    """What ``ui.efficiency_metrics`` shows against the 16 px grid: the Tokens delta and Reduction."""
    eff = ap.efficiency(layout, "ViT-B")
    red = eff["token_reduction_vs_uniform16"]
    return [ui.fmt_delta_pct(-red) or "", ui.fmt_pct(red)]


def test_no_four_digit_percentage_on_small_and_thin_images() -> None:
    shapes = [(n, n) for n in range(1, 41)] + [(10, 3), (3, 10), (1, 40), (25, 7)] + THIN
    seen = set()
    for (h, w), sizes in itertools.product(shapes, RANGES):
        lo, hi = fit_sizes(h, w, sizes)
        if (h, w, lo, hi) in seen:
            continue
        seen.add((h, w, lo, hi))
        img = _image(h, w)
        for lay in _worst_layouts(img, lo, hi):
            assert lay.num_tokens <= SMALL_IMAGE_TOKENS * uniform16_tokens(h, w), (h, w, sizes, lay.strategy)
            shown = _shown_percentages(lay)
            assert not any(FOUR_DIGITS.search(t) for t in shown), (h, w, sizes, lay.strategy, shown)
    # and the budget slider's top (a percentage of the 16 px grid) never reaches four digits either
    assert max(fraction_max(lo) for lo, _ in RANGES) == SMALL_IMAGE_TOKENS
    assert fraction_max(16) == 1.0 and fraction_max(8) == 4.0


# ------------------------------------------------------------------ the Patch layout page
def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def _all_text(at) -> list[str]:
    out = [f"{m.label} {m.value} {m.delta or ''}" for m in at.metric]
    return out + [c.value for c in at.caption] + [m.value for m in at.markdown]


def test_patch_layout_page_fits_a_10x10_upload_with_sizes_2_to_8() -> None:
    icon = (np.random.default_rng(10).random((10, 10, 3)) * 255).astype(np.uint8)
    at = app().run()
    at.file_uploader(key="uploader").set_value(("tiny.png", _png(icon), "image/png")).run()
    at.select_slider(key="w_sizes").set_value((2, 8)).run()
    ok(at)
    assert at.select_slider(key="w_sizes").value == (2, 8)  # the setting itself is kept
    notes = [c.value for c in at.caption if "10x10" in c.value and "are used here" in c.value]
    assert notes == [sizes_note(10, 10, (2, 8))], [c.value for c in at.caption]
    assert at.slider(key="w_budget_fraction").max <= SMALL_IMAGE_TOKENS
    at.slider(key="w_budget_fraction").set_value(at.slider(key="w_budget_fraction").max).run()  # the most tokens
    for mode in ("budget", "threshold 0"):
        if mode == "threshold 0":
            at.toggle(key="w_use_budget").set_value(False).run()
            at.slider(key="w_threshold").set_value(0.0).run()
        for strategy in ("quadtree", "greedy", "multiscale"):
            at.selectbox(key="w_strategy").set_value(strategy).run()
            ok(at)
            bad = [t for t in _all_text(at) if FOUR_DIGITS.search(t)]
            assert not bad, (mode, strategy, bad)
            tokens = int(metric(at, "Tokens").replace(",", ""))
            assert 1 <= tokens <= finest(10, 10, 8, 8) == 4, (mode, strategy, tokens)  # 8 px on the 16 px canvas
            assert metric(at, "Uniform 16 px") == "1"
        at.selectbox(key="w_strategy").set_value("quadtree").run()  # multiscale always works to a budget
