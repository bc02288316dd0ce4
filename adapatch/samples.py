"""The small sample images bundled in ``assets/samples`` (licences in its LICENSE.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .image_io import load_image

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "samples"
_DESCRIPTIONS = {
    "astronaut": "natural scene (portrait)",
    "coffee": "natural scene (still life)",
    "page": "document / text page",
    "diagram": "diagram / chart",
    "rocket": "mostly flat sky",
}


def list_samples() -> list[str]:
    """Names of the bundled samples, in a fixed order."""
    present = {p.stem for p in SAMPLES_DIR.glob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")}
    return [n for n in _DESCRIPTIONS if n in present] + sorted(present - set(_DESCRIPTIONS))


def describe_sample(name: str) -> str:
    """One-line description of a sample."""
    return _DESCRIPTIONS.get(name, "sample image")


def sample_path(name: str) -> Path:
    """Path of the sample file called ``name`` (without extension)."""
    for p in sorted(SAMPLES_DIR.glob(f"{name}.*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            return p
    raise ValueError(f"sample must be one of {', '.join(list_samples())}; got {name!r}")


def load_sample(name: str) -> np.ndarray:
    """The sample as float32 RGB ``[H, W, 3]`` in [0, 1]."""
    return load_image(sample_path(name))
