"""Saliency maps: where an image has detail worth tokens.

Every method maps a float32 RGB image ``[H, W, 3]`` to a float32 ``[H, W]`` map; the registry
min-max normalises it to ``[0, 1]`` (a constant map becomes all zeros, never NaN). New methods
plug in with ``register_saliency``; callers only ever use ``saliency(image, method, **params)``.
Methods that need the model package (``"attention"`` from a ViT) are plug-ins
(``adapatch.plugins``): listed here by the name ``adapatch.model_plugins`` registered, their module
imported the first time one is asked for (importing it registers the method).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from . import plugins
from .validation import check_float, check_int, check_rgb

SaliencyFn = Callable[..., np.ndarray]


@dataclass
class SaliencyMethod:
    """A registered saliency method: its function, defaults and UI ranges."""

    name: str
    fn: SaliencyFn | None
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    param_ranges: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    param_choices: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    module: str | None = None  # a plug-in's module, imported on first use (it registers the real function)
    reason: str = ""  # why the method is unavailable, if it is

    @property
    def available(self) -> bool:
        return self.fn is not None


_REGISTRY: dict[str, SaliencyMethod] = {}


def register_saliency(name: str, description: str = "", defaults: dict[str, Any] | None = None,
                      param_ranges: dict[str, tuple[float, float, float]] | None = None,
                      param_choices: dict[str, tuple[Any, ...]] | None = None,
                      ) -> Callable[[SaliencyFn], SaliencyFn]:
    """Decorator registering ``fn(image, **params) -> [H, W] map`` under ``name``.

    ``defaults`` default to the function's keyword defaults; ``param_ranges`` give
    ``(min, max, step)`` for numeric parameters so a UI can draw sliders; ``param_choices`` the
    allowed values of categorical parameters (a UI draws a select box).
    """

    def deco(fn: SaliencyFn) -> SaliencyFn:
        d = defaults
        if d is None:
            d = {k: p.default for k, p in inspect.signature(fn).parameters.items()
                 if p.default is not inspect.Parameter.empty}
        _REGISTRY[name] = SaliencyMethod(name, fn, description or (fn.__doc__ or "").strip().split("\n")[0],
                                         dict(d), dict(param_ranges or {}), dict(param_choices or {}))
        return fn

    return deco


def _announce_plugins() -> None:
    """List the saliency plug-ins (``adapatch.plugins``) not registered yet, unresolved: their
    modules are imported on first use, so torch models stay out of ``import adapatch``."""
    for p in plugins.registered("saliency"):
        if p.name not in _REGISTRY:
            _REGISTRY[p.name] = SaliencyMethod(p.name, None, p.description, module=p.module)


def _resolve(name: str) -> SaliencyMethod:
    _announce_plugins()
    m = _REGISTRY.get(name)
    if m is None:
        raise ValueError(f"method must be one of {', '.join(map(repr, _REGISTRY))}; got {name!r}")
    if m.fn is None and m.module:
        try:
            plugins.load("saliency", name)  # importing its module registers the method
        except Exception as e:  # noqa: BLE001 - optional dependency missing or broken: report, do not crash
            m.reason = f"{m.module} could not be imported: {type(e).__name__}: {e}"
        m = _REGISTRY[name]
    return m


def saliency_method(name: str) -> SaliencyMethod:
    """The method ``name`` (``ValueError`` when unknown); a plug-in is imported only when it is the
    one asked for, so looking up ``edges`` never loads torch."""
    return _resolve(name)


def saliency_method_names() -> list[str]:
    """Names of every method, plug-ins included, without importing any plug-in."""
    _announce_plugins()
    return list(_REGISTRY)


def saliency_methods() -> dict[str, SaliencyMethod]:
    """All registered methods (plug-ins resolved), in registration order."""
    _announce_plugins()
    for name in list(_REGISTRY):
        _resolve(name)
    return dict(_REGISTRY)


def saliency(image: np.ndarray, method: str = "edges", **params: Any) -> np.ndarray:
    """Float32 ``[H, W]`` saliency map in ``[0, 1]`` of an RGB float image by ``method``."""
    image = check_rgb(image)
    m = _resolve(method)
    if m.fn is None:
        raise ValueError(f"saliency method {method!r} is not available: {m.reason or 'not installed'}")
    unknown = set(params) - set(inspect.signature(m.fn).parameters)
    if unknown and not any(p.kind is p.VAR_KEYWORD for p in inspect.signature(m.fn).parameters.values()):
        raise ValueError(f"unknown parameter(s) {sorted(unknown)} for saliency method {method!r}; "
                         f"allowed: {sorted(m.defaults)}")
    lo, hi, _, _ = cv2.minMaxLoc(image.reshape(image.shape[0], -1))
    if hi - lo < 1e-6:  # nothing to find in a constant image (spectral would return FFT noise)
        m.fn(image, **params)  # still validates the parameters
        return np.zeros(image.shape[:2], np.float32)
    out: np.ndarray = np.asarray(m.fn(image, **params), dtype=np.float32)
    if out.shape != image.shape[:2]:
        out = cv2.resize(out, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_LINEAR)
    return normalize(out)


def check_saliency_map(saliency_map: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Float32 copy of a user-given map after checking its shape and that it lies in [0, 1]."""
    sal = np.asarray(saliency_map, dtype=np.float32)
    if sal.shape != tuple(shape):
        raise ValueError(f"saliency must have the image's shape {tuple(shape)}, got {sal.shape}")
    if sal.size and (not np.isfinite(sal).all() or sal.min() < 0 or sal.max() > 1):
        raise ValueError("saliency values must be finite and in [0, 1]")
    return sal


