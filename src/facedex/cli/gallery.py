"""Gallery commands: enroll, identify, verify, people, forget, calibrate.

Each parses its arguments, calls the library (``Gallery.enrollment``,
:func:`facedex.identify_paths`, :func:`facedex.verify`) and prints; the HTTP
service calls the same functions.
"""

from __future__ import annotations

import argparse
from collections import Counter

from ..identify.enroll import MULTIPLE_POLICIES
from ..identify.gallery import Gallery
from ..types import EnrollItem, ImageResult, Threshold
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    add_command,
    add_detector_options,
    add_gallery,
    add_json,
    bounded,
    detector_config,
    similarity,
)
from .output import emit_json, err, out, plural, printable, progress, summarize_reasons, table

ORDER = 10

SCHEMA = "facedex.{}/1"


def register(sub) -> None:
    p = add_command(sub, "enroll", help="add people's faces to a gallery (creates it if needed)",
                    description="Add faces to GALLERY from SOURCE folders laid out as SOURCE/<Name>/<images> "
                                "(any depth; files are images by content), or, with --person, from images or "
                                "folders of that one person. Re-running adds only new images. An image with "
                                "several faces gives the face that matches the person's other photos (--multiple).",
                    examples=["facedex enroll my.gallery people/",
                              "facedex enroll my.gallery ~/Pictures/ada/ --person 'Ada Lovelace'",
                              "facedex enroll my.gallery people/ --multiple largest --json > report.json"])
    add_gallery(p, create=True)
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folder of person folders (or images with --person)")
    p.add_argument("--person", metavar="NAME", help="enroll every SOURCE as this one person")
    p.add_argument("--multiple", choices=MULTIPLE_POLICIES, default="auto",
                   help="an image with several faces: auto = the face matching the person's other photos "
                        "(else reported); largest = the largest face; reject = report it")
    p.add_argument("--embedder", metavar="NAME|PATH",
                   help="embedder for a new gallery (default sface-2021dec); an existing gallery keeps its own")
    add_json(p, "the report")
    add_detector_options(p)
    from .scale import add_engine_options  # issue #16: --engine ray, --ray-address

    add_engine_options(p)
    p.set_defaults(func=cmd_enroll)

    p = add_command(sub, "identify", help="who is in these photos, videos and GIFs?",
                    description="Identify every face in each INPUT against GALLERY. A face is named only when its "
                                "similarity reaches the gallery's threshold; otherwise it is unknown. In a video "
                                "or an animated GIF, faces are followed across frames and each track gets one "
                                "decision with the same threshold: who appears, when, for how long. Files are "
                                "recognised by their content; folders are searched, and what they hold that is "
                                "not an image or a video is listed as skipped.",
                    examples=["facedex identify my.gallery photo.jpg",
                              "facedex identify my.gallery holiday/ clip.mp4 --annotate out/ --json > who.json",
                              "cat photo.jpg | facedex identify my.gallery -"])
    add_gallery(p)
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="photo, video (MP4, MOV, MKV, WebM, AVI…) or animated GIF files, folders of them, "
                        "or - for standard input")
    p.add_argument("--threshold", type=similarity, metavar="T",
                   help="use this similarity threshold (a number in [-1, 1]) instead of the gallery's, for this run")
    p.add_argument("--annotate", metavar="DIR",
                   help="write a copy of each input with boxes and names into DIR (created; an existing file is "
                        "never replaced: names get -1, -2…). Videos: the annotated video or GIF and a contact "
                        "sheet NAME-tracks.png of each track's best face")
    add_json(p, "one object with a result per input")
    v = p.add_argument_group("video and animated GIF")
    v.add_argument("--sample-fps", type=bounded(float, 0), default=5.0, metavar="N",
                   help="frames analysed per second of video (0 = every frame)")
    v.add_argument("--max-gap", type=bounded(float, 0), default=1.0, metavar="S",
                   help="a face unseen for more than S seconds starts a new track")
    v.add_argument("--scene-cut", type=bounded(float, 0, 1), default=0.5, metavar="D",
                   help="colour-histogram distance 0..1 that counts as a scene cut, ending every track (0 = never)")
    add_track_options(v)
    add_detector_options(p)
    p.set_defaults(func=cmd_identify)

    p = add_command(sub, "verify", help="are the people in two photos the same person?",
                    description="Compare the most prominent face of photo A with that of photo B (1:1). "
                                "No gallery is needed. The answer uses the embedder's 1:1 threshold (SFace: 0.331, "
                                "the best-accuracy threshold on LFW), or --threshold.",
                    examples=["facedex verify a.jpg b.jpg", "facedex verify a.jpg b.jpg --json"])
    p.add_argument("a", metavar="A", help="first photo")
    p.add_argument("b", metavar="B", help="second photo")
    p.add_argument("--threshold", type=similarity, metavar="T", help="similarity threshold in [-1, 1]")
    p.add_argument("--embedder", metavar="NAME|PATH", default=None, help="embedder (default sface-2021dec)")
    add_json(p, "the answer")
    add_detector_options(p)
    p.set_defaults(func=cmd_verify)

    p = add_command(sub, "people", help="who is enrolled, and how many faces each",
                    description="List the people of GALLERY with their number of faces and source images, the "
                                "embedder and the threshold in force; with PERSON, that person's faces and sources.",
                    examples=["facedex people my.gallery", "facedex people my.gallery 'Ada Lovelace' --json"])
    add_gallery(p)
    p.add_argument("person", nargs="?", metavar="PERSON", help="list this person's enrolled faces and their sources")
    add_json(p, "the list")
    # --merge, --rename, --remove-face, --remove-source: facedex.cli.library (issue #14)
    from .library import add_people_edit_options

    add_people_edit_options(p)
    p.set_defaults(func=cmd_people)

    p = add_command(sub, "forget", help="erase people completely from a gallery",
                    description="Erase each NAME: their faces, embeddings, source paths and name are removed and the "
                                "file is vacuumed, so nothing of them remains in it.",
                    examples=["facedex forget my.gallery 'Ada Lovelace'"])
    add_gallery(p)
    p.add_argument("names", nargs="+", metavar="NAME", help="a person's name as `facedex people` shows it")
    add_json(p, "what was erased")
    p.set_defaults(func=cmd_forget)

    p = add_command(sub, "calibrate", help="set the unknown-threshold from the gallery itself",
                    description="Search each enrolled person against the rest of the gallery and set the threshold "
                                "so that at most FPIR of such stranger searches return a name. Re-run it when the "
                                "gallery has grown.",
                    examples=["facedex calibrate my.gallery", "facedex calibrate my.gallery --fpir 0.001",
                              "facedex calibrate my.gallery --set 0.5", "facedex calibrate my.gallery --show --json"])
    add_gallery(p)
    p.add_argument("--fpir", type=bounded(float, 0, 1, low_open=True), default=0.01,
                   help="target false-positive identification rate: share of strangers given a name")
    p.add_argument("--set", type=similarity, metavar="T", dest="set_value", help="set the threshold by hand instead")
    p.add_argument("--show", action="store_true", help="only show the threshold in force")
    add_json(p, "the threshold")
    p.set_defaults(func=cmd_calibrate)


