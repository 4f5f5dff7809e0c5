"""Annotated copies of videos and animations, and contact sheets of tracks.

:func:`write_annotated` decodes the input a second time (the names are known
only once each track has ended) and draws every track's box on every frame —
interpolated between sampled frames — with its number and its decision.

Videos are written as **H.264 (yuv420p) in MP4 with the ``moov`` atom first
(faststart)**, which every browser plays, with the input's **audio**
re-encoded as AAC, at the input frames' own timestamps — through PyAV (the
``video`` extra, whose FFmpeg carries libx264). Without PyAV the copy is
written as before through OpenCV: MPEG-4 Part 2 (``mp4v``) without audio, at
the nominal frame rate, which VLC, mpv, QuickTime and Windows play but
browsers do not; a warning says so and how to get H.264
(``pip install 'facedex[video]'``). Animated GIF, WebP and PNG are written in
their own format with their own frame durations. :func:`contact_sheet` makes
a PNG with each track's best face. Files are written with
:func:`facedex.files.atomic_path` (an exclusive temporary file, renamed into
place).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import MediaError
from ..files import atomic_path
from ..media.video import FrameSource, VideoInfo, open_video
from ..video.types import Track, format_time
from .draw import KNOWN, UNKNOWN, labelled_box
from .draw import font as _font

log = logging.getLogger(__name__)

_ANIMATION_SUFFIX = {"GIF": ".gif", "WebP": ".webp", "PNG": ".png"}


def output_suffix(info: VideoInfo) -> str:
    """The suffix of the annotated copy: ``.mp4`` for videos, the animation's own otherwise."""
    if info.kind == "animation":
        return _ANIMATION_SUFFIX.get(info.format, ".gif")
    return ".mp4"


class _Boxes:
    """Each track's box at any time: interpolated between its sampled frames,
    held after the last one of a segment until the segment's end; nothing
    between the segments of a track joined across an occlusion or a cut."""

    def __init__(self, tracks: Sequence[Track]):
        self.tracks = sorted(tracks, key=lambda t: t.first_seen)
        self.starts = [t.first_seen for t in self.tracks]
        self.times = [[p.time for p in t.points] for t in self.tracks]

    def at(self, t: float) -> list[tuple[Track, tuple[float, float, float, float]]]:
        out = []
        for k in range(bisect.bisect_right(self.starts, t + 1e-6)):
            tr = self.tracks[k]
            if not (tr.first_seen - 1e-6 <= t < tr.last_seen - 1e-9) or not tr.points:
                continue
            seg = next(((a, b) for a, b in tr.ranges if a - 1e-6 <= t < b - 1e-9), None)
            if seg is None:
                continue  # between two fragments of the track (an occlusion, a cut away)
            times = self.times[k]
            i = bisect.bisect_right(times, t + 1e-6) - 1
            if i < 0:
                continue
            a = tr.points[i]
            if i + 1 < len(times) and times[i + 1] < seg[1] + 1e-6:
                b = tr.points[i + 1]
                f = (t - a.time) / max(b.time - a.time, 1e-9)
                box = tuple(float(x + f * (y - x)) for x, y in zip(a.box, b.box))
            else:
                box = a.box
            out.append((tr, box))
        return out


