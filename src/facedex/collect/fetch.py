"""HTTP for the collector: polite, bounded, and never surprised.

:class:`Fetcher` is the only place that talks to the network. For each URL it

1. refuses hosts outside the allowed set, and paths the host's robots.txt
   disallows for our user agent (robots.txt is fetched once per origin);
2. waits for the host's rate-limit slot (:class:`.ratelimit.HostLimiter`);
3. sends one GET with connect/read timeouts, following no redirect by itself;
4. retries timeouts, broken connections, 408, 429 and 5xx with exponential
   backoff and jitter, honouring ``Retry-After`` (and pausing the whole host
   for it); 404, 403 and other 4xx fail at once;
5. follows 301/302/303/307/308 itself, one hop at a time, each hop checked
   against the allowed hosts and robots.txt, stopping at a loop or after
   ``max_redirects``;
6. streams the body with a size cap and an overall deadline, aborting the
   transfer as soon as either is exceeded.

Failures raise :class:`facedex.errors.FetchError` with a reason code from
:mod:`.reasons`. Thread-safe: one Fetcher serves all workers.

HTTP is done with urllib3 (thread-safe connection pools with a per-host
connection limit, streaming reads, per-read timeouts, no automatic
redirects). Its ``PoolManager`` does not read proxy settings from the
environment; traffic goes straight to the hosts named.
"""

from __future__ import annotations

import email.utils
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import timezone
from typing import Mapping

from ..errors import FetchError
from ._interrupt import Interrupted
from .deps import require
from .options import CollectOptions
from .ratelimit import HostLimiter
from .robots import MAX_ROBOTS_BYTES, RobotsRules
from .urlnorm import HostMatcher, InvalidURL, host_port, normalize_url, origin, path_and_query

log = logging.getLogger(__name__)

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024

ACCEPT_IMAGE = "image/jpeg,image/png,image/webp,image/gif,image/bmp,image/tiff;q=0.9,*/*;q=0.1"
ACCEPT_PAGE = "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"
ACCEPT_TEXT = "text/plain,*/*;q=0.1"


@dataclass(frozen=True)
class Response:
    """A successful (2xx) answer, body complete and within the cap."""

    url: str                        #: the URL asked for
    final_url: str                  #: where the content came from, after redirects
    status: int
    content_type: str
    body: bytes
    redirects: tuple[str, ...] = ()  #: the URLs redirected through, in order

    @property
    def charset(self) -> str | None:
        for part in self.content_type.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip('"\' ') or None
        return None


@dataclass
class FetchStats:
    requests: int = 0
    bytes: int = 0
    retries: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    current = now if now is not None else time.time()
    return max(0.0, when.timestamp() - current)


class _Retryable(Exception):
    def __init__(self, reason: str, detail: str, retry_after: float | None = None):
        self.reason, self.detail, self.retry_after = reason, detail, retry_after


