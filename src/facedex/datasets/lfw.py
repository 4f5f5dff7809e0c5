"""Labeled Faces in the Wild: where a copy is, how to check it, how to fetch one.

Layout (the same as ``../shared/data``)::

    DATA/lfw/<Person_Name>/<Person_Name>_NNNN.jpg    13,233 images of 5,749 people
    DATA/pairs.txt                                   View 2: 10 folds x (300 + 300) pairs
    DATA/pairsDevTrain.txt  DATA/pairsDevTest.txt    View 1

:func:`find_lfw` looks, in this order, at an explicit path, ``$FACEDEX_LFW``,
``../shared/data/lfw`` beside the repository (a source checkout only) and the
data cache (:func:`data_dir`); :func:`fetch_lfw` fills the data cache (or any
folder) once, verified; :func:`verify_lfw` checks an extracted copy cheaply.

The pinned digests are facts, not choices: the three protocol files' sha256
were computed from ``../shared/data`` and equal the ones scikit-learn pins for
its figshare copies; the archive's is the one scikit-learn pins for
``lfw.tgz`` (the original, unaligned images) on figshare.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .. import __version__, config
from ..errors import (
    DatasetBusyError,
    DatasetError,
    DatasetIncompleteError,
    DatasetNotFoundError,
    DownloadError,
)
from .fetch import ArchiveLimits, Progress, RemoteFile, Timeouts, check_file, download_file, extract_tar, sha256_of

log = logging.getLogger(__name__)

FETCH_COMMAND = "facedex data fetch lfw"
_FOLDER = "lfw"  #: the images folder inside the data folder
_MARKER = ".lfw-source.json"  #: provenance of a copy facedex unpacked itself
_STAGING = ".lfw.unpacking-"

_FIGSHARE = "https://ndownloader.figshare.com/files/"
_UMASS = "http://vis-www.cs.umass.edu/lfw/"


@dataclass(frozen=True)
class LfwSources:
    """Where the LFW files come from and what a complete copy holds.

    The default is :data:`LFW_SOURCES`; tests pass their own (a loopback
    server, a small archive and its digest).
    """

    archive: RemoteFile
    protocol: tuple[RemoteFile, ...]
    top: str = "lfw"  #: the folder inside the archive that holds the person folders
    people: int = 5_749
    images: int = 13_233
    limits: ArchiveLimits = field(default_factory=ArchiveLimits)
    unpacked_bytes: int = 200 << 20  #: room the unpacked images need (approximate)


LFW_SOURCES = LfwSources(
    archive=RemoteFile(
        "lfw.tgz",
        (_FIGSHARE + "5976018", _UMASS + "lfw.tgz"),
        "055f7d9c632d7370e6fb4afc7468d40f970c34a80d4c6f50ffec63f5a8d536c0",
        size=180_566_744, max_bytes=256 << 20),
    protocol=(
        RemoteFile("pairs.txt", (_FIGSHARE + "5976006", _UMASS + "pairs.txt"),
                   "ea42330c62c92989f9d7c03237ed5d591365e89b3e649747777b70e692dc1592",
                   size=155_335, max_bytes=1 << 20),
        RemoteFile("pairsDevTrain.txt", (_FIGSHARE + "5976012", _UMASS + "pairsDevTrain.txt"),
                   "1d454dada7dfeca0e7eab6f65dc4e97a6312d44cf142207be28d688be92aabfa",
                   size=56_579, max_bytes=1 << 20),
        RemoteFile("pairsDevTest.txt", (_FIGSHARE + "5976009", _UMASS + "pairsDevTest.txt"),
                   "7cb06600ea8b2814ac26e946201cdb304296262aad67d046a16a7ec85d0ff87c",
                   size=26_002, max_bytes=1 << 20),
    ),
    limits=ArchiveLimits(max_members=40_000, max_member_bytes=4 << 20, max_total_bytes=512 << 20),
)


# --- where ---------------------------------------------------------------------------------------
def data_dir() -> Path:
    """Folder that fetched datasets go to (see :func:`facedex.config.data_dir`)."""
    return config.data_dir()


def _repo_root() -> Path | None:
    """The repository root when facedex runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[3]
    return root if (root / "pyproject.toml").is_file() and (root / "src" / "facedex").is_dir() else None


