"""Errors of the collect stage, on the project's one exception tree.

Setup problems (a bad recipe or URL list, a DST that cannot be used, a
missing optional dependency) raise a :class:`CollectError` and stop the
command before any download. Per-item problems (a 404, an HTML page served
as ``.jpg``) are :class:`FetchError`: the collector records them with a
stable reason code and carries on.
"""

from __future__ import annotations

from ..errors import ConfigError, FacedexError


class CollectError(FacedexError):
    """The collector cannot start or go on (setup, destination, state database)."""


class MissingDependencyError(CollectError):
    """An optional package of the ``facedex[collect]`` extra is not installed."""

    def __init__(self, package: str):
        self.package = package
        super().__init__(
            f"facedex collect needs the Python package {package!r}, which is not installed; "
            "run: pip install 'facedex[collect]'"
        )


class RecipeError(CollectError, ConfigError):
    """A crawl recipe cannot be read or has an invalid value."""


class UrlListError(CollectError):
    """A URL list file cannot be read at all (a bad row is a per-item failure)."""


class StateError(CollectError):
    """The state database in DST is unusable, or DST is busy with another run."""


class FetchError(FacedexError):
    """One URL could not be collected; ``reason`` is a stable code (see :mod:`.reasons`)."""

    def __init__(self, url: str, reason: str, detail: str = "", *, retry_after: float | None = None):
        self.url, self.reason, self.detail = url, reason, detail
        self.retry_after = retry_after
        super().__init__(f"{url}: {reason}" + (f" ({detail})" if detail else ""))


class Interrupted(Exception):
    """Raised inside a worker when the run is being stopped; the item stays pending."""