def add_track_options(v) -> None:
    """The tracking thresholds (docs/video.md), shared by identify and watch."""
    from ..video.types import VideoOptions

    d = VideoOptions()
    v.add_argument("--min-track-frames", type=bounded(int, 1), default=d.min_track_frames, metavar="N",
                   help="report an unknown track once it is seen in N analysed frames; shorter ones are dropped and "
                        "counted (a named track is always reported)")
    v.add_argument("--min-track-score", type=bounded(float, 0, 1), default=d.min_track_score, metavar="S",
                   help="drop unknown tracks whose mean detection score is below S as non-faces (logos, patterns)")
    v.add_argument("--min-track-quality", type=bounded(float, 0, 1), default=d.min_track_quality, metavar="Q",
                   help="drop unknown tracks whose best face quality (0..1) is below Q: dark, tiny or blurred throughout")
    v.add_argument("--track-low-score", type=bounded(float, 0, 1), default=d.track_low_score, metavar="S",
                   help="detections scoring from S up to --min-score only continue tracks (0 = off)")
    v.add_argument("--merge-similarity", type=similarity, default=d.merge_similarity, metavar="T",
                   help="a new track continues one that ended within --merge-window at this similarity")
    v.add_argument("--merge-window", type=bounded(float, 0), default=d.merge_window, metavar="S",
                   help="seconds an ended track waits for its continuation (occlusion, cut away and back); 0 = never")


