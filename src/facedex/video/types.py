"""Plain data for video identification: options, stream facts, tracks, results.

Times are seconds from the start of the video (presentation time of the
frame, as the player shows it). Boxes are ``(x, y, w, h)`` in pixels of the
frame as displayed, after rotation metadata has been applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..media.video import Frame, VideoInfo  # noqa: F401 (part of the video stage's data)
from ..types import Candidate, ErrorInfo, Face, Threshold


def _t(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


@dataclass(frozen=True)
class VideoOptions:
    """How a video is sampled, tracked and decided. Every value is documented
    in ``docs/video.md``; the defaults are what ``facedex identify`` uses.

    ``sample_fps``
        Frames analysed per second of video (detection + embedding). ``None``
        analyses every frame. Frames in between are decoded (the codec needs
        them) but not converted or analysed. Default 5.
    ``max_gap``
        A track that has not been seen for this many seconds ends; a face seen
        later starts a new track. Default 1.0.
    ``appearance_gate``
        Lowest cosine similarity between a face and a track's recent
        appearance for the face to join the track when their positions agree.
    ``reacquire_similarity``
        A face whose position does not agree with a track (it jumped, or came
        back after a short occlusion) joins it only at this similarity or above.
    ``max_shift``
        How far a face may move between two sampled frames and still count as
        "the same place": in face widths per second of gap, plus one width.
    ``scene_cut``
        Colour-histogram (Bhattacharyya) distance between consecutive sampled
        frames above which a scene cut is declared and every track ends.
        ``0`` disables cut detection. Default 0.5.
    ``embed_interval``
        A face that continues its track unambiguously by position alone is
        embedded again only after this many seconds (or when it is clearly
        better than the track's best face); ``0`` embeds every sampled face.
        Default 0.5.
    ``min_embeddings``
        Every face of a track is embedded until the track has this many
        embeddings. Default 3.
    ``min_track_frames``
        An unknown track is reported once it has been seen in this many
        sampled frames; shorter ones (flickers) are dropped and counted —
        unless the whole video has fewer sampled frames. A named track is
        always reported. Default 3.
    ``min_track_score``
        Lowest mean detection score of a track's confident detections: below,
        an unknown track is dropped as a non-face (a logo, a pattern). Default 0.65.
    ``min_track_quality``
        Lowest best-face quality weight (:func:`~facedex.video.tracker.face_weight`)
        of a track: below, an unknown track is dropped as too poor to decide (dark, tiny or
        blurred throughout). Default 0.05.
    ``track_low_score``
        Detections scoring between this and the detector's threshold only
        continue existing tracks (ByteTrack's second pass); ``0`` disables
        the pass. Default 0.3.
    ``merge_similarity``
        A new track continues a track that ended within ``merge_window``
        seconds (occlusion, scene cut) when their aggregate embeddings reach
        this cosine similarity. Default 0.5.
    ``merge_window``
        How long (seconds of video) an ended track waits for a continuation
        before it is final; ``0`` never merges (tracks end as soon as they are
        unseen for ``max_gap``). Default 10.
    ``quality_power``
        Each embedding counts in the track's aggregate with its quality
        weight (without sharpness: see ``docs/video.md``) raised to this power
        (0: a plain mean; larger: the best faces dominate). Default 1.
    ``max_pixels``
        Largest frame (width x height) accepted; ``None`` uses
        ``FACEDEX_MAX_PIXELS`` (the limit for images).
    ``thumbnails``
        Keep a small crop of each track's best face (for contact sheets).
    """

    sample_fps: float | None = 5.0
    max_gap: float = 1.0
    appearance_gate: float = 0.30
    reacquire_similarity: float = 0.50
    max_shift: float = 3.0
    scene_cut: float = 0.5
    embed_interval: float = 0.5
    min_embeddings: int = 3
    min_track_frames: int = 3
    min_track_score: float = 0.65
    min_track_quality: float = 0.05
    track_low_score: float = 0.3
    merge_similarity: float = 0.5
    merge_window: float = 10.0
    quality_power: float = 1.0
    max_pixels: int | None = None
    thumbnails: bool = True

    def __post_init__(self) -> None:
        if self.sample_fps is not None and not (math.isfinite(self.sample_fps) and self.sample_fps > 0):
            raise ConfigError(f"sample_fps must be a positive number of frames per second "
                              f"(or None for every frame), got {self.sample_fps}")
        if not (math.isfinite(self.max_gap) and self.max_gap >= 0):
            raise ConfigError(f"max_gap must be >= 0 seconds, got {self.max_gap}")
        for name in ("appearance_gate", "reacquire_similarity"):
            v = getattr(self, name)
            if not -1.0 <= v <= 1.0:
                raise ConfigError(f"{name} is a cosine similarity in [-1, 1], got {v}")
        if not (math.isfinite(self.max_shift) and self.max_shift >= 0):
            raise ConfigError(f"max_shift must be >= 0, got {self.max_shift}")
        if not 0.0 <= self.scene_cut <= 1.0:
            raise ConfigError(f"scene_cut is a histogram distance in [0, 1] (0 disables), got {self.scene_cut}")
        if not (math.isfinite(self.embed_interval) and self.embed_interval >= 0):
            raise ConfigError(f"embed_interval must be >= 0 seconds, got {self.embed_interval}")
        if self.min_embeddings < 1:
            raise ConfigError(f"min_embeddings must be at least 1, got {self.min_embeddings}")
        if self.min_track_frames < 1:
            raise ConfigError(f"min_track_frames must be at least 1, got {self.min_track_frames}")
        for name in ("min_track_score", "min_track_quality"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {v}")
        if not 0.0 <= self.track_low_score < 1.0:
            raise ConfigError(f"track_low_score is a detection score in [0, 1) (0 disables), got {self.track_low_score}")
        if not -1.0 <= self.merge_similarity <= 1.0:
            raise ConfigError(f"merge_similarity is a cosine similarity in [-1, 1], got {self.merge_similarity}")
        if not (math.isfinite(self.merge_window) and self.merge_window >= 0):
            raise ConfigError(f"merge_window must be >= 0 seconds, got {self.merge_window}")
        if not (math.isfinite(self.quality_power) and 0 <= self.quality_power <= 10):
            raise ConfigError(f"quality_power must be in [0, 10], got {self.quality_power}")
        if self.max_pixels is not None and self.max_pixels < 1:
            raise ConfigError(f"max_pixels must be positive, got {self.max_pixels}")

    @property
    def sample_period(self) -> float:
        return 1.0 / self.sample_fps if self.sample_fps else 0.0


@dataclass(frozen=True)
class TrackPoint:
    """Where a track's face was in one sampled frame."""

    time: float
    box: tuple[float, float, float, float]
    weight: float


@dataclass(frozen=True, eq=False)
class Track:
    """One face followed across frames, and the single decision made for it.

    ``name`` is ``None`` for unknown. ``similarity`` is the cosine similarity
    of the track's quality-weighted mean embedding (``embedding``) to the named
    person — or to the closest candidate when unknown; ``score`` is what was
    compared with ``threshold`` (the gallery's photo threshold): the
    similarity less the crowding penalty of a photo's face (``None``: equal). ``first_seen`` is the
    time of the first sampled frame with the face, ``last_seen`` the end of
    the time covered by the last one (the next sampled frame, or the end of
    the video), so ``last_seen - first_seen`` is the time on screen.
    ``frames`` counts sampled frames with the face. ``best_face`` is the face
    of highest quality, found at ``best_frame_time``; ``thumbnail`` a small RGB
    crop around it. ``points`` has the box in every sampled frame. ``ended``
    says why the track ended: ``"gap"`` (unseen for ``max_gap``), ``"cut"``
    (scene cut) or ``"end"`` (end of the video). ``segments`` are the time
    ranges the face was on screen: one, or several when the track was joined
    across an occlusion or a cut away and back (``fragments`` of them);
    ``seconds`` is their total.
    """

    track: int
    name: str | None
    similarity: float
    candidates: tuple[Candidate, ...]
    threshold: float
    first_seen: float
    last_seen: float
    frames: int
    best_frame_time: float
    best_face: Face
    best_quality: float
    embedding: np.ndarray
    points: tuple[TrackPoint, ...]
    thumbnail: np.ndarray | None = None
    ended: str = "end"
    segments: tuple[tuple[float, float], ...] = ()
    fragments: int = 1
    score: float | None = None

    @property
    def known(self) -> bool:
        return self.name is not None

    @property
    def ranges(self) -> tuple[tuple[float, float], ...]:
        """When the face was on screen: ``segments``, or ``first_seen``–``last_seen``."""
        return self.segments or ((self.first_seen, self.last_seen),)

    @property
    def seconds(self) -> float:
        return sum(max(0.0, b - a) for a, b in self.ranges)

    def to_dict(self) -> dict[str, Any]:
        return {
            "track": self.track,
            "name": self.name,
            "similarity": round(float(self.similarity), 4),
            "score": round(float(self.similarity if self.score is None else self.score), 4),
            "first_seen": _t(self.first_seen),
            "last_seen": _t(self.last_seen),
            "frames": self.frames,
            "best_frame_time": _t(self.best_frame_time),
            "candidates": [c.to_dict() for c in self.candidates],
            "segments": [[_t(a), _t(b)] for a, b in self.ranges],
        }


@dataclass(frozen=True)
class PersonPresence:
    """When a named person is on screen: merged time ranges over all their
    tracks, the total seconds, and which tracks."""

    name: str
    ranges: tuple[tuple[float, float], ...]
    seconds: float
    tracks: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ranges": [[_t(a), _t(b)] for a, b in self.ranges],
                "seconds": _t(self.seconds), "tracks": list(self.tracks)}


@dataclass(frozen=True)
class VideoResult:
    """Everything found in one video or animated GIF; ``error`` set when it failed.

    ``duration`` is measured (end of the last decoded frame). ``broken_frames``
    counts frames the decoder reported as undecodable and skipped;
    ``warnings`` notes anything else the user should know (a truncated file).
    ``threshold`` is what every track was decided with; ``annotated`` and
    ``contact_sheet`` the paths written when an annotated copy was asked for.
    ``dropped_tracks`` counts the tracks not reported, by reason (``short``,
    ``non_face``, ``poor``: see :func:`facedex.video.tracker.drop_reason`).
    """

    input: str
    tracks: tuple[Track, ...] = ()
    people: tuple[PersonPresence, ...] = ()
    info: VideoInfo | None = None
    duration: float = 0.0
    frames_decoded: int = 0
    frames_sampled: int = 0
    broken_frames: int = 0
    sample_fps: float | None = None
    threshold: Threshold | None = None
    warnings: tuple[str, ...] = ()
    error: ErrorInfo | None = None
    annotated: str | None = None
    contact_sheet: str | None = None
    dropped_tracks: tuple[tuple[str, int], ...] = ()

    kind = "video"

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "input": self.input,
            "kind": "video",
            "error": None if self.error is None else self.error.to_dict(),
            "threshold": None if self.threshold is None else self.threshold.brief(),
            "duration": _t(self.duration),
            "frames_decoded": self.frames_decoded,
            "frames_sampled": self.frames_sampled,
            "broken_frames": self.broken_frames,
            "tracks": [t.to_dict() for t in self.tracks],
            "people": [p.to_dict() for p in self.people],
            "format": info.format if info else None,
            "width": info.width if info else None,
            "height": info.height if info else None,
            "fps": None if info is None or info.fps is None else round(info.fps, 3),
            "sample_fps": self.sample_fps,
            "warnings": list(self.warnings),
            "annotated": self.annotated,
            "contact_sheet": self.contact_sheet,
            "dropped_tracks": dict(self.dropped_tracks),
        }


@dataclass
class StreamStats:
    """Counters a running stream updates as it goes (read them while iterating)."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    broken_frames: int = 0
    faces: int = 0
    embedded: int = 0
    end_time: float = 0.0
    warnings: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)  # tracks not reported, by reason
    merged: int = 0  # fragments joined to an earlier track (occlusion, cut away and back)
    low_detections: int = 0  # low-score detections that continued a track (second pass)


def format_time(seconds: float) -> str:
    """``m:ss.s`` (``h:mm:ss.s`` from an hour) for timelines and labels."""
    s = max(0.0, float(seconds))
    tenths = int(round(s * 10))
    h, rem = divmod(tenths, 36000)
    m, rem = divmod(rem, 600)
    sec = rem / 10
    return f"{h}:{m:02d}:{sec:04.1f}" if h else f"{m}:{sec:04.1f}"
