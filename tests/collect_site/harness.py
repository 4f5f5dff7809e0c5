"""Helpers for the collect tests: fast options, the loopback guard, reading DST."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib.util
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Iterator

from facedex.collect import CollectOptions

LOOPBACK_DIR = Path(__file__).resolve().parent / "loopback"
STATE = ".facedex-collect"

#: No rate limit, quick retries, short timeouts: the traps resolve in milliseconds.
FAST = dict(rate=0.0, backoff=0.01, max_backoff=0.05, retries=1, timeout=2.0, total_timeout=10.0,
            max_retry_after=5.0)

_guard = None


def guard():
    """The loopback guard module (tests/collect_site/loopback/sitecustomize.py), loaded once."""
    global _guard
    if _guard is None:
        spec = importlib.util.spec_from_file_location("facedex_test_loopback_guard",
                                                      LOOPBACK_DIR / "sitecustomize.py")
        module = importlib.util.module_from_spec(spec)
        assert spec.loader is not None
        spec.loader.exec_module(module)
        _guard = module
    return _guard


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """Refuse (and fail the test on) any connection outside 127.0.0.0/8 and ::1."""
    g = guard()
    g.VIOLATIONS.clear()
    g.install()
    try:
        yield
    finally:
        g.uninstall()
    assert not g.VIOLATIONS, g.VIOLATIONS


def fast_options(**changes) -> CollectOptions:
    return CollectOptions(**{**FAST, **changes})


def write_list(path: Path, rows: list[tuple], header: bool = True) -> Path:
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                obj = {"person": row[0], "url": row[1]}
                if len(row) > 2 and row[2]:
                    obj["source"] = row[2]
                f.write(json.dumps(obj, ensure_ascii=False) + "\n")
        return path
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(["person", "url", "source"])
        for row in rows:
            w.writerow(list(row) + [""] * (3 - len(row)))
    return path


def db(dst: Path) -> sqlite3.Connection:
    con = sqlite3.connect(dst / STATE / "state.sqlite", timeout=10)
    con.row_factory = sqlite3.Row
    return con


def image_row(dst: Path, url: str) -> dict:
    with contextlib.closing(db(dst)) as con:
        row = con.execute("SELECT * FROM images WHERE url=?", (url,)).fetchone()
    assert row is not None, f"{url} not in the state database"
    return dict(row)


def page_row(dst: Path, url: str) -> dict:
    with contextlib.closing(db(dst)) as con:
        row = con.execute("SELECT * FROM pages WHERE url=?", (url,)).fetchone()
    assert row is not None, f"{url} not in the state database"
    return dict(row)


def person_files(dst: Path) -> dict[str, list[str]]:
    """``{folder: sorted file names}`` of the person folders in DST."""
    out = {}
    for d in sorted(dst.iterdir()):
        if d.is_dir() and d.name != STATE:
            out[d.name] = sorted(f.name for f in d.iterdir())
    return out


def assert_complete_images(dst: Path) -> int:
    """Every file in a person folder is a whole image whose name is its sha256 prefix."""
    from facedex.media import decode_image

    n = 0
    for folder, names in person_files(dst).items():
        for name in names:
            data = (dst / folder / name).read_bytes()
            stem = name.split(".")[0]
            assert hashlib.sha256(data).hexdigest().startswith(stem), f"{folder}/{name}: content does not match"
            decode_image(data, item=f"{folder}/{name}")
            n += 1
    return n


def manifest(dst: Path) -> list[dict]:
    return [json.loads(line) for line in (dst / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]


def sources(dst: Path) -> list[dict]:
    return [json.loads(line) for line in (dst / "sources.jsonl").read_text(encoding="utf-8").splitlines()]


def cli_env(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """Environment for a ``python -m facedex`` subprocess with the loopback guard on."""
    violations = tmp_path / "loopback-violations.txt"
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join([str(LOOPBACK_DIR)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["FACEDEX_TEST_LOOPBACK_ONLY"] = "1"
    env["FACEDEX_TEST_VIOLATIONS"] = str(violations)
    return env, violations


FAST_CLI = ["--rate", "0", "--backoff", "0.01", "--max-backoff", "0.05", "--retries", "1", "--timeout", "2",
            "--max-retry-after", "5"]


def facedex_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "facedex", *map(str, args)]


def run_cli(tmp_path: Path, *args, timeout: float = 120) -> subprocess.CompletedProcess:
    env, violations = cli_env(tmp_path)
    proc = subprocess.run(facedex_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)
    assert not violations.exists() or not violations.read_text().strip(), violations.read_text()
    return proc
