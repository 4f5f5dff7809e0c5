"""`facedex eval`: LFW verification and the 1:N identification protocol."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..models import DEFAULT_EMBEDDER
from .common import EXIT_OK, add_command, add_detector_options, add_json, bounded, detector_config
from .output import emit_json, err, out, progress, table

ORDER = 60


def register(sub) -> None:
    p = add_command(
        sub, "eval", help="measure accuracy: LFW verification, 1:N identification",
        description="Measure an embedder (and detector) with standard protocols: `lfw` runs LFW View-2 "
                    "verification, `identify` the 1:N open-set protocol on any folder-per-person dataset.",
        examples=["facedex eval lfw ../shared/data/lfw --plot roc.png",
                  "facedex eval identify people/ --num-strangers 500 --json"])
    evs = p.add_subparsers(dest="eval_command", metavar="PROTOCOL", required=True)

    q = add_command(
        evs, "lfw", help="the standard LFW View-2 10-fold verification protocol",
        description="Embed every image of the pairs file (the face nearest the centre; a fixed centre crop "
                    "when none is detected, counted), choose the threshold on all folds but one and test on "
                    "that one, in turn; report mean ± std accuracy and VAL at the given FAR.",
        examples=["facedex eval lfw ../shared/data/lfw",
                  "facedex eval lfw ../shared/data/lfw --folds 2 --json",
                  "facedex eval lfw lfw/ --pairs pairs.txt --embedder my-model.onnx --plot roc.png"])
    q.add_argument("lfw_dir", metavar="LFW_DIR", nargs="?",
                   help="the lfw/ folder (LFW_DIR/<Name>/<Name>_0001.jpg) or the folder holding it (default: "
                        "$FACEDEX_LFW, ../shared/data/lfw beside the repository, or the copy `facedex data "
                        "fetch lfw` made)")
    q.add_argument("--pairs", metavar="FILE", help="pairs file (default: pairs.txt beside LFW_DIR)")
    q.add_argument("--embedder", default=DEFAULT_EMBEDDER, metavar="NAME|PATH", help="embedder to evaluate")
    q.add_argument("--far", type=bounded(float, 0, 1, low_open=True), default=1e-3, metavar="RATE",
                   help="false accept rate for the VAL figure (0.001 = 0.1 %%)")
    q.add_argument("--folds", type=bounded(int, 2, 10), default=None, metavar="N",
                   help="use only the first N folds, 2 to 10, for quick checks (default: every fold)")
    q.add_argument("--plot", metavar="FILE", help="write the ROC curve (.png, .pdf or .svg)")
    add_json(q, "the accuracies per fold and the summary")
    add_detector_options(q)
    q.set_defaults(func=cmd_eval_lfw)

    q = add_command(
        evs, "identify", help="1:N closed- and open-set identification on a folder-per-person dataset",
        description="People with at least --min-images images are enrolled with --gallery-per-person images "
                    "each; their other images are genuine searches. People not enrolled are strangers (one "
                    "search each). Reports rank-1/5 and FNIR at FPIR 1 % and 0.1 % (NIST FRVT 1:N), and "
                    "checks that `facedex calibrate` on the gallery hits its FPIR target on real strangers.",
        examples=["facedex eval identify ../shared/data/lfw",
                  "facedex eval identify people/ --min-images 6 --gallery-per-person 3 --num-strangers 200",
                  "facedex eval identify ../shared/data/lfw --gallery-sizes 158,1000,4000 --plot det.png"])
    q.add_argument("data", metavar="DATA", help="folder per person: DATA/<Person>/<images>")
    q.add_argument("--min-images", type=bounded(int, 2), default=10, metavar="N",
                   help="people with at least N images are enrolled")
    q.add_argument("--gallery-per-person", type=bounded(int, 1), default=5, metavar="K",
                   help="images enrolled per person (fewer than --min-images); the rest are searches")
    q.add_argument("--num-strangers", type=bounded(int, 0), default=1000, metavar="M",
                   help="number of people with too few images to enrol who are searched for as strangers")
    q.add_argument("--max-probes-per-person", type=bounded(int, 1), default=None, metavar="P",
                   help="cap genuine searches per person (a few people can dominate a dataset)")
    q.add_argument("--gallery-sizes", type=_sizes, default=[], metavar="S1,S2,…",
                   help="also report FNIR at fixed FPIR as the gallery grows to these numbers of identities "
                        "(distractor people added)")
    q.add_argument("--seed", type=bounded(int, 0), default=0, metavar="N", help="seed of the split")
    q.add_argument("--embedder", default=DEFAULT_EMBEDDER, metavar="NAME|PATH", help="embedder to evaluate")
    q.add_argument("--plot", metavar="FILE", help="write the DET curve (.png, .pdf or .svg)")
    add_json(q, "the rates, the calibration check and the sweep")
    add_detector_options(q)
    q.set_defaults(func=cmd_eval_identify)


def _sizes(text: str) -> list[int]:
    """A comma-separated list of gallery sizes (numbers of identities >= 1)."""
    parse = bounded(int, 1)
    return [parse(s.strip()) for s in text.split(",") if s.strip()]


def _pipeline(args):
    from ..pipeline import FacePipeline

    return FacePipeline(embedder=args.embedder, detector_config=detector_config(args), runtime=args.runtime)


def _need_folder(path: Path, what: str) -> None:
    if not path.is_dir():
        from ..errors import DatasetError

        raise DatasetError(f"{path}: no such folder; give {what}")


def cmd_eval_lfw(args: argparse.Namespace) -> int:
    from ..datasets import find_lfw, lfw_pairs
    from ..errors import PairsError
    from ..evaluate.lfw import check_options, evaluate_lfw

    # every option is checked before the models load and the images are read
    check_options(far=args.far, limit_folds=args.folds)
    # LFW_DIR, else $FACEDEX_LFW, ../shared/data/lfw or the data cache; errors name where it looked
    lfw_dir = find_lfw(args.lfw_dir)
    if args.pairs:
        pairs = Path(args.pairs)
        if not pairs.is_file():
            raise PairsError(f"{pairs}: no such file; give the LFW pairs file with --pairs")
    else:
        pairs = lfw_pairs(lfw_dir)
    if args.plot:
        from ..evaluate.plots import check_plot_path

        check_plot_path(args.plot)
    with progress(None, "embed", enabled=not args.json) as bar:
        res = evaluate_lfw(lfw_dir, pairs, _pipeline(args), far=args.far, limit_folds=args.folds,
                           progress=bar.update, on_total=lambda n: setattr(bar, "total", n))
    if args.plot:
        from ..evaluate.plots import roc_plot

        roc_plot([(res.embedder, res.scores, res.same)], args.plot,
                 title=f"LFW verification (View 2, {res.pairs:,} pairs in {res.folds} folds)")
    if args.json:
        emit_json({"schema": "facedex.eval-lfw/1", **res.to_dict()})
        return EXIT_OK
    out(f"LFW View 2 ({res.pairs} pairs, {res.images} images, {res.folds} folds), {res.embedder}")
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
    from ..evaluate.identification import check_options, evaluate_identification

    options = dict(min_images=args.min_images, gallery_per_person=args.gallery_per_person,
                   num_strangers=args.num_strangers, gallery_sizes=args.gallery_sizes,
                   max_probes_per_person=args.max_probes_per_person)
    check_options(**options)  # before the models load and the images are read
    _need_folder(Path(args.data), "a folder per person (DATA/<Person>/<images>)")
    if args.plot:
        from ..evaluate.plots import check_plot_path

        check_plot_path(args.plot)
    with progress(None, "embed", enabled=not args.json) as bar:
        res = evaluate_identification(args.data, _pipeline(args), seed=args.seed, progress=bar.update,
                                      on_total=lambda n: setattr(bar, "total", n), **options)
    if args.plot and res.stranger_searches:
        from ..evaluate.identification import det_curve
        from ..evaluate.plots import det_plot

        _, fp, fn = det_curve(res.genuine_top, res.genuine_correct, res.stranger_top)
        marks = [{"label": f"calibrated for FPIR {k}", "fpir": v["fpir_on_real_strangers"], "fnir": v["fnir"]}
                 for k, v in res.calibration.items()]
        floor = 0.5 / max(1, min(res.stranger_searches, res.genuine_searches))
        det_plot([(f"{res.embedder}, {res.people} people", fp, fn)], args.plot, marks, floor=floor)
    elif args.plot:
        err("no DET curve: there were no stranger searches (--num-strangers 0, or no person with too few "
            "images to enrol)")
    if args.json:
        emit_json({"schema": "facedex.eval-identify/1", **res.to_dict()})
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
    if args.plot and res.stranger_searches:
        err(f"DET curve written to {args.plot}")
    return EXIT_OK
