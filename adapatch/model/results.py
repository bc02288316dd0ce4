"""The bundled task model's measured results and samples (written by ``python -m adapatch.experiments``
and ``benchmarks/bench_latency.py`` into ``adapatch/assets/model``), read back for display."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..image_io import load_image
from .task import ASSET_DIR


def _read(name: str) -> Any:
    p = Path(ASSET_DIR) / name
    if not p.is_file():
        raise ValueError(f"{p} is missing: run python -m adapatch.experiments --out {ASSET_DIR}")
    return json.loads(p.read_text())


def task_results() -> list[dict[str, Any]]:
    """Rows of the results table: method, tokens, accuracy, MACs, predicted and measured speed-ups."""
    return list(_read("results.json")["rows"])


def latency_curves() -> dict[str, list[dict[str, Any]]]:
    """Per ViT preset: measured latency and speed-up against the FLOPs prediction, per token count."""
    return dict(_read("latency.json")["curves"])


def task_samples() -> list[dict[str, Any]]:
    """The bundled held-out task images: ``{"name", "label", "path"}``."""
    out = []
    for s in _read("samples/labels.json"):
        path = Path(ASSET_DIR) / s["file"]
        out.append({"name": path.stem, "label": int(s["label"]), "path": path})
    return out


def load_task_sample(name: str) -> tuple[np.ndarray, int]:
    """A task sample as float32 RGB and its true label."""
    for s in task_samples():
        if s["name"] == name:
            return load_image(s["path"]), s["label"]
    raise ValueError(f"sample must be one of {', '.join(s['name'] for s in task_samples())}; got {name!r}")
