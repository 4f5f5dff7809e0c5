"""Commands that need no gallery: detect, models."""

from __future__ import annotations

import argparse

from .. import config, models
from ..errors import FacedexError
from ..types import ErrorInfo
from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    add_command,
    add_detector_options,
    add_json,
    detector_config,
)
from .output import emit_json, err, out, plural, printable, progress, summarize_reasons, table

ORDER = 90


def register(sub) -> None:
    p = add_command(sub, "detect", help="find faces: boxes, landmarks, detection scores",
                    description="Detect the faces in each photo (no gallery needed): a box, five landmarks and a "
                                "detection score per face. Folders are searched for images by content.",
                    examples=["facedex detect photo.jpg", "facedex detect photos/ --annotate out/ --json"])
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="images, folders of images, or - for standard input")
    p.add_argument("--annotate", metavar="DIR",
                   help="write a copy of each image with the faces drawn into DIR (an existing file is never replaced)")
    add_json(p, "one object with a result per image")
    add_detector_options(p)
    p.set_defaults(func=cmd_detect)

    p = add_command(sub, "models", help="list the model cards; --prepare converts and verifies them once",
                    description="List the registered models (name, task, embedding size, pinned sha256, licence) "
                                "and the inference runtime `auto` chose for each on this machine. --prepare "
                                "converts each to the form facedex runs and verifies it, and measures the "
                                "runtimes for `auto` again, ahead of time.",
                    examples=["facedex models", "facedex models --prepare", "FACEDEX_PRECISION=bf16 facedex models"])
    p.add_argument("--prepare", action="store_true",
                   help="build and verify the prepared model files and measure the runtimes for `auto` now")
    add_json(p, "the model cards")
    p.set_defaults(func=cmd_models)


def cmd_detect(args: argparse.Namespace) -> int:
    from ..faces.detect import YuNetDetector
    from ..files import OutputDir
    from ..media import expand_inputs, open_media
    from ..render.image import image_suffix, write_annotated_image

    inputs, skipped = expand_inputs(args.inputs, videos=False)
    annotate = OutputDir(args.annotate, [i.path for i in inputs if i.path]) if args.annotate else None
    detector = YuNetDetector(models.DEFAULT_DETECTOR, detector_config(args), args.runtime)
    results, failed, interrupted = [], 0, False
    with progress(len(inputs), "detect", enabled=not args.json and len(inputs) > 1) as bar:
        try:
            for inp in inputs:
                bar.update(1)
                entry = {"input": inp.name, "kind": "image", "error": None, "faces": [], "annotated": None}
                try:
                    photo = open_media(inp, videos=False)
                    faces = detector.detect(photo.rgb)
                    entry["faces"] = [f.to_dict() for f in faces]
                    if annotate is not None:
                        target = annotate.target(inp.name, image_suffix(inp.name))
                        entry["annotated"] = str(write_annotated_image(photo.rgb, faces, target))
                except (FacedexError, OSError) as e:
                    failed += 1
                    entry["error"] = ErrorInfo.of(e).to_dict() if isinstance(e, FacedexError) else {
                        "code": "output.error", "message": f"{inp.name}: {e}"}
                results.append(entry)
                if not args.json:
                    bar.clear()
                    name = printable(inp.name)
                    if entry["error"]:
                        out(f"{name}: ERROR {printable(entry['error']['message'])}")
                    else:
                        out(f"{name}: {plural(len(entry['faces']), 'face')}")
                        for i, f in enumerate(entry["faces"], 1):
                            x, y, w, h = (int(round(v)) for v in f["box"])
                            out(f"  {i}. at ({x},{y}) {w}x{h}  score {f['detection_score']:.3f}")
        except KeyboardInterrupt:
            interrupted = True
    if args.json:
        emit_json({"schema": "facedex.detect/1", "interrupted": interrupted, "results": results,
                   "skipped": [s.to_dict() for s in skipped],
                   "summary": {"inputs": len(inputs), "processed": len(results), "failed": failed,
                               "faces": sum(len(r["faces"]) for r in results)}})
    elif skipped:
        out(f"skipped {plural(len(skipped), 'file')} in the folders given (not images):")
        for line in summarize_reasons([f"{printable(s.path)}: {s.reason}" for s in skipped], limit=10):
            out(f"  {line}")
    if interrupted:
        err(f"interrupted after {len(results)} of {len(inputs)} inputs")
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    cards = models.list_cards()
    prepared = {}
    if args.prepare:
        for c in cards:
            path = models.prepared_path(c)
            prepared[c.name] = str(path)
            if c.backend == "onnx":
                models.choose_runtime(c, path, remeasure=True)
    requested = args.runtime or config.runtime_name()
    runtimes = {c.name: _runtime_of(c, requested) for c in cards}
    if args.json:
        emit_json({"schema": "facedex.models/1",
                   "models": [dict(c.to_dict(), prepared=prepared.get(c.name), runtime=runtimes[c.name])
                              for c in cards]})
        return EXIT_OK
    rows = [(c.name, c.task, c.embedding_dim or "", c.sha256[:16], runtimes[c.name]["summary"], c.license)
            for c in cards]
    out(table(rows, ["name", "task", "dim", "sha256", "runtime", "licence"]))
    for name, path in prepared.items():
        out(f"{name}: prepared and verified at {path}")
    for c in cards:
        rec = runtimes[c.name].get("measured")
        if rec:
            speeds = ", ".join(f"{n} {'/'.join(f'{v:g}' for v in vs)}" for n, vs in rec["items_per_s"].items())
            out(f"{c.name}: auto measured {rec['measured_at']} (load {rec.get('load_average')}), items/s on "
                f"{' and '.join('x'.join(map(str, s)) for s in rec['probes'])}: {speeds}")
    return EXIT_OK


def _runtime_of(card: models.ModelCard, requested: str) -> dict:
    """What runs ``card`` under ``requested`` (``auto``: the cached measured choice)."""
    if card.backend != "onnx":
        return {"requested": requested, "runtime": card.backend, "summary": card.backend}
    if requested != models.AUTO:
        return {"requested": requested, "runtime": requested, "summary": requested}
    rec = models.runtime_choice(card)
    if rec is None:
        return {"requested": requested, "runtime": None,
                "summary": "auto: not measured yet (measured on first use, or `facedex models --prepare`)"}
    return {"requested": requested, "runtime": rec["choice"], "summary": f"{rec['choice']} (auto)", "measured": rec}


__all__ = ["cmd_detect", "cmd_models"]
