"""Terminal output: JSON, tables, progress bars. The only place that prints."""

from __future__ import annotations

import json
import sys
from typing import Any, Iterable, Sequence

from tqdm import tqdm


def emit_json(data: Any) -> None:
    json.dump(data, sys.stdout, ensure_ascii=False, indent=2, allow_nan=False, default=_default)
    sys.stdout.write("\n")
    sys.stdout.flush()


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__}")


_CONTROL = {c: f"\\x{c:02x}" for c in list(range(0x20)) + [0x7F] + list(range(0x80, 0xA0))}
_CONTROL.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def printable(text: str) -> str:
    """``text`` safe for a terminal: control characters (newlines, ESC…) are
    shown escaped, undecodable bytes of file names (surrogate escapes) as
    ``\\xNN``; nothing else changes."""
    text = text.translate(_CONTROL)
    if any(0xDC80 <= ord(c) <= 0xDCFF for c in text):
        text = "".join(f"\\x{ord(c) - 0xDC00:02x}" if 0xDC80 <= ord(c) <= 0xDCFF else c for c in text)
    return text


def use_safe_streams() -> None:
    """Never crash on output: characters the terminal's encoding cannot show are
    escaped (``\\uXXXX``) instead of raising UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass


def out(line: str = "") -> None:
    print(line, flush=True)


def err(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def table(rows: Sequence[Sequence[Any]], header: Sequence[str], align: str | None = None) -> str:
    """A plain aligned table; ``align`` has one of ``l``/``r`` per column."""
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    align = align or "l" * len(header)

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(r, widths, align)).rstrip()

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)]
    lines += [fmt(r) for r in cells[1:]]
    return "\n".join(lines)


def progress(total: int | None, desc: str, enabled: bool = True, unit: str = "img") -> tqdm:
    """A progress bar on stderr, shown only on a terminal; ``unit="B"`` counts bytes (KiB, MiB…)."""
    scale = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False,
                disable=(not enabled) or None, dynamic_ncols=True, **scale)


_IRREGULAR = {"person": "people"}


def plural(n: int, word: str) -> str:
    return f"{n} {word if n == 1 else _IRREGULAR.get(word, word + 's')}"


def summarize_reasons(reasons: Iterable[str], limit: int = 20) -> list[str]:
    items = list(reasons)
    shown = items[:limit]
    if len(items) > limit:
        shown.append(f"… and {len(items) - limit} more (use --json for all)")
    return shown
