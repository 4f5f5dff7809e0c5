"""Draw boxes, landmarks and names onto images (for ``--annotate``)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..types import Face, Identification

KNOWN = (46, 204, 113)
UNKNOWN = (231, 76, 60)
DETECTED = (52, 152, 219)


def font(size: int) -> ImageFont.ImageFont:
    """Pillow's default font at ``size`` pixels (fixed size on old Pillow)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no scalable default font
        return ImageFont.load_default()


def annotate(image: np.ndarray, faces: Sequence[Face | Identification]) -> np.ndarray:
    """A copy of the RGB image with each face's box and landmarks drawn, and for
    identifications the name (or "unknown") with its similarity."""
    im = Image.fromarray(image).convert("RGB")
    draw = ImageDraw.Draw(im)
    short = min(im.size)
    width = max(2, short // 300)
    fnt = font(max(12, short // 40))
    for item in faces:
        face = item.face if isinstance(item, Identification) else item
        x, y, w, h = face.box
        if isinstance(item, Identification):
            color = KNOWN if item.known else UNKNOWN
            label = f"{item.name} {item.similarity:.2f}" if item.known else "unknown"
        else:
            color, label = DETECTED, f"{face.score:.2f}"
        labelled_box(draw, (x, y, w, h), label, color, width, fnt, im.size[0])
        r = max(1.5, width)
        for px, py in face.landmarks:
            draw.ellipse([px - r, py - r, px + r, py + r], fill=color)
    return np.asarray(im)


def labelled_box(draw: ImageDraw.ImageDraw, box, label: str, color, width: int, fnt, image_width: int) -> None:
    """A box outline with ``label`` on a filled tag above it (below when there is no room), kept inside
    ``image_width``."""
    x, y, w, h = box
    draw.rectangle([x, y, x + w, y + h], outline=color, width=width)
    tb = draw.textbbox((0, 0), label, font=fnt)
    tw, th = tb[2] - tb[0], tb[3] - tb[1]
    ty = y - th - 2 * width if y - th - 2 * width >= 0 else y + h
    tx = max(0, min(x, image_width - tw - 2 * width))
    draw.rectangle([tx, ty, tx + tw + 2 * width, ty + th + 2 * width], fill=color)
    draw.text((tx + width, ty + width - tb[1]), label, fill=(255, 255, 255), font=fnt)
