"""Small pictures of a detected face, for people to look at (not for the
embedder, which takes the aligned crop of :mod:`facedex.faces.align`).

:func:`thumbnail` cuts a square around the face, 1.6x its box; :func:`crop_jpeg`
encodes one as the small JPEG the library keeps per sighting (the contact
sheet's picture). Both are here, below the stages that use them (video
tracks, the library indexer, the Ray actors), so each makes the same picture.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

#: Side, in pixels, of the face crop the library keeps for review (the contact sheet).
CROP_SIZE = 112
CROP_QUALITY = 85


def thumbnail(rgb: np.ndarray, box: Sequence[float], size: int = 160) -> np.ndarray:
    """A square crop around the face (1.6 x its box), at most ``size`` pixels."""
    import cv2

    x, y, w, h = box
    side = 1.6 * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    H, W = rgb.shape[:2]
    x0, y0 = int(max(0, math.floor(cx - side / 2))), int(max(0, math.floor(cy - side / 2)))
    x1, y1 = int(min(W, math.ceil(cx + side / 2))), int(min(H, math.ceil(cy + side / 2)))
    crop = rgb[y0:y1, x0:x1]
    if crop.size == 0:
        return np.zeros((size, size, 3), np.uint8)
    scale = size / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


def crop_jpeg(rgb: np.ndarray, box: Sequence[float] | None = None, size: int = CROP_SIZE) -> bytes:
    """A small JPEG of the face: a square 1.6x its box (as the video contact
    sheet's), at most ``size`` pixels; ``box=None`` takes ``rgb`` as the crop."""
    from PIL import Image

    crop = thumbnail(rgb, box, size) if box is not None else rgb
    im = Image.fromarray(np.ascontiguousarray(crop))
    if max(im.size) > size:
        im.thumbnail((size, size))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=CROP_QUALITY)
    return buf.getvalue()


__all__ = ["CROP_QUALITY", "CROP_SIZE", "crop_jpeg", "thumbnail"]
