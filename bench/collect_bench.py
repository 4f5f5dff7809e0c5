"""Collector throughput and memory against the local test site (loopback only).

    python bench/collect_bench.py [--images 10000] [--levels 1,2,4,8,16] [--level-images 1000]

The site (tests/collect_site, real LFW files read in place) runs in its own
process so that it does not share the collector's interpreter lock. Two
measurements, each into a fresh temporary DST with politeness off
(``rate=0``, one connection per download slot) — a benchmark of the
collector, not of a website:

1. images per second for ``collect urls`` of ``--level-images`` LFW images at
   each concurrency in ``--levels``;
2. resident memory (RSS) of this process, sampled every 0.25 s, while
   ``collect crawl`` walks an index of person pages and stores ``--images``
   images: it must stay flat (the frontier lives in SQLite, not in memory).

Results go to bench/results/collect.json.
"""

from __future__ import annotations

import argparse
import csv
import html
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from common import LFW, save  # noqa: E402

PER_INDEX_PAGE = 50


def bench_files(n: int) -> dict[str, list[Path]]:
    """The first ``n`` LFW images, person by person (people in name order)."""
    out: dict[str, list[Path]] = {}
    total = 0
    for d in sorted(p for p in LFW.iterdir() if p.is_dir()):
        files = sorted(d.glob("*.jpg"))[: n - total]
        if files:
            out[d.name] = files
            total += len(files)
        if total >= n:
            break
    if total < n:
        raise SystemExit(f"only {total} LFW images under {LFW}; asked for {n}")
    return out


