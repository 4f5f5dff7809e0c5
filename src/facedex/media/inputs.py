"""What the user gave → inputs, sniffed once and opened once.

:class:`MediaInput` is one input: a name (what results call it: the path as
given, ``-`` for standard input, an upload's file name) and either a path or
the bytes. :func:`expand_inputs` turns paths and folders into inputs, listing
folders by *content* (a file is an image or a video because of its bytes, not
its name) and reporting every file it leaves out, with the reason.
:func:`open_media` sniffs an input once and returns either a decoded
:class:`Photo` or a :class:`Motion` (a video or animation, ready to stream).

Folder rules (one rule everywhere): folders are walked recursively in sorted
order; entries whose name starts with ``.`` are hidden and left out; links to
files are followed, links to folders are not (no loops); anything that is not
a regular file (FIFO, socket, device) is left out. Each is reported.
"""

from __future__ import annotations

import io
import os
import stat
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Union

import numpy as np

from .. import config
from ..errors import MediaError, UnsupportedMediaError
from .image import MAX_FILE_BYTES, check_input_file, decode_image, describe_bytes, read_file
from .sniff import Sniffed, _image_kind, looks_like_video_name, sniff_head

#: Bytes read to tell what a file is.
HEAD_BYTES = 4096


@dataclass(frozen=True)
class MediaInput:
    """One input: ``name`` for results, and ``path`` or ``data``."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def of(cls, item: "InputLike") -> "MediaInput":
        if isinstance(item, MediaInput):
            return item
        if isinstance(item, (bytes, bytearray, memoryview)):
            return cls("<bytes>", data=bytes(item))
        text = os.fsdecode(item)
        if text == "-":
            return cls("-", data=sys.stdin.buffer.read())
        return cls(text, path=Path(text))


InputLike = Union[str, os.PathLike, bytes, MediaInput]


@dataclass(frozen=True)
class Skipped:
    """A file a folder listing left out, and why."""

    path: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


def _special(mode: int) -> str | None:
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return what
    return None


def _media_name(path: Path, videos: bool) -> bool:
    from .image import IMAGE_SUFFIXES
    from .sniff import VIDEO_SUFFIXES

    suffix = path.suffix.lower()
    return suffix in IMAGE_SUFFIXES or (videos and suffix in VIDEO_SUFFIXES)


def classify_file(path: Path, *, videos: bool = True) -> str | None:
    """``None`` when the file at ``path`` is taken as an input: an image (or a
    video, with ``videos``) by content — or a file *named* like one whose
    content is damaged, so that its result says what is wrong with it instead
    of it vanishing. Otherwise the reason it is left out."""
    reason = _classify(path, videos)
    if reason is not None and not reason.startswith("not a regular file") and _media_name(path, videos):
        return None
    return reason


def _classify(path: Path, videos: bool) -> str | None:
    try:
        st = path.stat()
    except OSError as err:
        return f"cannot access ({err.strerror or err})"
    special = _special(st.st_mode)
    if special:
        return f"not a regular file ({special})"
    if st.st_size == 0:
        return "empty file (0 bytes)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError as err:
        return f"cannot read ({err.strerror or err})"
    kind = sniff_head(head)
    if kind.kind == "image":
        return None
    if kind.kind == "video":
        return None if videos else f"a video ({kind.format}); only images are used here"
    if kind.kind == "audio":
        return f"{kind.format}, not an image or a video"
    return f"not an image or a video (the content looks like {kind.format or describe_bytes(head)})"


def list_folder(folder: str | os.PathLike, *, videos: bool = True) -> tuple[list[Path], list[Skipped]]:
    """Images (and videos) under ``folder`` by content, and what was left out."""
    found: list[Path] = []
    skipped: list[Skipped] = []
    for root, dirs, files in os.walk(folder):
        keep = []
        for d in sorted(dirs):
            full = Path(root) / d
            if d.startswith("."):
                skipped.append(Skipped(str(full), "hidden folder (its name starts with '.')"))
            elif full.is_symlink():
                skipped.append(Skipped(str(full), "link to a folder (not followed)"))
            else:
                keep.append(d)
        dirs[:] = keep
        for name in sorted(files):
            full = Path(root) / name
            if name.startswith("."):
                skipped.append(Skipped(str(full), "hidden file (its name starts with '.')"))
                continue
            reason = classify_file(full, videos=videos)
            if reason is None:
                found.append(full)
            else:
                skipped.append(Skipped(str(full), reason))
    return found, skipped


def expand_inputs(items: Iterable[InputLike], *, videos: bool = True) -> tuple[list[MediaInput], list[Skipped]]:
    """Folders become the images (and videos) in them, by content; files,
    ``-`` (standard input) and bytes stay as given (a file given by name is
    never skipped: if it is unusable, its result says why)."""
    out: list[MediaInput] = []
    skipped: list[Skipped] = []
    for item in items:
        if not isinstance(item, (MediaInput, bytes, bytearray, memoryview)):
            text = os.fsdecode(item)
            if text != "-" and os.path.isdir(text):
                files, left = list_folder(text, videos=videos)
                out += [MediaInput(str(f), path=f) for f in files]
                skipped += left
                if not files:
                    skipped.append(Skipped(text, "folder holds no image" + (" or video" if videos else "")))
                continue
        out.append(MediaInput.of(item))
    return out, skipped


# --- opening -----------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Photo:
    """A still image, decoded: RGB ``uint8`` ``HxWx3``."""

    name: str
    rgb: np.ndarray
    kind: Sniffed


@dataclass(frozen=True, eq=False)
class Motion:
    """A video or an animation: :meth:`open` gives a frame source (again, for an
    annotated copy, without sniffing again)."""

    input: MediaInput
    kind: Sniffed
    max_pixels: int | None = None

    @property
    def name(self) -> str:
        return self.input.name

    def open(self):
        from .video import PillowSource, open_video

        if self.input.data is not None and self.kind.kind in ("animation", "image"):
            return PillowSource(io.BytesIO(self.input.data), self.name, self.kind.format, self.max_pixels)
        source = self.input.data if self.input.data is not None else self.input.path
        return open_video(source, name=self.name, max_pixels=self.max_pixels, kind=self.kind)


def open_media(inp: MediaInput, *, max_pixels: int | None = None, videos: bool = True) -> Photo | Motion:
    """Sniff ``inp`` once and open it: a decoded :class:`Photo`, or a
    :class:`Motion` for videos and animated GIF/WebP/PNG. Raises a
    :class:`facedex.errors.MediaError` naming the input."""
    limit = max_pixels if max_pixels is not None else config.max_pixels()
    name = inp.name
    if inp.data is not None:
        data = inp.data
        if not data:
            from ..errors import CorruptMediaError

            raise CorruptMediaError(name, "empty input (0 bytes)")
        head = data[:HEAD_BYTES]
    else:
        path = inp.path
        st = check_input_file(path, name, "an image or video")
        head = _read_head(path, name)
        data = None
        if sniff_head(head).kind == "image":
            data = read_file(path, MAX_FILE_BYTES, st=st, name=name)
    kind = sniff_head(head)
    if kind.kind == "image":
        if kind.format in ("GIF", "PNG", "WebP"):
            kind = _image_kind(data, kind.format, limit)
        if kind.kind == "animation":
            if not videos:
                return Photo(name, decode_image(data, name, limit), kind)
            return Motion(inp if inp.data is not None else MediaInput(name, data=data), kind, max_pixels)
        return Photo(name, decode_image(data, name, limit), kind)
    if kind.kind == "video" and videos:
        return Motion(inp, kind, max_pixels)
    if kind.kind == "video":
        raise UnsupportedMediaError(name, f"is a video ({kind.format}); an image is needed here")
    if kind.kind == "unknown" and not (inp.path is not None and looks_like_video_name(inp.path) and videos):
        # decode_image words the error (damaged header of a known format, or what the bytes look like)
        decode_image(data if data is not None else head, name, limit)
        raise UnsupportedMediaError(name, "not a supported image")  # pragma: no cover - decode_image raised
    if not videos:
        raise UnsupportedMediaError(name, f"{kind.format}, not an image")
    return Motion(inp, kind, max_pixels)


def _read_head(path: Path, name: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(HEAD_BYTES)
    except OSError as err:
        raise MediaError(name, f"cannot read ({err.strerror or err})") from err
