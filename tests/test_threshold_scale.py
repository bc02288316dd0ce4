"""The slider scale of a threshold curve (``adapatch.threshold_scale``): monotone, both ends are the
finest and the coarsest layouts, and on a ~1 MP photo most of the 201 positions give a distinct
token count (issue 21: "at least 100 of the slider's positions give distinct token counts")."""

from __future__ import annotations

import math

import numpy as np
import pytest

import adapatch as ap
from adapatch.threshold_scale import (POSITIONS, ThresholdScale, curve_points, threshold_scale)

PHOTOS = ("chelsea", "astronaut", "coffee", "text")
SIZE = (1152, 864)  # width, height: ~1 MP


def _photo(name: str) -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    cv2 = pytest.importorskip("cv2")
    a = getattr(skdata, name)()
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    a = np.ascontiguousarray(a[..., :3])
    interp = cv2.INTER_AREA if a.shape[1] > SIZE[0] else cv2.INTER_CUBIC
    return cv2.resize(a, SIZE, interpolation=interp).astype(np.float32) / 255.0


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    return {n: _photo(n) for n in PHOTOS}


# distinct token counts over 201 positions, measured (chelsea, astronaut, coffee, text at 1152x864, 16-64 px):
# distortion 196/172/195/197, std 189/173/197/197, variance 193/146/152/196, entropy 149/148/151/167,
# mean_saliency 125/144/138/151, max_saliency 105/121/106/125 (saliency maxima tie a lot)
AT_LEAST = {"distortion": 150, "std": 150, "entropy": 120, "max_saliency": 100}


@pytest.mark.parametrize("importance", list(AT_LEAST))
@pytest.mark.parametrize("name", PHOTOS)
def test_most_positions_give_distinct_token_counts_on_a_1mp_photo(photos, name: str, importance: str) -> None:
    curve = ap.threshold_curve(photos[name], min_size=16, max_size=64, importance=importance)
    scale = threshold_scale(curve)
    assert len(scale) == POSITIONS
    tokens = scale.tokens(curve)
    assert np.all(np.diff(scale.thresholds) > 0)  # strictly increasing thresholds
    assert np.all(np.diff(tokens) <= 0)  # never more tokens further right
    assert len(np.unique(tokens)) >= AT_LEAST[importance], (name, importance, len(np.unique(tokens)))
    assert tokens[0] == curve.tokens_at(0.0)
    assert tokens[0] == max(curve.tokens_at(np.concatenate([[0.0], curve.thresholds])))  # the finest layout
    assert tokens[-1] == curve.base_tokens  # the coarsest: max_size squares only
    assert scale.thresholds[0] == 0.0 and scale.thresholds[-1] >= curve.thresholds[-1]
    if importance != "distortion":
        assert scale.thresholds[-1] <= 1.0 and not scale.unbounded
    else:
        assert scale.unbounded


def test_distortion_scale_is_log_spaced_lambda(photos) -> None:
    curve = ap.threshold_curve(photos["chelsea"], min_size=16, max_size=64, importance="distortion")
    scale = threshold_scale(curve)
    ratios = scale.thresholds[2:-1] / scale.thresholds[1:-2]
    assert np.allclose(ratios, np.median(ratios), rtol=0.06)  # one factor a step (rounded to 3 digits)
    pos = curve.thresholds[curve.thresholds > 0]
    assert scale.thresholds[1] == pytest.approx(np.quantile(pos, 0.02), rel=5e-3)
    assert scale.thresholds[-2] == pytest.approx(np.quantile(pos, 0.98), rel=5e-3)
    assert scale.thresholds[-1] > 1.0  # lambda is not confined to [0, 1]


