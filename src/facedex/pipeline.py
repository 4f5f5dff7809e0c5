"""Image → faces → aligned crops → embeddings, batched across images.

:class:`FacePipeline` is what enrollment, identification and evaluation share:
one detector and one embedder, loaded lazily and once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from . import models
from .embed import Embedder, make_embedder
from .faces.detect import DetectorConfig, YuNetDetector, make_detector
from .media import ImageInput, load_image
from .types import Face

log = logging.getLogger(__name__)


#: ``select(image, faces) -> faces to keep`` narrows the faces of one image.
FaceSelector = Callable[[np.ndarray, list[Face]], Iterable[Face]]


@dataclass(frozen=True)
class AnalyzedFace:
    face: Face
    embedding: np.ndarray  # unit length, float32


class FacePipeline:
    """Detector + aligner + embedder.

    ``detector`` / ``embedder`` are registry names (or, for the embedder, a
    card or a path to an exported model); ``runtime`` selects the inference
    runtime for both (see :data:`facedex.models.RUNTIMES`).
    """

    def __init__(
        self,
        detector: str = models.DEFAULT_DETECTOR,
        embedder: str | models.ModelCard = models.DEFAULT_EMBEDDER,
        *,
        detector_config: DetectorConfig | None = None,
        runtime: str | None = None,
        batch_size: int = 32,
    ):
        self.detector: YuNetDetector = make_detector(detector, config=detector_config, runtime=runtime)
        self.embedder: Embedder = make_embedder(embedder, runtime=runtime, batch_size=batch_size)
        self.batch_size = batch_size

    @property
    def embedder_id(self) -> str:
        return self.embedder.id

    def detect(self, image: ImageInput) -> list[Face]:
        return self.detector.detect(load_image(image))

    def embed_faces(self, image: np.ndarray, faces: Sequence[Face]) -> np.ndarray:
        crops = [self.embedder.align(image, f) for f in faces]
        return self.embedder.embed_crops(crops)

    def analyze(self, image: ImageInput) -> list[AnalyzedFace]:
        """Every face in one image with its embedding."""
        rgb = load_image(image)
        faces = self.detector.detect(rgb)
        emb = self.embed_faces(rgb, faces)
        return [AnalyzedFace(f, e) for f, e in zip(faces, emb)]

    def analyze_arrays(self, images: Sequence[np.ndarray],
                       select: FaceSelector | None = None) -> list[list[AnalyzedFace]]:
        """Detect in a batch of decoded images, then embed all their (selected)
        faces in batches. ``select(image, faces)`` may narrow each image's faces."""
        detections = self.detector.detect_batch(images)
        crops, owners, kept = [], [], []
        for i, (image, faces) in enumerate(zip(images, detections)):
            chosen = list(select(image, faces)) if select else faces
            kept.append(chosen)
            for f in chosen:
                crops.append(self.embedder.align(image, f))
                owners.append(i)
        emb = self.embedder.embed_crops(crops)
        out: list[list[AnalyzedFace]] = [[] for _ in images]
        k = 0
        for i, chosen in enumerate(kept):
            for f in chosen:
                out[i].append(AnalyzedFace(f, emb[k]))
                k += 1
        return out


def chunked(items: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
