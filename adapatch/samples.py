"""The sample images bundled with adapatch: photos and documents in ``adapatch/assets/samples`` (licences
in its LICENSE.md), and the task model's own held-out cluttered-digit images in
``adapatch/assets/model/samples`` (``list_task_samples``; the bundled model's maps mean something on
these). ``sample_path`` finds both kinds by name. A small, varied sample dataset for dataset calibration
(photos, documents, diagrams, flat images, digits) is in ``adapatch/assets/dataset``
(``dataset_sample_paths``, ``dataset_category``)."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib.resources import files
from pathlib import Path

import numpy as np

from .image_io import load_image

ASSETS_DIR = Path(str(files("adapatch") / "assets"))
"""Package data (``importlib.resources``): the bundled samples and the task model, found the same way
in a checkout and in an installed wheel."""
SAMPLES_DIR = ASSETS_DIR / "samples"
TASK_SAMPLES_DIR = ASSETS_DIR / "model" / "samples"
DATASET_DIR = ASSETS_DIR / "dataset"
"""The bundled sample dataset for dataset calibration: small images named ``<category>_<name>.<ext>``
(written by ``benchmarks/make_dataset_samples.py``; sources and licences in its LICENSE.md)."""
DATASET_CATEGORIES = ("photo", "document", "diagram", "flat", "digits")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
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


@lru_cache(maxsize=1)
def _task_labels() -> dict[str, int]:
    """``{name: true digit}`` of the task samples (``labels.json`` written by the experiment)."""
    f = TASK_SAMPLES_DIR / "labels.json"
    if not f.is_file():
        return {}
    return {Path(s["file"]).stem: int(s["label"]) for s in json.loads(f.read_text())}


def list_task_samples() -> list[str]:
    """Names of the task model's bundled 64x64 cluttered-digit samples (empty if not trained)."""
    return [n for n in _task_labels() if (TASK_SAMPLES_DIR / f"{n}.png").is_file()]


def task_sample_label(name: str) -> int | None:
    """The true digit of a task sample, or None for any other name."""
    return _task_labels().get(name)


def describe_sample(name: str) -> str:
    """One-line description of a sample."""
    if name in _task_labels():
        return f"cluttered digit {_task_labels()[name]}, the bundled model's task"
    return _DESCRIPTIONS.get(name, "sample image")


def sample_path(name: str) -> Path:
    """Path of the sample file called ``name`` (without extension): a photo sample or a task sample."""
    for p in sorted(SAMPLES_DIR.glob(f"{name}.*")):
        if p.suffix.lower() in (".png", ".jpg", ".jpeg"):
            return p
    if name in list_task_samples():
        return TASK_SAMPLES_DIR / f"{name}.png"
    raise ValueError(f"sample must be one of {', '.join(list_samples() + list_task_samples())}; got {name!r}")


def load_sample(name: str) -> np.ndarray:
    """The sample as float32 RGB ``[H, W, 3]`` in [0, 1]."""
    return load_image(sample_path(name))


def dataset_sample_paths() -> list[Path]:
    """The image files of the bundled sample dataset, sorted by name (empty if the folder is missing)."""
    if not DATASET_DIR.is_dir():
        return []
    return sorted(p for p in DATASET_DIR.iterdir() if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES)


def dataset_category(path: str | Path) -> str:
    """The category of a dataset sample, from its file name ``<category>_<name>.<ext>`` (one of
    ``DATASET_CATEGORIES``); raises ValueError for any other name."""
    category = Path(path).name.split("_", 1)[0]
    if category not in DATASET_CATEGORIES or "_" not in Path(path).name:
        raise ValueError(f"not a dataset sample name (<category>_<name>.<ext>, category one of "
                         f"{', '.join(DATASET_CATEGORIES)}): {Path(path).name!r}")
    return category