def test_positions_round_to_three_significant_digits_and_round_trip(photos) -> None:
    curve = ap.threshold_curve(photos["astronaut"], min_size=16, max_size=64, importance="distortion")
    scale = threshold_scale(curve)
    for t in scale.thresholds[1:-1]:
        assert float(f"{t:.3g}") == t
    positions = np.arange(len(scale))
    assert np.array_equal(scale.position_of(scale.thresholds), positions)  # vectorised
    assert np.array_equal(scale.threshold_at(positions), scale.thresholds)
    assert scale.position_of(0.0) == 0 and scale.threshold_at(-5) == 0.0
    assert scale.threshold_at(10_000) == scale.thresholds[-1] and scale.position_of(1e12) == scale.last
    mid = math.sqrt(scale.thresholds[50] * scale.thresholds[51])  # between two positions, in log
    assert scale.position_of(mid * 0.999) == 50 and scale.position_of(mid * 1.001) == 51
    f = scale.fractional_position(scale.thresholds[1:])
    assert np.all(np.diff(f) > 0)


def test_layouts_at_the_positions_are_the_librarys(photos) -> None:
    img = photos["text"]
    curve = ap.threshold_curve(img, min_size=16, max_size=64, importance="distortion")
    scale = threshold_scale(curve)
    for p in (0, 1, 40, 100, 160, scale.last - 1, scale.last):
        t = scale.threshold_at(p)
        lay = ap.quadtree(img, threshold=t, min_size=16, max_size=64, importance="distortion")
        assert lay.num_tokens == scale.tokens(curve)[p], p


def test_including_inserts_an_exact_threshold() -> None:
    scale = ThresholdScale(np.array([0.0, 1.0, 2.0, 4.0]), math.inf)
    assert list(scale.including(3.14159)) == [0.0, 1.0, 2.0, 3.14159, 4.0]
    assert list(scale.including(2.0)) == [0.0, 1.0, 2.0, 4.0]
    assert list(scale.including(100.0)) == [0.0, 1.0, 2.0, 4.0, 100.0]
    with pytest.raises(ValueError):
        ThresholdScale(np.array([0.0, 0.5, 1.0]), 1.0).including(2.0)


def test_flat_image_and_tiny_image_still_give_a_valid_scale() -> None:
    flat = np.full((200, 300, 3), 0.4, np.float32)
    for importance, limit in (("distortion", math.inf), ("std", 1.0)):
        curve = ap.threshold_curve(flat, min_size=16, max_size=64, importance=importance)
        scale = threshold_scale(curve)
        assert scale.limit == limit and len(scale) == POSITIONS
        assert np.all(np.diff(scale.thresholds) > 0) and scale.thresholds[-1] <= limit
        assert len(np.unique(scale.tokens(curve))) == 1  # nothing splits anywhere
    tiny = np.random.default_rng(3).random((20, 20, 3)).astype(np.float32)
    curve = ap.threshold_curve(tiny, min_size=16, max_size=32, importance="distortion")
    scale = threshold_scale(curve)
    assert scale.tokens(curve)[0] == curve.max_tokens and scale.tokens(curve)[-1] == curve.base_tokens


def test_a_query_keeps_thresholds_in_unit_range(photos) -> None:
    img = photos["coffee"]
    q = np.zeros(img.shape[:2])
    q[200:500, 300:700] = 1.0
    curve = ap.threshold_curve(img, min_size=16, max_size=64, importance="distortion", query=q, query_weight=0.5)
    scale = threshold_scale(curve)
    assert scale.limit == 1.0 and scale.thresholds[-1] <= 1.0
    assert scale.tokens(curve)[-1] == curve.base_tokens
    assert len(np.unique(scale.tokens(curve))) >= 100


def test_curve_points_trace_the_step_curve_on_the_log_range(photos) -> None:
    curve = ap.threshold_curve(photos["chelsea"], min_size=16, max_size=64, importance="distortion")
    scale = threshold_scale(curve)
    xs, ys = curve_points(curve, scale, max_points=300)
    lo, hi = scale.log_range
    assert len(xs) <= 300 and xs[0] == lo and xs[-1] == hi and np.all(np.diff(xs) > 0)
    assert np.array_equal(ys, curve.tokens_at(xs)) and np.all(np.diff(ys) <= 0)
    assert lo < scale.thresholds[1] and hi > scale.thresholds[-1]


