"""Synthetic videos and GIFs with known ground truth, made from LFW stills.

A clip is a list of shots (a scene cut between shots: the background
changes); each shot has actors. An actor is one LFW person shown through a
few of their photos (cross-faded, so the face changes expression, lighting
and pose as a real face would), moving along a path of keyframes
``(t, x, y, size)`` — ``x``/``y`` the centre as a fraction of the frame,
``size`` the width of the face patch in pixels — linearly interpolated; a
path may leave the frame (the face is cropped by the edge). Photos are read
in place from the LFW folder, never copied.

Used by ``tests/test_video*.py`` and by ``bench/video_bench.py``; no facedex
code is used to make the clips, so they are independent ground truth.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np
from PIL import Image

# The central region of a 250x250 LFW photo that holds the face (and little
# of the background, where other people's faces sometimes are).
_CROP = (45, 40, 205, 210)  # x0, y0, x1, y1: 160 wide, 170 tall


@dataclass
class Actor:
    person: str                    # LFW name
    images: Sequence[Path]         # photos of that person, shown in turn
    path: Sequence[tuple[float, float, float, float]]  # keyframes (t, x_frac, y_frac, size_px)
    known: bool = True             # enrolled in the gallery (False: a stranger)
    hold: float = 1.2              # seconds per photo before cross-fading to the next

    @property
    def start(self) -> float:
        return self.path[0][0]

    @property
    def end(self) -> float:
        return self.path[-1][0]

    def at(self, t: float) -> tuple[float, float, float] | None:
        if t < self.start or t > self.end:
            return None
        pts = self.path
        for (t0, x0, y0, s0), (t1, x1, y1, s1) in zip(pts, pts[1:]):
            if t0 <= t <= t1:
                a = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return x0 + a * (x1 - x0), y0 + a * (y1 - y0), s0 + a * (s1 - s0)
        t0, x0, y0, s0 = pts[-1]
        return x0, y0, s0


@dataclass
class Shot:
    start: float
    end: float
    background: int                # seed of the background
    actors: list[Actor] = field(default_factory=list)
    pan: float = 12.0              # background pan, pixels per second (camera motion)


@dataclass
class ClipSpec:
    name: str
    shots: list[Shot]
    width: int = 480
    height: int = 270
    fps: float = 15.0
    blur: float = 0.0              # Gaussian blur sigma of the faces (defocus)
    noise: float = 0.0             # Gaussian pixel noise (std, 0-255)
    jpeg: int | None = None        # re-encode each frame as JPEG at this quality first
    dim: float = 1.0               # brightness factor of the faces (low light < 1)

    @property
    def duration(self) -> float:
        return max(s.end for s in self.shots)

    @property
    def frame_count(self) -> int:
        return int(round(self.duration * self.fps))


@dataclass(frozen=True)
class Truth:
    """Ground truth of one frame: each visible actor's face box."""

    time: float
    actors: tuple[tuple[str, bool, int, tuple[float, float, float, float]], ...]  # person, known, shot, box


@functools.lru_cache(maxsize=256)
def _patch(path: str) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    x0, y0, x1, y1 = _CROP
    crop = rgb[y0:y1, x0:x1].astype(np.float32)
    h, w = crop.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    r = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
    mask = np.clip((1.0 - r) / 0.25, 0.0, 1.0).astype(np.float32)  # feathered ellipse
    return crop, mask


