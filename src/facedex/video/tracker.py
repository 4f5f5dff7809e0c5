"""Follow faces across sampled frames: position and appearance together.

For every sampled frame the tracker gets the detected faces, their
embeddings (unit length) and a quality weight, and assigns each face to at
most one live track:

* **position**: the track's box is moved by its recent velocity to the new
  frame's time; the face agrees with it when their IoU is at least 0.1, or
  when its centre is within ``1 + max_shift x gap`` face widths and its size
  within a factor of 2;
* **appearance**: the cosine similarity of the face to the track's recent
  appearance (a running mean of its last embeddings) and to its last face.

A face may join a track when the position agrees and the similarity reaches
``appearance_gate``, or — whatever the position — when the similarity
reaches ``reacquire_similarity`` (the face jumped, or came back after an
occlusion). Faces and tracks are paired by an optimal assignment (the
Hungarian method, :func:`scipy.optimize.linear_sum_assignment`) maximising
the summed score, the similarity plus a bonus for overlap.

**Second pass (ByteTrack's idea).** Detections whose score is between
``track_low_score`` and the detector's threshold are not faces to report on
their own, but a blurred, turned or half-hidden face often scores low for a
frame or two: after the first pass, such detections continue the tracks left
unmatched when they overlap the predicted box (IoU >= 0.3, similar size),
again by optimal assignment. They never start a track and are not embedded.

**Fragments of one person.** A track unseen for more than ``max_gap``
seconds, or cut by a scene change, is *held* for ``merge_window`` seconds
before it is final. A new track whose aggregate appearance reaches
``merge_similarity`` with a held one that ended before it began continues
it: the same track number, its evidence added (occlusions, a cut away and
back). A track's ``segments`` list the times it was on screen.

**Confirmation.** A new track is tentative until it has been seen in
``min_track_frames`` sampled frames and looks like a face (mean detection
score at least ``min_track_score``, best face quality at least
``min_track_quality``); only then does it get a number. A track that ends
tentative is dropped — a flicker, a logo, a dark or tiny crop — and counted
with the reason (:func:`drop_reason`).

Each track keeps a quality-weighted sum of its embeddings (the aggregate the
decision is made on), its best face and a thumbnail of it, and its box in
every sampled frame. Memory per track is constant apart from the box list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..faces.crop import thumbnail
from ..faces.quality import pose, sharpness
from ..types import Face
from .types import TrackPoint, VideoOptions

_APPEARANCE_MOMENTUM = 0.7  # running mean of the last few embeddings
_IOU_AGREES = 0.1
_THUMB = 160


def face_weight(face: Face, aligned: np.ndarray | None, frame_w: int, frame_h: int) -> float:
    """Quality weight of one face in [0.001, 1]: detector confidence x size x
    sharpness x frontality x how much of the face is inside the frame
    (without the aligned crop, sharpness is left out).

    * size: 1 from 64 px (shorter box side) up, falling linearly to 0.1 at 16 px;
    * sharpness (variance of the Laplacian of the aligned crop, see
      :mod:`facedex.faces.quality`): 1 from 100 up, linearly down to 0.1;
    * frontality: ``cos(yaw) x cos(pitch)`` squared, floor 0.05;
    * in frame: share of the box inside the frame, squared (a face cut by the
      frame edge has misplaced landmarks).
    """
    size_w = min(1.0, max(0.1, 0.1 + 0.9 * (face.size - 16.0) / 48.0))
    sharp_w = 1.0 if aligned is None else min(1.0, max(0.1, sharpness(aligned) / 100.0))
    yaw, pitch, _ = pose(face.landmarks_array())
    front = max(0.0, math.cos(math.radians(min(abs(yaw), 90.0))) * math.cos(math.radians(min(abs(pitch), 90.0))))
    pose_w = max(0.05, front * front)
    x, y, w, h = face.box
    inside = max(0.0, min(x + w, frame_w) - max(x, 0.0)) * max(0.0, min(y + h, frame_h) - max(y, 0.0))
    edge_w = (inside / max(w * h, 1e-6)) ** 2
    weight = float(face.score) * size_w * sharp_w * pose_w * edge_w
    return float(min(1.0, max(1e-3, weight)))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


@dataclass
class LiveTrack:
    """A track being built. Finished ones are handed to the caller to decide."""

    id: int
    first_time: float
    last_time: float
    last_box: np.ndarray
    last_duration: float
    frames: int = 1
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    points: list[TrackPoint] = field(default_factory=list)
    # appearance: every embedded face adds to these
    last_embedding: np.ndarray | None = None
    appearance: np.ndarray | None = None
    sum_embedding: np.ndarray | None = None
    sum_weight: float = 0.0
    embedded: int = 0
    last_embed_time: float = -math.inf
    best_weight: float = 0.0
    best_face: Face | None = None
    best_time: float = 0.0
    best_cheap: float = 0.0  # best quality without sharpness, over all faces (embedded or not)
    thumbnail: np.ndarray | None = None
    next_sample: float | None = None  # time of the first sampled frame after last_time
    end_time: float | None = None
    ended: str = ""
    number: int | None = None  # the public track number, given at confirmation
    segments: list[list[float]] = field(default_factory=list)  # [start, end] of each fragment on screen
    score_sum: float = 0.0  # detection scores of its confident detections
    score_n: int = 0
    low_frames: int = 0  # frames continued by a low-score detection (second pass)
    fragments: int = 1

    @property
    def confirmed(self) -> bool:
        return self.number is not None

    @property
    def mean_score(self) -> float:
        return self.score_sum / self.score_n if self.score_n else 0.0

    @property
    def aggregate(self) -> np.ndarray:
        """Quality-weighted mean embedding, unit length."""
        v = self.sum_embedding / max(self.sum_weight, 1e-12)
        n = float(np.linalg.norm(v))
        return (v / n).astype(np.float32) if n > 0 else v.astype(np.float32)

    def centre(self) -> np.ndarray:
        b = self.last_box
        return np.array([b[0] + b[2] / 2, b[1] + b[3] / 2])

    def predict(self, time: float) -> np.ndarray:
        """The box moved by the recent velocity to ``time`` (at most 1.5 widths)."""
        dt = max(time - self.last_time, 0.0)
        shift = self.velocity * dt
        lim = 1.5 * float(self.last_box[2])
        norm = float(np.linalg.norm(shift))
        if norm > lim:
            shift = shift * (lim / norm)
        pred = self.last_box.copy()
        pred[:2] += shift
        return pred


def _assign(score: np.ndarray) -> list[tuple[int, int]]:
    """Optimal one-to-one pairs ``(row, column)`` maximising the summed score;
    ``-inf`` marks pairs that are not allowed (they are never returned)."""
    if score.size == 0:
        return []
    allowed = np.isfinite(score)
    if not allowed.any():
        return []
    from scipy.optimize import linear_sum_assignment

    cost = np.where(allowed, -score, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if allowed[r, c]]


def drop_reason(track: LiveTrack, options: VideoOptions, frames_sampled: int | None = None) -> str | None:
    """Why an unknown track is not reported, or ``None`` (a named track is
    always reported: see :func:`facedex.video.identify.reportable`): ``"short"`` (seen in fewer than
    ``min_track_frames`` sampled frames — unless the whole video had fewer,
    ``frames_sampled``), ``"non_face"`` (mean detection score below
    ``min_track_score``: a logo, a pattern), ``"poor"`` (best face quality
    below ``min_track_quality``: dark, tiny or blurred throughout)."""
    need = options.min_track_frames
    if frames_sampled is not None:
        need = min(need, max(1, frames_sampled))
    if track.frames < need:
        return "short"
    if track.score_n and track.mean_score < options.min_track_score:
        return "non_face"
    if track.best_weight < options.min_track_quality:
        return "poor"
    return None


class FaceTracker:
    """Assigns faces of consecutive sampled frames to tracks (see the module doc).

    Per sampled frame: :meth:`plan` with the detected faces says which of them
    need an embedding; then :meth:`update` with the faces, their embeddings
    (``None`` where none was needed), quality weights and the low-score
    detections. :meth:`update`, :meth:`cut` and :meth:`finish` return the
    tracks that are final (no continuation can join them any more), confirmed
    or not; :func:`drop_reason` says which to report.
    """

    #: Position-only continuation needs this overlap with the predicted box, a
    #: size within this ratio, and no other face or track near.
    SURE_IOU = 0.5
    SURE_SIZE = 1.25
    #: A tracked face is embedded anyway when its quality beats the track's best by this factor.
    BETTER = 1.25
    #: Second pass: a low-score detection continues a track at this overlap with its predicted box.
    LOW_IOU = 0.3

    def __init__(self, options: VideoOptions | None = None, frame_size: tuple[int, int] | None = None):
        self.options = options or VideoOptions()
        self.live: list[LiveTrack] = []
        self.held: list[LiveTrack] = []  # ended, waiting merge_window for a continuation
        self._next_id = 1
        self._next_number = 1
        self._plan: dict[int, LiveTrack] = {}
        self.frame_size = frame_size
        self.merged = 0  # continuations joined to a held track
        self.low_used = 0  # low-score detections that continued a track

    # -- time bookkeeping -------------------------------------------------------------------
    def _close(self, track: LiveTrack, end: float | None, reason: str) -> LiveTrack:
        """End time: the next sampled frame after the last sighting (or ``end``),
        but no later than one sample period (or the frame's own duration) after it."""
        nxt = track.next_sample if track.next_sample is not None else end
        cap = track.last_time + max(self.options.sample_period, track.last_duration)
        track.end_time = min(nxt, cap) if nxt is not None else cap
        track.end_time = max(track.end_time, track.last_time)
        track.ended = reason
        if track.segments:
            track.segments[-1][1] = track.end_time
        return track

    def _retire(self, tracks: list[LiveTrack]) -> list[LiveTrack]:
        """Tracks that just ended: confirmed ones are held for a continuation
        (when ``merge_window`` > 0); a tentative one joins a held track that
        it resembles, or is final (and will be dropped)."""
        final = []
        for tr in tracks:
            if not tr.confirmed:
                target = self._merge_target(tr)
                if target is not None:
                    self._absorb(target, tr)
                    self._close(target, tr.end_time, tr.ended)
                    self.held.append(target)
                    continue
                final.append(tr)
            elif self.options.merge_window > 0:
                self.held.append(tr)
            else:
                final.append(tr)
        return final

    def _release(self, time: float) -> list[LiveTrack]:
        """Held tracks whose merge window has passed are final."""
        window = self.options.merge_window
        final = [t for t in self.held if time - t.end_time > window]
        if final:
            gone = {id(t) for t in final}
            self.held = [t for t in self.held if id(t) not in gone]
        return final

    def cut(self, time: float) -> list[LiveTrack]:
        """A scene cut at ``time``: every live track ends (and is held for a continuation)."""
        done = [self._close(t, time, "cut") for t in self.live]
        self.live = []
        return self._retire(done) + self._release(time)

    def finish(self, end_time: float, frames_sampled: int | None = None) -> list[LiveTrack]:
        """The video ended at ``end_time``: every track is final. A tentative
        track is confirmed if it fails only the length test because the whole
        video had fewer than ``min_track_frames`` sampled frames."""
        done = [self._close(t, end_time, "end") for t in self.live]
        self.live = []
        final = self._retire(done) + self.held
        self.held = []
        for tr in final:
            if not tr.confirmed and drop_reason(tr, self.options, frames_sampled) is None:
                self._confirm(tr)
        return sorted(final, key=lambda t: t.id)

    # -- one sampled frame --------------------------------------------------------------------
    def plan(self, time: float, faces: Sequence[Face], cheap: Sequence[float] | None = None) -> list[bool]:
        """Which faces need an embedding. A face needs none when it continues a
        live track unambiguously by position alone (high overlap with the
        track's predicted box, similar size, no other face or track near), the
        track already has ``min_embeddings`` embeddings, its last one is less
        than ``embed_interval`` seconds old, and this face is not clearly
        better than the track's best (``cheap``: quality without sharpness)."""
        opts = self.options
        self._plan = {}
        need = [True] * len(faces)
        if opts.embed_interval <= 0 or not faces:
            return need
        live = [t for t in self.live if time - t.last_time <= opts.max_gap]
        boxes = [np.asarray(f.box, dtype=np.float64) for f in faces]
        preds = [t.predict(time) for t in live]
        overlap = np.array([[_iou(p, b) for b in boxes] for p in preds]).reshape(len(live), len(faces))
        for k, tr in enumerate(live):
            if tr.embedded < opts.min_embeddings or time - tr.last_embed_time >= opts.embed_interval:
                continue
            row = overlap[k]
            j = int(np.argmax(row)) if row.size else -1
            if j < 0 or row[j] < self.SURE_IOU:
                continue
            if (row > _IOU_AGREES).sum() > 1 or (overlap[:, j] > _IOU_AGREES).sum() > 1:
                continue  # another face or track is near: appearance must decide
            ratio = boxes[j][2] / max(float(tr.last_box[2]), 1e-6)
            if not 1 / self.SURE_SIZE <= ratio <= self.SURE_SIZE:
                continue
            if cheap is not None and cheap[j] > self.BETTER * tr.best_cheap:
                continue
            need[j] = False
            self._plan[j] = tr
        return need

    def update(self, time: float, duration: float, faces: Sequence[Face],
               embeddings: Sequence[np.ndarray | None] | np.ndarray, weights: Sequence[float],
               rgb: np.ndarray | None = None, cheap: Sequence[float] | None = None,
               low: Sequence[Face] = (), low_weights: Sequence[float] | None = None) -> list[LiveTrack]:
        """Add one sampled frame's faces; returns the tracks that became final.

        ``embeddings[j]`` may be ``None`` only for a face :meth:`plan` said needs
        none; ``weights`` are the faces' quality weights (:func:`face_weight`),
        ``cheap`` the same without sharpness (defaults to ``weights``). ``low``
        are detections below the detector's threshold (second pass), with their
        ``low_weights``."""
        opts = self.options
        cheap = list(weights) if cheap is None else list(cheap)
        planned, self._plan = self._plan, {}
        for tr in self.live:
            if tr.next_sample is None and time > tr.last_time:
                tr.next_sample = time
        gone_tracks = [self._close(tr, None, "gap") for tr in self.live if time - tr.last_time > opts.max_gap]
        if gone_tracks:
            gone = {id(t) for t in gone_tracks}
            self.live = [t for t in self.live if id(t) not in gone]
        final = self._retire(gone_tracks)

        used_t: set[int] = set()
        used_f: set[int] = set()
        for j, tr in planned.items():
            if embeddings[j] is None and any(t is tr for t in self.live):
                used_t.add(id(tr))
                used_f.add(j)
                self._extend(tr, time, duration, faces[j], None, float(weights[j]), cheap[j], rgb)

        # first pass: confident detections, by position and appearance, optimal assignment
        tracks = [t for t in self.live if id(t) not in used_t and t.appearance is not None]
        cand = [j for j in range(len(faces)) if j not in used_f and embeddings[j] is not None]
        score = np.full((len(tracks), len(cand)), -np.inf)
        for k, tr in enumerate(tracks):
            dt = max(time - tr.last_time, 1e-6)
            w = float(tr.last_box[2])
            pred = tr.predict(time)
            app = tr.appearance / max(float(np.linalg.norm(tr.appearance)), 1e-12)
            for c, j in enumerate(cand):
                e = embeddings[j]
                box = np.asarray(faces[j].box, dtype=np.float64)
                sim = max(float(e @ app), float(e @ tr.last_embedding))
                iou = _iou(pred, box)
                centre = box[:2] + box[2:] / 2
                dist = float(np.linalg.norm(centre - (pred[:2] + pred[2:] / 2))) / max(w, box[2], 1.0)
                ratio = box[2] / max(w, 1e-6)
                near = iou >= _IOU_AGREES or (dist <= 1.0 + opts.max_shift * dt and 0.5 <= ratio <= 2.0)
                if (near and sim >= opts.appearance_gate) or sim >= opts.reacquire_similarity:
                    score[k, c] = sim + 0.3 * iou + (0.1 if near else 0.0)
        for k, c in _assign(score):
            tr, j = tracks[k], cand[c]
            used_t.add(id(tr))
            used_f.add(j)
            self._extend(tr, time, duration, faces[j], embeddings[j], float(weights[j]), cheap[j], rgb)

        # second pass: low-score detections continue the tracks left, by overlap alone
        if low:
            lw = list(low_weights) if low_weights is not None else [0.0] * len(low)
            rest = [t for t in self.live if id(t) not in used_t]
            iou_m = np.full((len(rest), len(low)), -np.inf)
            for k, tr in enumerate(rest):
                pred = tr.predict(time)
                for j, face in enumerate(low):
                    box = np.asarray(face.box, dtype=np.float64)
                    iou = _iou(pred, box)
                    ratio = box[2] / max(float(tr.last_box[2]), 1e-6)
                    if iou >= self.LOW_IOU and 2 / 3 <= ratio <= 1.5:
                        iou_m[k, j] = iou
            for k, j in _assign(iou_m):
                tr = rest[k]
                used_t.add(id(tr))
                tr.low_frames += 1
                self.low_used += 1
                self._extend(tr, time, duration, low[j], None, float(lw[j]), float(lw[j]), rgb, confident=False)

        for j, face in enumerate(faces):
            if j not in used_f:
                if embeddings[j] is None:
                    raise ValueError(f"face {j} has no embedding and continues no track; call plan() first")
                self.live.append(self._start(time, duration, face, embeddings[j], float(weights[j]), cheap[j], rgb))
        for tr in list(self.live):
            if not tr.confirmed and drop_reason(tr, opts) is None:
                self._confirm(tr)
        return final + self._release(time)

    # -- confirmation and fragments --------------------------------------------------------------
    def _confirm(self, tr: LiveTrack) -> None:
        """A tentative track passed the tests: it continues a held track it
        resembles (same number), or gets the next number."""
        target = self._merge_target(tr)
        if target is not None:
            self._absorb(target, tr)
            self.live = [target if t is tr else t for t in self.live]
            return
        self.number(tr)

    def number(self, tr: LiveTrack) -> int:
        """Give ``tr`` the next public track number (once)."""
        if tr.number is None:
            tr.number = self._next_number
            self._next_number += 1
        return tr.number

    def _merge_target(self, tr: LiveTrack) -> LiveTrack | None:
        """The held track, ended before ``tr`` began, whose aggregate appearance
        is most similar to ``tr``'s, if that reaches ``merge_similarity``."""
        opts = self.options
        if opts.merge_window <= 0 or not self.held or tr.sum_embedding is None:
            return None
        agg = tr.aggregate
        best, best_sim = None, opts.merge_similarity
        for h in self.held:
            if h.end_time is None or h.end_time > tr.first_time + 1e-6 or tr.first_time - h.end_time > opts.merge_window:
                continue
            sim = float(agg @ h.aggregate)
            if sim >= best_sim:
                best, best_sim = h, sim
        return best

    def _absorb(self, target: LiveTrack, tr: LiveTrack) -> None:
        """``target`` (held) continues with ``tr``'s frames and evidence."""
        self.held = [h for h in self.held if h is not target]
        self.merged += 1
        target.points.extend(tr.points)
        target.segments.extend(tr.segments)
        target.frames += tr.frames
        target.last_time, target.last_box, target.last_duration = tr.last_time, tr.last_box, tr.last_duration
        target.velocity = tr.velocity
        target.next_sample = tr.next_sample
        target.end_time, target.ended = None, ""
        target.appearance = tr.appearance
        target.last_embedding = tr.last_embedding
        target.sum_embedding = target.sum_embedding + tr.sum_embedding
        target.sum_weight += tr.sum_weight
        target.embedded += tr.embedded
        target.last_embed_time = tr.last_embed_time
        target.best_cheap = max(target.best_cheap, tr.best_cheap)
        if tr.best_weight > target.best_weight:
            target.best_weight, target.best_face, target.best_time = tr.best_weight, tr.best_face, tr.best_time
            target.thumbnail = tr.thumbnail
        target.score_sum += tr.score_sum
        target.score_n += tr.score_n
        target.low_frames += tr.low_frames
        target.fragments += tr.fragments

    # -- building tracks -------------------------------------------------------------------------
    def _start(self, time: float, duration: float, face: Face, e: np.ndarray, w: float, cheap: float,
               rgb: np.ndarray | None) -> LiveTrack:
        tr = LiveTrack(id=self._next_id, first_time=time, last_time=time,
                       last_box=np.asarray(face.box, dtype=np.float64), last_duration=duration, best_cheap=cheap)
        self._next_id += 1
        tr.segments.append([time, time])
        tr.points.append(TrackPoint(time, tuple(float(v) for v in face.box), w))
        tr.score_sum, tr.score_n = float(face.score), 1
        self._embed(tr, time, face, e, w, rgb, cheap)
        return tr

    def _embed(self, tr: LiveTrack, time: float, face: Face, e: np.ndarray, w: float, rgb: np.ndarray | None,
               cheap: float | None = None) -> None:
        """Add an embedding: to the running appearance, and to the aggregate with
        the face's weight without sharpness (``cheap``) to the power
        ``quality_power``; ``w`` (with sharpness) picks the best face."""
        e64 = np.asarray(e, dtype=np.float64)
        wd = max(1e-3, w if cheap is None else cheap) ** self.options.quality_power
        if tr.appearance is None:
            tr.appearance = e64.copy()
            tr.sum_embedding = e64 * wd
        else:
            tr.appearance = _APPEARANCE_MOMENTUM * tr.appearance + (1 - _APPEARANCE_MOMENTUM) * e64
            tr.sum_embedding += e64 * wd
        tr.last_embedding = np.asarray(e, dtype=np.float32)
        tr.sum_weight += wd
        tr.embedded += 1
        tr.last_embed_time = time
        if tr.best_face is None or w > tr.best_weight:
            tr.best_weight, tr.best_face, tr.best_time = w, face, time
            if rgb is not None and self.options.thumbnails:
                tr.thumbnail = thumbnail(rgb, face.box, _THUMB)

    def _extend(self, tr: LiveTrack, time: float, duration: float, face: Face, e: np.ndarray | None, w: float,
                cheap: float, rgb: np.ndarray | None, confident: bool = True) -> None:
        box = np.asarray(face.box, dtype=np.float64)
        dt = max(time - tr.last_time, 1e-6)
        centre = box[:2] + box[2:] / 2
        v = (centre - tr.centre()) / dt
        tr.velocity = v if tr.frames == 1 else 0.5 * tr.velocity + 0.5 * v
        tr.last_box = box
        tr.last_time = time
        tr.last_duration = duration
        tr.next_sample = None
        tr.frames += 1
        if tr.segments:
            tr.segments[-1][1] = time
        if confident:
            tr.best_cheap = max(tr.best_cheap, cheap)
            tr.score_sum += float(face.score)
            tr.score_n += 1
        tr.points.append(TrackPoint(time, tuple(float(x) for x in face.box), w))
        if e is not None:
            self._embed(tr, time, face, e, w, rgb, cheap)
