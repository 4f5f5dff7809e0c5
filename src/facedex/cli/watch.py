"""``facedex watch GALLERY SOURCE``: identify faces on a camera, a network
stream or a file played at its real rate, and report events as JSON Lines.

The work is in :mod:`facedex.video.live`; this module parses, prints one JSON
object per line on stdout (``facedex.watch-event/1``), optionally POSTs each
event to a URL, and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import logging
import queue
import sys
import threading
import time
import urllib.error
import urllib.request

from .common import (
    EXIT_OK,
    EXIT_PARTIAL,
    add_command,
    add_detector_options,
    add_gallery,
    bounded,
    detector_config,
    similarity,
    stop_on_interrupt,
)
from .output import err

ORDER = 12

log = logging.getLogger(__name__)


def register(sub) -> None:
    from .gallery import add_track_options

    p = add_command(
        sub, "watch", help="identify faces on a camera or a live stream, as JSON Lines events",
        description="Watch SOURCE — a camera (/dev/video0, 0), a network stream (rtsp://, http(s):// MJPEG or HLS "
                    ".m3u8, rtmp://, srt://…) or a video file played at its real rate — and identify the faces on it "
                    "against GALLERY. Each event (a track started, named, ended; the source connected, lost, "
                    "reconnecting; stopped) is one JSON object per line on stdout, and is POSTed to --post URL if "
                    "given. Frames that arrive while the previous one is analysed are dropped and counted, so the "
                    "delay stays bounded. A stream that fails is reopened with backoff. Stop with Ctrl-C or SIGTERM: "
                    "the tracks on screen are ended and a 'stopped' summary is written (exit 0).",
        examples=["facedex watch my.gallery rtsp://user:pass@192.168.1.20:554/stream1",
                  "facedex watch my.gallery /dev/video0 --post http://homeassistant.local:8123/api/webhook/faces",
                  "facedex watch my.gallery http://cam.local/video.mjpg | jq -c 'select(.event == \"named\")'",
                  "facedex watch my.gallery doorbell.mp4 --loop"])
    add_gallery(p)
    p.add_argument("source", metavar="SOURCE", help="camera device or number, stream URL, or video file")
    p.add_argument("--threshold", type=similarity, metavar="T",
                   help="use this similarity threshold instead of the gallery's")
    p.add_argument("--post", metavar="URL", help="also POST each event as JSON to this URL (http or https)")
    p.add_argument("--post-header", metavar="NAME:VALUE", action="append", default=[],
                   help="an HTTP header for --post (repeatable), e.g. 'Authorization: Bearer TOKEN'")
    p.add_argument("--events", metavar="LIST", default="started,named,ended,source,stopped",
                   help="comma-separated events to report")
    s = p.add_argument_group("source")
    s.add_argument("--loop", action="store_true", help="play a video file again and again")
    s.add_argument("--no-realtime", dest="realtime", action="store_false", default=None,
                   help="read a file as fast as it decodes instead of at its real rate (frames are then dropped)")
    s.add_argument("--max-retries", type=bounded(int, 0), metavar="N",
                   help="give up after N failed reconnections in a row (default: never give up)")
    s.add_argument("--max-backoff", type=bounded(float, 0, low_open=True), default=30.0, metavar="S",
                   help="longest wait between reconnection attempts (they double from 1 s)")
    v = p.add_argument_group("tracking")
    v.add_argument("--sample-fps", type=bounded(float, 0, low_open=True), default=5.0, metavar="N",
                   help="frames analysed per second at most")
    v.add_argument("--max-gap", type=bounded(float, 0), default=1.0, metavar="S",
                   help="a face unseen for more than S seconds ends its track (it may be continued: --merge-window)")
    v.add_argument("--scene-cut", type=bounded(float, 0, 1), default=0.5, metavar="D",
                   help="colour-histogram distance 0..1 that counts as a scene cut (0 = never)")
    add_track_options(v)
    add_detector_options(p)
    p.set_defaults(func=cmd_watch)


class _Poster:
    """POSTs events from a thread, with a bounded queue (the oldest event is
    dropped when the receiver is slower than the events) and a few retries."""

    def __init__(self, url: str, headers: dict[str, str], timeout: float = 5.0, retries: int = 3):
        self.url, self.headers, self.timeout, self.retries = url, headers, timeout, retries
        self.q: queue.Queue = queue.Queue(maxsize=1000)
        self.sent = self.failed = self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="facedex-watch-post", daemon=True)
        self._thread.start()

    def put(self, doc: dict) -> None:
        while True:
            try:
                self.q.put_nowait(doc)
                return
            except queue.Full:
                try:
                    self.q.get_nowait()
                    self.dropped += 1
                except queue.Empty:
                    pass

    def _run(self) -> None:
        while True:
            doc = self.q.get()
            if doc is None:
                return
            body = json.dumps(doc, ensure_ascii=False).encode()
            for attempt in range(self.retries + 1):
                req = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json", **self.headers})
                try:
                    with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                        resp.read()
                    self.sent += 1
                    break
                except (urllib.error.URLError, OSError, ValueError) as e:
                    if attempt == self.retries:
                        self.failed += 1
                        log.warning("POST %s failed: %s", self.url, e)
                    else:
                        time.sleep(0.5 * 2 ** attempt)

    def close(self, wait: float = 10.0) -> None:
        self.q.put(None)
        self._thread.join(timeout=wait)


def _headers(values: list[str]) -> dict[str, str]:
    out = {}
    for v in values:
        name, sep, value = v.partition(":")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"--post-header {v!r}: write it as NAME:VALUE")
        out[name.strip()] = value.strip()
    return out


def cmd_watch(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..identify.gallery import Gallery
    from ..video.live import open_live, watch
    from ..video.types import VideoOptions
    from .gallery import describe_threshold, track_options

    wanted = {e.strip() for e in args.events.split(",") if e.strip()}
    known = {"started", "named", "ended", "source", "stopped"}
    if not wanted <= known:
        raise ConfigError(f"--events: unknown {', '.join(sorted(wanted - known))}; known: {', '.join(sorted(known))}")
    if args.post and not args.post.lower().startswith(("http://", "https://")):
        raise ConfigError(f"--post {args.post!r}: give an http:// or https:// URL")
    try:
        headers = _headers(args.post_header)
    except argparse.ArgumentTypeError as e:
        raise ConfigError(str(e)) from None
    options = VideoOptions(sample_fps=args.sample_fps, max_gap=args.max_gap, scene_cut=args.scene_cut,
                           thumbnails=False, **track_options(args))
    poster = _Poster(args.post, headers) if args.post else None
    out_broken = threading.Event()
    lock = threading.Lock()

    def emit(ev) -> None:
        if ev.event not in wanted:
            return
        doc = ev.to_dict()
        if poster is not None:
            poster.put(doc)
        if out_broken.is_set():
            return
        with lock:
            try:
                sys.stdout.write(json.dumps(doc, ensure_ascii=False, allow_nan=False) + "\n")
                sys.stdout.flush()
            except (BrokenPipeError, ValueError):
                out_broken.set()  # the reader went away (| head): stop
                stop_holder[0].set()

    stop_holder: list[threading.Event] = [threading.Event()]
    with Gallery.open(args.gallery, detector_config=detector_config(args), runtime=args.runtime) as g:
        threshold = g.resolve_threshold(args.threshold)
        err(describe_threshold(threshold, args.gallery))
        if g.counts()["faces"] == 0:
            err(f"warning: {g.path} has no faces enrolled; every face will be unknown")

        source = None
        with stop_on_interrupt("facedex watch: stopping (Ctrl-C again to quit at once)",
                               on_first=lambda: source.stop() if source is not None else None) as stop:
            stop_holder[0] = stop
            source = open_live(args.source, options, realtime=args.realtime, loop=args.loop,
                               max_retries=args.max_retries, max_backoff=args.max_backoff)
            summary = watch(g.pipeline, g, source, options, threshold=threshold.value, emit=emit, stop=stop)
    if poster is not None:
        poster.close()
        err(f"posted {poster.sent} events to {args.post}" + (f", {poster.failed} failed" if poster.failed else "")
            + (f", {poster.dropped} dropped (receiver too slow)" if poster.dropped else ""))
    lat = summary["latency"]
    err(f"stopped: {summary['frames_analysed']} frames analysed of {summary['frames_read']} read, "
        f"{summary['frames_dropped']} dropped under load, {summary['reconnects']} reconnections"
        + (f"; latency p50 {lat['p50'] * 1000:.0f} ms, p95 {lat['p95'] * 1000:.0f} ms" if lat["p50"] is not None else ""))
    if summary["frames_read"] == 0:
        err(f"facedex watch: no frame could be read from {source.item}")
        return EXIT_PARTIAL
    return EXIT_OK
