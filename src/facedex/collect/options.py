"""Settings of a collect run, with the polite defaults, and size parsing."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields, replace
from typing import Any

from .. import __version__
from ..errors import CollectError

#: Identifies the collector to web servers and to robots.txt (product token
#: ``facedex-collect``). Put a way to reach you in your own: ``--user-agent
#: "facedex-collect/0.1 (+mailto:you@example.org)"``.
DEFAULT_USER_AGENT = f"facedex-collect/{__version__} (+https://pypi.org/project/facedex/)"

MiB = 1024 * 1024


@dataclass(frozen=True)
class CollectOptions:
    """Everything that shapes a run. The defaults are the polite ones."""

    # --- politeness ---
    user_agent: str = DEFAULT_USER_AGENT
    respect_robots: bool = True       #: off only with ``--ignore-robots``
    rate: float = 1.0                 #: requests per second per host; 0 = no limit
    concurrency: int = 4              #: downloads in flight at once, over all hosts
    per_host_connections: int = 2     #: open connections per host at most
    # --- retries and timeouts ---
    retries: int = 3                  #: extra attempts on timeouts, 408, 429 and 5xx
    backoff: float = 1.0              #: first retry delay (s); doubles each time, with jitter
    max_backoff: float = 60.0         #: longest retry delay (s)
    max_retry_after: float = 300.0    #: a longer Retry-After fails the item instead of waiting
    timeout: float = 30.0             #: connect timeout and the longest silence while reading (s)
    total_timeout: float = 120.0      #: longest time for one response, start to end (s)
    max_redirects: int = 10
    # --- content checks ---
    max_image_bytes: int = 20 * MiB   #: size cap per image, enforced while streaming
    max_page_bytes: int = 5 * MiB     #: size cap per HTML page
    min_side: int = 100               #: minimum width and height of an image (px)
    max_pixels: int | None = None     #: decompression-bomb guard; default FACEDEX_MAX_PIXELS
    # --- limits (over the whole DST, across runs) ---
    max_per_person: int | None = None
    max_total_bytes: int | None = None
    max_pages: int | None = None
    # --- scope ---
    allowed_hosts: tuple[str, ...] = ()   #: added to the recipe's / the list's own hosts
    ignore_query: tuple[str, ...] = ()    #: query parameters (globs) dropped from URLs
    # --- resume ---
    retry_failed: bool = False        #: also retry permanent failures of earlier runs
    recrawl: bool = False             #: fetch pages again (images are still never re-downloaded)

    def __post_init__(self) -> None:
        checks = [
            ("concurrency", self.concurrency >= 1, "at least 1"),
            ("per_host_connections", self.per_host_connections >= 1, "at least 1"),
            ("rate", self.rate >= 0, "0 (no limit) or more"),
            ("retries", self.retries >= 0, "0 or more"),
            ("backoff", self.backoff >= 0, "0 or more"),
            ("max_backoff", self.max_backoff >= 0, "0 or more"),
            ("max_retry_after", self.max_retry_after >= 0, "0 or more"),
            ("timeout", self.timeout > 0, "more than 0"),
            ("total_timeout", self.total_timeout > 0, "more than 0"),
            ("max_redirects", self.max_redirects >= 0, "0 or more"),
            ("max_image_bytes", self.max_image_bytes >= 1, "at least 1"),
            ("max_page_bytes", self.max_page_bytes >= 1, "at least 1"),
            ("min_side", self.min_side >= 1, "at least 1"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise CollectError(f"option {name}={getattr(self, name)!r} must be {want}")
        for name in ("max_per_person", "max_total_bytes", "max_pages", "max_pixels"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise CollectError(f"option {name}={value!r} must be at least 1 (or unset for no limit)")
        if not self.user_agent.strip():
            raise CollectError("option user_agent must not be empty")

    def updated(self, **changes: Any) -> "CollectOptions":
        """A copy with the given settings; ``None`` values are ignored (not given)."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise CollectError(f"unknown collect option(s): {', '.join(sorted(unknown))}")
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2, "g": 1000**3, "gb": 1000**3,
          "t": 1000**4, "tb": 1000**4, "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
          "ki": 1024, "mi": 1024**2, "gi": 1024**3, "ti": 1024**4}


def parse_size(value: str | int | float) -> int:
    """``"20MB"`` → 20000000, ``"1.5 GiB"`` → 1610612736, ``4096`` → 4096."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"{value!r} is not a size")
        return int(value)
    m = _SIZE.match(str(value))
    if not m or (m.group(2) or "").lower() not in _UNITS:
        raise ValueError(f"{value!r} is not a size (examples: 500000, 800k, 20MB, 1.5GiB)")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


def format_size(n: int) -> str:
    for unit, div in (("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if n >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n} B"
