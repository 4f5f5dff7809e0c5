"""Library commands: index, discover, name, find — and the person-fixing
options of ``facedex people`` (``--merge``, ``--rename``, ``--remove-face``,
``--remove-source``), which ``facedex.cli.gallery`` adds to its ``people``
command through :func:`add_people_edit_options` / :func:`run_people_edit`.

Each parses its arguments, calls :mod:`facedex.library` and prints; JSON
documents are described in docs/schemas/ and docs/library.md.
"""

from __future__ import annotations

import argparse
import os
from collections import Counter

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

ORDER = 15

SCHEMA = "facedex.{}/1"


def register(sub) -> None:
    p = add_command(sub, "index", help="catalogue every face of a photo and video library into a gallery",
                    description="Find every face in the photos, videos and animated GIFs under PATH and keep them "
                                "in GALLERY as unlabelled sightings (a video gives one sighting per face track). "
                                "Re-running reads only new or changed files. Sightings never take part in "
                                "identification; `facedex discover` groups them into people and `facedex find` "
                                "says where a person appears.",
                    examples=["facedex index my.gallery ~/Pictures ~/Videos",
                              "facedex index my.gallery ~/Pictures --prune        # forget files deleted since",
                              "facedex index my.gallery --forget-source ~/Pictures/private/",
                              "facedex index my.gallery /nfs/photos --engine ray --ray-address auto"])
    add_gallery(p, create=True)
    p.add_argument("paths", nargs="*", metavar="PATH", help="photo, video or GIF files, or folders of them")
    p.add_argument("--prune", action="store_true",
                   help="remove the sightings of files that were indexed under a folder given and are gone")
    p.add_argument("--forget-source", action="append", default=[], metavar="PATH",
                   help="remove the sightings of this file (or of every file under this folder); repeatable")
    p.add_argument("--embedder", metavar="NAME|PATH",
                   help="embedder for a new gallery (default sface-2021dec); an existing gallery keeps its own")
    add_json(p, "the report")
    v = p.add_argument_group("video and animated GIF")
    v.add_argument("--sample-fps", type=bounded(float, 0), default=5.0, metavar="N",
                   help="frames analysed per second of video (0 = every frame)")
    v.add_argument("--max-gap", type=bounded(float, 0), default=1.0, metavar="S",
                   help="a face unseen for more than S seconds starts a new track")
    v.add_argument("--scene-cut", type=bounded(float, 0, 1), default=0.5, metavar="D",
                   help="colour-histogram distance 0..1 that counts as a scene cut, ending every track (0 = never)")
    v.add_argument("--min-track-frames", type=bounded(int, 1), default=1, metavar="N",
                   help="drop tracks seen in fewer than N analysed frames")
    add_detector_options(p)
    from .scale import add_engine_options  # issue #16: --engine ray, --ray-address

    add_engine_options(p, "index: the photos are detected, embedded and cropped on Ray; videos and animated GIFs "
                          "are indexed in this process (a track follows the frames in order)")
    p.set_defaults(func=cmd_index)

    p = add_command(sub, "discover", help="group the library's unknown faces into candidate people",
                    description="Cluster the indexed faces that no enrolled person claims (the same decision as "
                                "`identify`) into candidate people, largest first, and keep the clusters so that "
                                "`facedex name GALLERY CLUSTER_ID NAME` can name one. THRESHOLD is the average "
                                "similarity at which two groups of faces are taken for one person.",
                    examples=["facedex discover my.gallery",
                              "facedex discover my.gallery --html review/     # then open review/index.html",
                              "facedex discover my.gallery --min-size 3 --json > clusters.json"])
    add_gallery(p)
    p.add_argument("--threshold", type=similarity, metavar="T",
                   help="clustering threshold: average cosine similarity in [-1, 1] (default: from the gallery's "
                        "embedder, 0.461 for SFace)")
    p.add_argument("--min-size", type=bounded(int, 1), default=2, metavar="N",
                   help="smallest cluster shown; fewer faces count as unclustered")
    p.add_argument("--min-quality", type=bounded(float, 0, 1), default=0.0, metavar="Q",
                   help="leave out faces of lower quality (0..1: detection score x size x sharpness x frontality)")
    p.add_argument("--identify-threshold", type=similarity, metavar="T",
                   help="open-set threshold for claiming faces for enrolled people (default: the gallery's)")
    p.add_argument("--html", metavar="DIR",
                   help="write a contact sheet to review in a browser: DIR/index.html (a new or empty folder, or "
                        "one a sheet was written to before)")
    p.add_argument("--show", type=bounded(int, 0), default=20, metavar="N",
                   help="clusters listed on the terminal (all with --json)")
    add_json(p, "the clusters")
    p.set_defaults(func=cmd_discover)

    p = add_command(sub, "name", help="name a discovered cluster: its faces are enrolled as that person",
                    description="The faces of CLUSTER_ID (from the last `facedex discover`) are enrolled as NAME — "
                                "a new person, or added to the person of that name. Faces a reviewer rejected are "
                                "left out with --exclude (sighting ids, as discover shows them) and are never "
                                "listed for that person by `facedex find`.",
                    examples=["facedex name my.gallery k3f9x0a2 'Ada Lovelace'",
                              "facedex name my.gallery k3f9x0a2 'Ada Lovelace' --exclude 1532 1533"])
    add_gallery(p)
    p.add_argument("cluster", metavar="CLUSTER_ID", help="a cluster id printed by `facedex discover`")
    p.add_argument("name", metavar="NAME", help="the person's name")
    p.add_argument("--exclude", type=bounded(int, 0), nargs="+", default=[], metavar="SIGHTING",
                   help="sighting ids of faces that are not this person")
    add_json(p, "what was enrolled")
    p.set_defaults(func=cmd_name)

    p = add_command(sub, "find", help="where does a person appear in the indexed library?",
                    description="List every photo and video moment of the indexed library where NAME appears, "
                                "decided as `identify` decides (same threshold), against the gallery as it is now: "
                                "people enrolled after indexing are found without indexing again.",
                    examples=["facedex find my.gallery 'Ada Lovelace'",
                              "facedex find my.gallery 'Ada Lovelace' --json > ada.json"])
    add_gallery(p)
    p.add_argument("name", metavar="NAME", help="an enrolled person's name")
    p.add_argument("--threshold", type=similarity, metavar="T",
                   help="use this open-set threshold instead of the gallery's, for this search")
    add_json(p, "the appearances")
    p.set_defaults(func=cmd_find)


