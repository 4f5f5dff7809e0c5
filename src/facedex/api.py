"""The public API: :class:`Gallery` and :func:`detect`.

>>> import facedex
>>> g = facedex.Gallery.open("my.gallery", create=True)
>>> report = g.enroll("people/")            # people/<Name>/*.jpg
>>> g.calibrate(fpir=0.01)                  # optional, recommended
>>> for face in g.identify("photo.jpg"):
...     print(face.name or "unknown", face.similarity)
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from . import models
from .errors import (
    ConfigError,
    FacedexError,
    MultipleFacesError,
    NoFaceError,
)
from .faces.detect import DetectorConfig, YuNetDetector
from .gallery.store import (
    FaceRecord,
    GalleryStore,
    PersonInfo,
    SourceRecord,
    clean_name,
)
from .identify import Decision, Identifier
from .identify import calibrate as calibrate_scores
from .media import (
    IMAGE_SUFFIXES,
    ImageInput,
    decode_image,
    item_name,
    list_images,
    load_image,
    read_file,
)
from .pipeline import FacePipeline, chunked
from .types import (
    EnrollItem,
    EnrollReport,
    Face,
    Identification,
    ImageResult,
    Threshold,
)

log = logging.getLogger(__name__)

#: How enrollment treats an image with several faces.
MULTIPLE_POLICIES = ("reject", "largest")


@dataclass
class _Pending:
    person: str
    path: str
    data: bytes | None = None
    sha256: str = ""
    image: np.ndarray | None = None


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
        Left out, the gallery's own embedder is used.
        """
        if isinstance(embedder, models.ModelCard):
            card = embedder
        elif embedder is not None:
            card = models.resolve_card(embedder, "embedder")
        else:
            card = None
        p = Path(path).expanduser()
        if card is None and not p.exists():
            card = models.get_card(models.DEFAULT_EMBEDDER)
        store = GalleryStore.open(p, create=create, embedder_card=card.to_dict() if card else None)
        if card is None:
            stored = models.ModelCard.from_dict(store.embedder_card())
            registered = models.CARDS.get(stored.name)
            card = registered if registered is not None and registered.id == stored.id else stored
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
        changed a lot since calibration."""
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
            default = 0.5
        return Threshold(float(default), "default", {"embedder": self.embedder_card.name})

    def set_threshold(self, value: float) -> Threshold:
        """Fix the threshold by hand (method ``"manual"``)."""
        if not -1.0 <= float(value) <= 1.0:
            raise ConfigError(f"a cosine-similarity threshold must be in [-1, 1], got {value}")
        t = Threshold(float(value), "manual", {"set_at": time.time()})
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
    def _plan(self, source, person: str | None) -> tuple[list[_Pending], list[EnrollItem]]:
        plan: list[_Pending] = []
        failed: list[EnrollItem] = []
        if person is not None:
            try:
                person = clean_name(person)
            except FacedexError as err:
                return [], [EnrollItem(str(source), str(person), "failed", str(err))]
            sources = [source] if isinstance(source, (str, os.PathLike, bytes, np.ndarray)) else list(source)
            for s in sources:
                if isinstance(s, (str, os.PathLike)) and Path(s).is_dir():
                    found = [_Pending(person, str(p)) for p in list_images(Path(s))]
                    if not found:
                        failed.append(EnrollItem(str(s), person, "failed", f"{s}: no image files in this folder"))
                    plan += found
                elif isinstance(s, (str, os.PathLike)):
                    plan.append(_Pending(person, str(s)))
                else:
                    pending = _Pending(person, item_name(s))
                    try:
                        pending.image = load_image(s)
                        pending.sha256 = hashlib.sha256(np.ascontiguousarray(pending.image).tobytes()).hexdigest()
                    except FacedexError as err:
                        failed.append(EnrollItem(pending.path, person, "failed", str(err)))
                        continue
                    plan.append(pending)
            return plan, failed
        root = Path(source)
        if not root.exists():
            return [], [EnrollItem(str(root), "", "failed", f"{root}: no such folder")]
        if not root.is_dir():
            return [], [EnrollItem(str(root), "", "failed",
                                   f"{root}: not a folder; give a folder of person folders, or name the person")]
        try:
            entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
        except OSError as err:
            return [], [EnrollItem(str(root), "", "failed", f"{root}: cannot list ({err.strerror})")]
        for entry in entries:
            if entry.is_dir():
                try:
                    name = clean_name(entry.name)
                except FacedexError as err:
                    failed.append(EnrollItem(str(entry), entry.name, "failed", str(err)))
                    continue
                images = list_images(entry)
                if not images:
                    failed.append(EnrollItem(str(entry), name, "failed", f"{entry}: no image files in this person folder"))
                plan += [_Pending(name, str(p)) for p in images]
            elif entry.suffix.lower() in IMAGE_SUFFIXES:
                failed.append(EnrollItem(str(entry), "", "failed",
                                         f"{entry}: image is not inside a person folder (expected {root}/<Name>/...)"))
        return plan, failed

    def enroll(
        self,
        source: str | os.PathLike | ImageInput | Sequence[ImageInput],
        person: str | None = None,
        *,
        multiple: str = "reject",
        batch_size: int = 32,
        progress: Callable[[EnrollItem, int, int], None] | None = None,
    ) -> EnrollReport:
        """Add faces to the gallery.

        Without ``person``, ``source`` is a folder of person folders
        (``source/<Name>/*.jpg``, searched recursively). With ``person``, it is
        an image, a folder of images, or a list of them, all of that person.

        Incremental: an image whose content is already enrolled for that person
        is skipped. Each enrollment image must show exactly one face; one with
        no face is reported, one with several is reported unless
        ``multiple="largest"``. Records are committed in batches, each in one
        transaction. Never raises for a bad item: see the report.
        ``progress(item, done, total)`` is called after each item.
        """
        if multiple not in MULTIPLE_POLICIES:
            raise ConfigError(f"multiple must be one of {MULTIPLE_POLICIES}, got {multiple!r}")
        plan, items = self._plan(source, person)
        total = len(plan) + len(items)
        if progress:
            for n, it in enumerate(items, 1):
                progress(it, n, total)
        seen: dict[tuple[str, str], str] = {}
        for batch in chunked(plan, batch_size):
            done = self._enroll_batch(batch, multiple, seen)
            if progress:
                for it in done:
                    items.append(it)
                    progress(it, len(items), total)
            else:
                items += done
        return EnrollReport(tuple(items))

    def _enroll_batch(self, batch: list[_Pending], multiple: str,
                      seen: dict[tuple[str, str], str]) -> list[EnrollItem]:
        results: dict[int, EnrollItem] = {}
        ready: list[int] = []
        for i, p in enumerate(batch):
            try:
                if p.image is None:
                    p.data = read_file(p.path)
                    p.sha256 = hashlib.sha256(p.data).hexdigest()
                key = (p.person, p.sha256)
                if key in seen:
                    results[i] = EnrollItem(p.path, p.person, "skipped", f"same content as {seen[key]}")
                    continue
                if self._store.has_source(p.person, p.sha256):
                    results[i] = EnrollItem(p.path, p.person, "skipped", "already enrolled")
                    continue
                if p.image is None:
                    p.image = decode_image(p.data, p.path)
                    p.data = None
                seen[key] = p.path
                ready.append(i)
            except FacedexError as err:
                results[i] = EnrollItem(p.path, p.person, "failed", str(err))
        if ready:
            images = [batch[i].image for i in ready]
            detections = self.pipeline.detector.detect_batch(images)
            chosen: list[tuple[int, Face]] = []
            for i, faces in zip(ready, detections):
                p = batch[i]
                try:
                    chosen.append((i, self._pick_face(p.path, faces, multiple)))
                except FacedexError as err:
                    results[i] = EnrollItem(p.path, p.person, "failed", str(err))
            crops = [self.pipeline.embedder.align(batch[i].image, f) for i, f in chosen]
            embeddings = self.pipeline.embedder.embed_crops(crops)
            records = []
            for (i, f), emb in zip(chosen, embeddings):
                p = batch[i]
                records.append(SourceRecord(p.person, p.path, p.sha256,
                                            [FaceRecord(f.box, f.landmarks, f.score, emb)]))
                results[i] = EnrollItem(p.path, p.person, "added", None, 1)
            if records:
                self._store.add_sources(records, self.embedder_card.id)
        for p in batch:
            p.image = None
        return [results[i] for i in range(len(batch))]

    @staticmethod
    def _pick_face(item: str, faces: list[Face], multiple: str) -> Face:
        if not faces:
            raise NoFaceError(item, "no face found (faces smaller than the minimum size are ignored)")
        if len(faces) == 1:
            return faces[0]
        if multiple == "largest":
            return max(faces, key=lambda f: f.area)
        raise MultipleFacesError(
            item, f"{len(faces)} faces found; an enrollment image must show one person "
            "(crop it, or use --multiple largest to take the largest face)"
        )

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
        aggregate faces themselves, such as video tracks)."""
        thr = self.threshold.value if threshold is None else float(threshold)
        emb = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.embedder_card.embedding_dim or -1)
        return self._fitted_identifier().decide(emb, thr) if len(emb) else []

    def identify_faces(self, image: np.ndarray, faces: Sequence[Face], *,
                       threshold: float | None = None) -> list[Identification]:
        """Identify already-detected faces of a decoded RGB image."""
        thr = self.threshold.value if threshold is None else float(threshold)
        emb = self.pipeline.embed_faces(image, faces)
        decisions = self.decide(emb, threshold=thr)
        return [Identification(f, d.name, d.similarity, d.candidates, thr) for f, d in zip(faces, decisions)]

    def identify(self, image: ImageInput, *, threshold: float | None = None) -> list[Identification]:
        """Every face in one image with a decision: a person, or ``name=None`` (unknown).

        Raises a :class:`facedex.errors.MediaError` for an unreadable input.
        """
        rgb = load_image(image)
        faces = self.pipeline.detector.detect(rgb)
        return self.identify_faces(rgb, faces, threshold=threshold)

    def identify_many(self, inputs: Iterable[ImageInput], *, threshold: float | None = None,
                      batch_size: int = 16) -> Iterator[ImageResult]:
        """Identify each input in turn; a bad input yields a result with ``error``
        set and the batch carries on."""
        thr = self.threshold.value if threshold is None else float(threshold)
        for batch in chunked(inputs, batch_size):
            decoded: list[tuple[str, np.ndarray | None, str | None]] = []
            for src in batch:
                name = item_name(src)
                try:
                    decoded.append((name, load_image(src), None))
                except FacedexError as err:
                    decoded.append((name, None, str(err)))
            good = [d[1] for d in decoded if d[1] is not None]
            detections = iter(self.pipeline.detector.detect_batch(good))
            for name, rgb, err in decoded:
                if rgb is None:
                    yield ImageResult(name, (), err)
                    continue
                faces = next(detections)
                yield ImageResult(name, tuple(self.identify_faces(rgb, faces, threshold=thr)), None)


    def identify_video(self, source, options=None, *, threshold: float | None = None, progress=None):
        """People in a video or animated GIF: a ``TrackStream`` (iterate it for
        tracks as they end, or call ``.result()`` for a ``VideoResult``), one
        decision per track at this gallery's threshold. Raises
        :class:`facedex.errors.MediaError` for an unusable input. See docs/video.md."""
        from .video import identify_video

        return identify_video(self, source, options, threshold=threshold, progress=progress)


@functools.lru_cache(maxsize=4)
def _detector(config: DetectorConfig, runtime: str | None) -> YuNetDetector:
    return YuNetDetector(models.DEFAULT_DETECTOR, config, runtime)


def detect(image: ImageInput, *, min_face: float = 20.0, score_threshold: float = 0.6,
           max_side: int = 1280, runtime: str | None = None) -> list[Face]:
    """Every face in an image (path, bytes, PIL image or RGB array), best score first."""
    cfg = DetectorConfig(score_threshold=score_threshold, min_face=min_face, max_side=max_side)
    return _detector(cfg, runtime).detect(load_image(image))


__all__ = ["Gallery", "detect", "list_images", "MULTIPLE_POLICIES"]
