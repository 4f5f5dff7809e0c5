"""`facedex clean SRC DST`: a noisy folder-per-person collection → aligned, checked crops."""

from __future__ import annotations

import argparse
import dataclasses

from ..models import DEFAULT_EMBEDDER
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    add_command,
    add_detector_options,
    add_json,
    bounded,
    detector_config,
    similarity,
    stop_on_interrupt,
)
from .output import emit_json, err, out, plural, progress, table

ORDER = 20

#: the --json document (docs/schemas/clean.schema.json)
SCHEMA = "facedex.clean/1"


def register(sub) -> None:
    p = add_command(
        sub, "clean", help="clean a scraped folder-per-person collection into aligned face crops",
        description="Read SRC/<Person>/* (never modified), detect and check every face, and write the kept "
                    "faces as aligned 112x112 crops to DST/<Person>/, with DST/manifest.jsonl giving the "
                    "decision and reason for every image. Re-running is incremental: only new images are "
                    "analysed. Ctrl-C stops after the images in hand, reports what finished and keeps it; "
                    "the same command continues. See docs/clean.md.",
        examples=["facedex clean raw/ clean/",
                  "facedex clean raw/ clean/ --split 0.2 --report review.html",
                  "facedex clean raw/ clean/ --min-face 60 --margin 2.0 --json > clean.json"])
    p.add_argument("src", metavar="SRC", help="folder per person: SRC/<Person>/<images>")
    p.add_argument("dst", metavar="DST", help="output folder (created; re-running continues in it)")
    p.add_argument("--sources", metavar="FILE",
                   help="JSON Lines: the people shown in each image or group of images (default: "
                        "SRC/sources.jsonl when present)")
    p.add_argument("--report", metavar="HTML", help="write an HTML page to review the rejections")
    p.add_argument("--split", type=bounded(float, 0, 0.99), default=0.0, metavar="F",
                   help="share of each person's kept images for validation, e.g. 0.2")
    p.add_argument("--seed", type=bounded(int, 0), default=0, metavar="N", help="seed of the split")
    add_json(p, "the summary and every rejection")
    g = p.add_argument_group("rules")
    g.add_argument("--min-sharpness", type=bounded(float, 0), default=25.0, metavar="S",
                   help="reject faces whose sharpness (Laplacian variance of the aligned crop) is below S")
    g.add_argument("--max-yaw", type=bounded(float, 0, 90), default=55.0, metavar="DEG",
                   help="reject faces turned sideways by more than DEG degrees")
    g.add_argument("--max-pitch", type=bounded(float, 0, 90), default=45.0, metavar="DEG",
                   help="reject faces tilted up or down by more than DEG degrees")
    g.add_argument("--outlier-threshold", type=similarity, default=None, metavar="T",
                   help="cosine similarity to the person's consensus below which a face is the wrong person "
                        "(default: from the embedder's statistics)")
    g.add_argument("--pair-threshold", type=similarity, default=None, metavar="T",
                   help="similarity two images of one person must reach when a person has only two "
                        "(default: from the embedder's statistics)")
    g = p.add_argument_group("outputs")
    g.add_argument("--margin", type=bounded(float, 1.0), default=None, metavar="M",
                   help="also write a wider crop, M times the face box (e.g. 2.0), to DST/<Person>/wide/")
    g.add_argument("--wide-size", type=bounded(int, 16, 4096), default=224, metavar="PX",
                   help="size of the wider crop")
    g.add_argument("--embedder", default=DEFAULT_EMBEDDER, metavar="NAME|PATH", help="embedder used to compare faces")
    add_detector_options(p, min_face=40.0)
    from .scale import add_engine_options  # issue #16: --engine ray, --ray-address

    add_engine_options(p, "clean: the images are analysed (decoded, detected with rotation recovery, aligned, "
                          "embedded) on Ray, each batch kept in DST's analysis cache as it comes back (the cache is "
                          "the resume point); the decisions and the outputs are made in this process", shards=False)
    _set_help(p, "--min-face", "reject faces whose shorter box side is below PX pixels (reason too_small); "
                               "detection looks for faces down to 16 px so that these are reported, "
                               "not missed")
    p.set_defaults(func=cmd_clean)


