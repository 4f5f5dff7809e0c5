"""`facedex clean SRC DST`: a noisy folder-per-person collection → aligned, checked crops."""

from __future__ import annotations

import argparse

from .common import add_detector_options
from .output import emit_json, err, out, plural, progress, table

EXIT_OK, EXIT_PARTIAL = 0, 1
ORDER = 20


def register(sub) -> None:
    p = sub.add_parser(
        "clean", help="clean a scraped folder-per-person collection into aligned face crops",
        description="Read SRC/<Person>/* (never modified), detect and check every face, and write the kept "
                    "faces as aligned 112x112 crops to DST/<Person>/, with DST/manifest.jsonl giving the "
                    "decision and reason for every image. Re-running is incremental.")
    p.add_argument("src", metavar="SRC")
    p.add_argument("dst", metavar="DST")
    p.add_argument("--sources", metavar="FILE",
                   help="JSON Lines: the people shown in each image or group of images (default SRC/sources.jsonl)")
    p.add_argument("--report", metavar="HTML", help="write an HTML page to review the rejections")
    p.add_argument("--split", type=float, default=0.0, metavar="F",
                   help="share of each person's kept images for validation, e.g. 0.2")
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default 0)")
    p.add_argument("--min-size", type=float, default=40.0, metavar="PX",
                   help="reject faces smaller than PX pixels (default 40)")
    p.add_argument("--min-sharpness", type=float, default=25.0, metavar="S",
                   help="reject faces whose sharpness (Laplacian variance of the aligned crop) is below S")
    p.add_argument("--max-yaw", type=float, default=55.0, metavar="DEG")
    p.add_argument("--max-pitch", type=float, default=45.0, metavar="DEG")
    p.add_argument("--outlier-threshold", type=float, default=None, metavar="T",
                   help="cosine similarity to the person's consensus below which a face is the wrong person "
                        "(default: from the embedder's statistics)")
    p.add_argument("--pair-threshold", type=float, default=None, metavar="T",
                   help="similarity two images of one person must reach when a person has only two")
    p.add_argument("--margin", type=float, default=None, metavar="M",
                   help="also write a wider crop, M times the face box (e.g. 2.0), to DST/<Person>/wide/")
    p.add_argument("--wide-size", type=int, default=224, metavar="PX", help="size of the wider crop (default 224)")
    p.add_argument("--embedder", default=None, metavar="NAME|PATH", help="embedder used to compare faces")
    p.add_argument("--json", action="store_true", help="print the summary and every rejection as JSON")
    add_detector_options(p)
    p.set_defaults(func=cmd_clean, min_face=16.0)


def cmd_clean(args: argparse.Namespace) -> int:
    from .. import models
    from ..clean import CleanConfig, clean
    from .common import detector_config

    cfg = CleanConfig(min_face=args.min_size, min_sharpness=args.min_sharpness, max_yaw=args.max_yaw,
                      max_pitch=args.max_pitch, outlier_threshold=args.outlier_threshold,
                      pair_threshold=args.pair_threshold, split=args.split, seed=args.seed)
    bars: dict[str, object] = {}

    def tick(stage: str, n: int, total: int | None) -> None:
        if args.json:
            return
        bar = bars.get(stage)
        if bar is None:
            for other in bars.values():
                other.close()
            bar = bars[stage] = progress(total, stage)
        bar.update(n)

    try:
        report = clean(args.src, args.dst, cfg, sources=args.sources,
                       embedder=args.embedder or models.DEFAULT_EMBEDDER, detector_config=detector_config(args),
                       runtime=args.runtime, wide_margin=args.margin, wide_size=args.wide_size,
                       report_html=args.report, progress=tick)
    finally:
        for bar in bars.values():
            bar.close()
    s = report.summary
    if args.json:
        emit_json(report.to_dict())
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
