"""Decode videos and animations into a stream of RGB frames with timestamps.

Three decoders, chosen by the kind of file (see :mod:`facedex.media.sniff`)
and by what is installed (:data:`DECODERS`, ``FACEDEX_VIDEO_DECODER``):

``pyav``
    Videos, through PyAV (the ``video`` extra: ``pip install 'facedex[video]'``),
    whose wheels carry an FFmpeg with dav1d, libvpx and the other decoders:
    AV1, VP9, HEVC, H.264 and everything else FFmpeg reads, decoded with
    FFmpeg's own threads (``thread_type="AUTO"``). Used when installed.
``opencv``
    Videos, through OpenCV's ``VideoCapture`` (the FFmpeg inside
    ``opencv-python-headless``): the fallback, always there. It cannot decode
    AV1. Rotation metadata is applied by FFmpeg
    (``CAP_PROP_ORIENTATION_AUTO``). FFmpeg's own messages are silenced
    through ``OPENCV_FFMPEG_LOGLEVEL`` (unless you set it), which OpenCV reads
    when its FFmpeg is first used in the process.
``pillow``
    Animated GIF, WebP and PNG, frame by frame with each frame's own
    duration. A duration of 10 ms or less is shown by browsers as 100 ms, and
    counted so here too.

The two video decoders give the same frames (to within colour-conversion
rounding), the same timestamps and the same counts. Timestamps are the
frames' presentation times from the start of the stream; rotation metadata
(phones) is applied, so frames come upright. A frame the decoder cannot
decode is skipped and counted in ``broken_frames``; so are frames missing
from the timeline of a constant-frame-rate stream (damaged data the demuxer
skipped: the next timestamp comes a whole number of frames late), and, for
AVI (whose index lists every frame but whose timestamps are frame counters),
frames the index lists that never came. Once the intervals between frames
vary (variable frame rate), gaps are no longer counted. Damage the decoder
conceals (a garbled picture) is not counted: FFmpeg does not report it.
Decoding stops only after many consecutive failures (the end of the stream,
or a file that breaks off).

All stream: one frame is held at a time, whatever the length of the video.
A frame that is not wanted (sampling) is decoded — the codec needs it — but
not converted to RGB.
"""

from __future__ import annotations

import io
import logging
import math
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from .. import config
from ..errors import (
    CorruptMediaError,
    CorruptVideoError,
    MediaError,
    UnsupportedVideoError,
    VideoTooLargeError,
)
from .image import check_input_file, describe_bytes
from .sniff import SUPPORTED, Sniffed, sniff

log = logging.getLogger(__name__)


def _t(x: float | None) -> float | None:
    return None if x is None else round(float(x), 3)


@dataclass(frozen=True)
class VideoInfo:
    """What the container says, read when the video is opened.

    ``kind`` is ``"video"`` (decoded with FFmpeg) or ``"animation"`` (an
    animated GIF, WebP or PNG, decoded with Pillow); ``decoder`` names the
    decoder (``"pyav"``, ``"opencv"``, ``"pillow"``, ``"frames"``). ``width``/``height`` are
    as displayed (after ``rotation`` degrees were applied). ``fps``,
    ``frame_count`` and ``duration`` are the container's estimates and may be
    ``None``; the measured duration is in :class:`VideoResult`.
    """

    input: str
    kind: str
    format: str
    codec: str
    width: int
    height: int
    fps: float | None
    frame_count: int | None
    duration: float | None
    rotation: int = 0
    decoder: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": self.format, "codec": self.codec, "width": self.width,
                "height": self.height, "fps": None if self.fps is None else round(self.fps, 3),
                "frame_count": self.frame_count, "duration": _t(self.duration), "rotation": self.rotation,
                "decoder": self.decoder}


@dataclass(frozen=True, eq=False)
class Frame:
    """One decoded frame: its index among decoded frames, presentation time and
    display duration (seconds), and the RGB ``uint8`` pixels."""

    index: int
    time: float
    duration: float
    rgb: np.ndarray

#: Consecutive failed reads after which a video is taken to have ended: more
#: than a group of pictures (up to 10 s at 30 fps) can be undecodable when its
#: key frame is damaged. A read at the end of a file costs microseconds.
MAX_CONSECUTIVE_FAILURES = 300