def draw_tracks(rgb: np.ndarray, items: Sequence[tuple[Track, Sequence[float]]]) -> np.ndarray:
    """A copy of the frame with each track's box and label ("#3 Name 0.81" or "#4 unknown")."""
    im = Image.fromarray(rgb)
    draw = ImageDraw.Draw(im)
    short = min(im.size)
    width = max(2, short // 300)
    fnt = _font(max(12, short // 40))
    for tr, box in items:
        color = KNOWN if tr.known else UNKNOWN
        label = f"#{tr.track} {tr.name} {tr.similarity:.2f}" if tr.known else f"#{tr.track} unknown"
        labelled_box(draw, box, label, color, width, fnt, im.size[0])
    return np.asarray(im)


#: The H.264 encoders tried, in order (libx264 is in PyAV's wheels).
H264_ENCODERS = ("libx264", "libopenh264")
#: x264 settings: visually lossless for drawn boxes on typical footage, fast on a CPU.
X264_OPTIONS = {"preset": "veryfast", "crf": "20", "profile": "high"}
AUDIO_BITRATE = 128_000
_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000)
_warned_fallback = False


def h264_encoder() -> str | None:
    """The H.264 encoder PyAV offers here, or ``None`` (PyAV missing, or built without one)."""
    from ..media.video import _pyav

    av = _pyav()
    if av is None:
        return None
    for name in H264_ENCODERS:
        try:
            av.codec.Codec(name, "w")
        except Exception:  # noqa: BLE001 - av raises UnknownCodecError (and others across versions)
            continue
        return name
    return None


def write_annotated(source, tracks: Sequence[Track], out: str | os.PathLike,
                    *, name: str | None = None, max_pixels: int | None = None, audio: bool = True) -> Path:
    """Write ``source`` with ``tracks`` drawn on every frame to ``out``.

    ``source`` is a :class:`facedex.media.Motion` (opened again without being
    sniffed again), a path or bytes. Give ``out`` the suffix of
    :func:`output_suffix` (``.mp4`` for videos, the animation's own format
    otherwise); returns the path written. A video becomes H.264 + AAC MP4
    (faststart) when PyAV is installed — with the input's audio unless
    ``audio`` is false — else MPEG-4 Part 2 without audio (see the module doc).
    """
    from ..media.inputs import Motion

    out = Path(out)
    frames = source.open() if isinstance(source, Motion) else open_video(source, name=name, max_pixels=max_pixels)
    boxes = _Boxes(tracks)
    try:
        with atomic_path(out) as tmp:
            if frames.info.kind == "animation":
                _write_animation(frames, boxes, tmp)
            else:
                encoder = h264_encoder()
                if encoder is not None:
                    _write_h264(frames, boxes, tmp, encoder, _audio_source(source) if audio else None)
                else:
                    _warn_fallback()
                    _write_video(frames, boxes, tmp)
    finally:
        frames.close()
    return out


def _warn_fallback() -> None:
    global _warned_fallback
    if not _warned_fallback:
        _warned_fallback = True
        log.warning("PyAV with an H.264 encoder is not installed: annotated videos are written as MPEG-4 Part 2 "
                     "(mp4v) without audio, which browsers do not play; pip install 'facedex[video]' for H.264 "
                     "with the original audio")


def _audio_source(source):
    """What to open for the input's audio: a path, or the bytes in a buffer."""
    import io

    from ..media.inputs import Motion

    if isinstance(source, Motion):
        source = source.input.data if source.input.data is not None else source.input.path
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source))
    return None if source is None else str(source)


class _Audio:
    """The input's first audio stream, decoded lazily and re-encoded as AAC into
    ``out`` (interleaved with the video by time). Any failure to read it drops
    the audio with a log message; the video is still written."""

    def __init__(self, av, src, out, video_start: float):
        self.av = av
        self.container = None
        self.stream = None
        self._frames = None
        self.done = True
        try:
            self.container = av.open(src, mode="r", metadata_errors="ignore")
            if not self.container.streams.audio:
                self.close()
                return
            ins = self.container.streams.audio[0]
            rate = ins.codec_context.sample_rate or 48000
            rate = rate if rate in _AAC_RATES else 48000
            channels = ins.codec_context.channels or 1
            layout = "mono" if channels == 1 else "stereo"
            self.stream = out.add_stream("aac", rate=rate)
            self.stream.layout = layout
            self.stream.bit_rate = AUDIO_BITRATE
            self.rate = rate
            self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=rate)
            self.start = video_start
            self.next_pts: int | None = None
            self._frames = self._decode(ins)
            self.done = False
        except (av.FFmpegError, ValueError, OSError) as err:
            log.info("audio of the input not copied: %s", err)
            self.close()

    def _decode(self, ins):
        av = self.av
        try:
            for packet in self.container.demux(ins):
                try:
                    decoded = packet.decode()
                except av.FFmpegError:
                    continue  # a damaged audio packet: skipped
                for frame in decoded:
                    t = float(frame.pts * frame.time_base) - self.start if frame.pts is not None else None
                    for rf in self.resampler.resample(frame):
                        yield t, rf
            for rf in self.resampler.resample(None):
                yield None, rf
        except av.FFmpegError as err:
            log.info("audio of the input ends early: %s", err)

    def write_until(self, out, t: float | None) -> None:
        """Encode audio up to ``t`` seconds (all of it when ``None``)."""
        if self.done:
            return
        for at, frame in self._frames:
            if self.next_pts is None:
                self.next_pts = max(0, int(round((at or 0.0) * self.rate)))
            frame.pts = self.next_pts
            frame.time_base = Fraction(1, self.rate)
            self.next_pts += frame.samples
            for packet in self.stream.encode(frame):
                out.mux(packet)
            if t is not None and self.next_pts / self.rate > t:
                return
        for packet in self.stream.encode(None):
            out.mux(packet)
        self.done = True

    def close(self) -> None:
        container, self.container = self.container, None
        if container is not None:
            container.close()


