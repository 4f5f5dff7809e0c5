"""Download, verify and unpack dataset files with the standard library only.

:func:`download_file` fetches one :class:`RemoteFile` into a folder:

1. tries each mirror URL in order; a host that could not be reached (no DNS
   answer, connection refused, no connection within the connect timeout) is
   remembered in ``dead_hosts`` and skipped for the files that follow, so an
   offline machine fails in seconds, not minutes;
2. writes to ``<name>.part`` and resumes it with a ``Range`` request, both
   after a connection cut mid-transfer (retried while each attempt makes
   progress) and across runs;
3. refuses bodies larger than ``max_bytes`` before and while reading;
4. checks the sha256 and only then renames ``<name>.part`` to ``<name>``; a
   file whose digest differs is deleted and the next mirror is tried.

Every read has a timeout (``Timeouts.read``), every connection a shorter one
(``Timeouts.connect``). Redirects are followed by urllib (figshare answers
with one to its storage host); the pinned digest, not the transport, is what
makes a file trusted.

:func:`extract_tar` unpacks one top folder of a tar archive into a new folder,
writing every file itself: no absolute names, no ``..``, no links of either
kind, no devices, and bounds on the member count, each member's size and the
total; on any problem the new folder is removed and nothing is kept.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import logging
import os
import shutil
import socket
import ssl
import tarfile
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlsplit

from ..errors import ChecksumError, DatasetError, DownloadError, UnsafeArchiveError

log = logging.getLogger(__name__)

_CHUNK = 1 << 20

#: ``progress(name, done, total)``: bytes done so far of the file or archive
#: ``name``; ``total`` is None when unknown.
Progress = Callable[[str, int, "int | None"], None]


@dataclass(frozen=True)
class RemoteFile:
    """One file to download: where from, what it must hash to, how big it may be."""

    name: str  #: file name in the destination folder
    urls: tuple[str, ...]  #: mirrors, tried in order
    sha256: str  #: pinned digest (lower-case hex)
    size: int | None = None  #: expected size when known (progress only; the digest decides)
    max_bytes: int = 1 << 30  #: larger bodies are refused


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for a connection (DNS, TCP, TLS) and for each read."""

    connect: float = 5.0
    read: float = 30.0


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds an archive must stay within to be unpacked."""

    max_members: int = 50_000
    max_member_bytes: int = 16 << 20
    max_total_bytes: int = 1 << 30


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_file(path: Path, remote: RemoteFile) -> None:
    """Raise :class:`ChecksumError` unless ``path`` hashes to ``remote.sha256``."""
    digest = sha256_of(path)
    if digest != remote.sha256:
        raise ChecksumError(
            f"{path}: sha256 is {digest}, expected {remote.sha256} for {remote.name}; "
            "this is not the published file. Remove or replace it and fetch again.")


# --- HTTP ---------------------------------------------------------------------------------------
class _HTTPConnection(http.client.HTTPConnection):
    """Connects within ``timeout`` (urllib passes the connect timeout), then reads
    with ``read_timeout``."""

    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self._read_timeout)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args, read_timeout: float, **kwargs):
        super().__init__(*args, **kwargs)
        self._read_timeout = read_timeout

    def connect(self) -> None:
        super().connect()  # TCP and the TLS handshake, within the connect timeout
        self.sock.settimeout(self._read_timeout)


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self._read_timeout = read_timeout

    def http_open(self, req):
        return self.do_open(_HTTPConnection, req, read_timeout=self._read_timeout)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, read_timeout: float):
        super().__init__()
        self._read_timeout = read_timeout

    def https_open(self, req):
        return self.do_open(_HTTPSConnection, req, context=self._context, read_timeout=self._read_timeout)


def _opener(timeouts: Timeouts) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_HTTPHandler(timeouts.read), _HTTPSHandler(timeouts.read))


class _HostDown(Exception):
    """No HTTP answer at all from this URL's host: skip it for the other files."""


class _Failed(Exception):
    """This URL did not deliver the file; try the next mirror."""


class _Cut(Exception):
    """The body stopped early; ``progressed`` when this attempt wrote bytes."""

    def __init__(self, reason: str, progressed: bool):
        super().__init__(reason)
        self.progressed = progressed


def _describe(error: BaseException | str, timeouts: Timeouts, connecting: bool) -> str:
    if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
        error = error.reason
    if isinstance(error, str):
        return error
    if isinstance(error, socket.gaierror):
        return "host name not resolved (no network, or no DNS for it)"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, TimeoutError):
        if connecting:
            return f"no connection within {timeouts.connect:g} s"
        return f"no answer within {timeouts.read:g} s"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    if isinstance(error, http.client.RemoteDisconnected):
        return "the server closed the connection without answering"
    if isinstance(error, ConnectionResetError):
        return "connection reset"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