# --- index ---------------------------------------------------------------------------------------
def cmd_index(args: argparse.Namespace) -> int:
    from ..identify.gallery import Gallery
    from ..library import LibraryIndexer, LibraryStore, forget_sources
    from ..video.types import VideoOptions
    from .scale import ray_options

    if not args.paths and not args.forget_source:
        raise _usage("give PATH (files or folders to index) or --forget-source PATH")
    ray = ray_options(args)
    options = VideoOptions(sample_fps=args.sample_fps or None, max_gap=args.max_gap, scene_cut=args.scene_cut,
                           min_track_frames=args.min_track_frames)
    g = Gallery.open(args.gallery, create=bool(args.paths), embedder=args.embedder,
                     detector_config=detector_config(args), runtime=args.runtime)
    items, skipped = [], []
    interrupted = False
    ray_doc = None
    with g:
        if args.forget_source:
            items += forget_sources(g, args.forget_source)
        if args.paths:
            frames_bar: dict = {}

            def on_frames(name: str, done: int, total: int | None) -> None:
                bar = frames_bar.get("bar")
                if bar is None or frames_bar.get("name") != name:
                    if bar is not None:
                        bar.close()
                    bar = frames_bar["bar"] = progress(total, printable(os.path.basename(name))[-30:],
                                                       enabled=not args.json)
                    bar.unit = "frame"
                    frames_bar["name"] = name
                bar.update(done - bar.n)

            with progress(None, "index", enabled=not args.json) as bar:
                def tick(item, done: int, total: int) -> None:
                    if frames_bar.get("bar") is not None:
                        frames_bar.pop("bar").close()
                    if bar.total != total:
                        bar.total = total
                    bar.update(1)

                run = LibraryIndexer(g, video=options, progress=tick, on_frames=on_frames, ray=ray)
                try:
                    run.run(args.paths, prune=args.prune)
                except KeyboardInterrupt:
                    interrupted = True
                bar.clear()
            items += run.items
            skipped = run.skipped
            if run.ray_run is not None:
                r = run.ray_run
                ray_doc = {"shards": len(r.shard_files), "shards_written": len(r.shard_files) - r.shards_skipped,
                           "shards_skipped": r.shards_skipped, "images": r.images, "actors": r.actors,
                           "seconds": round(r.seconds, 3)}
        totals = LibraryStore(g.store, create=False).counts()
    status = Counter(i.status for i in items)
    added = sum(i.sightings for i in items if i.status in ("indexed", "updated", "duplicate"))
    if args.json:
        emit_json({"schema": SCHEMA.format("index"), "gallery": str(g.path), "interrupted": interrupted,
                   "indexed": status["indexed"], "updated": status["updated"], "unchanged": status["unchanged"],
                   "duplicate": status["duplicate"], "failed": status["failed"], "removed": status["removed"],
                   "sightings_added": added, "totals": totals, "items": [i.to_dict() for i in items],
                   "skipped": [s.to_dict() for s in skipped], "engine": args.engine, "ray": ray_doc})
    else:
        if args.paths:
            out(f"indexed {plural(status['indexed'] + status['updated'], 'file')} ({plural(added, 'face')} found"
                + (f", {status['updated']} changed since the last run" if status["updated"] else "") + "), "
                f"{status['unchanged']} unchanged, {status['duplicate']} copies of indexed files, "
                f"failed {status['failed']}")
        failures = [printable(i.reason or i.path) for i in items if i.status == "failed"]
        if failures:
            out("failed:")
            for line in summarize_reasons(failures):
                out(f"  {line}")
        removed = [i for i in items if i.status == "removed"]
        if removed:
            out(f"removed the sightings of {plural(len(removed), 'file')} "
                f"({plural(sum(i.sightings for i in removed), 'sighting')})")
            for note in sorted({i.reason for i in removed if i.reason and "named" in i.reason}):
                out(f"  note: {printable(note)}; `facedex people GALLERY NAME --remove-source PATH` removes them")
        if skipped:
            out(f"skipped {plural(len(skipped), 'file')} in the folders given (not images or videos)")
        if ray_doc is not None:
            err(f"ray: {plural(ray_doc['shards_written'], 'shard')} written by {plural(ray_doc['actors'], 'actor')} "
                f"({ray_doc['images']} photos, {ray_doc['seconds']:.1f} s), {ray_doc['shards_skipped']} already there")
        out(f"library in {printable(str(g.path))}: {plural(totals['sources'], 'file')}, "
            f"{plural(totals['sightings'], 'face')} ({totals['named']} named)")
        if args.paths and not interrupted:
            err(f"next: `facedex discover {args.gallery}` groups the unknown faces into people")
    if interrupted:
        err(f"interrupted: {status['indexed'] + status['updated']} files indexed were kept; re-run the same "
            "command to go on")
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if status["failed"] else EXIT_OK


