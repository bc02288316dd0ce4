import io

import numpy as np
import pytest
from PIL import Image

import adapatch as ap


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_sources_agree(tmp_path):
    arr = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    data = _png(Image.fromarray(arr))
    p = tmp_path / "x.png"
    p.write_bytes(data)
    ref = arr.astype(np.float32) / 255
    for src in (str(p), p, data, io.BytesIO(data), Image.fromarray(arr), arr):
        out = ap.load_image(src)
        assert out.dtype == np.float32 and out.shape == (20, 30, 3)
        np.testing.assert_allclose(out, ref, atol=1e-6)


def test_modes_convert():
    g16 = Image.fromarray(np.full((5, 6), 65535 // 2, np.uint16))
    out = ap.load_image(_png(g16))
    assert out.shape == (5, 6, 3) and abs(out.mean() - 0.5) < 1e-3
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert np.allclose(ap.load_image(_png(rgba)), 1.0)  # transparent -> white
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    assert np.allclose(ap.load_image(_png(cmyk, "JPEG")).mean(axis=(0, 1)), [1, 0, 0], atol=0.05)
    pal = Image.new("P", (4, 4))
    assert ap.load_image(_png(pal)).shape == (4, 4, 3)
    grey = np.zeros((3, 3), np.uint8)
    assert ap.load_image(grey).shape == (3, 3, 3)


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (0, 0, 10, 20))  # white on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    loaded = ap.open_image(_png(img, "JPEG", exif=exif.tobytes(), quality=95))
    assert loaded.array.shape == (40, 20, 3)
    assert loaded.array[:10].mean() > 0.8 and loaded.array[-10:].mean() < 0.2
    assert any("EXIF" in n for n in loaded.notes)


@pytest.mark.parametrize("data, pattern", [
    (b"", "empty"),
    (b"\x00\x01garbage" * 10, "not an image"),
    (b"<html><body>hi</body></html>", "not an image"),
])
def test_bad_bytes(data, pattern):
    with pytest.raises(ap.ImageError, match=pattern):
        ap.load_image(data)


def test_truncated_png_is_image_error():
    data = _png(Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8)))
    with pytest.raises(ap.ImageError):
        ap.load_image(data[: len(data) // 2])


def test_pixel_limit_checked_before_decoding():
    data = _png(Image.new("L", (3000, 3000)))
    with pytest.raises(ap.ImageError, match="megapixels"):
        ap.load_image(data, max_pixels=1_000_000)


@pytest.mark.parametrize("arr, pattern", [
    (np.full((4, 4, 3), np.nan, np.float32), "NaN"),
    (np.zeros((4, 4, 5), np.float32), "shape"),
    (np.zeros((4, 4, 3), np.complex64), "dtype"),
    (np.full((4, 4, 3), 7.0), r"\[0, 1\]"),
])
def test_bad_arrays(arr, pattern):
    with pytest.raises(ap.ImageError, match=pattern):
        ap.load_image(arr)


def test_error_message_is_one_line():
    try:
        ap.load_image(b"\x89PNG\r\n\x1a\n broken")
    except ap.ImageError as e:
        assert "\n" not in str(e) and len(str(e)) < 200
    else:
        raise AssertionError("expected ImageError")


def test_resize_helpers():
    assert ap.fit_size(100, 50, 5000) is None
    assert ap.fit_size(2000, 1000, 500_000) == (1000, 500)
    img = np.random.default_rng(0).random((64, 48, 3)).astype(np.float32)
    out = ap.resize_image(img, (16, 12))
    assert out.shape == (16, 12, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, img.reshape(16, 4, 12, 4, 3).mean(axis=(1, 3)), atol=1e-6)  # area = block mean
    assert ap.resize_image(img[:, :, :1], (8, 6)).shape == (8, 6, 1)
    same, size = ap.downscale_to_pixels(img, 64 * 48)
    assert same is img and size is None
    small, size = ap.downscale_to_pixels(img, 64 * 48 // 4)
    assert size == (32, 24) and small.shape == (32, 24, 3)
    with pytest.raises(ValueError, match="size"):
        ap.resize_image(img, (0, 5))
    with pytest.raises(ValueError, match="max_pixels"):
        ap.fit_size(10, 10, 0)


def test_fit_size_never_exceeds_the_pixel_cap():
    for h, w, cap in ((1, 50_000_000, 4_000_000), (50_000_000, 1, 4_000_000), (3, 10**7, 100), (7, 7, 1)):
        size = ap.fit_size(h, w, cap)
        assert size is not None and size[0] * size[1] <= cap and min(size) >= 1
