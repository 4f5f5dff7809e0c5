"""URL normalisation and allowed-host matching.

:func:`normalize_url` gives every URL one spelling so the same page or image
is never fetched twice under two spellings. It follows RFC 3986 section 6
(syntax- and scheme-based normalisation), which never changes what a server
sees:

* scheme and host lower-cased; international host names in IDNA (punycode);
  a trailing dot on the host removed; the default port (80/443) dropped;
* ``.`` and ``..`` path segments resolved; an empty path becomes ``/``;
* percent-escapes upper-cased, escapes of unreserved characters decoded
  (``%7E`` → ``~``), characters that must be escaped (spaces, non-ASCII)
  escaped as UTF-8;
* the fragment (``#…``) removed; an empty query (``?``) removed;
* optionally, query parameters matching ``ignore_query`` glob patterns
  (``utm_*``, ``sessionid``) dropped — the one opt-in change that does alter
  the request, for sites that put session ids or tracking tags in links.

The query's parameter order and the path's case are kept: servers may
depend on them.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import urljoin, urlsplit, urlunsplit

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_SUB_DELIMS = frozenset("!$&'()*+,;=")
_PATH_SAFE = _UNRESERVED | _SUB_DELIMS | frozenset(":@/")
_QUERY_SAFE = _PATH_SAFE | frozenset("?")
_HEX = frozenset("0123456789abcdefABCDEF")
_DEFAULT_PORTS = {"http": 80, "https": 443}
_STRIP_INSIDE = re.compile(r"[\t\n\r]")


class InvalidURL(ValueError):
    """The text is not an http(s) URL that can be fetched."""


def _normalize_component(text: str, safe: frozenset[str]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "%" and i + 2 < n and text[i + 1] in _HEX and text[i + 2] in _HEX:
            code = int(text[i + 1 : i + 3], 16)
            decoded = chr(code)
            out.append(decoded if decoded in _UNRESERVED else f"%{code:02X}")
            i += 3
            continue
        if ch in safe:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogatepass"))
        i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 section 5.2.4."""
    if "." not in path:
        return path
    segments = path.split("/")
    out: list[str] = []
    for seg in segments:
        if seg == ".":
            continue
        if seg == "..":
            if len(out) > 1:
                out.pop()
            continue
        out.append(seg)
    if segments[-1] in (".", ".."):
        out.append("")
    result = "/".join(out)
    if path.startswith("/") and not result.startswith("/"):
        result = "/" + result
    return result


def normalize_host(host: str) -> str:
    host = host.strip().rstrip(".").lower()
    if not host:
        raise InvalidURL("no host")
    if host.startswith("[") and host.endswith("]"):
        return host
    if ":" in host:  # a bare IPv6 literal
        return f"[{host}]"
    try:
        host.encode("ascii")
    except UnicodeEncodeError:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as err:
            raise InvalidURL(f"host {host!r} is not a valid international domain name") from err
    if any(ch.isspace() or ch in "/\\@" for ch in host):
        raise InvalidURL(f"host {host!r} is not valid")
    return host


def _drop_params(query: str, ignore: Sequence[str]) -> str:
    if not ignore or not query:
        return query
    kept = [p for p in query.split("&")
            if not any(fnmatch.fnmatchcase(p.split("=", 1)[0], pat) for pat in ignore)]
    return "&".join(kept)


def normalize_url(url: str, base: str | None = None, ignore_query: Sequence[str] = ()) -> str:
    """The one spelling of ``url`` (resolved against ``base`` when relative).

    Raises :class:`InvalidURL` for anything that is not an absolute http(s)
    URL with a host (``mailto:``, ``javascript:``, ``file:``, ``data:``…)."""
    text = _STRIP_INSIDE.sub("", url.strip())
    if not text:
        raise InvalidURL("empty URL")
    if base:
        text = urljoin(base, text)
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError as err:
        raise InvalidURL(f"cannot parse {url!r} ({err})") from err
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidURL(f"{url!r}: only http and https URLs can be fetched"
                         + (f", not {scheme}:" if scheme else " (relative URL with no base)"))
    if not hostname:
        raise InvalidURL(f"{url!r} has no host")
    host = normalize_host(hostname)
    netloc = host
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        netloc = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        netloc = f"{userinfo}@{netloc}"
    path = _normalize_component(_remove_dot_segments(parts.path or "/"), _PATH_SAFE) or "/"
    query = _drop_params(_normalize_component(parts.query, _QUERY_SAFE), ignore_query)
    return urlunsplit((scheme, netloc, path, query, ""))


def host_port(url: str) -> tuple[str, int]:
    """``(host, port)`` of a normalised URL; the port is explicit (80/443 by default)."""
    parts = urlsplit(url)
    host = normalize_host(parts.hostname or "")
    return host, parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)


def origin(url: str) -> str:
    """``scheme://host[:port]`` — the scope of a robots.txt file."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass(frozen=True)
class HostPattern:
    """``example.org`` (that host), ``*.example.org`` (its subdomains, not
    itself) — either with an optional ``:port`` that must then match too."""

    host: str
    port: int | None = None
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> "HostPattern":
        raw = text.strip()
        if "://" in raw:
            raw = urlsplit(raw).netloc
        raw = raw.rstrip("/")
        wildcard = raw.startswith("*.")
        if wildcard:
            raw = raw[2:]
        port: int | None = None
        if raw.startswith("["):
            host, _, rest = raw[1:].partition("]")
            host = f"[{host}]"
            if rest.startswith(":"):
                port = _port(rest[1:], text)
        elif raw.count(":") == 1:
            host, _, p = raw.partition(":")
            port = _port(p, text)
        else:
            host = raw
        if not host or "*" in host or "/" in host:
            raise InvalidURL(f"{text!r} is not a host pattern (use example.org, *.example.org or host:port)")
        return cls(normalize_host(host), port, wildcard)

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host

    def __str__(self) -> str:
        return ("*." if self.wildcard else "") + self.host + (f":{self.port}" if self.port is not None else "")


def _port(text: str, pattern: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise InvalidURL(f"{pattern!r}: bad port {text!r}") from None
    if not 0 < port < 65536:
        raise InvalidURL(f"{pattern!r}: port {port} out of range")
    return port


class HostMatcher:
    """The set of hosts the collector may send requests to."""

    def __init__(self, patterns: Iterable[str | HostPattern] = ()):
        self.patterns: list[HostPattern] = []
        for p in patterns:
            self.add(p)

    def add(self, pattern: str | HostPattern) -> None:
        hp = pattern if isinstance(pattern, HostPattern) else HostPattern.parse(pattern)
        if hp not in self.patterns:
            self.patterns.append(hp)

    def allows(self, url: str) -> bool:
        try:
            host, port = host_port(url)
        except (InvalidURL, ValueError):
            return False
        return any(p.matches(host, port) for p in self.patterns)

    def __str__(self) -> str:
        return ", ".join(str(p) for p in self.patterns) or "(none)"