def normalize(m: np.ndarray) -> np.ndarray:
    """Min-max normalise to ``[0, 1]``; constant (or non-finite) maps become zeros."""
    m = np.ascontiguousarray(m, dtype=np.float32)
    lo, hi = float(m.min()), float(m.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        m = np.nan_to_num(m, nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(m.min()), float(m.max())
    if not hi > lo:
        return np.zeros_like(m)
    out = cv2.normalize(m, None, 0.0, 1.0, cv2.NORM_MINMAX, dtype=cv2.CV_32F)
    return np.clip(out, 0.0, 1.0, out=out)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Float32 luminance (ITU-R BT.601) of an RGB float image."""
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def _odd(n: float) -> int:
    n = max(1, int(round(n)))
    return n if n % 2 else n + 1


# --------------------------------------------------------------------------- methods
SEED_EDGE_KSIZES = (0, 5, 9, 15, 21, 31)
"""Kernel sizes offered for the seed-exact edge blur (0: blur by ``sigma`` instead; 15: the seed's)."""


@register_saliency("edges", "Canny edge density, blurred: dense edges = detail.",
                   param_ranges={"low": (0, 255, 5), "high": (0, 255, 5), "sigma": (0.5, 32, 0.5)},
                   param_choices={"ksize": SEED_EDGE_KSIZES})
def edge_saliency(image: np.ndarray, low: float = 50, high: float = 150, sigma: float = 4.0,
                  ksize: int = 0) -> np.ndarray:
    """Canny edges of the grey image (thresholds in 0-255 grey levels), Gaussian-blurred.

    ``ksize=0`` (default): blur with ``sigma`` and a reflected border (no dark rim at the image's
    edge). ``ksize=15`` is the seed exactly: ``cv2.GaussianBlur(canny, (15, 15), 0)`` with OpenCV's
    default border and the sigma OpenCV derives from the kernel size (about 2.6); any odd ``ksize``
    works the same way, and ``sigma`` is then unused.
    """
    low = check_float("low", low, 0, 255)
    high = check_float("high", high, 0, 255)
    if low > high:
        raise ValueError(f"low must be <= high (both in [0, 255]), got low={low}, high={high}")
    sigma = check_float("sigma", sigma, 0.1, 256)
    ksize = check_int("ksize", ksize, 0, 255)
    if ksize and ksize % 2 == 0:
        raise ValueError(f"ksize must be 0 (blur by sigma) or odd, got {ksize}")
    grey = (to_gray(image) * 255 + 0.5).astype(np.uint8)
    edges = cv2.Canny(grey, low, high).astype(np.float32)
    if ksize:
        return cv2.GaussianBlur(edges, (ksize, ksize), 0)
    return cv2.GaussianBlur(edges, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)


@register_saliency("variance", "Local standard deviation of grey levels over a window.",
                   param_ranges={"window": (3, 101, 2)})
def variance_saliency(image: np.ndarray, window: int = 15) -> np.ndarray:
    """Local grey-level standard deviation over a ``window x window`` box."""
    k = check_int("window", window, 1, 1025)
    g = to_gray(image)
    mean = cv2.boxFilter(g, -1, (k, k), borderType=cv2.BORDER_REFLECT)
    sq = cv2.sqrBoxFilter(g, cv2.CV_32F, (k, k), borderType=cv2.BORDER_REFLECT)
    var = cv2.subtract(sq, cv2.multiply(mean, mean))
    return cv2.sqrt(cv2.max(var, 0.0))


@register_saliency("entropy", "Local Shannon entropy of grey levels (as APT scores patches).",
                   param_ranges={"window": (3, 101, 2), "bins": (2, 64, 1)})
def entropy_saliency(image: np.ndarray, window: int = 15, bins: int = 16) -> np.ndarray:
    """Shannon entropy (bits) of the ``bins``-level grey histogram in each ``window`` box."""
    k = check_int("window", window, 1, 1025)
    bins = check_int("bins", bins, 2, 256)
    g = to_gray(image)
    h, w = g.shape
    q = np.minimum((g * bins).astype(np.uint8 if bins <= 255 else np.int32), bins - 1)
    # The map is smooth at the window's scale, so histograms are pooled on a grid of stride
    # ``step = window // 5`` (block means of the bin indicators), box-filtered with the window
    # in grid units, and the entropy upsampled: ~25x less work than full resolution.
    step = max(1, min(k // 5, h, w))
    sh, sw = max(1, h // step), max(1, w // step)
    kk = max(1, int(round(k / step)))
    rows = np.minimum(np.arange(h) // step, sh - 1)
    cols = np.minimum(np.arange(w) // step, sw - 1)
    cell = (rows[:, None] * sw + cols[None, :]).astype(np.int32)
    counts = np.bincount((q.astype(np.int32) * (sh * sw) + cell).ravel(), minlength=bins * sh * sw)
    area = np.outer(np.bincount(rows, minlength=sh), np.bincount(cols, minlength=sw)).astype(np.float32)
    hist = counts.reshape(bins, sh, sw).astype(np.float32) * (1.0 / area)
    ent = np.zeros((sh, sw), np.float32)
    for b in range(bins):  # one small box filter per histogram bin (bins <= 256)
        p = cv2.boxFilter(hist[b], -1, (kk, kk), borderType=cv2.BORDER_REFLECT)
        np.clip(p, 1e-12, 1.0, out=p)
        ent -= p * np.log2(p)
    if ent.shape != (h, w):
        ent = cv2.resize(ent, (w, h), interpolation=cv2.INTER_LINEAR)
    return ent


@register_saliency("spectral", "Spectral residual (Hou & Zhang 2007): what the log spectrum does not predict.",
                   param_ranges={"scale": (32, 256, 16), "sigma": (0.5, 8, 0.5)})
def spectral_saliency(image: np.ndarray, scale: int = 64, sigma: float = 2.5) -> np.ndarray:
    """Spectral residual saliency computed at ``scale`` px width, blurred, upsampled."""
    scale = check_int("scale", scale, 8, 1024)
    sigma = check_float("sigma", sigma, 0.1, 64)
    g = to_gray(image)
    h, w = g.shape
    sw = scale
    sh = max(1, int(round(scale * h / w)))
    small = cv2.resize(g, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float64)
    f = np.fft.fft2(small)
    log_amp = np.log(np.abs(f) + 1e-9)
    phase = np.angle(f)
    residual = log_amp - cv2.blur(log_amp, (3, 3), borderType=cv2.BORDER_REFLECT)
    sal = np.abs(np.fft.ifft2(np.exp(residual + 1j * phase))) ** 2
    sal = cv2.GaussianBlur(sal.astype(np.float32), (0, 0), sigma)
    return cv2.resize(sal, (w, h), interpolation=cv2.INTER_LINEAR)


_announce_plugins()  # after the built-in methods (adapatch.model_plugins registered them before this import)
