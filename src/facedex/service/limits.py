"""What a client can make the service hold: bodies, files, headers, time.

Starlette and FastAPI put no cap on file uploads (any size is spooled to
disk), so uploads are read here, streaming, with

* a cap on the whole body per endpoint (a declared ``Content-Length`` over
  it is refused before a byte is read, 413 ``request.too_large``);
* a cap per file that depends on what the file *is*, sniffed from its first
  bytes as the library does (video containers: ``max_video_bytes``; photos,
  GIFs and anything else: ``max_photo_bytes``), 413 ``media.too_large`` as
  soon as a file passes it;
* a cap on the number of parts and on each part's headers (431);
* time limits: no byte for ``body_idle_timeout`` seconds, or less than
  ``min_upload_rate`` bytes/s on average after ``upload_grace`` seconds
  (slow-loris bodies), 408 ``request.timeout``.

Small parts stay in memory; a part passing 1 MiB is spooled to a private file
in the service's spool folder, removed when the request (or its job) ends.

:func:`guarded_h11` gives uvicorn a protocol that also closes a connection
whose request head (request line and headers) does not arrive within
``header_timeout`` seconds — uvicorn itself waits for ever — and stops
reading the rest of a body that was refused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import AsyncIterator

from ..media.sniff import Sniffed, sniff_head
from ..names import clean_name
from .errors import ServiceError

log = logging.getLogger(__name__)

HEAD_BYTES = 4096
SPOOL_AFTER = 1024 * 1024
_SUFFIX = re.compile(r"^\.[A-Za-z0-9]{1,8}$")


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}".replace(".0 ", " ")
        n /= 1024
    return f"{n} GB"  # pragma: no cover


def safe_filename(raw: str | None, n: int) -> str:
    """An upload's name as results show it: the last path component of what
    the client sent, without control characters; ``upload-N`` when empty."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = clean_name(name).lstrip(". ")
    if len(name) > 200:
        stem, dot, suffix = name.rpartition(".")
        name = (stem[:190] + dot + suffix[:8]) if dot and len(suffix) <= 8 else name[:200]
    return name or f"upload-{n}"


@dataclass
class Upload:
    """One uploaded file: ``name`` (safe), its size and sniffed kind, and its
    bytes in memory (``data``) or spooled to ``path``."""

    field: str
    name: str
    size: int = 0
    kind: Sniffed | None = None
    data: bytearray | None = field(default_factory=bytearray)
    path: Path | None = None
    _fh: object = None

    @property
    def is_video(self) -> bool:
        return self.kind is not None and self.kind.kind == "video"

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return bytes(self.data)
        return Path(self.path).read_bytes()

    def discard(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if self.path is not None:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self.path = None
        self.data = None


@dataclass
class Form:
    files: list[Upload] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def discard(self) -> None:
        for f in self.files:
            f.discard()


@dataclass(frozen=True)
class UploadRules:
    """Limits for one endpoint's body."""

    max_total: int
    max_files: int
    max_photo: int
    max_video: int | None  # None: videos are refused by size like photos
    max_part_header: int = 16 * 1024
    idle_timeout: float = 20.0
    min_rate: float = 32 * 1024
    grace: float = 10.0

    def limit(self, kind: Sniffed) -> tuple[int, str]:
        if kind.kind == "video" and self.max_video is not None:
            return self.max_video, "a video"
        return self.max_photo, "a photo" if self.max_video is None else "a photo or an animated GIF"


def check_declared_length(headers, max_total: int) -> None:
    raw = headers.get("content-length")
    if raw is None:
        return
    try:
        n = int(raw)
    except ValueError:
        raise ServiceError(400, "request.invalid", f"Content-Length {raw!r} is not a number") from None
    if n > max_total:
        raise ServiceError(413, "request.too_large",
                           f"the request body is {human(n)}; this endpoint takes at most {human(max_total)}")


async def timed_chunks(request, rules: UploadRules) -> AsyncIterator[bytes]:
    """The request body in chunks, under the idle and rate limits."""
    stream = request.stream().__aiter__()
    start = time.monotonic()
    total = 0
    while True:
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), rules.idle_timeout)
        except StopAsyncIteration:
            return
        except asyncio.TimeoutError:
            raise ServiceError(408, "request.timeout",
                               f"the upload stalled: no data for {rules.idle_timeout:g} s") from None
        total += len(chunk)
        elapsed = time.monotonic() - start
        if rules.min_rate and elapsed > rules.grace and total / elapsed < rules.min_rate:
            raise ServiceError(408, "request.timeout",
                               f"the upload is too slow ({human(total / elapsed)}/s; at least "
                               f"{human(rules.min_rate)}/s is needed)")
        yield chunk