#: Codecs that FFmpeg knows but the build inside opencv-python-headless cannot decode.
_UNDECODABLE = {"av01": "AV1"}

VideoSource = "str | os.PathLike | bytes"
WantFrame = Callable[[float], bool]


def _cv2():
    """OpenCV, with FFmpeg's own messages silenced (they would go straight to
    the terminal); ``-vv`` lets FFmpeg's errors through. Respects a value the
    user has set in ``OPENCV_FFMPEG_LOGLEVEL``."""
    if "OPENCV_FFMPEG_LOGLEVEL" not in os.environ:
        os.environ["OPENCV_FFMPEG_LOGLEVEL"] = "16" if log.isEnabledFor(logging.DEBUG) else "-8"
    import cv2

    return cv2


def _fourcc(value: float) -> str:
    try:
        code = int(value)
    except (TypeError, ValueError):
        return ""
    if code <= 0:
        return ""
    text = "".join(chr((code >> (8 * i)) & 0xFF) for i in range(4))
    return text.strip("\x00 ") if text.isprintable() else ""


class FrameSource:
    """A stream of decoded frames. Use as a context manager, or call :meth:`close`.

    ``info`` is known once opened; ``frames_decoded``, ``broken_frames`` and
    ``end_time`` grow while :meth:`frames` is iterated; ``warnings`` is filled
    when decoding ends.
    """

    info: VideoInfo

    def __init__(self) -> None:
        self.frames_decoded = 0
        self.broken_frames = 0
        self.end_time = 0.0
        self.warnings: list[str] = []
        #: Presentation time (s) of the stream's start, which frame times are counted from (0 when unknown).
        self.start_offset = 0.0

    def frames(self, want: WantFrame | None = None) -> Iterator[Frame]:
        """Every decoded frame for which ``want(time)`` is true (all when ``want`` is None)."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_truncated(self) -> None:
        expected = self.info.duration
        if expected and self.frames_decoded and self.end_time < 0.9 * expected - 0.5:
            self.warnings.append(
                f"decoding stopped at {self.end_time:.1f} s of {expected:.1f} s: the file looks truncated or "
                "damaged; the rest could not be read")


class _Timeline:
    """Places decoded frames on the timeline and counts frames lost from it.

    ``place(t, fails)`` takes a frame's presentation time (``None`` when the
    stream has none) and the number of failed decodes since the previous
    frame (already counted as broken), and returns the time to use and the
    number of frames missing before this one: for a constant-frame-rate
    stream, a timestamp a whole number of frames late means frames were lost
    (damaged data the demuxer skipped); once the intervals vary, gaps are
    not losses. A missing or repeated timestamp becomes the previous one plus
    one frame."""

    def __init__(self, fps: float | None):
        self.dt = 1.0 / fps if fps else 1.0 / 30.0
        self.regular = fps is not None
        self.prev: float | None = None
        self.index = 0

    def place(self, t: float | None, fails: int = 0) -> tuple[float, int]:
        lost = 0
        if t is None or not math.isfinite(t) or t < 0:
            t = self.index * self.dt if self.prev is None else self.prev + self.dt
        prev = self.prev
        if prev is not None:
            if t <= prev:
                t = prev + self.dt  # missing or repeated timestamps
            elif self.regular:
                ratio = (t - prev) / self.dt
                k = round(ratio)
                if k >= 2 and abs(ratio - k) < 0.15 and k - 1 - fails > 0:
                    lost = k - 1 - fails  # failed decodes were counted already
                elif abs(ratio - 1) > 0.15:
                    self.regular = False  # a variable frame rate: gaps are not losses
        self.prev = t
        self.index += 1
        return t, lost


class OpenCVSource(FrameSource):
    """A video file decoded by OpenCV's FFmpeg (see the module doc)."""

    def __init__(self, path: str | os.PathLike, item: str, fmt: str = "", max_pixels: int | None = None,
                 cleanup: Callable[[], None] | None = None):
        super().__init__()
        self.item = item
        self._cleanup = cleanup
        cv2 = _cv2()
        self._cv2 = cv2
        limit = max_pixels if max_pixels is not None else config.max_pixels()
        prev = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # "backend can't capture by name"
        try:
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
        finally:
            cv2.utils.logging.setLogLevel(prev)
        self._cap = cap
        self._fails = 0  # failed reads before the frame just grabbed
        try:
            what = f"the {fmt or 'video'} file"
            if not cap.isOpened():
                raise CorruptVideoError(
                    item, f"FFmpeg cannot open {what}: it is damaged or truncated, or holds no video stream "
                    "(audio only)")
            cap.set(cv2.CAP_PROP_ORIENTATION_AUTO, 1)  # the default; rotation metadata is applied
            width = int(round(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
            height = int(round(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
            codec = _fourcc(cap.get(cv2.CAP_PROP_FOURCC))
            if width <= 0 or height <= 0:
                raise UnsupportedVideoError(item, f"{what} has no video stream (audio only?); nothing to identify")
            if width * height > limit:
                raise VideoTooLargeError(
                    item, f"video frames of {width}x{height} = {width * height:,} pixels exceed the limit of "
                    f"{limit:,} (FACEDEX_MAX_PIXELS); refused before decoding frames")
            fps = cap.get(cv2.CAP_PROP_FPS)
            fps = float(fps) if math.isfinite(fps) and 0.0 < fps <= 1000.0 else None
            count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            count = int(count) if math.isfinite(count) and count > 0 else None
            duration = count / fps if count and fps else None
            rotation = int(round(cap.get(cv2.CAP_PROP_ORIENTATION_META) or 0)) % 360
            self.info = VideoInfo(item, "video", fmt or "video", codec, width, height, fps, count, duration, rotation,
                                  "opencv")
            self._frame_dt = 1.0 / fps if fps else 1.0 / 30.0
            self._primed = self._grab()
            if not self._primed:
                name = _UNDECODABLE.get(codec.lower())
                if name:
                    raise UnsupportedVideoError(
                        item, f"the video stream is {name} ({codec!r}), which the FFmpeg inside OpenCV cannot "
                        "decode; install the PyAV decoder (pip install 'facedex[video]'), or convert it, e.g. "
                        f"`ffmpeg -i {Path(item).name} -c:v libx264 out.mp4`")
                raise CorruptVideoError(
                    item, f"no frame of {what} (codec {codec or 'unknown'!r}) could be decoded: the stream is "
                    "damaged, or the FFmpeg inside OpenCV cannot decode this codec")
        except BaseException:
            self.close()
            raise
        log.debug("%s: %s %s %dx%d fps=%s frames=%s rotation=%d", item, fmt, codec, width, height, fps, count,
                  rotation)

    def _grab(self) -> bool:
        fails = 0
        while not self._cap.grab():
            fails += 1
            if fails > MAX_CONSECUTIVE_FAILURES:
                return False
        self._fails = fails
        if fails:
            self.broken_frames += fails
            log.info("%s: skipped %d undecodable frame(s) near frame %d", self.item, fails, self.frames_decoded)
        return True

    def frames(self, want: WantFrame | None = None) -> Iterator[Frame]:
        if self._cap is None:
            raise RuntimeError(f"{self.item}: frames() reads the video once; open it again to re-read")
        cv2 = self._cv2
        grabbed = self._primed
        self._primed = False
        timeline = _Timeline(self.info.fps)
        dt = timeline.dt
        try:
            while grabbed or self._grab():
                grabbed = False
                ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                t, lost = timeline.place(ms / 1000.0 if math.isfinite(ms) and ms >= 0 else None, self._fails)
                if lost:
                    self.broken_frames += lost
                    log.info("%s: %d frame(s) missing before %.3f s (damaged data skipped)", self.item, lost, t)
                index = self.frames_decoded
                self.frames_decoded += 1
                self.end_time = t + dt
                if want is None or want(t):
                    ok, bgr = self._cap.retrieve()
                    if not ok or bgr is None:
                        self.broken_frames += 1
                        continue
                    yield Frame(index, t, dt, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            _avi_shortfall(self)
            self._check_truncated()
        finally:
            self.close()

    def close(self) -> None:
        cap, self._cap = getattr(self, "_cap", None), None
        if cap is not None:
            cap.release()
        cleanup, self._cleanup = self._cleanup, None
        if cleanup is not None:
            cleanup()


def _avi_shortfall(src: FrameSource) -> None:
    """AVI timestamps are frame counters, so a dropped frame leaves no gap; its
    index lists every frame, so the shortfall is what was lost."""
    count = src.info.frame_count
    if src.info.format == "AVI" and count and src.frames_decoded + src.broken_frames < count:
        src.broken_frames = count - src.frames_decoded


def _pyav():
    """PyAV, or ``None`` when the ``video`` extra is not installed."""
    try:
        import av
    except ImportError:
        return None
    return av


def pyav_available() -> bool:
    return _pyav() is not None


class PyAVSource(FrameSource):
    """A video decoded by PyAV's FFmpeg (see the module doc): every codec of
    FFmpeg, AV1 through dav1d, decoded with FFmpeg's threads."""

    def __init__(self, source: "str | os.PathLike | io.BytesIO", item: str, fmt: str = "",
                 max_pixels: int | None = None):
        super().__init__()
        av = _pyav()
        if av is None:
            from ..errors import MissingDependencyError

            raise MissingDependencyError("av", "video", "decoding with PyAV")
        self.item = item
        self._av = av
        self._container = None
        self._stream = None
        limit = max_pixels if max_pixels is not None else config.max_pixels()
        what = f"the {fmt or 'video'} file"
        try:
            try:
                self._container = av.open(source if isinstance(source, io.IOBase) else str(source), mode="r",
                                          metadata_errors="ignore")
            except av.FFmpegError as err:
                raise CorruptVideoError(
                    item, f"FFmpeg cannot open {what}: it is damaged or truncated, or holds no video stream "
                          f"(audio only) ({_av_reason(err)})") from None
            streams = self._container.streams.video
            if not streams:
                raise UnsupportedVideoError(item, f"{what} has no video stream (audio only?); nothing to identify")
            stream = self._stream = streams[0]
            ctx = stream.codec_context
            codec = _codec_name(ctx)
            width, height = int(ctx.width or 0), int(ctx.height or 0)
            if width <= 0 or height <= 0:
                raise CorruptVideoError(item, f"{what}: the video stream ({codec or 'unknown codec'}) has no frame "
                                              "size; it is damaged")
            if width * height > limit:
                raise VideoTooLargeError(
                    item, f"video frames of {width}x{height} = {width * height:,} pixels exceed the limit of "
                    f"{limit:,} (FACEDEX_MAX_PIXELS); refused before decoding frames")
            fps = None
            for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
                if rate:
                    fps = float(rate)
                    if math.isfinite(fps) and 0.0 < fps <= 1000.0:
                        break
                    fps = None
            count = int(stream.frames) if stream.frames and stream.frames > 0 else None
            tb = stream.time_base
            duration = float(stream.duration * tb) if stream.duration and tb else None
            if duration is None and self._container.duration:
                duration = self._container.duration / 1_000_000
            if count is None and duration and fps:
                count = int(round(duration * fps))
            if duration is None and count and fps:
                duration = count / fps
            self._start = stream.start_time if stream.start_time is not None else 0
            self._tb = float(tb) if tb else None
            self.start_offset = self._start * self._tb if self._tb else 0.0
            stream.thread_type = "AUTO"
            self._packets = self._decoded()
            self._first = next(self._packets, None)
            if self._first is None:
                raise CorruptVideoError(
                    item, f"no frame of {what} (codec {codec or 'unknown'!r}) could be decoded: the stream is "
                          "damaged, or this FFmpeg cannot decode this codec")
            # the display matrix (phones), as FFmpeg reports it on frames: counter-clockwise degrees
            rotation = self._rotation = int(-round(getattr(self._first[0], "rotation", 0) or 0) / 90) * 90 % 360
            if rotation in (90, 270):
                width, height = height, width
            self.info = VideoInfo(item, "video", fmt or "video", codec, width, height, fps, count, duration,
                                  rotation, "pyav")
        except BaseException:
            self.close()
            raise
        log.debug("%s: %s %s %dx%d fps=%s frames=%s rotation=%d (PyAV)", item, fmt, codec, width, height, fps,
                  count, rotation)

    def _decoded(self) -> Iterator[tuple[Any, int]]:
        """``(av.VideoFrame, failed decodes just before it)`` for every decoded frame."""
        av = self._av
        fails = 0
        consecutive = 0
        try:
            for packet in self._container.demux(self._stream):
                try:
                    decoded = packet.decode()
                except av.FFmpegError as err:
                    if packet.size == 0:
                        break  # flushing at the end of the stream
                    fails += 1
                    consecutive += 1
                    self.broken_frames += 1
                    log.info("%s: undecodable frame near frame %d (%s)", self.item, self.frames_decoded,
                             _av_reason(err))
                    if consecutive > MAX_CONSECUTIVE_FAILURES:
                        return
                    continue
                for frame in decoded:
                    consecutive = 0
                    yield frame, fails
                    fails = 0
        except av.FFmpegError as err:  # the container breaks off
            log.info("%s: demuxing stopped at frame %d (%s)", self.item, self.frames_decoded, _av_reason(err))

    def frames(self, want: WantFrame | None = None) -> Iterator[Frame]:
        if self._container is None or self._packets is None:
            raise RuntimeError(f"{self.item}: frames() reads the video once; open it again to re-read")
        timeline = _Timeline(self.info.fps)
        dt = timeline.dt
        first, self._first = self._first, None
        packets, self._packets = self._packets, None
        tb, start = self._tb, self._start
        try:
            for frame, fails in _chain(first, packets):
                pts = frame.pts
                t = (pts - start) * tb if pts is not None and tb else None
                t, lost = timeline.place(t, fails)
                if lost:
                    self.broken_frames += lost
                    log.info("%s: %d frame(s) missing before %.3f s (damaged data skipped)", self.item, lost, t)
                index = self.frames_decoded
                self.frames_decoded += 1
                self.end_time = t + dt
                if want is None or want(t):
                    rgb = frame.to_ndarray(format="rgb24")
                    if self._rotation:
                        rgb = np.ascontiguousarray(np.rot90(rgb, -self._rotation // 90))
                    yield Frame(index, t, dt, rgb)
            _avi_shortfall(self)
            self._check_truncated()
        finally:
            self.close()

    def close(self) -> None:
        self._packets = None
        self._first = None
        container, self._container = getattr(self, "_container", None), None
        if container is not None:
            container.close()


def _chain(first, rest):
    if first is not None:
        yield first
    yield from rest


def _av_reason(err: BaseException) -> str:
    text = getattr(err, "strerror", None) or str(err)
    return text.split(": '", 1)[0] if isinstance(text, str) else str(err)


def _codec_name(ctx) -> str:
    """FFmpeg's name of the codec (``h264``, ``hevc``, ``vp9``, ``av1``), not of the decoder (``libdav1d``)."""
    codec = getattr(ctx, "codec", None)
    return (getattr(codec, "canonical_name", None) or getattr(codec, "name", None) or getattr(ctx, "name", "") or "")


#: Browsers show GIF frames with a delay of 10 ms or less for 100 ms.
MIN_GIF_DELAY = 0.011
DEFAULT_GIF_DELAY = 0.1


def _header_size(head: bytes) -> tuple[int, int] | None:
    """Canvas size from the header of a GIF, PNG or extended WebP, read before
    Pillow is asked (it refuses very large images with a message of its own)."""
    import struct

    if head[:6] in (b"GIF87a", b"GIF89a") and len(head) >= 10:
        return struct.unpack("<HH", head[6:10])
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR" and len(head) >= 24:
        return struct.unpack(">II", head[16:24])
    if head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and len(head) >= 30:
        w = int.from_bytes(head[24:27], "little") + 1
        h = int.from_bytes(head[27:30], "little") + 1
        return w, h
    return None


def _too_large(item: str, width: int, height: int, limit: int) -> VideoTooLargeError:
    return VideoTooLargeError(
        item, f"{width}x{height} = {width * height:,} pixels exceeds the limit of {limit:,} "
        "(FACEDEX_MAX_PIXELS); refused before decoding")


class PillowSource(FrameSource):
    """An animated GIF, WebP or PNG, frame by frame with each frame's duration."""

    def __init__(self, fp, item: str, fmt: str = "", max_pixels: int | None = None):
        super().__init__()
        from PIL import Image, UnidentifiedImageError

        self.item = item
        limit = max_pixels if max_pixels is not None else config.max_pixels()
        if isinstance(fp, io.BytesIO):
            head = fp.getvalue()[:32]
        else:
            with open(fp, "rb") as fh:
                head = fh.read(32)
        size = _header_size(head)
        if size is not None and size[0] * size[1] > limit:
            raise _too_large(item, size[0], size[1], limit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                self._im = Image.open(fp)
        except Image.DecompressionBombError as err:
            raise VideoTooLargeError(item, f"refused as a decompression bomb ({err})") from None
        except UnidentifiedImageError:
            raise CorruptVideoError(item, f"starts like a {fmt or 'GIF'} file but its header is damaged") from None
        except (OSError, SyntaxError, ValueError) as err:
            raise CorruptVideoError(item, f"cannot read the {fmt or 'animation'} header ({err})") from err
        im = self._im
        width, height = im.size
        if width * height > limit:
            self.close()
            raise _too_large(item, width, height, limit)
        if width == 0 or height == 0:
            self.close()
            raise CorruptVideoError(item, f"animation has no pixels ({width}x{height})")
        try:
            count = int(getattr(im, "n_frames", 1))
        except (OSError, SyntaxError, ValueError, EOFError):
            count = None  # a damaged frame somewhere: found while decoding
        self.loop = im.info.get("loop")  # None: play once
        self.info = VideoInfo(item, "animation", fmt or (im.format or "animation"), im.format or "", width, height,
                              None, count, None, 0, "pillow")

    def frames(self, want: WantFrame | None = None) -> Iterator[Frame]:
        from .image import load_image

        im = self._im
        if im is None:
            raise RuntimeError(f"{self.item}: frames() reads the animation once; open it again to re-read")
        t = 0.0
        i = 0
        try:
            while self.info.frame_count is None or i < self.info.frame_count:
                try:
                    im.seek(i)
                    ms = im.info.get("duration")
                    dt = float(ms) / 1000.0 if isinstance(ms, (int, float)) and ms > 0 else 0.0
                    dt = DEFAULT_GIF_DELAY if dt < MIN_GIF_DELAY else dt
                    take = want is None or want(t)
                    rgb = load_image(im) if take else None
                    if rgb is None:
                        im.load()
                except EOFError:
                    break
                except (OSError, SyntaxError, ValueError, MediaError) as err:
                    # A damaged frame; later frames depend on it, so stop here.
                    remaining = (self.info.frame_count or i + 1) - i
                    self.broken_frames += remaining
                    log.info("%s: frame %d cannot be decoded (%s); %d frame(s) skipped", self.item, i, err, remaining)
                    self.warnings.append(f"frame {i} and later could not be decoded ({err})")
                    break
                self.frames_decoded += 1
                self.end_time = t + dt
                if rgb is not None:
                    yield Frame(i, t, dt, rgb)
                t += dt
                i += 1
        finally:
            self.close()

    def close(self) -> None:
        im, self._im = getattr(self, "_im", None), None
        if im is not None:
            im.close()


class ArraySource(FrameSource):
    """Frames you already have (a webcam, your own decoder): RGB ``uint8``
    arrays, or ``(time_seconds, array)`` pairs, at ``fps`` when times are not given."""

    def __init__(self, frames: Iterable, fps: float = 30.0, name: str = "<frames>",
                 max_pixels: int | None = None):
        super().__init__()
        if not (math.isfinite(fps) and fps > 0):
            raise MediaError(name, f"fps must be positive, got {fps}")
        self._it = iter(frames)
        self._dt = 1.0 / fps
        self._limit = max_pixels if max_pixels is not None else config.max_pixels()
        self.item = name
        self.info = VideoInfo(name, "video", "frames", "", 0, 0, fps, None, None, 0, "frames")

    def frames(self, want: WantFrame | None = None) -> Iterator[Frame]:
        from .image import load_image

        prev_t = None
        for i, item in enumerate(self._it):
            if isinstance(item, tuple) and len(item) == 2:
                t, arr = float(item[0]), item[1]
            else:
                t, arr = i * self._dt, item
            if prev_t is not None and t <= prev_t:
                raise MediaError(self.item, f"frame {i}: time {t} is not after the previous frame's {prev_t}")
            prev_t = t
            self.frames_decoded += 1
            self.end_time = t + self._dt
            if want is None or want(t):
                rgb = load_image(np.asarray(arr), name=f"{self.item} frame {i}", max_pixels=self._limit)
                if self.info.width == 0:
                    h, w = rgb.shape[:2]
                    self.info = VideoInfo(self.item, "video", "frames", "", w, h, 1.0 / self._dt, None, None, 0,
                                          "frames")
                yield Frame(i, t, self._dt, rgb)


def _not_video(item: str, kind: Sniffed, head: bytes) -> MediaError:
    if kind.kind == "audio":
        return UnsupportedVideoError(item, f"{kind.format} has no video stream (audio only); nothing to identify")
    what = kind.format or describe_bytes(head)
    return UnsupportedVideoError(item, f"not a supported video or animation (the content looks like {what}); "
                                       f"supported: {SUPPORTED}")


#: Video decoders by name (``FACEDEX_VIDEO_DECODER``, ``open_video(decoder=…)``).
DECODERS: dict[str, Callable[..., FrameSource]] = {"pyav": PyAVSource, "opencv": OpenCVSource}


def video_decoder(name: str | None = None) -> str:
    """The decoder to use: ``name`` (``"auto"``, ``"pyav"``, ``"opencv"``; ``None``
    reads ``FACEDEX_VIDEO_DECODER``), with ``auto`` meaning PyAV when installed."""
    from ..errors import ConfigError, MissingDependencyError

    name = (name or config.video_decoder()).lower()
    if name == "auto":
        return "pyav" if pyav_available() else "opencv"
    if name not in DECODERS:
        raise ConfigError(f"unknown video decoder {name!r}; known: auto, {', '.join(DECODERS)}")
    if name == "pyav" and not pyav_available():
        raise MissingDependencyError("av", "video", "the PyAV video decoder")
    return name


def _open_file(source, item: str, fmt: str, max_pixels: int | None, decoder: str | None,
               cleanup: Callable[[], None] | None = None) -> FrameSource:
    """A video through the chosen decoder. With ``auto``, a file PyAV cannot
    open or decode is tried with OpenCV before the error is reported."""
    chosen = video_decoder(decoder)
    if chosen == "opencv":
        if isinstance(source, io.BytesIO):
            fd, tmp = tempfile.mkstemp(prefix="facedex-video-", suffix=".bin")
            with os.fdopen(fd, "wb") as fh:
                fh.write(source.getbuffer())
            return OpenCVSource(tmp, item, fmt, max_pixels, cleanup=lambda: Path(tmp).unlink(missing_ok=True))
        return OpenCVSource(source, item, fmt, max_pixels, cleanup=cleanup)
    try:
        return PyAVSource(source, item, fmt, max_pixels)
    except CorruptVideoError as err:
        if (decoder or config.video_decoder()) != "auto":
            raise
        try:
            if isinstance(source, io.BytesIO):
                source.seek(0)
            src = _open_file(source, item, fmt, max_pixels, "opencv")
        except MediaError:
            raise err from None
        log.info("%s: PyAV could not read it (%s); OpenCV could", item, err)
        return src


def open_video(source: str | os.PathLike | bytes, *, name: str | None = None,
               max_pixels: int | None = None, kind: Sniffed | None = None,
               decoder: str | None = None) -> FrameSource:
    """Open a video or an animated image for decoding, by its content.

    ``source`` is a path or the file's bytes. A still image opens as a
    one-frame animation. ``decoder`` chooses the video decoder (``"auto"``,
    ``"pyav"``, ``"opencv"``; default ``FACEDEX_VIDEO_DECODER``, else auto:
    PyAV when installed). Raises a :class:`facedex.errors.MediaError` subclass
    that names the input and says what is wrong.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        item = name or "<bytes>"
        if not data:
            raise CorruptMediaError(item, "empty file (0 bytes)")
        kind = kind or sniff(data, max_pixels)
        if kind.kind in ("animation", "image"):
            return PillowSource(io.BytesIO(data), item, kind.format, max_pixels)
        if kind.kind != "video":
            raise _not_video(item, kind, data[:600])
        return _open_file(io.BytesIO(data), item, kind.format, max_pixels, decoder)
    path = Path(source)
    item = name or str(source)
    check_input_file(path, item, "a video")
    kind = kind or sniff(path, max_pixels)
    if kind.kind in ("animation", "image"):
        return PillowSource(path, item, kind.format, max_pixels)
    if kind.kind != "video":
        try:
            with open(path, "rb") as fh:
                head = fh.read(600)
        except OSError as err:
            raise MediaError(item, f"cannot read ({err.strerror or err})") from err
        raise _not_video(item, kind, head)
    return _open_file(path, item, kind.format, max_pixels, decoder)
