"""Video identification: speed at the default sampling on 720p 30 fps video, and
accuracy of one decision per track against per-frame nearest-neighbour voting
(what competitors' examples do), side by side, on clips with known ground truth.

    python bench/video_bench.py [--quick] [--work DIR]

Clips are synthetic, made from LFW stills by tests/video_fixtures/synth.py:
people (held-out photos of enrolled people, or strangers) move, grow and
shrink, are cut by the frame edge, enter and leave, with scene cuts, blur,
noise, low light and compression, encoded as MPEG-4 (mp4v) with OpenCV.
The gallery: people with >= 10 LFW photos, 5 photos each, calibrated for
FPIR 1 % (`Gallery.calibrate`); both methods use its threshold.

Methods, on the same decoded and sampled frames (5 per second):
* facedex: `identify_video` — tracks, one decision per track on the
  quality-weighted mean embedding.
* per-frame voting: `Gallery.identify_faces` on every sampled frame, then for
  each ground-truth appearance the majority label of its faces ("unknown"
  is a label). The faces are grouped by the ground truth itself — a perfect
  tracker the baseline would not have in practice.
* per-frame, any frame: a name counts when it is given in any frame of the
  appearance (what "who is in this clip" scripts report).

An appearance is one actor in one shot. Correct-name rate: known appearances
answered with their own name; stranger false-accept rate: stranger
appearances answered with any name. Results: bench/results/video.json
(video_quick.json), bench/sections/50_video.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import LFW, REPO, machine, save  # noqa: E402

from tests.video_fixtures.synth import Actor, ClipSpec, Shot, write_video  # noqa: E402

SECTION = REPO / "bench" / "sections" / "50_video.md"


# -- data ------------------------------------------------------------------------------------------
def people_pools(n_known: int, seed: int = 0):
    """(enrolled people with their 5 enrolment photos and held-out photos, stranger pools)."""
    many = sorted(d for d in LFW.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 10)
    rng = random.Random(seed)
    rng.shuffle(many)
    known = many[:n_known]
    multi = [d for d in sorted(LFW.iterdir()) if d.is_dir() and 3 <= len(list(d.glob("*.jpg"))) < 10]
    rng.shuffle(multi)
    enrolled = {d.name: sorted(d.glob("*.jpg")) for d in known}
    strangers = {d.name: sorted(d.glob("*.jpg")) for d in multi + many[n_known:]}
    return enrolled, strangers


def random_path(rng: random.Random, t0: float, t1: float, size_range):
    """Keyframes: from one place and size to another, sometimes entering or leaving through an edge."""
    s0, s1 = rng.uniform(*size_range), rng.uniform(*size_range)
    x0, x1 = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)
    y0, y1 = rng.uniform(0.3, 0.7), rng.uniform(0.3, 0.7)
    if rng.random() < 0.25:
        x0 = rng.choice([-0.1, 1.1])  # enters through the edge, cropped at first
    if rng.random() < 0.25:
        x1 = rng.choice([-0.1, 1.1])
    return [(t0, x0, y0, s0), (t1, x1, y1, s1)]


def make_clips(n: int, enrolled, strangers, seed: int = 1, width=640, height=360, fps=15.0):
    rng = random.Random(seed)
    known_names, stranger_names = sorted(enrolled), sorted(strangers)
    clips = []
    for c in range(n):
        seconds = rng.uniform(4.0, 6.0)
        cut = rng.uniform(1.8, seconds - 1.8) if rng.random() < 0.4 else None
        bounds = [(0.0, cut), (cut, seconds)] if cut else [(0.0, seconds)]
        shots = []
        for a, b in bounds:
            actors = []
            slots = [0.25, 0.75] if rng.random() < 0.6 else [0.5]
            for slot in slots:
                known = rng.random() < 0.55
                name = rng.choice(known_names if known else stranger_names)
                photos = enrolled[name][5:9] if known else strangers[name][:4]
                start = a + (rng.uniform(0, 0.8) if rng.random() < 0.4 else 0.0)
                end = b - (rng.uniform(0, 0.8) if rng.random() < 0.4 else 0.0)
                small = rng.random() < 0.3
                path = random_path(rng, start, end, (45, 80) if small else (80, 200))
                path = [(t, slot + 0.5 * (x - 0.5), y, s) for t, x, y, s in path]
                actors.append(Actor(name, photos, path, known=known, hold=rng.uniform(0.8, 1.5)))
            shots.append(Shot(a, b, rng.randrange(10**6), actors, pan=rng.uniform(0, 30)))
        hard = rng.random()
        clips.append(ClipSpec(
            f"clip{c:03d}", shots, width, height, fps,
            blur=rng.uniform(0.5, 2.5) if hard < 0.35 else 0.0,
            noise=rng.uniform(4, 14) if 0.25 < hard < 0.6 else 0.0,
            jpeg=rng.randint(15, 40) if 0.5 < hard < 0.8 else None,
            dim=rng.uniform(0.45, 0.7) if hard > 0.85 else 1.0))
    return clips


def make_long_strangers(n: int, strangers, seconds: float, seed: int = 2, width=640, height=360, fps=15.0):
    """One stranger per clip, on screen the whole time, through up to 4 of their photos."""
    rng = random.Random(seed)
    names = sorted(strangers)
    rng.shuffle(names)
    clips = []
    for c, name in enumerate(names[:n]):
        path = random_path(rng, 0.0, seconds, (90, 180))
        path = [(t, min(0.8, max(0.2, x)), y, size) for t, x, y, size in path]  # stays in frame
        actor = Actor(name, strangers[name][:4], path, known=False, hold=rng.uniform(1.0, 2.0))
        clips.append(ClipSpec(f"stranger{c:03d}", [Shot(0.0, seconds, rng.randrange(10**6), [actor])], width, height,
                              fps, noise=rng.uniform(0, 6), jpeg=rng.choice([None, 60, 80])))
    return clips


# -- evaluation --------------------------------------------------------------------------------------
def match_actor(truth_frame, box):
    """The ground-truth actor whose face box contains this box's centre (index), or None."""
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    best = None
    for i, (_, _, _, (x, y, w, h)) in enumerate(truth_frame.actors):
        if x - 0.15 * w <= cx <= x + 1.15 * w and y - 0.15 * h <= cy <= y + 1.15 * h:
            d = (cx - x - w / 2) ** 2 + (cy - y - h / 2) ** 2
            if best is None or d < best[0]:
                best = (d, i)
    return None if best is None else best[1]


