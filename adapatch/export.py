"""Settings that reproduce a layout: a JSON-able dict, the layout it gives, and a Python snippet.

The Streamlit app describes every result it shows with a *settings* dict (see ``SETTINGS_KEYS``)
and computes it with ``layout_from_settings``; ``settings_snippet`` turns the same dict into a
ready-to-run script that makes the same calls to ``adapatch`` (tests exec the snippet and compare
layouts), so a result tuned in the app can be reproduced outside it.

Settings (``"format": "adapatch.settings/1"``)::

    image:       {"source": "sample:astronaut" | "<file name>", "resize": [h, w] | None}
    saliency:    {"method": "edges", "params": {...}}  (used by greedy, saliency importances, pruning)
    strategy:    "quadtree" | "greedy" | "uniform"
    params:      keyword arguments of the strategy (``make_layout``)
    solve_budget: None | int   -> ``layout_for_budget(image, strategy, solve_budget, ...)``
    prune:       None | {"keep_ratio": r, "reduce": "mean" | "max"} -> ``token_scores`` + ``prune``
    vit:         ViT preset for the FLOPs numbers;  device: "auto" | "cpu" | "cuda"
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .importance import SALIENCY_MEASURES
from .layout import PatchLayout
from .pruning import prune, token_scores
from .saliency import saliency as compute_saliency
from .strategies import STRATEGIES, layout_for_budget, make_layout
from .validation import check_choice

SETTINGS_FORMAT = "adapatch.settings/1"
SETTINGS_KEYS = ("format", "image", "saliency", "strategy", "params", "solve_budget", "prune", "vit", "device")


def normalize_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """A complete, JSON-able copy of ``settings`` with defaults filled in (raises ``ValueError``)."""
    if not isinstance(settings, dict):
        raise ValueError(f"settings must be a dict, got {type(settings).__name__}")
    unknown = set(settings) - set(SETTINGS_KEYS)
    if unknown:
        raise ValueError(f"unknown settings key(s) {sorted(unknown)}; allowed: {', '.join(SETTINGS_KEYS)}")
    s = json.loads(json.dumps(settings, default=_json_default))  # deep copy, plain types only
    fmt = s.get("format", SETTINGS_FORMAT)
    if fmt != SETTINGS_FORMAT:
        raise ValueError(f"settings format must be {SETTINGS_FORMAT!r}, got {fmt!r}")
    image = s.get("image") or {}
    sal = s.get("saliency") or {"method": "edges", "params": {}}
    prune_s = s.get("prune")
    out = {
        "format": SETTINGS_FORMAT,
        "image": {"source": str(image.get("source", "image.png")), "resize": image.get("resize")},
        "saliency": {"method": str(sal.get("method", "edges")), "params": dict(sal.get("params") or {})},
        "strategy": check_choice("strategy", s.get("strategy", "quadtree"), STRATEGIES),
        "params": dict(s.get("params") or {}),
        "solve_budget": s.get("solve_budget"),
        "prune": None if prune_s is None else {"keep_ratio": float(prune_s["keep_ratio"]),
                                               "reduce": str(prune_s.get("reduce", "mean"))},
        "vit": str(s.get("vit", "ViT-B")),
        "device": str(s.get("device", "auto")),
    }
    resize = out["image"]["resize"]
    if resize is not None and (len(resize) != 2 or min(int(v) for v in resize) < 1):
        raise ValueError(f"image.resize must be [height, width] or None, got {resize!r}")
    return out


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, tuple):
        return list(x)
    raise TypeError(f"settings value of type {type(x).__name__} is not JSON-serialisable")


def needs_saliency(settings: dict[str, Any]) -> bool:
    """Whether the settings' layout uses the saliency map."""
    s = normalize_settings(settings)
    if s["prune"] is not None or s["strategy"] == "greedy":
        return True
    return s["strategy"] == "quadtree" and s["params"].get("importance", "std") in SALIENCY_MEASURES


