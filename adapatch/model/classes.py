"""Human-readable class names for predictions: the 1000 ImageNet-1k classes, bundled.

``class_names(1000)`` returns the names in class-index order (``adapatch/assets/classes``, written by
``benchmarks/make_imagenet_classes.py`` from timm's synset files; licences in that folder's
LICENSE.md). Other class counts have no bundled names (None): a model's 1000 classes are taken to be
ImageNet-1k's, as timm's ImageNet heads are; the bundled task model's 10 classes are digits.
"""

from __future__ import annotations

from functools import lru_cache

from ..samples import ASSETS_DIR

IMAGENET_CLASSES_FILE = ASSETS_DIR / "classes" / "imagenet_classes.txt"
IMAGENET_NUM_CLASSES = 1000


@lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names, index order (raises ``ValueError`` if the file is broken)."""
    names = tuple(n.strip() for n in IMAGENET_CLASSES_FILE.read_text(encoding="utf-8").splitlines() if n.strip())
    if len(names) != IMAGENET_NUM_CLASSES:
        raise ValueError(f"{IMAGENET_CLASSES_FILE} must list {IMAGENET_NUM_CLASSES} class names, has {len(names)}")
    return names


def class_names(num_classes: int | None) -> list[str] | None:
    """Names of a classifier's classes by index: the ImageNet-1k names for 1000 classes, else None."""
    if num_classes == IMAGENET_NUM_CLASSES:
        return list(imagenet_classes())
    return None


def class_label(index: int | None, num_classes: int | None) -> str:
    """``"207 · golden retriever"`` for a 1000-class model, ``"7"`` for others, ``"–"`` for None."""
    if index is None:
        return "–"
    index = int(index)
    if num_classes == IMAGENET_NUM_CLASSES and 0 <= index < IMAGENET_NUM_CLASSES:
        return f"{index} · {imagenet_classes()[index]}"
    return str(index)