def appearances(spec: ClipSpec):
    """Every (shot, actor) of the clip: key -> (person, known)."""
    out = {}
    for si, shot in enumerate(spec.shots):
        for actor in shot.actors:
            out[(si, actor.person)] = (actor.person, actor.known)
    return out


def _top(candidates) -> tuple[str | None, float]:
    return (candidates[0].name, float(candidates[0].similarity)) if candidates else (None, 0.0)


def run_facedex(gallery, path, truth, fps):
    """Per ground-truth appearance: ``[(top name, similarity, frames)]`` of the tracks over it."""


    c0, t0 = time.process_time(), time.perf_counter()
    stream = gallery.identify_video(path)
    result = stream.result()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    evidence = defaultdict(list)
    for tr in result.tracks:
        frames = Counter()
        for p in tr.points:
            i = min(len(truth) - 1, int(round(p.time * fps)))
            k = match_actor(truth[i], p.box)
            if k is not None:
                person, _, shot, _ = truth[i].actors[k]
                frames[(shot, person)] += 1
        name, sim = _top(tr.candidates)
        for key, n in frames.items():
            evidence[key].append((name, sim, n))
    return evidence, {"wall": wall, "cpu": cpu, "faces": stream.stats.faces, "embedded": stream.stats.embedded,
                      "frames_sampled": result.frames_sampled, "frames_decoded": result.frames_decoded,
                      "duration": result.duration, "tracks": len(result.tracks)}