class Fetcher:
    """Fetches URLs for one run (see the module doc). Use as a context manager."""

    def __init__(self, options: CollectOptions, allowed: HostMatcher, stop: threading.Event | None = None,
                 rng: random.Random | None = None):
        urllib3 = require("urllib3")
        self._u3 = urllib3
        self.options = options
        self.allowed = allowed
        self.stop = stop or threading.Event()
        self.limiter = HostLimiter(options.rate, self.stop)
        self.stats = FetchStats()
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._robots: dict[str, RobotsRules] = {}
        self._robots_locks: dict[str, threading.Lock] = {}
        # hosts that asked for a longer wait than max_retry_after: no more requests this run
        self._blocked: dict[str, tuple[float, str]] = {}
        self._pool = urllib3.PoolManager(
            num_pools=64,
            maxsize=options.per_host_connections,
            block=True,
            retries=False,
            timeout=urllib3.Timeout(connect=options.timeout, read=options.timeout),
        )
        # per-request headers replace the pool's, so every request sends all of them
        self._headers = {"User-Agent": options.user_agent, "Accept-Encoding": "gzip, deflate"}

    # --- public -----------------------------------------------------------------------
    def __enter__(self) -> "Fetcher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.clear()

    def get_image(self, url: str) -> Response:
        return self.get(url, max_bytes=self.options.max_image_bytes, accept=ACCEPT_IMAGE)

    def get_page(self, url: str) -> Response:
        return self.get(url, max_bytes=self.options.max_page_bytes, accept=ACCEPT_PAGE)

    def get(self, url: str, *, max_bytes: int, accept: str, max_redirects: int | None = None,
            truncate: bool = False, robots: bool = True) -> Response:
        """GET ``url`` (already normalised), following redirects within the allowed hosts."""
        limit = self.options.max_redirects if max_redirects is None else max_redirects
        chain: list[str] = [url]
        current = url
        for hop in range(limit + 1):
            if hop == 0:
                if not self.allowed.allows(current):
                    raise FetchError(url, "host_not_allowed", f"allowed hosts: {self.allowed}")
            elif not self.allowed.allows(current):
                raise FetchError(url, "redirect_off_host",
                                 f"redirected to {current}, outside the allowed hosts ({self.allowed})")
            if robots:
                self._check_robots(current, first_hop=hop == 0, original=url)
            status, headers, body = self._request(current, max_bytes, accept, truncate)
            if status in _REDIRECTS:
                location = headers.get("Location")
                if not location:
                    raise FetchError(url, "bad_redirect", f"HTTP {status} from {current} without a Location")
                try:
                    target = normalize_url(location, base=current)
                except InvalidURL as err:
                    raise FetchError(url, "bad_redirect", f"{current} redirects to an unusable URL: {err}") from None
                if target in chain:
                    raise FetchError(url, "redirect_loop", " → ".join(chain + [target]))
                chain.append(target)
                current = target
                continue
            return Response(url, current, status, headers.get("Content-Type", ""), body, tuple(chain[1:]))
        raise FetchError(url, "too_many_redirects", f"more than {limit} redirects: " + " → ".join(chain))

    # --- robots.txt ---------------------------------------------------------------------
    def robots_rules(self, url: str) -> RobotsRules:
        key = origin(url)
        with self._lock:
            rules = self._robots.get(key)
            if rules is not None:
                return rules
            lock = self._robots_locks.setdefault(key, threading.Lock())
        with lock:  # one fetch per origin, however many workers ask at once
            with self._lock:
                rules = self._robots.get(key)
            if rules is None:
                rules = self._fetch_robots(key)
                with self._lock:
                    self._robots[key] = rules
                if rules.crawl_delay:
                    host, _ = host_port(url)
                    if rules.crawl_delay > self.limiter.interval_for(host):
                        log.info("%s: robots.txt asks for a Crawl-delay of %gs; honoured", key, rules.crawl_delay)
                    self.limiter.set_min_interval(host, rules.crawl_delay)
        return rules

    def _check_robots(self, url: str, first_hop: bool, original: str | None = None) -> None:
        if not self.options.respect_robots:
            return
        rules = self.robots_rules(url)
        if rules.unreachable:
            # a certificate problem is the real problem, whatever URL showed it first
            reason = "tls" if rules.unreachable == "tls" else "robots_unavailable"
            raise FetchError(original or url, reason, f"{origin(url)}/robots.txt: {rules.note}")
        if not rules.allowed(path_and_query(url)):
            where = "" if first_hop else f" (reached by a redirect from {original})"
            extra = f"; {rules.note}" if rules.note else ""
            raise FetchError(original or url, "robots",
                             f"{url} is disallowed by robots.txt for {self.options.user_agent.split('/')[0]}"
                             f"{where}{extra}")

    def _fetch_robots(self, base: str) -> RobotsRules:
        url = base + "/robots.txt"
        try:
            resp = self.get(url, max_bytes=MAX_ROBOTS_BYTES, accept=ACCEPT_TEXT, max_redirects=5,
                            truncate=True, robots=False)
        except FetchError as err:
            if err.reason in ("http_401", "http_403"):
                return RobotsRules.deny_everything(f"robots.txt answered {err.reason[5:]}: treated as disallow-all")
            if err.reason.startswith("http_4") and err.reason not in ("http_429", "http_408"):
                return RobotsRules.allow_everything(f"no robots.txt ({err.reason[5:]})")
            log.warning("%s unreachable (%s); nothing will be fetched from %s this run", url, err, base)
            return RobotsRules.deny_everything(f"unreachable: {err.reason}" + (f" ({err.detail})" if err.detail else ""),
                                               unreachable=err.reason)
        text = resp.body.decode("utf-8", errors="replace")
        return RobotsRules.parse(text, self.options.user_agent)

    # --- one request with retries ----------------------------------------------------------
    def _request(self, url: str, max_bytes: int, accept: str, truncate: bool) -> tuple[int, Mapping[str, str], bytes]:
        host, _ = host_port(url)
        opts = self.options
        last: _Retryable | None = None
        for attempt in range(opts.retries + 1):
            if attempt:
                with self._lock:
                    self.stats.retries += 1
                delay = self._backoff(attempt - 1)
                if last is not None and last.retry_after is not None:
                    self.limiter.pause(host, last.retry_after)
                    delay = 0.0  # the host pause covers it
                log.debug("%s: %s; retry %d of %d in %.2fs", url, last.reason if last else "?", attempt,
                          opts.retries, delay)
                if delay and self.stop.wait(delay):
                    raise Interrupted()
            self._check_blocked(url, host)
            try:
                return self._attempt(url, host, max_bytes, accept, truncate)
            except _Retryable as err:
                last = err
                if err.retry_after is not None and err.retry_after > opts.max_retry_after:
                    detail = (f"{err.detail}; Retry-After {err.retry_after:g}s is longer than max_retry_after "
                              f"({opts.max_retry_after:g}s)")
                    with self._lock:
                        self._blocked[host] = (time.monotonic() + err.retry_after, url)
                    log.warning("%s asks to wait %gs (Retry-After); no more requests to it this run", host,
                                err.retry_after)
                    raise FetchError(url, err.reason, detail, retry_after=err.retry_after) from None
        assert last is not None
        tries = opts.retries + 1
        raise FetchError(url, last.reason, f"{last.detail} (after {tries} attempt{'s' if tries != 1 else ''})",
                         retry_after=last.retry_after)

    def _check_blocked(self, url: str, host: str) -> None:
        with self._lock:
            blocked = self._blocked.get(host)
        if blocked is not None and time.monotonic() < blocked[0]:
            wait = blocked[0] - time.monotonic()
            raise FetchError(url, "http_429", f"not requested: {host} asked to wait {wait:.0f}s more "
                                              f"(Retry-After on {blocked[1]}); tried again by the next run")

    def _backoff(self, n: int) -> float:
        """Exponential backoff with "equal jitter": half fixed, half random."""
        delay = min(self.options.max_backoff, self.options.backoff * (2 ** n))
        return delay / 2 + self._rng.uniform(0, delay / 2)

    def _attempt(self, url: str, host: str, max_bytes: int, accept: str, truncate: bool) -> tuple[int, Mapping[str, str], bytes]:
        u3 = self._u3
        exc = u3.exceptions
        self.limiter.wait(host)
        if self.stop.is_set():
            raise Interrupted()
        with self._lock:
            self.stats.requests += 1
        deadline = time.monotonic() + self.options.total_timeout
        try:
            resp = self._pool.request("GET", url, headers={**self._headers, "Accept": accept}, preload_content=False,
                                      redirect=False, retries=False, decode_content=True)
        except exc.SSLError as err:  # a bad certificate does not get better by retrying
            raise FetchError(url, "tls", f"TLS/certificate error ({_short(err)})") from None
        except exc.NewConnectionError as err:
            raise _Retryable("connection", f"cannot connect ({_short(err)})") from None
        except exc.TimeoutError as err:
            what = "connect" if isinstance(err, exc.ConnectTimeoutError) else "answer"
            raise _Retryable("timeout", f"no {what} within {self.options.timeout:g}s") from None
        except exc.LocationValueError as err:
            raise FetchError(url, "invalid_url", str(err)) from None
        except (exc.HTTPError, OSError) as err:
            raise _Retryable("connection", _short(err)) from None
        status = resp.status
        headers = resp.headers
        with self._lock:
            self.stats.by_status[status] = self.stats.by_status.get(status, 0) + 1
        complete = False
        try:
            if status in _REDIRECTS or not 200 <= status <= 299:
                complete = self._discard_small_body(resp)
            if status in _REDIRECTS:
                return status, headers, b""
            if status == 429 or status == 408 or 500 <= status <= 599:
                detail = f"HTTP {status} {resp.reason or ''}".strip()
                raise _Retryable(f"http_{status}", detail, parse_retry_after(headers.get("Retry-After")))
            if not 200 <= status <= 299:
                raise FetchError(url, f"http_{status}", f"HTTP {status} {resp.reason or ''}".strip())
            body = self._read_body(resp, url, max_bytes, deadline, truncate)
            complete = True
            return status, headers, body
        finally:
            if not complete:
                resp.close()  # an unfinished body: this connection cannot be reused
            resp.release_conn()  # always: a closed connection is replaced, never leaked

    def _discard_small_body(self, resp) -> bool:
        """Read and drop a short error/redirect body so the connection can be reused."""
        length = resp.headers.get("Content-Length", "")
        if not length.isdigit() or int(length) > _CHUNK:
            return False
        try:
            resp.read(int(length) + 1)
        except (self._u3.exceptions.HTTPError, OSError):
            return False
        return True

    def _read_body(self, resp, url: str, cap: int, deadline: float, truncate: bool) -> bytes:
        exc = self._u3.exceptions
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > cap and not truncate and "Content-Encoding" not in resp.headers:
            raise FetchError(url, "too_large", f"Content-Length {int(length):,} bytes is over the cap of {cap:,}")
        buf = bytearray()
        try:
            while True:
                chunk = resp.read1(_CHUNK)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > cap:
                    if truncate:
                        del buf[cap:]
                        break
                    raise FetchError(url, "too_large", f"more than the cap of {cap:,} bytes; download aborted")
                if time.monotonic() > deadline:
                    raise _Retryable("timeout", f"transfer took longer than {self.options.total_timeout:g}s")
                if self.stop.is_set():
                    raise Interrupted()
        except exc.DecodeError as err:
            raise FetchError(url, "corrupt", f"cannot decode the Content-Encoding ({_short(err)})") from None
        except exc.TimeoutError:
            raise _Retryable("timeout", f"transfer stalled for {self.options.timeout:g}s") from None
        except (exc.HTTPError, OSError) as err:
            raise _Retryable("connection", f"transfer broke off after {len(buf):,} bytes ({_short(err)})") from None
        with self._lock:
            self.stats.bytes += len(buf)
        return bytes(buf)


def _short(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    # urllib3 puts the connection object's repr first: keep the useful tail
    if ": " in text and text.startswith("<"):
        text = text.split(": ", 1)[1]
    return text[:200]

