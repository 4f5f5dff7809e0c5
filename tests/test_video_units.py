"""Fast unit tests of the video pieces with small fakes: content sniffing,
sampling, tracking, aggregation weights, scene cuts, people summaries, the
terminal timeline, box interpolation for annotation."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from facedex.errors import ConfigError
from facedex.media.sniff import sniff_head
from facedex.types import Face
from facedex.video import VideoOptions, sampler, summarize_people
from facedex.video.scene import SceneCutDetector
from facedex.video.tracker import FaceTracker, face_weight
from facedex.video.types import format_time


def face(x, y, w=80.0, h=None, score=0.9, yaw_shift=0.0):
    h = w * 1.2 if h is None else h
    lm = ((x + 0.3 * w, y + 0.4 * h), (x + 0.7 * w, y + 0.4 * h), (x + 0.5 * w + yaw_shift * w, y + 0.6 * h),
          (x + 0.35 * w, y + 0.8 * h), (x + 0.65 * w, y + 0.8 * h))
    return Face((float(x), float(y), float(w), float(h)), lm, score)


def unit(seed, dim=128):
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def near(base, seed, noise=0.35):
    v = base + noise * np.random.default_rng(1000 + seed).normal(size=base.shape).astype(np.float32) / math.sqrt(
        base.size)
    return (v / np.linalg.norm(v)).astype(np.float32)


# -- content ---------------------------------------------------------------------------------
@pytest.mark.parametrize("head, kind, fmt", [
    (b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00", "video", "MP4"),
    (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00", "video", "MOV"),
    (b"\x00\x00\x00\x20ftypM4A \x00\x00\x00\x00", "audio", "an MPEG-4 audio file (M4A)"),
    (b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat", "video", "MOV"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm",
     "video", "WebM"),
    (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\x82\x88matroska", "video", "Matroska"),
    (b"RIFF\x00\x00\x00\x00AVI LIST", "video", "AVI"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "audio", "a WAV audio file"),
    (b"FLV\x01\x05", "video", "FLV"),
    (b"\x00\x00\x01\xba\x44", "video", "MPEG-PS"),
    (bytes([0x47] + [0] * 187) * 3, "video", "MPEG-TS"),
    (b"OggS\x00\x02" + b"\x00" * 22 + b"\x80theora", "video", "Ogg/Theora"),
    (b"OggS\x00\x02" + b"\x00" * 22 + b"\x01vorbis", "audio", "an Ogg audio file"),
    (b"ID3\x04\x00", "audio", "an MP3 audio file"),
    (b"fLaC\x00", "audio", "a FLAC audio file"),
    (b"GIF89a\x10\x00\x10\x00", "image", "GIF"),
    (b"\xff\xd8\xff\xe0", "image", "JPEG"),
    (b"hello world, this is text", "unknown", ""),
    (b"", "unknown", ""),
])
def test_sniff_head(head, kind, fmt):
    got = sniff_head(head)
    assert (got.kind, got.format) == (kind, fmt)


# -- options and small helpers -----------------------------------------------------------------
@pytest.mark.parametrize("kwargs, word", [
    ({"sample_fps": 0}, "sample_fps"), ({"sample_fps": float("nan")}, "sample_fps"), ({"max_gap": -1}, "max_gap"),
    ({"appearance_gate": 1.5}, "appearance_gate"), ({"scene_cut": 2}, "scene_cut"),
    ({"min_track_frames": 0}, "min_track_frames"), ({"embed_interval": -0.1}, "embed_interval"),
    ({"min_embeddings": 0}, "min_embeddings"), ({"max_pixels": 0}, "max_pixels"),
    ({"min_track_score": 1.5}, "min_track_score"), ({"min_track_quality": -0.1}, "min_track_quality"),
    ({"track_low_score": 1.0}, "track_low_score"), ({"merge_similarity": 2}, "merge_similarity"),
    ({"merge_window": -1}, "merge_window"), ({"quality_power": -1}, "quality_power"),
])
def test_options_are_validated(kwargs, word):
    with pytest.raises(ConfigError, match=word):
        VideoOptions(**kwargs)


def test_format_time():
    assert format_time(0) == "0:00.0"
    assert format_time(61.26) == "1:01.3"
    assert format_time(3725.0) == "1:02:05.0"
    assert format_time(-1) == "0:00.0"


def test_sampler_ntsc_rate_and_gaps():
    want = sampler(5.0)
    times = [i * 1001 / 30000 for i in range(61)]  # 29.97 fps, 2 s
    picked = [t for t in times if want(t)]
    assert len(picked) == 10 or len(picked) == 11
    assert all(0.19 < b - a < 0.24 for a, b in zip(picked, picked[1:]))
    want = sampler(5.0)
    assert [t for t in (0.0, 0.1, 0.2, 0.7, 3.0, 3.1, 3.2) if want(t)] == [0.0, 0.2, 0.7, 3.0, 3.2]
    want = sampler(None)
    assert all(want(t) for t in (0.0, 0.01, 0.02))


def test_summarize_people_merges_touching_ranges():
    people = summarize_people([(1, "A", 0.0, 2.0), (2, None, 0.0, 5.0), (3, "A", 2.0, 3.0), (4, "B", 1.0, 1.5),
                               (5, "A", 4.0, 4.5), (6, "A", 4.2, 5.0)])
    assert [p.name for p in people] == ["A", "B"]
    a = people[0]
    assert a.ranges == ((0.0, 3.0), (4.0, 5.0)) and a.seconds == pytest.approx(4.0) and a.tracks == (1, 3, 5, 6)
    assert people[1].to_dict() == {"name": "B", "ranges": [[1.0, 1.5]], "seconds": 0.5, "tracks": [4]}
    # float noise, and a gap no longer than one sampling period (no frame in between was analysed), touch
    near = summarize_people([(1, "A", 0.0, 1.9999999), (2, "A", 2.0000001, 3.0), (3, "A", 3.2, 4.0),
                             (4, "A", 4.5, 5.0)], touch=0.2)
    assert near[0].ranges == ((0.0, 4.0), (4.5, 5.0))


def test_timeline_bar():
    from facedex.cli.show import timeline_bar

    bar = timeline_bar([(0.0, 1.0), (3.0, 4.0)], 4.0, width=8)
    assert len(bar) == 8 and bar[0:2] == bar[6:8] and bar[0] != bar[3] and bar[2:6] == bar[3] * 4
    assert timeline_bar([(0.0, 0.0)], 0.0, width=4) == timeline_bar([(0, 1)], 1.0, width=4)


# -- quality weights ---------------------------------------------------------------------------
def test_face_weight_prefers_big_sharp_frontal_whole_faces():
    crop = np.random.default_rng(0).integers(0, 256, (112, 112, 3), dtype=np.uint8)  # very sharp
    blurred = np.full((112, 112, 3), 128, np.uint8)
    good = face(100, 100, 90)
    assert face_weight(good, crop, 640, 480) == pytest.approx(0.9, abs=0.01)
    assert face_weight(face(100, 100, 24), crop, 640, 480) < 0.3 * face_weight(good, crop, 640, 480)
    assert face_weight(good, blurred, 640, 480) < 0.15
    assert face_weight(face(100, 100, 90, yaw_shift=0.25), crop, 640, 480) < 0.5
    assert face_weight(face(-45, 100, 90), crop, 640, 480) < 0.3  # half outside the frame
    assert face_weight(face(100, 100, 90, score=0.6), crop, 640, 480) < face_weight(good, crop, 640, 480)
    assert face_weight(good, None, 640, 480) == pytest.approx(0.9, abs=0.01)  # no crop: sharpness left out


# -- tracking ----------------------------------------------------------------------------------
def run(tracker, frames, period=0.2):
    """frames: list of lists of (Face, embedding); returns every finished track."""
    done = []
    for i, faces in enumerate(frames):
        t = i * period
        fs = [f for f, _ in faces]
        need = tracker.plan(t, fs)
        embs = [e if n else None for (_, e), n in zip(faces, need)]
        done += tracker.update(t, 1 / 30, fs, embs, [0.5] * len(fs))
    return done + tracker.finish(len(frames) * period)


def test_two_faces_crossing_keep_their_identities():
    a, b = unit(1), unit(2)
    frames = []
    for i in range(11):  # A walks right, B walks left; they pass each other in the middle
        frames.append([(face(50 + 40 * i, 100), near(a, i)), (face(450 - 40 * i, 110), near(b, 50 + i))])
    tracks = run(FaceTracker(VideoOptions(embed_interval=0)), frames)
    assert len(tracks) == 2
    for tr in tracks:
        xs = [p.box[0] for p in tr.points]
        assert len(xs) == 11 and (xs == sorted(xs) or xs == sorted(xs, reverse=True))
        assert float(tr.aggregate @ (a if xs[0] < 100 else b)) > 0.9


def _occlusion_frames(a):
    frames = [[(face(100, 100), near(a, i))] for i in range(4)]
    frames += [[]] * 3  # hidden for 0.6 s (< max_gap 1 s)
    frames += [[(face(400, 100), near(a, 10 + i))] for i in range(3)]  # back elsewhere: appearance decides
    frames += [[]] * 7  # gone for 1.4 s (> max_gap)
    frames += [[(face(400, 100), near(a, 20 + i))] for i in range(3)]
    return frames


def test_reacquire_after_occlusion_and_a_new_track_after_the_gap():
    """Without merging (merge_window 0): the face that comes back after more
    than max_gap starts a new track."""
    tracks = run(FaceTracker(VideoOptions(merge_window=0)), _occlusion_frames(unit(3)))
    assert [t.frames for t in tracks] == [7, 3] and [t.number for t in tracks] == [1, 2]
    assert tracks[0].ended == "gap" and tracks[1].ended == "end"
    assert tracks[0].first_time == 0.0 and tracks[0].end_time == pytest.approx(2.0)  # last seen 1.8 + 0.2


def test_a_fragment_after_a_long_occlusion_continues_its_track():
    """With merging (the default): the same face back after 1.4 s continues
    track 1 — one track, two segments on screen, all the evidence."""
    tracks = run(FaceTracker(), _occlusion_frames(unit(3)))
    assert len(tracks) == 1
    (t,) = tracks
    assert t.frames == 10 and t.number == 1 and t.fragments == 2 and t.embedded >= 6
    assert t.segments == [[0.0, pytest.approx(2.0)], [pytest.approx(3.4), pytest.approx(4.0)]]
    assert t.ended == "end"


def test_a_different_person_after_an_occlusion_is_not_merged():
    a, b = unit(11), unit(12)
    frames = [[(face(100, 100), near(a, i))] for i in range(4)] + [[]] * 7
    frames += [[(face(100, 100), near(b, i))] for i in range(4)]
    tracks = run(FaceTracker(), frames)
    assert [(t.number, t.frames, t.fragments) for t in tracks] == [(1, 4, 1), (2, 4, 1)]


def test_merging_across_a_cut_away_and_back():
    """Shot A (person a), cut to shot B (person b), cut back to A: a's two
    pieces are one track; b is another."""
    a, b = unit(13), unit(14)
    tr = FaceTracker()
    done = []
    t = 0.0
    for shot, (who, x) in enumerate([(a, 100), (b, 300), (a, 110)]):
        if shot:
            done += tr.cut(t)
        for i in range(5):
            f = [face(x + i, 100)]
            need = tr.plan(t, f)
            done += tr.update(t, 0.04, f, [near(who, 10 * shot + i) if n else None for n in need], [0.5])
            t += 0.2
    done += tr.finish(t)
    assert sorted((d.number, d.frames, d.fragments) for d in done) == [(1, 10, 2), (2, 5, 1)]
    a_track = next(d for d in done if d.number == 1)
    assert a_track.segments == [[0.0, pytest.approx(1.0)], [pytest.approx(2.0), pytest.approx(3.0)]]


def test_optimal_assignment_where_greedy_would_split_a_track():
    """Face 1 resembles both tracks, face 2 only track A. Best-first pairing
    gives face 1 to A and leaves B and face 2 unpaired (a new track); the
    optimal assignment pairs A-2 and B-1."""
    e = np.eye(128, dtype=np.float32)
    a = e[0]
    b = 0.5 * e[0] + np.sqrt(0.75) * e[1]
    f1 = 0.9 * e[0] + 0.404 * e[1]
    f1 = (f1 + np.sqrt(max(0.0, 1 - float(f1 @ f1))) * e[2]).astype(np.float32)
    f2 = 0.85 * e[0] - 0.3 * e[1]
    f2 = (f2 + np.sqrt(max(0.0, 1 - float(f2 @ f2))) * e[3]).astype(np.float32)
    assert float(f1 @ a) > float(f2 @ a) > float(f1 @ b) > 0.5 > 0.3 > float(f2 @ b)
    tr = FaceTracker(VideoOptions(min_track_frames=1, embed_interval=0, reacquire_similarity=0.95))
    tr.update(0.0, 0.04, [face(100, 100), face(200, 100)], [a, b.astype(np.float32)], [0.5, 0.5])
    tr.update(0.2, 0.04, [face(150, 100), face(150, 200)], [f1, f2], [0.5, 0.5])
    assert len(tr.live) == 2 and all(t.frames == 2 for t in tr.live)
    by_first = {t.points[0].box[0]: t for t in tr.live}
    assert by_first[100.0].points[1].box[1] == 200.0  # A took face 2
    assert by_first[200.0].points[1].box[1] == 100.0  # B took face 1


def test_low_score_detections_only_continue_tracks():
    """ByteTrack's second pass: a low-score detection over a track's predicted
    box continues it (not embedded); one elsewhere starts nothing."""
    a = unit(15)
    tr = FaceTracker(VideoOptions(min_track_frames=1))
    for i in range(3):
        f = [face(100 + 5 * i, 100)]
        need = tr.plan(i * 0.2, f)
        tr.update(i * 0.2, 0.04, f, [near(a, i) if n else None for n in need], [0.5])
    low = [face(116, 100, score=0.4), face(400, 300, score=0.45)]
    tr.update(0.6, 0.04, [], [], [], low=low, low_weights=[0.2, 0.2])
    (t,) = tr.live
    assert t.frames == 4 and t.low_frames == 1 and t.embedded == 3 and tr.low_used == 1
    assert t.points[-1].box[0] == 116.0 and t.score_n == 3  # the low score does not count as a face's


def test_numbers_are_given_at_confirmation_and_flickers_are_dropped():
    from facedex.video.tracker import drop_reason

    a, b, c = unit(16), unit(17), unit(18)
    frames = [[(face(100, 100), near(a, i))] + ([(face(400, 100), near(b, i))] if i == 1 else [])
              for i in range(5)]  # b flickers for one frame
    frames += [[(face(250, 300), near(c, i))] for i in range(4)]
    tracks = run(FaceTracker(), frames)
    assert sorted((t.number, t.frames) for t in tracks if t.confirmed) == [(1, 5), (2, 4)]
    flicker = next(t for t in tracks if not t.confirmed)
    assert flicker.frames == 1 and drop_reason(flicker, VideoOptions()) == "short"


@pytest.mark.parametrize("frames, scores, weight, expected", [
    (5, [0.9] * 5, 0.5, None),
    (2, [0.9] * 2, 0.5, "short"),
    (5, [0.62] * 5, 0.5, "non_face"),
    (5, [0.9] * 5, 0.01, "poor"),
    (1, [0.9], 0.5, None),  # a one-frame video (frames_sampled=1)
])
def test_drop_reasons(frames, scores, weight, expected):
    from facedex.video.tracker import LiveTrack, drop_reason

    t = LiveTrack(id=1, first_time=0.0, last_time=1.0, last_box=np.zeros(4), last_duration=0.2, frames=frames)
    t.score_sum, t.score_n, t.best_weight = sum(scores), len(scores), weight
    sampled = 1 if frames == 1 else 100
    assert drop_reason(t, VideoOptions(), sampled) == expected


def test_a_different_person_in_the_same_place_is_a_new_track():
    a, b = unit(4), unit(5)
    frames = [[(face(100, 100), near(a, i))] for i in range(5)] + [[(face(102, 100), near(b, i))] for i in range(5)]
    tracks = run(FaceTracker(VideoOptions(embed_interval=0)), frames)
    assert [t.frames for t in tracks] == [5, 5] and [t.number for t in tracks] == [1, 2]


def test_plan_skips_embeddings_only_for_unambiguous_continuations():
    a = unit(6)
    tr = FaceTracker(VideoOptions(embed_interval=0.5, min_embeddings=3))
    needs = []
    for i in range(10):
        t = i * 0.2
        f = [face(100 + i, 100)]
        need = tr.plan(t, f)
        needs.append(need[0])
        tr.update(t, 1 / 30, f, [near(a, i) if need[0] else None], [0.5])
    # the first three are embedded, then one every 0.5 s
    assert needs == [True, True, True, False, False, True, False, False, True, False]
    # a second face near the first: both must be embedded
    t = 2.0
    two = [face(112, 100), face(150, 100)]
    assert tr.plan(t, two) == [True, True]
    # a clearly better face is embedded even within the interval
    tr2 = FaceTracker(VideoOptions(embed_interval=10, min_embeddings=1))
    tr2.plan(0, [face(0, 0)])
    tr2.update(0, 0.03, [face(0, 0)], [a], [0.3], cheap=[0.3])
    assert tr2.plan(0.2, [face(0, 0)], cheap=[0.31]) == [False]
    assert tr2.plan(0.2, [face(0, 0)], cheap=[0.5]) == [True]


def test_cut_ends_every_track():
    a, b = unit(7), unit(8)
    tr = FaceTracker(VideoOptions(merge_window=0, min_track_frames=1))
    tr.update(0.0, 0.04, [face(0, 0), face(200, 0)], [a, b], [0.5, 0.5])
    done = tr.cut(0.2)
    assert len(done) == 2 and all(t.ended == "cut" and t.end_time == pytest.approx(0.2) for t in done)
    assert tr.live == []
    held = FaceTracker(VideoOptions(min_track_frames=1))  # with merging: held for a continuation, final later
    held.update(0.0, 0.04, [face(0, 0)], [a], [0.5])
    assert held.cut(0.2) == [] and len(held.held) == 1
    assert held.update(10.1, 0.04, [], [], []) == [] and [t.ended for t in held.update(10.3, 0.04, [], [], [])] == ["cut"]


def test_quality_weighted_aggregate_follows_the_good_faces():
    a, b = unit(9), unit(10)
    tr = FaceTracker(VideoOptions(embed_interval=0, reacquire_similarity=-1, appearance_gate=-1))
    for i in range(6):  # good faces look like A, poor ones like B
        good = i % 2 == 0
        tr.plan(i * 0.2, [face(100, 100)])
        w = 0.9 if good else 0.05
        tr.update(i * 0.2, 0.04, [face(100, 100)], [a if good else b], [w], cheap=[w])
    (track,) = tr.finish(1.2)
    assert float(track.aggregate @ a) > 0.95 > 0.3 > float(track.aggregate @ b)
    assert track.best_weight == 0.9 and track.embedded == 6


# -- scene cuts --------------------------------------------------------------------------------
def test_scene_cut_detector():
    from tests.video_fixtures.synth import _background

    one = _background(1, 320, 180)
    two = _background(2, 320, 180)
    det = SceneCutDetector(0.5)
    frames = [one[:, i * 6:i * 6 + 320].astype(np.uint8) for i in range(5)]  # a pan: no cut
    assert [det.update(f) for f in frames] == [False] * 5
    assert det.last_distance < 0.25
    assert det.update(two[:, :320].astype(np.uint8)) is True and det.last_distance > 0.6
    assert SceneCutDetector(0).update(frames[0]) is False


# -- annotation --------------------------------------------------------------------------------
def test_annotation_boxes_are_interpolated_between_samples():
    from facedex.render.video import _Boxes
    from facedex.types import Candidate
    from facedex.video.types import Track, TrackPoint

    pts = (TrackPoint(0.0, (0.0, 0.0, 10.0, 10.0), 1.0), TrackPoint(0.2, (20.0, 0.0, 10.0, 10.0), 1.0))
    tr = Track(1, "A", 0.8, (Candidate("A", 0.8),), 0.5, 0.0, 0.4, 2, 0.0, face(0, 0), 1.0,
               np.zeros(4, np.float32), pts)
    boxes = _Boxes([tr])
    assert boxes.at(0.1)[0][1] == pytest.approx((10.0, 0.0, 10.0, 10.0))
    assert boxes.at(0.3)[0][1] == (20.0, 0.0, 10.0, 10.0)  # held until last_seen
    assert boxes.at(0.4) == [] and boxes.at(-0.1) == []


def test_folder_listing_goes_by_content_keeps_the_order_and_reports_what_it_leaves_out(tmp_path):
    from facedex.media import expand_inputs, list_images

    from .conftest import lfw_image

    jpeg = lfw_image("Hugo_Chavez", 1).read_bytes()
    mp4_head = b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64
    files = {"z.jpg": jpeg, "b/c.png": jpeg, "b/clip.mp4": mp4_head, "a.webm": b"\x1a\x45\xdf\xa3webm" + b"\x00" * 64,
             "no_suffix": jpeg, ".hidden/x.jpg": jpeg, "b/.y.mov": mp4_head, "notes.txt": b"just text",
             "broken.jpg": b"not a jpeg"}
    for rel, data in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(data)
    os.symlink(tmp_path / "b", tmp_path / "link-to-b")
    rel = lambda items: [os.path.relpath(str(getattr(i, "path", i)), tmp_path) for i in items]  # noqa: E731
    photos = list_images(tmp_path)
    # by content, or named like an image; a folder's files before its sub-folders, each sorted
    assert rel(photos) == ["broken.jpg", "no_suffix", "z.jpg", "b/c.png"]
    both, skipped = expand_inputs([str(tmp_path)], videos=True)
    assert rel(both) == ["a.webm", "broken.jpg", "no_suffix", "z.jpg", "b/c.png", "b/clip.mp4"]
    reasons = {os.path.relpath(s.path, tmp_path): s.reason for s in skipped}
    assert set(reasons) == {".hidden", "b/.y.mov", "link-to-b", "notes.txt"}
    assert "hidden" in reasons[".hidden"] and "not followed" in reasons["link-to-b"] and "text" in reasons["notes.txt"]
    only_photos, skipped = expand_inputs([str(tmp_path)], videos=False)
    assert rel(only_photos) == rel(photos)
    assert "video" in {os.path.relpath(s.path, tmp_path): s.reason for s in skipped}["b/clip.mp4"]
