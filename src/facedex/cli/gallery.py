"""Gallery commands: enroll, identify, people, forget, calibrate."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from collections import Counter
from pathlib import Path

from ..api import Gallery
from ..errors import FacedexError
from ..types import EnrollItem, ImageResult, Threshold
from .common import add_detector_options, detector_config
from .output import emit_json, err, out, plural, progress, summarize_reasons, table

EXIT_OK, EXIT_PARTIAL = 0, 1
ORDER = 10


def register(sub) -> None:
    p = sub.add_parser("enroll", help="add people's faces to a gallery (creates it if needed)",
                       description="Add faces to GALLERY from SOURCE folders laid out as SOURCE/<Name>/*.jpg, "
                                   "or, with --person, from images or folders of one person. "
                                   "Re-running adds only new images.")
    p.add_argument("gallery", help="gallery file (created if missing)")
    p.add_argument("sources", nargs="+", metavar="SOURCE", help="folder of person folders (or images with --person)")
    p.add_argument("--person", metavar="NAME", help="enroll every SOURCE as this one person")
    p.add_argument("--multiple", choices=["reject", "largest"], default="reject",
                   help="an image with several faces: reject it (default) or take the largest face")
    p.add_argument("--embedder", metavar="NAME|PATH",
                   help="embedder for a new gallery (default sface-2021dec); must match an existing one")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_detector_options(p)
    p.set_defaults(func=cmd_enroll)

    p = sub.add_parser("identify", help="who is in these images, videos and GIFs?",
                       description="Identify every face in each INPUT against GALLERY. A face is named only when "
                                   "its similarity reaches the gallery's threshold; otherwise it is unknown. "
                                   "In a video or an animated GIF, faces are followed across frames and each "
                                   "track gets one decision, with the same threshold; the result says who "
                                   "appears, when, and for how long. Files are recognised by their content.")
    p.add_argument("gallery")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image, video (MP4, MOV, MKV, WebM, AVI…) or animated GIF files, or folders of them")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="override the gallery's similarity threshold for this run")
    p.add_argument("--annotate", metavar="DIR",
                   help="write a copy of each input with boxes and names into DIR (videos: the annotated "
                        "video or GIF and a contact sheet NAME-tracks.png of each track's best face)")
    p.add_argument("--json", action="store_true", help="print one JSON array, one object per input")
    v = p.add_argument_group("video and animated GIF")
    v.add_argument("--sample-fps", type=float, default=5.0, metavar="N",
                   help="frames analysed per second of video (default 5; 0 = every frame)")
    v.add_argument("--max-gap", type=float, default=1.0, metavar="S",
                   help="a face unseen for more than S seconds starts a new track (default 1.0)")
    v.add_argument("--scene-cut", type=float, default=0.5, metavar="D",
                   help="colour-histogram distance 0..1 that counts as a scene cut, ending every track "
                        "(default 0.5; 0 = never cut)")
    add_detector_options(p)
    p.set_defaults(func=cmd_identify)

    p = sub.add_parser("people", help="who is enrolled, and how many faces each")
    p.add_argument("gallery")
    p.add_argument("person", nargs="?", help="list this person's enrolled faces and their sources")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_people)

    p = sub.add_parser("forget", help="erase people completely from a gallery")
    p.add_argument("gallery")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_forget)

    p = sub.add_parser("calibrate", help="set the unknown-threshold from the gallery itself",
                       description="Search each enrolled person against the rest of the gallery and set the "
                                   "threshold so that at most FPIR of such stranger searches return a name. "
                                   "Re-run it when the gallery has grown.")
    p.add_argument("gallery")
    p.add_argument("--fpir", type=float, default=0.01, help="target false-positive identification rate (default 0.01)")
    p.add_argument("--set", type=float, metavar="T", dest="set_value", help="set the threshold by hand instead")
    p.add_argument("--show", action="store_true", help="only show the threshold in force")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_calibrate)


def describe_threshold(t: Threshold, gallery: str) -> str:
    if t.method == "default":
        return (f"threshold {t.value:.3f} (default for {t.details.get('embedder', 'this embedder')}; "
                f"not calibrated for this gallery — run `facedex calibrate {gallery}`)")
    if t.method == "manual":
        return f"threshold {t.value:.3f} (set by hand)"
    text = f"threshold {t.value:.3f} (calibrated for FPIR {t.details.get('fpir_target', '?')})"
    if t.details.get("stale"):
        text += f" — the gallery has changed since; re-run `facedex calibrate {gallery}`"
    if t.details.get("low_confidence"):
        text += " — rough: few people to calibrate on"
    return text


def cmd_enroll(args: argparse.Namespace) -> int:
    g = Gallery.open(args.gallery, create=True, embedder=args.embedder,
                     detector_config=detector_config(args), runtime=args.runtime)
    with g:
        items: list[EnrollItem] = []
        with progress(None, "enroll", enabled=not args.json) as bar:
            def tick(item: EnrollItem, done: int, total: int) -> None:
                if bar.total != total:
                    bar.total = total
                bar.update(1)
                bar.set_postfix_str(f"added {sum(i.status == 'added' for i in items)}", refresh=False)

            for src in args.sources:
                report = g.enroll(src, person=args.person, multiple=args.multiple,
                                  progress=lambda it, d, t: (items.append(it), tick(it, d, t)))
                del report  # items were collected as they came
        counts = g.counts()
        people_now = {p.name for p in g.people()}
        threshold = g.threshold
    status = Counter(i.status for i in items)
    attempted = {i.person for i in items if i.person}
    missing = sorted(attempted - people_now)
    if args.json:
        emit_json({
            "gallery": str(g.path),
            "added": status["added"], "skipped": status["skipped"], "failed": status["failed"],
            "people_without_faces": missing,
            "totals": counts,
            "threshold": threshold.to_dict(),
            "items": [i.to_dict() for i in items],
        })
    else:
        out(f"added {plural(status['added'], 'image')}, skipped {status['skipped']} already enrolled, "
            f"failed {status['failed']}")
        failures = [i.reason or i.path for i in items if i.status == "failed"]
        if failures:
            out("failed:")
            for line in summarize_reasons(failures):
                out(f"  {line}")
        for name in missing:
            out(f"warning: {name}: no usable image; this person is not in the gallery")
        out(f"gallery {g.path}: {plural(counts['people'], 'person')}, {plural(counts['faces'], 'face')}")
        err(describe_threshold(threshold, args.gallery))
    return EXIT_PARTIAL if status["failed"] else EXIT_OK


def list_media(folder: Path, videos: bool = True) -> list[str]:
    """Images (and videos) under ``folder`` by extension, in the order of
    :func:`facedex.media.list_images` (recursive, sorted, hidden entries skipped)."""
    from ..media import IMAGE_SUFFIXES
    from ..video.content import VIDEO_SUFFIXES

    suffixes = IMAGE_SUFFIXES | VIDEO_SUFFIXES if videos else IMAGE_SUFFIXES
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [str(Path(root) / n) for n in sorted(files)
                  if not n.startswith(".") and Path(n).suffix.lower() in suffixes]
    return found


def expand_inputs(inputs: list[str], videos: bool = False) -> list[str]:
    """Folders become the images (and with ``videos``, the videos) in them; files stay as given."""
    expanded: list[str] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = list_media(p, videos)
            expanded += found if found else [item]
        else:
            expanded.append(item)
    return expanded


def is_video_input(item: str) -> bool:
    """Whether INPUT goes the video way: a video, an animated GIF/WebP/PNG or an
    audio file by content; or unreadable content under a video file name (so the
    error speaks of videos). Still images, one-frame GIFs included, are photos."""
    from ..video.content import looks_like_video_name, sniff

    kind = sniff(item)
    if kind.is_video or kind.kind == "audio":
        return True
    return kind.kind == "unknown" and looks_like_video_name(item)


class Annotator:
    """Writes annotated copies with unique names into a directory."""

    def __init__(self, directory: str | None):
        self.dir = Path(directory) if directory else None
        self.used: set[str] = set()
        if self.dir is not None:
            self.dir.mkdir(parents=True, exist_ok=True)

    def target(self, source: str, suffix: str | None = None, tag: str = "") -> Path:
        assert self.dir is not None
        stem = (Path(source).stem or "image") + tag
        if suffix is None:
            suffix = Path(source).suffix.lower()
            suffix = suffix if suffix in (".jpg", ".jpeg", ".png") else ".png"
        name, n = f"{stem}{suffix}", 1
        while name in self.used:
            name, n = f"{stem}-{n}{suffix}", n + 1
        self.used.add(name)
        return self.dir / name

    def write(self, source: str, faces) -> Path | None:
        if self.dir is None:
            return None
        from PIL import Image

        from ..draw import annotate
        from ..media import load_image

        path = self.target(source)
        drawn = annotate(load_image(source), faces)
        tmp = path.with_name(path.name + ".tmp")
        Image.fromarray(drawn).save(tmp, format="PNG" if path.suffix == ".png" else "JPEG", quality=92)
        tmp.replace(path)
        return path

    def write_video(self, source: str, result) -> tuple[Path, Path] | None:
        """The annotated video (or animation) and the contact sheet of its tracks."""
        if self.dir is None:
            return None
        from ..video.annotate import contact_sheet, output_suffix, write_annotated
        from ..video.types import format_time

        video = write_annotated(source, result.tracks, self.target(source, output_suffix(result.info)))
        title = (f"{Path(source).name}: {len(result.tracks)} track{'s' if len(result.tracks) != 1 else ''}, "
                 f"{format_time(result.duration)}")
        sheet = contact_sheet(result.tracks, self.target(source, ".png", "-tracks"), title=title)
        return video, sheet


def print_result(res: ImageResult) -> None:
    if res.error:
        out(f"{res.input}: ERROR {res.error}")
        return
    if not res.faces:
        out(f"{res.input}: no faces")
        return
    out(f"{res.input}: {plural(len(res.faces), 'face')}")
    for i, f in enumerate(res.faces, 1):
        x, y, w, h = (int(round(v)) for v in f.face.box)
        where = f"at ({x},{y}) {w}x{h}"
        if f.known:
            nxt = f.candidates[1] if len(f.candidates) > 1 else None
            extra = f"  (next: {nxt.name} {nxt.similarity:.3f})" if nxt else ""
            out(f"  {i}. {f.name}  {f.similarity:.3f}  {where}{extra}")
        elif f.candidates:
            best = f.candidates[0]
            out(f"  {i}. unknown  {where}  (closest: {best.name} {best.similarity:.3f} < {f.threshold:.3f})")
        else:
            out(f"  {i}. unknown  {where}  (the gallery is empty)")


_BAR_WIDTH = 48


def _bar_chars() -> tuple[str, str]:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "█·".encode(enc)
        return "█", "·"
    except (UnicodeEncodeError, LookupError):
        return "#", "."


def timeline_bar(ranges, duration: float, width: int = _BAR_WIDTH) -> str:
    """One character per ``duration / width`` seconds: on screen or not."""
    on, off = _bar_chars()
    cells = [off] * width
    if duration <= 0:
        return on * width if ranges else off * width
    step = duration / width
    for a, b in ranges:
        first = min(width - 1, max(0, int(a / step)))
        last = min(width - 1, max(first, int(math.ceil(b / step)) - 1))
        for i in range(first, last + 1):
            cells[i] = on
    return "".join(cells)


def print_video_result(res) -> None:
    """A readable timeline: who is on screen when, then every track."""
    from ..video.types import format_time as ft

    if res.error:
        out(f"{res.input}: ERROR {res.error}")
        return
    info = res.info
    what = "animation" if info is not None and info.kind == "animation" else "video"
    size = f", {info.width}x{info.height}" if info is not None and info.width else ""
    rate = f" @ {info.fps:g} fps" if info is not None and info.fps else ""
    sampled = (f"{res.frames_sampled} analysed ({res.sample_fps:g}/s)" if res.sample_fps
               else f"{res.frames_sampled} analysed (every frame)")
    out(f"{res.input}: {what} {ft(res.duration)}{size}{rate} — {plural(res.frames_decoded, 'frame')}, {sampled}, "
        f"{plural(len(res.tracks), 'track')}")
    if not res.tracks:
        out("  no faces")
    rows = [(p.name, p.ranges, p.seconds) for p in res.people]
    rows += [(f"unknown #{t.track}", ((t.first_seen, t.last_seen),), t.seconds) for t in res.tracks if not t.known]
    if rows:
        label_w = max(len(r[0]) for r in rows)
        for label, ranges, seconds in rows:
            spans = ", ".join(f"{ft(a)}–{ft(b)}" for a, b in ranges[:4]) + (" …" if len(ranges) > 4 else "")
            out(f"  {label.ljust(label_w)}  |{timeline_bar(ranges, res.duration)}|  {seconds:6.1f} s  {spans}")
    if res.tracks:
        out("  tracks:")
        for t in res.tracks:
            when = f"{ft(t.first_seen)}–{ft(t.last_seen)}  {plural(t.frames, 'frame')}, best at {ft(t.best_frame_time)}"
            if t.known:
                nxt = t.candidates[1] if len(t.candidates) > 1 else None
                extra = f"  (next: {nxt.name} {nxt.similarity:.3f})" if nxt else ""
                out(f"    #{t.track}  {t.name}  {t.similarity:.3f}  {when}{extra}")
            elif t.candidates:
                best = t.candidates[0]
                out(f"    #{t.track}  unknown  {when}  (closest: {best.name} {best.similarity:.3f} < {t.threshold:.3f})")
            else:
                out(f"    #{t.track}  unknown  {when}  (the gallery is empty)")
    if res.broken_frames:
        out(f"  {plural(res.broken_frames, 'broken frame')} skipped")
    for w in res.warnings:
        out(f"  warning: {w}")


def _identify_video(g: Gallery, item: str, options, threshold: float | None, show_progress: bool):
    """One video or animation → a VideoResult; an unusable input gives a result with ``error``."""
    from ..video.identify import identify_video
    from ..video.types import VideoResult

    with progress(None, Path(item).name, enabled=show_progress) as bar:
        bar.unit = "frame"

        def tick(done: int, total: int | None) -> None:
            if total and bar.total != total:
                bar.total = total
            bar.update(done - bar.n)

        stream = None
        try:
            stream = identify_video(g, item, options, threshold=threshold, progress=tick)
            return stream.result()
        except FacedexError as e:
            return VideoResult(item, info=stream.info if stream else None, error=str(e),
                               sample_fps=options.sample_fps)
        finally:
            if stream is not None:
                stream.close()
            bar.clear()


def cmd_identify(args: argparse.Namespace) -> int:
    from ..video.types import VideoOptions

    options = VideoOptions(sample_fps=args.sample_fps or None, max_gap=args.max_gap, scene_cut=args.scene_cut)
    g = Gallery.open(args.gallery, detector_config=detector_config(args), runtime=args.runtime)
    annotator = Annotator(args.annotate)
    inputs = expand_inputs(args.inputs, videos=True)
    results: list = []
    failed = 0
    with g:
        threshold = g.threshold
        err(describe_threshold(threshold, args.gallery) if args.threshold is None
            else f"threshold {args.threshold:.3f} (from --threshold)")
        if g.counts()["faces"] == 0:
            err(f"warning: {g.path} has no faces enrolled; every face will be unknown")
        with progress(len(inputs), "identify", enabled=not args.json and len(inputs) > 1) as bar:
            def report(res, video: bool) -> None:
                nonlocal failed
                bar.update(1)
                failed += res.error is not None
                if args.json:
                    results.append(res)
                else:
                    bar.clear()
                    (print_video_result if video else print_result)(res)

            photos: list[str] = []

            def flush_photos() -> None:
                for res in g.identify_many(photos, threshold=args.threshold):
                    if res.error is None and annotator.dir is not None:
                        try:
                            annotator.write(res.input, res.faces)
                        except (OSError, FacedexError) as e:
                            res = ImageResult(res.input, res.faces, f"cannot write the annotated copy: {e}")
                    report(res, False)
                photos.clear()

            for item in inputs:
                if not is_video_input(item):
                    photos.append(item)
                    continue
                flush_photos()
                res = _identify_video(g, item, options, args.threshold, not args.json)
                if res.error is None and annotator.dir is not None:
                    try:
                        annotator.write_video(item, res)
                    except (OSError, FacedexError) as e:
                        res = dataclasses.replace(res, error=f"cannot write the annotated copy: {e}")
                report(res, True)
            flush_photos()
    if args.json:
        emit_json([{**r.to_dict(), "kind": "image"} if isinstance(r, ImageResult) else r.to_dict() for r in results])
    elif failed:
        err(f"{failed} of {len(inputs)} inputs failed")
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_people(args: argparse.Namespace) -> int:
    with Gallery.open(args.gallery) as g:
        if args.person:
            faces = g.store.faces_of(args.person)
            if args.json:
                emit_json({"name": args.person, "faces": faces})
            else:
                rows = [(f["face_id"], f["path"] or "(embedding only)",
                         " ".join(str(int(v)) for v in f["box"])) for f in faces]
                out(table(rows, ["face", "source", "box x y w h"], "rll"))
            return EXIT_OK
        people = g.people()
        counts = g.counts()
        threshold = g.threshold
        if args.json:
            emit_json({"gallery": str(g.path), "embedder": g.embedder_card.id, "totals": counts,
                       "threshold": threshold.to_dict(), "people": [p.to_dict() for p in people]})
        else:
            out(table([(p.name, p.faces, p.sources) for p in people], ["name", "faces", "sources"], "lrr"))
            out(f"{plural(counts['people'], 'person')}, {plural(counts['faces'], 'face')}; "
                f"embedder {g.embedder_card.id}")
            out(describe_threshold(threshold, args.gallery))
    return EXIT_OK


def cmd_forget(args: argparse.Namespace) -> int:
    results, failed = [], 0
    with Gallery.open(args.gallery) as g:
        for name in args.names:
            try:
                removed = g.forget(name)
                results.append({"name": name, "forgotten": True, **removed, "error": None})
                if not args.json:
                    out(f"forgot {name}: {plural(removed['faces'], 'face')} from "
                        f"{plural(removed['sources'], 'source')} erased")
            except FacedexError as e:
                failed += 1
                results.append({"name": name, "forgotten": False, "error": str(e)})
                if not args.json:
                    out(f"{name}: ERROR {e}")
        stale = g.threshold.details.get("stale")
    if args.json:
        emit_json(results)
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
        emit_json(t.to_dict())
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
