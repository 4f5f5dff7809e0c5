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
LFW = Path(os.environ.get("FACEDEX_LFW", REPO.parent / "shared" / "data" / "lfw"))
PAIRS = Path(os.environ.get("FACEDEX_LFW_PAIRS", LFW.parent / "pairs.txt"))


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
    files = sorted(LFW.glob("*/*.jpg"))
    if not files:
        raise SystemExit(f"no LFW images under {LFW}; set FACEDEX_LFW")
    step = max(1, len(files) // n)
    return files[::step][:n]


def save(name: str, data: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{name}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machine": machine(), **data}, indent=2, ensure_ascii=False))
    tmp.replace(out)
    return out
