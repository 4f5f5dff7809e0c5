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

**On Ray** (``ray=RayOptions(…)``, ``facedex index --engine ray``): the
photos that need work are decoded, detected, aligned, embedded, measured and
cropped on a pool of Ray actors (:func:`facedex.engines.ray.embed_files`:
each actor loads the models once; results are written as Parquet shards
beside the gallery, and a shard already written is not computed again); each
shard is stored in the library as soon as it is written, through the same
code as the local engine's batches, so the sightings are the same. Videos and
animations stay on this process's path: a track follows the frames in order,
which one decoder does best, and a video is one unit of work anyway. Files
whose name is not valid UTF-8 (which Ray's readers cannot take) are indexed
locally too.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np

from ..errors import FacedexError, MediaError, NoFaceError, SourceNotIndexedError, UnsupportedVideoError
from ..faces.crop import CROP_QUALITY, CROP_SIZE, crop_jpeg
from ..files import sha256_file
from ..media import MediaInput, Motion, Photo, expand_inputs, open_media
from ..media.sniff import looks_like_video_name, sniff
from ..types import Decision, Threshold
from .store import LibraryStore, NewSighting, NewSource
from .types import IndexItem, IndexReport

if TYPE_CHECKING:  # pragma: no cover
    from ..engines.ray import RayOptions
    from ..identify.gallery import Gallery
    from ..video.types import VideoOptions

log = logging.getLogger(__name__)

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


#: A photo analysed and ready to store: what it is, its size, its faces.
_PhotoResult = tuple[_Todo, str, int, int, list[NewSighting]]


def library_path(path: str | os.PathLike) -> str:
    """How the library names a file: its absolute path (links are not resolved,
    so a file is found under the name the user gave)."""
    return os.path.abspath(os.fsdecode(path))


class LibraryIndexer:
    """One ``index`` run into ``gallery`` (see the module doc).

    ``video`` holds the sampling and tracking options (those of ``identify``);
    ``progress(item, done, total)`` is called after each input and
    ``on_frames(path, done, total)`` while a video is decoded. ``items`` holds
    what finished, even after an interruption. ``ray``: run the photos on Ray
    with these options (see the module doc); ``ray_run`` then tells what the
    Ray run did (shards written and skipped).
    """

    def __init__(self, gallery: "Gallery", *, video: "VideoOptions | None" = None, batch_size: int = 8,
                 progress: Progress | None = None, on_frames: FrameProgress | None = None,
                 ray: "RayOptions | None" = None):
        from ..video.types import VideoOptions

        self.gallery = gallery
        self.library = LibraryStore(gallery.store)
        self.video = video or VideoOptions()
        self.batch_size = max(1, int(batch_size))
        self.progress = progress
        self.on_frames = on_frames
        self.ray = ray
        self.ray_run = None
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
        if self.ray is not None:
            from ..engines.ray import require_ray

            require_ray()  # before any work
        photos: list[tuple[_Todo, Photo]] = []
        remote: list[tuple[_Todo, str]] = []  # photos for Ray, with their format
        again: list[MediaInput] = []  # same content as a photo sent to Ray: planned again after it
        sent: set[str] = set()
        for inp in inputs:
            path = library_path(inp.path)
            todo = self._plan(inp, path)
            if todo is None:
                continue
            fmt = _still_photo(path) if self.ray is not None else None
            if fmt is None:
                photos = self._local(inp, todo, photos)
            elif todo.sha256 in sent:
                again.append(inp)
            else:
                sent.add(todo.sha256)
                remote.append((todo, fmt))
        self._flush(photos)
        if remote:
            photos = []
            for todo in self._photos_on_ray(remote):  # changed since their shard was written
                photos = self._local(MediaInput.of(todo.path), todo, photos)
            for inp in again:  # now a copy of what was stored (or failed: then indexed here)
                todo = self._plan(inp, library_path(inp.path))
                if todo is not None:
                    photos = self._local(inp, todo, photos)
            self._flush(photos)
        if removals:
            self.library.remove_sources(removals)
            for p in removals:
                self._done(IndexItem(p, "removed", reason="no longer in the folder (--prune)"))
        return self.report()

    def _local(self, inp: MediaInput, todo: _Todo, photos: list[tuple[_Todo, Photo]]) -> list[tuple[_Todo, Photo]]:
        """Index one input in this process: a photo joins ``photos`` (the batch
        in hand, flushed when full), a video or animation is indexed at once.
        Returns the batch in hand."""
        try:
            opened = open_media(inp, videos=True)
        except FacedexError as err:
            video = isinstance(err, UnsupportedVideoError) or looks_like_video_name(inp.name)
            self._flush(photos)
            self._failed(todo, "video" if video else "image", err.code, str(err))
            return []
        if isinstance(opened, Photo):
            photos.append((todo, opened))
            if len(photos) >= self.batch_size:
                self._flush(photos)
                return []
            return photos
        self._flush(photos)
        self._video(todo, opened)
        return []

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

    def _failed(self, todo: _Todo, kind: str, code: str, reason: str) -> None:
        if todo.replaces:  # the file changed and can no longer be read: its old sightings are stale
            self.library.remove_sources([todo.path])
            reason += " (its earlier sightings were removed)"
        self._done(IndexItem(todo.path, "failed", kind, code=code, reason=reason))

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
        results: list[_PhotoResult] = []
        k = 0
        for (todo, photo), rgb, faces in zip(batch, images, detections):
            h, w = rgb.shape[:2]
            sightings = []
            for f in faces:
                sightings.append(NewSighting(f.box, f.landmarks, f.score, face_weight(f, crops[k], w, h),
                                             vectors[k], crop_jpeg(rgb, f.box)))
                k += 1
            results.append((todo, photo.kind.format, w, h, sightings))
        self._store_photos(results)

    def _store_photos(self, results: Sequence[_PhotoResult]) -> None:
        """Store analysed photos in one transaction (the local and the Ray path)."""
        self.library.store([(NewSource(todo.path, todo.sha256, todo.size, todo.mtime_ns, "image", fmt, w, h),
                             sightings) for todo, fmt, w, h, sightings in results])
        for todo, _, _, _, sightings in results:
            self._done(IndexItem(todo.path, "updated" if todo.replaces else "indexed", "image", len(sightings)))

    def _photos_on_ray(self, remote: Sequence[tuple[_Todo, str]]) -> list[_Todo]:
        """Photos detected, embedded and cropped on Ray; each shard stored as it is
        written (and shards written by an earlier, interrupted run as they are
        found). Returns the files that changed since their shard was written
        (an earlier run's), for the local path."""
        from ..engines.ray import embed_files

        todos = {todo.path: (todo, fmt) for todo, fmt in remote}
        loaded: set = set()
        stale: list[_Todo] = []

        def load(shard, _images: int = 0) -> None:
            loaded.add(shard)
            stale.extend(self._store_shard(shard, todos))

        self.ray_run = run = embed_files(self.gallery, list(todos), options=self.ray, quality=True, crops=True,
                                         prefix="index", on_shard=load)
        for shard in run.shard_files:
            if shard not in loaded:
                load(shard)
        return stale

    def _store_shard(self, shard, todos: dict[str, tuple[_Todo, str]]) -> list[_Todo]:
        """Store one shard of :func:`facedex.engines.ray.embed_files`; returns the
        files whose content is no longer the one in the shard."""
        from ..gallery.export import face_record, iter_rows, path_from_columns

        rows: dict[str, list] = {}
        for cols in iter_rows(shard):
            for i in range(len(cols["path"])):
                path = path_from_columns(cols["path"][i], cols["path_bytes"][i])
                rows.setdefault(path, []).append((cols, i))
        results: list[_PhotoResult] = []
        stale: list[_Todo] = []
        for path, found in rows.items():
            todo, fmt = todos[path]
            cols, i = found[0]
            if cols["sha256"][i] != todo.sha256:
                stale.append(todo)
                continue
            w, h = int(cols["width"][i]), int(cols["height"][i])
            if cols["status"][i] == "failed" and cols["code"][i] != NoFaceError.code:
                self._failed(todo, "image", cols["code"][i], cols["reason"][i])
                continue
            sightings = []
            for cols, i in found:
                if cols["status"][i] == "face":
                    r = face_record(cols, i)
                    sightings.append(NewSighting(r.box, r.landmarks, r.score, float(cols["quality"][i]),
                                                 r.embedding, cols["crop"][i]))
            results.append((todo, fmt, w, h, sightings))
        if results:
            self._store_photos(results)
        return stale

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
            self._failed(todo, kind, err.code, str(err))
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


def _still_photo(path: str) -> str | None:
    """The format of a still image that Ray's readers can take (a name that is
    valid UTF-8), else ``None``: videos, animations, files that are not media
    and odd names go the local way, which also words their errors."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return None
    kind = sniff(path)
    return kind.format if kind.kind == "image" else None


def index_library(gallery: "Gallery", paths: Iterable[str | os.PathLike], *, video: "VideoOptions | None" = None,
                  prune: bool = False, batch_size: int = 8, progress: Progress | None = None,
                  on_frames: FrameProgress | None = None, ray: "RayOptions | None" = None) -> IndexReport:
    """Catalogue every face in ``paths`` (files and folders of photos, videos
    and animated GIFs) into ``gallery`` as unlabelled sightings; see
    :class:`LibraryIndexer` (``ray``: photos on Ray, see the module doc)."""
    return LibraryIndexer(gallery, video=video, batch_size=batch_size, progress=progress,
                          on_frames=on_frames, ray=ray).run(paths, prune=prune)


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


__all__ = ["CROP_QUALITY", "CROP_SIZE", "LibraryIndexer", "crop_jpeg", "forget_sources", "index_library", "library_path"]
