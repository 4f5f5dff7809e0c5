"""Writing files so that a crash never leaves half of one, and an output never
replaces an input or writes through a link.

* :func:`atomic_writer` / :func:`atomic_path` — a temporary file created
  exclusively (``mkstemp``: ``O_CREAT | O_EXCL``, never following a link) in
  the target's folder, fsync, then an atomic rename over the target. The
  rename replaces a link at the target name, never the file it points to.
* :class:`OutputDir` — a folder for outputs (annotated copies, reports):
  checked once, before any work; names are made unique and never name an
  input file or an existing file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterable, Iterator

from .errors import OutputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _finish(fd_or_path: int | str, mode: int | None = None) -> None:
    # mkstemp creates 0600 files; outputs get the permissions a plain open() would give.
    perms = (0o666 & ~_umask()) if mode is None else mode
    if isinstance(fd_or_path, int):
        os.fchmod(fd_or_path, perms)
    else:
        os.chmod(fd_or_path, perms)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb", *, fsync: bool = True) -> Iterator[IO]:
    """Yield a file object; on a clean exit its content replaces ``path`` atomically.
    On an error the temporary file is removed and ``path`` is untouched."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            _finish(f.fileno())
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if fsync:
            _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, fsync: bool = True) -> Iterator[Path]:
    """For writers that want a file name (OpenCV's VideoWriter, matplotlib,
    ``torch.save``): yield the path of an exclusively created, empty temporary
    file beside ``path`` with the same suffix; on a clean exit it replaces
    ``path`` atomically, on an error it is removed."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".partial{target.suffix}", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        _finish(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, target)
        if fsync:
            _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file and a rename."""
    with atomic_writer(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_writer(path, "w") as f:
        f.write(text)


def utf8_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` is valid UTF-8 (a name that is not, kept losslessly as
    surrogate escapes, cannot travel to tools that need text, such as Ray's readers)."""
    try:
        os.fspath(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class OutputDir:
    """A folder that receives outputs, checked before any work.

    ``OutputDir(path, inputs)`` creates the folder when missing and raises
    :class:`facedex.errors.OutputError` when it is a file, lies under a file,
    or cannot be written. :meth:`target` gives a fresh name for each output:
    never an existing file (so never an input, whatever the folder), never a
    link, unique within the run (``photo.jpg``, ``photo-1.jpg``…).
    """

    def __init__(self, path: str | os.PathLike, inputs: Iterable[str | os.PathLike] = ()):
        self.path = Path(path)
        self._used: set[str] = set()
        self._inputs = {i for i in (_identity(p) for p in inputs if isinstance(p, (str, os.PathLike))) if i}
        self._check()

    def _check(self) -> None:
        p = self.path
        if p.is_symlink() and not p.exists():
            raise OutputError(f"{p}: is a dangling link; give a folder for the outputs")
        if p.exists() and not p.is_dir():
            raise OutputError(f"{p}: exists and is not a folder; give a folder for the outputs")
        try:
            p.mkdir(parents=True, exist_ok=True)
        except FileExistsError:
            raise OutputError(f"{p}: a part of this path is a file, not a folder") from None
        except NotADirectoryError:
            raise OutputError(f"{p}: a part of this path is a file, not a folder") from None
        except OSError as err:
            raise OutputError(f"{p}: cannot create the output folder ({err.strerror or err})") from None
        try:
            fd, probe = tempfile.mkstemp(prefix=".facedex-write-test-", dir=p)
        except OSError as err:
            raise OutputError(f"{p}: cannot write into the output folder ({err.strerror or err})") from None
        os.close(fd)
        os.unlink(probe)

    def target(self, source: str, suffix: str, tag: str = "") -> Path:
        """A new path in this folder for an output made from ``source``."""
        stem = (Path(source).stem if source and not source.startswith("<") else "") or "image"
        stem = stem.lstrip(".") or "image"
        n = 0
        while True:
            name = f"{stem}{tag}{'' if n == 0 else f'-{n}'}{suffix}"
            candidate = self.path / name
            n += 1
            if name in self._used or os.path.lexists(candidate):
                continue
            if _identity(candidate) in self._inputs:
                continue
            self._used.add(name)
            return candidate
