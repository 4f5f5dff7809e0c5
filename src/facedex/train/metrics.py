"""Per-epoch metrics: ``OUT/metrics.csv``, ``OUT/metrics.json`` and ``OUT/curves.png``.

Row ``epoch = 0`` holds the validation before the first step (the starting
point); later rows the training loss, accuracy, speed and validation of each
epoch. The PNG needs matplotlib (``pip install 'facedex[plot]'``); without it
the curves are skipped with a log message.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
from pathlib import Path
from typing import Any

from ..files import atomic_write_bytes

log = logging.getLogger(__name__)

COLUMNS = ["epoch", "step", "lr", "train_loss", "train_acc", "loss_softmax", "loss_center", "loss_margin",
           "grad_norm", "skipped_steps", "images_per_s", "epoch_seconds", "val_rank1", "val_fnir_at_fpir_0.01",
           "val_threshold_at_fpir_0.01", "val_fnir_at_fpir_0.001", "lfw_accuracy", "lfw_std", "lfw_pairs", "validation_seconds"]


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def write_metrics(out: Path, history: list[dict[str, Any]], run: dict[str, Any]) -> None:
    cols = COLUMNS + sorted({k for h in history for k in h if k not in COLUMNS and not isinstance(h[k], (dict, list))})
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for h in history:
        w.writerow(["" if h.get(c) is None else (round(h[c], 6) if isinstance(h[c], float) else h[c]) for c in cols])
    atomic_write_bytes(out / "metrics.csv", buf.getvalue().encode())
    doc = {"run": run, "epochs": [{k: _clean(v) for k, v in h.items()} for h in history]}
    atomic_write_bytes(out / "metrics.json", json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False).encode())


def plot_curves(out: Path, history: list[dict[str, Any]], title: str = "") -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.info("matplotlib is not installed; no curves.png (pip install 'facedex[plot]')")
        return None
    trained = [h for h in history if h.get("train_loss") is not None]
    panels = [("train_loss", "training loss", False), ("val_rank1", "held-out rank-1", True),
              ("val_fnir_at_fpir_0.01", "held-out FNIR @ FPIR 1 %", True), ("lfw_accuracy", "LFW (untrained pairs)", True)]
    panels = [p for p in panels if any(h.get(p[0]) is not None for h in history)]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, label, pct) in zip(axes[0], panels):
        rows = trained if key == "train_loss" else history
        xs = [h["epoch"] for h in rows if h.get(key) is not None]
        ys = [h[key] * (100 if pct else 1) for h in rows if h.get(key) is not None]
        ax.plot(xs, ys, marker="o")
        ax.set_title(label + (" (%)" if pct else ""), fontsize=10)
        ax.set_xlabel("epoch (0: before training)" if key != "train_loss" else "epoch")
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    path = out / "curves.png"
    atomic_write_bytes(path, buf.getvalue())
    return path
