"""Slider positions <-> quadtree thresholds: a scale that spans where an image's token count changes.

A threshold-mode quadtree's token count is a step function of the threshold (``ThresholdCurve``):
it only changes at the curve's breakpoints. For ``importance="distortion"`` the threshold is
``lambda`` (the squared error a split must remove per added token, ``quadtree_engine.LAMBDA_UNIT``),
unbounded, and a photo's breakpoints run over four to six decades (``astronaut``: 0.002 to 3,300).
A linear slider over any fixed range is then mostly dead travel; this module gives a slider the
positions that matter for one image:

* position 0 is threshold 0: the finest layout (every split that removes anything);
* positions 1 .. n-2 are log-spaced (``numpy.geomspace``) from the ``LOW_QUANTILE`` to the
  ``HIGH_QUANTILE`` of the curve's positive breakpoints: each step multiplies the threshold by the
  same factor, and a stray tiny or huge breakpoint does not stretch the range;
* the last position is at or above the largest breakpoint: the coarsest layout (``max_size``
  squares only).

Thresholds are rounded to ``digits`` significant digits (3: "37.2"), more only where neighbours
would collide, so what a slider shows is the exact threshold it sets (the last position is
rounded up, so it stays at or above the largest breakpoint).

The same construction serves the importances in [0, 1] (``std``, ``variance``, ``entropy``, the
saliency ones, and every importance mixed with a query): their thresholds keep their meaning and
stay within ``[0, 1]`` (``quadtree_engine.threshold_limit``); only the spacing is log.

Measured (201 positions, 16-64 px, ten scikit-image photos resized to 1152x864: chelsea, astronaut,
coffee, text, camera, coins, brick, moon, hubble_deep_field, immunohistochemistry): a plain log
scale from the smallest to the largest positive breakpoint gives 103-189 distinct token counts for
``distortion`` (``immunohistochemistry`` 103: a few breakpoints near 0.002 stretch it) and 87-187
for ``std``; the 2%-98% quantile range gives 171-199 and 174-199. Spacing by quantiles alone gives
201 on every image, but then a step is no longer one factor of ``lambda`` (the slider becomes a
second budget slider); a 50/50 blend of the two changed the counts by -4 to +17. The log scale
between quantiles is kept. ``tests/test_threshold_scale.py`` holds the numbers for four photos.

``multiscale``'s threshold mode has the same kind of step function: its ``RDHull``
(``adapatch.rd_hull``) changes the token count at its ``slopes`` (lambda, in the same unit). Every
function here takes an ``RDHull`` where it takes a ``ThresholdCurve``: the breakpoints are its
slopes, the limit is ``inf`` (lambda), the finest layout is the hull's last point (lambda 0) and
the coarsest its first (a uniform grid of the ladder's largest size). A hull's scale also gives
each breakpoint above its high quantile a position of its own (``HULL_TAIL``): those are the coarse
uniform grids, few, and spread over decades of lambda.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeGuard, Union, cast

import numpy as np

from .quadtree import ThresholdCurve
from .quadtree_engine import threshold_limit
from .validation import check_float, check_int

POSITIONS = 201
"""Default number of slider positions (0 .. 200)."""
LOW_QUANTILE = 0.02
"""Position 1 sits at this quantile of the curve's positive breakpoints."""
HIGH_QUANTILE = 0.98
"""The last log-spaced position (n-2) sits at this quantile of the positive breakpoints."""
SIGNIFICANT_DIGITS = 3
"""Thresholds of the scale are rounded to this many significant digits (more where needed)."""
MIN_SPAN = 10.0
"""The log-spaced part spans at least this factor (a curve whose breakpoints nearly coincide)."""
FALLBACK = {"lambda": (0.1, 1000.0), "unit": (0.001, 1.0)}
"""Range of the log-spaced part when the curve has no positive breakpoint (no split changes the
token count: every position gives the same layout)."""


def _round_sig(x: np.ndarray, digits: int, up: bool = False) -> np.ndarray:
    """``x`` (>= 0) rounded to ``digits`` significant digits (``up``: towards +inf); 0 stays 0."""
    x = np.asarray(x, dtype=np.float64)
    out = x.copy()
    pos = x > 0
    if not pos.any() or digits >= 17:
        return out
    scale = 10.0 ** (digits - 1 - np.floor(np.log10(x[pos])))
    r = (np.ceil(x[pos] * scale) if up else np.round(x[pos] * scale)) / scale
    if up:  # ceil of a product can land a hair below x after the division: never below
        r = np.where(r < x[pos], np.nextafter(r, np.inf), r)
    out[pos] = r
    return out


if TYPE_CHECKING:
    from .rd_hull import RDHull

Curve = Union[ThresholdCurve, "RDHull"]
"""What a scale is made for: a quadtree's ``ThresholdCurve`` or ``multiscale``'s ``RDHull``."""