def _usage(message: str):
    from ..errors import ConfigError

    return ConfigError(message)


# --- discover ------------------------------------------------------------------------------------
def cmd_discover(args: argparse.Namespace) -> int:
    from ..identify.gallery import Gallery
    from ..library import LibraryStore, discover
    from ..render.sheet import prepare_folder

    with Gallery.open(args.gallery, runtime=args.runtime) as g:
        if args.html:
            prepare_folder(args.html)  # checked before the work
        result = discover(g, threshold=args.threshold, identify_threshold=args.identify_threshold,
                          min_size=args.min_size, min_quality=args.min_quality)
        pages = []
        if args.html:
            from ..render.sheet import write_cluster_sheet

            lib = LibraryStore(g.store, create=False)
            pages = write_cluster_sheet(result, lib.crop, args.html, gallery=str(args.gallery),
                                        review_below=result.threshold)
    if args.json:
        emit_json({"schema": SCHEMA.format("discover"), "gallery": str(g.path), **result.to_dict(),
                   "html": str(pages[0]) if pages else None})
        return EXIT_OK
    if result.sightings == 0:
        out(f"nothing indexed yet: run `facedex index {args.gallery} PATH…` first")
        return EXIT_OK
    shown = result.clusters[:args.show]
    rows = []
    for c in shown:
        sources = list(dict.fromkeys(os.path.basename(f.sighting.source) for f in c.faces))
        example = ", ".join(sources[:3]) + (f" +{len(sources) - 3}" if len(sources) > 3 else "")
        rows.append((c.id, c.size, len(sources), printable(example)))
    if rows:
        out(table(rows, ["cluster", "faces", "files", "in"], "lrrl"))
    if len(result.clusters) > len(shown):
        out(f"… and {len(result.clusters) - len(shown)} more clusters (--show N, --json, --html DIR)")
    claimed = sum(result.claimed.values())
    parts = [f"{plural(len(result.clusters), 'cluster')} of {plural(sum(c.size for c in result.clusters), 'face')}",
             f"{plural(result.unclustered, 'face')} in no cluster"]
    if claimed:
        parts.append(f"{claimed} recognised as {plural(len(result.claimed), 'person')} already enrolled")
    if result.named:
        parts.append(f"{result.named} named")
    if result.low_quality:
        parts.append(f"{result.low_quality} below --min-quality")
    out("; ".join(parts))
    err(f"clustering threshold {result.threshold:.3f} ({result.threshold_source})")
    if pages:
        out(f"contact sheet: {printable(str(pages[0]))}" + (f" (+{len(pages) - 1} pages)" if len(pages) > 1 else ""))
    if result.clusters:
        err(f"name one: `facedex name {args.gallery} {result.clusters[0].id} 'Their Name'` "
            "(--exclude SIGHTING… for faces that are not them)")
    return EXIT_OK


