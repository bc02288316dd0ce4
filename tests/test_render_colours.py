"""One colour scale for patch sizes: a box's colour is that of its size in the layout's own frame,
whatever size the overlay is drawn at (scaled down to ``max_side`` or enlarged for display), on a
fine log2 scale (a 23 px grid has its own colour between 16 and 32 px); the app's pictures (Demo,
Patch layout, model frames, the Dataset gallery) follow it, and its legend is in pixels."""

from __future__ import annotations

import io
import itertools
import re

import numpy as np
import pytest
from PIL import Image

import adapatch as ap
from adapatch import render
from adapatch.layout import PatchLayout, uniform
from tests.image_helpers import rgb01


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    import skimage.data as d
    return rgb01(d.chelsea())[:253, :170]  # the shape of ``mixed``


@pytest.fixture(scope="module")
def mixed() -> PatchLayout:
    """Strips of 64, 32, 16, 8, 4 and 23 px boxes tiling a 253x170 image (the 64 px boxes run into
    the padding): every size in one layout, powers of two and not."""
    h, boxes, x = 253, [], 0
    for s in (64, 32, 16, 8, 4, 23):
        boxes += [(y, x + dx, s) for y in range(0, h, s) for dx in range(0, 2 * s if s == 23 else s, s)]
        x += 2 * s if s == 23 else s
    return PatchLayout(h, x, (256, x), np.array(boxes), strategy="custom")


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _centres(lay: PatchLayout, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display pixel at the centre of each kept box wholly inside the image, and the box sizes."""
    b = lay.boxes.astype(np.int64)
    inside = (b[:, 0] + b[:, 2] <= lay.height) & (b[:, 1] + b[:, 2] <= lay.width)
    b = b[inside]
    sy, sx = shape[0] / lay.height, shape[1] / lay.width
    return (((b[:, 0] + b[:, 2] / 2) * sy).astype(int), ((b[:, 1] + b[:, 2] / 2) * sx).astype(int), b[:, 2])


def _edge_samples(lay: PatchLayout, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Display pixel in the middle of each kept box's top outline (boxes below the first row, wholly
    inside the image), where the overlay draws the box's colour untinted, and the box sizes."""
    b = lay.boxes.astype(np.int64)
    keep = (b[:, 0] > 0) & (b[:, 0] + b[:, 2] <= lay.height) & (b[:, 1] + b[:, 2] <= lay.width)
    b = b[keep]
    sy, sx = shape[0] / lay.height, shape[1] / lay.width
    ys = np.ceil(b[:, 0] * sy - 0.5).astype(int)  # the first display row whose centre is in the box
    return ys, ((b[:, 1] + b[:, 2] / 2) * sx).astype(int), b[:, 2]


def _expected(sizes: np.ndarray) -> np.ndarray:
    return np.array([render.size_color(int(s)) for s in sizes], np.uint8)


# ------------------------------------------------------------------ the library
@pytest.mark.parametrize("enlarge,max_side", [(1, None), (1, 120), (3, None), (8, 1024), (5, 300)])
def test_every_box_has_the_colour_of_its_true_size_at_any_drawing_scale(photo, mixed, enlarge, max_side) -> None:
    """Filled in full (``fill_alpha=1``) every pixel shows its box's colour: sampled at each box's
    centre it is ``size_color`` of the box's size in the layout's frame, enlarged or scaled down."""
    out = render.layout_overlay(photo, mixed, max_side=max_side, fill_alpha=1.0, enlarge=enlarge)
    assert out.shape[:2] == render.overlay_shape(mixed, max_side, enlarge)
    ys, xs, sizes = _centres(mixed, out.shape[:2])
    assert set(sizes.tolist()) == {4, 8, 16, 23, 32, 64}
    np.testing.assert_array_equal(out[ys, xs], _expected(sizes))


def test_outlines_are_the_true_size_colour_when_enlarged_or_scaled_down(photo, mixed) -> None:
    """With the default tint the outlines carry the colour untinted: the same colour per size at x1,
    x3 enlarged and scaled down to 150 px."""
    seen = {}
    for enlarge, max_side in ((1, None), (3, None), (1, 150)):
        out = render.layout_overlay(photo, mixed, max_side=max_side, enlarge=enlarge)
        ys, xs, sizes = _edge_samples(mixed, out.shape[:2])
        for s, c in zip(sizes.tolist(), out[ys, xs]):
            seen.setdefault(s, set()).add(tuple(int(v) for v in c))
    assert set(seen) == {4, 8, 16, 23, 32, 64}
    assert all(cols == {render.size_color(s)} for s, cols in seen.items()), seen


def test_a_16px_box_has_one_colour_on_a_document_and_on_an_enlarged_64px_digit() -> None:
    """The Dataset gallery's case: 16 px boxes of a 900 px page drawn at 400 px and of a 64x64 digit
    drawn x6 have the same colour (the enlarged digit used to show them as 96 px boxes)."""
    from adapatch.app_support.dataset_view import GALLERY_SIDE, gallery_factor
    page, digit = uniform(900, 700, 16), uniform(64, 64, 16)
    assert gallery_factor(64, 64) == 6 and gallery_factor(900, 700) == 1
    zeros = lambda lay: np.zeros((lay.height, lay.width, 3), np.float32)
    a = render.layout_overlay(zeros(page), page, max_side=GALLERY_SIDE, fill_alpha=1.0)
    b = render.layout_overlay(zeros(digit), digit, max_side=GALLERY_SIDE, fill_alpha=1.0, enlarge=gallery_factor(64, 64))
    assert b.shape == (384, 384, 3)
    assert {tuple(c) for c in a.reshape(-1, 3)} == {tuple(c) for c in b.reshape(-1, 3)} == {render.size_color(16)}


def test_enlarging_draws_the_same_outlines_as_the_enlarged_layout(photo) -> None:
    """``enlarge=f`` draws the boxes where ``render.enlarge`` (an f-times larger image and layout) puts
    them: the token maps, which colour no size, are equal pixel for pixel, and so are the outlines
    (drawn on black, untinted: every non-black pixel); only their colours differ."""
    small = photo[:60, :44]  # odd sides: boxes cut by the border
    lay = ap.layout_for_budget(small, "quadtree", 20, min_size=4, max_size=32)
    black = np.zeros_like(small)
    for f in (2, 7):
        assert np.array_equal(render.token_map(small, lay, enlarge=f), render.token_map(*render.enlarge(small, lay, f)))
        a = render.layout_overlay(black, lay, enlarge=f, fill_alpha=0.0)
        b = render.layout_overlay(*render.enlarge(black, lay, f), fill_alpha=0.0)
        assert a.shape == b.shape == (60 * f, 44 * f, 3)
        assert np.array_equal(a.any(-1), b.any(-1)) and a.any()


def test_the_scale_is_fine_between_octaves_and_fixed_at_its_ends() -> None:
    """16, 23 and 32 px get three clearly different colours (a 23 px grid is not painted as 16 or 32);
    sizes an octave apart always differ; sizes outside the range take the end colours."""
    c = {s: np.array(render.size_color(s), int) for s in (1, 2, 16, 22, 23, 24, 32, 256, 300, 4096)}
    dist = lambda a, b: int(np.abs(c[a] - c[b]).sum())
    assert dist(16, 23) > 150 and dist(23, 32) > 150 and dist(16, 32) > 150
    assert c[22].tolist() != c[24].tolist()  # a few pixels apart: neighbouring colours, not one
    assert c[1].tolist() == c[2].tolist() and c[256].tolist() == c[300].tolist() == c[4096].tolist()
    octaves = [np.array(render.size_color(2 ** k), int) for k in range(1, 9)]
    assert all(np.abs(a - b).sum() > 60 for a, b in itertools.pairwise(octaves))
    assert [int(render.size_level(2 ** k)) for k in range(1, 9)] == [render.SIZE_LEVELS_PER_OCTAVE * k for k in range(8)]


def test_dropped_boxes_keep_their_size_colour_in_the_outlines() -> None:
    """A dropped box is dimmed inside but outlined in its size's colour, like a kept one."""
    lay = uniform(96, 96, 32)
    lay = PatchLayout(96, 96, lay.canvas, lay.boxes[:5], lay.boxes[5:], "custom")
    out = render.layout_overlay(np.full((96, 96, 3), 0.5, np.float32), lay, max_side=None, enlarge=2)
    assert tuple(out[2 * 64, 2 * 48]) == render.size_color(32)  # top outline of the dropped box at (64, 32), x2
    assert tuple(out[2 * 80, 2 * 48]) != render.size_color(32)  # its inside: dimmed


def test_scale_stops_and_positions_follow_the_colours() -> None:
    stops = render.size_scale_stops()
    assert stops[0] == (0.0, render.size_color(render.SIZE_SCALE_MIN))
    assert stops[-1] == (1.0, render.size_color(render.SIZE_SCALE_MAX))
    at16 = render.size_scale_position(16)
    assert (at16, render.size_color(16)) in stops
    assert render.size_scale_position(1) == 0.0 and render.size_scale_position(10_000) == 1.0
    assert render.size_scale_position(16) < render.size_scale_position(23) < render.size_scale_position(32)
    with pytest.raises(ValueError):
        render.size_scale_stops(3)


# ------------------------------------------------------------------ the legend (app_support.ui)
def test_the_legend_is_in_pixels_and_says_when_pictures_are_enlarged() -> None:
    pytest.importorskip("streamlit")
    from adapatch.app_support import ui
    html = ui.size_scale_html([16, 23, 32], enlarged=3)
    ticks = re.findall(r'white-space:nowrap">([^<]+)</span>', html)
    assert ticks == ["2", "4", "8", "16", "32", "64", "128", "256 px"]
    assert re.findall(r'title="(\d+) px"', html) == ["16", "23", "32"]  # a mark per size shown
    assert "enlarged ×3 for display" in html and ui.SIZE_SCALE_TEXT in html
    for s in (16, 23, 32):
        assert f"rgb{render.size_color(s)}" in html  # the gradient runs through the overlay colours
    plain = ui.size_scale_html([], enlarged=1)
    assert "enlarged" not in plain and "▼" not in plain


# ------------------------------------------------------------------ the app
@pytest.mark.app
def test_demo_and_patch_layout_draw_the_same_23px_grid_in_one_colour(monkeypatch) -> None:
    """Demo step "dense texture" (a 160x160 photo, drawn x3) and the same settings opened on Patch
    layout (drawn larger there too, as a JPEG): the top outlines of the 23 px grid's boxes have the colour of
    23 px on both pages, read from the pictures the pages sent."""
    pytest.importorskip("streamlit")
    from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage

    from adapatch.app_support import compute, demo
    from tests.app_helpers import app, ok

    sent: dict[str, bytes] = {}
    load = MemoryMediaFileStorage.load_and_get_id

    def record(self, path_or_data, mimetype, kind, filename=None):
        fid = load(self, path_or_data, mimetype, kind, filename)
        if isinstance(path_or_data, bytes):
            sent[fid] = path_or_data
        return fid

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", record)
    index = next(i for i, s in enumerate(demo.SCENES) if s.key == "dense_texture")
    view = demo.build_step(demo.SCENES[index], "cpu")
    grid = view.main.layout
    assert grid.sizes == [23]  # multiscale kept the uniform grid: the test's premise
    at = app()
    at.run()
    at.switch_page("pages/demo.py").run()
    at.segmented_control(key="w_demo_step").set_value(index).run()
    ok(at)

    def pictures() -> list[np.ndarray]:
        return [_decode(sent[re.search(r"/([0-9a-f]+)\.\w+$", url).group(1)]) for im in at.image for url in im.value]

    demo_pic = pictures()[0]  # the main panel first
    factor = demo.enlarge_factor(grid)
    assert factor == 3 and demo_pic.shape[:2] == (grid.height * factor, grid.width * factor)
    ys, xs, _ = _edge_samples(grid, demo_pic.shape[:2])
    demo_colours = {tuple(int(v) for v in c) for c in demo_pic[ys, xs]}
    assert demo_colours == {render.size_color(23)}
    assert any("enlarged ×3 for display" in h.proto.body for h in at.get("html"))  # the legend says so

    at.button(key="demo_open").click().run()
    ok(at)
    assert at.title[0].value == "Patch layout"
    assert next(m.value for m in at.metric if m.label == "Tokens") == f"{grid.num_tokens:,}"
    layout_pic = pictures()[0]
    factor = compute.small_image_factor(grid.height, grid.width)  # drawn larger there too (a JPEG)
    assert layout_pic.shape[:2] == (grid.height * factor, grid.width * factor)
    assert any(f"enlarged ×{factor} for display" in h.proto.body for h in at.get("html"))
    ys, xs, _ = _edge_samples(grid, layout_pic.shape[:2])
    got = np.median(layout_pic[ys, xs].astype(int), axis=0)  # JPEG: about the colour
    want = np.array(render.size_color(23))
    assert np.abs(got - want).max() <= 24, (got, want)
    for other in (16, 32, 69):  # not the neighbouring octaves, nor the x3 drawn size (the colour it had)
        assert np.abs(got - np.array(render.size_color(other))).max() > 60
    assert any("23<br>▼" in h.proto.body for h in at.get("html"))  # the legend marks the grid's size
