"""Decode images safely into RGB ``uint8`` arrays.

Accepted inputs: a path, raw bytes, a :class:`PIL.Image.Image` or a numpy
array (``HxW`` grey or ``HxWx3`` RGB / ``HxWx4`` RGBA, ``uint8``). Files are
identified by their content, never by their extension. JPEG, PNG, WebP, BMP,
TIFF and GIF (first frame) are decoded with Pillow; EXIF orientation is
applied; grey, palette, CMYK, 16-bit and alpha images become RGB (alpha is
composited onto white). An image larger than :func:`facedex.config.max_pixels`
is refused from its header, before any pixel is decoded.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import threading
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .. import config
from ..errors import (
    CorruptMediaError,
    ImageTooLargeError,
    MediaError,
    MediaNotFoundError,
    UnsupportedMediaError,
)

log = logging.getLogger(__name__)

ImageInput = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]

#: Files larger than this are refused before being read (bytes).
MAX_FILE_BYTES = 512 * 1024 * 1024

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".tif", ".tiff", ".gif"}
)

# Leading bytes of formats people feed us by mistake, to say what a file is.
_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"ftyp", 4, "an MP4/MOV video"),
    (b"\x1a\x45\xdf\xa3", 0, "a Matroska/WebM video"),
    (b"RIFF", 0, "a RIFF file (AVI video or WAV audio)"),
    (b"%PDF", 0, "a PDF document"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"<!DOCTYPE html", 0, "an HTML page"),
    (b"<html", 0, "an HTML page"),
    (b"ID3", 0, "an MP3 audio file"),
    (b"OggS", 0, "an Ogg media file"),
]


def image_signature(head: bytes) -> str | None:
    """The image format named by the leading bytes, whatever the file is called."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def describe_bytes(head: bytes) -> str:
    """A short guess of what non-image bytes are, for error messages."""
    lowered = head[:64].lstrip().lower()
    for sig, offset, what in _SIGNATURES:
        if head[offset : offset + len(sig)] == sig or lowered.startswith(sig.lower()):
            return what
    if not head:
        return "empty"
    try:
        head[:512].decode("utf-8")
        return "text"
    except UnicodeDecodeError:
        return "binary data of an unknown format"


def item_name(source: ImageInput, name: str | None = None) -> str:
    if name:
        return name
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    if isinstance(source, Image.Image):
        return "<PIL image>"
    return "<array>"


