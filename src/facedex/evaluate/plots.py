"""Plots for the evaluation commands, as PNG, PDF or SVG (matplotlib, optional extra ``facedex[plot]``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConfigError, MissingDependencyError
from ..files import atomic_path


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "plot", "writing a plot") from None
    return plt


#: File types the plots are written as, by suffix.
FORMATS = {".png": "png", ".pdf": "pdf", ".svg": "svg"}


def check_plot_path(path: str | Path) -> Path:
    """Check, before any work, that a plot can be written to ``path``: matplotlib is
    installed, the suffix names a known format, and the folder can be created."""
    out = Path(path)
    if out.suffix.lower() not in FORMATS:
        raise ConfigError(f"{out}: a plot is written as {', '.join(FORMATS)}; give a file name with one of "
                          "these suffixes")
    _pyplot()
    if out.is_dir():
        raise ConfigError(f"{out}: is a folder; give a file name for the plot")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{out}: cannot create its folder ({err.strerror or err})") from None
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"{out}: its folder {out.parent} is not writable")
    return out


def _save(fig, path: str | Path) -> Path:
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, dpi=120, bbox_inches="tight", format=FORMATS.get(out.suffix.lower(), "png"))
    return out


def roc_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path,
             title: str | None = None) -> Path:
    """ROC: true accept rate against false accept rate (log scale), one curve per
    ``(label, scores, same)``; the default title gives the number of pairs."""
    plt = _pyplot()
    if title is None:
        counts = sorted({len(scores) for _, scores, _ in curves})
        title = f"LFW verification (View 2, {'/'.join(f'{n:,}' for n in counts)} pairs)"
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, scores, same in curves:
        scores, same = np.asarray(scores), np.asarray(same, bool)
        order = np.argsort(-scores)
        tp = np.cumsum(same[order]) / max(1, same.sum())
        fp = np.cumsum(~same[order]) / max(1, (~same).sum())
        ax.plot(np.maximum(fp, 1e-4), tp, label=label)
    ax.set_xscale("log")
    ax.set_xlim(1e-4, 1)
    ax.set_ylim(0.8, 1.001)
    ax.set_xlabel("false accept rate (mismatched pairs accepted)")
    ax.set_ylabel("true accept rate")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    out = _save(fig, path)
    plt.close(fig)
    return out


def det_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: str | Path,
             marks: Sequence[dict[str, Any]] = (), title: str = "1:N open-set identification",
             floor: float = 1e-3) -> Path:
    """DET: FNIR against FPIR (log scales), one curve per ``(label, fpir, fnir)``;
    ``marks`` are points to label (e.g. the calibrated thresholds). Rates below
    ``floor`` (the resolution of the experiment) are drawn on the axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for label, fpir, fnir in curves:
        ax.step(np.maximum(fpir, floor), np.maximum(fnir, floor), where="post", label=label)
    for m in marks:
        ax.plot([max(m["fpir"], floor)], [max(m["fnir"], floor)], "o", label=m["label"])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(floor * 0.8, 1)
    ax.set_ylim(floor * 0.8, 1)
    ax.set_xlabel("FPIR (stranger searches that return a name)")
    ax.set_ylabel("FNIR (enrolled searches not named correctly)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    out = _save(fig, path)
    plt.close(fig)
    return out