# --- name ----------------------------------------------------------------------------------------
def cmd_name(args: argparse.Namespace) -> int:
    from ..identify.gallery import Gallery
    from ..library import name_cluster

    with Gallery.open(args.gallery) as g:
        r = name_cluster(g, args.cluster, args.name, exclude=args.exclude)
        totals = g.counts()
    if args.json:
        emit_json({"schema": SCHEMA.format("name"), "gallery": str(g.path), **r.to_dict(), "totals": totals})
        return EXIT_OK
    who = printable(r.person)
    out(f"{'new person' if r.created else 'added to'} {who}: {plural(r.enrolled, 'face')} enrolled from "
        f"{plural(r.sources, 'file')}" + (f"; {plural(len(r.excluded), 'face')} excluded" if r.excluded else ""))
    for sid, other in r.skipped:
        out(f"  sighting {sid} was already named {printable(other)}; left as it is")
    for w in r.warnings:
        out(f"warning: {printable(w)}")
    err(f"`facedex find {args.gallery} {_shell(r.person)}` lists where {who} appears")
    return EXIT_OK


def _shell(text: str) -> str:
    import shlex

    return shlex.quote(text)


# --- find ----------------------------------------------------------------------------------------
def cmd_find(args: argparse.Namespace) -> int:
    from ..identify.gallery import Gallery
    from ..library import find
    from ..video.types import format_time
    from .gallery import describe_threshold

    with Gallery.open(args.gallery, runtime=args.runtime) as g:
        r = find(g, args.name, threshold=args.threshold)
    if args.json:
        emit_json({"schema": SCHEMA.format("find"), "gallery": str(g.path), **r.to_dict()})
        return EXIT_OK
    rows = []
    for a in r.appearances:
        s = a.sighting
        when = "" if s.time is None else f"{format_time(s.time[0])}-{format_time(s.time[1])}"
        rows.append((printable(s.source), when, " ".join(str(int(v)) for v in s.box), f"{a.similarity:.3f}",
                     "named" if s.person else ""))
    if rows:
        out(table(rows, ["source", "time", "box x y w h", "similarity", ""], "llrrl"))
    out(f"{printable(r.person)}: {plural(len(r.appearances), 'appearance')} in "
        f"{plural(r.sources, 'file')} ({r.sightings} indexed faces searched)")
    err(describe_threshold(r.threshold, args.gallery))
    if r.sightings == 0:
        err(f"nothing is indexed in {args.gallery}: run `facedex index {args.gallery} PATH…` first")
    return EXIT_OK


