"""The collector's internal stop signal (not a facedex error: it never leaves the collector)."""

from __future__ import annotations


class Interrupted(Exception):
    """Raised inside a worker when the run is being stopped; the item stays pending."""