def _shared_lfw() -> Path | None:
    root = _repo_root()
    return root.parent / "shared" / "data" / _FOLDER if root else None


def _images_folder(path: Path) -> Path:
    """Accept the data folder as well as the images folder inside it."""
    return path / _FOLDER if (path / _FOLDER).is_dir() and (path / "pairs.txt").is_file() else path


def lfw_candidates(explicit: str | os.PathLike | None = None) -> list[tuple[str, Path | None]]:
    """The places :func:`find_lfw` looks, in order, as ``(label, path)``; a
    path is None where there is nothing to look at (variable unset, not a
    source checkout)."""
    found: list[tuple[str, Path | None]] = []
    if explicit is not None:
        found.append(("explicit path", Path(explicit).expanduser()))
    found.append(("FACEDEX_LFW", config.lfw_env()))
    found.append(("../shared/data/lfw", _shared_lfw()))
    found.append(("data cache", data_dir() / _FOLDER))
    return found


def find_lfw(explicit: str | os.PathLike | None = None) -> Path:
    """The LFW images folder (``<dir>/<Person>/<Person>_0001.jpg``).

    Looks at ``explicit``, ``$FACEDEX_LFW``, ``../shared/data/lfw`` beside the
    repository and the data cache, in that order. An explicit path or a set
    ``FACEDEX_LFW`` that is not a folder is an error (never silently passed
    over). Raises :class:`DatasetNotFoundError` naming every place looked at
    and the command that fetches LFW. The pairs files are in the folder's
    parent (:func:`lfw_pairs`).
    """
    looked = []
    for label, path in lfw_candidates(explicit):
        if path is None:
            looked.append(f"{label} (not set)" if label == "FACEDEX_LFW" else f"{label} (not a source checkout)")
            continue
        if path.is_dir():
            return _images_folder(path).resolve()
        if label in ("explicit path", "FACEDEX_LFW"):
            where = "given" if label == "explicit path" else "FACEDEX_LFW"
            raise DatasetNotFoundError(
                f"LFW not found at {path} ({where}): no such folder. Give the lfw/ folder that holds one "
                f"folder per person, or fetch LFW once with: {FETCH_COMMAND}")
        looked.append(f"{label} ({path}: missing)")
    raise DatasetNotFoundError(
        "LFW not found; looked at " + ", ".join(looked) + ". "
        f"Fetch it once (about 180 MB, verified by sha256) with: {FETCH_COMMAND} "
        "— or set FACEDEX_LFW to an existing lfw/ folder.")


def lfw_pairs(lfw: str | os.PathLike, name: str = "pairs.txt") -> Path:
    """The protocol file ``name`` beside the images folder ``lfw``; raises
    :class:`DatasetNotFoundError` when it is missing."""
    path = Path(lfw).parent / name
    if not path.is_file():
        raise DatasetNotFoundError(
            f"{name} not found at {path} (the LFW protocol files sit beside the lfw/ folder). "
            f"Fetch them with: {FETCH_COMMAND} --dest {Path(lfw).parent}")
    return path


# --- check ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LfwCheck:
    """What a folder holds, against what a complete copy holds."""

    path: Path
    people: int
    images: int
    expected_people: int
    expected_images: int
    pairs: dict[str, str]  #: protocol file name → "ok" | "missing" | "different"

    @property
    def images_ok(self) -> bool:
        return self.people == self.expected_people and self.images == self.expected_images

    @property
    def ok(self) -> bool:
        return self.images_ok and all(v == "ok" for v in self.pairs.values())

    @property
    def problems(self) -> list[str]:
        found = []
        if not self.images_ok:
            found.append(f"{self.path} holds {self.images:,} images of {self.people:,} people, "
                         f"not {self.expected_images:,} of {self.expected_people:,}")
        found += [f"{self.path.parent / name} is {state}" for name, state in self.pairs.items() if state != "ok"]
        return found

    def to_dict(self) -> dict:
        return {"path": str(self.path), "people": self.people, "images": self.images,
                "expected_people": self.expected_people, "expected_images": self.expected_images,
                "pairs": dict(self.pairs), "ok": self.ok, "problems": self.problems}


def _count(path: Path) -> tuple[int, int]:
    people = images = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
                people += 1
                with os.scandir(entry.path) as files:
                    images += sum(1 for f in files if f.name.lower().endswith(".jpg") and f.is_file())
    return people, images


