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
batches across photos), embedded and decided, and its annotated copy drawn
from the same decoded pixels; a video or animation is streamed through the
tracker and decided per track, and decoded a second time only for its
annotated copy (a track's name is known only when the track has ended, and
holding every frame of a long video until then would not fit in memory).

A bad input gives a result with ``error`` set (a stable code and a message
naming it) and the run carries on. The output folder and the threshold are
checked when the run is made, before any input is read.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Union


from ..errors import FacedexError, OutputError, UnsupportedVideoError
from ..files import OutputDir
from ..media import MediaInput, Motion, Photo, Skipped, expand_inputs, open_media
from ..media.sniff import looks_like_video_name
from ..pipeline import chunked
from ..types import ErrorInfo, ImageResult, Threshold
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
                 batch_size: int = 16, on_frames: FrameProgress | None = None, videos: bool = True):
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
        for inp in self.inputs:
            try:
                opened = open_media(inp, videos=self.videos)
            except FacedexError as err:
                if self.videos and (isinstance(err, UnsupportedVideoError) or looks_like_video_name(inp.name)):
                    yield from self._photos(photos)  # keep the input order
                    photos = []
                    yield self._failed_video(inp.name, err)
                else:
                    photos.append(ImageResult(inp.name, (), ErrorInfo.of(err), self.threshold))
                continue
            if isinstance(opened, Photo):
                photos.append(opened)
                held = sum(p.rgb.shape[0] * p.rgb.shape[1] for p in photos if isinstance(p, Photo))
                if len(photos) >= self.batch_size or held >= PIXEL_BUDGET:
                    yield from self._photos(photos)
                    photos = []
                continue
            yield from self._photos(photos)
            photos = []
            yield self._video(opened)
        yield from self._photos(photos)

    def _photos(self, batch: list[Photo | ImageResult]) -> Iterator[ImageResult]:
        """Decoded photos (and failed inputs, in their place): detect together,
        embed, decide, annotate."""
        if not batch:
            return
        good = [p for p in batch if isinstance(p, Photo)]
        g = self.gallery
        detections = iter(g.pipeline.detector.detect_batch([p.rgb for p in good]) if good else [])
        for item in batch:
            if isinstance(item, ImageResult):
                yield item
                continue
            faces = next(detections)
            try:
                ids = tuple(g.identify_faces(item.rgb, faces, threshold=self.threshold))
            except FacedexError as err:
                yield ImageResult(item.name, (), ErrorInfo.of(err), self.threshold)
                continue
            annotated, error = None, None
            if self.annotate is not None:
                annotated, error = self._annotate_photo(item, ids)
            yield ImageResult(item.name, ids, error, self.threshold, annotated)

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


def _write_error(err: BaseException) -> ErrorInfo:
    if isinstance(err, FacedexError):
        return ErrorInfo.of(err)
    return ErrorInfo(OutputError.code, f"cannot write the annotated copy: {getattr(err, 'strerror', None) or err}")


def identify_paths(gallery: "Gallery", inputs: Iterable[str | os.PathLike | bytes | MediaInput], *,
                   threshold: float | None = None, annotate: str | os.PathLike | None = None,
                   video: "VideoOptions | None" = None, batch_size: int = 16,
                   on_frames: FrameProgress | None = None) -> IdentifyRun:
    """Identify every face in photos, animated GIFs and videos (paths, folders of
    them, ``-`` for standard input, bytes, or :class:`facedex.media.MediaInput`).

    Returns an :class:`IdentifyRun`: iterate it for one
    :class:`~facedex.types.ImageResult` or :class:`~facedex.video.VideoResult`
    per input, in order. ``threshold`` overrides the gallery's for this run
    (checked: a cosine similarity in [-1, 1]); ``annotate`` is a folder for
    annotated copies (checked now: :class:`facedex.errors.OutputError` when it
    cannot be used; an output never replaces an existing file). ``video``
    holds the sampling and tracking options.
    """
    return IdentifyRun(gallery, inputs, threshold=threshold, annotate=annotate, video=video,
                       batch_size=batch_size, on_frames=on_frames)


__all__ = ["IdentifyRun", "identify_paths"]