@functools.lru_cache(maxsize=32)
def _background(seed: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w2, h2 = width * 2, height
    base = rng.integers(0, 256, size=(3, 3, 3)).astype(np.float32)
    grad = cv2.resize(base, (w2, h2), interpolation=cv2.INTER_CUBIC)
    texture = cv2.resize(rng.normal(0, 28, size=(h2 // 16 + 1, w2 // 16 + 1, 3)).astype(np.float32), (w2, h2),
                         interpolation=cv2.INTER_LINEAR)
    img = grad + texture
    for _ in range(8):  # some furniture
        x, y = int(rng.integers(0, w2)), int(rng.integers(0, h2))
        cw, ch = int(rng.integers(20, w2 // 4)), int(rng.integers(20, h2 // 3))
        img[y:y + ch, x:x + cw] = rng.integers(0, 256, size=3)
    return np.clip(img, 0, 255).astype(np.float32)


def _face_at(actor: Actor, t: float) -> tuple[np.ndarray, np.ndarray]:
    """The actor's patch at time t: photos in turn, cross-faded over 0.4 s."""
    k = (t - actor.start) / actor.hold
    i = int(math.floor(k))
    frac = k - i
    a_img, a_mask = _patch(str(actor.images[i % len(actor.images)]))
    fade = 0.4 / actor.hold
    if frac > 1 - fade and len(actor.images) > 1:
        b_img, _ = _patch(str(actor.images[(i + 1) % len(actor.images)]))
        w = (frac - (1 - fade)) / fade
        return a_img * (1 - w) + b_img * w, a_mask
    return a_img, a_mask


def render(spec: ClipSpec) -> Iterator[tuple[float, np.ndarray, Truth]]:
    """Every frame of the clip (RGB uint8) with its ground truth."""
    W, H = spec.width, spec.height
    for n in range(spec.frame_count):
        t = n / spec.fps
        shot_i = next((i for i, s in enumerate(spec.shots) if s.start <= t < s.end), len(spec.shots) - 1)
        shot = spec.shots[shot_i]
        bg = _background(shot.background, W, H)
        off = int((t - shot.start) * shot.pan) % W
        frame = bg[:, off:off + W].copy()
        truth = []
        for actor in shot.actors:
            where = actor.at(t)
            if where is None:
                continue
            fx, fy, size = where
            img, mask = _face_at(actor, t)
            scale = size / img.shape[1]
            pw, ph = max(2, int(round(img.shape[1] * scale))), max(2, int(round(img.shape[0] * scale)))
            img = cv2.resize(img, (pw, ph), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
            m = cv2.resize(mask, (pw, ph), interpolation=cv2.INTER_LINEAR)[..., None]
            if spec.blur > 0:
                img = cv2.GaussianBlur(img, (0, 0), spec.blur * scale * 2)
            img = img * spec.dim
            cx, cy = fx * W, fy * H
            x0, y0 = int(round(cx - pw / 2)), int(round(cy - ph / 2))
            sx0, sy0 = max(0, -x0), max(0, -y0)
            dx0, dy0 = max(0, x0), max(0, y0)
            dx1, dy1 = min(W, x0 + pw), min(H, y0 + ph)
            if dx1 <= dx0 or dy1 <= dy0:
                continue
            region = frame[dy0:dy1, dx0:dx1]
            pi = img[sy0:sy0 + (dy1 - dy0), sx0:sx0 + (dx1 - dx0)]
            pm = m[sy0:sy0 + (dy1 - dy0), sx0:sx0 + (dx1 - dx0)]
            frame[dy0:dy1, dx0:dx1] = region * (1 - pm) + pi * pm
            # the face itself is about the middle 60 % of the patch width, 70 % of its height
            truth.append((actor.person, actor.known, shot_i,
                          (cx - 0.3 * pw, cy - 0.3 * ph, 0.6 * pw, 0.65 * ph)))
        if spec.noise > 0:
            frame += np.random.default_rng(n).normal(0, spec.noise, frame.shape).astype(np.float32)
        out = np.clip(frame, 0, 255).astype(np.uint8)
        if spec.jpeg:
            ok, enc = cv2.imencode(".jpg", out[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, spec.jpeg])
            out = cv2.imdecode(enc, cv2.IMREAD_COLOR)[:, :, ::-1].copy()
        yield t, out, Truth(t, tuple(truth))


#: (container suffix, OpenCV fourcc) pairs the FFmpeg inside opencv-python-headless can write.
CODECS = {
    "mp4": ("mp4", "mp4v"),     # MPEG-4 Part 2 in MP4
    "mov": ("mov", "mp4v"),     # MPEG-4 Part 2 in QuickTime
    "mkv": ("mkv", "FFV1"),     # lossless FFV1 in Matroska
    "webm": ("webm", "VP80"),   # VP8 in WebM
    "webm-vp9": ("webm", "VP90"),
    "avi": ("avi", "MJPG"),     # Motion JPEG in AVI
    "avi-xvid": ("avi", "XVID"),
}


def write_video(spec: ClipSpec, path: Path, codec: str = "mp4") -> list[Truth]:
    """Encode the clip with OpenCV; returns the ground truth of every frame."""
    _, fourcc = CODECS[codec]
    tmp = path.with_name(".tmp-" + path.name)
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*fourcc), spec.fps, (spec.width, spec.height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {codec} ({fourcc}) here")
    truth = []
    try:
        for _, rgb, tr in render(spec):
            writer.write(np.ascontiguousarray(rgb[:, :, ::-1]))
            truth.append(tr)
    finally:
        writer.release()
    tmp.replace(path)
    return truth


def write_gif(spec: ClipSpec, path: Path, durations_ms: Sequence[int] | None = None) -> list[Truth]:
    """Write the clip as an animated GIF (one frame per rendered frame; by
    default each lasts 1/fps; ``durations_ms`` gives them one by one)."""
    frames, truth = [], []
    for _, rgb, tr in render(spec):
        frames.append(Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=256))
        truth.append(tr)
    durations = list(durations_ms) if durations_ms else [int(round(1000 / spec.fps))] * len(frames)
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:], duration=durations, loop=0,
                   disposal=1, optimize=False)
    return truth


def rotate_mp4(src: Path, dst: Path, degrees: int = 90) -> None:
    """Copy an MP4/MOV, setting the display matrix of its tracks to a rotation
    (what phones record), without re-encoding: the stored frames stay as they are."""
    import struct

    data = bytearray(src.read_bytes())

    def boxes(start: int, end: int):
        i = start
        while i + 8 <= end:
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            if size == 1:
                size = struct.unpack(">Q", data[i + 8:i + 16])[0]
            elif size == 0:
                size = end - i
            yield i, size, kind
            i += size

    c, s = {90: (0, 1), 180: (-1, 0), 270: (0, -1)}[degrees]
    matrix = struct.pack(">9i", c << 16, s << 16, 0, -s << 16, c << 16, 0, 0, 0, 1 << 30)
    done = 0
    for i, size, kind in boxes(0, len(data)):
        if kind != b"moov":
            continue
        for j, tsize, tkind in boxes(i + 8, i + size):
            if tkind != b"trak":
                continue
            for k, _, hkind in boxes(j + 8, j + tsize):
                if hkind == b"tkhd":
                    version = data[k + 8]
                    base = k + 8 + 4 + (8 + 8 + 4 + 4 + 8 if version == 1 else 4 + 4 + 4 + 4 + 4) + 8 + 8
                    data[base:base + 36] = matrix
                    done += 1
    if not done:
        raise ValueError(f"{src}: no track header found")
    dst.write_bytes(bytes(data))


#: (container suffix, PyAV encoder, extra options) for codecs the FFmpeg inside OpenCV cannot write
#: (and, for AV1, cannot read): made with PyAV, the ``video`` extra.
AV_CODECS = {
    "h264": ("mp4", "libx264", {"preset": "veryfast", "crf": "23"}),
    "hevc": ("mp4", "libx265", {"preset": "ultrafast", "x265-params": "log-level=none"}),
    "vp9": ("webm", "libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"}),
    "av1": ("mkv", "libsvtav1", {"preset": "12"}),
    "av1-mp4": ("mp4", "libsvtav1", {"preset": "12"}),
}


def write_video_av(spec: ClipSpec, path: Path, codec: str = "h264", audio: bool = False) -> list[Truth]:
    """Encode the clip with PyAV (H.264, HEVC, VP9, AV1), optionally with a
    440 Hz tone as an AAC/Opus audio track; returns the ground truth."""
    import os
    from fractions import Fraction

    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 writes its banner to stderr otherwise
    import av

    _, encoder, options = AV_CODECS[codec]
    tmp = path.with_name(".tmp-" + path.name)
    truth = []
    rate = Fraction(spec.fps).limit_denominator(1001)
    with av.open(str(tmp), mode="w", format=None if tmp.suffix else "mp4") as out:
        vs = out.add_stream(encoder, rate=rate, options=dict(options))
        vs.width, vs.height, vs.pix_fmt = spec.width, spec.height, "yuv420p"
        if codec == "hevc":
            vs.codec_tag = "hvc1"
        aus = None
        if audio:
            aus = out.add_stream("libopus" if path.suffix == ".webm" else "aac", rate=48000)
            aus.layout = "mono"
        for n, (_, rgb, tr) in enumerate(render(spec)):
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = n
            frame.time_base = 1 / rate
            for packet in vs.encode(frame):
                out.mux(packet)
            truth.append(tr)
        for packet in vs.encode():
            out.mux(packet)
        if aus is not None:
            samples = int(48000 * spec.duration)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 48000)).astype(np.float32)
            step = 960
            for i in range(0, samples, step):
                chunk = tone[i:i + step]
                af = av.AudioFrame.from_ndarray(chunk[None, :], format="flt", layout="mono")
                af.sample_rate = 48000
                af.pts = i
                af.time_base = Fraction(1, 48000)
                for packet in aus.encode(af):
                    out.mux(packet)
            for packet in aus.encode():
                out.mux(packet)
    tmp.replace(path)
    return truth