def check_input_file(path: Path, item: str, kind: str = "an image") -> os.stat_result:
    """Stat an input file before opening it: missing, unreadable, a folder, a
    special file (FIFO, socket, device — opening one could block for ever) or
    an empty file each raise an error naming ``item``."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaNotFoundError(item, "no such file") from None
    except OSError as err:
        raise MediaNotFoundError(item, f"cannot access ({err.strerror or err})") from err
    if stat.S_ISDIR(st.st_mode):
        raise MediaNotFoundError(item, f"is a directory, not {kind} file")
    if not stat.S_ISREG(st.st_mode):
        what = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a special file")
        raise UnsupportedMediaError(item, f"is {what}, not a regular file; refused without opening it")
    if st.st_size == 0:
        raise CorruptMediaError(item, "empty file (0 bytes)")
    return st


def read_file(path: str | os.PathLike, max_bytes: int = MAX_FILE_BYTES, *, st: os.stat_result | None = None,
              name: str | None = None) -> bytes:
    """Read a whole input file, with errors that name it."""
    p = Path(path)
    item = name or str(path)
    st = st or check_input_file(p, item)
    if st.st_size > max_bytes:
        raise ImageTooLargeError(item, f"file is {st.st_size:,} bytes; the limit is {max_bytes:,}")
    try:
        return p.read_bytes()
    except OSError as err:
        raise MediaError(item, f"cannot read ({err.strerror or err})") from err


_PILLOW_LIMIT = threading.Lock()

#: A JPEG holds at least about one byte per 8x8 block (a flat black 9000x9000
#: JPEG is 64 pixels per byte); far fewer bytes than that for the size its
#: header claims means the data is cut short.
JPEG_MAX_PIXELS_PER_BYTE = 1024


def _open(data: bytes, item: str, limit: int) -> Image.Image:
    """Open (header only) with Pillow, whose own decompression-bomb cap is set
    to facedex's limit for the call, so there is one limit: the documented one."""
    if not data:
        raise CorruptMediaError(item, "empty file (0 bytes)")
    try:
        with _PILLOW_LIMIT, warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            before = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = limit // 2  # Pillow refuses at twice this: at ``limit``, facedex does
            try:
                return Image.open(io.BytesIO(data))
            finally:
                Image.MAX_IMAGE_PIXELS = before
    except UnidentifiedImageError:
        fmt = image_signature(data[:16])
        if fmt is not None:
            raise CorruptMediaError(item, f"starts like a {fmt} file but its header is damaged") from None
        what = describe_bytes(data[:600])
        raise UnsupportedMediaError(
            item, f"not a supported image (the content looks like {what}); "
            "supported: JPEG, PNG, WebP, BMP, TIFF, GIF"
        ) from None
    except Image.DecompressionBombError as err:
        raise ImageTooLargeError(item, f"more pixels than the limit of {limit:,} (FACEDEX_MAX_PIXELS); "
                                       f"refused before decoding ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptMediaError(item, f"cannot read the image header ({err})") from err


def _to_rgb_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode in ("I", "F") or mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.float32)
        if mode == "F" and arr.size and float(np.nanmax(arr)) <= 1.0:
            arr = arr * 255.0
        elif arr.size and float(arr.max()) > 255.0:
            arr = arr / 257.0  # 16-bit range onto 8-bit
        grey = np.clip(np.nan_to_num(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in im.info
    )
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def decode_image(data: bytes, item: str = "<bytes>", max_pixels: int | None = None,
                 timeout: float | None = None) -> np.ndarray:
    """Decode encoded image bytes into an RGB ``uint8`` array (``HxWx3``).

    No image may hold up a batch: one that takes longer than ``timeout``
    seconds (default ``FACEDEX_DECODE_TIMEOUT``, 60) is reported as an error;
    its decoding is left to finish in the background and its pixels dropped.
    """
    limit = max_pixels if max_pixels is not None else config.max_pixels()
    seconds = config.decode_timeout() if timeout is None else timeout
    box: dict[str, object] = {}

    def work() -> None:
        try:
            box["rgb"] = _decode(data, item, limit)
        except BaseException as err:  # noqa: BLE001 - handed to the caller's thread
            box["err"] = err

    worker = threading.Thread(target=work, name=f"facedex-decode {item}"[:60], daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise CorruptMediaError(item, f"decoding took longer than {seconds:g} s (FACEDEX_DECODE_TIMEOUT); skipped")
    if "err" in box:
        raise box["err"]  # type: ignore[misc]
    return box["rgb"]  # type: ignore[return-value]


def _decode(data: bytes, item: str, limit: int) -> np.ndarray:
    im = _open(data, item, limit)
    width, height = im.size
    if width * height > limit:
        raise ImageTooLargeError(
            item, f"{width}x{height} = {width * height:,} pixels exceeds the limit of "
            f"{limit:,} (FACEDEX_MAX_PIXELS); refused before decoding"
        )
    if width == 0 or height == 0:
        raise CorruptMediaError(item, f"image has no pixels ({width}x{height})")
    if im.format == "JPEG" and width * height > JPEG_MAX_PIXELS_PER_BYTE * len(data):
        raise CorruptMediaError(
            item, f"truncated or damaged: the header says {width}x{height} but the file holds only {len(data):,} "
            f"bytes (a JPEG of that size needs at least ~{width * height // 64:,}); not decoded")
    try:
        im.seek(0)  # first frame of an animation
        im.load()
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        raise CorruptMediaError(item, f"cannot decode the image ({err})") from err
    try:
        im = ImageOps.exif_transpose(im)
    except Exception as err:  # a malformed EXIF block must not lose the image
        log.warning("%s: ignoring unreadable EXIF orientation (%s)", item, err)
    try:
        return _to_rgb_array(im)
    except (OSError, ValueError) as err:
        raise CorruptMediaError(item, f"cannot convert mode {im.mode} to RGB ({err})") from err


def _array_to_rgb(arr: np.ndarray, item: str) -> np.ndarray:
    if arr.dtype != np.uint8:
        raise MediaError(item, f"array dtype must be uint8, got {arr.dtype}")
    if arr.ndim == 2:
        return np.ascontiguousarray(np.repeat(arr[:, :, None], 3, axis=2))
    if arr.ndim == 3 and arr.shape[2] == 3:
        return np.ascontiguousarray(arr)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return _to_rgb_array(Image.fromarray(np.ascontiguousarray(arr)))
    raise MediaError(item, f"array must be HxW, HxWx3 (RGB) or HxWx4 (RGBA); got shape {arr.shape}")


def load_image(source: ImageInput, *, name: str | None = None, max_pixels: int | None = None) -> np.ndarray:
    """Load any accepted input as an RGB ``uint8`` array (``HxWx3``).

    Raises a :class:`facedex.errors.MediaError` subclass naming the item.
    """
    item = item_name(source, name)
    if isinstance(source, np.ndarray):
        limit = max_pixels if max_pixels is not None else config.max_pixels()
        if source.ndim >= 2 and source.shape[0] * source.shape[1] > limit:
            raise ImageTooLargeError(item, f"{source.shape[1]}x{source.shape[0]} exceeds {limit:,} pixels")
        return _array_to_rgb(source, item)
    if isinstance(source, Image.Image):
        return _to_rgb_array(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image(bytes(source), item, max_pixels)
    if isinstance(source, (str, os.PathLike)):
        return decode_image(read_file(source), item, max_pixels)
    raise MediaError(item, f"unsupported input type {type(source).__name__}")
