"""Decoding: formats, colour modes, orientation, and hostile or broken files."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

import facedex
from facedex.errors import (
    CorruptMediaError,
    ImageTooLargeError,
    MediaError,
    MediaNotFoundError,
    UnsupportedMediaError,
)
from facedex.media import decode_image, load_image

from .conftest import lfw_image

SAMPLE = lfw_image("Colin_Powell", 1)


def _reference_box():
    faces = facedex.detect(SAMPLE)
    assert len(faces) >= 1
    return faces[0].box


def _iou(a, b):
    ax2, ay2, bx2, by2 = a[0] + a[2], a[1] + a[3], b[0] + b[2], b[1] + b[3]
    iw = max(0.0, min(ax2, bx2) - max(a[0], b[0]))
    ih = max(0.0, min(ay2, by2) - max(a[1], b[1]))
    inter = iw * ih
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _variants():
    rgb = Image.open(SAMPLE).convert("RGB")
    grey = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    alpha = np.array(rgba)
    alpha[:20, :, 3] = 0  # a transparent band at the top
    rgba = Image.fromarray(alpha)
    sixteen = Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257)
    frames = [rgb, Image.new("RGB", rgb.size, (255, 0, 0))]
    gif = io.BytesIO()
    frames[0].save(gif, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    return {
        "jpeg": _encode(rgb, "JPEG", quality=95),
        "png": _encode(rgb, "PNG"),
        "webp": _encode(rgb, "WEBP", quality=95),
        "bmp": _encode(rgb, "BMP"),
        "tiff": _encode(rgb, "TIFF"),
        "gif-animated-first-frame": gif.getvalue(),
        "grey-jpeg": _encode(grey, "JPEG", quality=95),
        "cmyk-jpeg": _encode(rgb.convert("CMYK"), "JPEG", quality=95),
        "rgba-png": _encode(rgba, "PNG"),
        "palette-png": _encode(rgb.convert("P", palette=Image.Palette.ADAPTIVE), "PNG"),
        "16bit-grey-png": _encode(sixteen, "PNG"),
    }


@pytest.mark.parametrize("name,data", list(_variants().items()))
def test_every_format_and_mode_decodes_to_rgb_and_keeps_the_face(name, data):
    rgb = decode_image(data, name)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[:2] == (250, 250)
    faces = facedex.detect(rgb)
    assert faces, f"{name}: face lost after decoding"
    assert max(_iou(f.box, _reference_box()) for f in faces) > 0.8


def test_sixteen_bit_is_scaled_not_clipped():
    grey = np.asarray(Image.open(SAMPLE).convert("L"))
    sixteen = Image.fromarray(grey.astype(np.uint16) * 257)
    rgb = decode_image(_encode(sixteen, "PNG"))
    assert np.abs(rgb[:, :, 0].astype(int) - grey.astype(int)).max() <= 1


def test_alpha_is_composited_on_white():
    im = Image.new("RGBA", (40, 30), (10, 20, 30, 0))
    rgb = decode_image(_encode(im, "PNG"))
    assert (rgb == 255).all()


def test_gif_gives_the_first_frame():
    frames = [Image.new("RGB", (32, 32), (0, 0, 255)), Image.new("RGB", (32, 32), (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    rgb = decode_image(buf.getvalue())
    assert rgb[16, 16, 2] > 200 and rgb[16, 16, 0] < 50


@pytest.mark.parametrize("orientation,transpose", [(3, Image.Transpose.ROTATE_180),
                                                   (6, Image.Transpose.ROTATE_90),
                                                   (8, Image.Transpose.ROTATE_270)])
def test_exif_orientation_is_applied(orientation, transpose):
    """A camera stores the sensor image rotated plus an EXIF tag; the face is only
    found upright when the tag is honoured."""
    upright = Image.open(SAMPLE).convert("RGB")
    stored = upright.transpose(transpose)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = _encode(stored, "JPEG", quality=95, exif=exif.tobytes())
    rgb = decode_image(data, "exif.jpg")
    assert rgb.shape[:2] == (250, 250)
    faces = facedex.detect(rgb)
    assert faces and max(_iou(f.box, _reference_box()) for f in faces) > 0.7


def test_accepts_arrays_pil_and_bytes():
    arr = load_image(SAMPLE)
    assert load_image(arr) is not None
    assert load_image(Image.open(SAMPLE)).shape == arr.shape
    assert load_image(SAMPLE.read_bytes()).shape == arr.shape
    grey = arr[:, :, 0]
    assert load_image(grey).shape == arr.shape
    with pytest.raises(MediaError, match="dtype"):
        load_image(arr.astype(np.float32))
    with pytest.raises(MediaError, match="shape"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def _png_header_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1) * 4)  # a few rows; never decoded
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bad_files(tmp_path):
    jpeg = SAMPLE.read_bytes()
    cases = {
        "empty.jpg": (b"", CorruptMediaError, "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 3], CorruptMediaError, "decode"),
        "text.jpg": (b"this is not an image at all\n" * 10, UnsupportedMediaError, "text"),
        "page.jpg": (b"<!DOCTYPE html><html><body>404</body></html>", UnsupportedMediaError, "HTML"),
        "huge.png": (_png_header_bomb(30000, 30000), ImageTooLargeError, "pixels"),
        "garbage.png": (b"\x89PNG\r\n\x1a\n" + os.urandom(200), CorruptMediaError, ""),
    }
    paths = {}
    for name, (data, exc, msg) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        paths[name] = (p, exc, msg)
    return paths


@pytest.mark.parametrize("name", ["empty.jpg", "truncated.jpg", "text.jpg", "page.jpg", "huge.png", "garbage.png"])
def test_bad_files_give_a_clear_error_naming_the_file(tmp_path, name):
    path, exc, msg = _bad_files(tmp_path)[name]
    with pytest.raises(exc) as info:
        load_image(path)
    assert str(path) in str(info.value)
    assert msg.lower() in str(info.value).lower()


def test_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    """The bomb is refused from its header: decoding is never attempted."""
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_bomb(30000, 30000))
    called = []
    monkeypatch.setattr(Image.Image, "load", lambda self: called.append(1))
    with pytest.raises(ImageTooLargeError):
        load_image(p)
    assert not called


def test_pixel_limit_is_configurable(monkeypatch):
    monkeypatch.setenv("FACEDEX_MAX_PIXELS", "10000")
    with pytest.raises(ImageTooLargeError, match="FACEDEX_MAX_PIXELS"):
        load_image(SAMPLE)  # 250 x 250 = 62,500 pixels


@pytest.mark.parametrize("kind", ["missing", "directory", "dangling-link"])
def test_paths_that_are_not_files(tmp_path, kind):
    p = tmp_path / "x.jpg"
    if kind == "directory":
        p.mkdir()
    elif kind == "dangling-link":
        p.symlink_to(tmp_path / "nowhere.jpg")
    with pytest.raises(MediaNotFoundError, match=str(p)):
        load_image(p)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file(tmp_path):
    p = tmp_path / "locked.jpg"
    p.write_bytes(SAMPLE.read_bytes())
    p.chmod(0)
    with pytest.raises(MediaError, match="locked.jpg"):
        load_image(p)
