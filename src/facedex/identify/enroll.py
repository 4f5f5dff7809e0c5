"""Enrollment: images of named people → faces in the gallery.

A folder of person folders (``source/<Name>/…``) or, with a person's name,
images or folders of that one person. Images are read and hashed once
(re-running skips content already enrolled for that person), decoded once,
detected in batches, and each image's face is embedded and stored — one
transaction per batch, so a kill leaves only whole records.

Which face of an image is the person's (``multiple``):

``"auto"`` (default)
    One face: it. Several: the one face that agrees with the person's other
    photos — its similarity to the person's enrolled faces (their mean, the
    "consensus") reaches the embedder's *agreement* level while no other face
    of the image does. When the person has no single-face photo, faces that
    recur across the person's several-face photos are the reference instead.
    With no other photo of the person at all, the largest face, when its box
    is at least twice the area of the next one (a portrait with bystanders).
    Otherwise the image is reported (``face.multiple``) and nothing is guessed.
``"largest"``
    The largest face.
``"reject"``
    Several faces: reported, not enrolled.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from ..errors import ConfigError, FacedexError, MultipleFacesError, NoFaceError
from ..gallery.store import FaceRecord, GalleryStore, SourceRecord
from ..media import ImageInput, decode_image, item_name, list_folder, load_image, read_file
from ..media.inputs import MediaInput, classify_file
from ..names import person_key, person_name
from ..pipeline import chunked
from ..types import EnrollItem, EnrollReport, Face

if TYPE_CHECKING:  # pragma: no cover
    from ..pipeline import FacePipeline

log = logging.getLogger(__name__)

#: How enrollment treats an image with several faces (see the module doc).
MULTIPLE_POLICIES = ("auto", "largest", "reject")

#: With no other photo of the person, the largest face is taken only when its box
#: is at least this many times the area of the next one.
DOMINANT_AREA_RATIO = 2.0

#: Decoded pixels held at once before they are detected, embedded and released
#: (48 MP: about 150 MB of RGB; a batch of 32 phone photos would be 1.5 GB).
PIXEL_BUDGET = 48_000_000

#: ``progress(item, done, total)`` after each item.
Progress = Callable[[EnrollItem, int, int], None]


@dataclass
class _Pending:
    person: str
    path: str
    data: bytes | None = None
    sha256: str = ""
    image: np.ndarray | None = None


@dataclass
class _Ambiguous:
    """An image with several faces, embedded, waiting for the person's reference."""

    person: str
    path: str
    sha256: str
    faces: list[Face]
    embeddings: np.ndarray


@dataclass
class _Plan:
    pending: list[_Pending] = field(default_factory=list)
    items: list[EnrollItem] = field(default_factory=list)  # failed or ignored before any work
    names: list[str] = field(default_factory=list)


def agreement_level(card_extra: dict, fallback: float) -> float:
    """Similarity at which a face "agrees" with a person's consensus: the
    embedder's measured outlier threshold (``facedex clean`` statistics), else
    ``fallback`` (the gallery's threshold)."""
    stats = (card_extra or {}).get("clean") or {}
    value = stats.get("outlier_threshold")
    return float(value) if value is not None else float(fallback)


