"""Face embedders built from a :class:`facedex.models.ModelCard`, batched.

An embedder takes aligned face crops (``HxWx3`` RGB ``uint8``, the card's
input size) and returns L2-normalised ``float32`` vectors, so that the dot
product of two embeddings is their cosine similarity.
"""

from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from . import config, models
from .errors import ConfigError
from .faces.align import align_face
from .types import Face

log = logging.getLogger(__name__)


class Embedder:
    """Runs an embedding model described by a card. Loads the model lazily, once."""

    def __init__(self, card: str | models.ModelCard = models.DEFAULT_EMBEDDER, *,
                 runtime: str | None = None, batch_size: int = 32):
        self.card = card if isinstance(card, models.ModelCard) else models.get_card(card, "embedder")
        if self.card.task != "embedder" or not self.card.embedding_dim or not self.card.input_size:
            raise ConfigError(f"model {self.card.name!r} is not an embedder card with an input size and a dimension")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.runtime = runtime
        self.batch_size = batch_size
        self._runner: Callable[[np.ndarray], list[np.ndarray]] | None = None

    @property
    def dim(self) -> int:
        return int(self.card.embedding_dim)

    @property
    def id(self) -> str:
        return self.card.id

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._runner is None:
            rt = self.runtime or config.runtime_name()
            if self.card.name in models.CARDS and models.CARDS[self.card.name] == self.card:
                self._runner = models.cached_runner(self.card.name, rt)
            else:
                self._runner = models.make_runner(models.prepared_path(self.card), rt)
        return self._runner(batch)[0]

    def _blob(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        x = np.stack(crops).astype(np.float32)  # N, H, W, 3 (RGB)
        if self.card.color_order.upper() == "BGR":
            x = x[..., ::-1]
        mean = np.asarray(self.card.mean, dtype=np.float32)
        std = np.asarray(self.card.std, dtype=np.float32)
        if mean.any() or (std != 1).any():
            x = (x - mean) / std
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The aligned crop this embedder expects for one detected face."""
        return align_face(image, face.landmarks_array(), tuple(self.card.input_size), self.card.template)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings (``N x dim``, unit length) of aligned crops."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        w, h = self.card.input_size
        for c in crops:
            if c.shape != (h, w, 3):
                raise ConfigError(f"aligned crops must be {h}x{w}x3 for {self.card.name}, got {c.shape}")
        out = []
        for start in range(0, len(crops), self.batch_size):
            out.append(np.asarray(self._run(self._blob(crops[start : start + self.batch_size])), dtype=np.float32))
        emb = np.concatenate(out).reshape(len(crops), -1)
        if emb.shape[1] != self.dim:
            raise ConfigError(f"{self.card.name} produced {emb.shape[1]}-d vectors; its card says {self.dim}")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)


def make_embedder(name_or_card: str | models.ModelCard = models.DEFAULT_EMBEDDER, **kwargs) -> Embedder:
    """Build an embedder by registered name, by card, or by a path to an exported
    model directory / ``.onnx`` file with its card (see :func:`facedex.models.load_card`)."""
    if isinstance(name_or_card, models.ModelCard):
        return Embedder(name_or_card, **kwargs)
    card = models.resolve_card(name_or_card, "embedder")
    return Embedder(card, **kwargs)
