"""Per-host politeness: a minimum interval between request starts, and pauses.

Each host (name, without port — the same machine however it is reached)
gets slots ``interval`` seconds apart, reserved in arrival order, so N
workers asking at once start their requests one interval after another.
A ``Retry-After`` answer or a ``Crawl-delay`` pauses the whole host, not
just the one request that saw it. Waiting is interruptible through the
run's stop event.
"""

from __future__ import annotations

import threading
import time

from ._interrupt import Interrupted


class HostLimiter:
    def __init__(self, rate: float, stop: threading.Event | None = None, clock=time.monotonic):
        """``rate``: requests per second per host; 0 or less means no limit."""
        self.interval = 1.0 / rate if rate and rate > 0 else 0.0
        self.stop = stop or threading.Event()
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._min_interval: dict[str, float] = {}

    def set_min_interval(self, host: str, seconds: float) -> None:
        """A host-specific floor on the interval (robots.txt ``Crawl-delay``)."""
        with self._lock:
            self._min_interval[host] = max(0.0, float(seconds))

    def interval_for(self, host: str) -> float:
        return max(self.interval, self._min_interval.get(host, 0.0))

    def pause(self, host: str, seconds: float) -> None:
        """No request to ``host`` starts before ``seconds`` from now."""
        with self._lock:
            until = self._clock() + max(0.0, seconds)
            self._next[host] = max(self._next.get(host, 0.0), until)

    def wait(self, host: str) -> None:
        """Block until this caller may start a request to ``host``."""
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(host, 0.0))
            self._next[host] = slot + self.interval_for(host)
        delay = slot - now
        if delay > 0 and self.stop.wait(delay):
            raise Interrupted()
        if self.stop.is_set():
            raise Interrupted()
