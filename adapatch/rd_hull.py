"""One image's rate-distortion hull: every layout a lambda can choose, quadtree or uniform grid.

``multiscale``'s threshold mode. At lambda (``quadtree_engine.LAMBDA_UNIT``: the squared error a
token must remove, 8-bit levels^2 of MSE over 256 px) each candidate has its Lagrangian layout,
and the image takes the one of least ``error + lambda * tokens``. The candidates are the
``distortion`` quadtree (boxes ``token_size * 2**k``, ``k <= levels``: its Lagrangian layouts at
every lambda, exactly, from the collapse points) and the uniform grids of a ladder of patch sizes
(any integer size; on a stationary texture a grid of an in-between size beats every mix of
power-of-two boxes). Over all of them the choices form the lower convex hull of
``(tokens, error)``: point ``k`` is taken for lambda in ``[slopes[k], slopes[k - 1])``. So the
token count is a step function of lambda with the hull's slopes as breakpoints, exact, and one
lambda over many images gives every image the same error removed per token, whichever kind of
layout it takes.

Errors are squared errors over the image's pixels (all channels, values in [0, 1]) of what a
``token_size`` embedding sees: exact for the quadtree (its squares' errors with the padding's share
removed, ``quality.image_sse_levels``) and from OpenCV's area resizes for the grids
(``quality.uniform_quality``, float32: within about 1e-6 of the image's sum of squares).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .importance import TOKEN_SIZE, pad_to_canvas, reconstruction_sse
from .layout import PatchLayout, uniform
from .quadtree import PathImportance
from .quadtree_engine import LAMBDA_UNIT, path_minima, prepare
from .validation import check_float, check_int, check_power_of_two, check_rgb

UNIFORM_SIZES = 28
"""Patch sizes of the uniform-grid candidates: geometrically spaced from the token size to 16x it
(or the image's long side), rounded, distinct."""


@dataclass
class RDHull:
    """The lower convex hull of one image's candidate layouts (module docstring).

    ``tokens`` ascend and ``error`` descends along the hull; ``kinds[k]`` is ``"quadtree"`` or
    ``"uniform"`` and ``values[k]`` the quadtree threshold that gives point ``k`` (the next smaller
    collapse point) or the grid's patch size; ``slopes[k]`` (lambda units, descending) is where
    point ``k + 1`` takes over from point ``k``.
    """

    height: int
    width: int
    tokens: np.ndarray
    error: np.ndarray
    kinds: list[str]
    values: np.ndarray
    slopes: np.ndarray
    quad: PathImportance
    params: dict[str, Any] = field(default_factory=dict)

    def index(self, lam: float | np.ndarray) -> int | np.ndarray:
        """The hull point chosen at ``lam``: how many breakpoints lie above it."""
        t = np.asarray(lam, np.float64)
        out = len(self.slopes) - np.searchsorted(self.slopes[::-1], t, side="right")
        return int(out) if out.ndim == 0 else out

    def tokens_at(self, lam: float | np.ndarray) -> int | np.ndarray:
        """Tokens of the layout at ``lam`` (vectorised)."""
        out = self.tokens[np.asarray(self.index(lam))]
        return int(out) if np.ndim(out) == 0 else out

    def threshold_for(self, budget: int) -> float:
        """The smallest lambda whose layout has at most ``budget`` tokens (0.0 when every point fits)."""
        budget = check_int("budget", budget, 1)
        fits = np.flatnonzero(self.tokens <= budget)
        if not len(fits):
            raise ValueError(f"budget must be >= {int(self.tokens[0])} (the coarsest layout of a "
                             f"{self.height}x{self.width} image), got {budget}")
        k = int(fits[-1])
        return float(self.slopes[k]) if k < len(self.slopes) else 0.0

    def layout(self, lam: float) -> PatchLayout:
        """The layout ``multiscale(image, threshold=lam, ...)`` gives, from the hull alone."""
        lam = check_float("threshold", lam, 0.0)
        k = self.index(lam)
        params = {**self.params, "threshold": lam}
        if self.kinds[k] == "uniform":
            size = int(self.values[k])
            lay = uniform(self.height, self.width, size)
            params.update(base_size=size, levels_used=0)
        else:
            lay = self.quad.layout(float(self.values[k]))
            params.update(base_size=self.params["token_size"], levels_used=self.params["levels"])
        return PatchLayout(self.height, self.width, lay.canvas, lay.boxes, strategy="multiscale", params=params)

    def lagrangian(self, lam: float) -> float:
        """``error + lambda * tokens`` of the chosen layout (gain units: errors in [0, 1]^2 sums)."""
        k = self.index(lam)
        return float(self.error[k] + lam / LAMBDA_UNIT * self.tokens[k])


def candidate_points(image: np.ndarray, levels: int = 2, token_size: int = TOKEN_SIZE,
                     sizes: list[int] | None = None) -> tuple[list[tuple[int, float, str, float]], PathImportance]:
    """Every candidate ``(tokens, error, kind, value)`` of ``image``: the quadtree's Lagrangian layouts
    (one per distinct collapse point, plus no split) and the uniform grids of ``sizes`` (default: the
    ``UNIFORM_SIZES`` ladder); and the quadtree's ``PathImportance``."""
    from .quality import image_sse_levels, uniform_quality

    img = check_rgb(image)
    levels = check_int("levels", levels, 0, 8)
    token_size = check_power_of_two("token_size", token_size, 1, 1024)
    h, w = img.shape[:2]
    prep = prepare(img, None, token_size, token_size << levels, "distortion", token_size=token_size)
    p = path_minima(prep.levels)
    values = np.concatenate([x[0].ravel() for x in p]) if p else np.zeros(0)
    quad = PathImportance(h, w, prep.canvas, prep.sizes, values, prep.params)
    padded = pad_to_canvas(img[None], prep.canvas)[0]
    sse = image_sse_levels(img, padded, prep.sizes,
                           [e[0] for e in reconstruction_sse(padded[None], prep.sizes, token_size)], token_size)
    points: list[tuple[int, float, str, float]] = []
    curve = quad.curve()
    top = float(values.max(initial=0.0))
    points.append((int(curve.tokens_at(top)), float(sse[0].sum()), "quadtree", top))
    if len(values):
        gains = np.concatenate([(sse[i] - sse[i + 1].reshape(sse[i].shape[0], 2, sse[i].shape[1], 2).sum(axis=(1, 3)))
                                .ravel() for i in range(len(prep.sizes) - 1)])
        order = np.argsort(-values, kind="stable")
        v, g = values[order], np.cumsum(gains[order])
        ends = np.flatnonzero(np.diff(v, append=-1.0) != 0)  # last member of each group of equal values
        ends = ends[v[ends] > 0]  # a value of 0 never splits at lambda >= 0
        below = np.append(v[ends[1:]], 0.0) if len(ends) else np.zeros(0)  # the next smaller value
        for e, t in zip(ends, below):
            points.append((int(curve.tokens_at(t)), float(sse[0].sum() - g[e]), "quadtree", float(t)))
    if sizes is None:
        hi = max(token_size, min(max(h, w), 16 * token_size))
        sizes = [int(s) for s in np.unique(np.round(np.geomspace(token_size, hi, UNIFORM_SIZES)))]
    uq = uniform_quality(img, sizes, token_size)
    n_values = 3 * h * w
    for n, psnr, s in zip(uq.tokens, uq.psnr, uq.extra["sizes"]):
        points.append((int(n), float(n_values * 10.0 ** (-psnr / 10.0)), "uniform", float(s)))
    return points, quad


def lower_hull(points: list[tuple[int, float, str, float]]) -> list[tuple[int, float, str, float]]:
    """The lower convex hull of ``(tokens, error, ...)`` points with strictly falling error: the
    points some ``lambda >= 0`` chooses (ties: fewer tokens, then the earlier point)."""
    pts = sorted(points, key=lambda x: (x[0], x[1]))
    hull: list[tuple[int, float, str, float]] = []
    for pt in pts:
        if hull and pt[1] >= hull[-1][1]:
            continue  # no less error for as many or more tokens
        while len(hull) >= 2:
            (x1, y1, *_), (x2, y2, *_) = hull[-2], hull[-1]
            if (y2 - y1) * (pt[0] - x1) >= (pt[1] - y1) * (x2 - x1):  # hull[-1] on or above the chord
                hull.pop()
            else:
                break
        hull.append(pt)
    return hull


def rd_hull(image: np.ndarray, *, levels: int = 2, token_size: int = TOKEN_SIZE,
            sizes: list[int] | None = None) -> RDHull:
    """The rate-distortion hull of ``image`` (module docstring): ``.layout(lam)``, ``.tokens_at(lam)``,
    ``.threshold_for(budget)``, exact over the candidates."""
    points, quad = candidate_points(image, levels, token_size, sizes)
    hull = lower_hull(points)
    tok = np.array([p[0] for p in hull], np.int64)
    err = np.array([p[1] for p in hull])
    slopes = (err[:-1] - err[1:]) / (tok[1:] - tok[:-1]) * LAMBDA_UNIT
    h, w = quad.height, quad.width
    params = {"levels": levels, "token_size": token_size, "candidates": "quadtree+uniform"}
    return RDHull(h, w, tok, err, [p[2] for p in hull], np.array([p[3] for p in hull]), slopes, quad, params)
