"""Decode videos and animations into a stream of RGB frames with timestamps.

Two backends, looked up by the kind of file (see :mod:`facedex.media.sniff`):

``ffmpeg``
    Videos, through OpenCV's ``VideoCapture`` (the FFmpeg inside
    ``opencv-python-headless``). Rotation metadata is applied by FFmpeg
    (``CAP_PROP_ORIENTATION_AUTO``); timestamps are the frames' presentation
    times. A frame the decoder cannot decode is skipped and counted in
    ``broken_frames``; so are frames missing from the timeline of a
    constant-frame-rate stream (damaged data the demuxer skipped: the next
    timestamp comes a whole number of frames late), and, for AVI (whose index
    lists every frame but whose timestamps are frame counters), frames the
    index lists that never came. Once the intervals between frames vary
    (variable frame rate), gaps are no longer counted. Damage the decoder
    conceals (a garbled picture) is not counted: FFmpeg does not report it. Decoding
    stops only after many consecutive failures (the end of the stream, or a
    file that breaks off). FFmpeg's own messages are silenced through
    ``OPENCV_FFMPEG_LOGLEVEL`` (unless you set it), which OpenCV reads when its
    FFmpeg is first used in the process.
``pillow``
    Animated GIF, WebP and PNG, frame by frame with each frame's own
    duration. A duration of 10 ms or less is shown by browsers as 100 ms, and
    counted so here too.

Both stream: one frame is held at a time, whatever the length of the video.
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
from pathlib import Path
from dataclasses import dataclass
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
    animated GIF, WebP or PNG, decoded with Pillow). ``width``/``height`` are
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

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": self.format, "codec": self.codec, "width": self.width,
                "height": self.height, "fps": None if self.fps is None else round(self.fps, 3),
                "frame_count": self.frame_count, "duration": _t(self.duration), "rotation": self.rotation}


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
            self.info = VideoInfo(item, "video", fmt or "video", codec, width, height, fps, count, duration, rotation)
            self._frame_dt = 1.0 / fps if fps else 1.0 / 30.0
            self._primed = self._grab()
            if not self._primed:
                name = _UNDECODABLE.get(codec.lower())
                if name:
                    raise UnsupportedVideoError(
                        item, f"the video stream is {name} ({codec!r}), which the FFmpeg inside OpenCV cannot "
                        f"decode; convert it, e.g. `ffmpeg -i {Path(item).name} -c:v libx264 out.mp4`")
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
        prev_t: float | None = None
        grabbed = self._primed
        self._primed = False
        index = 0
        regular = self.info.fps is not None  # constant frame rate so far: gaps are lost frames
        dt = self._frame_dt
        try:
            while grabbed or self._grab():
                grabbed = False
                ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
                t = ms / 1000.0 if math.isfinite(ms) and ms >= 0 else index * dt
                if prev_t is not None:
                    if t <= prev_t:
                        t = prev_t + dt  # missing or repeated timestamps
                    elif regular:
                        ratio = (t - prev_t) / dt
                        k = round(ratio)
                        lost = k - 1 - self._fails  # failed reads were counted already
                        if k >= 2 and abs(ratio - k) < 0.15 and lost > 0:
                            self.broken_frames += lost
                            log.info("%s: %d frame(s) missing before %.3f s (damaged data skipped)",
                                     self.item, lost, t)
                        elif abs(ratio - 1) > 0.15:
                            regular = False  # a variable frame rate: gaps are not losses
                prev_t = t
                self.frames_decoded += 1
                self.end_time = t + dt
                if want is None or want(t):
                    ok, bgr = self._cap.retrieve()
                    if not ok or bgr is None:
                        self.broken_frames += 1
                        index += 1
                        continue
                    yield Frame(index, t, dt, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
                index += 1
            count = self.info.frame_count
            if self.info.format == "AVI" and count and self.frames_decoded + self.broken_frames < count:
                # AVI timestamps are frame counters, so a dropped frame leaves no gap;
                # its index lists every frame, so the shortfall is what was lost.
                self.broken_frames = count - self.frames_decoded
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
                              None, count, None, 0)

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
        self.info = VideoInfo(name, "video", "frames", "", 0, 0, fps, None, None, 0)

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
                    self.info = VideoInfo(self.item, "video", "frames", "", w, h, 1.0 / self._dt, None, None, 0)
                yield Frame(i, t, self._dt, rgb)


def _not_video(item: str, kind: Sniffed, head: bytes) -> MediaError:
    if kind.kind == "audio":
        return UnsupportedVideoError(item, f"{kind.format} has no video stream (audio only); nothing to identify")
    what = kind.format or describe_bytes(head)
    return UnsupportedVideoError(item, f"not a supported video or animation (the content looks like {what}); "
                                       f"supported: {SUPPORTED}")


def open_video(source: str | os.PathLike | bytes, *, name: str | None = None,
               max_pixels: int | None = None, kind: Sniffed | None = None) -> FrameSource:
    """Open a video or an animated image for decoding, by its content.

    ``source`` is a path or the file's bytes. A still image opens as a
    one-frame animation. Raises a :class:`facedex.errors.MediaError` subclass
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
        fd, tmp = tempfile.mkstemp(prefix="facedex-video-", suffix=".bin")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return OpenCVSource(tmp, item, kind.format, max_pixels, cleanup=lambda: Path(tmp).unlink(missing_ok=True))
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
    return OpenCVSource(path, item, kind.format, max_pixels)
