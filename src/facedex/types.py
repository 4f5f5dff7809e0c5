"""Frozen dataclasses that cross stage boundaries.

Backend objects (ONNX outputs, SQLite rows, faiss ids) are turned into these
at the edge of the stage that made them. Coordinates are pixels of the image
as decoded (after EXIF orientation), floats, origin top-left.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Names of the five landmarks, in the order they are stored. "left"/"right"
#: are as seen in the image, which is also the order of the ArcFace template.
LANDMARK_NAMES = ("eye_left", "eye_right", "nose", "mouth_left", "mouth_right")


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def iso_time(epoch: float | None) -> str | None:
    """An epoch time as ISO 8601 UTC (``2026-11-30T08:24:35Z``), for JSON."""
    if epoch is None:
        return None
    return _dt.datetime.fromtimestamp(float(epoch), _dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ErrorInfo:
    """Why one input (or item) failed: a stable ``code`` (see
    :mod:`facedex.errors`) and a message that names the item."""

    code: str
    message: str

    @classmethod
    def of(cls, err: BaseException) -> "ErrorInfo":
        from .errors import error_dict

        d = error_dict(err)
        return cls(d["code"], d["message"])

    def __str__(self) -> str:
        return self.message

    def __contains__(self, text: str) -> bool:  # `"no such file" in result.error`
        return text in self.message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


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
class Decision:
    """What the gallery answered for one embedding: ``name`` (``None`` for
    unknown), the ``similarity`` behind it (the best candidate's evidence), the
    closest ``candidates`` and the ``score`` compared with the threshold (the
    similarity less any crowding penalty, see :mod:`facedex.identify.identifier`;
    ``None``: the similarity itself)."""

    name: str | None
    similarity: float
    candidates: tuple[Candidate, ...]
    score: float | None = None


@dataclass(frozen=True)
class Identification:
    """The decision for one face: a person, or ``name=None`` for unknown.

    ``similarity`` is the cosine similarity behind the decision — to the named
    person's template, or to the closest candidate's when the answer is unknown
    (0.0 for an empty gallery). ``score`` is what was compared with
    ``threshold``: the similarity, less a crowding penalty when the face also
    resembles many other enrolled people (``None``: equal to the similarity).
    """

    face: Face
    name: str | None
    similarity: float
    candidates: tuple[Candidate, ...]
    threshold: float
    score: float | None = None

    @property
    def known(self) -> bool:
        return self.name is not None

    def to_dict(self) -> dict[str, Any]:
        d = self.face.to_dict()
        d.update(
            name=self.name,
            similarity=_r(self.similarity, 4),
            score=_r(self.similarity if self.score is None else self.score, 4),
            candidates=[c.to_dict() for c in self.candidates],
        )
        return d


@dataclass(frozen=True)
class ImageResult:
    """Everything facedex found in one photo; ``error`` set when it failed.

    ``threshold`` is the threshold the faces were decided with; ``annotated``
    the path of the annotated copy, when one was asked for and written.
    """

    input: str
    faces: tuple[Identification, ...] = ()
    error: ErrorInfo | None = None
    threshold: "Threshold | None" = None
    annotated: str | None = None

    kind = "image"

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "kind": "image",
            "error": None if self.error is None else self.error.to_dict(),
            "threshold": None if self.threshold is None else self.threshold.brief(),
            "faces": [f.to_dict() for f in self.faces],
            "annotated": self.annotated,
        }


@dataclass(frozen=True)
class EnrollItem:
    """What happened to one enrollment image.

    ``status`` is ``"added"``, ``"skipped"`` (already enrolled: same person,
    same file content) or ``"failed"`` (``reason`` says why, ``code`` is the
    error's stable code). ``note`` explains a choice that was made (which of
    several faces was taken).
    """

    path: str
    person: str
    status: str
    reason: str | None = None
    faces_added: int = 0
    code: str | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "person": self.person,
            "status": self.status,
            "code": self.code,
            "reason": self.reason,
            "note": self.note,
            "faces_added": self.faces_added,
        }


@dataclass(frozen=True)
class EnrollReport:
    """Every item of one enrollment, and warnings about the people (a name that
    looks like another person's spelling, a person left without a face)."""

    items: tuple[EnrollItem, ...] = field(default_factory=tuple)
    warnings: tuple[str, ...] = ()

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
            "warnings": list(self.warnings),
            "items": [i.to_dict() for i in self.items],
        }


#: Detail keys that hold epoch times, shown as ISO 8601 in JSON.
_TIME_KEYS = ("calibrated_at", "set_at")


@dataclass(frozen=True)
class Threshold:
    """The open-set threshold in force and where it came from.

    ``method`` is ``"default"`` (the embedder card's value, not fitted to this
    gallery), ``"calibrated"`` (``facedex calibrate``), ``"manual"`` (set by
    hand for the gallery) or ``"override"`` (given for one run);
    ``details`` holds the calibration figures.
    """

    value: float
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def brief(self) -> dict[str, Any]:
        """Value and method only (what each result carries)."""
        return {"value": _r(self.value, 4), "method": self.method}

    def to_dict(self) -> dict[str, Any]:
        details = {k: (iso_time(v) if k in _TIME_KEYS and isinstance(v, (int, float)) else v)
                   for k, v in self.details.items()}
        return {"value": _r(self.value, 4), "method": self.method, **details}