def track_options(args: argparse.Namespace) -> dict:
    return {"min_track_frames": args.min_track_frames, "min_track_score": args.min_track_score,
            "min_track_quality": args.min_track_quality, "track_low_score": args.track_low_score,
            "merge_similarity": args.merge_similarity, "merge_window": args.merge_window}


def describe_threshold(t: Threshold, gallery: str) -> str:
    if t.method == "default":
        return (f"threshold {t.value:.3f} (default for {t.details.get('embedder', 'this embedder')}; "
                f"not calibrated for this gallery — run `facedex calibrate {gallery}`)")
    if t.method == "manual":
        return f"threshold {t.value:.3f} (set by hand)"
    if t.method == "override":
        return f"threshold {t.value:.3f} (from --threshold)"
    text = f"threshold {t.value:.3f} (calibrated for FPIR {t.details.get('fpir_target', '?')})"
    if t.details.get("stale"):
        text += f" — the gallery has changed since; re-run `facedex calibrate {gallery}`"
    if t.details.get("low_confidence"):
        text += " — rough: few people to calibrate on"
    return text


# --- enroll ------------------------------------------------------------------------------------
def cmd_enroll(args: argparse.Namespace) -> int:
    g = Gallery.open(args.gallery, create=True, embedder=args.embedder,
                     detector_config=detector_config(args), runtime=args.runtime)
    items: list[EnrollItem] = []
    warnings: list[str] = []
    interrupted = False
    with g, progress(None, "enroll", enabled=not args.json) as bar:
        def tick(item: EnrollItem, done: int, total: int) -> None:
            items.append(item)
            if bar.total != total:
                bar.total = total
            bar.update(1)
            bar.set_postfix_str(f"added {sum(i.status == 'added' for i in items)}", refresh=False)

        try:
            if args.engine != "local":  # issue #16: batch engines (facedex.cli.scale)
                from .scale import enroll_with_engine

                warnings += enroll_with_engine(g, args, tick)
            for src in args.sources if args.engine == "local" else ():
                run = g.enrollment(multiple=args.multiple, progress=tick)
                try:
                    run.run(src, person=args.person)
                finally:
                    warnings += run.warnings
        except KeyboardInterrupt:
            interrupted = True
        bar.clear()
        g.update_index()  # issue #16: a large gallery's index file follows the enrollment now
        counts = g.counts()
        people_now = {p.name for p in g.people()}
        threshold = g.threshold
    status = Counter(i.status for i in items)
    attempted = {i.person for i in items if i.person and i.status != "ignored"}
    missing = sorted(attempted - people_now)
    if args.json:
        emit_json({
            "schema": SCHEMA.format("enroll"), "gallery": str(g.path), "interrupted": interrupted,
            "added": status["added"], "skipped": status["skipped"], "failed": status["failed"],
            "ignored": status["ignored"], "people_without_faces": missing, "warnings": warnings,
            "totals": counts, "threshold": threshold.to_dict(), "items": [i.to_dict() for i in items],
        })
    else:
        out(f"added {plural(status['added'], 'image')}, skipped {status['skipped']} already enrolled, "
            f"failed {status['failed']}" + (f", ignored {plural(status['ignored'], 'file')} that are not images"
                                            if status["ignored"] else ""))
        failures = [printable(i.reason or i.path) for i in items if i.status == "failed"]
        if failures:
            out("failed:")
            for line in summarize_reasons(failures):
                out(f"  {line}")
        chosen = [i for i in items if i.note]
        if chosen:
            out(f"{plural(len(chosen), 'image')} with several faces: the face matching the person's other photos "
                "was taken (--json lists which)")
        for w in warnings:
            out(f"warning: {printable(w)}")
        for name in missing:
            out(f"warning: {printable(name)}: no usable image; this person is not in the gallery")
        out(f"gallery {printable(str(g.path))}: {plural(counts['people'], 'person')}, {plural(counts['faces'], 'face')}")
        err(describe_threshold(threshold, args.gallery))
    if interrupted:
        err(f"interrupted: {status['added']} images added were kept; re-run the same command to go on")
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if status["failed"] else EXIT_OK