def run_per_frame(gallery, path, truth, fps, sample_fps=5.0):
    """Per ground-truth appearance: ``[(top name, similarity)]`` of each of its faces, frame by frame."""
    from facedex.video import open_video, sampler

    c0, t0 = time.process_time(), time.perf_counter()
    evidence = defaultdict(list)
    faces_n = sampled = 0
    with open_video(path) as src:
        for frame in src.frames(sampler(sample_fps)):
            sampled += 1
            faces = gallery.pipeline.detector.detect(frame.rgb)
            faces_n += len(faces)
            ids = gallery.identify_faces(frame.rgb, faces)
            tr = truth[min(len(truth) - 1, frame.index)]
            for ident in ids:
                k = match_actor(tr, ident.face.box)
                if k is not None:
                    person, _, shot, _ = tr.actors[k]
                    evidence[(shot, person)].append(_top(ident.candidates))
        decoded, duration = src.frames_decoded, src.end_time
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return evidence, {"wall": wall, "cpu": cpu, "faces": faces_n, "frames_sampled": sampled,
                      "frames_decoded": decoded, "duration": duration}


def answer_tracks(evidence, thr):
    """facedex: each track's decision at ``thr``; the appearance takes the one covering most of its frames."""
    votes = Counter()
    for name, sim, n in evidence:
        votes[name if sim >= thr else None] += n
    return votes.most_common(1)[0][0] if votes else None


def answer_majority(evidence, thr):
    """Per-frame decisions at ``thr``; the most frequent label ("unknown" is one) wins."""
    votes = Counter(name if sim >= thr else None for name, sim in evidence)
    return votes.most_common(1)[0][0] if votes else None


def answer_any(evidence, thr):
    """Per-frame decisions at ``thr``; a name given in any frame is reported (the most frequent one)."""
    votes = Counter(name for name, sim in evidence if sim >= thr)
    return votes.most_common(1)[0][0] if votes else None


METHODS = {"facedex": ("fx", answer_tracks), "per_frame_majority": ("pf", answer_majority),
           "per_frame_any": ("pf", answer_any)}


def score(evidence_by_clip, truth_by_clip, answer, thr):
    known = correct = wrong = strangers = false_accepts = missed = 0
    for clip, apps in truth_by_clip.items():
        evidence = evidence_by_clip.get(clip, {})
        for key, (person, is_known) in apps.items():
            if not evidence.get(key):
                missed += 1
            got = answer(evidence.get(key, []), thr)
            if is_known:
                known += 1
                correct += got == person
                wrong += got is not None and got != person
            else:
                strangers += 1
                false_accepts += got is not None
    return {"known_appearances": known, "stranger_appearances": strangers,
            "correct_name_rate": correct / max(1, known), "wrong_name_rate": wrong / max(1, known),
            "stranger_false_accept_rate": false_accepts / max(1, strangers), "not_found": missed}


def speed_clip(work: Path, enrolled, strangers, seconds: float) -> tuple[Path, ClipSpec]:
    names = sorted(enrolled)
    stranger = sorted(strangers)[0]
    spec = ClipSpec("speed720p", [
        Shot(0.0, seconds / 2, 3, [
            Actor(names[0], enrolled[names[0]][5:9], [(0.0, 0.3, 0.5, 260), (seconds / 2, 0.45, 0.5, 300)]),
            Actor(names[1], enrolled[names[1]][5:9], [(0.0, 0.75, 0.45, 200), (seconds / 2, 0.7, 0.5, 220)])]),
        Shot(seconds / 2, seconds, 8, [
            Actor(names[2], enrolled[names[2]][5:9], [(seconds / 2, 0.4, 0.5, 240), (seconds, 0.3, 0.5, 200)]),
            Actor(stranger, strangers[stranger][:3], [(seconds / 2, 0.8, 0.5, 200), (seconds, 0.75, 0.5, 230)],
                  known=False)]),
    ], width=1280, height=720, fps=30.0)
    path = work / f"speed720p-{int(seconds)}s.mp4"
    if not path.exists():
        write_video(spec, path, "mp4")
    return path, spec


def decode_fps(path: Path) -> float:
    from facedex.video import open_video

    t0 = time.perf_counter()
    with open_video(path) as src:
        for _ in src.frames(lambda t: False):
            pass
        n = src.frames_decoded
    return n / (time.perf_counter() - t0)


