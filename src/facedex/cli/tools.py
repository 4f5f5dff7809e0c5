"""Commands that need no gallery: detect, models."""

from __future__ import annotations

import argparse

from .. import models
from ..errors import FacedexError
from ..faces.detect import YuNetDetector
from ..media import load_image
from .common import add_detector_options, detector_config
from .gallery import Annotator, expand_inputs
from .output import emit_json, out, plural, progress, table

EXIT_OK, EXIT_PARTIAL = 0, 1
ORDER = 90


def register(sub) -> None:
    p = sub.add_parser("detect", help="find faces: boxes, landmarks, scores")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--annotate", metavar="DIR", help="write a copy of each image with the faces drawn into DIR")
    p.add_argument("--json", action="store_true")
    add_detector_options(p)
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("models", help="list the model cards; --prepare converts and verifies them once")
    p.add_argument("--prepare", action="store_true", help="build and verify the prepared model files now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)


def cmd_detect(args: argparse.Namespace) -> int:
    detector = YuNetDetector(models.DEFAULT_DETECTOR, detector_config(args), args.runtime)
    annotator = Annotator(args.annotate)
    inputs = expand_inputs(args.inputs)
    results, failed = [], 0
    with progress(len(inputs), "detect", enabled=not args.json and len(inputs) > 1) as bar:
        for item in inputs:
            bar.update(1)
            try:
                rgb = load_image(item)
                faces = detector.detect(rgb)
                if annotator.dir is not None:
                    annotator.write(item, faces)
                entry = {"input": item, "error": None, "faces": [f.to_dict() for f in faces]}
            except (FacedexError, OSError) as e:
                failed += 1
                entry = {"input": item, "error": str(e), "faces": []}
            results.append(entry)
            if not args.json:
                bar.clear()
                if entry["error"]:
                    out(f"{item}: ERROR {entry['error']}")
                else:
                    out(f"{item}: {plural(len(entry['faces']), 'face')}")
                    for i, f in enumerate(entry["faces"], 1):
                        x, y, w, h = (int(round(v)) for v in f["box"])
                        out(f"  {i}. at ({x},{y}) {w}x{h}  score {f['detection_score']:.3f}")
    if args.json:
        emit_json(results)
    return EXIT_PARTIAL if failed else EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    cards = models.list_cards()
    prepared = {}
    if args.prepare:
        for c in cards:
            prepared[c.name] = str(models.prepared_path(c))
    if args.json:
        emit_json([dict(c.to_dict(), prepared=prepared.get(c.name)) for c in cards])
        return EXIT_OK
    rows = [(c.name, c.task, c.embedding_dim or "", c.sha256[:16], c.license) for c in cards]
    out(table(rows, ["name", "task", "dim", "sha256", "licence"]))
    for name, path in prepared.items():
        out(f"{name}: prepared and verified at {path}")
    return EXIT_OK


__all__ = ["cmd_detect", "cmd_models"]