# --- identify ----------------------------------------------------------------------------------
def cmd_identify(args: argparse.Namespace) -> int:
    from ..identify.run import identify_paths
    from ..video.types import VideoOptions
    from .show import print_result, print_video_result

    options = VideoOptions(sample_fps=args.sample_fps or None, max_gap=args.max_gap, scene_cut=args.scene_cut,
                           **track_options(args))
    g = Gallery.open(args.gallery, detector_config=detector_config(args), runtime=args.runtime)
    results: list = []
    interrupted = False
    with g:
        frames_bar = {}

        def on_frames(name: str, done: int, total: int | None) -> None:
            bar = frames_bar.get("bar")
            if bar is None or frames_bar.get("name") != name:
                if bar is not None:
                    bar.close()
                bar = frames_bar["bar"] = progress(total, printable(name)[-30:], enabled=not args.json)
                bar.unit = "frame"
                frames_bar["name"] = name
            bar.update(done - bar.n)

        run = identify_paths(g, args.inputs, threshold=args.threshold, annotate=args.annotate, video=options,
                             on_frames=on_frames)
        err(describe_threshold(run.threshold, args.gallery))
        if g.counts()["faces"] == 0:
            err(f"warning: {g.path} has no faces enrolled; every face will be unknown")
        total = len(run.inputs)
        with progress(total, "identify", enabled=not args.json and total > 1) as bar:
            try:
                for res in run:
                    if frames_bar.get("bar") is not None:
                        frames_bar.pop("bar").close()
                    bar.update(1)
                    results.append(res)
                    if not args.json:
                        bar.clear()
                        (print_result if isinstance(res, ImageResult) else print_video_result)(res)
            except KeyboardInterrupt:
                interrupted = True
                run.close()
    failed = sum(r.error is not None for r in results)
    if args.json:
        emit_json({
            "schema": SCHEMA.format("identify"), "gallery": str(g.path), "threshold": run.threshold.to_dict(),
            "interrupted": interrupted, "results": [r.to_dict() for r in results],
            "skipped": [s.to_dict() for s in run.skipped],
            "summary": _summary(results, total),
        })
    else:
        if run.skipped:
            out(f"skipped {plural(len(run.skipped), 'file')} in the folders given (not images or videos):")
            for line in summarize_reasons([f"{printable(s.path)}: {s.reason}" for s in run.skipped], limit=10):
                out(f"  {line}")
        if failed:
            err(f"{failed} of {total} inputs failed")
    if interrupted:
        err(f"interrupted after {len(results)} of {total} inputs")
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if failed else EXIT_OK


def _summary(results: list, total: int) -> dict[str, int]:
    faces = named = 0
    for r in results:
        items = r.faces if isinstance(r, ImageResult) else r.tracks
        faces += len(items)
        named += sum(1 for f in items if f.name is not None)
    return {"inputs": total, "processed": len(results), "failed": sum(r.error is not None for r in results),
            "faces": faces, "named": named}


# --- verify ------------------------------------------------------------------------------------
def cmd_verify(args: argparse.Namespace) -> int:
    from ..identify.verify import verify
    from ..media import MediaInput

    v = verify(MediaInput.of(args.a), MediaInput.of(args.b), threshold=args.threshold,
               embedder=args.embedder or "sface-2021dec", detector_config=detector_config(args), runtime=args.runtime)
    if args.json:
        emit_json(v.to_dict())
        return EXIT_OK
    verdict = "same person" if v.same_person else "different people"
    out(f"{verdict}: similarity {v.similarity:.3f} {'>=' if v.same_person else '<'} threshold {v.threshold:.3f}")
    for name, n in zip(v.inputs, v.faces_found):
        if n > 1:
            out(f"  note: {printable(name)} shows {n} faces; the largest was compared")
    return EXIT_OK