# -- report ------------------------------------------------------------------------------------------
def pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def section(d: dict) -> str:
    m = d["machine"]
    sp = d["speed"]
    acc = d["accuracy"]
    cmd = "python bench/video_bench.py" + (" --quick" if d["quick"] else "")
    lines = [
        "## Video: one decision per track (`facedex identify` on videos and GIFs)\n",
        f"`{cmd}` — synthetic clips from LFW stills with known ground truth (see the script's docstring). "
        f"_{m['cpu']}, {m['cores']} cores, commit {m['commit']}, {m['date']}; load average during the speed runs "
        f"{sp['load_before']:.1f} → {sp['load_after']:.1f} (other jobs shared the machine)._\n",
        f"**Speed**, 720p 30 fps MPEG-4, {sp['duration']:.0f} s, 2 faces on screen, default sampling "
        f"({sp['sample_fps']:g} frames/s analysed):\n",
        "| | wall s | real-time factor | frames/s decoded | faces/s identified | CPU s per video s |",
        "|---|---|---|---|---|---|",
    ]
    for label, r in sp["runs"].items():
        lines.append(f"| {label} | {r['wall']:.1f} | {r['duration'] / r['wall']:.2f}× | "
                     f"{r['frames_decoded'] / r['wall']:.0f} | {r['faces'] / r['wall']:.1f} | "
                     f"{r['cpu'] / r['duration']:.2f} |")
    lines += [
        "",
        f"Decoding alone: {sp['decode_fps']:.0f} frames/s. A real-time factor above 1 means faster than the video "
        "plays. facedex embeds a face that its track follows unambiguously by position only every "
        f"{d['options']['embed_interval']} s (`embed_interval`): {sp['runs']['facedex']['embedded']} of "
        f"{sp['runs']['facedex']['faces']} faces were embedded.\n",
        f"**Accuracy**, {acc['clips']} clips ({acc['seconds']:.0f} s of video), {acc['gallery_people']} people "
        f"enrolled; {acc['at']['calibrated']['facedex']['known_appearances']} appearances of enrolled people "
        f"(held-out photos) and {acc['at']['calibrated']['facedex']['stranger_appearances']} of strangers. "
        f"At the gallery's calibrated threshold ({acc['threshold']:.3f}, FPIR 1 %) and at the embedder's default "
        f"({acc['default_threshold']:.2f}, what an uncalibrated gallery uses):\n",
        "| method | threshold | correct name | wrong name | stranger false accepts |",
        "|---|---|---|---|---|",
    ]
    labels = {"facedex": "facedex: one decision per track",
              "per_frame_majority": "per-frame NN, majority vote per appearance",
              "per_frame_any": "per-frame NN, name given in any frame"}
    for point, t in (("calibrated", acc["threshold"]), ("default", acc["default_threshold"])):
        for key, label in labels.items():
            r = acc["at"][point][key]
            lines.append(f"| {label} | {t:.3f} ({point}) | {pct(r['correct_name_rate'])} | "
                         f"{pct(r['wrong_name_rate'])} | {pct(r['stranger_false_accept_rate'])} |")
    lines += [
        "",
        "Correct name / stranger false accepts over a range of thresholds (one threshold for all three):\n",
        "| threshold | facedex | per-frame majority | per-frame any frame |",
        "|---|---|---|---|",
    ]
    for t, row in acc["sweep"].items():
        cells = [f"{pct(row[k]['correct_name_rate'])} / {pct(row[k]['stranger_false_accept_rate'])}" for k in labels]
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    ls = acc["long_strangers"]
    lines += [
        "",
        f"Strangers seen for longer: {ls['clips']} clips of {ls['seconds_each']:.0f} s, one stranger each (through "
        "up to 4 of their photos), share of strangers given a name:\n",
        "| threshold | facedex | per-frame majority | per-frame any frame |",
        "|---|---|---|---|",
    ]
    for t, row in ls["at"].items():
        mark = " (calibrated)" if abs(float(t) - acc["threshold"]) < 5e-4 else (
            " (default)" if abs(float(t) - acc["default_threshold"]) < 5e-4 else "")
        lines.append(f"| {t}{mark} | " + " | ".join(pct(row[k]) for k in labels) + " |")
    tf, tp = acc["timing"]["facedex"], acc["timing"]["per_frame"]
    lines += [
        "",
        f"Time on these clips: facedex {tf['wall']:.0f} s ({tf['faces'] / tf['wall']:.1f} faces/s), per-frame "
        f"identification {tp['wall']:.0f} s ({tp['faces'] / tp['wall']:.1f} faces/s). The per-frame baselines get "
        "perfect grouping from the ground truth (a tracker they do not have); facedex groups faces itself. All "
        "use the same decoder, sampling, detector, embedder and threshold. An appearance no method found "
        "(a face too small or too blurred for the detector) counts as not named.\n",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer clips and people, a shorter 720p clip")
    ap.add_argument("--work", type=Path, help="keep the generated clips and gallery here (reused when present)")
    ap.add_argument("--clips", type=int, help="number of accuracy clips (default 80, --quick 20)")
    ap.add_argument("--people", type=int, help="people enrolled (default 158: all with >= 10 photos; --quick 60)")
    ap.add_argument("--verbose", action="store_true", help="list every appearance the methods disagree on")
    args = ap.parse_args()

    import facedex
    from facedex.video import VideoOptions

    work = args.work or Path(tempfile.mkdtemp(prefix="facedex-video-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    n_known = args.people or (60 if args.quick else 158)
    n_clips = args.clips or (20 if args.quick else 80)
    enrolled, strangers = people_pools(n_known)

    gpath = work / f"gallery-{n_known}.gallery"
    if not gpath.exists():
        with facedex.Gallery.open(gpath, create=True) as g:
            for name, photos in enrolled.items():
                g.enroll(photos[:5], person=name, multiple="largest")
            g.calibrate(0.01)
    gallery = facedex.Gallery.open(gpath)
    thr = gallery.threshold
    print(f"gallery: {gallery.counts()}, threshold {thr.value:.3f} ({thr.method})", flush=True)
    warm = np.zeros((720, 1280, 3), np.uint8)
    gallery.pipeline.detector.detect(warm)
    gallery.pipeline.embedder.embed_crops([warm[:112, :112]])

    # speed
    seconds = 10.0 if args.quick else 30.0
    path, _ = speed_clip(work, enrolled, strangers, seconds)
    load_before = os.getloadavg()[0]
    runs = {}
    _, runs["facedex"] = run_facedex(gallery, path, [_empty_truth()], 30.0)
    _, runs["per-frame identify (same sampling)"] = run_per_frame(gallery, path, [_empty_truth()], 30.0)
    load_after = os.getloadavg()[0]
    dfps = decode_fps(path)
    for label, r in runs.items():
        print(f"{label}: {r['duration']:.0f} s video in {r['wall']:.1f} s wall ({r['duration'] / r['wall']:.2f}x "
              f"real time), {r['frames_decoded'] / r['wall']:.0f} frames/s decoded, {r['faces'] / r['wall']:.1f} "
              f"faces/s, cpu {r['cpu']:.1f} s", flush=True)

    # accuracy
    clips = make_clips(n_clips, enrolled, strangers)
    truth_by_clip, evidence = {}, {"fx": {}, "pf": {}}
    timing = {"facedex": Counter(), "per_frame": Counter()}
    total_seconds = 0.0
    for i, spec in enumerate(clips):
        p, truth = _clip(work, spec)
        truth_by_clip[spec.name] = appearances(spec)
        evidence["fx"][spec.name], t1 = run_facedex(gallery, p, truth, spec.fps)
        evidence["pf"][spec.name], t2 = run_per_frame(gallery, p, truth, spec.fps)
        for k in ("wall", "cpu", "faces"):
            timing["facedex"][k] += t1[k]
            timing["per_frame"][k] += t2[k]
        total_seconds += spec.duration
        if args.verbose:
            for key, (person, known) in truth_by_clip[spec.name].items():
                got = [fn(evidence[src][spec.name].get(key, []), thr.value) for src, fn in METHODS.values()]
                want = person if known else None
                if any(g != want for g in got):
                    print(f"  {spec.name} shot {key[0]} {person} ({'known' if known else 'stranger'}; blur "
                          f"{spec.blur:.1f} noise {spec.noise:.0f} jpeg {spec.jpeg} dim {spec.dim:.2f}): "
                          f"facedex {got[0]}, majority {got[1]}, any {got[2]}", flush=True)
        if (i + 1) % 10 == 0:
            print(f"  {i + 1}/{len(clips)} clips", flush=True)

    # strangers seen for a long time: does a per-frame decision let them through?
    n_long, long_s = (6, 12.0) if args.quick else (20, 24.0)
    long_truth, long_evidence = {}, {"fx": {}, "pf": {}}
    for spec in make_long_strangers(n_long, strangers, long_s):
        p, truth = _clip(work, spec)
        long_truth[spec.name] = appearances(spec)
        long_evidence["fx"][spec.name], _ = run_facedex(gallery, p, truth, spec.fps)
        long_evidence["pf"][spec.name], _ = run_per_frame(gallery, p, truth, spec.fps)
    print(f"  {n_long} long stranger clips done", flush=True)

    default = gallery.embedder_card.default_threshold
    points = {"calibrated": thr.value, "default": default}
    sweep = [round(x, 2) for x in np.arange(0.30, 0.701, 0.05)]
    acc = {"clips": len(clips), "seconds": total_seconds, "gallery_people": len(enrolled),
           "threshold": thr.value, "threshold_method": thr.method, "default_threshold": default,
           "timing": {k: dict(v) for k, v in timing.items()}, "at": {}, "sweep": {}}
    for label, t in points.items():
        acc["at"][label] = {m: score(evidence[src], truth_by_clip, fn, t) for m, (src, fn) in METHODS.items()}
    for t in sweep:
        acc["sweep"][f"{t:.2f}"] = {m: score(evidence[src], truth_by_clip, fn, t) for m, (src, fn) in METHODS.items()}
    acc["long_strangers"] = {"clips": n_long, "seconds_each": long_s, "at": {}}
    for t in sorted({*sweep, thr.value, default}):
        acc["long_strangers"]["at"][f"{t:.3f}"] = {
            m: score(long_evidence[src], long_truth, fn, t)["stranger_false_accept_rate"]
            for m, (src, fn) in METHODS.items()}
    for label, t in points.items():
        for m, r in acc["at"][label].items():
            print(f"{label} {t:.3f} {m}: correct {pct(r['correct_name_rate'])}, wrong {pct(r['wrong_name_rate'])}, "
                  f"stranger FA {pct(r['stranger_false_accept_rate'])} ({r['known_appearances']} known, "
                  f"{r['stranger_appearances']} stranger appearances)", flush=True)

    opts = VideoOptions()
    data = {"quick": args.quick,
            "options": {"sample_fps": opts.sample_fps, "max_gap": opts.max_gap, "scene_cut": opts.scene_cut,
                        "embed_interval": opts.embed_interval},
            "speed": {"clip": "720p 30 fps MPEG-4 (mp4v), 2 faces on screen", "duration": seconds,
                      "sample_fps": opts.sample_fps, "decode_fps": dfps, "runs": runs,
                      "load_before": load_before, "load_after": load_after},
            "accuracy": acc}
    out = save("video_quick" if args.quick else "video", data)
    SECTION.parent.mkdir(exist_ok=True)
    tmp = SECTION.with_suffix(".md.tmp")
    tmp.write_text(section({**data, "machine": machine()}))
    tmp.replace(SECTION)
    print(f"written {out} and {SECTION}")
    gallery.close()


def _clip(work: Path, spec: ClipSpec):
    """The encoded clip and its per-frame ground truth, made once (named by a digest of the spec)."""
    digest = hashlib.sha1(repr(spec).encode()).hexdigest()[:10]
    p = work / f"{spec.name}-{digest}.mp4"
    truth_file = work / f"{spec.name}-{digest}.truth.npy"
    if p.exists() and truth_file.exists():
        return p, list(np.load(truth_file, allow_pickle=True))
    truth = write_video(spec, p, "mp4")
    np.save(truth_file, np.array(truth, dtype=object), allow_pickle=True)
    return p, truth


def _empty_truth():
    from tests.video_fixtures.synth import Truth

    return Truth(0.0, ())


if __name__ == "__main__":
    main()