# --- facedex people: the person-fixing options -------------------------------------------------
def add_people_edit_options(p: argparse.ArgumentParser) -> None:
    """``--merge A B``, ``--rename A B``, ``--remove-face ID…``, ``--remove-source PATH`` on ``facedex people``."""
    g = p.add_argument_group("fixing people (one at a time)")
    x = g.add_mutually_exclusive_group()
    x.add_argument("--merge", nargs=2, metavar=("A", "B"),
                   help="A and B are one person: A's faces, sources and named sightings join B, and A is gone")
    x.add_argument("--rename", nargs=2, metavar=("OLD", "NEW"), help="give a person a new name")
    x.add_argument("--remove-face", type=bounded(int, 0), nargs="+", metavar="FACE_ID",
                   help="remove enrolled faces (ids as `facedex people GALLERY PERSON` lists them); with PERSON, "
                        "each must be theirs")
    x.add_argument("--remove-source", metavar="PATH",
                   help="remove the faces enrolled from this file (of PERSON, or of everyone without PERSON)")


def people_edit_requested(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) for k in ("merge", "rename", "remove_face", "remove_source"))


def run_people_edit(args: argparse.Namespace) -> int:
    """The ``facedex people`` options above; called by ``cmd_people`` when one is given."""
    from ..identify.gallery import Gallery
    from ..library import merge_people, remove_faces, remove_source, rename_person

    with Gallery.open(args.gallery) as g:
        if args.merge:
            if args.person:
                raise _usage("--merge A B takes no PERSON")
            r = merge_people(g, *args.merge)
        elif args.rename:
            if args.person:
                raise _usage("--rename OLD NEW takes no PERSON")
            r = rename_person(g, *args.rename)
        elif args.remove_face:
            r = remove_faces(g, args.remove_face, args.person)
        else:
            r = remove_source(g, args.remove_source, args.person)
        totals = g.counts()
        stale = g.threshold.details.get("stale")
    if args.json:
        emit_json({"schema": SCHEMA.format("people-edit"), "gallery": str(g.path), **r.to_dict(), "totals": totals})
        return EXIT_OK
    if r.operation == "merge":
        out(f"merged {printable(r.person)} into {printable(r.into)}: {plural(r.faces_moved, 'face')} moved")
    elif r.operation == "rename":
        out(f"renamed {printable(r.person)} to {printable(r.into)}")
    else:
        out(f"removed {plural(r.faces_removed, 'face')} of {printable(r.person)}"
            + (f" ({plural(r.sources_removed, 'source')} left without faces removed)" if r.sources_removed else ""))
        if r.person_removed:
            out("  no face was left: the person was removed")
    out(f"gallery {printable(str(g.path))}: {plural(totals['people'], 'person')}, {plural(totals['faces'], 'face')}")
    if stale:
        err(f"the gallery changed a lot since calibration; re-run `facedex calibrate {args.gallery}`")
    return EXIT_OK
