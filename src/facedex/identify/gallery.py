"""The gallery as people use it: :class:`Gallery` — enroll, identify, calibrate, forget.

>>> import facedex
>>> g = facedex.Gallery.open("my.gallery", create=True)
>>> report = g.enroll("people/")            # people/<Name>/*.jpg
>>> g.calibrate(fpir=0.01)                  # optional, recommended
>>> for face in g.identify("photo.jpg"):
...     print(face.name or "unknown", face.similarity)

Identifying whole files (photos, GIFs, videos, folders of them) goes through
:func:`facedex.identify_paths`, which the CLI and the HTTP service call too.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from .. import models
from ..errors import ConfigError, FacedexError
from ..faces.detect import DetectorConfig
from ..gallery.index import VectorIndex
from ..gallery.store import FaceRecord, GalleryStore, PersonInfo, gallery_exists
from ..media import ImageInput, load_image
from ..pipeline import FacePipeline
from ..types import Decision, EnrollReport, Face, Identification, Threshold
from .calibrate import calibrate as calibrate_scores
from .enroll import MULTIPLE_POLICIES, Enrollment, Progress, agreement_level
from .identifier import Identifier

log = logging.getLogger(__name__)


def check_threshold(value: float, what: str = "threshold") -> float:
    """A cosine-similarity threshold must be a finite number in [-1, 1]."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(v) or not -1.0 <= v <= 1.0:
        raise ConfigError(f"{what} is a cosine similarity and must be in [-1, 1]; got {value}")
    return v


