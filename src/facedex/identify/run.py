"""Identify anything: the one entry point the CLI, the HTTP service and Python
users call for files.

>>> import facedex
>>> with facedex.Gallery.open("my.gallery") as g:
...     run = facedex.identify_paths(g, ["photos/", "clip.mp4", "party.gif"], annotate="out/")
...     print(run.threshold)                      # resolved once, before any work
...     for result in run:                        # ImageResult or VideoResult, in input order
...         print(result.to_dict())
...     print(run.skipped)                        # files in folders that are not images or videos

Each input is sniffed once and decoded once: a photo is decoded, detected (in
batches across photos), embedded and decided (in batches across photos too),
and its annotated copy drawn from the same decoded pixels. A background thread
decodes photos ahead of the thread that detects and embeds (decoding and the
inference runtimes release the GIL), within the same pixel budget as a batch;
results and their order are the same without it (``prefetch=False``). A video
or animation is streamed through the tracker and decided per track, and
decoded a second time only for its annotated copy (a track's name is known only when the track has ended, and
holding every frame of a long video until then would not fit in memory).

A bad input gives a result with ``error`` set (a stable code and a message
naming it) and the run carries on. The output folder and the threshold are
checked when the run is made, before any input is read.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Union

from ..errors import FacedexError, OutputError, UnsupportedVideoError
from ..files import OutputDir
from ..media import MediaInput, Motion, Photo, expand_inputs, open_media
from ..media.sniff import looks_like_video_name
from ..types import ErrorInfo, Identification, ImageResult, Threshold
from .enroll import PIXEL_BUDGET

if TYPE_CHECKING:  # pragma: no cover
    from ..video.types import VideoOptions, VideoResult
    from .gallery import Gallery

log = logging.getLogger(__name__)

Result = Union[ImageResult, "VideoResult"]
#: ``on_frames(input_name, frames_decoded, frame_count_or_None)`` while a video runs.
FrameProgress = Callable[[str, int, "int | None"], None]


class IdentifyRun(Iterator[Result]):
    """The results of :func:`identify_paths`, one per input, in input order.

    Attributes set before the first result: ``threshold`` (the
    :class:`~facedex.types.Threshold` every decision uses), ``inputs`` (the
    inputs after folders were listed), ``skipped`` (files left out of folders,
    with the reason), ``annotate`` (the checked output folder, or ``None``).
    """

    def __init__(self, gallery: "Gallery", inputs: Iterable, *, threshold: float | None = None,
                 annotate: str | os.PathLike | None = None, video: "VideoOptions | None" = None,
                 batch_size: int = 16, on_frames: FrameProgress | None = None, videos: bool = True,
                 prefetch: bool = True):
        from ..video.types import VideoOptions

        self.gallery = gallery
        self.threshold: Threshold = gallery.resolve_threshold(threshold)
        self.video_options = video or VideoOptions()
        self.inputs, self.skipped = expand_inputs(inputs, videos=videos)
        paths = [i.path for i in self.inputs if i.path is not None]
        self.annotate: OutputDir | None = OutputDir(annotate, paths) if annotate is not None else None
        self.batch_size = max(1, int(batch_size))
        self.on_frames = on_frames
        self.videos = videos
        self.prefetch = prefetch
        self._held = 0  # decoded pixels in the batch being gathered or worked on
        self._ahead = 0  # decoded pixels waiting for it (decoding ahead)
        self._cond = threading.Condition()
        self._gen = self._run()

    def __iter__(self) -> "IdentifyRun":
        return self

    def __next__(self) -> Result:
        return next(self._gen)

    def close(self) -> None:
        self._gen.close()

    # -- the work ---------------------------------------------------------------------------------
    def _run(self) -> Iterator[Result]:
        photos: list[Photo | ImageResult] = []
        for inp, opened in self._opened():
            if isinstance(opened, FacedexError):
                err = opened
                if self.videos and (isinstance(err, UnsupportedVideoError) or looks_like_video_name(inp.name)):
                    yield from self._flush(photos)  # keep the input order
                    photos = []
                    yield self._failed_video(inp.name, err)
                else:
                    photos.append(ImageResult(inp.name, (), ErrorInfo.of(err), self.threshold))
                continue
            if isinstance(opened, Photo):
                photos.append(opened)
                self._hold(_pixels(opened))
                if len(photos) >= self.batch_size or self._held >= PIXEL_BUDGET:
                    yield from self._flush(photos)
                    photos = []
                continue
            yield from self._flush(photos)
            photos = []
            yield self._video(opened)
        yield from self._flush(photos)

    def _hold(self, pixels: int) -> None:
        with self._cond:
            self._held += pixels

    def _flush(self, batch: list[Photo | ImageResult]) -> Iterator[ImageResult]:
        yield from self._photos(batch)
        with self._cond:  # the batch's pixels are released: decoding ahead may go on
            self._held = 0
            self._cond.notify_all()

    def _open(self, inp: MediaInput) -> "Photo | Motion | FacedexError":
        try:
            return open_media(inp, videos=self.videos)
        except FacedexError as err:
            return err

    def _opened(self) -> Iterator[tuple[MediaInput, "Photo | Motion | FacedexError"]]:
        """Each input with what opening it gave (or its error), in input order.

        With ``prefetch``, one background thread opens (sniffs and decodes) the
        inputs ahead of the caller while the caller detects and embeds, at most
        ``2 x batch_size`` inputs ahead, and it starts a decode only while the
        pixels decoded ahead plus those of the batch in hand stay under
        :data:`PIXEL_BUDGET` — the same memory bound as without it."""
        if not self.prefetch or len(self.inputs) < 2:
            for inp in self.inputs:
                yield inp, self._open(inp)
            return
        cond = self._cond
        ready: collections.deque = collections.deque()
        state = {"done": False, "stop": False}
        window = 2 * self.batch_size

        def work() -> None:
            try:
                for inp in self.inputs:
                    with cond:
                        while not state["stop"] and (len(ready) >= window
                                                     or self._ahead + self._held >= PIXEL_BUDGET):
                            cond.wait()
                        if state["stop"]:
                            return
                    try:
                        item = self._open(inp)
                    except BaseException as err:  # noqa: BLE001 - raised again in the caller's thread
                        item = err
                    with cond:
                        ready.append((inp, item))
                        self._ahead += _pixels(item)
                        cond.notify_all()
            finally:
                with cond:
                    state["done"] = True
                    cond.notify_all()

        worker = threading.Thread(target=work, name="facedex-identify-open", daemon=True)
        worker.start()
        try:
            while True:
                with cond:
                    while not ready and not state["done"]:
                        cond.wait()
                    if not ready:
                        return
                    inp, item = ready.popleft()
                    self._ahead -= _pixels(item)
                    cond.notify_all()
                if isinstance(item, BaseException) and not isinstance(item, FacedexError):
                    raise item
                yield inp, item
        finally:
            with cond:
                state["stop"] = True
                cond.notify_all()

    def _photos(self, batch: list[Photo | ImageResult]) -> Iterator[ImageResult]:
        """Decoded photos (and failed inputs, in their place): detect together,
        embed, decide, annotate."""
        if not batch:
            return
        good = [p for p in batch if isinstance(p, Photo)]
        g = self.gallery
        detections = g.pipeline.detector.detect_batch([p.rgb for p in good]) if good else []
        answers = iter(self._identify(good, detections))
        for item in batch:
            if isinstance(item, ImageResult):
                yield item
                continue
            ids = next(answers)
            if isinstance(ids, FacedexError):
                yield ImageResult(item.name, (), ErrorInfo.of(ids), self.threshold)
                continue
            annotated, error = None, None
            if self.annotate is not None:
                annotated, error = self._annotate_photo(item, ids)
            yield ImageResult(item.name, ids, error, self.threshold, annotated)

    def _identify(self, photos: list[Photo], detections: list) -> list["tuple[Identification, ...] | FacedexError"]:
        """Identifications for the faces of several photos: aligned per photo,
        embedded in batches across photos, searched per photo (the search of a
        few faces runs on one thread; a search of many would spread over all
        the cores for a few microseconds of work, and wait for them). When that
        fails, each photo is done on its own, so that an error names its photo."""
        g = self.gallery
        t = self.threshold
        try:
            embedder = g.pipeline.embedder
            crops = [embedder.align(p.rgb, f) for p, faces in zip(photos, detections) for f in faces]
            embeddings = embedder.embed_crops(crops)
            decisions, start = [], 0
            for faces in detections:
                if faces:
                    decisions += g.decide(embeddings[start:start + len(faces)], threshold=t.value)
                    start += len(faces)
        except FacedexError:
            out: list = []
            for p, faces in zip(photos, detections):
                try:
                    out.append(tuple(g.identify_faces(p.rgb, faces, threshold=t)))
                except FacedexError as err:
                    out.append(err)
            return out
        answers = iter(decisions)
        return [tuple(Identification(f, d.name, d.similarity, d.candidates, t.value, d.score)
                      for f, d in zip(faces, answers)) for faces in detections]

    def _annotate_photo(self, photo: Photo, ids) -> tuple[str | None, ErrorInfo | None]:
        from ..render.image import image_suffix, write_annotated_image

        try:
            out = self.annotate.target(photo.name, image_suffix(photo.name))
            return str(write_annotated_image(photo.rgb, ids, out)), None
        except (OSError, FacedexError) as err:
            return None, _write_error(err)

    def _failed_video(self, name: str, err: FacedexError) -> "VideoResult":
        from ..video.types import VideoResult

        return VideoResult(name, error=ErrorInfo.of(err), sample_fps=self.video_options.sample_fps,
                           threshold=self.threshold)

    def _video(self, motion: Motion) -> "VideoResult":
        from ..video.identify import identify_video
        from ..video.types import VideoResult

        name = motion.name
        progress = None
        if self.on_frames is not None:
            def progress(done: int, total: int | None) -> None:
                self.on_frames(name, done, total)

        stream = None
        try:
            stream = identify_video(self.gallery.pipeline, self.gallery, motion.open(), self.video_options,
                                    threshold=self.threshold, progress=progress)
            result = stream.result()
        except FacedexError as err:
            return VideoResult(name, info=stream.info if stream else None, error=ErrorInfo.of(err),
                               sample_fps=self.video_options.sample_fps, threshold=self.threshold)
        finally:
            if stream is not None:
                stream.close()
        result = dataclasses.replace(result, input=name)
        if self.annotate is not None:
            result = self._annotate_video(motion, result)
        return result

    def _annotate_video(self, motion: Motion, result: "VideoResult") -> "VideoResult":
        from ..render.video import contact_sheet, output_suffix, write_annotated
        from ..video.types import format_time

        try:
            video = write_annotated(motion, result.tracks, self.annotate.target(motion.name, output_suffix(result.info)))
            n = len(result.tracks)
            title = f"{Path(motion.name).name}: {n} track{'s' if n != 1 else ''}, {format_time(result.duration)}"
            sheet = contact_sheet(result.tracks, self.annotate.target(motion.name, ".png", "-tracks"), title=title)
        except (OSError, FacedexError) as err:
            return dataclasses.replace(result, error=_write_error(err))
        return dataclasses.replace(result, annotated=str(video), contact_sheet=str(sheet))


def _pixels(item: object) -> int:
    return int(item.rgb.shape[0] * item.rgb.shape[1]) if isinstance(item, Photo) else 0


def _write_error(err: BaseException) -> ErrorInfo:
    if isinstance(err, FacedexError):
        return ErrorInfo.of(err)
    return ErrorInfo(OutputError.code, f"cannot write the annotated copy: {getattr(err, 'strerror', None) or err}")


def identify_paths(gallery: "Gallery", inputs: Iterable[str | os.PathLike | bytes | MediaInput], *,
                   threshold: float | None = None, annotate: str | os.PathLike | None = None,
                   video: "VideoOptions | None" = None, batch_size: int = 16,
                   on_frames: FrameProgress | None = None, prefetch: bool = True) -> IdentifyRun:
    """Identify every face in photos, animated GIFs and videos (paths, folders of
    them, ``-`` for standard input, bytes, or :class:`facedex.media.MediaInput`).

    Returns an :class:`IdentifyRun`: iterate it for one
    :class:`~facedex.types.ImageResult` or :class:`~facedex.video.VideoResult`
    per input, in order. ``threshold`` overrides the gallery's for this run
    (checked: a cosine similarity in [-1, 1]); ``annotate`` is a folder for
    annotated copies (checked now: :class:`facedex.errors.OutputError` when it
    cannot be used; an output never replaces an existing file). ``video``
    holds the sampling and tracking options. ``prefetch=False`` decodes each
    photo only when it is needed (the results are the same; it is slower).
    """
    return IdentifyRun(gallery, inputs, threshold=threshold, annotate=annotate, video=video,
                       batch_size=batch_size, on_frames=on_frames, prefetch=prefetch)


__all__ = ["IdentifyRun", "identify_paths"]
