"""`facedex eval`: LFW verification and the 1:N identification protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_detector_options, detector_config
from .output import emit_json, err, out, progress, table

EXIT_OK = 0
ORDER = 60


def register(sub) -> None:
    p = sub.add_parser("eval", help="measure accuracy: LFW verification, 1:N identification")
    evs = p.add_subparsers(dest="eval_command", metavar="PROTOCOL", required=True)

    q = evs.add_parser("lfw", help="the standard LFW View-2 10-fold verification protocol",
                       description="Embed every image of the pairs file (the face nearest the centre; a fixed "
                                   "centre crop when none is detected, counted), choose the threshold on 9 folds, "
                                   "test on the 10th; report mean ± std accuracy and VAL at FAR 0.1 %.")
    q.add_argument("--data", required=True, metavar="DIR", help="the lfw/ folder (<DIR>/<Name>/<Name>_0001.jpg)")
    q.add_argument("--pairs", metavar="FILE", help="pairs file (default: DIR/../pairs.txt)")
    q.add_argument("--embedder", default=None, metavar="NAME|PATH", help="embedder to evaluate (default sface-2021dec)")
    q.add_argument("--far", type=float, default=1e-3, help="FAR for the VAL figure (default 0.001)")
    q.add_argument("--folds", type=int, default=None, help="use only the first N folds (quick checks)")
    q.add_argument("--plot", metavar="PNG", help="write the ROC curve")
    q.add_argument("--json", action="store_true")
    add_detector_options(q)
    q.set_defaults(func=cmd_eval_lfw)

    q = evs.add_parser("identify", help="1:N closed- and open-set identification on a folder-per-person dataset",
                       description="People with >= N images are enrolled with K images each; their other images "
                                   "are genuine searches. People not enrolled are strangers (one search each). "
                                   "Reports rank-1/5 and FNIR at FPIR 1 % and 0.1 % (NIST FRVT 1:N), and checks "
                                   "that `facedex calibrate` on the gallery hits its FPIR target on real strangers.")
    q.add_argument("--data", required=True, metavar="DIR")
    q.add_argument("--min-images", type=int, default=10, metavar="N")
    q.add_argument("--gallery-per-person", type=int, default=5, metavar="K")
    q.add_argument("--strangers", type=int, default=1000, metavar="M")
    q.add_argument("--max-probes-per-person", type=int, default=None, metavar="P",
                   help="cap genuine searches per person (a few people can dominate a dataset)")
    q.add_argument("--gallery-sizes", default="", metavar="S1,S2,…",
                   help="also report FNIR at fixed FPIR as the gallery grows to these numbers of identities "
                        "(distractor people added)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--embedder", default=None, metavar="NAME|PATH")
    q.add_argument("--plot", metavar="PNG", help="write the DET curve")
    q.add_argument("--json", action="store_true")
    add_detector_options(q)
    q.set_defaults(func=cmd_eval_identify)


def _pipeline(args):
    from .. import models
    from ..pipeline import FacePipeline

    return FacePipeline(embedder=args.embedder or models.DEFAULT_EMBEDDER,
                        detector_config=detector_config(args), runtime=args.runtime)


def cmd_eval_lfw(args: argparse.Namespace) -> int:
    from ..evaluate.lfw import evaluate_lfw

    pairs = Path(args.pairs) if args.pairs else Path(args.data).parent / "pairs.txt"
    with progress(None, "embed", enabled=not args.json) as bar:
        res = evaluate_lfw(args.data, pairs, _pipeline(args), far=args.far, limit_folds=args.folds,
                           progress=bar.update, on_total=lambda n: setattr(bar, "total", n))
    if args.plot:
        from ..evaluate.plots import roc_plot

        roc_plot([(res.embedder, res.scores, res.same)], args.plot)
    if args.json:
        emit_json(res.to_dict())
        return EXIT_OK
    out(f"LFW View 2 ({res.pairs} pairs, {res.images} images, {len(res.fold_accuracies)} folds), {res.embedder}")
    out(f"  accuracy      {100 * res.accuracy_mean:.2f} ± {100 * res.accuracy_std:.2f} %")
    out(f"  VAL@FAR={100 * res.far_target:g}%  {100 * res.val_at_far:.2f} ± {100 * res.val_at_far_std:.2f} %")
    out(f"  no face detected: {res.fallbacks} image(s), scored from a centre crop")
    for f in res.fallback_images[:10]:
        out(f"    {f}")
    out(f"  {res.images / max(res.seconds, 1e-9):.1f} images/s")
    if args.plot:
        err(f"ROC curve written to {args.plot}")
    return EXIT_OK


def cmd_eval_identify(args: argparse.Namespace) -> int:
    from ..evaluate.identification import evaluate_identification

    try:
        sizes = [int(s) for s in args.gallery_sizes.split(",") if s.strip()]
    except ValueError:
        from ..errors import ConfigError

        raise ConfigError(f"--gallery-sizes must be integers separated by commas, got {args.gallery_sizes!r}") from None
    with progress(None, "embed", enabled=not args.json) as bar:
        res = evaluate_identification(
            args.data, _pipeline(args), min_images=args.min_images, gallery_per_person=args.gallery_per_person,
            strangers=args.strangers, gallery_sizes=sizes, seed=args.seed,
            max_probes_per_person=args.max_probes_per_person,
            progress=bar.update, on_total=lambda n: setattr(bar, "total", n))
    if args.plot and res.stranger_searches:
        from ..evaluate.identification import det_curve
        from ..evaluate.plots import det_plot

        _, fp, fn = det_curve(res.genuine_top, res.genuine_correct, res.stranger_top)
        marks = [{"label": f"calibrated for FPIR {k}", "fpir": v["fpir_on_real_strangers"], "fnir": v["fnir"]}
                 for k, v in res.calibration.items()]
        floor = 0.5 / max(1, min(res.stranger_searches, res.genuine_searches))
        det_plot([(f"{res.embedder}, {res.people} people", fp, fn)], args.plot, marks, floor=floor)
    if args.json:
        emit_json(res.to_dict())
        return EXIT_OK
    out(f"1:N identification, {res.embedder}")
    out(f"  gallery: {res.people} people, {res.gallery_faces} faces; {res.genuine_searches} genuine and "
        f"{res.stranger_searches} stranger searches")
    out(f"  closed set: rank-1 {100 * res.rank1:.2f} %, rank-5 {100 * res.rank5:.2f} %")
    if res.rates:
        out(table([(f"{r.fpir_target:g}", f"{r.threshold:.3f}", f"{100 * r.fpir:.2f} %", f"{100 * r.fnir:.2f} %")
                   for r in res.rates], ["FPIR target", "threshold", "FPIR", "FNIR"], "rrrr"))
    for target, c in res.calibration.items():
        out(f"  `facedex calibrate --fpir {target}` on this gallery: threshold {c['threshold']:.3f} -> "
            f"FPIR on real strangers {100 * c['fpir_on_real_strangers']:.2f} %, FNIR {100 * c['fnir']:.2f} %"
            + ("  (rough: few people)" if c["low_confidence"] else ""))
    if res.sweep:
        cols = ["identities", "faces"] + [k for k in res.sweep[0] if k.startswith("fnir_at")] + ["rank1"]
        out(table([[e.get(c, "") for c in cols] for e in res.sweep], cols, "r" * len(cols)))
    if res.skipped_gallery_images:
        out(f"  {len(res.skipped_gallery_images)} gallery image(s) had no detectable face and were not enrolled")
    if res.fallbacks:
        out(f"  {res.fallbacks} probe image(s) had no detectable face: scored from a centre crop")
    if args.plot:
        err(f"DET curve written to {args.plot}")
    return EXIT_OK
