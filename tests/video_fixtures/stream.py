"""A camera on loopback: an HTTP MJPEG stream (``multipart/x-mixed-replace``,
what most IP cameras and ESP32-CAMs serve) of a synthetic clip, and a plain
HTTP server for other files (HLS playlists and segments), both started by
the test itself."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
import time
from functools import partial
from pathlib import Path
from typing import Iterator, Sequence

import cv2
import numpy as np

BOUNDARY = "facedexframe"


class MjpegCamera:
    """Serves ``frames`` (RGB arrays) at ``fps`` to every client, looping.
    ``cut_after`` seconds into a connection the server drops it (a network
    outage); ``refuse`` makes new connections fail until cleared."""

    def __init__(self, frames: Sequence[np.ndarray], fps: float = 10.0, cut_after: float | None = None):
        self.jpegs = [cv2.imencode(".jpg", np.ascontiguousarray(f[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
                      .tobytes() for f in frames]
        self.fps = fps
        self.cut_after = cut_after
        self.refuse = False
        self.connections = 0
        self.sent = 0
        cam = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                if cam.refuse:
                    self.send_error(503)
                    return
                cam.connections += 1
                first = cam.connections == 1
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                start = time.monotonic()
                i = 0
                try:
                    while not cam.stopped.is_set():
                        if first and cam.cut_after is not None and time.monotonic() - start > cam.cut_after:
                            return  # the connection drops
                        jpg = cam.jpegs[i % len(cam.jpegs)]
                        self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}"
                                         "\r\n\r\n".encode() + jpg + b"\r\n")
                        self.wfile.flush()
                        cam.sent += 1
                        i += 1
                        due = start + i / cam.fps
                        time.sleep(max(0.0, due - time.monotonic()))
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.stopped = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stream.mjpg"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "MjpegCamera":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


class EventSink:
    """An HTTP endpoint that records JSON POSTed to it (a webhook receiver)."""

    def __init__(self):
        self.events: list[dict] = []
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                sink.events.append({"body": json.loads(self.rfile.read(n)), "auth": self.headers.get("Authorization")})
                self.send_response(204)
                self.end_headers()

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


@contextlib.contextmanager
def static_server(folder: Path) -> Iterator[str]:
    handler = partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
