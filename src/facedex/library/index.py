"""Catalogue every face of a photo and video library as unlabelled sightings.

:class:`LibraryIndexer` walks the inputs (files and folders, listed by
content with the one folder rule of :func:`facedex.media.expand_inputs`),
opens each once with :func:`facedex.media.open_media`, and stores:

* for a photo: every detected face (detected in batches across photos,
  aligned and embedded by the gallery's pipeline) with its box, landmarks,
  quality and a small crop;
* for a video or an animated GIF/WebP/PNG: one sighting per face track,
  followed by :func:`facedex.video.identify.identify_video` exactly as
  ``identify`` follows it — the track's time range, its best face, and the
  quality-weighted mean embedding of its faces. The index makes no decision
  (people are decided when the library is searched: ``find``, ``discover``),
  so a person enrolled later is found without indexing again.

Incremental and resumable: a file whose path, size and modification time are
unchanged is not read; a file whose content (sha256) is already indexed
elsewhere gets a copy of those sightings without being decoded; a file whose
content changed has its sightings replaced. Each batch of photos and each
video is stored in one transaction, so an interrupted run keeps what it
finished and the next run goes on from there. A broken file is reported
(its error code and why) and the rest is indexed.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..errors import FacedexError, MediaError, SourceNotIndexedError, UnsupportedVideoError
from ..files import sha256_file
from ..media import MediaInput, Motion, Photo, expand_inputs, open_media
from ..media.sniff import looks_like_video_name
from ..types import Decision, Threshold
from .store import LibraryStore, NewSighting, NewSource
from .types import IndexItem, IndexReport

if TYPE_CHECKING:  # pragma: no cover
    from ..identify.gallery import Gallery
    from ..video.types import VideoOptions

log = logging.getLogger(__name__)

#: Side, in pixels, of the face crop kept for review (the contact sheet).
CROP_SIZE = 112
CROP_QUALITY = 85

#: ``progress(item, done, total)`` after each input.
Progress = Callable[[IndexItem, int, int], None]
#: ``on_frames(path, frames_decoded, frame_count_or_None)`` while a video runs.
FrameProgress = Callable[[str, int, "int | None"], None]


class _NoDecision:
    """The video stage's :class:`~facedex.video.identify.Matcher`, for
    indexing: tracks are kept undecided (decisions are made at search time)."""

    def decide(self, embeddings: np.ndarray, *, threshold: float | None = None) -> list[Decision]:
        return [Decision(None, 0.0, ()) for _ in range(len(embeddings))]


@dataclass
class _Todo:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    replaces: bool  # a different content was indexed at this path


def crop_jpeg(rgb: np.ndarray, box: Sequence[float] | None = None, size: int = CROP_SIZE) -> bytes:
    """A small JPEG of the face: a square 1.6x its box (as the video contact
    sheet's), at most ``size`` pixels; ``box=None`` takes ``rgb`` as the crop."""
    from PIL import Image

    from ..video.tracker import thumbnail

    crop = thumbnail(rgb, box, size) if box is not None else rgb
    im = Image.fromarray(np.ascontiguousarray(crop))
    if max(im.size) > size:
        im.thumbnail((size, size))
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=CROP_QUALITY)
    return buf.getvalue()


def library_path(path: str | os.PathLike) -> str:
    """How the library names a file: its absolute path (links are not resolved,
    so a file is found under the name the user gave)."""
    return os.path.abspath(os.fsdecode(path))


