"""Live sources: cameras, network streams, and files played at their real rate.

:func:`open_live` opens a :class:`LiveSource` for

* a **camera**: ``/dev/video0`` (Video4Linux) or a number (``0``);
* a **network stream**: ``rtsp://``, ``rtsps://``, ``http(s)://`` (HLS
  ``.m3u8`` playlists, MJPEG ``multipart/x-mixed-replace`` streams, or a
  video file on a web server), ``rtmp://``, ``udp://``, ``srt://``…;
* a **file**, played at its real rate (``realtime``), once or in a loop.

A reader thread decodes continuously and keeps only the newest frame that
the sampler wants (``sample_fps``): when analysis falls behind, older frames
are **dropped, and counted** (``frames_dropped``), so latency stays bounded
by about one analysis time instead of growing. Timestamps are seconds since
the source was opened (monotonic clock), so tracks keep their meaning across
reconnections. A network stream or camera that fails or ends is **reopened
with exponential backoff** (1 s, 2 s, 4 s … up to ``max_backoff``), for ever
unless ``max_retries`` is set; each change is reported to ``on_status``.

:func:`watch` runs identification on a live source and turns the tracker's
work into events (:class:`WatchEvent`): a track ``started`` (confirmed),
``named`` (its running decision reached the threshold, or changed name) and
``ended`` (its final decision), plus ``source`` (connected, lost,
reconnecting, ended) and a final ``stopped`` with the counters and latency.
Decoding goes through PyAV when installed (the ``video`` extra), else OpenCV.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import re
import threading
import time as _time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ConfigError, MediaError
from ..media.video import Frame, FrameSource, VideoInfo, _pyav, video_decoder
from .identify import FrameAnalyser, Matcher, reportable, sampler
from .tracker import LiveTrack, drop_reason
from .types import StreamStats, VideoOptions

log = logging.getLogger(__name__)

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
#: Seconds to wait for a network stream to open, and for the next packet.
OPEN_TIMEOUT = 10.0
READ_TIMEOUT = 10.0


def classify(source: str) -> str:
    """``"camera"``, ``"url"`` or ``"file"``."""
    if source.isdigit() or source.startswith("/dev/video"):
        return "camera"
    if _URL.match(source):
        return "url"
    return "file"


def _redact(source: str) -> str:
    """The source without a password (``rtsp://user:pass@cam`` → ``rtsp://user:***@cam``)."""
    return re.sub(r"(://[^:/@]+:)[^@/]*@", r"\1***@", source)


@dataclass
class LiveStats:
    """Counters of a live source (read them at any time)."""

    frames_read: int = 0  # decoded from the source
    frames_wanted: int = 0  # due for analysis by the sampler
    frames_dropped: int = 0  # due, but superseded by a newer frame before analysis (load)
    reconnects: int = 0
    errors: int = 0


class _Slot:
    """The newest wanted frame, handed from the reader thread to the analysis loop."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.item: tuple[float, float, np.ndarray] | None = None  # (time, wall clock, rgb)
        self.closed = False


class LiveSource(FrameSource):
    """A live source read by a thread; :meth:`frames` yields the newest wanted
    frame each time the caller is ready (see the module doc)."""

    def __init__(self, source: str, *, sample_fps: float | None = 5.0, realtime: bool | None = None,
                 loop: bool = False, max_retries: int | None = None, max_backoff: float = 30.0,
                 decoder: str | None = None, on_status: Callable[[dict[str, Any]], None] | None = None,
                 max_pixels: int | None = None, name: str | None = None):
        super().__init__()
        self.source = str(source)
        self.kind = classify(self.source)
        if self.kind == "file" and not Path(self.source).is_file():
            raise MediaError(self.source, "no such file, camera or URL (a URL starts with rtsp://, http://…)")
        self.item = name or _redact(self.source)
        self.realtime = (self.kind == "file") if realtime is None else realtime
        self.loop = loop
        self.max_retries = max_retries
        self.max_backoff = max_backoff
        self.decoder = video_decoder(decoder)
        self.max_pixels = max_pixels
        self.on_status = on_status
        self.live_stats = LiveStats()
        self._want = sampler(sample_fps)
        self._slot = _Slot()
        self._stop = threading.Event()
        self._t0 = _time.monotonic()
        self._wall0 = _time.time()
        self.info = VideoInfo(self.item, "live", self.kind, "", 0, 0, None, None, None, 0, self.decoder)
        self._opened = threading.Event()
        self._session_frames = 0
        self._statuses: collections.deque = collections.deque(maxlen=1000)
        self._thread = threading.Thread(target=self._reader, name="facedex-live-reader", daemon=True)
        self._started = False
        self._start_lock = threading.Lock()

    def start(self) -> None:
        """Start reading (done by the first :meth:`latest` if not before); the
        clock starts then too."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
            self._t0 = _time.monotonic()
            self._wall0 = _time.time()
            self._thread.start()

    # -- the reader thread -----------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the source was opened."""
        return _time.monotonic() - self._t0

    def _status(self, status: str, **extra: Any) -> None:
        log.info("%s: %s %s", self.item, status, extra or "")
        self._statuses.append({"status": status, "t": round(self.now(), 3), "wall": _time.time(), **extra})
        if self.on_status is not None:
            try:
                self.on_status({"status": status, "t": round(self.now(), 3), **extra})
            except Exception:  # noqa: BLE001 - a reporting failure must not stop the reader
                log.exception("status callback failed")

    def _reader(self) -> None:
        fails = 0
        try:
            while not self._stop.is_set():
                self._session_frames = 0
                try:
                    self._read_once()
                except MediaError as err:
                    self.live_stats.errors += 1
                    if not self._stop.is_set():
                        self._status("lost", error=str(err).removeprefix(f"{self.item}: "))
                got = self._session_frames > 0
                if self._stop.is_set():
                    break
                if self.kind == "file" and not self.loop:
                    self._status("ended")
                    break
                if self.kind == "file":
                    continue  # play again
                fails = 0 if got else fails + 1  # failed openings in a row
                if self.max_retries is not None and fails > self.max_retries:
                    self._status("ended", error=f"gave up after {self.max_retries} failed reconnections")
                    break
                delay = min(self.max_backoff, 2.0 ** fails)  # 1 s after a stream that worked, then 2, 4, 8…
                self.live_stats.reconnects += 1
                self._status("reconnecting", attempt=fails + 1, retry_in=delay)
                self._stop.wait(delay)
        finally:
            with self._slot.cond:
                self._slot.closed = True
                self._slot.cond.notify_all()

    def _publish(self, rgb_of: Callable[[], np.ndarray]) -> None:
        """A decoded frame: counted, and handed over if the sampler wants it."""
        st = self.live_stats
        st.frames_read += 1
        self._session_frames += 1
        t = self.now()
        if not self._want(t):
            return
        st.frames_wanted += 1
        rgb = rgb_of()
        slot = self._slot
        with slot.cond:
            if slot.item is not None:
                st.frames_dropped += 1  # the analysis has not taken the previous one yet
            slot.item = (t, _time.time(), rgb)
            slot.cond.notify_all()

    def _check_size(self, w: int, h: int) -> None:
        from .. import config

        limit = self.max_pixels if self.max_pixels is not None else config.max_pixels()
        if w * h > limit:
            raise MediaError(self.item, f"frames of {w}x{h} exceed the pixel limit {limit:,} (FACEDEX_MAX_PIXELS)")

    def _read_once(self) -> bool:
        """Open the source and read it until it ends, fails or we are stopped.
        True when at least one frame came (so the backoff starts again)."""
        if self.decoder == "pyav":
            return self._read_pyav()
        return self._read_opencv()

    def _read_pyav(self) -> bool:
        av = _pyav()
        options: dict[str, str] = {}
        fmt = None
        target = self.source
        if self.kind == "camera":
            fmt = "v4l2"
            target = f"/dev/video{self.source}" if self.source.isdigit() else self.source
        elif self.kind == "url":
            low = self.source.lower()
            if low.startswith(("rtsp://", "rtsps://")):
                options.update({"rtsp_transport": "tcp", "max_delay": "500000"})
            if low.startswith(("rtsp://", "rtsps://", "rtmp://", "rtp://", "udp://", "srt://")):
                # no demuxer buffering for real-time protocols (it breaks HLS, which reads segments ahead)
                options.update({"fflags": "nobuffer", "flags": "low_delay"})
        try:
            container = av.open(target, mode="r", format=fmt, options=options,
                                timeout=(OPEN_TIMEOUT, READ_TIMEOUT) if self.kind == "url" else None,
                                metadata_errors="ignore")
        except (av.FFmpegError, OSError) as err:
            raise MediaError(self.item, f"cannot open ({getattr(err, 'strerror', None) or err})") from None
        got = False
        try:
            if not container.streams.video:
                raise MediaError(self.item, "has no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            ctx = stream.codec_context
            self._check_size(int(ctx.width or 0), int(ctx.height or 0))
            fps = float(stream.average_rate) if stream.average_rate else None
            self.info = VideoInfo(self.item, "live", self.kind, stream.codec_context.name or "", int(ctx.width or 0),
                                  int(ctx.height or 0), fps, None, None, 0, "pyav")
            self._status("connected", codec=self.info.codec, width=self.info.width, height=self.info.height)
            self._opened.set()
            start_wall = None
            first_pts = None
            tb = float(stream.time_base) if stream.time_base else None
            for packet in container.demux(stream):
                if self._stop.is_set():
                    break
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    self.broken_frames += 1
                    continue
                for frame in frames:
                    got = True
                    if self.realtime and frame.pts is not None and tb:
                        if first_pts is None:
                            first_pts, start_wall = frame.pts, _time.monotonic()
                        due = start_wall + (frame.pts - first_pts) * tb
                        delay = due - _time.monotonic()
                        if delay > 0 and self._stop.wait(delay):
                            return got
                    self._publish(lambda f=frame: f.to_ndarray(format="rgb24"))
        except av.FFmpegError as err:
            raise MediaError(self.item, f"stream failed ({getattr(err, 'strerror', None) or err})") from None
        finally:
            container.close()
        if got and self.kind != "file" and not self._stop.is_set():
            self._status("lost", error="the stream ended")
        return got

    def _read_opencv(self) -> bool:
        from ..media.video import _cv2

        cv2 = _cv2()
        target: Any = int(self.source) if self.source.isdigit() else self.source
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2 if self.kind == "camera" else cv2.CAP_FFMPEG)
        got = False
        try:
            if not cap.isOpened():
                raise MediaError(self.item, "cannot open (OpenCV)")
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self._check_size(w, h)
            fps = cap.get(cv2.CAP_PROP_FPS)
            fps = float(fps) if math.isfinite(fps) and 0 < fps <= 1000 else None
            self.info = VideoInfo(self.item, "live", self.kind, "", w, h, fps, None, None, 0, "opencv")
            self._status("connected", codec="", width=w, height=h)
            self._opened.set()
            start = None
            while not self._stop.is_set():
                if not cap.grab():
                    break
                got = True
                if self.realtime:
                    ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                    if start is None:
                        start = _time.monotonic() - ms / 1000.0
                    delay = start + ms / 1000.0 - _time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        break

                def rgb_of() -> np.ndarray:
                    ok, bgr = cap.retrieve()
                    if not ok or bgr is None:
                        return np.zeros((max(h, 1), max(w, 1), 3), np.uint8)
                    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

                self._publish(rgb_of)
        finally:
            cap.release()
        if got and self.kind != "file" and not self._stop.is_set():
            self._status("lost", error="the stream ended")
        return got

    # -- the analysis side -------------------------------------------------------------------------
    def statuses(self) -> list[dict[str, Any]]:
        """Status changes since the last call (connected, lost, reconnecting, ended)."""
        out = []
        while self._statuses:
            out.append(self._statuses.popleft())
        return out

    def latest(self, timeout: float | None = None) -> tuple[float, float, np.ndarray] | None:
        """The newest wanted frame ``(time, wall clock, rgb)``; ``None`` when the
        source has ended (or ``timeout`` passed)."""
        self.start()
        slot = self._slot
        with slot.cond:
            end = None if timeout is None else _time.monotonic() + timeout
            while slot.item is None and not slot.closed:
                left = None if end is None else end - _time.monotonic()
                if left is not None and left <= 0:
                    return None
                slot.cond.wait(left if left is not None else 0.5)
            item, slot.item = slot.item, None
        return item

    def frames(self, want=None) -> Iterator[Frame]:
        """Frames as the caller takes them (``want`` is ignored: the source
        samples by itself). Stops when the source ends or :meth:`close` is called."""
        index = 0
        dt = 1.0 / 30.0
        while not self._stop.is_set():
            item = self.latest(timeout=0.5)
            if item is None:
                if self._slot.closed and self._slot.item is None:
                    break
                continue
            t, _, rgb = item
            self.frames_decoded = self.live_stats.frames_read
            self.end_time = t
            yield Frame(index, t, dt, rgb)
            index += 1

    def stop(self) -> None:
        """Ask the reader to stop (from any thread or a signal handler)."""
        self._stop.set()
        with self._slot.cond:
            self._slot.cond.notify_all()

    def close(self) -> None:
        self.stop()
        thread = getattr(self, "_thread", None)
        if thread is not None and self._started and thread is not threading.current_thread():
            thread.join(timeout=READ_TIMEOUT + 2)


# --- events -----------------------------------------------------------------------------------------
def _iso(wall: float) -> str:
    return datetime.fromtimestamp(wall, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _box(b) -> list[float]:
    return [round(float(v), 1) for v in b]


@dataclass
class WatchEvent:
    """One line of ``facedex watch``'s output (``facedex.watch-event/1``)."""

    event: str
    source: str
    t: float
    time: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": "facedex.watch-event/1", "event": self.event, "source": self.source,
                "time": self.time, "t": round(self.t, 3), **self.data}


class _Latency:
    """Latency samples (seconds from a frame's arrival to the end of its analysis)."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def add(self, v: float) -> None:
        self.values.append(v)
        if len(self.values) > 10000:
            self.values = self.values[-5000:]

    def summary(self) -> dict[str, float | None]:
        if not self.values:
            return {"p50": None, "p95": None, "max": None}
        a = np.asarray(self.values)
        return {"p50": round(float(np.percentile(a, 50)), 4), "p95": round(float(np.percentile(a, 95)), 4),
                "max": round(float(a.max()), 4)}


def watch(pipeline, matcher: Matcher, source: LiveSource, options: VideoOptions, *, threshold: float,
          emit: Callable[[WatchEvent], None], stop: threading.Event | None = None) -> dict[str, Any]:
    """Identify faces on ``source`` until it ends or ``stop`` is set, calling
    ``emit`` with each :class:`WatchEvent`. Returns the counters of the final
    ``stopped`` event (which is emitted too)."""
    stats = StreamStats()
    analyser = FrameAnalyser(pipeline, options, stats)
    latency = _Latency()
    name = source.item
    announced: dict[int, str | None] = {}  # track id -> the name last announced
    last_wall = [_time.time()]

    def event(kind: str, t: float, wall: float, **data: Any) -> None:
        emit(WatchEvent(kind, name, t, _iso(wall), data))

    def track_data(lt: LiveTrack, d=None) -> dict[str, Any]:
        out: dict[str, Any] = {"track": lt.number, "box": _box(lt.last_box)}
        if d is not None:
            out.update({"name": d.name, "similarity": round(float(d.similarity), 4),
                        "candidates": [c.to_dict() for c in d.candidates[:3]]})
        return out

    def end_tracks(final: list[LiveTrack], t: float, wall: float, reason: str | None = None) -> None:
        kept = reportable(final, matcher, threshold, options, stats, analyser.tracker, name)
        ids = {id(lt) for lt, _ in kept}
        for lt, d in kept:
            if lt.id not in announced:  # named although tentative: it is reported, so it starts too
                event("started", t, wall, **track_data(lt, d), frames=lt.frames)
            event("ended", t, wall, **track_data(lt, d), first_seen=round(lt.first_time, 3),
                  last_seen=round(float(lt.end_time if lt.end_time is not None else lt.last_time), 3),
                  frames=lt.frames, segments=[[round(a, 3), round(b, 3)] for a, b in lt.segments],
                  ended=reason or lt.ended, dropped=None)
        for lt in final:
            if lt.id in announced and id(lt) not in ids:  # started, then dropped on all its evidence
                event("ended", t, wall, track=lt.number, box=_box(lt.last_box), name=None, similarity=None,
                      first_seen=round(lt.first_time, 3), last_seen=round(float(lt.end_time or lt.last_time), 3),
                      frames=lt.frames, segments=[[round(a, 3), round(b, 3)] for a, b in lt.segments],
                      ended=reason or lt.ended, dropped=drop_reason(lt, options, lt.frames))
            announced.pop(lt.id, None)

    def report_source() -> None:
        for st in source.statuses():
            data = {k: v for k, v in st.items() if k not in ("t", "wall")}
            event("source", st["t"], st["wall"], **data)

    stop = stop or threading.Event()
    t = 0.0
    # load the models before the first frame, so that it is not late by the loading time
    analyser.detector.detect(np.zeros((64, 64, 3), np.uint8))
    analyser.embedder.embed_crops([np.zeros((112, 112, 3), np.uint8)])
    source.start()
    try:
        while not stop.is_set():
            item = source.latest(timeout=0.25)
            report_source()
            if item is None:
                if source._slot.closed:
                    break
                continue
            t, wall, rgb = item
            last_wall[0] = wall
            final = analyser.analyse(t, 0.0, rgb, name=name)
            if final:
                end_tracks(final, t, wall)
            confirmed = [lt for lt in analyser.tracker.live if lt.confirmed and lt.last_time == t and lt.embedded]
            if confirmed:
                decisions = matcher.decide(np.stack([lt.aggregate for lt in confirmed]), threshold=threshold)
                for lt, d in zip(confirmed, decisions):
                    if lt.id not in announced:
                        announced[lt.id] = None
                        event("started", t, wall, **track_data(lt, d), frames=lt.frames)
                    if d.name is not None and announced[lt.id] != d.name:
                        announced[lt.id] = d.name
                        event("named", t, wall, **track_data(lt, d))
            lag = _time.time() - wall
            latency.add(lag)
            stats.frames_decoded = source.live_stats.frames_read
    finally:
        source.stop()
        end = source.now()
        end_tracks(analyser.finish(max(end, t)), end, _time.time(), reason="stop")
        source.close()
        report_source()
    ls = source.live_stats
    summary = {"frames_read": ls.frames_read, "frames_wanted": ls.frames_wanted,
               "frames_analysed": stats.frames_sampled, "frames_dropped": ls.frames_dropped,
               "reconnects": ls.reconnects, "faces": stats.faces, "embedded": stats.embedded,
               "tracks_merged": stats.merged, "tracks_dropped": dict(stats.dropped),
               "latency": latency.summary(), "seconds": round(end, 3)}
    emit(WatchEvent("stopped", name, end, _iso(_time.time()), summary))
    return summary


def open_live(source: str | os.PathLike, options: VideoOptions | None = None, **kwargs: Any) -> LiveSource:
    """A :class:`LiveSource` sampling at ``options.sample_fps`` (see the module doc)."""
    options = options or VideoOptions()
    if options.sample_fps is None:
        raise ConfigError("a live source needs a sampling rate (sample_fps); every frame cannot be promised live")
    return LiveSource(str(source), sample_fps=options.sample_fps, max_pixels=options.max_pixels, **kwargs)


__all__ = ["LiveSource", "LiveStats", "WatchEvent", "classify", "open_live", "watch"]
