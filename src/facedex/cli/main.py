"""``facedex`` command line: argument parsing, logging, exit codes.

Exit codes: 0 every input processed; 1 some inputs failed (the rest were
processed and reported); 2 usage errors, or an error that stopped the command
before any input (missing gallery, wrong embedder…).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import __version__
from ..errors import FacedexError
from . import gallery as gallery_cmds
from . import tools as tool_cmds
from .output import err

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def _add_detector_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("detection")
    g.add_argument("--min-face", type=float, default=20.0, metavar="PX",
                   help="ignore faces whose shorter box side is below PX pixels (default 20)")
    g.add_argument("--det-score", type=float, default=0.6, metavar="S",
                   help="minimum detector confidence, 0..1 (default 0.6)")
    g.add_argument("--max-side", type=int, default=1280, metavar="PX",
                   help="detect on images reduced to at most PX on the longer side (default 1280)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="facedex",
        description="Who is this? Identify faces in photos against a gallery you build. "
                    "Everything runs locally.",
    )
    parser.add_argument("--version", action="version", version=f"facedex {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("--runtime", choices=["onnxruntime", "opencv"], default=None,
                        help="inference runtime (default: $FACEDEX_RUNTIME or onnxruntime)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    _add_detector_options(p)
    p.set_defaults(func=gallery_cmds.cmd_enroll)

    p = sub.add_parser("identify", help="who is in these images?",
                       description="Identify every face in each INPUT against GALLERY. A face is named only when "
                                   "its similarity reaches the gallery's threshold; otherwise it is unknown.")
    p.add_argument("gallery")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="override the gallery's similarity threshold for this run")
    p.add_argument("--annotate", metavar="DIR", help="write a copy of each image with boxes and names into DIR")
    p.add_argument("--json", action="store_true", help="print one JSON array, one object per input")
    _add_detector_options(p)
    p.set_defaults(func=gallery_cmds.cmd_identify)

    p = sub.add_parser("people", help="who is enrolled, and how many faces each")
    p.add_argument("gallery")
    p.add_argument("person", nargs="?", help="list this person's enrolled faces and their sources")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=gallery_cmds.cmd_people)

    p = sub.add_parser("forget", help="erase people completely from a gallery")
    p.add_argument("gallery")
    p.add_argument("names", nargs="+", metavar="NAME")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=gallery_cmds.cmd_forget)

    p = sub.add_parser("calibrate", help="set the unknown-threshold from the gallery itself",
                       description="Search each enrolled person against the rest of the gallery and set the "
                                   "threshold so that at most FPIR of such stranger searches return a name. "
                                   "Re-run it when the gallery has grown.")
    p.add_argument("gallery")
    p.add_argument("--fpir", type=float, default=0.01, help="target false-positive identification rate (default 0.01)")
    p.add_argument("--set", type=float, metavar="T", dest="set_value", help="set the threshold by hand instead")
    p.add_argument("--show", action="store_true", help="only show the threshold in force")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=gallery_cmds.cmd_calibrate)

    p = sub.add_parser("detect", help="find faces: boxes, landmarks, scores")
    p.add_argument("inputs", nargs="+", metavar="INPUT")
    p.add_argument("--annotate", metavar="DIR", help="write a copy of each image with the faces drawn into DIR")
    p.add_argument("--json", action="store_true")
    _add_detector_options(p)
    p.set_defaults(func=tool_cmds.cmd_detect)

    p = sub.add_parser("models", help="list the model cards; --prepare converts and verifies them once")
    p.add_argument("--prepare", action="store_true", help="build and verify the prepared model files now")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=tool_cmds.cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return int(args.func(args) or EXIT_OK)
    except FacedexError as e:
        err(f"facedex {args.command}: error: {e}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        err("interrupted")
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
