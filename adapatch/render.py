"""uint8 RGB pictures of saliency maps, layouts and pruned tokens, drawn at display size.

Everything is drawn at ``max_side`` pixels (the longer side) or less, the size a screen shows,
with 1 px lines there; no loop over boxes: box ids are painted with a 2-D difference array (boxes
tile the image, so each image pixel receives exactly one id; only image pixels are drawn) and
outlines are where the id changes.
Colours depend only on the patch size in the layout's own frame (``size_color``), never on the size
it is drawn at, so the same size has the same colour in every view, enlarged or scaled down.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image

from .layout import PatchLayout
from .validation import check_choice, check_float, check_int

COLORMAPS = {
    "turbo": cv2.COLORMAP_TURBO, "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA, "jet": cv2.COLORMAP_JET, "hot": cv2.COLORMAP_HOT,
}

# The patch-size colour scale: one colour per size in the pixels of the layout's own frame (the image
# the layout was computed on), whatever the size it is drawn at, on a fixed log2 range, so a size has
# one colour on every page and panel. Anchors at the powers of two (small = hot, detail; large =
# cool, flat) keep the colours the octaves always had; between them the hue moves on in equal steps of
# log2(size) (HSV, so a 23 px grid is a saturated green between 16 px yellow and 32 px cyan, where an
# RGB or Lab blend would give a washed-out grey-green). Sizes outside the range take its end colours.
SIZE_SCALE_MIN, SIZE_SCALE_MAX = 2, 256
"""The patch sizes (px, in the layout's frame) at the two ends of the colour scale."""
SIZE_LEVELS_PER_OCTAVE = 16
"""Colour steps per doubling of the size (about 4.4% of the size each): 16, 23 and 32 px are 8 apart."""
_SIZE_ANCHORS = np.array([  # RGB at 2, 4, 8, ..., 256 px
    (255, 0, 170), (230, 25, 75), (255, 130, 0), (255, 225, 25), (60, 210, 240), (40, 110, 255),
    (150, 60, 230), (190, 150, 215),
], dtype=np.uint8)
_OCTAVES = int(np.log2(SIZE_SCALE_MAX // SIZE_SCALE_MIN))
_N_LEVELS = _OCTAVES * SIZE_LEVELS_PER_OCTAVE + 1  # 113 colours, codes 0..112
_DROPPED = 128  # code offset marking dropped boxes in the per-pixel code map


def _scale_colours() -> np.ndarray:
    """``[_N_LEVELS, 3]`` uint8: the anchors' hue, saturation and value interpolated linearly in
    log2(size) (hue unwrapped so it always moves the same way round the wheel)."""
    hsv = cv2.cvtColor(_SIZE_ANCHORS.reshape(1, -1, 3), cv2.COLOR_RGB2HSV_FULL)[0].astype(np.float64)
    hsv[:, 0] *= 360.0 / 256.0
    hsv[:, 0] = np.rad2deg(np.unwrap(np.deg2rad(hsv[:, 0])))
    at = np.arange(_N_LEVELS) / SIZE_LEVELS_PER_OCTAVE
    h, sat, val = (np.interp(at, np.arange(len(hsv)), hsv[:, k]) for k in range(3))
    hue = np.mod(np.rint(np.mod(h, 360.0) * 256.0 / 360.0), 256)
    u8 = np.clip(np.rint(np.stack([hue, sat, val], axis=-1)), 0, 255).astype(np.uint8)
    rgb = cv2.cvtColor(u8.reshape(1, -1, 3), cv2.COLOR_HSV2RGB_FULL)[0]
    rgb[::SIZE_LEVELS_PER_OCTAVE] = _SIZE_ANCHORS  # the octaves exactly
    return rgb


_SCALE_RGB = _scale_colours()


def size_level(sizes) -> np.ndarray:
    """Colour index (int64, ``0.._N_LEVELS-1``) of each patch size: ``SIZE_LEVELS_PER_OCTAVE`` steps
    per doubling from ``SIZE_SCALE_MIN`` px, clipped to the scale's ends."""
    s = np.maximum(np.asarray(sizes, np.float64), 1.0)
    steps = np.rint((np.log2(s) - np.log2(SIZE_SCALE_MIN)) * SIZE_LEVELS_PER_OCTAVE)
    return np.clip(steps, 0, _N_LEVELS - 1).astype(np.int64)


def size_color(size: int) -> tuple[int, int, int]:
    """RGB colour of boxes of ``size`` pixels (in the layout's frame) on every overlay."""
    r, g, b = _SCALE_RGB[int(size_level(size))]
    return int(r), int(g), int(b)


def size_colors(sizes) -> dict[int, tuple[int, int, int]]:
    """``{size: (r, g, b)}`` for a legend."""
    return {int(s): size_color(int(s)) for s in sorted({int(s) for s in sizes})}


def size_scale_position(size: float) -> float:
    """Where ``size`` px sits along the colour scale, 0 (``SIZE_SCALE_MIN``) to 1 (``SIZE_SCALE_MAX``),
    log2-spaced and clipped: for drawing a legend's ticks and marks."""
    lo, hi = np.log2(SIZE_SCALE_MIN), np.log2(SIZE_SCALE_MAX)
    return float(np.clip((np.log2(max(float(size), 1e-9)) - lo) / (hi - lo), 0.0, 1.0))


def size_scale_stops(per_octave: int = 4) -> list[tuple[float, tuple[int, int, int]]]:
    """``[(position 0..1, (r, g, b)), ...]`` along the colour scale, ``per_octave`` stops per doubling
    (a divisor of ``SIZE_LEVELS_PER_OCTAVE``): a gradient through them (CSS ``linear-gradient``, a
    Plotly colour scale) shows the scale's colours to within a quarter of an octave's step."""
    per_octave = check_int("per_octave", per_octave, 1, SIZE_LEVELS_PER_OCTAVE)
    if SIZE_LEVELS_PER_OCTAVE % per_octave:
        raise ValueError(f"per_octave must divide {SIZE_LEVELS_PER_OCTAVE}, got {per_octave}")
    step = SIZE_LEVELS_PER_OCTAVE // per_octave
    return [(k / (_N_LEVELS - 1), (int(_SCALE_RGB[k][0]), int(_SCALE_RGB[k][1]), int(_SCALE_RGB[k][2])))
            for k in range(0, _N_LEVELS, step)]


def display_shape(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    """``(h, w)`` scaled so the longer side is at most ``max_side`` (never enlarged)."""
    if max_side is None:
        return height, width
    max_side = check_int("max_side", max_side, 16, 16384)
    f = min(1.0, max_side / max(height, width))
    return max(1, round(height * f)), max(1, round(width * f))


def _to_uint8(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image must be RGB [H, W, 3], got shape {a.shape}")
    if a.dtype != np.uint8:
        a = (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
    if a.shape[:2] != shape:  # enlarged: nearest neighbour, every pixel a crisp square
        up = shape[0] >= a.shape[0] and shape[1] >= a.shape[1]
        a = cv2.resize(a, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST if up else cv2.INTER_AREA)
    return a


def overlay_shape(layout: PatchLayout, max_side: int | None = 1024, enlarge: int = 1) -> tuple[int, int]:
    """``(h, w)`` an overlay of ``layout`` is drawn at: the layout's frame enlarged ``enlarge`` times
    (an integer, for small frames such as a 64x64 model input), then scaled down to ``max_side``."""
    enlarge = check_int("enlarge", enlarge, 1, 64)
    return display_shape(layout.height * enlarge, layout.width * enlarge, max_side)


def colorize(saliency_map: np.ndarray, colormap: str = "turbo", max_side: int | None = None) -> np.ndarray:
    """A ``[0, 1]`` map as a colour image (uint8 RGB)."""
    check_choice("colormap", colormap, COLORMAPS)
    m: np.ndarray = np.asarray(saliency_map, np.float32)
    if m.ndim != 2:
        raise ValueError(f"saliency_map must be 2-D, got shape {m.shape}")
    h, w = m.shape
    shape = display_shape(h, w, max_side)
    if shape != m.shape:
        m = cv2.resize(m, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    u8 = (np.clip(np.nan_to_num(m), 0, 1) * 255 + 0.5).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(u8, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def heatmap(image: np.ndarray, saliency_map: np.ndarray, alpha: float = 0.5, colormap: str = "turbo",
            max_side: int | None = None) -> np.ndarray:
    """The saliency map in colour blended over the image (``alpha`` = heatmap opacity)."""
    alpha = check_float("alpha", alpha, 0.0, 1.0)
    if np.shape(saliency_map) != np.shape(image)[:2]:
        raise ValueError(f"saliency_map shape {np.shape(saliency_map)} does not match image {np.shape(image)[:2]}")
    col = colorize(saliency_map, colormap, max_side)
    base = _to_uint8(image, col.shape[:2])
    return cv2.addWeighted(col, alpha, base, 1.0 - alpha, 0.0)


def _paint(layout: PatchLayout, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Per display pixel: the box index into ``concat(boxes, dropped)`` (int32) and a uint8
    code (the box size's colour level, ``size_level``, ``+ _DROPPED`` for dropped boxes). The code
    comes from the box's size in the layout's frame, never from the drawn size.

    Boxes are painted on the coarsest grid that all box edges lie on (``g`` = gcd of all
    coordinates and sizes: ``min_size`` for a quadtree), which is small, then sampled at the
    display pixels' centres: cost ~ one gather per display pixel, whatever the box count.
    """
    allb = np.concatenate([layout.boxes, layout.dropped]).astype(np.int64)
    ch, cw = layout.canvas
    g = int(np.gcd.reduce(np.concatenate([allb.ravel(), [ch, cw]])))
    gh, gw = ch // g, cw // g
    y0, x0, n = allb[:, 0] // g, allb[:, 1] // g, allb[:, 2] // g
    y1, x1 = y0 + n, x0 + n
    ids_value = np.arange(len(allb), dtype=np.int64) + 1
    # Boxes tile the image, so each cell holding an image pixel sums exactly one box's value (padding
    # left uncovered reads -1 and is never sampled): a 2-D difference array (corners +v / -v, then
    # cumulative sums) paints all boxes at once.
    idx = np.concatenate([y0 * (gw + 1) + x0, y1 * (gw + 1) + x0, y0 * (gw + 1) + x1, y1 * (gw + 1) + x1])
    w = np.concatenate([ids_value, -ids_value, -ids_value, ids_value]).astype(np.float64)
    diff = np.bincount(idx, weights=w, minlength=(gh + 1) * (gw + 1)).reshape(gh + 1, gw + 1)
    grid_ids = (np.rint(diff.cumsum(0).cumsum(1)[:gh, :gw]) - 1).astype(np.int32)
    code = size_level(allb[:, 2])
    code[layout.num_tokens:] += _DROPPED
    grid_code = code.astype(np.uint8)[grid_ids]
    dh, dw = shape
    rows = np.minimum(((np.arange(dh) + 0.5) * (layout.height / dh) // g).astype(np.int64), gh - 1)
    cols = np.minimum(((np.arange(dw) + 0.5) * (layout.width / dw) // g).astype(np.int64), gw - 1)
    ids = grid_ids[rows].take(cols, axis=1)
    codes = grid_code[rows].take(cols, axis=1)
    return ids, codes


def _outline(ids: np.ndarray) -> np.ndarray:
    """uint8 mask (255) of pixels where the box id changes to the left or above (1 px lines)."""
    edge = np.zeros(ids.shape, bool)
    np.not_equal(ids[1:, :], ids[:-1, :], out=edge[1:, :])
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    return edge.view(np.uint8) * np.uint8(255)


def _code_lut() -> np.ndarray:
    lut = np.zeros((256, 3), np.uint8)
    lut[:_N_LEVELS] = _SCALE_RGB
    lut[_DROPPED:_DROPPED + _N_LEVELS] = _SCALE_RGB
    return lut.reshape(256, 1, 3).transpose(1, 0, 2).copy()


_LUT = _code_lut()


def layout_overlay(image: np.ndarray, layout: PatchLayout, max_side: int | None = 1024,
                   fill_alpha: float = 0.15, dropped_dim: float = 0.35, enlarge: int = 1) -> np.ndarray:
    """Boxes tinted and outlined in their size's colour (``size_color`` of the size in the layout's
    frame, whatever the drawn size); dropped boxes dimmed. ``enlarge``: draw a small frame that many
    times larger (nearest neighbour, 1 px lines) before ``max_side`` applies (``overlay_shape``);
    ``image`` may be at any size, it is resized to the drawing."""
    fill_alpha = check_float("fill_alpha", fill_alpha, 0.0, 1.0)
    dropped_dim = check_float("dropped_dim", dropped_dim, 0.0, 1.0)
    shape = overlay_shape(layout, max_side, enlarge)
    base = _to_uint8(image, shape)
    ids, code = _paint(layout, shape)
    colour = cv2.LUT(cv2.merge([code, code, code]), _LUT)
    out = cv2.addWeighted(base, 1.0 - fill_alpha, colour, fill_alpha, 0.0)
    if len(layout.dropped):
        cv2.copyTo(cv2.convertScaleAbs(base, alpha=dropped_dim), (code >= _DROPPED).view(np.uint8), out)
    cv2.copyTo(colour, _outline(ids), out)
    return out


def token_map(image: np.ndarray, layout: PatchLayout, dim: float = 0.3, max_side: int | None = 1024,
              line_color: tuple[int, int, int] = (255, 255, 255),
              dropped_tint: tuple[int, int, int] | None = None, enlarge: int = 1) -> np.ndarray:
    """Kept tokens at full brightness with thin outlines; dropped tokens greyed and dimmed to ``dim``
    (and, with ``dropped_tint``, washed with that colour: readable on dark images too). ``enlarge``:
    as for ``layout_overlay``."""
    dim = check_float("dim", dim, 0.0, 1.0)
    shape = overlay_shape(layout, max_side, enlarge)
    base = _to_uint8(image, shape)
    ids, code = _paint(layout, shape)
    dropped = (code >= _DROPPED).view(np.uint8)
    out = base.copy()
    if len(layout.dropped):
        grey = cv2.cvtColor(cv2.cvtColor(base, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)
        faded = cv2.convertScaleAbs(cv2.addWeighted(grey, 0.6, base, 0.4, 0.0), alpha=dim)
        if dropped_tint is not None:
            faded = cv2.addWeighted(faded, 0.5, np.full_like(faded, dropped_tint), 0.5, 0.0)
        cv2.copyTo(faded, dropped, out)
    edge = cv2.bitwise_and(_outline(ids), cv2.bitwise_not(dropped * np.uint8(255)))
    lines = cv2.addWeighted(out, 0.4, np.full_like(out, line_color), 0.6, 0.0)
    cv2.copyTo(lines, edge, out)
    return out


def to_png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 RGB (or grey) array as PNG."""
    a = np.asarray(image)
    if a.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {a.dtype}")
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` (``[H, W]`` or ``[H, W, C]``) enlarged by an integer ``factor``, nearest neighbour:
    every pixel becomes a ``factor x factor`` square (small model frames and grid maps for display)."""
    factor = check_int("factor", factor, 1, 1024)
    a = np.asarray(image)
    return a if factor == 1 else a.repeat(factor, axis=0).repeat(factor, axis=1)


def enlarge(image: np.ndarray, layout: PatchLayout, factor: int) -> tuple[np.ndarray, PatchLayout]:
    """A small image and its layout enlarged by an integer ``factor`` (nearest neighbour): the boxes
    then measure ``factor`` times their size. To draw a small frame larger, pass ``enlarge=factor``
    to ``layout_overlay`` or ``token_map`` instead: they keep each box's colour of its true size."""
    factor = check_int("factor", factor, 1, 64)
    big = upscale(image, factor)
    lay = PatchLayout(layout.height * factor, layout.width * factor,
                      (layout.canvas[0] * factor, layout.canvas[1] * factor),
                      layout.boxes.astype(np.int64) * factor, layout.dropped.astype(np.int64) * factor,
                      layout.strategy, dict(layout.params))
    return big, lay


def colorbar(colormap: str = "turbo", width: int = 512, height: int = 14,
             labels: tuple[str, ...] | list[str] = ("0", "1"),
             background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """A horizontal colour bar for a heatmap drawn with ``colormap``: uint8 RGB ``[H, W, 3]``.

    The top ``height`` rows are the colour map from 0 (left) to 1 (right), the same colours
    ``colorize`` and ``heatmap`` give; below it, on ``background``, the ``labels`` are written in
    black, spread evenly from the left end to the right end (the first left-aligned, the last
    right-aligned, the others centred). No labels: the gradient alone.
    """
    check_choice("colormap", colormap, COLORMAPS)
    width = check_int("width", width, 16, 4096)
    height = check_int("height", height, 1, 512)
    labels = [str(t) for t in labels]
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, width))
    bar = colorize(ramp, colormap)
    if not labels:
        return bar
    font, scale, thick = cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1
    (_, th), base = cv2.getTextSize("0", font, scale, thick)
    band = np.empty((th + base + 8, width, 3), np.uint8)
    band[:] = np.asarray(background, np.uint8)
    y = 4 + th
    for i, text in enumerate(labels):
        (tw, _), _ = cv2.getTextSize(text, font, scale, thick)
        if len(labels) == 1:
            x = 0
        else:
            at = i * (width - 1) / (len(labels) - 1)
            x = 0 if i == 0 else width - tw if i == len(labels) - 1 else round(at - tw / 2)
        cv2.putText(band, text, (int(max(0, min(x, width - tw))), y), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
    return np.ascontiguousarray(np.concatenate([bar, band], axis=0))
