"""The outcome of a collect run, as plain data (``to_dict`` for ``--json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failure:
    """One item that was not collected because something went wrong."""

    kind: str                    #: "image", "page" or "row" (a URL-list row)
    url: str
    reason: str                  #: a code from :mod:`facedex.collect.reasons`
    detail: str = ""
    people: tuple[str, ...] = ()
    line: int | None = None      #: URL-list line number, for rows

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": self.kind, "url": self.url, "reason": self.reason, "detail": self.detail,
             "people": list(self.people)}
        if self.line is not None:
            d["line"] = self.line
        return d


@dataclass(frozen=True)
class PageTally:
    fetched: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    def to_dict(self) -> dict[str, Any]:
        return {"fetched": self.fetched, "skipped": self.skipped, "failed": self.failed,
                "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
                "failed_by_reason": dict(sorted(self.failed_by_reason.items()))}


@dataclass(frozen=True)
class CollectReport:
    """What one run did. Counts are for this run; ``totals`` for the whole DST."""

    command: str
    dst: str
    downloaded: int = 0
    bytes: int = 0
    skipped_by_reason: dict[str, int] = field(default_factory=dict)
    failed_by_reason: dict[str, int] = field(default_factory=dict)
    pages: PageTally = field(default_factory=PageTally)
    failures: tuple[Failure, ...] = ()
    notes: tuple[str, ...] = ()
    totals: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    manifest: str = ""
    sources: str = ""
    state: str = ""

    @property
    def skipped(self) -> int:
        return sum(self.skipped_by_reason.values())

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    @property
    def ok(self) -> bool:
        """True when nothing failed in this run (skips are not failures)."""
        return self.failed == 0 and self.pages.failed == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "dst": self.dst,
            "downloaded": self.downloaded,
            "bytes": self.bytes,
            "skipped": self.skipped,
            "failed": self.failed,
            "skipped_by_reason": dict(sorted(self.skipped_by_reason.items())),
            "failed_by_reason": dict(sorted(self.failed_by_reason.items())),
            "pages": self.pages.to_dict(),
            "failures": [f.to_dict() for f in self.failures],
            "notes": list(self.notes),
            "totals": dict(self.totals),
            "requests": self.requests,
            "elapsed_s": round(self.elapsed_s, 3),
            "interrupted": self.interrupted,
            "manifest": self.manifest,
            "sources": self.sources,
            "state": self.state,
        }
