"""`facedex identify` on videos, GIFs and photos together, and on bad input:
each input gets a clear error or a correct result, and the batch carries on."""

from __future__ import annotations

import json
import os
import shutil
import struct
import wave

import cv2
import numpy as np
import pytest
from PIL import Image

from .conftest import check_schema, lfw_image
from .test_cli import facedex
from .video_fixtures.clips import clip_cache, pair_clip, scene_clip, single_clip
from .video_fixtures.synth import render, write_video

VIDEO_KEYS = {"input", "error", "kind", "duration", "frames_decoded", "frames_sampled", "broken_frames", "tracks",
              "people"}
TRACK_KEYS = {"track", "name", "similarity", "score", "first_seen", "last_seen", "frames", "best_frame_time",
              "candidates", "segments"}


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    return clip_cache(tmp_path_factory)


def _wav(path, seconds=0.5):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(np.zeros(int(8000 * seconds), np.int16).tobytes())


def _one_frame_gif(path):
    rgb = next(render(single_clip("Gerhard_Schroeder")))[1]
    Image.fromarray(rgb).save(path, format="GIF")


def _huge_gif(path):
    """A real two-frame GIF whose header claims 30000 x 30000 pixels."""
    small = tmp = path.with_name("small.gif")
    frames = [Image.new("RGB", (64, 64), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:], duration=100)
    data = bytearray(small.read_bytes())
    data[6:10] = struct.pack("<HH", 30000, 30000)
    path.write_bytes(bytes(data))
    tmp.unlink()


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, clips):
    d = tmp_path_factory.mktemp("bad-video")
    good = clips.video(pair_clip(), "mp4")
    (d / "empty.mp4").write_bytes(b"")
    (d / "corrupt.mp4").write_bytes(good.read_bytes()[:32] + os.urandom(4000))
    (d / "truncated.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _wav(d / "sound.wav")
    shutil.copy(d / "sound.wav", d / "sound.mp4")  # an audio file pretending to be a video
    (d / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    _one_frame_gif(d / "one.gif")
    _huge_gif(d / "huge.gif")
    shutil.copy(clips.video(pair_clip(), "avi"), d / "really-avi.mp4")  # extension lies
    shutil.copy(clips.gif(pair_clip(seconds=1.0)), d / "really-gif.mp4")
    shutil.copy(good, d / "really-mp4.gif")
    shutil.copy(lfw_image("Ariel_Sharon", 20), d / "really-jpeg.mp4")
    return d


@pytest.mark.parametrize("name, error_type, message", [
    ("empty.mp4", "CorruptMediaError", "empty file (0 bytes)"),
    ("corrupt.mp4", "CorruptVideoError", "damaged"),
    ("truncated.mp4", "CorruptVideoError", "truncated"),
    ("sound.wav", "UnsupportedVideoError", "WAV audio file has no video stream"),
    ("sound.mp4", "UnsupportedVideoError", "WAV audio file has no video stream"),
    ("notes.mp4", "UnsupportedVideoError", "looks like text"),
    ("huge.gif", "VideoTooLargeError", "30000x30000"),
    ("missing.mp4", "MediaNotFoundError", "no such file"),
])
def test_bad_input_errors_name_the_file_and_the_problem(bad_inputs, name, error_type, message):
    from facedex.errors import MediaError
    from facedex.video import open_video

    with pytest.raises(MediaError) as info:
        open_video(bad_inputs / name)
    assert type(info.value).__name__ == error_type
    assert str(bad_inputs / name) in str(info.value) and message in str(info.value)


def test_huge_video_refused_before_decoding(clips):
    from facedex.video import VideoTooLargeError, open_video

    with pytest.raises(VideoTooLargeError, match=r"400x240 = 96,000 pixels exceed the limit of 50,000"):
        open_video(clips.video(pair_clip(), "mp4"), max_pixels=50_000)


@pytest.mark.parametrize("name, kind", [
    ("really-avi.mp4", "video"), ("really-gif.mp4", "animation"), ("really-mp4.gif", "video"),
    ("really-jpeg.mp4", "image"), ("one.gif", "image"), ("sound.mp4", "audio"), ("notes.mp4", "unknown"),
    ("huge.gif", "image"),  # over the pixel limit: the photo path refuses it before decoding
])
def test_content_decides_not_the_extension(bad_inputs, name, kind):
    from facedex.video import sniff

    assert sniff(bad_inputs / name).kind == kind


def test_batch_of_videos_gifs_photos_and_bad_files(tmp_path, base_gallery, clips, bad_inputs):
    clip = clips.video(scene_clip(), "mp4")
    anim = clips.gif(pair_clip(seconds=1.0))
    photo = lfw_image("Hugo_Chavez", 20)
    bad = ["empty.mp4", "corrupt.mp4", "sound.wav", "notes.mp4", "huge.gif"]
    lying = ["really-avi.mp4", "really-gif.mp4", "really-mp4.gif", "really-jpeg.mp4", "one.gif"]
    inputs = [clip, anim, photo] + [bad_inputs / b for b in bad] + [bad_inputs / x for x in lying]
    ann = tmp_path / "ann"
    r = facedex("identify", base_gallery, *inputs, "--json", "--annotate", ann, check_rc=1)
    results = check_schema("identify", json.loads(r.stdout))["results"]
    assert [x["input"] for x in results] == [str(p) for p in inputs]
    by = {os.path.basename(x["input"]): x for x in results}

    v = by[clip.name]
    assert set(v) >= VIDEO_KEYS and v["kind"] == "video" and v["error"] is None
    assert all(set(t) == TRACK_KEYS for t in v["tracks"])
    assert sorted(t["name"] or "" for t in v["tracks"]) == ["", "Colin_Powell", "Hugo_Chavez", "Tony_Blair"]
    assert [p["name"] for p in v["people"]] == ["Colin_Powell", "Tony_Blair", "Hugo_Chavez"]
    assert v["people"][0]["ranges"] == [[0.0, 4.0]] and v["people"][0]["seconds"] == 4.0
    g = by[anim.name]
    assert g["kind"] == "video" and sorted(t["name"] or "" for t in g["tracks"]) == ["", "Ariel_Sharon"]
    p = by[photo.name]
    assert p["kind"] == "image" and set(p) == {"input", "error", "faces", "kind", "threshold", "annotated"}
    assert [f["name"] for f in p["faces"]] == ["Hugo_Chavez"]

    for name in bad:
        assert by[name]["error"], name
    assert by["empty.mp4"]["kind"] == "video" and "empty file" in by["empty.mp4"]["error"]["message"]
    assert "no video stream" in by["sound.wav"]["error"]["message"]
    assert "refused" in by["huge.gif"]["error"]["message"] and by["huge.gif"]["kind"] == "image"  # as any huge image
    for name in lying:
        assert by[name]["error"] is None, (name, by[name]["error"])
    assert sorted(t["name"] or "" for t in by["really-avi.mp4"]["tracks"]) == ["", "Ariel_Sharon"]
    assert sorted(t["name"] or "" for t in by["really-gif.mp4"]["tracks"]) == ["", "Ariel_Sharon"]
    assert sorted(t["name"] or "" for t in by["really-mp4.gif"]["tracks"]) == ["", "Ariel_Sharon"]
    assert "Ariel_Sharon" in [f["name"] for f in by["really-jpeg.mp4"]["faces"]]
    assert [f["name"] for f in by["one.gif"]["faces"]] == ["Gerhard_Schroeder"]  # a still GIF is a photo

    # annotated copies: the video with every frame, the GIF with its frames and durations, contact sheets
    written = sorted(os.listdir(ann))
    assert {"scene-mp4.mp4", "scene-mp4-tracks.png", "pair.gif", "pair-tracks.png", "Hugo_Chavez_0020.jpg",
            "one.png"} <= set(written)
    cap = cv2.VideoCapture(str(ann / "scene-mp4.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 105 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(15)
    cap.set(cv2.CAP_PROP_POS_FRAMES, 30)
    ok, frame = cap.read()
    original = [rgb for _, rgb, _ in render(scene_clip())][30]
    assert ok and np.abs(frame[:, :, ::-1].astype(int) - original.astype(int)).mean() > 0.5  # boxes drawn
    with Image.open(ann / "pair.gif") as im:
        assert im.n_frames == 10 and im.info["duration"] == 100
    with Image.open(ann / "scene-mp4-tracks.png") as sheet:
        assert sheet.size[0] >= 4 * 160 and sheet.size[1] > 160
    assert not [n for n in written if "partial" in n]  # no temporary files left


def test_terminal_timeline_and_options(base_gallery, clips):
    clip = clips.video(scene_clip(), "mp4")
    r = facedex("identify", base_gallery, clip, "--sample-fps", "3", check_rc=0)
    out = r.stdout
    assert f"{clip}: video 0:07.0, 480x270 @ 15 fps" in out and "analysed (3/s)" in out
    lines = out.splitlines()
    row = next(ln for ln in lines if ln.strip().startswith("Colin_Powell") and "|" in ln)
    bar = row.split("|")[1]
    assert len(bar) == 48 and bar.startswith("█" * 27) and set(bar[28:]) == {"·"}
    assert "0:00.0–0:04.0" in row and "4.0 s" in row
    assert any(ln.strip().startswith("unknown #") for ln in lines)
    assert "tracks:" in out and "(closest:" in out
    r = facedex("identify", base_gallery, clip, "--sample-fps", "-1", check_rc=2)
    assert "--sample-fps" in r.stderr and "must be >= 0" in r.stderr


def test_folder_input_finds_videos_and_images(tmp_path, base_gallery, clips):
    d = tmp_path / "media"
    d.mkdir()
    shutil.copy(clips.video(pair_clip(), "webm"), d / "a.webm")
    shutil.copy(lfw_image("Ariel_Sharon", 20), d / "b.jpg")
    (d / ".hidden.mp4").write_bytes(b"")
    r = facedex("identify", base_gallery, d, "--json", check_rc=0)
    doc = check_schema("identify", json.loads(r.stdout))
    results = doc["results"]
    assert [os.path.basename(x["input"]) for x in results] == ["a.webm", "b.jpg"]
    assert [os.path.basename(x["path"]) for x in doc["skipped"]] == [".hidden.mp4"]
    assert results[0]["kind"] == "video" and results[1]["kind"] == "image"


def test_video_writer_codecs_are_available(tmp_path):
    """The formats the tests (and users' annotated copies) rely on can be written here."""
    spec = pair_clip(seconds=0.2)
    for codec in ("mp4", "mkv", "webm", "avi"):
        truth = write_video(spec, tmp_path / f"x.{codec}", codec)
        assert len(truth) == 2


def test_track_options_drop_short_unknown_tracks_and_say_so(base_gallery, clips):
    """--min-track-frames longer than the stranger's track (12 of 35 analysed
    frames): the unknown track is not shown (and counted); named tracks are
    always reported, Tony Blair's 9 frames included."""
    clip = clips.video(scene_clip(), "mp4")
    r = facedex("identify", base_gallery, clip, "--json", "--min-track-frames", "13", check_rc=0)
    res = check_schema("identify", json.loads(r.stdout))["results"][0]
    assert sorted(t["name"] for t in res["tracks"]) == ["Colin_Powell", "Hugo_Chavez", "Tony_Blair"]
    assert res["dropped_tracks"] == {"short": 1}
    r = facedex("identify", base_gallery, clip, "--min-track-frames", "13", "--merge-window", "0", check_rc=0)
    assert "1 unknown track not shown (1 short; see --min-track-*)" in r.stdout
    r = facedex("identify", base_gallery, clip, "--merge-similarity", "2", check_rc=2)
    assert "--merge-similarity" in r.stderr
