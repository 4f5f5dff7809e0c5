"""What every command module shares: the exit-code table, the global options
(accepted before or after the command), the parser factory with examples and
defaults in ``--help``, the detection options and validated argument types.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from typing import Callable, Sequence

from .. import models
from ..faces.detect import DetectorConfig

# --- the one exit-code table ------------------------------------------------------------
#: Every input was processed (some may have no face: that is an answer, not a failure).
EXIT_OK = 0
#: Some inputs failed; the others were processed and reported.
EXIT_PARTIAL = 1
#: A usage error, or an error that stopped the command before any input was processed.
EXIT_USAGE = 2
#: Interrupted (Ctrl-C / SIGINT); what finished was reported and kept.
EXIT_INTERRUPTED = 130

EXIT_CODES = {
    EXIT_OK: "every input was processed",
    EXIT_PARTIAL: "some inputs failed; the others were processed and reported",
    EXIT_USAGE: "usage error, or an error that stopped the command before any input (no such gallery…)",
    EXIT_INTERRUPTED: "interrupted; what had finished was reported (valid JSON with --json) and kept",
}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' layout and shows each option's default, except for
    flags and options whose default is "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or "(default" in text or action.default in (None, False, argparse.SUPPRESS, []):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def _global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # On the top-level parser they have real defaults; on each command they use
    # SUPPRESS so that a value given before the command is not overwritten.
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    parser.add_argument("-v", "--verbose", action="count", default=d(0),
                        help="more log output on stderr (-vv for debug)")
    parser.add_argument("--runtime", choices=models.runtime_names(), default=d(None),
                        help="inference runtime for the models; auto: the one measured fastest for each model on "
                             "this machine (see `facedex models`), in float32 unless FACEDEX_PRECISION=bf16 "
                             "(default: $FACEDEX_RUNTIME or auto)")


def add_global_options(parser: argparse.ArgumentParser) -> None:
    _global_options(parser, top=True)


def add_command(sub, name: str, *, help: str, description: str | None = None,
                examples: Sequence[str] = (), globals_: bool = True) -> argparse.ArgumentParser:
    """A sub-command parser with the global options, a description, examples
    (shown under ``--help``) and defaults in the help text."""
    epilog = None
    if examples:
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples)
    parser = sub.add_parser(name, help=help, description=textwrap.fill(description or help[:1].upper() + help[1:] + ".", 100),
                            epilog=epilog, formatter_class=HelpFormatter)
    if globals_:
        _global_options(parser, top=False)
    return parser


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as JSON on stdout (schema in docs/schemas/); errors as "
                             '{"error": {"code", "message"}}')


def add_gallery(parser: argparse.ArgumentParser, *, create: bool = False) -> None:
    parser.add_argument("gallery", metavar="GALLERY",
                        help="the gallery file (one SQLite file; created by enroll)" if create
                        else "the gallery file, as made by `facedex enroll`")


# --- argument types ------------------------------------------------------------------------
def similarity(text: str) -> float:
    """A cosine-similarity threshold: a finite number in [-1, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a cosine similarity; give a number in [-1, 1]")
    return value


def bounded(kind: type, low: float | None = None, high: float | None = None, *,
            low_open: bool = False, what: str = "") -> Callable[[str], float | int]:
    """An argparse type for a finite number within bounds."""

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text} is not a finite number")
        if low is not None and (value <= low if low_open else value < low):
            raise argparse.ArgumentTypeError(f"{text}: must be {'>' if low_open else '>='} {low:g}{what}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{text}: must be <= {high:g}{what}")
        return value

    return parse


def add_detector_options(p: argparse.ArgumentParser, *, min_face: float = 20.0) -> None:
    g = p.add_argument_group("detection")
    g.add_argument("--min-face", type=bounded(float, 0), default=min_face, metavar="PX",
                   help="faces whose shorter box side is below PX pixels are ignored")
    g.add_argument("--min-score", type=bounded(float, 0, 1, low_open=True), default=0.6, metavar="S",
                   help="minimum detection score (the detector's confidence, 0..1)")
    g.add_argument("--max-side", type=bounded(int, 64), default=1280, metavar="PX",
                   help="detect on images reduced to at most PX pixels on the longer side")


def detector_config(args: argparse.Namespace) -> DetectorConfig:
    return DetectorConfig(min_score=args.min_score, min_face=args.min_face, max_side=args.max_side)


# --- stopping on Ctrl-C (added for train and clean; see issue #11) ----------------------------
import contextlib  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from typing import Iterator  # noqa: E402


@contextlib.contextmanager
def stop_on_interrupt(notice: str, on_first: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """An event that the first Ctrl-C (or SIGTERM) sets: the library stops after the
    item in hand and reports what finished (the command then exits with
    :data:`EXIT_INTERRUPTED`). ``notice`` is printed on stderr then; a second
    Ctrl-C raises :class:`KeyboardInterrupt` at once. Outside the main thread no
    handler is installed and the event is never set by a signal."""
    stop = threading.Event()

    def handler(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if on_first is not None:
            on_first()
        print(notice, file=sys.stderr, flush=True)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
