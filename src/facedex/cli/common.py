"""Options and helpers shared by several command modules."""

from __future__ import annotations

import argparse

from ..faces.detect import DetectorConfig


def add_detector_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detection")
    g.add_argument("--min-face", type=float, default=20.0, metavar="PX",
                   help="ignore faces whose shorter box side is below PX pixels (default 20)")
    g.add_argument("--det-score", type=float, default=0.6, metavar="S",
                   help="minimum detector confidence, 0..1 (default 0.6)")
    g.add_argument("--max-side", type=int, default=1280, metavar="PX",
                   help="detect on images reduced to at most PX on the longer side (default 1280)")


def detector_config(args: argparse.Namespace) -> DetectorConfig:
    return DetectorConfig(score_threshold=args.det_score, min_face=args.min_face, max_side=args.max_side)
