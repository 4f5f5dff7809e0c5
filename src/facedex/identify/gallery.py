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
from ..gallery.templates import TemplateCache
from ..media import ImageInput, load_image
from ..pipeline import FacePipeline
from ..types import Decision, EnrollReport, Face, Identification, Threshold
from .calibrate import calibrate as calibrate_scores
from .enroll import MULTIPLE_POLICIES, Enrollment, Progress, agreement_level
from .identifier import Identifier, person_templates

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
                 detector_config: DetectorConfig | None, runtime: str | None, k: int, index: str,
                 index_params: str | None = None):
        self._store = store
        self.embedder_card = card
        self._detector_name = detector
        self._detector_config = detector_config
        self._runtime = runtime
        self._k = k
        self._index_desc = index
        self._index_params = index_params
        self._identifier: Identifier | None = None
        self._identifier_gen = -1
        self._persisted = None  # issue #16: the index kept beside the gallery, when one is used
        self._templates = TemplateCache()  # issue #19: person templates, synced by difference
        self._remote = None  # issue #16: the vector-database backend, when the gallery names one

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
        index: str = "auto",
        index_params: str | None = None,
    ) -> "Gallery":
        """Open the gallery file at ``path`` (``create=True`` makes a new one).

        ``embedder`` (a registered name, a card, or a path to an exported
        model) is recorded in a new gallery; an existing gallery refuses a
        different one with :class:`facedex.errors.EmbedderMismatchError`.
        Left out, the gallery's own embedder is used. ``index`` is a faiss
        factory string for the search index (checked here), or ``"auto"``:
        exact search for small galleries, an approximate index kept beside the
        gallery for large ones (see :mod:`facedex.gallery.index`);
        ``index_params`` its search parameters (``"nprobe=64,k_factor=8"``).
        A gallery whose search backend was set to a vector database
        (:meth:`set_search_backend`) searches there instead.
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
            if index != "auto":  # an invalid description fails here, not mid-run
                VectorIndex(card.embedding_dim or 128, index, index_params)
        except BaseException:
            store.close()
            raise
        return cls(store, card, detector=detector, detector_config=detector_config,
                   runtime=runtime, k=k, index=index, index_params=index_params)

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
        self._remove_forgotten()  # issue #16: and so may the index file or the vector database
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
                # calibrated before person templates became the evidence (facedex < 0.3): recalibrate
                details["stale"] = bool(abs(now - people_then) > max(2, 0.2 * people_then)
                                        or details.get("evidence", "max") != "template"
                                        or details.get("crowd_reference") != self.crowd_reference)
            return Threshold(float(data["value"]), data.get("method", "calibrated"), details)
        default = self.embedder_card.default_threshold
        if default is None:
            raise ConfigError(
                f"{self.path}: the embedder {self.embedder_card.name} has no default threshold and this gallery "
                f"was never calibrated; run `facedex calibrate {self.path}` (or set one with --set)")
        return Threshold(float(default), "default", {"embedder": self.embedder_card.name})

    @property
    def crowd_reference(self) -> float | None:
        """The embedder's crowding reference (``None``: no crowding penalty), see
        :mod:`facedex.identify.identifier`."""
        value = self.embedder_card.extra.get("crowd_reference")
        return None if value is None else float(value)

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
        # the gallery's own identifier (its index, templates and penalty): calibrated as identify decides,
        # and at a million faces with the approximate index rather than an exact scan
        ident = self._fitted_identifier()
        if len(ident.labels_) != len(table.labels) or not np.array_equal(ident.labels_, table.labels):
            ident = None  # changed between the two reads: an exact identifier on the table instead
        result = calibrate_scores(table.vectors, table.labels, fpir, fallback=self.embedder_card.default_threshold,
                                  seed=seed, crowd_reference=self.crowd_reference, identifier=ident)
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
            self._identifier = self._build_identifier()
            self._identifier_gen = gen
        return self._identifier

    # -- search index and backend (issue #16) ----------------------------------------------------
    def search_backend(self) -> dict:
        """The gallery's search backend: ``{"engine": "faiss"}`` (the default:
        in-process faiss) or a vector database (``{"engine": "milvus", "uri": …}``)."""
        raw = self._store.meta("search_backend")
        return json.loads(raw) if raw else {"engine": "faiss"}

    def set_search_backend(self, engine: str, **options) -> dict:
        """Search this gallery with ``engine`` from now on (every program that opens
        it): ``"faiss"`` (in-process) or ``"milvus"`` (``uri=`` a Milvus server or a
        milvus-lite file, ``collection=``…). The backend is filled from the store
        before the choice is recorded; the store stays the source of truth."""
        from ..gallery.backends import search_backend as search_engine

        search_engine(engine)  # an unknown name fails before anything changes
        before = self.search_backend()
        if self._remote is not None:
            self._remote.close()
        self._remote, self._persisted, self._identifier, self._identifier_gen = None, None, None, -1
        same = before.get("engine", "faiss") == engine and (
            engine == "faiss" or (before.get("uri") == options.get("uri") and before.get("collection") == (
                options.get("collection") or search_engine(engine).default_collection(self._store))))
        if not same:  # the old copy of the vectors would no longer follow forget: it goes first
            search_engine(before.get("engine", "faiss")).retire(self, before)
        config = search_engine(engine).configure(self, **options)
        self._store.set_meta("search_backend", json.dumps(config, sort_keys=True))
        return config

    def index_recipe(self, faces: int | None = None) -> tuple[str, str | None]:
        """``(description, params)`` of the faiss index this gallery uses at ``faces`` faces."""
        from ..gallery.index import auto_recipe

        if self._index_desc != "auto":
            return self._index_desc, self._index_params
        n = self._store.counts()["faces"] if faces is None else faces
        desc, params = auto_recipe(n)
        return desc, (self._index_params or params)

    def _build_identifier(self) -> Identifier:
        from ..gallery.index import PersistedIndex, PositionSearch, persistable

        dim = self.embedder_card.embedding_dim or 128
        backend = self.search_backend()
        if backend.get("engine", "faiss") != "faiss":
            from ..gallery.backends import search_backend as search_engine

            table = self._store.face_labels()
            if self._remote is None:
                self._remote = search_engine(backend["engine"]).open(self, backend)
            self._remote.sync(self._store, table.face_ids)
            return Identifier(k=self._k, crowd_reference=self.crowd_reference).fit_index(
                PositionSearch(self._remote, table.face_ids), table.labels, table.names, dim,
                templates=self._templates.sync(self._store, table))
        table = self._store.face_labels()
        desc, params = self.index_recipe(len(table.face_ids))
        if not persistable(desc):
            table = self._store.embeddings()
            index = VectorIndex(dim, desc, params)
            index.add(table.vectors)
            return Identifier(k=self._k, index=desc, crowd_reference=self.crowd_reference).fit_index(
                index, table.labels, table.names, dim,
                templates=person_templates(table.vectors, table.labels, len(table.names)))
        p = self._persisted
        if p is None or p.description != desc or p.params != PersistedIndex(self.path, dim, desc, params).params:
            self._persisted = p = PersistedIndex(self.path, dim, desc, params)
        p.sync(self._store, table.face_ids)
        return Identifier(k=self._k, index=desc, crowd_reference=self.crowd_reference).fit_index(
            PositionSearch(p.index, table.face_ids), table.labels, table.names, dim,
            templates=self._templates.sync(self._store, table))

    def update_index(self) -> dict | None:
        """Bring the persisted index or the vector database up to date now (after
        an enrollment, or after faces were removed by other means than
        :meth:`forget`: the index file must not keep them), so the next search
        does not pay for it; small galleries searched exactly have nothing to
        update (``None``), though an index file left beside them is brought up to date."""
        from ..gallery.index import persistable

        if self.search_backend().get("engine", "faiss") == "faiss" and not persistable(self.index_recipe()[0]):
            self._remove_forgotten()
            return None
        self._fitted_identifier()
        target = self._persisted if self._remote is None else self._remote
        return dict(target.info.changes) if target is not None and target.info is not None else None

    def _remove_forgotten(self) -> None:
        """Faces just erased from the store leave the index file beside the gallery
        and the vector database at once (whichever recipe this process uses)."""
        from ..gallery.index import PersistedIndex, index_path

        if self.search_backend().get("engine", "faiss") != "faiss":
            self._fitted_identifier()
            return
        header = PersistedIndex.read_header(index_path(self.path))
        if header is None:
            return
        if not PersistedIndex.belongs_to(header, self._store):
            PersistedIndex(self.path, 1, "Flat", None).remove_file()  # another gallery's: useless here
            return
        p = self._persisted
        if p is None or p.description != header.get("description") or p.params != header.get("params"):
            p = PersistedIndex(self.path, self.embedder_card.embedding_dim or 128, header["description"],
                               header.get("params"))
        p.sync(self._store)
        if p is not self._persisted:
            p.index = None  # not the one this process searches with: do not keep it in memory

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
        return [Identification(f, d.name, d.similarity, d.candidates, t.value, d.score) for f, d in zip(faces, decisions)]

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
