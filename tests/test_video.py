"""Video and animated-GIF identification on real models and clips made from LFW
stills: one decision per track, time ranges, cuts, strangers, codecs and
containers, rotation, per-frame GIF durations, streaming, broken frames."""

from __future__ import annotations

import numpy as np
import pytest

import facedex
from facedex.video import ArraySource, VideoOptions

from .video_fixtures.clips import clip_cache, pair_clip, scene_clip, single_clip
from .video_fixtures.synth import ClipSpec, Shot, render, rotate_mp4, write_video


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    return clip_cache(tmp_path_factory)


@pytest.fixture(scope="session")
def gallery(base_gallery):
    g = facedex.Gallery.open(base_gallery)
    yield g
    g.close()


@pytest.fixture(scope="session")
def scene_result(gallery, clips):
    return gallery.identify_video(clips.video(scene_clip(), "mp4")).result()


def _by_name(result):
    out: dict = {}
    for t in result.tracks:
        out.setdefault(t.name, []).append(t)
    return out


def test_scene_clip_one_decision_per_track(scene_result):
    res = scene_result
    assert res.error is None and res.info.kind == "video" and res.info.format == "MP4"
    assert res.duration == pytest.approx(7.0, abs=0.01)
    assert res.frames_decoded == 105 and res.frames_sampled == 35 and res.broken_frames == 0
    named = _by_name(res)
    # every known person is found, each in one track; the stranger is one unknown track
    assert {n for n in named if n} == {"Colin_Powell", "Tony_Blair", "Hugo_Chavez"}
    assert all(len(named[n]) == 1 for n in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez"))
    assert len(named.get(None, [])) == 1
    stranger = named[None][0]
    assert stranger.candidates and stranger.similarity < stranger.threshold
    assert stranger.frames >= 10  # many frames, still one unknown decision
    for t in res.tracks:
        assert t.threshold == pytest.approx(0.47)  # the gallery's photo threshold
        assert t.first_seen <= t.best_frame_time < t.last_seen
        assert t.frames == len(t.points) and t.thumbnail is not None and t.thumbnail.ndim == 3
        if t.known:
            assert t.similarity >= t.threshold and t.candidates[0].name == t.name


def test_scene_clip_times_and_cut(scene_result):
    named = _by_name(scene_result)
    powell, blair = named["Colin_Powell"][0], named["Tony_Blair"][0]
    chavez, stranger = named["Hugo_Chavez"][0], named[None][0]
    # Powell is on screen for the whole first shot; the cut at 4 s ends his track
    assert powell.first_seen == pytest.approx(0.0, abs=0.01)
    assert powell.last_seen == pytest.approx(4.0, abs=0.01) and powell.ended == "cut"
    # Blair enters through the right edge after 1 s and leaves through the left before the cut
    assert 1.0 < blair.first_seen < 2.0 and 2.8 < blair.last_seen <= 3.8
    # second shot: Chavez from the cut to the end; the stranger from about 4.5 s
    assert chavez.first_seen == pytest.approx(4.0, abs=0.01) and chavez.last_seen == pytest.approx(7.0, abs=0.01)
    assert 4.4 <= stranger.first_seen <= 5.0 and stranger.last_seen == pytest.approx(7.0, abs=0.01)
    assert chavez.ended == "end"
    # no track crosses the cut
    assert all(t.last_seen <= 4.0 + 1e-6 or t.first_seen >= 4.0 - 1e-6 for t in scene_result.tracks)
    people = {p.name: p for p in scene_result.people}
    assert set(people) == {"Colin_Powell", "Tony_Blair", "Hugo_Chavez"}
    assert people["Colin_Powell"].ranges == ((powell.first_seen, powell.last_seen),)
    assert people["Colin_Powell"].seconds == pytest.approx(4.0, abs=0.01)
    assert [p.name for p in scene_result.people] == ["Colin_Powell", "Tony_Blair", "Hugo_Chavez"]


def test_scene_clip_json_shape(scene_result):
    d = scene_result.to_dict()
    assert {"input", "error", "kind", "duration", "frames_decoded", "frames_sampled", "broken_frames", "tracks",
            "people"} <= set(d)
    assert d["kind"] == "video" and d["error"] is None
    for t in d["tracks"]:
        assert set(t) == {"track", "name", "similarity", "score", "first_seen", "last_seen", "frames",
                          "best_frame_time", "candidates", "segments"}
        assert t["score"] <= t["similarity"] + 1e-4  # the crowding penalty only ever lowers it
        assert t["segments"] == [[t["first_seen"], t["last_seen"]]]
        assert all(set(c) == {"name", "similarity"} for c in t["candidates"])
    for p in d["people"]:
        assert {"name", "ranges", "seconds"} <= set(p)
        assert all(len(r) == 2 and r[0] <= r[1] for r in p["ranges"])


def test_without_scene_cut_detection_tracks_still_split_by_appearance(gallery, clips):
    res = gallery.identify_video(clips.video(scene_clip(), "mp4"), VideoOptions(scene_cut=0)).result()
    named = _by_name(res)
    assert {n for n in named if n} == {"Colin_Powell", "Tony_Blair", "Hugo_Chavez"}
    assert all(len(named[n]) == 1 for n in ("Colin_Powell", "Tony_Blair", "Hugo_Chavez"))


@pytest.mark.parametrize("codec", ["mp4", "mov", "mkv", "webm", "webm-vp9", "avi", "avi-xvid"])
def test_codecs_and_containers(gallery, clips, codec):
    res = gallery.identify_video(clips.video(pair_clip(), codec)).result()
    names = sorted((t.name or "") for t in res.tracks)
    assert names == ["", "Ariel_Sharon"], [(t.name, t.frames, t.similarity) for t in res.tracks]
    assert res.frames_decoded == 24 and res.duration == pytest.approx(2.4, abs=0.01)


def test_animated_gif_with_per_frame_durations(gallery, clips):
    spec = pair_clip(seconds=1.2, fps=10.0)  # 12 frames
    durations = [100, 100, 100, 500, 100, 100, 1000, 100, 100, 100, 100, 300]
    path = clips.gif(spec, durations, tag="-durations")
    res = gallery.identify_video(path).result()
    assert res.info.kind == "animation" and res.info.format == "GIF" and res.info.frame_count == 12
    assert res.duration == pytest.approx(sum(durations) / 1000, abs=1e-6)
    # sampling is by time: the long frames are sampled, the short ones at 5 per second
    assert res.frames_decoded == 12
    names = sorted((t.name or "") for t in res.tracks)
    assert names == ["", "Ariel_Sharon"]
    for t in res.tracks:
        assert t.first_seen == 0.0 and t.last_seen == pytest.approx(res.duration)
    sharon = next(p for p in res.people if p.name == "Ariel_Sharon")
    assert sharon.seconds == pytest.approx(2.7, abs=1e-6)


def test_one_frame_gif_is_one_frame_track(gallery, tmp_path):
    from PIL import Image

    rgb = next(render(single_clip()))[1]
    path = tmp_path / "one.gif"
    Image.fromarray(rgb).save(path, format="GIF", duration=250)
    res = gallery.identify_video(path).result()
    assert [t.name for t in res.tracks] == ["Gerhard_Schroeder"]
    t = res.tracks[0]
    assert t.frames == 1 and t.first_seen == 0.0 and t.last_seen == pytest.approx(0.25)


def test_rotation_metadata_is_honoured(gallery, tmp_path):
    """A phone video: frames stored on their side, with a display matrix that
    rotates them upright. The decoded frames are upright, the face is found."""
    import cv2

    from facedex.video import open_video

    spec = single_clip("Junichiro_Koizumi", seconds=1.5, width=320, height=240)
    upright = [rgb for _, rgb, _ in render(spec)]
    sideways = tmp_path / "sideways.mp4"
    w = cv2.VideoWriter(str(sideways), cv2.VideoWriter_fourcc(*"mp4v"), spec.fps, (240, 320))
    for f in upright:
        w.write(np.ascontiguousarray(np.rot90(f)[:, :, ::-1]))  # stored turned 90 degrees anticlockwise
    w.release()
    rotated = tmp_path / "phone.mp4"
    rotate_mp4(sideways, rotated, 90)
    with open_video(sideways) as plain:
        assert plain.info.rotation == 0 and (plain.info.width, plain.info.height) == (240, 320)
    with open_video(rotated) as src:
        assert src.info.rotation == 90 and (src.info.width, src.info.height) == (320, 240)
        first = next(src.frames()).rgb
    assert first.shape == upright[0].shape
    assert np.abs(first.astype(int) - upright[0].astype(int)).mean() < 8
    res = gallery.identify_video(rotated).result()
    assert [t.name for t in res.tracks] == ["Junichiro_Koizumi"]


def test_stranger_stays_unknown_however_long(gallery, clips):
    spec = single_clip("stranger", seconds=6.0, fps=10.0, known=False)
    res = gallery.identify_video(clips.video(spec, "mp4"), VideoOptions(sample_fps=None)).result()
    assert len(res.tracks) == 1 and res.tracks[0].frames == 60
    assert res.tracks[0].name is None and res.people == ()


def test_streaming_yields_tracks_before_the_end(gallery):
    """An ArraySource fed by a generator: the first person's track arrives while
    later frames have not even been made yet."""
    spec = ClipSpec("stream", [
        Shot(0.0, 2.0, 3, [single_clip("Donald_Rumsfeld").shots[0].actors[0]]),
        Shot(2.0, 8.0, 3, []),
    ], width=320, height=240, fps=10.0)
    spec.shots[0].actors[0].path = [(0.0, 0.5, 0.5, 130), (1.5, 0.5, 0.5, 130)]
    produced = []

    def frames():
        for t, rgb, _ in render(spec):
            produced.append(t)
            yield t, rgb

    # a track is final once unseen for max_gap (1 s) and then merge_window (2 s here) without a continuation
    stream = gallery.identify_video(ArraySource(frames(), fps=spec.fps, name="generator"),
                                    VideoOptions(merge_window=2.0))
    first = next(stream)
    assert first.name == "Donald_Rumsfeld" and first.ended == "gap"
    assert len(produced) < 60  # of 80 frames: decided ~3 s after the face left
    assert stream.stats.frames_decoded == len(produced)
    assert list(stream) == []  # nobody else
    assert stream.stats.frames_decoded == 80
    with pytest.raises(RuntimeError):
        stream.result()


@pytest.mark.parametrize("codec", ["avi", "mp4"])
def test_broken_frames_are_skipped_and_counted(gallery, clips, tmp_path, codec):
    src = clips.video(single_clip("Tony_Blair", seconds=3.0), codec)
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(1)
    for frac in (0.3, 0.55, 0.8):
        at = int(len(data) * frac)
        data[at:at + 1500] = rng.integers(0, 256, 1500, dtype=np.uint8).tobytes()
    broken = tmp_path / f"broken.{codec}"
    broken.write_bytes(bytes(data))
    res = gallery.identify_video(broken).result()
    assert res.broken_frames >= 1
    assert res.frames_decoded + res.broken_frames <= 30
    assert res.frames_decoded >= 20
    assert {t.name for t in res.tracks if t.known} == {"Tony_Blair"}


def test_truncated_video_warns(gallery, clips, tmp_path):
    src = clips.video(single_clip("Tony_Blair", seconds=3.0), "mkv")
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    res = gallery.identify_video(cut).result()
    assert res.error is None and 0.5 < res.duration < 2.5
    assert any("truncated" in w for w in res.warnings)
    assert {t.name for t in res.tracks} == {"Tony_Blair"}


def test_bytes_input_and_threshold_override(gallery, clips):
    data = clips.video(pair_clip(), "mp4").read_bytes()
    res = gallery.identify_video(data, name="upload.mp4").result()
    assert res.input == "upload.mp4" and sorted(t.name or "" for t in res.tracks) == ["", "Ariel_Sharon"]
    strict = gallery.identify_video(data, threshold=0.99).result()
    assert all(t.name is None and t.threshold == 0.99 for t in strict.tracks)


def test_embedding_every_face_gives_the_same_decisions(gallery, clips, scene_result):
    every = gallery.identify_video(clips.video(scene_clip(), "mp4"), VideoOptions(embed_interval=0)).result()
    assert [(t.name, t.first_seen, t.last_seen) for t in every.tracks] == \
        [(t.name, t.first_seen, t.last_seen) for t in scene_result.tracks]
    for a, b in zip(every.tracks, scene_result.tracks):
        assert a.similarity == pytest.approx(b.similarity, abs=0.05)


def test_write_video_helper_is_deterministic(clips, tmp_path):
    """The clips are ground truth: rendering twice gives the same pixels."""
    a = [rgb for _, rgb, _ in render(pair_clip(seconds=0.3))]
    b = [rgb for _, rgb, _ in render(pair_clip(seconds=0.3))]
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    truth = write_video(pair_clip(seconds=0.3), tmp_path / "x.mp4")
    assert len(truth) == 3 and all(len(t.actors) == 2 for t in truth)
