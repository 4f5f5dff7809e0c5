"""Annotated videos: H.264 (yuv420p) MP4 with faststart and the original audio
through PyAV, that a real Chromium plays; the mp4v fallback without PyAV,
which it does not."""

from __future__ import annotations

import contextlib
import http.server
import logging
import struct
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

import facedex
from facedex.media.video import open_video
from facedex.render import video as render_video
from facedex.render.video import write_annotated

from .video_fixtures.clips import ClipSpec, clip_cache, pair_clip, scene_clip

av = pytest.importorskip("av", reason="H.264 output is the 'video' extra: pip install 'facedex[video]'")


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    return clip_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def gallery(base_gallery):
    g = facedex.Gallery.open(base_gallery)
    yield g
    g.close()


def top_level_boxes(path: Path) -> list[str]:
    """The MP4 boxes at the top of the file, in order (``moov`` before ``mdat`` = faststart)."""
    data = path.read_bytes()
    out, i = [], 0
    while i + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[i:i + 8])
        if size == 1:
            size = struct.unpack(">Q", data[i + 8:i + 16])[0]
        elif size == 0:
            size = len(data) - i
        out.append(kind.decode("latin-1"))
        i += max(size, 8)
    return out


def streams(path: Path) -> dict:
    with av.open(str(path)) as c:
        out = {}
        for s in c.streams:
            ctx = s.codec_context
            out[s.type] = {"codec": ctx.name, "pix_fmt": getattr(ctx, "pix_fmt", None),
                           "seconds": float(s.duration * s.time_base) if s.duration else None,
                           "rate": getattr(ctx, "sample_rate", None)}
        return out


@pytest.fixture(scope="module")
def annotated(gallery, clips, tmp_path_factory):
    """The scene clip (H.264 with an AAC tone) identified and written annotated."""
    src = clips.video_av(scene_clip(), "h264", audio=True)
    res = gallery.identify_video(src).result()
    out = tmp_path_factory.mktemp("annotated") / "scene.mp4"
    write_annotated(src, res.tracks, out)
    return src, res, out