def _set_help(parser: argparse.ArgumentParser, option: str, text: str) -> None:
    parser._option_string_actions[option].help = text


def cmd_clean(args: argparse.Namespace) -> int:
    from ..clean import DETECT_MIN_FACE, CleanConfig, clean
    from .scale import ray_options

    cfg = CleanConfig(min_face=args.min_face, min_sharpness=args.min_sharpness, max_yaw=args.max_yaw,
                      max_pitch=args.max_pitch, outlier_threshold=args.outlier_threshold,
                      pair_threshold=args.pair_threshold, split=args.split, seed=args.seed)
    # detect below --min-face, so that small faces are rejected as too small rather than missed
    det = dataclasses.replace(detector_config(args), min_face=min(DETECT_MIN_FACE, args.min_face))
    bars: dict[str, object] = {}
    done: dict[str, int] = {}

    def tick(stage: str, n: int, total: int | None) -> None:
        done[stage] = done.get(stage, 0) + n
        if args.json:
            return
        bar = bars.get(stage)
        if bar is None:
            close_bars()
            bar = bars[stage] = progress(total, stage)
        bar.update(n)

    def close_bars() -> None:
        for bar in bars.values():
            bar.close()

    try:
        with stop_on_interrupt("stopping after the images in hand; press Ctrl-C again to abort at once",
                               on_first=close_bars) as stop:
            report = clean(args.src, args.dst, cfg, sources=args.sources,
                           embedder=args.embedder, detector_config=det,
                           runtime=args.runtime, wide_margin=args.margin, wide_size=args.wide_size,
                           report_html=args.report, progress=tick, stop=stop, ray=ray_options(args))
    except KeyboardInterrupt:  # the second Ctrl-C: stopped at once; finished work is in DST's cache
        close_bars()
        if args.json:
            emit_json({"schema": SCHEMA, "interrupted": True, "aborted": True, "progress": done})
        err("facedex clean: aborted; analyses and crops already finished are kept; "
            "run the same command again to continue")
        return EXIT_INTERRUPTED
    finally:
        close_bars()
    if report.interrupted:
        return _interrupted(args, report)
    s = report.summary
    if args.json:
        emit_json({"schema": SCHEMA, **report.to_dict()})
    else:
        out(f"{s['images']} images of {plural(s['people'], 'person')}: kept {s['kept']}, rejected {s['rejected']} "
            f"({report.analysed} analysed, {report.reused} from the cache)")
        if s["by_reason"]:
            out(table(sorted(s["by_reason"].items(), key=lambda kv: -kv[1]), ["reason", "images"], "lr"))
        if s["split"]:
            out("split: " + ", ".join(f"{k} {v}" for k, v in sorted(s["split"].items())))
        for name in s["people_without_kept_images"]:
            out(f"warning: {name}: no image kept")
        for p in s["problems"]:
            out(f"not processed: {p['item']}: {p['reason']}")
        out(f"manifest: {report.manifest}")
        if report.report_html:
            err(f"review page: {report.report_html}")
    return EXIT_PARTIAL if s["problems"] or s["by_reason"].get("unreadable") else EXIT_OK


_STAGES = {"hash": "reading the images", "analyse": "analysing the faces", "write": "writing the crops"}


def _interrupted(args: argparse.Namespace, report) -> int:
    s = report.summary
    line = (f"interrupted while {_STAGES.get(report.stage, report.stage)}: {s['images']} images of "
            f"{plural(s['people'], 'person')}; {report.analysed} analysed now, {report.reused} from the cache, "
            f"{plural(report.written, 'crop')} written")
    if args.json:
        emit_json({"schema": SCHEMA, **report.to_dict()})
        err(f"facedex clean: {line}")
    else:
        out(line)
        out(f"manifest: {report.manifest or 'none yet'} (not updated by this run)")
    err("finished work is kept: run the same command again to continue")
    return EXIT_INTERRUPTED