# --- the site, in a child process ------------------------------------------------------------
def serve(n: int) -> None:
    """Child process: serve an index of person pages holding ``n`` images; print the port."""
    from tests.collect_site.site import Reply, Site, add_robots

    people = bench_files(n)
    site = Site("bench").start()
    add_robots(site)
    names = list(people)
    for i, name in enumerate(names):
        urls = [site.add(f"/img/{i}/{k}.jpg", Reply(200, f.read_bytes(), content_type="image/jpeg"))
                for k, f in enumerate(people[name])]
        site.add_page(f"/person/{i}", f"<h1>{html.escape(name.replace('_', ' '))}</h1>"
                      + "".join(f"<img src='{u}'>" for u in urls))
    pages = (len(names) + PER_INDEX_PAGE - 1) // PER_INDEX_PAGE
    for p in range(pages):
        links = "".join(f"<a class='person' href='/person/{i}'>x</a>"
                        for i in range(p * PER_INDEX_PAGE, min(len(names), (p + 1) * PER_INDEX_PAGE)))
        nxt = f"<a rel='next' href='/people/{p + 1}'>next</a>" if p + 1 < pages else ""
        site.add_page(f"/people/{p}", links + nxt)
    print(site.port, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    site.close()


class Server:
    def __init__(self, n: int):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(BENCH.parent), os.environ.get("PYTHONPATH", "")]))
        self.proc = subprocess.Popen([sys.executable, __file__, "--serve", str(n)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.port = int(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


# --- measurements ------------------------------------------------------------------------------
def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def options(concurrency: int):
    from facedex.collect import CollectOptions

    return CollectOptions(rate=0, concurrency=concurrency, per_host_connections=concurrency, retries=1)


def throughput(server: Server, n: int, levels: list[int], work: Path) -> list[dict]:
    from facedex.collect import collect_urls

    people = bench_files(n)
    names = list(people)
    lst = work / "list.csv"
    with lst.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["person", "url"])
        for i, name in enumerate(names):
            for k in range(len(people[name])):
                w.writerow([name.replace("_", " "), f"{server.base}/img/{i}/{k}.jpg"])
    out = []
    for c in levels:
        dst = work / f"urls-{c}"
        t0 = time.perf_counter()
        report = collect_urls(lst, dst, options(c))
        dt = time.perf_counter() - t0
        assert report.failed == 0, report.failed_by_reason
        stored = report.downloaded + report.skipped_by_reason.get("duplicate", 0)
        row = {"concurrency": c, "images": stored, "seconds": round(dt, 2), "images_per_s": round(stored / dt, 1)}
        print(f"  concurrency {c:>2}: {stored} images in {dt:.1f} s = {stored / dt:.0f} images/s", flush=True)
        out.append(row)
        shutil.rmtree(dst)
    return out


def memory(server: Server, n: int, concurrency: int, work: Path) -> dict:
    from facedex.collect import crawl
    from facedex.collect.recipe import parse_recipe

    recipe = parse_recipe({"start": [f"{server.base}/people/0"],
                           "index": {"person_links": "a.person", "next_page": "a[rel=next]"},
                           "person": {"name": "h1", "images": "img"}}, "bench")
    samples: list[tuple[float, int, float]] = []
    done = [0]
    stop = threading.Event()
    t0 = time.perf_counter()

    def sampler() -> None:
        while not stop.wait(0.25):
            samples.append((time.perf_counter() - t0, done[0], rss_mb()))

    def progress(snap: dict) -> None:
        done[0] = snap["downloaded"] + snap["skipped"]

    start_rss = rss_mb()
    th = threading.Thread(target=sampler, daemon=True)
    th.start()
    report = crawl(recipe, work / "crawl", options(concurrency), progress=progress)
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    assert report.failed == 0, report.failed_by_reason
    stored = report.downloaded + report.skipped_by_reason.get("duplicate", 0)
    # RSS when each further tenth of the images was reached
    marks = []
    for k in range(1, 11):
        target = n * k // 10
        hit = next((s for s in samples if s[1] >= target), samples[-1] if samples else (dt, stored, rss_mb()))
        marks.append({"images": target, "rss_mb": round(hit[2], 1)})
    after_first_tenth = [m["rss_mb"] for m in marks[1:]]
    result = {
        "concurrency": concurrency, "images": stored, "pages": report.pages.fetched, "seconds": round(dt, 1),
        "images_per_s": round(stored / dt, 1), "rss_mb_before": round(start_rss, 1),
        "rss_mb_max": round(max(s[2] for s in samples), 1) if samples else None,
        "rss_by_progress": marks,
        "rss_growth_mb_from_10pct_to_100pct": round(after_first_tenth[-1] - marks[0]["rss_mb"], 1),
        "rss_spread_mb_after_10pct": round(max(after_first_tenth) - min(after_first_tenth), 1),
    }
    print(f"  crawl: {stored} images, {report.pages.fetched} pages in {dt:.0f} s; RSS "
          + " ".join(f"{m['rss_mb']:.0f}" for m in marks) + " MB at each tenth", flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10_000, help="images for the memory run (default 10000)")
    ap.add_argument("--levels", default="1,2,4,8,16", help="concurrency levels (default 1,2,4,8,16)")
    ap.add_argument("--level-images", type=int, default=1000, help="images per concurrency level (default 1000)")
    ap.add_argument("--memory-concurrency", type=int, default=8)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve)
        return
    levels = [int(x) for x in args.levels.split(",") if x]
    server = Server(max(args.images, args.level_images))
    work = Path(tempfile.mkdtemp(prefix="facedex-collect-bench-"))
    try:
        print(f"throughput, {args.level_images} images per level:", flush=True)
        levels_out = throughput(server, args.level_images, levels, work)
        print(f"memory, crawling {args.images} images:", flush=True)
        mem = memory(server, args.images, args.memory_concurrency, work)
    finally:
        server.close()
        shutil.rmtree(work, ignore_errors=True)
    cmd = "python bench/collect_bench.py " + " ".join(sys.argv[1:])
    path = save("collect", {"command": cmd.strip(), "throughput": levels_out, "memory": mem,
                            "notes": "site served from a separate local process on 127.0.0.1; rate limit off; "
                                     "each image is checked (magic bytes, full decode, size), hashed, "
                                     "fsynced and renamed into place; state in SQLite (WAL)"})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