def _write_h264(frames: FrameSource, boxes: _Boxes, tmp: Path, encoder: str, audio_src) -> None:
    """H.264 yuv420p MP4 with faststart, frames at their own times, AAC audio."""
    from ..media.video import _pyav

    av = _pyav()
    info = frames.info
    fps = Fraction(info.fps or 25.0).limit_denominator(1001)
    tb = Fraction(1, 90000)
    wrote = 0
    with av.open(str(tmp), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        vs = None
        audio = None
        last_pts = -1
        for frame in frames.frames():
            rgb = draw_tracks(frame.rgb, boxes.at(frame.time))
            h, w = rgb.shape[:2]
            if h % 2 or w % 2:  # yuv420p needs even sides: repeat the last row/column
                rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            if vs is None:
                options = dict(X264_OPTIONS) if encoder == "libx264" else {}
                options["g"] = str(max(1, int(round(2 * float(fps)))))  # a key frame every 2 s: seeking
                vs = out.add_stream(encoder, rate=fps, options=options)
                vs.width, vs.height = rgb.shape[1], rgb.shape[0]
                vs.pix_fmt = "yuv420p"
                vs.time_base = tb
                vs.codec_context.time_base = tb
                if audio_src is not None:
                    audio = _Audio(av, audio_src, out, frames.start_offset)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            pts = max(last_pts + 1, int(round(frame.time / tb)))
            vf.pts, vf.time_base, last_pts = pts, tb, pts
            for packet in vs.encode(vf):
                out.mux(packet)
            wrote += 1
            if audio is not None:
                audio.write_until(out, frame.time + 0.5)
        if vs is None:
            raise MediaError(info.input, "no frame could be decoded for the annotated copy")
        for packet in vs.encode(None):
            out.mux(packet)
        if audio is not None:
            audio.write_until(out, None)
            audio.close()
    log.debug("%s: %d frames written as H.264 (%s)%s", info.input, wrote, encoder,
              " with audio" if audio is not None and audio.stream is not None else "")


def _write_video(frames: FrameSource, boxes: _Boxes, tmp: Path) -> None:
    """The fallback: MPEG-4 Part 2 (mp4v) through OpenCV, at the nominal frame rate, no audio."""
    import cv2

    info = frames.info
    fps = info.fps or 25.0
    writer = None
    try:
        for frame in frames.frames():
            if writer is None:
                h, w = frame.rgb.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
                if not writer.isOpened():
                    raise MediaError(str(tmp), "OpenCV cannot write an MP4 (mp4v) video here")
            drawn = draw_tracks(frame.rgb, boxes.at(frame.time))
            writer.write(np.ascontiguousarray(drawn[:, :, ::-1]))
    finally:
        if writer is not None:
            writer.release()
    if writer is None:
        raise MediaError(info.input, "no frame could be decoded for the annotated copy")


def _write_animation(frames: FrameSource, boxes: _Boxes, tmp: Path) -> None:
    fmt = frames.info.format
    images, durations = [], []
    for frame in frames.frames():
        drawn = Image.fromarray(draw_tracks(frame.rgb, boxes.at(frame.time)))
        images.append(drawn.convert("P", palette=Image.Palette.ADAPTIVE, colors=256) if fmt == "GIF" else drawn)
        durations.append(max(1, int(round(frame.duration * 1000))))
    if not images:
        raise MediaError(frames.info.input, "no frame could be decoded for the annotated copy")
    pil_format = {"GIF": "GIF", "WebP": "WEBP", "PNG": "PNG"}.get(fmt, "GIF")
    extra = {}
    loop = getattr(frames, "loop", None)
    if loop is not None:  # a GIF without a loop count plays once; keep it so
        extra["loop"] = loop
    images[0].save(tmp, format=pil_format, save_all=True, append_images=images[1:], duration=durations, **extra)


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int, tail: str = "") -> str:
    """``text + tail``, with ``text`` shortened by an ellipsis so that the whole
    fits ``width`` pixels; ``tail`` (a similarity, a count) is never cut."""
    if draw.textlength(text + tail, font=font) <= width:
        return text + tail
    while text and draw.textlength(text + "…" + tail, font=font) > width:
        text = text[:-1]
    return text + "…" + tail


