"""Annotated copies of photos: boxes, landmarks and names drawn on the decoded image."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..files import atomic_writer
from ..types import Face, Identification
from .draw import annotate

#: Suffixes kept for annotated photos; any other input format is written as PNG.
KEPT_SUFFIXES = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}


def image_suffix(source_name: str) -> str:
    """``.jpg``/``.jpeg``/``.png`` as the input had it, else ``.png``."""
    suffix = Path(source_name).suffix.lower()
    return suffix if suffix in KEPT_SUFFIXES else ".png"


def write_annotated_image(rgb: np.ndarray, faces: Sequence[Face | Identification], out: str | os.PathLike) -> Path:
    """Draw ``faces`` on a copy of ``rgb`` and write it to ``out`` (JPEG or PNG by suffix), atomically."""
    from PIL import Image

    out = Path(out)
    drawn = Image.fromarray(annotate(rgb, faces))
    fmt = KEPT_SUFFIXES.get(out.suffix.lower(), "PNG")
    with atomic_writer(out) as f:
        drawn.save(f, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return out
