"""Readable text for results (the terminal side of identify and detect).
JSON output does not go through here."""

from __future__ import annotations

import math
import sys

from ..types import ImageResult
from .output import out, plural, printable


def print_result(res: ImageResult) -> None:
    if res.error:
        out(f"{printable(res.input)}: ERROR {printable(str(res.error))}")
        return
    if not res.faces:
        out(f"{printable(res.input)}: no faces")
        return
    out(f"{printable(res.input)}: {plural(len(res.faces), 'face')}" + (f"  -> {printable(res.annotated)}" if res.annotated else ""))
    for i, f in enumerate(res.faces, 1):
        x, y, w, h = (int(round(v)) for v in f.face.box)
        where = f"at ({x},{y}) {w}x{h}"
        if f.known:
            nxt = f.candidates[1] if len(f.candidates) > 1 else None
            extra = f"  (next: {nxt.name} {nxt.similarity:.3f})" if nxt else ""
            out(f"  {i}. {f.name}  {f.similarity:.3f}  {where}{extra}")
        elif f.candidates:
            best = f.candidates[0]
            out(f"  {i}. unknown  {where}  (closest: {best.name} {best.similarity:.3f} < {f.threshold:.3f})")
        else:
            out(f"  {i}. unknown  {where}  (the gallery is empty)")


_BAR_WIDTH = 48


def _bar_chars() -> tuple[str, str]:
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        "█·".encode(enc)
        return "█", "·"
    except (UnicodeEncodeError, LookupError):
        return "#", "."


def timeline_bar(ranges, duration: float, width: int = _BAR_WIDTH) -> str:
    """One character per ``duration / width`` seconds: on screen or not."""
    on, off = _bar_chars()
    cells = [off] * width
    if duration <= 0:
        return on * width if ranges else off * width
    step = duration / width
    for a, b in ranges:
        first = min(width - 1, max(0, int(a / step)))
        last = min(width - 1, max(first, int(math.ceil(b / step)) - 1))
        for i in range(first, last + 1):
            cells[i] = on
    return "".join(cells)


def print_video_result(res) -> None:
    """A readable timeline: who is on screen when, then every track."""
    from ..video.types import format_time as ft

    if res.error:
        out(f"{printable(res.input)}: ERROR {printable(str(res.error))}")
        return
    info = res.info
    what = "animation" if info is not None and info.kind == "animation" else "video"
    size = f", {info.width}x{info.height}" if info is not None and info.width else ""
    rate = f" @ {info.fps:g} fps" if info is not None and info.fps else ""
    sampled = (f"{res.frames_sampled} analysed ({res.sample_fps:g}/s)" if res.sample_fps
               else f"{res.frames_sampled} analysed (every frame)")
    out(f"{printable(res.input)}: {what} {ft(res.duration)}{size}{rate} — {plural(res.frames_decoded, 'frame')}, {sampled}, "
        f"{plural(len(res.tracks), 'track')}")
    if not res.tracks:
        out("  no faces")
    rows = [(p.name, p.ranges, p.seconds) for p in res.people]
    rows += [(f"unknown #{t.track}", t.ranges, t.seconds) for t in res.tracks if not t.known]
    if rows:
        label_w = max(len(r[0]) for r in rows)
        for label, ranges, seconds in rows:
            spans = ", ".join(f"{ft(a)}–{ft(b)}" for a, b in ranges[:4]) + (" …" if len(ranges) > 4 else "")
            out(f"  {label.ljust(label_w)}  |{timeline_bar(ranges, res.duration)}|  {seconds:6.1f} s  {spans}")
    if res.tracks:
        out("  tracks:")
        for t in res.tracks:
            when = f"{ft(t.first_seen)}–{ft(t.last_seen)}  {plural(t.frames, 'frame')}, best at {ft(t.best_frame_time)}"
            if t.known:
                nxt = t.candidates[1] if len(t.candidates) > 1 else None
                extra = f"  (next: {nxt.name} {nxt.similarity:.3f})" if nxt else ""
                out(f"    #{t.track}  {t.name}  {t.similarity:.3f}  {when}{extra}")
            elif t.candidates:
                best = t.candidates[0]
                out(f"    #{t.track}  unknown  {when}  (closest: {best.name} {best.similarity:.3f} < {t.threshold:.3f})")
            else:
                out(f"    #{t.track}  unknown  {when}  (the gallery is empty)")
    dropped = dict(getattr(res, "dropped_tracks", ()) or ())
    if dropped:
        why = ", ".join(f"{n} {reason.replace('_', '-')}" for reason, n in sorted(dropped.items()))
        out(f"  {plural(sum(dropped.values()), 'unknown track')} not shown ({why}; see --min-track-*)")
    if res.broken_frames:
        out(f"  {plural(res.broken_frames, 'broken frame')} skipped")
    for w in res.warnings:
        out(f"  warning: {printable(w)}")
    if res.annotated:
        out(f"  annotated: {printable(res.annotated)}, tracks: {printable(res.contact_sheet or '')}")