class LibraryIndexer:
    """One ``index`` run into ``gallery`` (see the module doc).

    ``video`` holds the sampling and tracking options (those of ``identify``);
    ``progress(item, done, total)`` is called after each input and
    ``on_frames(path, done, total)`` while a video is decoded. ``items`` holds
    what finished, even after an interruption.
    """

    def __init__(self, gallery: "Gallery", *, video: "VideoOptions | None" = None, batch_size: int = 8,
                 progress: Progress | None = None, on_frames: FrameProgress | None = None):
        from ..video.types import VideoOptions

        self.gallery = gallery
        self.library = LibraryStore(gallery.store)
        self.video = video or VideoOptions()
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.on_frames = on_frames
        self.items: list[IndexItem] = []
        self.skipped: list = []
        self._total = 0

    def report(self) -> IndexReport:
        return IndexReport(tuple(self.items), tuple(self.skipped))

    def _done(self, item: IndexItem) -> None:
        self.items.append(item)
        if self.progress is not None:
            self.progress(item, len(self.items), self._total)

    # -- the run ---------------------------------------------------------------------------------
    def run(self, paths: Iterable[str | os.PathLike], *, prune: bool = False) -> IndexReport:
        """Index files and folders. With ``prune``, files indexed earlier under a
        folder given here that are no longer there are removed from the
        library. Never raises for a bad input; a KeyboardInterrupt propagates
        after the finished batches were stored."""
        given = [os.fsdecode(p) for p in paths]
        for p in given:
            if p == "-":
                raise MediaError("-", "the library indexes files; standard input cannot be indexed")
        inputs, skipped = expand_inputs(given, videos=True)
        self.skipped = list(skipped)
        removals = self._pruned(given, inputs) if prune else []
        self._total = len(inputs) + len(removals)
        photos: list[tuple[_Todo, Photo]] = []
        for inp in inputs:
            path = library_path(inp.path)
            todo = self._plan(inp, path)
            if todo is None:
                continue
            try:
                opened = open_media(inp, videos=True)
            except FacedexError as err:
                video = isinstance(err, UnsupportedVideoError) or looks_like_video_name(inp.name)
                self._flush(photos)
                photos = []
                self._failed(todo, "video" if video else "image", err)
                continue
            if isinstance(opened, Photo):
                photos.append((todo, opened))
                if len(photos) >= self.batch_size:
                    self._flush(photos)
                    photos = []
                continue
            self._flush(photos)
            photos = []
            self._video(todo, opened)
        self._flush(photos)
        if removals:
            self.library.remove_sources(removals)
            for p in removals:
                self._done(IndexItem(p, "removed", reason="no longer in the folder (--prune)"))
        return self.report()

    def _pruned(self, given: Sequence[str], inputs: Sequence[MediaInput]) -> list[str]:
        listed = {library_path(i.path) for i in inputs if i.path is not None}
        listed |= {library_path(s.path) for s in self.skipped}
        gone: list[str] = []
        for p in given:
            if os.path.isdir(p):
                gone += [q for q in self.library.paths_under(library_path(p)) if q not in listed]
        return sorted(set(gone))

    def _plan(self, inp: MediaInput, path: str) -> _Todo | None:
        """``None`` when the input needs no work (reported here), else what to store."""
        try:
            st = os.stat(path)
        except OSError:
            return _Todo(path, 0, 0, "", False)  # open_media words the error
        old = self.library.source_by_path(path)
        if old is not None and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
            self._done(IndexItem(path, "unchanged", old.kind, self._count(old.id)))
            return None
        try:
            sha = sha256_file(path)
        except OSError as err:
            self._done(IndexItem(path, "failed", None, code=MediaError.code,
                                 reason=f"{path}: cannot read ({err.strerror or err})"))
            return None
        if old is not None and old.sha256 == sha:  # touched, not changed
            self.library.touch(old.id, st.st_size, st.st_mtime_ns)
            self._done(IndexItem(path, "unchanged", old.kind, self._count(old.id)))
            return None
        same = self.library.source_by_sha(sha)
        if same is not None and same.path != path:
            n = self.library.copy_source(same, path, st.st_size, st.st_mtime_ns)
            self._done(IndexItem(path, "duplicate", same.kind, n, reason=f"same content as {same.path}"))
            return None
        return _Todo(path, st.st_size, st.st_mtime_ns, sha, old is not None)

    def _failed(self, todo: _Todo, kind: str, err: FacedexError) -> None:
        reason = str(err)
        if todo.replaces:  # the file changed and can no longer be read: its old sightings are stale
            self.library.remove_sources([todo.path])
            reason += " (its earlier sightings were removed)"
        self._done(IndexItem(todo.path, "failed", kind, code=err.code, reason=reason))

    def _count(self, source_id: int) -> int:
        return int(self.library._conn.execute("SELECT COUNT(*) FROM library_sightings WHERE source_id = ?",
                                              (source_id,)).fetchone()[0])

    # -- photos ----------------------------------------------------------------------------------
    def _flush(self, batch: list[tuple[_Todo, Photo]]) -> None:
        if not batch:
            return
        from ..video.tracker import face_weight

        pipeline = self.gallery.pipeline
        images = [p.rgb for _, p in batch]
        detections = pipeline.detector.detect_batch(images)
        crops, owners = [], []
        for i, (rgb, faces) in enumerate(zip(images, detections)):
            for f in faces:
                crops.append(pipeline.embedder.align(rgb, f))
                owners.append(i)
        vectors = pipeline.embedder.embed_crops(crops) if crops else np.zeros((0, pipeline.embedder.dim), np.float32)
        records: list[tuple[NewSource, list[NewSighting]]] = []
        k = 0
        for (todo, photo), rgb, faces in zip(batch, images, detections):
            h, w = rgb.shape[:2]
            sightings = []
            for f in faces:
                sightings.append(NewSighting(f.box, f.landmarks, f.score, face_weight(f, crops[k], w, h),
                                             vectors[k], crop_jpeg(rgb, f.box)))
                k += 1
            records.append((NewSource(todo.path, todo.sha256, todo.size, todo.mtime_ns, "image", photo.kind.format,
                                      w, h), sightings))
        self.library.store(records)
        for (todo, _), (_, sightings) in zip(batch, records):
            self._done(IndexItem(todo.path, "updated" if todo.replaces else "indexed", "image", len(sightings)))

    # -- videos and animations -----------------------------------------------------------------
    def _video(self, todo: _Todo, motion: Motion) -> None:
        from ..video.identify import identify_video

        progress = None
        if self.on_frames is not None:
            def progress(done: int, total: int | None) -> None:
                self.on_frames(todo.path, done, total)

        kind = motion.kind.kind if motion.kind.kind in ("video", "animation") else "video"
        stream = None
        try:
            stream = identify_video(self.gallery.pipeline, _NoDecision(), motion.open(), self.video,
                                    threshold=Threshold(1.0, "override"), progress=progress)
            tracks = list(stream)
            info, end = stream.info, stream.stats.end_time
        except FacedexError as err:
            self._failed(todo, kind, err)
            return
        finally:
            if stream is not None:
                stream.close()
        sightings = []
        for t in sorted(tracks, key=lambda t: (t.first_seen, t.track)):
            f = t.best_face
            crop = crop_jpeg(t.thumbnail) if t.thumbnail is not None and t.thumbnail.size else None
            sightings.append(NewSighting(f.box, f.landmarks, f.score, t.best_quality, t.embedding, crop,
                                         t.first_seen, t.last_seen, t.best_frame_time, t.frames))
        self.library.store([(NewSource(todo.path, todo.sha256, todo.size, todo.mtime_ns, kind, info.format,
                                       info.width, info.height, end), sightings)])
        self._done(IndexItem(todo.path, "updated" if todo.replaces else "indexed", kind, len(sightings)))