def test_bad_arguments_raise() -> None:
    curve = ap.threshold_curve(np.zeros((64, 64, 3), np.float32), min_size=16, max_size=64)
    with pytest.raises(ValueError):
        threshold_scale(curve, positions=2)
    with pytest.raises(ValueError):
        threshold_scale(curve, limit=0.0)


# ------------------------------------------------------------------ multiscale's hull (adapatch.rd_hull)
# distinct token counts over 201 positions of an RDHull's scale, measured (1152x864, levels 2, token 16):
# chelsea 153, astronaut 170, coffee 197, text 103, brick 96 (its hull has 347 breakpoints, text's 626);
# camera 193, coins 154, moon 187, hubble_deep_field 155, immunohistochemistry 48 (104 breakpoints)
HULL_AT_LEAST = {"chelsea": 140, "astronaut": 150, "coffee": 180, "text": 95, "brick": 90}


@pytest.fixture(scope="module")
def hulls(photos) -> dict:
    imgs = {**photos, "brick": _photo("brick")}
    return {n: (imgs[n], ap.rd_hull(imgs[n])) for n in HULL_AT_LEAST}


@pytest.mark.parametrize("name", list(HULL_AT_LEAST))
def test_hull_scale_spans_every_layout_of_the_hull(hulls, name: str) -> None:
    """An RDHull takes the place of a ThresholdCurve: lambda (unbounded), position 0 the finest layout
    (the hull's last point), the last position the coarsest (its first), monotone, most positions
    distinct; every coarse uniform grid of the hull has a position of its own."""
    _, hull = hulls[name]
    scale = threshold_scale(hull)
    assert len(scale) == POSITIONS and scale.unbounded and math.isinf(scale.limit)
    tokens = scale.tokens(hull)
    assert np.all(np.diff(scale.thresholds) > 0) and np.all(np.diff(tokens) <= 0)
    assert tokens[0] == hull.tokens[-1] and tokens[-1] == hull.tokens[0]
    assert scale.thresholds[0] == 0.0 and scale.thresholds[-1] >= hull.slopes[0]
    assert len(np.unique(tokens)) >= HULL_AT_LEAST[name], (name, len(np.unique(tokens)))
    assert set(hull.tokens[:8].tolist()) <= set(tokens.tolist())  # the 8 coarsest layouts: each reachable
    for p in (0, 1, 60, 150, scale.last - 3, scale.last):
        t = scale.threshold_at(p)
        assert hull.layout(t).num_tokens == tokens[p] == hull.tokens_at(t), (name, p)


def test_hull_scale_is_log_spaced_up_to_its_high_quantile(hulls) -> None:
    _, hull = hulls["chelsea"]
    scale = threshold_scale(hull)
    pos = np.sort(hull.slopes)
    tail = int((pos > np.quantile(pos, 0.98)).sum())  # breakpoints above the quantile: one position each
    log_part = scale.thresholds[1:len(scale) - tail]
    ratios = log_part[1:] / log_part[:-1]
    assert np.allclose(ratios, np.median(ratios), rtol=0.06)  # one factor a step (3 significant digits)
    assert log_part[0] == pytest.approx(np.quantile(pos, 0.02), rel=5e-3)
    assert log_part[-1] == pytest.approx(np.quantile(pos, 0.98), rel=5e-3)
    for t in scale.thresholds[1:]:
        assert float(f"{t:.3g}") == t or t == scale.thresholds[-1]


def test_hull_curve_points_and_a_flat_image(hulls) -> None:
    _, hull = hulls["text"]
    scale = threshold_scale(hull)
    xs, ys = curve_points(hull, scale, max_points=300)
    lo, hi = scale.log_range
    assert len(xs) <= 300 and xs[0] == lo and xs[-1] == hi and np.all(np.diff(xs) > 0)
    assert np.array_equal(ys, hull.tokens_at(xs)) and np.all(np.diff(ys) <= 0)
    flat = ap.rd_hull(np.full((200, 300, 3), 0.4, np.float32))
    scale = threshold_scale(flat)
    assert np.all(np.diff(scale.thresholds) > 0) and scale.unbounded
    assert set(scale.tokens(flat).tolist()) <= set(flat.tokens.tolist())
