"""A corpus of bad and unusual image files, generated in memory (nothing downloaded).

Each entry: name -> (bytes or ndarray, expectation) where expectation is "ok" (loads, maybe
with a note) or "error" (``adapatch.ImageError``). Shared by the library, CLI and app tests.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _photo(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x / w, y / h, (x + y) / (h + w)], axis=2) * 200
    return np.clip(base + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def bomb_png(width: int = 20000, height: int = 20000) -> bytes:
    """A ~20 kB PNG declaring width x height (400 MP by default) of zeros: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grey
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    data = b"".join(comp.compress(row) for _ in range(min(height, 2000))) + comp.flush()
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", data) + _png_chunk(b"IEND", b"")


def corpus() -> dict[str, tuple[object, str]]:
    photo = _photo()
    png = _save(Image.fromarray(photo), "PNG")
    jpg = _save(Image.fromarray(photo), "JPEG", quality=90)
    bad_crc = bytearray(png)
    bad_crc[29] ^= 0xFF  # inside the IHDR CRC
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.fromarray(_photo(seed=i)) for i in range(3)]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    webp = io.BytesIO()
    frames[0].save(webp, format="WEBP", save_all=True, append_images=frames[1:], duration=100)
    tiff = io.BytesIO()
    frames[0].save(tiff, format="TIFF", save_all=True, append_images=frames[1:])
    la = Image.fromarray(np.stack([photo[:, :, 0], photo[:, :, 1]], axis=2), mode="LA")
    return {
        "empty file": (b"", "error"),
        "random bytes": (np.random.default_rng(1).bytes(4096), "error"),
        "html renamed png": (b"<!doctype html><html><body><script>alert(1)</script></body></html>", "error"),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
                "error"),
        "truncated png": (png[: len(png) // 2], "error"),
        "truncated jpeg": (jpg[: len(jpg) // 2], "error"),
        "png with bad crc": (bytes(bad_crc), "error"),
        "decompression bomb": (bomb_png(), "error"),
        "100 megapixel png": (bomb_png(10000, 10000), "error"),
        "1x1 png": (_save(Image.new("RGB", (1, 1), (10, 200, 30)), "PNG"), "ok"),
        "1x10000 png": (_save(Image.fromarray(_photo(1, 10000)), "PNG"), "ok"),
        "3x3 (smaller than a patch)": (_save(Image.fromarray(_photo(3, 3)), "PNG"), "ok"),
        "16-bit grey png": (_save(Image.fromarray((np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)), "PNG"),
                            "ok"),
        "cmyk jpeg": (_save(Image.fromarray(photo).convert("CMYK"), "JPEG"), "ok"),
        "palette png": (_save(Image.fromarray(photo).convert("P"), "PNG"), "ok"),
        "grey+alpha png": (_save(la, "PNG"), "ok"),
        "animated gif": (gif.getvalue(), "ok"),
        "animated webp": (webp.getvalue(), "ok"),
        "exif-rotated jpeg": (_save(Image.fromarray(photo), "JPEG", exif=exif.tobytes()), "ok"),
        "multi-page tiff": (tiff.getvalue(), "ok"),
        "numpy with nan": (np.full((8, 8, 3), np.nan, np.float32), "error"),
        "numpy with inf": (np.full((8, 8, 3), np.inf), "error"),
        "numpy wrong dtype": (np.zeros((8, 8, 3), np.complex64), "error"),
        "numpy wrong channels": (np.zeros((8, 8, 2), np.uint8), "error"),
        "numpy 1-d": (np.zeros(10, np.uint8), "error"),
        "numpy empty": (np.zeros((0, 5, 3), np.uint8), "error"),
    }
