"""Face embedders built from a :class:`facedex.models.ModelCard`, batched.

An embedder aligns a detected face the way its model expects
(:meth:`Embedder.align`) and turns aligned crops into L2-normalised
``float32`` vectors (:meth:`Embedder.embed_crops`), so that the dot product of
two embeddings is their cosine similarity. Backends are looked up by the
card's ``backend``: ``onnx`` (SFace, exported models) and ``dlib`` (the ResNet
that ``face_recognition`` uses, optional extra ``facedex[dlib]``).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable, Sequence

import numpy as np

from . import config, models
from .errors import ConfigError, ModelError, UnknownNameError
from .faces.align import align_face
from .types import Face

log = logging.getLogger(__name__)


class Embedder:
    """Base class: a card, a batch size, and lazily loaded model state."""

    def __init__(self, card: models.ModelCard, *, runtime: str | None = None, batch_size: int = 32):
        if card.task != "embedder" or not card.embedding_dim or not card.input_size:
            raise ConfigError(f"model {card.name!r} is not an embedder card with an input size and a dimension")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.card = card
        self.runtime = runtime
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        return int(self.card.embedding_dim)

    @property
    def id(self) -> str:
        return self.card.id

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        raise NotImplementedError

    def _embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def embed_crops(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Embeddings (``N x dim``, unit length) of aligned crops."""
        if len(crops) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        w, h = self.card.input_size
        for c in crops:
            if c.shape != (h, w, 3):
                raise ConfigError(f"aligned crops must be {h}x{w}x3 for {self.card.name}, got {c.shape}")
        out = [np.asarray(self._embed_batch(crops[i : i + self.batch_size]), dtype=np.float32)
               for i in range(0, len(crops), self.batch_size)]
        emb = np.concatenate(out).reshape(len(crops), -1)
        if emb.shape[1] != self.dim:
            raise ConfigError(f"{self.card.name} produced {emb.shape[1]}-d vectors; its card says {self.dim}")
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return emb / np.maximum(norms, 1e-12)


class OnnxEmbedder(Embedder):
    """An ONNX model fed with 5-point aligned crops (SFace, models exported by `facedex train`)."""

    def __init__(self, card: models.ModelCard, **kwargs):
        super().__init__(card, **kwargs)
        self._runner: Callable[[np.ndarray], list[np.ndarray]] | None = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._runner is None:
            self._runner = models.runner_for(self.card, self.runtime or config.runtime_name())
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

    def _embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        return self._run(self._blob(crops))


class DlibEmbedder(Embedder):
    """dlib's ResNet (``face_recognition``'s model) on dlib 150x150 face chips.

    The chip is cut the way ``face_recognition`` cuts it: dlib's 5-point shape
    predictor on a face box, then ``get_face_chip`` with 25 % padding. The box
    comes from YuNet, mapped to where dlib's HOG detector would put it
    (measured on LFW: a square of 1.14 x the YuNet width around the landmarks).
    """

    def __init__(self, card: models.ModelCard, **kwargs):
        super().__init__(card, **kwargs)
        self._lock = threading.Lock()
        self._sp = None
        self._net = None

    def _load(self):
        if self._net is None:
            try:
                import dlib
            except ImportError:
                raise ModelError(
                    f"the {self.card.name} embedder needs dlib: {self.card.extra.get('install', 'pip install dlib-bin')}"
                ) from None
            net_path = models.source_path(self.card)
            models.verify(net_path, self.card.sha256, f"model {self.card.name!r}")
            sp_path = models.source_path(self.card, self.card.extra["shape_predictor"])
            models.verify(sp_path, self.card.extra["shape_predictor_sha256"], "dlib shape predictor")
            self._dlib = dlib
            self._sp = dlib.shape_predictor(str(sp_path))
            self._net = dlib.face_recognition_model_v1(str(net_path))
        return self._dlib, self._sp, self._net

    def align(self, image: np.ndarray, face: Face) -> np.ndarray:
        dlib, sp, _ = self._load()
        lm = face.landmarks_array()
        cx, cy = lm.mean(0)
        w = face.box[2]
        left, top, side = cx - 0.62 * w, cy - 0.58 * w, 1.14 * w
        rect = dlib.rectangle(int(round(left)), int(round(top)), int(round(left + side)), int(round(top + side)))
        img = np.ascontiguousarray(image, dtype=np.uint8)
        with self._lock:
            shape = sp(img, rect)
            chip = dlib.get_face_chip(img, shape, size=self.card.input_size[0], padding=0.25)
        return np.asarray(chip, dtype=np.uint8)

    def _embed_batch(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        _, _, net = self._load()
        with self._lock:
            vecs = net.compute_face_descriptor([np.ascontiguousarray(c) for c in crops])
        return np.asarray([np.asarray(v) for v in vecs], dtype=np.float32)


BACKENDS: dict[str, type[Embedder]] = {"onnx": OnnxEmbedder, "dlib": DlibEmbedder}


def make_embedder(name_or_card: str | models.ModelCard = models.DEFAULT_EMBEDDER, **kwargs) -> Embedder:
    """Build an embedder by registered name, by card, or by a path to an exported
    model (``.onnx`` with its ``.card.json``, or the card itself)."""
    card = name_or_card if isinstance(name_or_card, models.ModelCard) else models.resolve_card(name_or_card, "embedder")
    if card.backend not in BACKENDS:
        raise UnknownNameError("embedder backend", card.backend, list(BACKENDS))
    return BACKENDS[card.backend](card, **kwargs)
