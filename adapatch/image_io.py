"""Loading any image a user may have into float32 RGB ``[H, W, 3]`` in ``[0, 1]``.

Paths, bytes, file-like objects, PIL images and numpy arrays are accepted. EXIF orientation is
applied; grey, palette, CMYK, 16-bit and float images are converted; alpha is composited on
white; animations and multi-page files give their first frame (noted in ``LoadedImage.notes``).
The pixel limit is checked from the header, before the pixels are decoded, so a decompression
bomb costs no memory. Anything unusable raises ``ImageError`` with a one-line message.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, BinaryIO, TypeAlias

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError
from .messages import one_line

DEFAULT_MAX_PIXELS = 50_000_000
"""Largest image (width x height) ``load_image`` accepts by default: 50 megapixels."""

ImageSource: TypeAlias = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO | Image.Image | np.ndarray


@dataclass
class LoadedImage:
    """A decoded image and what was done to it."""

    array: np.ndarray
    format: str = ""
    mode: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, int]:
        return self.array.shape[0], self.array.shape[1]


def load_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``source`` into float32 RGB ``[H, W, 3]`` in ``[0, 1]`` (see ``open_image``)."""
    return open_image(source, max_pixels).array


def load_rgb8(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """``load_image`` without the float conversion where the image has 8 bits per sample: uint8 RGB
    ``[H, W, 3]`` with ``BYTE_TO_FLOAT[result] == load_image(source)`` exactly; other images (16-bit,
    float) come back as ``load_image`` gives them (float32). Saves a pass and 4x the memory for
    code that can read bytes (dataset calibration)."""
    return open_image(source, max_pixels, bytes8=True).array


def open_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS, *, bytes8: bool = False) -> LoadedImage:
    """Decode ``source`` and report how (format, original mode, notes such as "first frame").
    ``bytes8``: keep 8-bit images as uint8 (see ``load_rgb8``)."""
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ValueError(f"max_pixels must be an integer >= 1, got {max_pixels!r}")
    if isinstance(source, np.ndarray):
        return LoadedImage(_from_array(source, max_pixels), "array", str(source.dtype))
    if isinstance(source, Image.Image):
        return _from_pil(source, max_pixels, fmt=source.format or "PIL", bytes8=bytes8)
    fp, name = _open_stream(source)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            img = Image.open(fp)
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not an image file this app can read "
                             "(supported: PNG, JPEG, WebP, BMP, TIFF, GIF)") from None
        except Image.DecompressionBombError:
            raise ImageError(f"{name}: image is too large (over {max_pixels / 1e6:g} megapixels)") from None
        except Exception as e:  # noqa: BLE001 - decoders raise anything on malformed files (TypeError, struct.error, ...)
            raise ImageError(f"{name}: cannot read image ({_short(e)})") from None
        return _from_pil(img, max_pixels, fmt=img.format or "", name=name, bytes8=bytes8)