def _content_range_start(value: str | None) -> int | None:
    """The first byte of ``Content-Range: bytes START-END/TOTAL``; None if unreadable."""
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0].strip()
    return int(first) if first.isdigit() else None


def _transfer(opener, url: str, remote: RemoteFile, part: Path, timeouts: Timeouts,
              progress: Progress | None, user_agent: str) -> None:
    """One GET of ``url`` into ``part``, resuming what ``part`` already holds.
    Returns when the server says the body is complete."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": user_agent, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = opener.open(request, timeout=timeouts.connect)
    except urllib.error.HTTPError as e:
        e.close()
        if e.code == 416 and offset:
            return  # nothing left to send: what we hold is checked by the caller
        raise _Failed(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise _HostDown(_describe(e, timeouts, connecting=True)) from None
    except (OSError, http.client.HTTPException) as e:  # connected, but no status line
        raise _HostDown(_describe(e, timeouts, connecting=False)) from None
    with response:
        if response.status == 206:
            if _content_range_start(response.headers.get("Content-Range")) != offset:
                part.unlink()
                raise _Cut("the server resumed at another byte than asked; starting again", progressed=True)
            mode = "ab"
        else:  # 200: the whole body, the server ignored or was not sent a Range
            mode, offset = "wb", 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else remote.size
        if total is not None and total > remote.max_bytes:
            raise _Failed(f"the server offers {total:,} bytes, more than the {remote.max_bytes:,}-byte limit "
                          f"for {remote.name}")
        done = offset
        if progress:
            progress(remote.name, done, total)
        with open(part, mode) as f:
            while True:
                try:
                    chunk = response.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    reason = (f"connection cut after {done:,} bytes" if not isinstance(e, TimeoutError)
                              else f"no data for {timeouts.read:g} s after {done:,} bytes")
                    raise _Cut(reason, progressed=done > offset) from None
                if not chunk:
                    break
                done += len(chunk)
                if done > remote.max_bytes:
                    f.close()
                    part.unlink()
                    raise _Failed(f"more than the {remote.max_bytes:,}-byte limit for {remote.name}")
                f.write(chunk)
                if progress:
                    progress(remote.name, done, total)
    if total is not None and done < total:
        raise _Cut(f"connection closed after {done:,} of {total:,} bytes", progressed=done > offset)


def _from_url(opener, url: str, remote: RemoteFile, part: Path, timeouts: Timeouts,
              progress: Progress | None, retries: int, retry_wait: float, user_agent: str) -> None:
    """Fetch ``url`` into ``part`` until its digest is right, resuming after cuts."""
    cuts = 0
    restarted = False
    while True:
        resumed_from = part.stat().st_size if part.exists() else 0
        try:
            _transfer(opener, url, remote, part, timeouts, progress, user_agent)
        except _Cut as e:
            cuts += 1
            if not e.progressed or cuts > retries:
                raise _Failed(str(e)) from None
            log.info("%s: %s; resuming", url, e)
            time.sleep(retry_wait * cuts)
            continue
        digest = sha256_of(part) if part.exists() else ""
        if digest == remote.sha256:
            return
        if part.exists():
            part.unlink()
        if resumed_from and not restarted:
            # The bytes kept from before may be the wrong ones: once more from the start.
            restarted = True
            log.info("%s: sha256 mismatch after resuming; downloading again from the start", url)
            continue
        raise _Failed(f"sha256 mismatch: got {digest[:16] or 'nothing'}…, expected {remote.sha256[:16]}…")


def download_file(remote: RemoteFile, dest_dir: Path, *, timeouts: Timeouts = Timeouts(),
                  progress: Progress | None = None, retries: int = 5, retry_wait: float = 1.0,
                  dead_hosts: dict[str, str] | None = None, user_agent: str = "facedex") -> Path:
    """Download ``remote`` into ``dest_dir/remote.name``, verified; return its path.

    ``dead_hosts`` (host → reason) is read and updated: share one dict between
    the files of a dataset. Raises :class:`DownloadError` with ``failures``
    (a list of ``(url, reason)``) when no mirror delivered the file.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / remote.name
    part = dest_dir / (remote.name + ".part")
    if part.exists() and part.stat().st_size > remote.max_bytes:
        part.unlink()
    dead_hosts = {} if dead_hosts is None else dead_hosts
    opener = _opener(timeouts)
    failures: list[tuple[str, str]] = []
    for url in remote.urls:
        host = urlsplit(url).netloc
        if host in dead_hosts:
            failures.append((url, f"not tried: {dead_hosts[host]}"))
            continue
        log.info("downloading %s from %s", remote.name, url)
        try:
            _from_url(opener, url, remote, part, timeouts, progress, retries, retry_wait, user_agent)
        except _HostDown as e:
            dead_hosts[host] = str(e)
            failures.append((url, str(e)))
            log.info("%s: %s", url, e)
            continue
        except _Failed as e:
            failures.append((url, str(e)))
            log.info("%s: %s", url, e)
            continue
        except OSError as e:  # writing the part file: disk full, permissions
            raise DatasetError(f"cannot write {part}: {e.strerror or e}") from e
        os.replace(part, target)
        return target
    error = DownloadError(f"{remote.name}: no mirror delivered it: "
                          + "; ".join(f"{u}: {r}" for u, r in failures))
    error.failures = failures
    raise error


