"""Annotated copies of videos and animations, and contact sheets of tracks.

:func:`write_annotated` decodes the input a second time (the names are known
only once each track has ended) and draws every track's box on every frame —
interpolated between sampled frames — with its number and its decision.
Videos are written as MP4 (MPEG-4 Part 2, the encoder that the FFmpeg inside
OpenCV offers; VLC, mpv, QuickTime and Windows play it, browsers need H.264:
``ffmpeg -i out.mp4 -c:v libx264 web.mp4``) at the input's nominal frame
rate; animated GIF, WebP and PNG are written in their own format with their
own frame durations. :func:`contact_sheet` makes a PNG with each track's best
face. Files are written with :func:`facedex.files.atomic_path` (an exclusive
temporary file, renamed into place).
"""

from __future__ import annotations

import bisect
import logging
import math
import os
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
    held after the last one until the track's ``last_seen``."""

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
            times = self.times[k]
            i = bisect.bisect_right(times, t + 1e-6) - 1
            if i < 0:
                continue
            a = tr.points[i]
            if i + 1 < len(times):
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


def write_annotated(source, tracks: Sequence[Track], out: str | os.PathLike,
                    *, name: str | None = None, max_pixels: int | None = None) -> Path:
    """Write ``source`` with ``tracks`` drawn on every frame to ``out``.

    ``source`` is a :class:`facedex.media.Motion` (opened again without being
    sniffed again), a path or bytes. Give ``out`` the suffix of
    :func:`output_suffix` (``.mp4`` for videos, the animation's own format
    otherwise); returns the path written.
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
                _write_video(frames, boxes, tmp)
    finally:
        frames.close()
    return out


def _write_video(frames: FrameSource, boxes: _Boxes, tmp: Path) -> None:
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