def is_hull(curve: Curve) -> TypeGuard[RDHull]:
    """Whether ``curve`` is an ``RDHull`` (breakpoints in ``slopes``) rather than a ``ThresholdCurve``."""
    return not isinstance(curve, ThresholdCurve) and hasattr(curve, "slopes")


def breakpoints(curve: Curve) -> np.ndarray:
    """The thresholds at which ``curve``'s token count changes, ascending: a ``ThresholdCurve``'s
    ``thresholds``, an ``RDHull``'s ``slopes`` (stored descending)."""
    if is_hull(curve):
        return np.sort(np.asarray(curve.slopes, dtype=np.float64))
    return np.asarray(cast(ThresholdCurve, curve).thresholds, dtype=np.float64)  # or another curve with thresholds


def _curve_limit(curve: Curve) -> float:
    if is_hull(curve):
        return math.inf  # lambda
    return threshold_limit(str(curve.params.get("importance", "")), "query" in curve.params)


@dataclass(frozen=True)
class ThresholdScale:
    """Thresholds at a slider's positions: ``thresholds[i]`` is position ``i`` (ascending, unique,
    ``thresholds[0] == 0``), ``limit`` the largest threshold allowed (``inf`` for ``lambda``)."""

    thresholds: np.ndarray
    limit: float

    def __len__(self) -> int:
        return len(self.thresholds)

    @property
    def unbounded(self) -> bool:
        """Whether the thresholds are ``lambda`` (no upper limit) rather than values in [0, 1]."""
        return math.isinf(self.limit)

    @property
    def last(self) -> int:
        """The last position (``len(self) - 1``)."""
        return len(self.thresholds) - 1

    @property
    def log_range(self) -> tuple[float, float]:
        """``(low, high)``: a positive range holding every positive position with one log step of
        margin on each side (for a log axis; position 0's threshold 0 sits at ``low``)."""
        pos = self.thresholds[1:]
        step = self.step_factor
        return float(pos[0] / step), float(pos[-1] * step)

    @property
    def step_factor(self) -> float:
        """The factor one position multiplies the threshold by (the median over the positive
        positions; 10 when there are fewer than two)."""
        pos = self.thresholds[1:]
        if len(pos) >= 2:
            return float(np.exp(np.median(np.diff(np.log(pos)))))
        return 10.0

    def threshold_at(self, position: int | np.ndarray) -> float | np.ndarray:
        """The threshold at ``position`` (vectorised; positions outside ``0 .. last`` are clipped)."""
        p = np.clip(np.asarray(position, dtype=np.int64), 0, self.last)
        out = self.thresholds[p]
        return float(out) if out.ndim == 0 else out

    def fractional_position(self, threshold: float | np.ndarray) -> float | np.ndarray:
        """Where ``threshold`` falls between positions, interpolated in ``log(threshold)``
        (vectorised). Threshold 0 (or less) is position 0; position 0 counts as one log step below
        position 1; thresholds beyond the last position are the last position."""
        t = np.asarray(threshold, dtype=np.float64)
        logs = np.log(self.thresholds[1:])
        if len(logs) == 0:
            out = np.zeros_like(t)
        else:
            xp = np.concatenate([[logs[0] - np.log(self.step_factor)], logs])
            with np.errstate(divide="ignore", invalid="ignore"):
                x = np.log(np.where(t > 0, t, 1.0))
            out = np.where(t > 0, np.interp(x, xp, np.arange(len(xp), dtype=np.float64)), 0.0)
        return float(out) if out.ndim == 0 else out

    def position_of(self, threshold: float | np.ndarray) -> int | np.ndarray:
        """The nearest position to ``threshold`` in log scale (vectorised; see
        ``fractional_position``). ``position_of(threshold_at(i)) == i`` for every position."""
        f = np.floor(np.asarray(self.fractional_position(threshold)) + 0.5).astype(np.int64)
        return int(f) if f.ndim == 0 else f

    def including(self, threshold: float) -> np.ndarray:
        """The scale's thresholds with ``threshold`` inserted in order (a slider that must show a
        value off the grid exactly: a solved or stored threshold). Unchanged if it is on the grid."""
        t = check_float("threshold", threshold, 0.0, self.limit)
        return np.unique(np.append(self.thresholds, t))

    def tokens(self, curve: Curve) -> np.ndarray:
        """Token count at every position (``curve.tokens_at``), non-increasing."""
        return np.asarray(curve.tokens_at(self.thresholds))


HULL_TAIL = 40
"""At most this many positions of an ``RDHull``'s scale go to the breakpoints above its high quantile."""


