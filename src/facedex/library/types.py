"""Plain data of the library stage: sightings, index reports, clusters, appearances.

A *sighting* is one face found in the indexed library: a face in a photo, or
one face track of a video or animation (its time range, its best face's
box, and the quality-weighted mean embedding of its faces). Boxes are
``(x, y, w, h)`` in pixels of the image or frame as displayed; times are
seconds from the start of the video.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..types import Threshold


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass(frozen=True)
class Sighting:
    """One face of the library. ``kind`` is the source's: ``"image"``,
    ``"animation"`` or ``"video"``; ``time`` the track's ``(start, end)`` and
    ``best_time`` when its best face was seen (``None`` for photos);
    ``person`` the name it was given (``facedex name``), else ``None``."""

    id: int
    source: str
    kind: str
    box: tuple[float, float, float, float]
    time: tuple[float, float] | None = None
    best_time: float | None = None
    frames: int | None = None
    quality: float = 0.0
    detection_score: float = 0.0
    person: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"sighting": self.id, "source": self.source, "kind": self.kind,
                "box": [round(float(v), 1) for v in self.box],
                "time": None if self.time is None else [_r(self.time[0]), _r(self.time[1])],
                "best_time": _r(self.best_time), "frames": self.frames, "quality": _r(self.quality, 4),
                "person": self.person}


@dataclass(frozen=True)
class IndexItem:
    """What ``index`` did with one input.

    ``status``: ``"indexed"`` (new file), ``"updated"`` (its content changed
    since the last run: old sightings replaced), ``"unchanged"`` (same path,
    size and time, or same content: nothing read), ``"duplicate"`` (same
    content as an indexed file: its sightings were copied, nothing decoded),
    ``"failed"`` (``code`` and ``reason`` say why), ``"removed"``
    (``--prune`` / ``--forget-source``)."""

    path: str
    status: str
    kind: str | None = None
    sightings: int = 0
    code: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "kind": self.kind, "sightings": self.sightings,
                "code": self.code, "reason": self.reason}


@dataclass(frozen=True)
class IndexReport:
    items: tuple[IndexItem, ...] = ()
    skipped: tuple = ()  # facedex.media.Skipped: files in folders that are not images or videos

    def count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    @property
    def failed(self) -> int:
        return self.count("failed")

    @property
    def sightings_added(self) -> int:
        return sum(i.sightings for i in self.items if i.status in ("indexed", "updated", "duplicate"))


@dataclass(frozen=True)
class ClusterFace:
    sighting: Sighting
    similarity_to_centre: float

    def to_dict(self) -> dict[str, Any]:
        s = self.sighting
        return {"sighting": s.id, "source": s.source, "kind": s.kind,
                "box": [round(float(v), 1) for v in s.box],
                "time": _r(s.best_time),
                "time_range": None if s.time is None else [_r(s.time[0]), _r(s.time[1])],
                "similarity_to_centre": round(float(self.similarity_to_centre), 4)}


@dataclass(frozen=True)
class Cluster:
    """A candidate person: faces no enrolled person claims, grouped. ``faces``
    are ordered by similarity to the cluster's centre, best first (the last
    ones are where a reviewer finds intruders)."""

    id: str
    faces: tuple[ClusterFace, ...]

    @property
    def size(self) -> int:
        return len(self.faces)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "size": self.size, "faces": [f.to_dict() for f in self.faces]}


@dataclass(frozen=True)
class DiscoverResult:
    """Clusters (largest first) of the sightings no enrolled person claims.

    ``unclustered``: such sightings left alone (in no group of ``min_size``);
    ``claimed``: sightings the gallery's people claim, per person (the same
    decision as ``identify``); ``named``: sightings already named;
    ``low_quality``: sightings left out by ``min_quality``."""

    clusters: tuple[Cluster, ...]
    unclustered: int
    sightings: int
    claimed: dict[str, int]
    named: int
    low_quality: int
    threshold: float
    threshold_source: str
    identify_threshold: Threshold | None
    min_size: int
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "clusters": [c.to_dict() for c in self.clusters],
            "unclustered": self.unclustered,
            "sightings": self.sightings,
            "claimed": dict(sorted(self.claimed.items())),
            "named": self.named,
            "low_quality": self.low_quality,
            "threshold": {"value": round(self.threshold, 4), "source": self.threshold_source},
            "identify_threshold": None if self.identify_threshold is None else self.identify_threshold.to_dict(),
            "min_size": self.min_size,
        }


@dataclass(frozen=True)
class Appearance:
    """Where a person appears: a sighting and the similarity the decision was made on."""

    sighting: Sighting
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        s = self.sighting
        return {"sighting": s.id, "source": s.source, "kind": s.kind,
                "box": [round(float(v), 1) for v in s.box],
                "time": None if s.time is None else [_r(s.time[0]), _r(s.time[1])],
                "best_time": _r(s.best_time),
                "similarity": round(float(self.similarity), 4), "named": s.person is not None}


@dataclass(frozen=True)
class FindResult:
    person: str
    appearances: tuple[Appearance, ...]
    threshold: Threshold
    sightings: int
    sources: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"person": self.person, "threshold": self.threshold.to_dict(),
                "appearances": [a.to_dict() for a in self.appearances],
                "sources": len({a.sighting.source for a in self.appearances}),
                "sightings_searched": self.sightings}


@dataclass(frozen=True)
class NameResult:
    """What ``facedex name`` did: ``enrolled`` faces added to ``person``
    (``created``: the person is new), ``excluded`` sightings marked as not
    them, ``skipped`` sightings already named (with the name)."""

    cluster: str
    person: str
    created: bool
    enrolled: int
    sources: int
    excluded: tuple[int, ...] = ()
    skipped: tuple[tuple[int, str], ...] = ()
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"cluster": self.cluster, "person": self.person, "created": self.created,
                "enrolled": self.enrolled, "sources": self.sources, "excluded": list(self.excluded),
                "skipped": [{"sighting": s, "person": p} for s, p in self.skipped],
                "warnings": list(self.warnings)}


@dataclass(frozen=True)
class PeopleEdit:
    """What a person-fixing operation did (``facedex people --merge/--rename/
    --remove-face/--remove-source``)."""

    operation: str
    person: str
    into: str | None = None
    faces_moved: int = 0
    faces_removed: int = 0
    sources_removed: int = 0
    person_removed: bool = False
    people_affected: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {"operation": self.operation, "person": self.person, "into": self.into,
                "faces_moved": self.faces_moved, "faces_removed": self.faces_removed,
                "sources_removed": self.sources_removed, "person_removed": self.person_removed,
                "people_affected": list(self.people_affected)}