def verify_lfw(path: str | os.PathLike, sources: LfwSources | None = None) -> LfwCheck:
    """Check an extracted copy cheaply: the number of person folders and
    images, and the sha256 of the protocol files beside it (a fraction of a
    second for the full set)."""
    sources = sources or LFW_SOURCES
    path = Path(path)
    if not path.is_dir():
        raise DatasetNotFoundError(f"LFW not found at {path}: no such folder")
    people, images = _count(path)
    pairs = {}
    for remote in sources.protocol:
        file = path.parent / remote.name
        pairs[remote.name] = ("missing" if not file.is_file()
                              else "ok" if sha256_of(file) == remote.sha256 else "different")
    return LfwCheck(path, people, images, sources.people, sources.images, pairs)


# --- fetch ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LfwCopy:
    """A verified copy: where it is and what :func:`fetch_lfw` did."""

    path: Path  #: the images folder
    data_dir: Path
    people: int
    images: int
    pairs: dict[str, Path]
    downloaded: tuple[str, ...] = ()  #: file names downloaded by this call
    fetched: bool = False  #: False: a verified copy was already there, nothing was done
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"path": str(self.path), "data_dir": str(self.data_dir), "people": self.people,
                "images": self.images, "pairs": {k: str(v) for k, v in self.pairs.items()},
                "downloaded": list(self.downloaded), "fetched": self.fetched, "seconds": round(self.seconds, 2)}


@contextlib.contextmanager
def _lock(folder: Path) -> Iterator[None]:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    with open(folder / ".lfw.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise DatasetBusyError(f"another process is fetching LFW into {folder}; wait for it to finish") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _hand_placement(folder: Path, sources: LfwSources, failures: list[tuple[RemoteFile, list[tuple[str, str]]]]) -> str:
    lines = [f"could not download LFW into {folder}:"]
    for remote, tried in failures:
        lines.append(f"  {remote.name}:")
        lines += [f"    {url}  — {reason}" for url, reason in tried]
    names = ", ".join(r.name for r, _ in failures)
    lines += [
        "To place the files by hand: download each from one of the URLs above on a machine with internet",
        f"(save them as {names}), copy them into {folder}, and run `{FETCH_COMMAND} --dest {folder}` again:",
        "it checks them by sha256 and unpacks the archive (a partial <name>.part there is resumed).",
        "Or use a copy you already have: set FACEDEX_LFW to its lfw/ folder (see docs/data.md).",
    ]
    proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https")}
    if proxies:
        lines.append("Proxy settings in use: " + ", ".join(f"{k}={v}" for k, v in sorted(proxies.items())))
    return "\n".join(lines)


def _present(folder: Path, remote: RemoteFile) -> bool:
    """True when ``folder/remote.name`` is there and verified; raises for a different file."""
    file = folder / remote.name
    if not file.exists():
        return False
    check_file(file, remote)
    return True


def fetch_lfw(dest: str | os.PathLike | None = None, *, sources: LfwSources | None = None,
              progress: Progress | None = None, keep_archive: bool = False,
              timeouts: Timeouts = Timeouts(), retry_wait: float = 1.0) -> LfwCopy:
    """Download, verify and unpack LFW into ``dest`` (default :func:`data_dir`)
    once; a no-op when a verified copy is there.

    Files already in ``dest`` under their published names (placed by hand, or
    left by an earlier run) are checked by sha256 and used; ``<name>.part``
    files are resumed. The images land in ``dest/lfw`` only once unpacked and
    counted. The archive is deleted afterwards when this call downloaded it
    (unless ``keep_archive``). ``progress(name, done, total)`` gets byte counts.

    Raises :class:`DownloadError` (every URL with its reason, and how to place
    the files by hand), :class:`ChecksumError` (a file in ``dest`` that is not
    the published one — never overwritten), :class:`DatasetIncompleteError`
    (``dest/lfw`` exists but is not a complete copy — never touched),
    :class:`UnsafeArchiveError`, :class:`DatasetBusyError`.
    """
    started = time.monotonic()
    sources = sources or LFW_SOURCES
    folder = Path(dest).expanduser() if dest is not None else data_dir()
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"{folder} is not a folder; give --dest a folder for the LFW files")
    folder.mkdir(parents=True, exist_ok=True)
    images = folder / _FOLDER
    with _lock(folder):
        for stale in folder.glob(_STAGING + "*"):  # a run killed while unpacking
            shutil.rmtree(stale, ignore_errors=True)
        if images.exists():
            check = verify_lfw(images, sources)
            if not check.images_ok:
                raise DatasetIncompleteError(
                    f"{images} exists but holds {check.images:,} images of {check.people:,} people, not "
                    f"{sources.images:,} of {sources.people:,}. It was not made by `{FETCH_COMMAND}` (which "
                    "moves the images into place only when complete): move it aside, or give another --dest.")
        wanted = [r for r in sources.protocol if not _present(folder, r)]
        archive_needed = not images.exists()
        if archive_needed and not _present(folder, sources.archive):
            wanted.append(sources.archive)
            _check_room(folder, sources)
        downloaded: list[str] = []
        failures: list[tuple[RemoteFile, list[tuple[str, str]]]] = []
        dead_hosts: dict[str, str] = {}
        for remote in wanted:
            try:
                download_file(remote, folder, timeouts=timeouts, progress=progress, retry_wait=retry_wait,
                              dead_hosts=dead_hosts, user_agent=f"facedex/{__version__} (dataset fetch)")
                downloaded.append(remote.name)
            except DownloadError as e:
                failures.append((remote, e.failures))
        if failures:
            raise DownloadError(_hand_placement(folder, sources, failures))
        if archive_needed:
            _unpack(folder, sources, progress)
            if sources.archive.name in downloaded and not keep_archive:
                (folder / sources.archive.name).unlink()
        check = verify_lfw(images, sources)
        if not check.ok:  # cannot happen with the pinned files; a guard for other sources
            raise DatasetIncompleteError("; ".join(check.problems))
        return LfwCopy(images.resolve(), folder.resolve(), check.people, check.images,
                       {r.name: (folder / r.name).resolve() for r in sources.protocol},
                       tuple(downloaded), bool(downloaded) or archive_needed, time.monotonic() - started)


