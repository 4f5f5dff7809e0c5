"""Every common codec, through both video decoders: PyAV (the ``video`` extra:
AV1, VP9, HEVC, H.264…) and OpenCV (the fallback). Both must give the same
frames, the same timestamps and counts, and the same identification."""

from __future__ import annotations

import numpy as np
import pytest

import facedex
from facedex.errors import ConfigError, MissingDependencyError, UnsupportedVideoError
from facedex.media import video as media_video
from facedex.video import open_video

from .video_fixtures.clips import clip_cache, pair_clip, scene_clip, single_clip

av = pytest.importorskip("av", reason="the PyAV decoder is the 'video' extra: pip install 'facedex[video]'")

# (how the clip is made, the codec FFmpeg reports)
OPENCV_MADE = {"mp4": "mpeg4", "mov": "mpeg4", "mkv": "ffv1", "webm": "vp8", "webm-vp9": "vp9", "avi": "mjpeg",
               "avi-xvid": "mpeg4"}
PYAV_MADE = {"h264": "h264", "hevc": "hevc", "vp9": "vp9", "av1": "av1", "av1-mp4": "av1"}


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    return clip_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def gallery(base_gallery):
    g = facedex.Gallery.open(base_gallery)
    yield g
    g.close()


def _path(clips, codec, spec=None):
    spec = spec or pair_clip()
    return clips.video_av(spec, codec) if codec in PYAV_MADE else clips.video(spec, codec)


@pytest.mark.parametrize("codec", sorted(PYAV_MADE) + sorted(OPENCV_MADE))
def test_pyav_decodes_every_codec(gallery, clips, codec, monkeypatch):
    monkeypatch.setenv("FACEDEX_VIDEO_DECODER", "pyav")
    res = gallery.identify_video(_path(clips, codec)).result()
    assert res.info.decoder == "pyav" and res.info.codec == {**PYAV_MADE, **OPENCV_MADE}[codec]
    assert sorted((t.name or "") for t in res.tracks) == ["", "Ariel_Sharon"]
    assert res.frames_decoded == 24 and res.broken_frames == 0 and res.duration == pytest.approx(2.4, abs=0.01)


def test_opencv_cannot_decode_av1_and_says_what_to_do(clips, monkeypatch):
    monkeypatch.setenv("FACEDEX_VIDEO_DECODER", "opencv")
    path = _path(clips, "av1")
    with pytest.raises(UnsupportedVideoError, match=r"AV1 .*pip install 'facedex\[video\]'.*libx264"):
        open_video(path)
    monkeypatch.setenv("FACEDEX_VIDEO_DECODER", "auto")
    with open_video(path) as src:  # auto: PyAV, when installed
        assert src.info.decoder == "pyav" and len(list(src.frames())) == 24


@pytest.mark.parametrize("codec", ["h264", "hevc", "vp9", "mp4", "mkv", "webm", "avi", "mov"])
def test_both_decoders_give_the_same_frames(clips, codec):
    path = _path(clips, codec)
    with open_video(path, decoder="pyav") as a, open_video(path, decoder="opencv") as b:
        fa, fb = list(a.frames()), list(b.frames())
        ia, ib = a.info, b.info
    assert (ia.width, ia.height, ia.fps, ia.frame_count, ia.rotation) == (ib.width, ib.height, ib.fps, ib.frame_count,
                                                                         ib.rotation)
    assert ia.duration == pytest.approx(ib.duration, abs=0.05)
    assert [f.time for f in fa] == pytest.approx([f.time for f in fb], abs=1e-6)
    assert [f.index for f in fa] == [f.index for f in fb] and len(fa) == 24
    diff = max(np.abs(x.rgb.astype(int) - y.rgb.astype(int)).mean() for x, y in zip(fa, fb))
    assert diff < 1.0, diff  # the same FFmpeg conversion: equal to within rounding


def test_both_decoders_give_the_same_identification(gallery, clips):
    path = clips.video_av(scene_clip(), "h264")
    results = {}
    for dec in ("pyav", "opencv"):
        results[dec] = gallery.identify_video(open_video(path, decoder=dec)).result()
    a, b = results["pyav"], results["opencv"]
    assert [(t.track, t.name, t.first_seen, t.last_seen, t.frames) for t in a.tracks] == \
        [(t.track, t.name, t.first_seen, t.last_seen, t.frames) for t in b.tracks]
    assert [t.similarity for t in a.tracks] == pytest.approx([t.similarity for t in b.tracks], abs=0.01)
    assert sorted(t.name or "" for t in a.tracks) == ["", "Colin_Powell", "Hugo_Chavez", "Tony_Blair"]
    assert (a.frames_decoded, a.frames_sampled, a.duration) == (b.frames_decoded, b.frames_sampled, b.duration)


@pytest.mark.parametrize("codec", ["avi", "mp4"])
def test_both_decoders_skip_and_count_broken_frames(gallery, clips, tmp_path, codec):
    src = clips.video(single_clip("Tony_Blair", seconds=3.0), codec)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    for frac in (0.3, 0.55, 0.8):
        at = int(len(data) * frac)
        data[at:at + 1500] = rng.integers(0, 256, 1500, dtype=np.uint8).tobytes()
    broken = tmp_path / f"broken.{codec}"
    broken.write_bytes(bytes(data))
    for dec in ("pyav", "opencv"):
        res = gallery.identify_video(open_video(broken, decoder=dec)).result()
        assert res.broken_frames >= 1 and 20 <= res.frames_decoded and res.frames_decoded + res.broken_frames <= 30
        assert {t.name for t in res.tracks if t.known} == {"Tony_Blair"}, dec


def test_truncated_file_warns_on_pyav(clips, tmp_path):
    data = clips.video(single_clip("Tony_Blair", seconds=3.0), "mkv").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with open_video(cut, decoder="pyav") as src:
        n = len(list(src.frames()))
        assert 5 < n < 25 and any("truncated" in w for w in src.warnings)


def test_bytes_go_to_pyav_without_a_temporary_file(clips, tmp_path, monkeypatch):
    import tempfile

    def no_temp(*a, **k):
        raise AssertionError("PyAV reads bytes from memory")

    monkeypatch.setattr(tempfile, "mkstemp", no_temp)
    with open_video(_path(clips, "av1").read_bytes(), name="upload.mkv") as src:
        assert src.info.decoder == "pyav" and src.info.input == "upload.mkv" and len(list(src.frames())) == 24


def test_decoder_choice_is_checked(monkeypatch, clips):
    monkeypatch.setenv("FACEDEX_VIDEO_DECODER", "gstreamer")
    with pytest.raises(ConfigError, match="FACEDEX_VIDEO_DECODER"):
        open_video(_path(clips, "h264"))
    monkeypatch.setenv("FACEDEX_VIDEO_DECODER", "pyav")
    monkeypatch.setattr(media_video, "_pyav", lambda: None)  # as without the extra
    with pytest.raises(MissingDependencyError, match=r"pip install 'facedex\[video\]'"):
        open_video(_path(clips, "h264"))
    monkeypatch.setenv("FACEDEX_VIDEO_DECODER", "auto")
    with open_video(_path(clips, "h264")) as src:  # auto falls back to OpenCV
        assert src.info.decoder == "opencv" and len(list(src.frames())) == 24