def index_library(gallery: "Gallery", paths: Iterable[str | os.PathLike], *, video: "VideoOptions | None" = None,
                  prune: bool = False, batch_size: int = 8, progress: Progress | None = None,
                  on_frames: FrameProgress | None = None) -> IndexReport:
    """Catalogue every face in ``paths`` (files and folders of photos, videos
    and animated GIFs) into ``gallery`` as unlabelled sightings; see
    :class:`LibraryIndexer`."""
    return LibraryIndexer(gallery, video=video, batch_size=batch_size, progress=progress,
                          on_frames=on_frames).run(paths, prune=prune)


def forget_sources(gallery: "Gallery", paths: Iterable[str | os.PathLike]) -> list[IndexItem]:
    """Remove the sightings of these files (a folder: every indexed file under
    it), with their crops and places in clusters; the file is vacuumed.
    Faces already named stay enrolled in the gallery (remove them with
    :func:`facedex.library.people.remove_source`). Raises
    :class:`facedex.errors.SourceNotIndexedError` when a path holds nothing
    indexed, before removing anything."""
    lib = LibraryStore(gallery.store, create=False)
    plan: list[tuple[str, list[str]]] = []
    for p in paths:
        path = library_path(p)
        found = lib.paths_under(path)
        if not found:
            raise SourceNotIndexedError(f"{os.fsdecode(p)}: nothing indexed at this path in {gallery.path} "
                                        "(paths are matched as absolute paths)")
        plan.append((path, found))
    items = []
    for _, found in plan:
        for f in found:
            n = lib.remove_sources([f], vacuum=False)
            note = (f"{n['named']} of them named: their enrolled faces stay in the gallery" if n["named"] else None)
            items.append(IndexItem(f, "removed", None, n["sightings"], reason=note))
    if items:
        lib.vacuum()
    return items


__all__ = ["CROP_SIZE", "LibraryIndexer", "crop_jpeg", "forget_sources", "index_library", "library_path"]