# --- people, forget, calibrate -------------------------------------------------------------------
def cmd_people(args: argparse.Namespace) -> int:
    from .library import people_edit_requested, run_people_edit  # issue #14: fixing people

    if people_edit_requested(args):
        return run_people_edit(args)
    with Gallery.open(args.gallery) as g:
        if args.person:
            faces = g.store.faces_of(args.person)
            if args.json:
                emit_json({"schema": SCHEMA.format("person"), "gallery": str(g.path), "name": args.person,
                           "faces": faces})
            else:
                rows = [(f["face_id"], printable(f["path"] or "(embedding only)"),
                         " ".join(str(int(v)) for v in f["box"])) for f in faces]
                out(table(rows, ["face", "source", "box x y w h"], "rll"))
            return EXIT_OK
        people = g.people()
        counts = g.counts()
        threshold = g.threshold
        if args.json:
            emit_json({"schema": SCHEMA.format("people"), "gallery": str(g.path), "embedder": g.embedder_card.id,
                       "totals": counts, "threshold": threshold.to_dict(), "people": [p.to_dict() for p in people]})
        else:
            out(table([(p.name, p.faces, p.sources) for p in people], ["name", "faces", "sources"], "lrr"))
            out(f"{plural(counts['people'], 'person')}, {plural(counts['faces'], 'face')}; "
                f"embedder {g.embedder_card.id}")
            out(describe_threshold(threshold, args.gallery))
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    from ..errors import InvalidNameError, PersonNotFoundError

    results, failed = [], 0
    with Gallery.open(args.gallery) as g:
        for name in args.names:
            try:
                removed = g.forget(name)
                results.append({"name": name, "forgotten": True, **removed, "error": None})
                if not args.json:
                    out(f"forgot {printable(name)}: {plural(removed['faces'], 'face')} from "
                        f"{plural(removed['sources'], 'source')} erased")
            except (PersonNotFoundError, InvalidNameError) as e:  # per name; a gallery error stops the command
                failed += 1
                results.append({"name": name, "forgotten": False, "faces": 0, "sources": 0, "error": e.to_dict()})
                if not args.json:
                    out(f"{printable(name)}: ERROR {printable(str(e))}")
        stale = g.threshold.details.get("stale")
    if args.json:
        emit_json({"schema": SCHEMA.format("forget"), "gallery": args.gallery, "results": results})
    elif stale:
        err(f"the gallery changed a lot since calibration; re-run `facedex calibrate {args.gallery}`")
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    with Gallery.open(args.gallery) as g:
        if args.show:
            t = g.threshold
        elif args.set_value is not None:
            t = g.set_threshold(args.set_value)
        else:
            t = g.calibrate(args.fpir)
    if args.json:
        emit_json({"schema": SCHEMA.format("calibrate"), "gallery": args.gallery, "threshold": t.to_dict()})
        return EXIT_OK
    out(describe_threshold(t, args.gallery))
    d = t.details
    if t.method == "calibrated" and "stranger_searches" in d:
        out(f"  {d['stranger_searches']} stranger searches over {plural(d['people'], 'person')} "
            f"({d['faces']} faces): measured FPIR {d['measured_fpir']:.4f}")
        if d.get("estimated_fnir") is not None:
            out(f"  {d['genuine_searches']} genuine searches: estimated FNIR {d['estimated_fnir']:.4f} "
                "(share of enrolled people's faces not named correctly)")
        if d.get("low_confidence"):
            out(f"  warning: {d['stranger_searches_needed']} stranger searches are needed for a reliable "
                f"estimate at FPIR {d['fpir_target']}; the threshold was kept at or above the default "
                f"({d['threshold_from_data']:.3f} measured). Enroll more people and re-run.")
    return EXIT_OK
