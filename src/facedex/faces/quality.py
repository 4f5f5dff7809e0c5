"""Face quality figures: size, sharpness, pose — computed from what detection and
alignment already produced, so they cost almost nothing.

* ``size``: the shorter side of the detector's box, in source pixels.
* ``sharpness``: variance of the Laplacian of the aligned 112x112 grey crop.
  Measured on the aligned crop, so it does not depend on the photo's size;
  LFW faces score ~150-1500, a Gaussian blur of sigma 2 px at face scale
  brings them under ~40.
* ``yaw``/``pitch``/``roll`` in degrees, estimated from the five landmarks
  with a simple geometric model (nose tip in front of the eye-mouth plane by
  0.6 inter-ocular distances). Good enough to tell frontal from profile,
  not a head-pose estimator.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..types import Face

_NOSE_DEPTH = 0.6  # nose-tip protrusion in inter-ocular distances
_FRONTAL_NOSE_T = 0.49  # nose height between eyes (0) and mouth (1) on the ArcFace template


@dataclass(frozen=True)
class Quality:
    size: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float
    score: float

    def to_dict(self) -> dict[str, float]:
        return {"size": round(self.size, 1), "sharpness": round(self.sharpness, 1), "yaw": round(self.yaw, 1),
                "pitch": round(self.pitch, 1), "roll": round(self.roll, 1), "detection_score": round(self.score, 4)}


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of an aligned RGB crop (higher is sharper)."""
    grey = cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from five landmarks (see module doc)."""
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_l, eye_r, nose, mouth_l, mouth_r = lm
    d = eye_r - eye_l
    roll = math.degrees(math.atan2(d[1], d[0]))
    # undo roll about the eye midpoint
    c, s = math.cos(-math.radians(roll)), math.sin(-math.radians(roll))
    rot = np.array([[c, -s], [s, c]])
    eyes = (eye_l + eye_r) / 2
    p = (lm - eyes) @ rot.T
    eye_dist = max(1e-6, abs(p[1, 0] - p[0, 0]))
    mouth = (p[3] + p[4]) / 2
    mid_x = mouth[0] / 2  # eye midpoint is at x = 0
    yaw = math.degrees(math.atan2((p[2, 0] - mid_x) / eye_dist, _NOSE_DEPTH))
    span = mouth[1] if abs(mouth[1]) > 1e-6 else 1e-6
    t = p[2, 1] / span
    pitch = math.degrees(math.atan2((t - _FRONTAL_NOSE_T) * span / eye_dist, _NOSE_DEPTH))
    return yaw, pitch, roll


def assess(face: Face, aligned_crop: np.ndarray) -> Quality:
    yaw, pitch, roll = pose(face.landmarks_array())
    return Quality(size=face.size, sharpness=sharpness(aligned_crop), yaw=yaw, pitch=pitch, roll=roll,
                   score=face.score)
