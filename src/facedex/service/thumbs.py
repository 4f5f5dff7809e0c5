"""Face thumbnails for the People view — erased with the person.

One JPEG per person, ``thumbs/<sha256 of the name>.jpg`` in the service's data
folder: the file name never holds the name itself (no path can be built from
it). A thumbnail is cut, with some margin, from the box of one of the
person's enrolled faces: from the uploaded photo when enrolled through the
service, else — for people enrolled with the CLI — from the source file the
gallery names, read only if its SHA-256 still matches the gallery's record.

``DELETE /v1/people/NAME`` removes the thumbnail right after the gallery
erased the person; at start and whenever the people are listed, thumbnails
of people no longer in the gallery (forgotten with the CLI meanwhile) are
removed, and a thumbnail is served only for a person the gallery holds. Every
write holds the gallery's write lock. Responses carry ``Cache-Control:
no-store``, so browsers keep no copy either.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from pathlib import Path
from typing import Iterable, Mapping

from ..files import atomic_writer
from ..names import person_name

log = logging.getLogger(__name__)

SIZE = 160
MARGIN = 0.35


def _key(name: str) -> str:
    return hashlib.sha256(person_name(name).encode("utf-8", "surrogatepass")).hexdigest()


class Thumbnails:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.folder / f"{_key(name)}.jpg"

    def remove(self, name: str) -> None:
        try:
            os.unlink(self.path(name))
        except FileNotFoundError:
            pass

    def prune(self, people: Iterable[str]) -> int:
        """Remove thumbnails of anyone not in ``people``; returns how many."""
        keep = {f"{_key(n)}.jpg" for n in people}
        removed = 0
        for f in self.folder.glob("*.jpg"):
            if f.name not in keep:
                f.unlink(missing_ok=True)
                removed += 1
        for f in self.folder.glob(".*.tmp"):  # an interrupted write
            f.unlink(missing_ok=True)
        return removed

    def read(self, gallery, name: str) -> bytes | None:
        """The stored thumbnail, if any; raises PersonNotFoundError when the
        person is not enrolled (an orphan file is never served)."""
        gallery.store.faces_of(name)
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None

    def get(self, gallery, name: str, uploads: Mapping[str, bytes] | None = None) -> bytes | None:
        """The person's thumbnail, made now if missing (``uploads``: sha256 → bytes
        of photos just enrolled). Raises PersonNotFoundError when not enrolled.
        Call with the gallery's write lock held."""
        faces = gallery.store.faces_of(name)  # raises when the person is not enrolled
        p = self.path(name)
        if p.exists():
            return p.read_bytes()
        for face in sorted(faces, key=lambda f: -float(f["detection_score"] or 0)):
            data = None
            sha = face.get("sha256")
            if uploads and sha in uploads:
                data = uploads[sha]
            elif face.get("path") and sha:
                data = _read_matching(face["path"], sha)
            if data is None:
                continue
            jpeg = _crop(data, face["box"])
            if jpeg is None:
                continue
            with atomic_writer(p) as fh:
                fh.write(jpeg)
            return jpeg
        return None


def _read_matching(path: str, sha: str) -> bytes | None:
    p = Path(path)
    try:
        if not p.is_file() or p.stat().st_size > 64 * 1024 * 1024:
            return None
        data = p.read_bytes()
    except OSError:
        return None
    return data if hashlib.sha256(data).hexdigest() == sha else None


def _crop(data: bytes, box) -> bytes | None:
    from PIL import Image

    from ..errors import FacedexError
    from ..media import load_image

    try:
        rgb = load_image(data)  # the library's decoder: same orientation as the stored box
    except FacedexError:
        return None
    x, y, w, h = (float(v) for v in box)
    if w <= 1 or h <= 1:
        return None
    side = max(w, h) * (1 + 2 * MARGIN)
    cx, cy = x + w / 2, y + h / 2
    H, W = rgb.shape[:2]
    x0, y0 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    x1, y1 = int(min(W, cx + side / 2)), int(min(H, cy + side / 2))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    im = Image.fromarray(rgb[y0:y1, x0:x1])
    im.thumbnail((SIZE, SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()
