"""Shared helpers for the benchmarks: data locations, machine facts, result files."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"


def lfw_dir() -> Path:
    """The LFW images: $FACEDEX_LFW, ../shared/data/lfw, then the data cache;
    when there is none, stop with the command that fetches it."""
    from facedex.datasets import DatasetNotFoundError, find_lfw

    try:
        return find_lfw()
    except DatasetNotFoundError as e:
        raise SystemExit(str(e)) from None


def __getattr__(name: str):
    # `from common import LFW, PAIRS` looks LFW up only in the benchmarks that use it.
    if name == "LFW":
        return lfw_dir()
    if name == "PAIRS":
        return Path(os.environ.get("FACEDEX_LFW_PAIRS", lfw_dir().parent / "pairs.txt"))
    raise AttributeError(name)


def machine() -> dict:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M")}


def lfw_sample(n: int, seed: int = 0) -> list[Path]:
    """n LFW images spread over the whole set (every k-th file, sorted)."""
    lfw = lfw_dir()
    files = sorted(lfw.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no LFW images under {lfw}; set FACEDEX_LFW")
    step = max(1, len(files) // n)
    return files[::step][:n]


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **data}, indent=2, ensure_ascii=False))
    tmp.replace(out)
    return out