def contact_sheet(tracks: Sequence[Track], out: str | os.PathLike, *, title: str | None = None,
                  cell: int = 160, columns: int = 6) -> Path:
    """A PNG with one cell per track: its best face, number, decision,
    similarity and time on screen. Returns the path written."""
    out = Path(out)
    tracks = sorted(tracks, key=lambda t: (t.first_seen, t.track))
    font = _font(13)
    big = _font(15)
    line = 17
    text_h = 3 * line + 6
    cols = max(1, min(columns, len(tracks) or 1))
    rows = max(1, math.ceil(len(tracks) / cols))
    head = 2 * line + 8 if title else 0
    pad = 8
    sheet = Image.new("RGB", (max(cols * (cell + pad) + pad, 2 * cell + 3 * pad), head + rows * (cell + text_h + pad) + pad), (250, 250, 250))
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((pad, pad), _fit(draw, title, big, sheet.size[0] - 2 * pad), fill=(20, 20, 20), font=big)
    if not tracks:
        draw.text((pad, head + pad), "no faces found", fill=(90, 90, 90), font=font)
    for i, tr in enumerate(tracks):
        r, c = divmod(i, cols)
        x0, y0 = pad + c * (cell + pad), head + pad + r * (cell + text_h + pad)
        color = KNOWN if tr.known else UNKNOWN
        draw.rectangle([x0 - 2, y0 - 2, x0 + cell + 1, y0 + cell + 1], outline=color, width=2)
        if tr.thumbnail is not None and tr.thumbnail.size:
            thumb = Image.fromarray(tr.thumbnail)
            thumb.thumbnail((cell, cell))
            sheet.paste(thumb, (x0 + (cell - thumb.size[0]) // 2, y0 + (cell - thumb.size[1]) // 2))
        ty = y0 + cell + 4
        draw.text((x0, ty), _fit(draw, f"#{tr.track} {tr.name if tr.known else 'unknown'}", big, cell),
                  fill=color, font=big)
        if tr.known:
            detail = _fit(draw, "similarity", font, cell, f" {tr.similarity:.2f}")
        elif tr.candidates:
            detail = _fit(draw, f"closest {tr.candidates[0].name}", font, cell, f" {tr.candidates[0].similarity:.2f}")
        else:
            detail = ""
        draw.text((x0, ty + line), detail, fill=(60, 60, 60), font=font)
        when = f"{format_time(tr.first_seen)} - {format_time(tr.last_seen)}, {tr.frames} fr"
        draw.text((x0, ty + 2 * line), _fit(draw, when, font, cell), fill=(60, 60, 60), font=font)
    with atomic_path(out) as tmp:
        sheet.save(tmp, format="PNG")
    return out