# --- archives -----------------------------------------------------------------------------------
def _member_parts(member: tarfile.TarInfo) -> list[str]:
    """The member's path components; raises for names that could leave the folder."""
    name = member.name
    if "\x00" in name or "\\" in name:
        raise UnsafeArchiveError(f"member {name!r} has a NUL or backslash in its name")
    path = PurePosixPath(name)
    if path.is_absolute():
        raise UnsafeArchiveError(f"member {name!r} is an absolute path")
    parts = [p for p in path.parts if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} climbs out of the folder with '..'")
    return parts


def extract_tar(archive: Path, into: Path, *, top: str, limits: ArchiveLimits = ArchiveLimits(),
                progress: Progress | None = None) -> Path:
    """Unpack the members under ``top/`` of the (gzip-compressed or plain) tar
    ``archive`` into the new folder ``into`` and return ``into/top``.

    Members outside ``top/`` are skipped. Links, devices, names that are
    absolute or contain ``..``, and archives beyond ``limits`` raise
    :class:`UnsafeArchiveError`; a damaged archive raises :class:`DatasetError`.
    On any error ``into`` is removed.
    """
    archive, into = Path(archive), Path(into)
    into.mkdir()
    try:
        _extract(archive, into, top, limits, progress)
    except BaseException:
        shutil.rmtree(into, ignore_errors=True)
        raise
    return into / top


def _extract(archive: Path, into: Path, top: str, limits: ArchiveLimits, progress: Progress | None) -> None:
    size = archive.stat().st_size
    members = total = 0
    shown = 0.0
    label = f"unpack {archive.name}"
    try:
        with open(archive, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tar:
            for member in tar:
                members += 1
                if members > limits.max_members:
                    raise UnsafeArchiveError(f"{archive}: more than {limits.max_members:,} members")
                parts = _member_parts(member)
                if member.issym() or member.islnk():
                    kind = "symbolic" if member.issym() else "hard"
                    raise UnsafeArchiveError(
                        f"{archive}: member {member.name!r} is a {kind} link (to {member.linkname!r})")
                if not (member.isfile() or member.isdir()):
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r} is not a file or folder "
                                             "(device, FIFO or other special file)")
                if not parts or parts[0] != top:
                    log.debug("%s: skipping %s (outside %s/)", archive, member.name, top)
                    continue
                target = into.joinpath(*parts)
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                if member.size > limits.max_member_bytes:
                    raise UnsafeArchiveError(f"{archive}: member {member.name!r} is {member.size:,} bytes, "
                                             f"over the {limits.max_member_bytes:,}-byte limit")
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                written = 0
                with open(target, "wb") as f:
                    for block in iter(lambda: source.read(_CHUNK), b""):
                        written += len(block)
                        total += len(block)
                        if written > limits.max_member_bytes or total > limits.max_total_bytes:
                            raise UnsafeArchiveError(
                                f"{archive}: unpacks to more than the {limits.max_total_bytes:,}-byte limit"
                                if total > limits.max_total_bytes else
                                f"{archive}: member {member.name!r} is over the "
                                f"{limits.max_member_bytes:,}-byte limit")
                        f.write(block)
                if progress and time.monotonic() - shown >= 0.2:  # a few updates a second
                    shown = time.monotonic()
                    progress(label, raw.tell(), size)
            if progress:
                progress(label, size, size)
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DatasetError(f"{archive}: damaged archive ({e}); delete it and fetch again") from e
    except OSError as e:
        raise DatasetError(f"cannot unpack {archive} into {into}: {e.strerror or e}") from e


__all__ = ["ArchiveLimits", "RemoteFile", "Timeouts", "check_file", "download_file", "extract_tar", "sha256_of"]