def layout_from_settings(image: np.ndarray, settings: dict[str, Any],
                         saliency_map: np.ndarray | None = None) -> PatchLayout:
    """The layout the settings describe, for ``image`` already loaded (and resized, if they say so).

    ``saliency_map`` may be given when the caller has it already (the app caches it); otherwise it
    is computed from ``settings["saliency"]`` when the layout needs it.
    """
    s = normalize_settings(settings)
    sal = None
    if needs_saliency(s):
        sal = saliency_map if saliency_map is not None else compute_saliency(
            image, s["saliency"]["method"], **s["saliency"]["params"])
    params = dict(s["params"])
    if s["solve_budget"] is not None:
        layout = layout_for_budget(image, s["strategy"], int(s["solve_budget"]), sal, **params)
    else:
        layout = make_layout(image, s["strategy"], sal, **params)
    if s["prune"] is not None:
        scores = token_scores(sal, layout, s["prune"]["reduce"])
        layout = prune(layout, scores, s["prune"]["keep_ratio"])
    return layout


def _kwargs(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in params.items())


def settings_snippet(settings: dict[str, Any]) -> str:
    """A runnable Python script reproducing ``layout_from_settings`` with plain ``adapatch`` calls.

    The script defines ``image``, ``layout`` (and ``sal`` when used) and prints the token count,
    efficiency and fidelity numbers. User-provided strings (file names) appear only as Python
    string literals (``repr``), never as code.
    """
    s = normalize_settings(settings)
    src = s["image"]["source"]
    lines = ["# Reproduces a layout tuned in the adapatch app.  pip install adapatch (this repo)",
             "import adapatch as ap", ""]
    resize = s["image"]["resize"]
    if resize is not None:
        lines.insert(1, "import cv2")
    if src.startswith("sample:"):
        lines.append("from adapatch.samples import sample_path")
        lines.append(f"image = ap.load_image(sample_path({src[len('sample:'):]!r}))")
    else:
        lines.append(f"image = ap.load_image({src!r})  # the image file you used in the app")
    if resize is not None:
        h, w = int(resize[0]), int(resize[1])
        lines.append("# the app computes on images of at most a few megapixels: same downscale here")
        lines.append(f"image = cv2.resize(image, ({w}, {h}), interpolation=cv2.INTER_AREA)")
    sal_arg = "None"
    if needs_saliency(s):
        m, p = s["saliency"]["method"], s["saliency"]["params"]
        lines.append(f"sal = ap.saliency(image, {m!r}{', ' if p else ''}{_kwargs(p)})")
        sal_arg = "sal"
    params = s["params"]
    extra = f", {_kwargs(params)}" if params else ""
    if s["solve_budget"] is not None:
        lines.append(f"layout = ap.layout_for_budget(image, {s['strategy']!r}, {int(s['solve_budget'])}, "
                     f"{sal_arg}{extra})")
    else:
        lines.append(f"layout = ap.make_layout(image, {s['strategy']!r}, {sal_arg}{extra})")
    if s["prune"] is not None:
        lines.append(f"scores = ap.token_scores(sal, layout, {s['prune']['reduce']!r})")
        lines.append(f"layout = ap.prune(layout, scores, keep_ratio={s['prune']['keep_ratio']!r})")
    lines += [
        "",
        f"eff = ap.efficiency(layout, vit={s['vit']!r})",
        f"fid = ap.fidelity(image, layout, device={s['device']!r})",
        "print(layout)",
        "print(f\"tokens {eff['tokens']} vs uniform-16 {eff['uniform16_tokens']} \"",
        "      f\"({100 * eff['token_reduction_vs_uniform16']:.1f}% fewer), FLOPs x{eff['flops_ratio_vs_uniform16']:.3f}, \"",
        "      f\"PSNR {fid['psnr']:.2f} dB, SSIM {fid['ssim']:.4f}\")",
        "# layout.to_json() gives the boxes (y, x, size); ap.render.layout_overlay(image, layout) draws them",
    ]
    return "\n".join(lines) + "\n"


def settings_json(settings: dict[str, Any], indent: int = 2) -> str:
    """The normalised settings as JSON text."""
    return json.dumps(normalize_settings(settings), indent=indent)
