"""Files in DST: complete or absent, never half-written.

Downloaded bytes are first written to ``DST/.facedex-collect/tmp/`` through
:func:`facedex.files.atomic_writer` (a temporary name, fsync, rename: the
staged file is complete or absent); only once the state database records it
is it renamed into a person folder. A rename within one file system is
atomic, so a person folder only ever holds complete images, whatever moment
the process is killed at. Staging happens in the state folder rather than
beside the final name so that a killed run leaves nothing in the person
folders, and the next run's recovery removes whatever staged file the
database does not know. An image that several people share is hard-linked
into each of their folders (copied, where the file system has no hard links).
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from ..files import atomic_writer as _atomic_writer

#: Folder (inside DST) for the state database, the lock and temporary files.
STATE_DIR = ".facedex-collect"

_EXT = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WebP": "webp", "BMP": "bmp", "TIFF": "tif"}


def extension(fmt: str) -> str:
    """File extension for an image format named by :func:`facedex.media.image_signature`."""
    return _EXT.get(fmt, "img")


def file_name(sha256: str, fmt: str) -> str:
    """``<first 16 hex digits of the sha256>.<ext>``: stable, unique, and safe."""
    return f"{sha256[:16]}.{extension(fmt)}"


def _fsync_dir(path: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _staging_path(tmp_dir: Path, prefix: str) -> Path:
    return tmp_dir / f"{prefix}.{secrets.token_hex(8)}.part"


def write_temp(tmp_dir: Path, data: bytes, prefix: str) -> Path:
    """Write ``data`` to a new file in ``tmp_dir``, flushed to disk, and return its path."""
    path = _staging_path(tmp_dir, prefix)
    with _atomic_writer(path, "wb") as f:
        f.write(data)
    return path


def sync_dir(path: Path) -> None:
    """Flush a folder's entries (new names) to disk; a no-op where unsupported."""
    _fsync_dir(path)


def move_into_place(tmp: Path, final: Path) -> None:
    """Rename a complete temporary file to its final name (atomic; the folder must exist).

    The folder itself is not flushed here (see :func:`sync_dir`): a kill
    cannot undo a rename, only a power cut can, and the state database is
    not flushed per item either."""
    os.replace(tmp, final)


def link_into_place(existing: Path, final: Path, tmp_dir: Path) -> None:
    """Give ``existing`` a second name ``final``: a hard link, else a copy, staged in
    ``tmp_dir`` and renamed into place (atomic either way)."""
    staged = _staging_path(tmp_dir, "link")
    try:
        try:
            os.link(existing, staged)
        except OSError:
            with open(existing, "rb") as src, _atomic_writer(staged, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        move_into_place(staged, final)
    except BaseException:
        staged.unlink(missing_ok=True)
        raise


def atomic_writer(path: Path):
    """A text file written under a temporary name and renamed over ``path`` when
    the block ends without error (manifest, sources)."""
    return _atomic_writer(path, "w")
