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

A face joins a track when the position agrees and the similarity reaches
``appearance_gate``, or — whatever the position — when the similarity reaches
``reacquire_similarity`` (the face jumped, or came back after an occlusion).
Pairs are assigned greedily, best score first; the score is the similarity
plus a bonus for overlap. A face that joins no track starts one. A track
unseen for more than ``max_gap`` seconds ends, and :meth:`FaceTracker.cut`
ends every track (scene cut).

Each track keeps a quality-weighted sum of its embeddings (the aggregate the
decision is made on), its best face and a thumbnail of it, and its box in
every sampled frame. Memory per track is constant apart from the box list.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

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


def thumbnail(rgb: np.ndarray, box: Sequence[float], size: int = _THUMB) -> np.ndarray:
    """A square crop around the face (1.6 x its box), at most ``size`` pixels."""
    import cv2

    x, y, w, h = box
    side = 1.6 * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    H, W = rgb.shape[:2]
    x0, y0 = int(max(0, math.floor(cx - side / 2))), int(max(0, math.floor(cy - side / 2)))
    x1, y1 = int(min(W, math.ceil(cx + side / 2))), int(min(H, math.ceil(cy + side / 2)))
    crop = rgb[y0:y1, x0:x1]
    if crop.size == 0:
        return np.zeros((size, size, 3), np.uint8)
    scale = size / max(crop.shape[:2])
    if scale < 1:
        crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(crop)


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