async def read_form(request, rules: UploadRules, spool: Path) -> Form:
    """Parse a ``multipart/form-data`` body under ``rules`` (see the module doc).
    On any error every spooled file is removed before the error propagates."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    ctype = request.headers.get("content-type", "")
    kind, params = parse_options_header(ctype)
    if kind != b"multipart/form-data" or b"boundary" not in params:
        raise ServiceError(415, "request.unsupported_type",
                           "send the file(s) as multipart/form-data (curl -F file=@photo.jpg)")
    check_declared_length(request.headers, rules.max_total)
    form = Form()
    state = _PartState(rules, spool, form)
    callbacks = {
        "on_part_begin": state.begin, "on_part_data": state.data, "on_part_end": state.end,
        "on_header_field": state.header_field, "on_header_value": state.header_value,
        "on_header_end": state.header_end, "on_headers_finished": state.headers_finished,
    }
    try:
        parser = MultipartParser(params[b"boundary"], callbacks)
        total = 0
        async for chunk in timed_chunks(request, rules):
            total += len(chunk)
            if total > rules.max_total:
                raise ServiceError(413, "request.too_large",
                                   f"the request body is over {human(rules.max_total)}, the limit of this endpoint")
            parser.write(chunk)
        parser.finalize()
        if state.part is not None:
            raise ServiceError(400, "request.invalid", "the multipart body ends in the middle of a part")
    except ServiceError:
        form.discard()
        raise
    except BaseException as err:
        form.discard()
        from python_multipart.exceptions import FormParserError

        if isinstance(err, FormParserError) and "header size" in str(err).lower():
            raise ServiceError(431, "request.headers_too_large", "a multipart part's headers are too large") from None
        if isinstance(err, FormParserError):
            raise ServiceError(400, "request.invalid", f"the multipart body is malformed ({err})") from None
        if type(err).__name__ == "ClientDisconnect":
            raise ServiceError(400, "request.invalid", "the client went away during the upload") from None
        raise
    return form


class _PartState:
    def __init__(self, rules: UploadRules, spool: Path, form: Form):
        self.rules, self.spool, self.form = rules, spool, form
        self.part: Upload | None = None
        self.field_name: str | None = None
        self.text: bytearray | None = None
        self.hname = bytearray()
        self.hvalue = bytearray()
        self.header_bytes = 0
        self.disposition = b""
        self.parts = 0

    def begin(self) -> None:
        self.parts += 1
        if self.parts > self.rules.max_files + 16:
            raise ServiceError(400, "request.invalid", f"too many parts in the multipart body ({self.parts})")
        self.part, self.text, self.field_name = None, None, None
        self.disposition = b""
        self.header_bytes = 0

    def _count(self, n: int) -> None:
        self.header_bytes += n
        if self.header_bytes > self.rules.max_part_header:
            raise ServiceError(431, "request.headers_too_large",
                               f"a multipart part's headers are over {human(self.rules.max_part_header)}")

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.hname += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count(end - start)
        self.hvalue += data[start:end]

    def header_end(self) -> None:
        if bytes(self.hname).lower() == b"content-disposition":
            self.disposition = bytes(self.hvalue)
        self.hname.clear()
        self.hvalue.clear()

    def headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, options = parse_options_header(self.disposition)
        name = options.get(b"name")
        if name is None:
            raise ServiceError(400, "request.invalid", "a multipart part has no name (Content-Disposition: "
                               "form-data; name=...)")
        field_name = name.decode("utf-8", "replace")
        if b"filename" in options or b"filename*" in options:
            if len(self.form.files) >= self.rules.max_files:
                raise ServiceError(413, "request.too_large",
                                   f"too many files: at most {self.rules.max_files} per request")
            raw = options.get(b"filename", options.get(b"filename*", b""))
            self.part = Upload(field_name, safe_filename(raw.decode("utf-8", "replace"), len(self.form.files) + 1))
            self.form.files.append(self.part)
        else:
            self.field_name = field_name
            self.text = bytearray()

    def data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self.part is None:
            if self.text is not None:
                if len(self.text) + len(chunk) > 64 * 1024:
                    raise ServiceError(413, "request.too_large", "a form field is over 64 KB")
                self.text += chunk
            return
        p = self.part
        p.size += len(chunk)
        if p.kind is None:
            p.data += chunk
            if len(p.data) >= HEAD_BYTES:
                p.kind = sniff_head(bytes(p.data[:HEAD_BYTES]))
        else:
            self._write(p, chunk)
        if p.kind is not None:
            limit, what = self.rules.limit(p.kind)
            if p.size > limit:
                raise ServiceError(413, "media.too_large",
                                   f"{p.name}: over {human(limit)}, the limit for {what}")

    def _write(self, p: Upload, chunk: bytes) -> None:
        if p.data is not None:
            p.data += chunk
            if len(p.data) > SPOOL_AFTER:
                suffix = Path(p.name).suffix
                fd, path = tempfile.mkstemp(prefix="upload-", suffix=suffix if _SUFFIX.match(suffix) else "",
                                            dir=self.spool)
                p.path = Path(path)
                p._fh = os.fdopen(fd, "wb")
                p._fh.write(p.data)
                p.data = None
        else:
            p._fh.write(chunk)

    def end(self) -> None:
        p = self.part
        if p is not None:
            if p.kind is None:
                p.kind = sniff_head(bytes(p.data or b""))
                limit, what = self.rules.limit(p.kind)
                if p.size > limit:
                    raise ServiceError(413, "media.too_large", f"{p.name}: over {human(limit)}, the limit for {what}")
            if p._fh is not None:
                p._fh.close()
                p._fh = None
        elif self.field_name is not None:
            self.form.fields[self.field_name] = bytes(self.text or b"").decode("utf-8", "replace")
        self.part, self.text, self.field_name = None, None, None


def guarded_h11(header_timeout: float):
    """uvicorn's h11 protocol, plus: a connection must deliver a complete
    request head within ``header_timeout`` seconds of connecting (or of its
    first byte after a response), and a body the app refused is not read for
    more than 2 s after the response."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer = None
        _drain_timer = None

        def connection_made(self, transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm(header_timeout)

        def _waiting_for_head(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _arm(self, seconds: float) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(seconds, self._expire)

        def _disarm(self) -> None:
            for name in ("_head_timer", "_drain_timer"):
                timer = getattr(self, name)
                if timer is not None:
                    timer.cancel()
                    setattr(self, name, None)

        def _expire(self) -> None:
            self._head_timer = None
            if self._waiting_for_head() and not self.transport.is_closing():
                log.info("closing a connection that sent no complete request within %g s", header_timeout)
                self.transport.close()

        def _drained(self) -> None:
            self._drain_timer = None
            if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing():
                self.transport.close()  # still sending a body that was refused

        def data_received(self, data: bytes) -> None:
            if self._waiting_for_head() and self.conn.their_state is not h11.SEND_BODY:
                self._arm(header_timeout)
            super().data_received(data)
            if not self._waiting_for_head():
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if self.conn.their_state is h11.SEND_BODY and not self.transport.is_closing() \
                    and self._drain_timer is None:
                # the rest of a refused body: read (and drop) it for 2 s at most, then close
                self._drain_timer = self.loop.call_later(2.0, self._drained)

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol
