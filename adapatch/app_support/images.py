"""Images as the app holds them: decoded in memory, keyed by content hash, sized for interaction.

No Streamlit here (importable and testable on its own). Uploads are never written to disk: the
bytes are hashed (sha1), decoded by ``adapatch.open_image`` and dropped; only the float array is
kept. Images larger than ``COMPUTE_MAX_PIXELS`` are downscaled once, on load, so every slider
stays interactive; the exported Python snippet repeats the same downscale (``resize``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

import cv2
import numpy as np

from ..errors import ImageError
from ..image_io import open_image
from ..messages import one_line
from ..resize import WORK_MAX_PIXELS, to_working_size
from ..samples import describe_sample, list_samples, list_task_samples, sample_path

DECODE_MAX_PIXELS = 50_000_000
"""Largest upload decoded at all (header-checked by ``open_image`` before decoding)."""
COMPUTE_MAX_PIXELS = WORK_MAX_PIXELS
"""Images above this many pixels are downscaled (area interpolation) before any computation: the
library's working size (``adapatch.resize``), the same on every page, in the CLI and in calibration."""
MAX_UPLOADS = 16
"""Uploaded images kept per session (each costs 12 bytes a pixel, <= 50 MB after downscaling)."""
UPLOAD_TYPES = ("png", "jpg", "jpeg", "webp", "bmp", "tif", "tiff")
MAX_NAME_CHARS = 60


@dataclass
class ImageEntry:
    """One image the app can work on."""

    key: str  # "sample:NAME" or "upload:DIGEST"
    name: str  # display name (already sanitised by ``clean_name``)
    digest: str  # sha1 of the file bytes: the cache key of everything computed from it
    array: np.ndarray = field(repr=False)  # float32 [H, W, 3] in [0, 1], possibly downscaled
    source: str = ""  # settings source: "sample:NAME" or the file name
    original_size: tuple[int, int] = (0, 0)  # (h, w) as decoded
    resize: tuple[int, int] | None = None  # (h, w) the array was downscaled to, or None
    notes: list[str] = field(default_factory=list)
    format: str = ""

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    def describe(self) -> str:
        """One line: size, format, notes."""
        h, w = self.original_size
        parts = [f"{w}x{h}"]
        if self.format:
            parts.append(self.format)
        if self.resize is not None:
            parts.append(f"computed at {self.resize[1]}x{self.resize[0]}")
        parts += self.notes
        return " · ".join(parts)


def clean_name(name: str | None) -> str:
    """A file name fit to show on one line: no control characters, bounded length."""
    text = re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]", "", str(name or ""))
    text = " ".join(text.split()) or "unnamed file"
    if len(text) > MAX_NAME_CHARS:
        text = text[: MAX_NAME_CHARS - 1] + "…"
    return text


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'])")


def md_escape(text: str) -> str:
    """``text`` with every Markdown/directive character backslash-escaped (for ``st.markdown``-like
    elements showing user-provided strings as literal text)."""
    return _MD_SPECIAL.sub(r"\\\1", str(text))


def digest_of(data: bytes) -> str:
    """Content hash of file bytes."""
    return hashlib.sha1(data).hexdigest()


def fit_for_compute(array: np.ndarray,
                    max_pixels: int = COMPUTE_MAX_PIXELS) -> tuple[np.ndarray, tuple[int, int] | None]:
    """The array downscaled (``adapatch.resize_image``, as the exported snippet does) when over
    ``max_pixels``, and the size it was downscaled to (None when it fits)."""
    return to_working_size(array, max_pixels)


def decode_upload(name: str, data: bytes, max_pixels: int = DECODE_MAX_PIXELS) -> ImageEntry:
    """Decode uploaded bytes into an ``ImageEntry`` (raises ``ImageError`` with one readable line)."""
    shown = clean_name(name)
    if not data:
        raise ImageError("the file is empty")
    loaded = open_image(bytes(data), max_pixels=max_pixels)
    array, resize = fit_for_compute(loaded.array)
    digest = digest_of(data)
    return ImageEntry(key=f"upload:{digest}", name=shown, digest=digest, array=array, source=shown,
                      original_size=loaded.shape, resize=resize, notes=list(loaded.notes), format=loaded.format)


def upload_error_line(exc: BaseException) -> str:
    """The one line shown beside a file that could not be used."""
    msg = " ".join(str(exc).split())
    if msg.startswith("image: "):  # open_image names byte sources "image"; the UI shows the file name
        msg = msg[len("image: "):]
    if isinstance(exc, (ImageError, ValueError)):
        return one_line(msg) or "cannot read this file"
    return "cannot read this file"


def load_sample_entry(name: str) -> ImageEntry:
    """A bundled sample as an ``ImageEntry``."""
    path = sample_path(name)
    data = path.read_bytes()
    loaded = open_image(data)
    array, resize = fit_for_compute(loaded.array)
    return ImageEntry(key=f"sample:{name}", name=f"{name} ({describe_sample(name)})", digest=digest_of(data),
                      array=array, source=f"sample:{name}", original_size=loaded.shape, resize=resize,
                      notes=list(loaded.notes), format=loaded.format)


def sample_keys() -> list[str]:
    """Keys of the bundled photo/document samples."""
    return [f"sample:{n}" for n in list_samples()]


def task_sample_keys() -> list[str]:
    """Keys of the task model's cluttered-digit samples (``sample:digit_3_label5``...)."""
    return [f"sample:{n}" for n in list_task_samples()]


def to_display(array: np.ndarray, max_side: int) -> np.ndarray:
    """uint8 RGB copy at display size (longer side <= ``max_side``) for ``st.image``."""
    h, w = array.shape[:2]
    f = min(1.0, max_side / max(h, w))
    a = array
    if f < 1.0:
        a = cv2.resize(np.asarray(array, np.float32), (max(1, round(w * f)), max(1, round(h * f))),
                       interpolation=cv2.INTER_AREA)
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)
