"""Frozen dataclasses that cross stage boundaries.

Backend objects (ONNX outputs, SQLite rows, faiss ids) are turned into these
at the edge of the stage that made them. Coordinates are pixels of the image
as decoded (after EXIF orientation), floats, origin top-left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Names of the five landmarks, in the order they are stored. "left"/"right"
#: are as seen in the image, which is also the order of the ArcFace template.
LANDMARK_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


@dataclass(frozen=True)
class Face:
    """One detected face.

    ``box`` is ``(x, y, w, h)``; ``landmarks`` five ``(x, y)`` points in the
    order of :data:`LANDMARK_NAMES`; ``score`` the detector's confidence.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...]
    score: float

    @property
    def size(self) -> float:
        """The shorter side of the box, in pixels."""
        return float(min(self.box[2], self.box[3]))

    @property
    def area(self) -> float:
        return float(self.box[2] * self.box[3])

    def landmarks_array(self) -> np.ndarray:
        return np.asarray(self.landmarks, dtype=np.float32).reshape(5, 2)

    def to_dict(self) -> dict[str, Any]:
        return {
            "box": [_r(v) for v in self.box],
            "landmarks": [[_r(x), _r(y)] for x, y in self.landmarks],
            "detection_score": _r(self.score, 4),
        }


@dataclass(frozen=True)
class Candidate:
    """A person and the best cosine similarity of the probe to any of their faces."""

    name: str
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "similarity": _r(self.similarity, 4)}


@dataclass(frozen=True)
class Identification:
    """The decision for one face: a person, or ``name=None`` for unknown.

    ``similarity`` is the cosine similarity behind the decision — to the named
    person, or to the closest candidate when the answer is unknown (0.0 for an
    empty gallery). ``threshold`` is the value it was compared with.
    """

    face: Face
    name: str | None
    similarity: float
    candidates: tuple[Candidate, ...]
    threshold: float

    @property
    def known(self) -> bool:
        return self.name is not None

    def to_dict(self) -> dict[str, Any]:
        d = self.face.to_dict()
        d.update(
            name=self.name,
            similarity=_r(self.similarity, 4),
            candidates=[c.to_dict() for c in self.candidates],
        )
        return d


@dataclass(frozen=True)
class ImageResult:
    """Everything facedex found in one input; ``error`` set when it failed."""

    input: str
    faces: tuple[Identification, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "error": self.error,
            "faces": [f.to_dict() for f in self.faces],
        }


@dataclass(frozen=True)
class EnrollItem:
    """What happened to one enrollment image.

    ``status`` is ``"added"``, ``"skipped"`` (already enrolled: same person,
    same file content) or ``"failed"`` (``reason`` says why).
    """

    path: str
    person: str
    status: str
    reason: str | None = None
    faces_added: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "person": self.person,
            "status": self.status,
            "reason": self.reason,
            "faces_added": self.faces_added,
        }


@dataclass(frozen=True)
class EnrollReport:
    items: tuple[EnrollItem, ...] = field(default_factory=tuple)

    def count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    @property
    def added(self) -> int:
        return self.count("added")

    @property
    def skipped(self) -> int:
        return self.count("skipped")

    @property
    def failed(self) -> int:
        return self.count("failed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "skipped": self.skipped,
            "failed": self.failed,
            "items": [i.to_dict() for i in self.items],
        }


@dataclass(frozen=True)
class Threshold:
    """The open-set threshold in force and where it came from.

    ``method`` is ``"default"`` (the embedder card's value, not fitted to this
    gallery) or ``"calibrated"``; ``details`` holds the calibration figures.
    """

    value: float
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"value": _r(self.value, 4), "method": self.method, **self.details}