class FaceTracker:
    """Assigns faces of consecutive sampled frames to tracks (see the module doc).

    Per sampled frame: :meth:`plan` with the detected faces says which of them
    need an embedding; then :meth:`update` with the faces, their embeddings
    (``None`` where none was needed) and quality weights.
    """

    #: Position-only continuation needs this overlap with the predicted box, a
    #: size within this ratio, and no other face or track near.
    SURE_IOU = 0.5
    SURE_SIZE = 1.25
    #: A tracked face is embedded anyway when its quality beats the track's best by this factor.
    BETTER = 1.25

    def __init__(self, options: VideoOptions | None = None, frame_size: tuple[int, int] | None = None):
        self.options = options or VideoOptions()
        self.live: list[LiveTrack] = []
        self._next_id = 1
        self._plan: dict[int, LiveTrack] = {}
        self.frame_size = frame_size

    # -- time bookkeeping -------------------------------------------------------------------
    def _close(self, track: LiveTrack, end: float | None, reason: str) -> LiveTrack:
        """End time: the next sampled frame after the last sighting (or ``end``),
        but no later than one sample period (or the frame's own duration) after it."""
        nxt = track.next_sample if track.next_sample is not None else end
        cap = track.last_time + max(self.options.sample_period, track.last_duration)
        track.end_time = min(nxt, cap) if nxt is not None else cap
        track.end_time = max(track.end_time, track.last_time)
        track.ended = reason
        return track

    def cut(self, time: float) -> list[LiveTrack]:
        """A scene cut at ``time``: every live track ends."""
        done = [self._close(t, time, "cut") for t in self.live]
        self.live = []
        return done

    def finish(self, end_time: float) -> list[LiveTrack]:
        """The video ended at ``end_time``: every live track ends."""
        done = [self._close(t, end_time, "end") for t in self.live]
        self.live = []
        return done

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
               rgb: np.ndarray | None = None, cheap: Sequence[float] | None = None) -> list[LiveTrack]:
        """Add one sampled frame's faces; returns the tracks that ended (unseen too long).

        ``embeddings[j]`` may be ``None`` only for a face :meth:`plan` said needs
        none; ``weights`` are the faces' quality weights (:func:`face_weight`),
        ``cheap`` the same without sharpness (defaults to ``weights``)."""
        opts = self.options
        cheap = list(weights) if cheap is None else list(cheap)
        planned, self._plan = self._plan, {}
        for tr in self.live:
            if tr.next_sample is None and time > tr.last_time:
                tr.next_sample = time
        finished = [self._close(tr, None, "gap") for tr in self.live if time - tr.last_time > opts.max_gap]
        if finished:
            gone = {id(t) for t in finished}
            self.live = [t for t in self.live if id(t) not in gone]

        used_t: set[int] = set()
        used_f: set[int] = set()
        for j, tr in planned.items():
            if embeddings[j] is None and any(t is tr for t in self.live):
                used_t.add(id(tr))
                used_f.add(j)
                self._extend(tr, time, duration, faces[j], None, float(weights[j]), cheap[j], rgb)

        pairs: list[tuple[float, int, int]] = []
        for k, tr in enumerate(self.live):
            if id(tr) in used_t or tr.appearance is None:
                continue
            dt = max(time - tr.last_time, 1e-6)
            w = float(tr.last_box[2])
            pred = tr.predict(time)
            app = tr.appearance / max(float(np.linalg.norm(tr.appearance)), 1e-12)
            for j, face in enumerate(faces):
                e = embeddings[j]
                if j in used_f or e is None:
                    continue
                box = np.asarray(face.box, dtype=np.float64)
                sim = max(float(e @ app), float(e @ tr.last_embedding))
                iou = _iou(pred, box)
                centre = box[:2] + box[2:] / 2
                dist = float(np.linalg.norm(centre - (pred[:2] + pred[2:] / 2))) / max(w, box[2], 1.0)
                ratio = box[2] / max(w, 1e-6)
                near = iou >= _IOU_AGREES or (dist <= 1.0 + opts.max_shift * dt and 0.5 <= ratio <= 2.0)
                if (near and sim >= opts.appearance_gate) or sim >= opts.reacquire_similarity:
                    pairs.append((sim + 0.3 * iou + (0.1 if near else 0.0), k, j))
        pairs.sort(key=lambda p: -p[0])
        for _, k, j in pairs:
            tr = self.live[k]
            if id(tr) in used_t or j in used_f:
                continue
            used_t.add(id(tr))
            used_f.add(j)
            self._extend(tr, time, duration, faces[j], embeddings[j], float(weights[j]), cheap[j], rgb)
        for j, face in enumerate(faces):
            if j not in used_f:
                if embeddings[j] is None:
                    raise ValueError(f"face {j} has no embedding and continues no track; call plan() first")
                self.live.append(self._start(time, duration, face, embeddings[j], float(weights[j]), cheap[j], rgb))
        return finished

    def _start(self, time: float, duration: float, face: Face, e: np.ndarray, w: float, cheap: float,
               rgb: np.ndarray | None) -> LiveTrack:
        tr = LiveTrack(id=self._next_id, first_time=time, last_time=time,
                       last_box=np.asarray(face.box, dtype=np.float64), last_duration=duration, best_cheap=cheap)
        self._next_id += 1
        tr.points.append(TrackPoint(time, tuple(float(v) for v in face.box), w))
        self._embed(tr, time, face, e, w, rgb)
        return tr

    def _embed(self, tr: LiveTrack, time: float, face: Face, e: np.ndarray, w: float, rgb: np.ndarray | None) -> None:
        e64 = np.asarray(e, dtype=np.float64)
        if tr.appearance is None:
            tr.appearance = e64.copy()
            tr.sum_embedding = e64 * w
        else:
            tr.appearance = _APPEARANCE_MOMENTUM * tr.appearance + (1 - _APPEARANCE_MOMENTUM) * e64
            tr.sum_embedding += e64 * w
        tr.last_embedding = np.asarray(e, dtype=np.float32)
        tr.sum_weight += w
        tr.embedded += 1
        tr.last_embed_time = time
        if tr.best_face is None or w > tr.best_weight:
            tr.best_weight, tr.best_face, tr.best_time = w, face, time
            if rgb is not None and self.options.thumbnails:
                tr.thumbnail = thumbnail(rgb, face.box)

    def _extend(self, tr: LiveTrack, time: float, duration: float, face: Face, e: np.ndarray | None, w: float,
                cheap: float, rgb: np.ndarray | None) -> None:
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
        tr.best_cheap = max(tr.best_cheap, cheap)
        tr.points.append(TrackPoint(time, tuple(float(x) for x in face.box), w))
        if e is not None:
            self._embed(tr, time, face, e, w, rgb)
