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
from .output import err

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


def _command_modules() -> list:
    """Every ``facedex.cli`` module with a ``register(subparsers)`` function, in
    their ``ORDER``. Command modules import their heavy dependencies lazily."""
    import importlib
    import pkgutil

    from .. import cli

    found = []
    for info in pkgutil.iter_modules(cli.__path__):
        if info.name in ("main", "output", "common"):
            continue
        module = importlib.import_module(f"{cli.__name__}.{info.name}")
        if hasattr(module, "register"):
            found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


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
    for module in _command_modules():
        module.register(sub)
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