class Enrollment:
    """One enrollment run into ``store`` with ``pipeline`` (see the module doc).

    ``agree`` is the similarity at which a face agrees with a person's
    consensus (see :func:`agreement_level`).
    """

    def __init__(self, store: GalleryStore, pipeline: "FacePipeline", embedder_id: str, *,
                 multiple: str = "auto", agree: float = 0.46, batch_size: int = 32,
                 progress: Progress | None = None):
        if multiple not in MULTIPLE_POLICIES:
            raise ConfigError(f"multiple must be one of {', '.join(MULTIPLE_POLICIES)}; got {multiple!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.store = store
        self.pipeline = pipeline
        self.embedder_id = embedder_id
        self.multiple = multiple
        self.agree = float(agree)
        self.batch_size = batch_size
        self.progress = progress
        self.items: list[EnrollItem] = []
        self.warnings: list[str] = []
        self._total = 0
        self._seen: dict[tuple[str, str], str] = {}
        self._ambiguous: list[_Ambiguous] = []

    # -- the run ---------------------------------------------------------------------------------
    def run(self, source, person: str | None = None) -> EnrollReport:
        """Enroll ``source`` (see :meth:`facedex.Gallery.enroll`). Never raises
        for a bad item; a KeyboardInterrupt propagates after the finished
        batches were stored (``self.items`` says what was done)."""
        plan = self.plan(source, person)
        self._total = len(plan.pending) + len(plan.items)
        self._name_warnings(plan.names)
        for it in plan.items:
            self._report(it)
        for batch in chunked(plan.pending, self.batch_size):
            for it in self._batch(batch):
                self._report(it)
        for it in self._resolve_ambiguous():
            self._report(it)
        return self.report()

    def report(self) -> EnrollReport:
        return EnrollReport(tuple(self.items), tuple(self.warnings))

    def _report(self, item: EnrollItem) -> None:
        self.items.append(item)
        if self.progress:
            self.progress(item, len(self.items), self._total)

    # -- planning --------------------------------------------------------------------------------
    def plan(self, source, person: str | None) -> _Plan:
        plan = _Plan()
        if person is not None:
            try:
                person = person_name(person)
            except FacedexError as err:
                plan.items.append(_failed(str(source), str(person), err))
                return plan
            plan.names.append(person)
            single = (str, os.PathLike, bytes, np.ndarray, MediaInput)
            sources = [source] if isinstance(source, single) else list(source)
            for s in sources:
                self._plan_one(plan, s, person)
            return plan
        root = Path(source)
        if not root.exists():
            plan.items.append(EnrollItem(str(root), "", "failed", f"{root}: no such folder", code="media.not_found"))
            return plan
        if not root.is_dir():
            plan.items.append(EnrollItem(str(root), "", "failed",
                                         f"{root}: not a folder; give a folder of person folders, or name the person "
                                         "(--person NAME)", code="media.not_found"))
            return plan
        try:
            entries = sorted(root.iterdir())
        except OSError as err:
            plan.items.append(EnrollItem(str(root), "", "failed", f"{root}: cannot list ({err.strerror or err})",
                                         code="media.not_found"))
            return plan
        for entry in entries:
            if entry.name.startswith("."):
                plan.items.append(EnrollItem(str(entry), "", "ignored", "hidden (its name starts with '.')"))
            elif entry.is_dir():
                try:
                    name = person_name(entry.name)
                except FacedexError as err:
                    plan.items.append(_failed(str(entry), entry.name, err))
                    continue
                plan.names.append(name)
                found = self._plan_folder(plan, entry, name)
                if not found:
                    plan.items.append(EnrollItem(str(entry), name, "failed",
                                                 f"{entry}: no image files in this person folder", code="media.not_found"))
            elif classify_file(entry, videos=False) is None:
                plan.items.append(EnrollItem(str(entry), "", "failed",
                                             f"{entry}: image is not inside a person folder (expected {root}/<Name>/...)",
                                             code="media.not_in_person_folder"))
            else:
                plan.items.append(EnrollItem(str(entry), "", "ignored", "not an image, and not a person folder"))
        return plan

    def _plan_folder(self, plan: _Plan, folder: Path, person: str) -> int:
        files, skipped = list_folder(folder, videos=False)
        plan.pending += [_Pending(person, str(p)) for p in files]
        plan.items += [EnrollItem(s.path, person, "ignored", s.reason) for s in skipped]
        return len(files)

    def _plan_one(self, plan: _Plan, s, person: str) -> None:
        if isinstance(s, (str, os.PathLike)) and Path(s).is_dir():
            if not self._plan_folder(plan, Path(s), person):
                plan.items.append(EnrollItem(str(s), person, "failed", f"{s}: no image files in this folder",
                                             code="media.not_found"))
        elif isinstance(s, (str, os.PathLike)):
            plan.pending.append(_Pending(person, os.fsdecode(s)))
        elif isinstance(s, MediaInput):  # an upload: its name is kept as the source path
            if s.data is None:
                plan.pending.append(_Pending(person, s.name if s.path is None else os.fsdecode(s.path)))
            else:
                plan.pending.append(_Pending(person, s.name, data=s.data, sha256=hashlib.sha256(s.data).hexdigest()))
        else:
            pending = _Pending(person, item_name(s))
            try:
                pending.image = load_image(s)
                pending.sha256 = hashlib.sha256(np.ascontiguousarray(pending.image).tobytes()).hexdigest()
            except FacedexError as err:
                plan.items.append(_failed(pending.path, person, err))
                return
            plan.pending.append(pending)

    def _name_warnings(self, names: Sequence[str]) -> None:
        """A new name spelled like a person already enrolled (or like another new
        name) is most likely the same person: say so."""
        known = {}
        for info in self.store.people():
            known.setdefault(person_key(info.name), info.name)
        for name in dict.fromkeys(names):
            key = person_key(name)
            other = known.get(key)
            if other is not None and other != name:
                self.warnings.append(
                    f"{name!r} looks like {other!r} (same name but for case, accents, spaces or punctuation); "
                    f"they are enrolled as two people — enroll with --person {other!r} to add to {other!r}")
            known.setdefault(key, name)

    # -- batches ---------------------------------------------------------------------------------
    def _batch(self, batch: list[_Pending]) -> list[EnrollItem]:
        """Read, hash, skip what is enrolled, decode; detect and store whenever the
        decoded pixels reach :data:`PIXEL_BUDGET` (memory is bounded by pixels,
        not by the number of images)."""
        results: dict[int, EnrollItem] = {}
        ready: list[int] = []
        pixels = 0
        for i, p in enumerate(batch):
            try:
                if p.image is None and p.data is None:
                    p.data = read_file(p.path)
                    p.sha256 = hashlib.sha256(p.data).hexdigest()
                key = (p.person, p.sha256)
                if key in self._seen:
                    results[i] = EnrollItem(p.path, p.person, "skipped", f"same content as {self._seen[key]}")
                    continue
                if self.store.has_source(p.person, p.sha256):
                    results[i] = EnrollItem(p.path, p.person, "skipped", "already enrolled")
                    continue
                if p.image is None:
                    p.image = decode_image(p.data, p.path)
                p.data = None
                self._seen[key] = p.path
                ready.append(i)
                pixels += p.image.shape[0] * p.image.shape[1]
            except FacedexError as err:
                p.data = None
                results[i] = _failed(p.path, p.person, err)
            if pixels >= PIXEL_BUDGET:
                self._flush(batch, ready, results)
                ready, pixels = [], 0
        self._flush(batch, ready, results)
        return [results[i] for i in range(len(batch)) if i in results]

    def _flush(self, batch: list[_Pending], ready: list[int], results: dict[int, EnrollItem]) -> None:
        if ready:
            self._detect_and_store(batch, ready, results)
        for i in ready:
            batch[i].image = None

    def _detect_and_store(self, batch: list[_Pending], ready: list[int], results: dict[int, EnrollItem]) -> None:
        embedder = self.pipeline.embedder
        detections = self.pipeline.detector.detect_batch([batch[i].image for i in ready])
        chosen: list[tuple[int, Face]] = []
        several: list[tuple[int, list[Face]]] = []
        for i, faces in zip(ready, detections):
            p = batch[i]
            if not faces:
                results[i] = _failed(p.path, p.person, NoFaceError(
                    p.path, "no face found (faces smaller than the minimum size are ignored)"))
            elif len(faces) == 1:
                chosen.append((i, faces[0]))
            elif self.multiple == "largest":
                chosen.append((i, max(faces, key=lambda f: f.area)))
            elif self.multiple == "reject":
                results[i] = _failed(p.path, p.person, MultipleFacesError(
                    p.path, f"{len(faces)} faces found; an enrollment image must show one person "
                    "(crop it, or use --multiple auto or largest)"))
            else:
                several.append((i, faces))
        crops = [embedder.align(batch[i].image, f) for i, f in chosen]
        crops += [embedder.align(batch[i].image, f) for i, faces in several for f in faces]
        vectors = embedder.embed_crops(crops)
        k = len(chosen)
        for i, faces in several:
            p = batch[i]
            self._ambiguous.append(_Ambiguous(p.person, p.path, p.sha256, faces, vectors[k:k + len(faces)]))
            k += len(faces)
        records = [SourceRecord(batch[i].person, batch[i].path, batch[i].sha256,
                                [FaceRecord(f.box, f.landmarks, f.score, vectors[n])])
                   for n, (i, f) in enumerate(chosen)]
        stored = self.store.add_sources(records, self.embedder_id) if records else []
        for (i, _), ids in zip(chosen, stored):
            p = batch[i]
            results[i] = (EnrollItem(p.path, p.person, "added", None, len(ids)) if ids else
                          EnrollItem(p.path, p.person, "skipped", "already enrolled (by another process)"))

    # -- several faces ----------------------------------------------------------------------------
    def _resolve_ambiguous(self) -> list[EnrollItem]:
        out: list[EnrollItem] = []
        by_person: dict[str, list[_Ambiguous]] = {}
        for a in self._ambiguous:
            by_person.setdefault(a.person, []).append(a)
        self._ambiguous = []
        for person, group in by_person.items():
            picks = self._pick_faces(person, group)
            records, taken = [], []
            for a, (choice, why) in zip(group, picks):
                if choice is None:
                    out.append(_failed(a.path, person, MultipleFacesError(a.path, why)))
                    continue
                f = a.faces[choice]
                records.append(SourceRecord(person, a.path, a.sha256,
                                            [FaceRecord(f.box, f.landmarks, f.score, a.embeddings[choice])]))
                taken.append((a, why))
            stored = self.store.add_sources(records, self.embedder_id) if records else []
            for (a, why), ids in zip(taken, stored):
                out.append(EnrollItem(a.path, person, "added", None, len(ids), note=why) if ids else
                           EnrollItem(a.path, person, "skipped", "already enrolled (by another process)"))
        return out

    def _pick_faces(self, person: str, group: list[_Ambiguous]) -> list[tuple[int | None, str]]:
        reference = self.store.vectors_of(person)
        if len(reference):
            centre = _unit(reference.mean(axis=0))
            return [self._decide(a, a.embeddings @ centre, f"the person's {len(reference)} enrolled face(s)")
                    for a in group]
        if len(group) < 2:
            return [self._dominant(group[0], person)]
        # No single-face photo: the person is the face that recurs across their photos.
        picks = []
        for n, a in enumerate(group):
            others = np.concatenate([b.embeddings for m, b in enumerate(group) if m != n])
            support = (a.embeddings @ others.T).max(axis=1)
            picks.append(self._decide(a, support, f"the faces of {person}'s other {len(group) - 1} photo(s)"))
        return picks

    def _dominant(self, a: _Ambiguous, person: str) -> tuple[int | None, str]:
        """No other photo of the person to compare with: the largest face, only
        when it clearly dominates the picture (a portrait with bystanders)."""
        areas = sorted(((f.area, n) for n, f in enumerate(a.faces)), reverse=True)
        ratio = areas[0][0] / max(areas[1][0], 1e-6)
        if ratio >= DOMINANT_AREA_RATIO:
            return areas[0][1], (f"{len(a.faces)} faces and no other photo of {person}; took the largest, "
                                 f"{ratio:.1f}x the area of the next")
        return None, (f"{len(a.faces)} faces found, none clearly the largest, and no other photo of {person} to tell "
                      "which is theirs; crop it, add a photo showing only them, or use --multiple largest")

    def _decide(self, a: _Ambiguous, sims: np.ndarray, against: str) -> tuple[int | None, str]:
        order = np.argsort(-sims)
        best = int(order[0])
        second = float(sims[order[1]]) if len(order) > 1 else -1.0
        if sims[best] >= self.agree and second < self.agree:
            return best, (f"{len(a.faces)} faces; took the one that matches {against} "
                          f"(similarity {float(sims[best]):.2f}; next face {second:.2f})")
        if sims[best] < self.agree:
            why = f"none matches {against} (best similarity {float(sims[best]):.2f} < {self.agree:.2f})"
        else:
            why = f"{int((sims >= self.agree).sum())} of them match {against}"
        return None, (f"{len(a.faces)} faces found and {why}; crop it, or use --multiple largest")


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _failed(path: str, person: str, err: FacedexError) -> EnrollItem:
    return EnrollItem(path, person, "failed", str(err), code=err.code)


__all__ = ["Enrollment", "MULTIPLE_POLICIES", "agreement_level"]