class Gallery:
    """A gallery of people: enroll faces, identify faces, forget people.

    Open with :meth:`Gallery.open`. The SQLite file is the source of truth;
    the search index is rebuilt from it whenever it changed. Models load on
    first use, so listing or forgetting people never loads them.
    """

    def __init__(self, store: GalleryStore, card: models.ModelCard, *, detector: str,
                 detector_config: DetectorConfig | None, runtime: str | None, k: int, index: str):
        self._store = store
        self.embedder_card = card
        self._detector_name = detector
        self._detector_config = detector_config
        self._runtime = runtime
        self._k = k
        self._index_desc = index
        self._identifier: Identifier | None = None
        self._identifier_gen = -1

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        create: bool = False,
        embedder: str | models.ModelCard | None = None,
        detector: str = models.DEFAULT_DETECTOR,
        detector_config: DetectorConfig | None = None,
        runtime: str | None = None,
        k: int = 64,
        index: str = "Flat",
    ) -> "Gallery":
        """Open the gallery file at ``path`` (``create=True`` makes a new one).

        ``embedder`` (a registered name, a card, or a path to an exported
        model) is recorded in a new gallery; an existing gallery refuses a
        different one with :class:`facedex.errors.EmbedderMismatchError`.
        Left out, the gallery's own embedder is used. ``index`` is a faiss
        factory string for the search index (checked here).
        """
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if isinstance(embedder, models.ModelCard):
            card = embedder
        elif embedder is not None:
            card = models.resolve_card(embedder, "embedder")
        else:
            card = None
        p = Path(path).expanduser()
        if card is None and create and not gallery_exists(p):
            card = models.get_card(models.DEFAULT_EMBEDDER)
        store = GalleryStore.open(p, create=create, embedder_card=card.to_dict() if card else None)
        try:
            if card is None:
                stored = models.ModelCard.from_dict(store.embedder_card())
                registered = models.CARDS.get(stored.name)
                card = registered if registered is not None and registered.id == stored.id else stored
            VectorIndex(card.embedding_dim or 128, index)  # an invalid description fails here, not mid-run
        except BaseException:
            store.close()
            raise
        return cls(store, card, detector=detector, detector_config=detector_config,
                   runtime=runtime, k=k, index=index)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self._store.path

    @property
    def store(self) -> GalleryStore:
        return self._store

    @functools.cached_property
    def pipeline(self) -> FacePipeline:
        return FacePipeline(self._detector_name, self.embedder_card,
                            detector_config=self._detector_config, runtime=self._runtime)

    # -- people -----------------------------------------------------------------------------
    def people(self) -> list[PersonInfo]:
        return self._store.people()

    def counts(self) -> dict[str, int]:
        return self._store.counts()

    def forget(self, person: str) -> dict[str, int]:
        """Erase a person completely (rows, sources, embeddings; the file is vacuumed)."""
        removed = self._store.forget(person)
        self._identifier = None  # the in-memory index held their vectors
        self._identifier_gen = -1
        return removed

    def add_embeddings(self, person: str, embeddings: np.ndarray, embedder_id: str) -> int:
        """Add precomputed embeddings for ``person``; they must come from this
        gallery's embedder (``embedder_id`` is checked)."""
        vecs = np.asarray(embeddings, dtype=np.float32)
        vecs = vecs.reshape(1, -1) if vecs.ndim == 1 else vecs
        zeros = ((0.0, 0.0, 0.0, 0.0), ((0.0, 0.0),) * 5)
        ids = self._store.add_faces(
            person, [FaceRecord(zeros[0], zeros[1], 0.0, v) for v in vecs], embedder_id
        )
        return len(ids)

    # -- threshold ---------------------------------------------------------------------------
    @property
    def threshold(self) -> Threshold:
        """The open-set threshold in force: calibrated or set for this gallery, else
        the embedder's default. ``details["stale"]`` is true when the gallery has
        changed a lot since calibration. Raises :class:`ConfigError` when there is
        none (an embedder without a default threshold, never calibrated)."""
        raw = self._store.meta("threshold")
        if raw:
            data = json.loads(raw)
            details = dict(data.get("details", {}))
            people_then = details.get("people")
            if data.get("method") == "calibrated" and people_then:
                now = self._store.counts()["people"]
                details["stale"] = bool(abs(now - people_then) > max(2, 0.2 * people_then))
            return Threshold(float(data["value"]), data.get("method", "calibrated"), details)
        default = self.embedder_card.default_threshold
        if default is None:
            raise ConfigError(
                f"{self.path}: the embedder {self.embedder_card.name} has no default threshold and this gallery "
                f"was never calibrated; run `facedex calibrate {self.path}` (or set one with --set)")
        return Threshold(float(default), "default", {"embedder": self.embedder_card.name})

    def resolve_threshold(self, override: float | None = None) -> Threshold:
        """The threshold for one run: ``override`` when given (checked: a finite
        cosine similarity in [-1, 1]), else :attr:`threshold`. Every caller
        resolves it here, once."""
        if override is None:
            return self.threshold
        return Threshold(check_threshold(override), "override", {})

    def set_threshold(self, value: float) -> Threshold:
        """Fix the threshold by hand (method ``"manual"``)."""
        t = Threshold(check_threshold(value), "manual", {"set_at": time.time()})
        self._store.set_meta("threshold", json.dumps({"value": t.value, "method": t.method, "details": t.details}))
        return t

    def calibrate(self, fpir: float = 0.01, *, seed: int = 0) -> Threshold:
        """Set the threshold for a target false-positive identification rate,
        measured on the gallery itself (each person searched against the others);
        the value and how it was obtained are stored in the gallery."""
        table = self._store.embeddings()
        result = calibrate_scores(table.vectors, table.labels, fpir,
                                  fallback=self.embedder_card.default_threshold, seed=seed)
        details = dict(result.details, calibrated_at=time.time(), method_detail=(
            "leave-one-person-out: sampled faces searched against the gallery without their person"))
        t = Threshold(result.threshold, "calibrated", details)
        self._store.set_meta("threshold", json.dumps({"value": t.value, "method": t.method, "details": details}))
        return t

    # -- enrollment -------------------------------------------------------------------------
    def enrollment(self, *, multiple: str = "auto", batch_size: int = 32,
                   progress: Progress | None = None) -> Enrollment:
        """An :class:`~facedex.identify.enroll.Enrollment` into this gallery (run it
        with ``.run(source, person)``; its ``items`` say what finished, even after
        an interruption)."""
        try:
            fallback = self.threshold.value
        except ConfigError:
            fallback = 0.5
        return Enrollment(self._store, self.pipeline, self.embedder_card.id, multiple=multiple,
                          agree=agreement_level(self.embedder_card.extra, fallback),
                          batch_size=batch_size, progress=progress)

    def enroll(
        self,
        source: str | os.PathLike | ImageInput | Sequence[ImageInput],
        person: str | None = None,
        *,
        multiple: str = "auto",
        batch_size: int = 32,
        progress: Progress | None = None,
    ) -> EnrollReport:
        """Add faces to the gallery.

        Without ``person``, ``source`` is a folder of person folders
        (``source/<Name>/*.jpg``, searched recursively; files are images by
        content). With ``person``, it is an image, a folder of images, or a
        list of them, all of that person.

        Incremental: an image whose content is already enrolled for that person
        is skipped. An image with several faces: see ``multiple`` in
        :mod:`facedex.identify.enroll` (default ``"auto"``: the face that agrees
        with the person's other photos, else reported). Records are committed
        in batches, each in one transaction. Never raises for a bad item: see
        the report. ``progress(item, done, total)`` is called after each item.
        """
        return self.enrollment(multiple=multiple, batch_size=batch_size, progress=progress).run(source, person)

    # -- identification ---------------------------------------------------------------------
    def _fitted_identifier(self) -> Identifier:
        gen = self._store.generation
        if self._identifier is None or gen != self._identifier_gen:
            table = self._store.embeddings()
            self._identifier = Identifier(k=self._k, index=self._index_desc).fit(
                table.vectors, table.labels, table.names)
            self._identifier_gen = gen
        return self._identifier

    def decide(self, embeddings: np.ndarray, *, threshold: float | None = None) -> list[Decision]:
        """Decisions for embeddings of this gallery's embedder (for callers that
        aggregate faces themselves, such as video tracks). This is the gallery's
        side of the :class:`facedex.video.Matcher` protocol."""
        thr = self.resolve_threshold(threshold).value
        emb = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.embedder_card.embedding_dim or -1)
        return self._fitted_identifier().decide(emb, thr) if len(emb) else []

    def identify_faces(self, image: np.ndarray, faces: Sequence[Face], *,
                       threshold: float | Threshold | None = None) -> list[Identification]:
        """Identify already-detected faces of a decoded RGB image."""
        t = threshold if isinstance(threshold, Threshold) else self.resolve_threshold(threshold)
        emb = self.pipeline.embed_faces(image, faces)
        decisions = self.decide(emb, threshold=t.value)
        return [Identification(f, d.name, d.similarity, d.candidates, t.value) for f, d in zip(faces, decisions)]

    def identify(self, image: ImageInput, *, threshold: float | None = None) -> list[Identification]:
        """Every face in one image with a decision: a person, or ``name=None`` (unknown).

        Raises a :class:`facedex.errors.MediaError` for an unreadable input.
        For files, folders and videos use :func:`facedex.identify_paths`.
        """
        rgb = load_image(image)
        faces = self.pipeline.detector.detect(rgb)
        return self.identify_faces(rgb, faces, threshold=threshold)

    def identify_video(self, source, options=None, *, threshold: float | None = None, progress=None,
                       name: str | None = None):
        """People in a video or animated GIF: a ``TrackStream`` (iterate it for
        tracks as they end, or call ``.result()`` for a ``VideoResult``), one
        decision per track at this gallery's threshold. Raises
        :class:`facedex.errors.MediaError` for an unusable input. See docs/video.md."""
        from ..video.identify import identify_video

        return identify_video(self.pipeline, self, source, options, threshold=self.resolve_threshold(threshold),
                              progress=progress, name=name)

    def identify_paths(self, inputs, **kwargs):
        """:func:`facedex.identify_paths` on this gallery."""
        from .run import identify_paths

        return identify_paths(self, inputs, **kwargs)


@functools.lru_cache(maxsize=4)
def _detector(config: DetectorConfig, runtime: str | None):
    from ..faces.detect import YuNetDetector

    return YuNetDetector(models.DEFAULT_DETECTOR, config, runtime)


def detect(image: ImageInput, *, min_face: float = 20.0, min_score: float = 0.6,
           max_side: int = 1280, runtime: str | None = None) -> list[Face]:
    """Every face in an image (path, bytes, PIL image or RGB array), best score first."""
    cfg = DetectorConfig(min_score=min_score, min_face=min_face, max_side=max_side)
    return _detector(cfg, runtime).detect(load_image(image))


__all__ = ["Gallery", "detect", "check_threshold", "MULTIPLE_POLICIES", "FacedexError"]
