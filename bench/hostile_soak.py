"""Hostile-input soak: many kills and bad files, then count what survived.

    python bench/hostile_soak.py [--trials 40] [--quick]

1. The hostile corpus (tests/hostile.py) through identify, detect and enroll:
   every case must get its expected error code (or be processed), no
   traceback, no hang.
2. SIGKILL at random moments during gallery creation, enroll and forget:
   after each kill the gallery opens (or is "not created yet"), passes
   SQLite's and facedex's integrity checks, and the next run completes.
3. Peak memory of identify and enroll on 32 photos of 8000x6000 (made from
   LFW faces), which must stay under 1.5 GB.

Writes bench/results/hostile.json and bench/sections/60_hostile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import RESULTS, lfw_dir, machine  # noqa: E402

FX = [sys.executable, "-m", "facedex"]


def cli(*args, timeout=600, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*FX, *map(os.fsdecode, args)], capture_output=True, timeout=timeout, **kw)


def corpus_round(work: Path, lfw: Path) -> dict:
    from tests.hostile import build_corpus, explicit_inputs

    folder = work / "corpus"
    expected = build_corpus(folder, lfw / "Tony_Blair" / "Tony_Blair_0002.jpg")
    gallery = work / "corpus.gallery"
    cli("enroll", gallery, lfw / "Tony_Blair" / "Tony_Blair_0003.jpg", "--person", "Tony Blair")
    inputs = explicit_inputs(folder, expected)
    tried = handled = tracebacks = 0
    for cmd in (["identify", gallery], ["detect"], ["enroll", gallery, "--person", "Someone", "--multiple", "largest"]):
        t0 = time.time()
        p = cli(*cmd, *inputs, "--json")
        tracebacks += b"Traceback" in p.stderr
        doc = json.loads(p.stdout)
        if cmd[0] == "enroll":
            got = {Path(i["path"]).name: i["code"] for i in doc["items"]}
        else:
            got = {Path(r["input"]).name: (r["error"] or {}).get("code") for r in doc["results"]}
            got["dir.jpg"] = "media.not_found" if any(Path(s["path"]).name == "dir.jpg" for s in doc["skipped"]) \
                else got.get("dir.jpg")
        for name, code in expected.items():
            tried += 1
            handled += got.get(name) == code or (cmd[0] == "enroll" and code is None and name in got)
        print(f"  corpus through {cmd[0]}: {time.time() - t0:.1f} s, rc {p.returncode}")
    return {"cases": len(expected), "runs": 3, "tried": tried, "handled": handled, "tracebacks": tracebacks}


def kill_round(work: Path, lfw: Path, trials: int, seed: int = 0) -> dict:
    import sqlite3

    rng = random.Random(seed)
    people = work / "people"
    for name in ("Tony_Blair", "Gray_Davis", "Hugo_Chavez"):
        (people / name).mkdir(parents=True, exist_ok=True)
        for f in sorted((lfw / name).glob("*.jpg"))[:25]:
            shutil.copy(f, people / name / f.name)
    out = {"create": [0, 0], "enroll": [0, 0], "forget": [0, 0]}
    for trial in range(trials):
        kind = ("create", "enroll", "forget")[trial % 3]
        g = work / f"kill{trial}.gallery"
        if kind != "create":
            p = cli("enroll", g, people, "--multiple", "largest")
            assert p.returncode == 0, p.stderr[-500:]
        cmd = [*FX, "enroll", str(g), str(people), "--multiple", "largest"] if kind != "forget" else \
            [*FX, "forget", str(g), "Tony_Blair", "Gray_Davis"]
        if kind == "enroll":  # a new person to add, so enroll has work to be killed in
            shutil.copytree(lfw / "Colin_Powell", people / f"Colin_Powell_{trial}", dirs_exist_ok=True)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.2, 3.0 if kind != "forget" else 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        intact = True
        p = cli("people", g, "--json")
        if p.returncode == 0:
            con = sqlite3.connect(f"file:{g}?mode=ro", uri=True)
            intact = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            con.close()
            from facedex.gallery.store import GalleryStore

            store = GalleryStore.open(g)
            intact = intact and store.integrity_check() == []
            store.close()
        else:
            intact = json.loads(p.stdout or b"{}").get("error", {}).get("code") == "gallery.not_found" \
                if p.stdout else False
        again = cli(*(["forget", g, "Tony_Blair"] if kind == "forget" else ["enroll", g, people, "--multiple",
                                                                               "largest"]))
        intact = intact and again.returncode in (0, 1)
        out[kind][0] += 1
        out[kind][1] += intact
        if kind == "enroll":
            shutil.rmtree(people / f"Colin_Powell_{trial}")
    return {k: {"trials": v[0], "intact": v[1]} for k, v in out.items()}


def memory_round(work: Path, lfw: Path, n: int = 32) -> dict:
    from PIL import Image

    photos = work / "huge"
    (photos / "Big_Person").mkdir(parents=True)
    faces = sorted((lfw / "Tony_Blair").glob("*.jpg"))[:n]
    for i, f in enumerate(faces):
        im = Image.open(f).resize((6000, 6000)).crop((0, 0, 6000, 6000))
        canvas = Image.new("RGB", (8000, 6000), (90, 100, 110))
        canvas.paste(im, (1000, 0))
        canvas.save(photos / "Big_Person" / f"big{i:02d}.jpg", quality=85)
    res = {}
    for name, args in (("identify", ["identify", work / "corpus.gallery", photos / "Big_Person", "--json"]),
                       ("enroll", ["enroll", work / "big.gallery", photos, "--json"])):
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-v", *FX, *map(str, args)], capture_output=True, text=True)
        peak = next((int(line.split()[-1]) for line in p.stderr.splitlines() if "Maximum resident" in line), 0)
        res[name] = {"photos": n, "megapixels_each": 48, "peak_rss_mb": round(peak / 1024), "rc": p.returncode,
                     "seconds": round(time.time() - t0, 1)}
        print(f"  {name} on {n} photos of 8000x6000: peak {peak / 1024:.0f} MB, {time.time() - t0:.0f} s")
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=30, help="SIGKILL trials (split over create/enroll/forget)")
    ap.add_argument("--quick", action="store_true", help="6 trials and 8 huge photos")
    args = ap.parse_args()
    lfw = lfw_dir()
    work = Path(tempfile.mkdtemp(prefix="facedex-soak-"))
    try:
        print("hostile corpus…")
        corpus = corpus_round(work, lfw)
        print("kills…")
        kills = kill_round(work, lfw, 6 if args.quick else args.trials)
        print("memory…")
        memory = memory_round(work, lfw, 8 if args.quick else 32)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {"machine": machine(), "corpus": corpus, "kills": kills, "memory": memory}
    name = "hostile_quick" if args.quick else "hostile"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
