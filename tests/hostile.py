"""A corpus of hostile inputs, built at test time (nothing binary is committed).

:func:`build_corpus` writes each case into a folder and returns, per file name,
the error code facedex must answer with (``None``: the file is fine and must be
processed). Every command that reads media runs through it (tests/test_hostile.py).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

from PIL import Image


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` (its data is one tiny row)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
            + chunk(b"IEND", b""))


def _jpeg_claiming(good: bytes, width: int, height: int) -> bytes:
    data = bytearray(good)
    i = data.find(b"\xff\xc0")
    if i < 0:
        i = data.find(b"\xff\xc2")
    data[i + 5:i + 7] = height.to_bytes(2, "big")
    data[i + 7:i + 9] = width.to_bytes(2, "big")
    return bytes(data)


def build_corpus(folder: Path, good_jpeg: Path) -> dict[str, str | None]:
    """Write the cases into ``folder``; return ``{file name: expected code or None}``."""
    folder.mkdir(parents=True, exist_ok=True)
    good = good_jpeg.read_bytes()
    small = io.BytesIO()
    Image.open(io.BytesIO(good)).save(small, "JPEG")
    small_jpeg = small.getvalue()
    gif = io.BytesIO()
    Image.open(io.BytesIO(good)).save(gif, "GIF")
    cases: dict[str, tuple[bytes | None, str | None]] = {
        "good.jpg": (good, None),
        "empty.jpg": (b"", "media.corrupt"),
        "text.jpg": (b"hello, I am not a picture\n" * 20, "media.unsupported"),
        "truncated.jpg": (good[:300], "media.corrupt"),
        "header-claims-9000x9000.jpg": (_jpeg_claiming(small_jpeg, 9000, 9000), "media.corrupt"),
        "bomb-40000x40000.png": (_png_header(40000, 40000), "media.too_large"),
        "pdf.jpg": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "media.unsupported"),
        "html.png": (b"<!DOCTYPE html><html><body>not found</body></html>", "media.unsupported"),
        "zip.gif": (b"PK\x03\x04" + os.urandom(200), "media.unsupported"),
        "random.webp": (b"RIFF\x10\x00\x00\x00WEBPVP8 " + os.urandom(300), "media.corrupt"),
        "cut.gif": (gif.getvalue()[:60], "media.corrupt"),
        "name with\nnewline and \x1b[31mESC.jpg": (good, None),
    }
    for name, (data, _) in cases.items():
        (folder / name).write_bytes(data)
    expected = {name: code for name, (_, code) in cases.items()}
    # special files and links
    os.mkfifo(folder / "fifo.jpg")
    expected["fifo.jpg"] = "media.unsupported"
    (folder / "dir.jpg").mkdir()
    expected["dir.jpg"] = "media.not_found"
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    expected["dangling.jpg"] = "media.not_found"
    os.symlink(folder / "loop-b.jpg", folder / "loop-a.jpg")
    os.symlink(folder / "loop-a.jpg", folder / "loop-b.jpg")
    expected["loop-a.jpg"] = expected["loop-b.jpg"] = "media.not_found"
    # a file name that is not UTF-8 (bytes on POSIX)
    raw = os.fsencode(folder) + b"/caf\xe9-latin1.jpg"
    with open(raw, "wb") as f:
        f.write(good)
    expected[os.fsdecode(b"caf\xe9-latin1.jpg")] = None
    return expected


def explicit_inputs(folder: Path, expected: dict[str, str | None]) -> list[str]:
    """Every case as a path argument (so special files are named, not skipped)."""
    return [str(folder / name) for name in sorted(expected)]
