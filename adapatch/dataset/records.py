"""The per-image step of calibration: bytes -> decoded image -> path importances (or a one-line reason).

This is the only work an engine distributes; everything after it (curve, solver, layouts) reads
the compact ``PathImportance`` of each image, never the pixels again.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ImageError
from ..image_io import DEFAULT_MAX_PIXELS, load_rgb8
from ..importance import IMPORTANCE_MEASURES, SALIENCY_MEASURES, TOKEN_SIZE
from ..quadtree import PathImportance, path_importance
from ..quadtree_engine import check_sizes
from ..resize import WORK_MAX_PIXELS, to_working_size
from ..validation import check_choice, check_int, check_power_of_two
from .sources import ItemReader, ItemRef

CALIBRATION_IMPORTANCE = "distortion"
"""Calibration's default importance: the rate-distortion one (at equal tokens it keeps the most of an image)."""


@dataclass(frozen=True)
class CurveSettings:
    """How every image's quadtree is built (the same for all images of a calibration)."""

    min_size: int = 8
    max_size: int = 64
    importance: str = CALIBRATION_IMPORTANCE
    token_size: int = TOKEN_SIZE
    saliency: str = "edges"
    max_pixels: int = DEFAULT_MAX_PIXELS
    work_pixels: int = WORK_MAX_PIXELS
    """Images with more pixels are downscaled to the library's working size first (``adapatch.resize``),
    as the app and ``python -m adapatch`` do; 0 computes at full resolution."""

    def __post_init__(self) -> None:
        check_sizes(self.min_size, self.max_size)
        check_choice("importance", self.importance, IMPORTANCE_MEASURES)
        check_power_of_two("token_size", self.token_size, 1, 1024)
        check_int("max_pixels", self.max_pixels, 1)
        check_int("work_pixels", self.work_pixels, 0)
        if self.importance in SALIENCY_MEASURES:
            from ..saliency import saliency_methods
            check_choice("saliency", self.saliency, saliency_methods())

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ItemResult:
    """What one image gave: its path importances, or why it was skipped."""

    index: int
    path: str
    record: PathImportance | None = None
    reason: str | None = None


def image_record(data: bytes, settings: CurveSettings) -> PathImportance:
    """Path importances of the image encoded in ``data`` (``ImageError`` when it cannot be used).

    8-bit images stay 8-bit (``load_rgb8``): the distortion importance reads the bytes directly,
    bit-identical to the float image ``load_image`` gives, at a fraction of the cost. Images over the
    working size are downscaled to it (float, as the app does), so the tokens match the app's."""
    image, _ = to_working_size(load_rgb8(data, max_pixels=settings.max_pixels), settings.work_pixels)
    sal = settings.saliency if settings.importance in SALIENCY_MEASURES else None
    return path_importance(image, sal, min_size=settings.min_size, max_size=settings.max_size,
                           importance=settings.importance, token_size=settings.token_size)


def process_item(index: int, ref: ItemRef, reader: ItemReader, settings: CurveSettings) -> ItemResult:
    """Read and process one item; any failure of *this file* becomes a skip reason, never an exception."""
    try:
        data = reader.read(ref)
    except (OSError, ValueError, KeyError) as e:
        return ItemResult(index, ref.path, reason=_reason(e, "cannot read file"))
    return process_bytes(index, ref.path, data, settings)


def process_bytes(index: int, path: str, data: bytes, settings: CurveSettings) -> ItemResult:
    """``process_item`` once the bytes are read (the Ray engine reads them itself)."""
    try:
        return ItemResult(index, path, record=image_record(data, settings))
    except ImageError as e:
        msg = str(e)
        if msg.startswith("image: "):  # bytes have no name: the report names the file
            msg = msg[len("image: "):]
        return ItemResult(index, path, reason=msg)
    except (ValueError, MemoryError) as e:
        return ItemResult(index, path, reason=_reason(e, "cannot process image"))


def _reason(e: BaseException, what: str) -> str:
    detail = " ".join(str(getattr(e, "strerror", None) or e).split())[:160] or type(e).__name__
    return f"{what}: {detail}"
