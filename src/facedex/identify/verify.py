"""1:1 verification: are the people in two photos the same person?

>>> import facedex
>>> v = facedex.verify("a.jpg", "b.jpg")
>>> v.same_person, round(v.similarity, 3), v.threshold

Each photo's most prominent face (the largest) is compared; how many faces
each photo had is reported, so a group photo is never compared silently.
The threshold is the embedder's 1:1 threshold (for SFace 0.331, the
best-accuracy threshold on LFW's 10 folds), not a gallery's open-set one:
comparing two faces is a different question from searching a gallery.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import models
from ..errors import ConfigError, NoFaceError
from ..faces.detect import DetectorConfig
from ..media import ImageInput, MediaInput, item_name, load_image
from ..pipeline import FacePipeline
from ..types import Face
from .gallery import check_threshold


@dataclass(frozen=True)
class Verification:
    """The answer for a pair: ``same_person`` when ``similarity`` (cosine of the
    two faces' embeddings) reaches ``threshold``."""

    inputs: tuple[str, str]
    same_person: bool
    similarity: float
    threshold: float
    threshold_method: str
    faces: tuple[Face, Face]
    faces_found: tuple[int, int]
    embedder: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "facedex.verify/1",
            "inputs": list(self.inputs),
            "same_person": self.same_person,
            "similarity": round(float(self.similarity), 4),
            "threshold": {"value": round(float(self.threshold), 4), "method": self.threshold_method},
            "faces": [f.to_dict() for f in self.faces],
            "faces_found": list(self.faces_found),
            "embedder": self.embedder,
        }


def verify_threshold(card: models.ModelCard) -> tuple[float, str]:
    """The embedder's 1:1 threshold and where it comes from."""
    if card.verify_threshold is not None:
        return float(card.verify_threshold), "default"
    pair = ((card.extra or {}).get("clean") or {}).get("pair_threshold")
    if pair is not None:
        return float(pair), "default"
    raise ConfigError(f"the embedder {card.name} has no 1:1 threshold; give one with --threshold")


@functools.lru_cache(maxsize=4)
def _pipeline(embedder: str, config: DetectorConfig | None, runtime: str | None) -> FacePipeline:
    return FacePipeline(embedder=embedder, detector_config=config, runtime=runtime)


def _name(x) -> str:
    return x.name if isinstance(x, MediaInput) else item_name(x)


def _load(x) -> np.ndarray:
    if isinstance(x, MediaInput):
        return load_image(x.data if x.data is not None else x.path, name=x.name)
    return load_image(x)


def verify(a: ImageInput | MediaInput, b: ImageInput | MediaInput, *, threshold: float | None = None,
           embedder: str | models.ModelCard = models.DEFAULT_EMBEDDER,
           detector_config: DetectorConfig | None = None, runtime: str | None = None,
           pipeline: FacePipeline | None = None) -> Verification:
    """Compare the most prominent face of ``a`` with that of ``b``.

    Raises :class:`facedex.errors.MediaError` for an unreadable image and
    :class:`facedex.errors.NoFaceError` when one has no face.
    """
    card = embedder if isinstance(embedder, models.ModelCard) else models.resolve_card(embedder, "embedder")
    if threshold is None:
        thr, method = verify_threshold(card)
    else:
        thr, method = check_threshold(threshold), "override"
    if pipeline is None:
        pipeline = (FacePipeline(embedder=card, detector_config=detector_config, runtime=runtime)
                    if isinstance(embedder, models.ModelCard) else _pipeline(card.name, detector_config, runtime))
    chosen, found, vectors = [], [], []
    for x in (a, b):
        rgb = _load(x)
        faces = pipeline.detector.detect(rgb)
        if not faces:
            raise NoFaceError(_name(x), "no face found (faces smaller than the minimum size are ignored)")
        face = max(faces, key=lambda f: f.area)
        chosen.append(face)
        found.append(len(faces))
        vectors.append(pipeline.embed_faces(rgb, [face])[0])
    sim = float(np.dot(vectors[0], vectors[1]))
    return Verification((_name(a), _name(b)), sim >= thr, sim, thr, method, (chosen[0], chosen[1]),
                        (found[0], found[1]), pipeline.embedder_id)


__all__ = ["Verification", "verify", "verify_threshold"]
