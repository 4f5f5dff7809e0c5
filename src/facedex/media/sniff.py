"""What kind of media a file is, from its content (never its extension).

:func:`sniff` answers ``"image"`` (a still photo, including a one-frame GIF),
``"animation"`` (an animated GIF, WebP or PNG), ``"video"`` (a container
FFmpeg can demultiplex: MP4/MOV, Matroska/WebM, AVI, MPEG-TS/PS, FLV, ASF,
Ogg with Theora), ``"audio"`` (a known audio-only format) or ``"unknown"``.

Only content recognised as a video container is handed to FFmpeg: FFmpeg
probes very liberally (a text file can "decode" as ANSI art), so guessing is
left to this module.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from .. import config
from .image import image_signature

#: File name endings of videos, used only to find videos in folders and to
#: word error messages; the content decides how a file is read.
VIDEO_SUFFIXES = frozenset({
    ".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".m2v", ".ts", ".m2ts",
    ".mts", ".flv", ".wmv", ".asf", ".3gp", ".3g2", ".ogv",
})

#: What the video path accepts, for error messages.
SUPPORTED = ("videos: MP4, MOV, MKV, WebM, AVI (H.264, H.265/HEVC, VP8, VP9, MPEG-4, MJPEG and the other codecs "
             "of OpenCV's FFmpeg), MPEG-TS, FLV; animations: GIF, WebP, PNG")

_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A ", b"F4B "}
_QT_ATOMS = {b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot"}


@dataclass(frozen=True)
class Sniffed:
    kind: str
    format: str

    @property
    def is_video(self) -> bool:
        """True for what the video path reads (videos and animations)."""
        return self.kind in ("video", "animation")


def sniff_head(head: bytes) -> Sniffed:
    """Classify from the leading bytes alone (at least 512 are best).

    An image format here is reported as ``"image"``; telling an animated GIF
    from a still one needs the whole header (:func:`sniff`).
    """
    fmt = image_signature(head[:16])
    if fmt is None and head[:4] == b"\x8aMNG":
        fmt = "MNG"
    if fmt is not None:
        return Sniffed("image", fmt)
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _AUDIO_BRANDS:
            return Sniffed("audio", "an MPEG-4 audio file (M4A)")
        if brand.startswith(b"qt"):
            return Sniffed("video", "MOV")
        return Sniffed("video", "MP4")
    if head[4:8] in _QT_ATOMS and len(head) >= 8:
        return Sniffed("video", "MOV")
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return Sniffed("video", "WebM" if b"webm" in head[:64] else "Matroska")
    if head[:4] == b"RIFF":
        sub = head[8:12]
        if sub == b"AVI ":
            return Sniffed("video", "AVI")
        if sub == b"WAVE":
            return Sniffed("audio", "a WAV audio file")
        return Sniffed("unknown", f"a RIFF file of type {sub.decode('latin-1')!r}")
    if head[:3] == b"FLV":
        return Sniffed("video", "FLV")
    if head[:8] == b"\x30\x26\xb2\x75\x8e\x66\xcf\x11":
        return Sniffed("video", "ASF/WMV")
    if len(head) > 376 and head[0] == 0x47 and head[188] == 0x47 and head[376] == 0x47:
        return Sniffed("video", "MPEG-TS")
    if head[:4] in (b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3"):
        return Sniffed("video", "MPEG-PS")
    if head[:4] == b"OggS":
        if b"\x80theora" in head[:512]:
            return Sniffed("video", "Ogg/Theora")
        return Sniffed("audio", "an Ogg audio file")
    if head[:3] == b"ID3" or (len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return Sniffed("audio", "an MP3 audio file")
    if head[:4] == b"fLaC":
        return Sniffed("audio", "a FLAC audio file")
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return Sniffed("audio", "an AIFF audio file")
    if head[:5] == b"#!AMR":
        return Sniffed("audio", "an AMR audio file")
    if head[:4] == b"MThd":
        return Sniffed("audio", "a MIDI file")
    return Sniffed("unknown", "")


def _image_kind(data: bytes | str | os.PathLike, fmt: str, max_pixels: int) -> Sniffed:
    """``"animation"`` when Pillow sees more than one frame, else ``"image"``.

    Anything Pillow cannot open, or a frame over the pixel limit, is reported
    as ``"image"``: the photo path then gives its own precise error (an image
    over the limit is refused before decoding).
    """
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            src = io.BytesIO(data) if isinstance(data, bytes) else data
            with Image.open(src) as im:
                w, h = im.size
                if w * h > max_pixels or w == 0 or h == 0:
                    return Sniffed("image", fmt)
                if getattr(im, "is_animated", False) and getattr(im, "n_frames", 1) > 1:
                    return Sniffed("animation", fmt)
    except Exception:  # noqa: BLE001 - any failure: let the photo path explain it
        return Sniffed("image", fmt)
    return Sniffed("image", fmt)


def sniff(source: str | os.PathLike | bytes, max_pixels: int | None = None) -> Sniffed:
    """Classify a file (or bytes) by content. A missing or unreadable file is
    ``"unknown"``: the caller's decoder reports why."""
    limit = max_pixels if max_pixels is not None else config.max_pixels()
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        found = sniff_head(data[:1024])
        if found.kind == "image" and found.format in ("GIF", "PNG", "WebP"):
            return _image_kind(data, found.format, limit)
        return found
    path = Path(source)
    try:
        with open(path, "rb") as fh:
            head = fh.read(1024)
    except OSError:
        return Sniffed("unknown", "")
    found = sniff_head(head)
    if found.kind == "image" and found.format in ("GIF", "PNG", "WebP"):
        return _image_kind(path, found.format, limit)
    return found


def looks_like_video_name(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES
