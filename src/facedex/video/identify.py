"""Identify the people in a video: sample → detect → embed → track → one decision per track.

:func:`identify_video` opens the video and returns a :class:`TrackStream`:
iterate it to receive each :class:`~facedex.video.types.Track` as soon as it
ends (streaming, for long videos), or call :meth:`TrackStream.result` for a
whole :class:`~facedex.video.types.VideoResult`.

The decision for a track is made once, on the quality-weighted mean of the
embeddings of all its faces, by a :class:`Matcher` (a
:class:`facedex.Gallery` is one) with the threshold it is given — the
gallery's calibrated open-set threshold, the same as for photos. A stranger's
track therefore stays unknown however many frames it has: frames are not votes.

This module knows a matcher protocol and a face pipeline, not the gallery.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from ..errors import CorruptVideoError, MediaError
from ..media.video import FrameSource, VideoInfo, open_video
from ..types import Decision, Threshold
from .scene import SceneCutDetector
from .tracker import FaceTracker, LiveTrack, drop_reason, face_weight
from .types import PersonPresence, StreamStats, Track, VideoOptions, VideoResult

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FacePipeline


class Matcher(Protocol):
    """What video identification needs from a gallery: a decision per embedding
    at a given threshold. :class:`facedex.Gallery` implements it."""

    def decide(self, embeddings: np.ndarray, *, threshold: float | None = None) -> Sequence[Decision]: ...

log = logging.getLogger(__name__)

#: ``progress(frames_decoded, frame_count_or_None)``, called after each sampled frame.
Progress = Callable[[int, "int | None"], None]

_EPS = 1e-3  # timestamps within a millisecond of a sampling instant count as on it


def sampler(sample_fps: float | None) -> Callable[[float], bool]:
    """``want(time)`` for frames in order: true for the first frame at or after
    each sampling instant (0, 1/fps, 2/fps, …, within a millisecond). After a
    gap in the video (a long GIF frame, lost frames), sampling restarts at the
    next frame, so a frame displayed for a long time is sampled once per frame."""
    period = 1.0 / sample_fps if sample_fps else 0.0
    due = 0.0

    def want(t: float) -> bool:
        nonlocal due
        if period <= 0:
            return True
        if t + _EPS < due:
            return False
        due += period
        if due <= t + _EPS:
            due = t + period
        return True

    return want


def summarize_people(tracks: Iterable[Track | tuple[int, str | None, float, float]],
                     touch: float = 0.0) -> tuple[PersonPresence, ...]:
    """Per named person: the union of their tracks' time ranges, the total
    seconds, and the track numbers; ordered by first appearance. Unknown
    tracks are not people. Ranges that overlap or touch are merged; they touch
    when the gap between them is at most ``touch`` seconds (one sampling
    period: nobody looked at the frames in between) or a millisecond."""
    spans: dict[str, list[tuple[float, float, int]]] = {}
    for t in tracks:
        if isinstance(t, Track):
            if t.name is not None:
                spans.setdefault(t.name, []).extend((a, b, t.track) for a, b in t.ranges)
            continue
        tid, name, a, b = t
        if name is not None:
            spans.setdefault(name, []).append((a, b, tid))
    people = []
    for name, items in spans.items():
        items.sort()
        ranges: list[list[float]] = []
        for a, b, _ in items:
            if ranges and a <= ranges[-1][1] + max(_EPS, touch):
                ranges[-1][1] = max(ranges[-1][1], b)
            else:
                ranges.append([a, b])
        seconds = sum(b - a for a, b in ranges)
        people.append(PersonPresence(name, tuple((a, b) for a, b in ranges), seconds,
                                     tuple(sorted({tid for _, _, tid in items}))))
    people.sort(key=lambda p: (p.ranges[0][0], p.name))
    return tuple(people)


class TrackStream(Iterator[Track]):
    """Tracks of one video, yielded as they end (a track ends when unseen for
    ``max_gap`` seconds, at a scene cut, or at the end of the video).

    ``info`` describes the video; ``stats`` counts frames decoded, sampled and
    broken so far; ``threshold`` is the value decisions are compared with.
    Iterate it, or call :meth:`result` (not both). Close it (or use ``with``)
    to stop early and release the decoder.
    """

    def __init__(self, pipeline: "FacePipeline", matcher: Matcher, source: FrameSource, options: VideoOptions,
                 threshold: Threshold | float, progress: Progress | None = None):
        self.pipeline = pipeline
        self.matcher = matcher
        self.options = options
        self.info: VideoInfo = source.info
        self.threshold_info = threshold if isinstance(threshold, Threshold) else Threshold(float(threshold), "override")
        self.threshold = self.threshold_info.value
        self.stats = StreamStats()
        self._source = source
        self._progress = progress
        self._summary: list[Track] = []
        self._tracker: FaceTracker | None = None
        self._started = False
        self._gen = self._run()

    # -- iteration ----------------------------------------------------------------------------
    def __iter__(self) -> "TrackStream":
        return self

    def __next__(self) -> Track:
        self._started = True
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()
        self._source.close()

    def __enter__(self) -> "TrackStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def people(self) -> tuple[PersonPresence, ...]:
        """Who has been on screen so far (over the tracks that have ended)."""
        return summarize_people(self._summary, self.options.sample_period)

    def result(self) -> VideoResult:
        """Run to the end and gather everything into a :class:`VideoResult`."""
        if self._started:
            raise RuntimeError("result() needs the whole stream; tracks were already taken from it")
        tracks = sorted(self, key=lambda t: (t.first_seen, t.track))
        s = self.stats
        return VideoResult(
            input=self.info.input, tracks=tuple(tracks), people=summarize_people(tracks, self.options.sample_period),
            info=self.info,
            duration=s.end_time, frames_decoded=s.frames_decoded, frames_sampled=s.frames_sampled,
            broken_frames=s.broken_frames, sample_fps=self.options.sample_fps, threshold=self.threshold_info,
            warnings=tuple(s.warnings), dropped_tracks=tuple(sorted(s.dropped.items())))

    # -- the work -------------------------------------------------------------------------------
    def _run(self) -> Iterator[Track]:
        src, s = self._source, self.stats
        analyser = FrameAnalyser(self.pipeline, self.options, s)
        self._tracker = analyser.tracker
        try:
            for frame in src.frames(sampler(self.options.sample_fps)):
                s.frames_decoded, s.broken_frames, s.end_time = src.frames_decoded, src.broken_frames, src.end_time
                done = analyser.analyse(frame.time, frame.duration, frame.rgb, name=self.info.input)
                if self._progress is not None:
                    self._progress(s.frames_decoded, self.info.frame_count)
                if done:
                    yield from self._decide(done)
            s.frames_decoded, s.broken_frames, s.end_time = src.frames_decoded, src.broken_frames, src.end_time
            s.warnings.extend(src.warnings)
            if s.frames_decoded == 0:
                raise CorruptVideoError(self.info.input, "no frame could be decoded")
            yield from self._decide(analyser.finish(src.end_time))
        finally:
            src.close()

    def _decide(self, finished: list[LiveTrack]) -> Iterator[Track]:
        for lt, d in reportable(finished, self.matcher, self.threshold, self.options, self.stats, self._tracker,
                                self.info.input):
            track = to_track(lt, d, self.threshold)
            self._summary.append(track)
            yield track


def reportable(finished: Sequence[LiveTrack], matcher: Matcher, threshold: float, options: VideoOptions,
               stats: StreamStats, tracker: FaceTracker | None = None,
               name: str = "") -> list[tuple[LiveTrack, Decision]]:
    """The final tracks to report with their decisions, by number.

    Every final track is decided; a **named** track is always reported (its
    evidence reached the photo threshold, however short it was). An unknown
    track is reported only when :func:`~facedex.video.tracker.drop_reason`
    finds nothing against it — for a confirmed track, on all its evidence
    (non-face, poor) rather than its length; the others are counted in
    ``stats.dropped`` by reason."""
    if not finished:
        return []
    decisions = matcher.decide(np.stack([t.aggregate for t in finished]), threshold=threshold)
    keep = []
    for t, d in zip(finished, decisions):
        reason = drop_reason(t, options, t.frames) if t.confirmed else (drop_reason(t, options) or "short")
        if reason is None or d.name is not None:
            if not t.confirmed:
                if tracker is None:
                    raise ValueError("a tentative track needs the tracker to be numbered")
                tracker.number(t)
            keep.append((t, d))
        else:
            stats.dropped[reason] = stats.dropped.get(reason, 0) + 1
            log.debug("%s: unknown track of %d frame(s) at %.2f s dropped (%s)", name, t.frames, t.first_time,
                      reason)
    keep.sort(key=lambda td: td[0].number)
    return keep


class FrameAnalyser:
    """One sampled frame at a time: scene cut → detect (with the second pass's
    low-score detections) → embed what the tracker needs → track. Returns the
    tracks that became final. Shared by files (:class:`TrackStream`) and live
    sources (:mod:`facedex.video.live`); ``tracker`` is readable between frames."""

    def __init__(self, pipeline: "FacePipeline", options: VideoOptions, stats: StreamStats | None = None):
        self.detector, self.embedder = pipeline.detector, pipeline.embedder
        self.low_detector, self.min_score = _low_detector(self.detector, options.track_low_score)
        self.options = options
        self.tracker = FaceTracker(options)
        self.scenes = SceneCutDetector(options.scene_cut)
        self.stats = stats if stats is not None else StreamStats()

    def analyse(self, time: float, duration: float, rgb: np.ndarray, name: str = "") -> list[LiveTrack]:
        s, tracker = self.stats, self.tracker
        s.frames_sampled += 1
        done: list[LiveTrack] = []
        if self.scenes.update(rgb):
            log.debug("%s: scene cut at %.3f s (distance %.2f)", name, time, self.scenes.last_distance)
            done += tracker.cut(time)
        if self.low_detector is None:
            faces, low = self.detector.detect(rgb), []
        else:
            found = self.low_detector.detect(rgb)
            faces = [f for f in found if f.score >= self.min_score]
            low = [f for f in found if f.score < self.min_score]
        h, w = rgb.shape[:2]
        cheap = [face_weight(f, None, w, h) for f in faces]
        need = tracker.plan(time, faces, cheap)
        todo = [j for j, n in enumerate(need) if n]
        crops = {j: self.embedder.align(rgb, faces[j]) for j in todo}
        vectors = self.embedder.embed_crops([crops[j] for j in todo]) if todo else []
        embeddings: list[np.ndarray | None] = [None] * len(faces)
        weights = list(cheap)
        for k, j in enumerate(todo):
            embeddings[j] = vectors[k]
            weights[j] = face_weight(faces[j], crops[j], w, h)
        s.faces += len(faces)
        s.embedded += len(todo)
        done += tracker.update(time, duration, faces, embeddings, weights, rgb, cheap,
                               low=low, low_weights=[face_weight(f, None, w, h) for f in low])
        s.merged, s.low_detections = tracker.merged, tracker.low_used
        return done

    def finish(self, end_time: float) -> list[LiveTrack]:
        final = self.tracker.finish(end_time, self.stats.frames_sampled)
        self.stats.merged, self.stats.low_detections = self.tracker.merged, self.tracker.low_used
        return final


def to_track(lt: LiveTrack, d: Decision, threshold: float) -> Track:
    """The public :class:`Track` of a final (confirmed) tracker track and its decision."""
    return Track(
        track=int(lt.number if lt.number is not None else lt.id), name=d.name, similarity=float(d.similarity),
        candidates=tuple(d.candidates), threshold=threshold, first_seen=lt.first_time,
        last_seen=float(lt.end_time if lt.end_time is not None else lt.last_time), frames=lt.frames,
        best_frame_time=lt.best_time, best_face=lt.best_face, best_quality=lt.best_weight, embedding=lt.aggregate,
        points=tuple(lt.points), thumbnail=lt.thumbnail, ended=lt.ended,
        segments=tuple((float(a), float(b)) for a, b in lt.segments), fragments=lt.fragments,
        score=None if d.score is None else float(d.score))


def _low_detector(detector, low: float):
    """A detector for the second pass — the same model and settings with the
    score threshold lowered to ``low`` (the model is shared, not loaded
    again) — and the threshold that separates confident detections; ``None``
    when the pass is off or the detector is not one that can be lowered.
    Detections above the detector's own threshold are the same either way
    (non-maximum suppression keeps the higher-scoring box)."""
    config = getattr(detector, "config", None)
    min_score = getattr(config, "min_score", None)
    if low <= 0 or min_score is None or low >= min_score:
        return None, min_score
    from ..faces.detect import YuNetDetector

    if not isinstance(detector, YuNetDetector):
        return None, min_score
    clone = YuNetDetector(detector.card.name, dataclasses.replace(config, min_score=low), runtime=detector.runtime)
    clone._runner = detector._runner  # the loaded model, when there is one
    return clone, min_score


def identify_video(pipeline: "FacePipeline", matcher: Matcher, source: "str | os.PathLike | bytes | FrameSource",
                   options: VideoOptions | None = None, *, threshold: Threshold | float,
                   progress: Progress | None = None, name: str | None = None) -> TrackStream:
    """Open a video or animated GIF/WebP/PNG and identify the people in it.

    ``pipeline`` detects and embeds faces; ``matcher`` decides each track at
    ``threshold`` (for a gallery: ``gallery.pipeline``, ``gallery`` and
    ``gallery.resolve_threshold()`` — :meth:`facedex.Gallery.identify_video`
    does exactly that). ``source`` is a path, the file's bytes, or a
    :class:`~facedex.media.video.FrameSource` (e.g.
    :class:`~facedex.media.video.ArraySource` for frames you decoded yourself).
    The file is opened, checked and its first frame decoded before this
    returns, so an unusable input raises a :class:`facedex.errors.MediaError`
    here, with a message that says why.

    >>> stream = gallery.identify_video("clip.mp4")            # doctest: +SKIP
    >>> for track in stream:                                   # as each track ends
    ...     print(track.track, track.name or "unknown", track.first_seen, track.last_seen)
    >>> result = gallery.identify_video("clip.mp4").result()   # or everything at once
    """
    options = options or VideoOptions()
    if isinstance(source, FrameSource):
        frames = source
    elif isinstance(source, (str, os.PathLike, bytes, bytearray, memoryview)):
        frames = open_video(source, name=name, max_pixels=options.max_pixels)
    else:
        raise MediaError(name or "<input>", f"unsupported video input type {type(source).__name__}; give a path, "
                                            "bytes, or a facedex.media.video.ArraySource of frames")
    return TrackStream(pipeline, matcher, frames, options, threshold, progress)
