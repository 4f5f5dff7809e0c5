"""Media: sniff once, decode safely — images, animations, videos — into RGB.

* :mod:`.image` — still images (JPEG, PNG, WebP, BMP, TIFF, GIF) with Pillow:
  content-sniffed, EXIF-oriented, any mode to RGB, pixel limit checked from
  the header before decoding.
* :mod:`.sniff` — what a file is, from its bytes.
* :mod:`.video` — videos (OpenCV's FFmpeg) and animated GIF/WebP/PNG
  (Pillow) as a stream of timestamped RGB frames.
* :mod:`.inputs` — what the user gave (paths, folders, ``-``, bytes) →
  inputs, sniffed and opened once.

Nothing here knows about faces or galleries.
"""

from __future__ import annotations

import os
from pathlib import Path

from .image import (
    IMAGE_SUFFIXES,
    MAX_FILE_BYTES,
    ImageInput,
    check_input_file,
    decode_image,
    describe_bytes,
    image_signature,
    item_name,
    load_image,
    read_file,
)
from .inputs import MediaInput, Motion, Photo, Skipped, expand_inputs, list_folder, open_media
from .sniff import VIDEO_SUFFIXES, Sniffed, sniff


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files under ``folder``, by content (see :mod:`.inputs` for the folder rules)."""
    return list_folder(folder, videos=False)[0]


__all__ = [
    "IMAGE_SUFFIXES", "MAX_FILE_BYTES", "VIDEO_SUFFIXES", "ImageInput", "MediaInput", "Motion", "Photo", "Skipped",
    "Sniffed", "check_input_file", "decode_image", "describe_bytes", "expand_inputs", "image_signature",
    "item_name", "list_folder", "list_images", "load_image", "open_media", "read_file", "sniff",
]