def _tail(pos: np.ndarray, hi: float, positions: int) -> np.ndarray:
    """The breakpoints of a hull above ``hi`` (its ``HIGH_QUANTILE``), one position each (at most
    ``HULL_TAIL``, thinned evenly, the largest kept; never more than a quarter of ``positions``).

    A hull's coarse end is a few uniform grids whose breakpoints spread over decades of lambda (on a
    1152x864 photo the last 2% of ~600 breakpoints hold every grid from about 950 tokens down to 20):
    a log scale that stops at the quantile would reach all of them only at its last position, one
    that runs to the largest breakpoint spends most of its positions where nothing changes. So the
    log part stops at the quantile, and each coarser layout gets a position of its own (the
    breakpoint rounded up: the position gives that layout)."""
    above = np.unique(pos[pos > hi])
    most = max(1, min(HULL_TAIL, positions // 4))
    if len(above) > most:
        above = above[np.unique(np.linspace(0, len(above) - 1, most).round().astype(int))]
    return above


def threshold_scale(curve: Curve, positions: int = POSITIONS, *, limit: float | None = None,
                    digits: int = SIGNIFICANT_DIGITS) -> ThresholdScale:
    """The slider scale of ``curve`` (module docstring): ``positions`` thresholds, ascending.

    Args:
        curve: the image's exact ``ThresholdCurve`` (``adapatch.threshold_curve``), or its ``RDHull``
            (``adapatch.rd_hull``: ``multiscale``'s threshold mode, breakpoints at its slopes).
        positions: number of slider positions (at least 3); the result has this many, fewer only
            when rounding or the ``[0, 1]`` limit leaves fewer distinct thresholds.
        limit: largest allowed threshold; default from the curve's importance and query
            (``quadtree_engine.threshold_limit``: ``inf`` for ``distortion`` without a query, else 1).
        digits: significant digits the thresholds are rounded to (more where neighbours collide).
    """
    positions = check_int("positions", positions, 3)
    digits = check_int("digits", digits, 1, 17)
    if limit is None:
        limit = _curve_limit(curve)
    elif not float(limit) > 0:
        raise ValueError(f"limit must be > 0 (or inf), got {limit!r}")
    limit = float(limit)
    unbounded = math.isinf(limit)
    th = breakpoints(curve)
    pos = th[th > 0]
    if len(pos) == 0:
        lo, hi = FALLBACK["lambda" if unbounded else "unit"]
        lo, hi = min(lo, limit), min(hi, limit)
        top = hi
    else:
        lo, hi = (float(v) for v in np.quantile(pos, [LOW_QUANTILE, HIGH_QUANTILE]))
        top = float(pos[-1])
    if hi < lo * MIN_SPAN:  # breakpoints (nearly) coincide: centre a range of MIN_SPAN on them
        widen = math.sqrt(MIN_SPAN * lo / hi) if hi > 0 else math.sqrt(MIN_SPAN)
        lo, hi = lo / widen, hi * widen
    if hi > limit:
        hi = limit
        lo = min(lo, hi / MIN_SPAN)
    tail = _tail(pos, hi, positions) if is_hull(curve) and unbounded and len(pos) else np.zeros(0)
    n_log = positions - 2 - max(len(tail) - 1, 0)
    step = (hi / lo) ** (1.0 / max(n_log - 1, 1))
    if len(tail):  # a hull: the log part up to the high quantile, then every coarser layout, the last at the top
        middle = np.geomspace(lo, hi, n_log)
        ends = tail
    elif hi * step <= limit:
        middle = np.geomspace(lo, hi, n_log)  # lo > 0: a quantile of positive values, or the fallback
        ends = np.array([max(top, hi * step)])
    else:  # the log part ends one step below the limit, the last position is the limit itself
        middle = np.geomspace(lo, limit, n_log + 1)[:-1]
        ends = np.array([limit])
    for d in range(digits, 18):
        values = np.concatenate([[0.0], _round_sig(middle, d), _round_sig(ends, d, up=True)])
        values[-1] = min(values[-1], limit)
        if np.all(np.diff(values) > 0):
            break
    values = np.unique(values)  # strictly increasing (already so unless 17 digits could not separate them)
    return ThresholdScale(values, float(limit))


def curve_points(curve: Curve, scale: ThresholdScale, max_points: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """``(thresholds, tokens)`` tracing the step curve over the scale's ``log_range`` for a plot with a
    log threshold axis: every position of the scale, the breakpoints in range (thinned evenly by
    rank to at most ``max_points`` in all) and both ends of the range."""
    max_points = check_int("max_points", max_points, 2)
    lo, hi = scale.log_range
    th = breakpoints(curve)
    inside = th[(th >= lo) & (th <= hi)]
    room = max(max_points - len(scale) - 2, 0)
    if len(inside) > room:
        inside = inside[np.unique(np.linspace(0, len(inside) - 1, room).round().astype(int))] if room else inside[:0]
    grid = scale.thresholds[(scale.thresholds >= lo) & (scale.thresholds <= hi)]
    xs = np.unique(np.concatenate([[lo, hi], grid, inside]))
    return xs, np.asarray(curve.tokens_at(xs))
