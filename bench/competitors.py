"""Competitor stacks run side by side with facedex in the benchmarks.

``face_recognition`` (dlib HOG detector + 5-point shape predictor + dlib
ResNet, 128-d) is used exactly as its README shows. It needs the `bench` extra
and `pip install --no-deps face_recognition` (see bench/setup.sh).
"""

from __future__ import annotations

import warnings

import numpy as np


class FaceRecognitionStack:
    """face_recognition's public API: load_image_file, face_locations, face_encodings."""

    name = "face_recognition (dlib HOG + ResNet)"

    def __init__(self, model: str = "hog", upsample: int = 1):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import face_recognition  # noqa: F401  (pkg_resources warning)
        import face_recognition as fr

        self.fr = fr
        self.model = model
        self.upsample = upsample

    def load(self, path):
        return self.fr.load_image_file(str(path))

    def all_faces(self, image: np.ndarray) -> np.ndarray:
        locs = self.fr.face_locations(image, number_of_times_to_upsample=self.upsample, model=self.model)
        if not locs:
            return np.zeros((0, 128), np.float32)
        return np.asarray(self.fr.face_encodings(image, locs), dtype=np.float32)

    def central_face(self, image: np.ndarray) -> tuple[np.ndarray, bool]:
        """The face nearest the centre; a centre box when none is found (LFW fallback)."""
        h, w = image.shape[:2]
        locs = self.fr.face_locations(image, number_of_times_to_upsample=self.upsample, model=self.model)
        fallback = not locs
        if fallback:
            # (top, right, bottom, left): the median LFW face box
            locs = [(int(0.266 * h), int(0.687 * w), int(0.759 * h), int(0.313 * w))]
        cy, cx = h / 2, w / 2
        best = min(locs, key=lambda b: ((b[0] + b[2]) / 2 - cy) ** 2 + ((b[1] + b[3]) / 2 - cx) ** 2)
        enc = self.fr.face_encodings(image, [best])[0]
        return np.asarray(enc, dtype=np.float32), fallback

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> float:
        """face_recognition compares Euclidean distances (0.6 by default); negate it."""
        return -float(np.linalg.norm(a - b))
