"""``facedex`` command line: argument parsing, logging, exit codes.

Every command module in this package parses its arguments, calls the library
and prints; the work itself is in the library (``facedex.identify.run``,
``facedex.identify.enroll``…), which the HTTP service calls too. Exit codes
are the table in :mod:`facedex.cli.common`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from .. import __version__
from ..errors import FacedexError
from .common import EXIT_CODES, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, HelpFormatter, add_global_options
from .output import emit_json, err, use_safe_streams

_SKIP = ("main", "output", "common")


def _command_modules() -> list:
    """Every ``facedex.cli`` module with a ``register(subparsers)`` function, in
    their ``ORDER``. Command modules import their heavy dependencies lazily."""
    import importlib
    import pkgutil

    from .. import cli

    found = []
    for info in pkgutil.iter_modules(cli.__path__):
        if info.name in _SKIP:
            continue
        module = importlib.import_module(f"{cli.__name__}.{info.name}")
        if hasattr(module, "register"):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    codes = "\n".join(f"  {code:<4} {text}" for code, text in EXIT_CODES.items())
    parser = argparse.ArgumentParser(
        prog="facedex",
        description="Who is this? Identify the faces in photos, GIFs and videos against a gallery of people "
                    "you build from your own images. Everything runs locally; 'unknown' is an answer.",
        epilog="typical use:\n"
               "  facedex enroll my.gallery people/          # people/<Name>/*.jpg\n"
               "  facedex calibrate my.gallery               # set the unknown-threshold from the gallery\n"
               "  facedex identify my.gallery photo.jpg clip.mp4 --annotate out/\n"
               "  facedex verify a.jpg b.jpg                 # same person?\n\n"
               f"exit codes:\n{codes}\n\n"
               "Global options (-v, --runtime) may come before or after the command. "
               "`facedex COMMAND --help` shows examples for each command.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"facedex {__version__}")
    add_global_options(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    use_safe_streams()
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    as_json = bool(getattr(args, "json", False))
    try:
        return int(args.func(args) or EXIT_OK)
    except FacedexError as e:
        err(f"facedex {args.command}: error: {e}")
        if as_json:
            emit_json({"schema": "facedex.error/1", "error": e.to_dict()})
        return EXIT_USAGE
    except KeyboardInterrupt:
        # Commands that report partial results catch this themselves; here
        # nothing had been reported yet.
        err(f"facedex {args.command}: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
