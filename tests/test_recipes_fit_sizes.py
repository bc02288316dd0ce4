"""Patch ranges fitted to small images (issue 12: "no four-digit percentages").

``recipes.fit_sizes`` lowers ``max_size`` to the power of two covering an image smaller than the
range, and, on a small image only (``is_small_image``: at most 4,096 pixels, 16 tokens' worth of
16 px patches), raises ``min_size`` while the finest grid (over the canvas the quadtree pads to)
would exceed ``SMALL_IMAGE_TOKENS`` times the image's 16 px grid. On larger images the user's range
stays (2 and 4 px on a 512x512 photo). ``sizes_note`` says which happened. A sweep over small and
thin images and every range the Patch layout slider offers checks the bound, its tightness, and the
numbers the app shows (the "Tokens" delta and "Reduction", formatted by ``ui``) for the layouts with
the most tokens the app can ask for. ``ui`` shows a change of 10x or more as a ratio ("×16.0"), so no
percentage reaches four digits on any image. AppTests drive the Patch layout page with a 10x10
upload at sizes 2-8 and a 512x512 upload at 4-64 px, threshold 0.
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
    SMALL_IMAGE_PIXELS,
    SMALL_IMAGE_TOKENS,
    fit_sizes,
    fraction_max,
    is_small_image,
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


def test_small_image_is_at_most_sixteen_tokens_worth_of_pixels() -> None:
    assert SMALL_IMAGE_PIXELS == 16 * 16 * 16
    assert is_small_image(64, 64) and not is_small_image(64, 65) and not is_small_image(65, 64)
    assert is_small_image(1, 4096) and not is_small_image(1, 4097)  # its pixels, not its padded 16 px grid
    assert all(is_small_image(h, w) for h, w in SMALL + THIN)  # every shape of the sweep below
    assert not is_small_image(512, 512) and not is_small_image(448, 448) and not is_small_image(3, 2000)


@pytest.mark.parametrize("shape", [(512, 512), (448, 448), (384, 512), (65, 65), (3, 2000), (1000, 17)])
@pytest.mark.parametrize("sizes", RANGES)
def test_larger_images_keep_the_users_range(shape, sizes) -> None:
    """Not a small image: every range the slider offers is used as it is, with no note (2 and 4 px too)."""
    assert fit_sizes(*shape, sizes) == sizes and sizes_note(*shape, sizes) is None


def test_512_photo_keeps_2_and_4_px_minimums() -> None:
    for sizes in ((2, 8), (4, 64), (2, 128), (4, 4)):
        assert fit_sizes(512, 512, sizes) == sizes and sizes_note(512, 512, sizes) is None
    assert finest(512, 512, 4, 64) == 16 * uniform16_tokens(512, 512)  # the user's choice: 16x, shown as a ratio
    assert fit_sizes(64, 64, (2, 64)) == (8, 64)  # the largest small image: still fitted ...
    note = sizes_note(64, 64, (2, 64))
    assert "64x64 image is small (at most 4,096 pixels" in note and "sizes 8-64 px are used here" in note
    assert fit_sizes(65, 65, (2, 64)) == (2, 64)  # ... one pixel more a side: the user's range


# ------------------------------------------------------------------ the formatter
def test_changes_of_ten_times_or_more_read_as_ratios() -> None:
    assert ui.RATIO_FROM == 10
    assert ui.fmt_delta_pct(15.0) == "×16.0" and ui.fmt_delta_pct(63.0) == "×64.0"  # tokens / reference - 1
    assert ui.fmt_delta_pct(9.0) == "×10.0" and ui.fmt_delta_pct(8.99) == "+899.0%"
    assert ui.fmt_delta_pct(8.99999) == "+900.0%"  # the largest percentage shown: three digits
    assert ui.fmt_delta_pct(0.125) == "+12.5%" and ui.fmt_delta_pct(-0.7) == "-70.0%"
    assert ui.fmt_delta_pct(-0.0004) is None and ui.fmt_delta_pct(1e-9) is None  # never "-0.0%" / "+0.0%"
    assert ui.fmt_reduction(-15.0) == "×16.0 the tokens" and ui.fmt_reduction(-9.0) == "×10.0 the tokens"
    assert ui.fmt_reduction(-8.5) == "-850.0%" and ui.fmt_reduction(0.3612) == "36.1%"
    assert ui.fmt_reduction(-0.0004) == "0.0%" and ui.fmt_reduction(1.0) == "100.0%"
    assert ui.fewer_phrase(-15.0) == "×16.0 as many" and ui.fewer_phrase(-8.0) == "800% more"
    assert ui.fewer_phrase(0.36) == "36% fewer" and ui.fewer_phrase(-0.004) == "0% fewer"
    for ratio in np.concatenate([np.linspace(0, 12, 1201), [16, 64, 256, 1e4]]):
        shown = [ui.fmt_delta_pct(ratio - 1) or "", ui.fmt_reduction(1 - ratio), ui.fewer_phrase(1 - ratio)]
        assert not any(FOUR_DIGITS.search(t) or re.search(r"\d{4,}%", t) for t in shown), (ratio, shown)
        assert not any(t.startswith(("-0.0", "+0.0", "-0%")) for t in shown), (ratio, shown)


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
    return [ui.fmt_delta_pct(-red) or "", ui.fmt_reduction(red)]


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
    # and the budget slider's top (a percentage of the 16 px grid, on any image) never reaches four digits either
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


@pytest.mark.app
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
            at.select_slider(key="w_threshold").set_value(0.0).run()
        for strategy in ("quadtree", "greedy", "multiscale"):
            at.selectbox(key="w_strategy").set_value(strategy).run()
            ok(at)
            bad = [t for t in _all_text(at) if FOUR_DIGITS.search(t)]
            assert not bad, (mode, strategy, bad)
            tokens = int(metric(at, "Tokens").replace(",", ""))
            assert 1 <= tokens <= finest(10, 10, 8, 8) == 4, (mode, strategy, tokens)  # 8 px on the 16 px canvas
            assert metric(at, "Uniform 16 px") == "1"
        at.selectbox(key="w_strategy").set_value("quadtree").run()  # the threshold-0 mode starts on the quadtree


@pytest.mark.app
def test_patch_layout_page_keeps_4_px_on_a_512_photo_and_shows_no_four_digit_percentage() -> None:
    photo = (np.random.default_rng(512).random((512, 512, 3)) * 255).astype(np.uint8)  # noise: threshold 0 splits all
    at = app().run()
    at.file_uploader(key="uploader").set_value(("photo.png", _png(photo), "image/png")).run()
    at.selectbox(key="w_strategy").set_value("quadtree").run()  # the default is multiscale (16-64 px boxes)
    at.select_slider(key="w_sizes").set_value((4, 64)).run()
    at.selectbox(key="w_importance").set_value("std").run()  # distortion never splits below 16 px (lossless there)
    at.toggle(key="w_use_budget").set_value(False).run()
    at.select_slider(key="w_threshold").set_value(0.0).run()
    ok(at)
    assert at.select_slider(key="w_sizes").value == (4, 64)
    assert not [c.value for c in at.caption if "are used here" in c.value]  # no fitting, no note
    assert metric(at, "Tokens") == "16,384" and metric(at, "Uniform 16 px") == "1,024"  # the 4 px grid: 16x
    assert metric(at, "Uniform 4 px") == "16,384"
    tokens = next(m for m in at.metric if m.label == "Tokens")
    assert tokens.delta == "×16.0"  # not "+1500.0%"
    assert metric(at, "Reduction") == "×16.0 the tokens"
    texts = _all_text(at) + [e.value for e in at.info] + [str(s.value) for s in at.slider]
    bad = [t for t in texts if FOUR_DIGITS.search(t) or re.search(r"\d{4,}%", t)]
    assert not bad, bad