def test_annotated_video_is_h264_faststart_with_the_audio(annotated):
    src, res, out = annotated
    info = streams(out)
    assert info["video"]["codec"] == "h264" and info["video"]["pix_fmt"] == "yuv420p"
    assert info["audio"]["codec"] == "aac" and info["audio"]["rate"] == 48000
    assert info["audio"]["seconds"] == pytest.approx(streams(src)["audio"]["seconds"], abs=0.1)
    boxes = top_level_boxes(out)
    assert boxes.index("moov") < boxes.index("mdat"), boxes  # faststart: playable while downloading
    with open_video(src) as a, open_video(out) as b:
        fa, fb = list(a.frames()), list(b.frames())
    assert len(fa) == len(fb) == 105 and [f.time for f in fb] == pytest.approx([f.time for f in fa], abs=1e-3)
    drawn = np.mean([np.abs(x.rgb.astype(int) - y.rgb.astype(int)).mean() for x, y in zip(fa, fb)])
    assert 0.5 < drawn < 20  # boxes and labels drawn; the picture otherwise kept
    # a known person's box is green where the tracker saw them
    t = next(t for t in res.tracks if t.name == "Colin_Powell")
    p = t.points[len(t.points) // 2]
    frame = next(f for f in fb if abs(f.time - p.time) < 1e-3).rgb
    x, y, w, h = (int(round(v)) for v in p.box)
    edge = frame[max(0, y - 3):y + 3, x + w // 4:x + 3 * w // 4].reshape(-1, 3).astype(int)
    assert (edge[:, 1] - edge[:, 0] > 60).any(), "no green box edge"


@pytest.mark.parametrize("codec, audio, size", [("webm-vp9", False, (400, 240)), ("vp9", True, (401, 241))])
def test_other_inputs_become_h264(clips, tmp_path, codec, audio, size):
    """VP9 (with Opus audio) and odd frame sizes: H.264 yuv420p needs even sides,
    so the last row/column is repeated."""
    spec = pair_clip(seconds=1.0)
    spec = ClipSpec(spec.name + f"-{size[0]}", spec.shots, width=size[0], height=size[1], fps=spec.fps)
    src = clips.video_av(spec, codec, audio=True) if codec == "vp9" else clips.video(spec, codec)
    out = write_annotated(src, [], tmp_path / "out.mp4")
    info = streams(out)
    assert info["video"]["codec"] == "h264" and ("audio" in info) == audio
    with open_video(out) as v:
        assert (v.info.width, v.info.height) == (size[0] + size[0] % 2, size[1] + size[1] % 2)
        assert len(list(v.frames())) == 10


def test_audio_can_be_left_out(clips, tmp_path):
    src = clips.video_av(pair_clip(seconds=1.0), "h264", audio=True)
    out = write_annotated(src, [], tmp_path / "silent.mp4", audio=False)
    assert set(streams(out)) == {"video"}


def test_without_pyav_the_mp4v_writer_is_used_and_says_why(clips, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(render_video, "h264_encoder", lambda: None)
    monkeypatch.setattr(render_video, "_warned_fallback", False)
    src = clips.video_av(pair_clip(seconds=1.0), "h264", audio=True)
    with caplog.at_level(logging.WARNING, logger="facedex.render.video"):
        out = write_annotated(src, [], tmp_path / "old.mp4")
    assert streams(out)["video"]["codec"] == "mpeg4" and "audio" not in streams(out)
    msg = " ".join(r.getMessage() for r in caplog.records)
    assert "browsers do not play" in msg and "pip install 'facedex[video]'" in msg


# -- a real browser ---------------------------------------------------------------------------------
class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges, as a web server serves videos."""

    def log_message(self, *args) -> None:
        pass

    def send_head(self):
        rng = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not rng or not path.is_file():
            return super().send_head()
        size = path.stat().st_size
        start_s, _, end_s = rng.removeprefix("bytes=").partition("-")
        start = int(start_s or 0)
        end = min(int(end_s) if end_s else size - 1, size - 1)
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        self._left = end - start + 1
        return f

    def copyfile(self, source, outputfile):
        left = getattr(self, "_left", None)
        if left is None:
            return super().copyfile(source, outputfile)
        while left > 0:
            chunk = source.read(min(64 * 1024, left))
            if not chunk:
                break
            outputfile.write(chunk)
            left -= len(chunk)


@contextlib.contextmanager
def serving(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_RangeHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


PLAY = """async (src) => {
  const v = document.createElement('video');
  v.muted = true; v.playsInline = true; v.src = src;
  document.body.appendChild(v);
  const ready = await new Promise((resolve) => {
    v.addEventListener('canplay', () => resolve('canplay'), {once: true});
    v.addEventListener('error', () => resolve('error'), {once: true});
    setTimeout(() => resolve('timeout'), 15000);
  });
  if (ready !== 'canplay') return {ready, error: v.error ? v.error.code : null, message: v.error ? v.error.message : ''};
  await v.play();
  const t0 = v.currentTime;
  await new Promise((r) => setTimeout(r, 1200));
  return {ready, readyState: v.readyState, width: v.videoWidth, height: v.videoHeight, t0, t1: v.currentTime,
          duration: v.duration, audio: v.mozHasAudio ?? (v.webkitAudioDecodedByteCount > 0 || null)};
}"""


def test_chromium_plays_the_annotated_video(browser, annotated, clips, tmp_path, monkeypatch):
    _, _, out = annotated
    folder = tmp_path / "web"
    folder.mkdir()
    (folder / "h264.mp4").write_bytes(out.read_bytes())
    monkeypatch.setattr(render_video, "h264_encoder", lambda: None)  # the old writer, for contrast
    write_annotated(clips.video(pair_clip(seconds=1.0), "mp4"), [], folder / "mp4v.mp4")
    (folder / "index.html").write_text("<!doctype html><title>video</title><body></body>")
    with serving(folder) as url:
        page = browser.new_page()
        page.goto(url + "/index.html")
        good = page.evaluate(PLAY, url + "/h264.mp4")
        bad = page.evaluate(PLAY, url + "/mp4v.mp4")
        page.close()
    assert good["ready"] == "canplay" and good["readyState"] >= 2, good
    assert (good["width"], good["height"]) == (480, 270)
    assert good["t1"] > good["t0"] + 0.3, good  # it plays
    assert good["duration"] == pytest.approx(7.0, abs=0.1)
    assert bad["ready"] == "error" and bad["error"] == 4, bad  # MEDIA_ERR_SRC_NOT_SUPPORTED: why H.264 matters