def _open_stream(source: Any) -> tuple[BinaryIO, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError("the file is empty")
        return io.BytesIO(bytes(source)), "image"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        name = os.path.basename(path) or path
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ImageError(f"{name}: cannot open file ({e.strerror or _short(e)})") from None
        if not data:
            raise ImageError(f"{name}: the file is empty")
        return io.BytesIO(data), name
    if hasattr(source, "read"):
        name = os.path.basename(str(getattr(source, "name", "") or "")) or "image"
        try:
            if hasattr(source, "seek"):
                source.seek(0)
            data = source.read()
        except (OSError, ValueError) as e:
            raise ImageError(f"{name}: cannot read upload ({_short(e)})") from None
        if not isinstance(data, (bytes, bytearray)) or len(data) == 0:
            raise ImageError(f"{name}: the file is empty")
        return io.BytesIO(bytes(data)), name
    raise ImageError(f"unsupported image source of type {type(source).__name__}; "
                     "give a path, bytes, a file object, a PIL image or a numpy array")


def _from_pil(img: Image.Image, max_pixels: int, fmt: str, name: str = "image", bytes8: bool = False) -> LoadedImage:
    w, h = img.size
    if w < 1 or h < 1:
        raise ImageError(f"{name}: image has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{name}: image is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the "
                         f"limit of {max_pixels / 1e6:g} megapixels; downscale it first")
    notes: list[str] = []
    mode = img.mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            n_frames = getattr(img, "n_frames", 1) or 1
            if n_frames > 1:
                kind = "pages" if (fmt or "").upper() == "TIFF" else "frames"
                notes.append(f"{n_frames} {kind}: the first is used")
                img.seek(0)
            img.load()
            orientation = img.getexif().get(0x0112, 1)
            if orientation not in (None, 1):
                img = ImageOps.exif_transpose(img)
                notes.append(f"EXIF orientation {orientation} applied")
            arr = _pil_to_rgb(img, bytes8)
    except Image.DecompressionBombError:
        raise ImageError(f"{name}: image is too large to decode safely") from None
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 - any decoder failure on damaged data is the file's fault, not ours
        raise ImageError(f"{name}: image data is damaged or truncated ({_short(e)})") from None
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        notes.append("transparency composited on white")
    return LoadedImage(arr, fmt.upper(), mode, notes)


BYTE_TO_FLOAT = np.arange(256, dtype=np.float32) * np.float32(1 / 255)
"""The float32 value ``load_image`` gives each 8-bit sample: ``load_image(x) == BYTE_TO_FLOAT[load_rgb8(x)]``."""


def _pil_to_rgb(img: Image.Image, bytes8: bool = False) -> np.ndarray:
    """Float32 RGB in [0, 1]; with ``bytes8``, 8-bit images stay uint8 RGB (what ``BYTE_TO_FLOAT`` maps)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return _grey_to_rgb(np.clip(a / hi, 0, 1))
    if mode == "F":
        a = np.nan_to_num(np.asarray(img, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:  # arbitrary-range float data: stretch to [0, 1]
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
        return _grey_to_rgb(a)
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "PA":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "La", "RGBa"):
        img = img.convert("RGBA")
        white = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, img).convert("RGB")
    elif mode != "RGB":
        img = img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV, I;16 handled above
    if bytes8:
        return np.asarray(img, dtype=np.uint8)
    return np.asarray(img, dtype=np.float32) * np.float32(1 / 255)


def _grey_to_rgb(a: np.ndarray) -> np.ndarray:
    return np.repeat(a.astype(np.float32)[:, :, None], 3, axis=2)


def _from_array(a: np.ndarray, max_pixels: int) -> np.ndarray:
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"array must be [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {a.shape}")
    h, w = a.shape[:2]
    if h < 1 or w < 1:
        raise ImageError(f"array image has no pixels ({h}x{w})")
    if h * w > max_pixels:
        raise ImageError(f"image is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the limit of "
                         f"{max_pixels / 1e6:g} megapixels")
    f: np.ndarray
    lo: float
    hi: float
    if a.dtype == np.bool_:
        f = a.astype(np.float32)
    elif a.dtype == np.uint8:
        f = a.astype(np.float32) / 255
    elif a.dtype == np.uint16:
        f = a.astype(np.float32) / 65535
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise ImageError(f"integer array values must lie in [0, 65535], got [{lo}, {hi}]")
        f = a.astype(np.float32) / (255 if hi <= 255 else 65535)
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError("array contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ImageError(f"float array values must lie in [0, 1], got [{lo:.3g}, {hi:.3g}]")
        f = np.clip(a, 0, 1).astype(np.float32)
    else:
        raise ImageError(f"unsupported array dtype {a.dtype}; use uint8, uint16 or float in [0, 1]")
    if f.ndim == 2:
        return _grey_to_rgb(f)
    if f.shape[2] == 4:
        alpha = f[:, :, 3:4]
        f = f[:, :, :3] * alpha + (1 - alpha)
    return np.ascontiguousarray(f[:, :, :3], dtype=np.float32)


def _short(e: BaseException) -> str:
    """A decoder's complaint, short enough to sit inside a longer line."""
    return one_line(str(e) or type(e).__name__, 120)