def _check_room(folder: Path, sources: LfwSources) -> None:
    part = folder / (sources.archive.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    need = max(0, (sources.archive.size or 0) - have) + sources.unpacked_bytes
    free = shutil.disk_usage(folder).free
    if free < need:
        raise DatasetError(f"{folder} has {free / 2**20:,.0f} MB free; LFW needs about {need / 2**20:,.0f} MB "
                           "(the archive and its unpacked images). Free some space or give another --dest.")


def _unpack(folder: Path, sources: LfwSources, progress: Progress | None) -> None:
    archive = folder / sources.archive.name
    staging = folder / f"{_STAGING}{os.getpid()}"
    tree = extract_tar(archive, staging, top=sources.top, limits=sources.limits, progress=progress)
    try:
        if not tree.is_dir():
            raise DatasetIncompleteError(f"{archive} holds no {sources.top}/ folder")
        people, count = _count(tree)
        if (people, count) != (sources.people, sources.images):
            raise DatasetIncompleteError(f"{archive} unpacked to {count:,} images of {people:,} people, "
                                         f"not {sources.images:,} of {sources.people:,}")
        os.replace(tree, folder / _FOLDER)
        marker = {"archive": sources.archive.name, "sha256": sources.archive.sha256,
                  "urls": list(sources.archive.urls), "people": people, "images": count,
                  "unpacked": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "facedex": __version__}
        tmp = folder / (_MARKER + ".tmp")
        tmp.write_text(json.dumps(marker, indent=2) + "\n")
        os.replace(tmp, folder / _MARKER)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def lfw_source(path: str | os.PathLike) -> dict | None:
    """What facedex recorded when it unpacked the copy at ``path`` (archive,
    sha256, URLs, date), or None for a copy facedex did not make."""
    marker = Path(path).parent / _MARKER
    try:
        return json.loads(marker.read_text())
    except (OSError, ValueError):
        return None


__all__ = [
    "FETCH_COMMAND", "LFW_SOURCES", "LfwCheck", "LfwCopy", "LfwSources", "data_dir", "fetch_lfw", "find_lfw",
    "lfw_candidates", "lfw_pairs", "lfw_source", "verify_lfw",
]
