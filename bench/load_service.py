"""Load test of `facedex serve`: 200 concurrent clients on loopback, bounded in time.

    python bench/load_service.py [--clients 200] [--seconds 60] [--gallery G] [--quick]

1. Builds a gallery like scripts/demo's (LFW people with >= 20 photos, 10 photos
   each; ``--people`` of them, all but the one with the most photos) unless ``--gallery`` names one, and starts
   ``facedex serve`` on it in its own process (default workers: one per CPU,
   queue 32).
2. ``--clients`` clients (asyncio + httpx, one connection each) send requests
   back to back for ``--seconds`` after a warm-up: 70 % POST /v1/identify with
   an LFW photo the gallery has not seen, 20 % GET /v1/people, 10 % GET
   /v1/gallery. A client told 503 waits the Retry-After the server gave and
   goes on, as a polite client does; 503s are counted apart (the deliberate
   "queue full" answer), every other non-2xx is an error.
3. Reports requests/s (2xx), p50/p95/p99 latency of 2xx answers, per kind,
   status counts, and the server's resident memory before and after the run
   and its peak (sampled every 0.5 s): it should stay flat.
4. Kill -9 during an enrollment: 40 photos of a new person are posted; the
   server is killed as soon as the first batch is committed, restarted, the
   gallery checked (SQLite integrity, every source with its face) and the same
   photos posted again: only the missing ones are added.

The client runs on the same machine as the server (2 cores here), so part of
the CPU goes to the client. Results: bench/results/service.json
(service_quick.json with --quick).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent / "src"))

from common import lfw_dir, save  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Server:
    def __init__(self, gallery: Path, args: list[str], log: Path):
        import httpx

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        env = {k: v for k, v in os.environ.items() if k != "FACEDEX_API_KEY"}
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen([sys.executable, "-m", "facedex", "serve", str(gallery), "--port",
                                          str(self.port), "--no-access-log", *args], stdout=fh,
                                         stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"facedex serve exited: {log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop(signal.SIGKILL)
        raise SystemExit(f"facedex serve did not become ready:\n{log.read_text(errors='replace')[-3000:]}")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(60)


def build_gallery(path: Path, people: int, per_person: int) -> tuple[list[Path], list[Path]]:
    """Enroll ``people`` LFW people (>= 20 photos) with ``per_person`` photos each;
    returns (probe photos they did not enroll, photos of a person left out)."""
    import facedex

    lfw = lfw_dir()
    folders = [d for d in sorted(lfw.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) >= 20]
    spare = max(folders, key=lambda d: len(list(d.glob('*.jpg'))))  # never enrolled here: the kill -9 test's person
    chosen = [d for d in folders if d != spare][:people]
    probes = []
    with facedex.Gallery.open(path, create=True) as g:
        for d in chosen:
            files = sorted(d.glob("*.jpg"))
            g.enroll(files[:per_person], person=d.name, multiple="largest")
            probes += files[per_person:per_person + 3]
        g.calibrate(0.01)
    singles = [d for d in sorted(lfw.iterdir()) if d.is_dir() and len(list(d.glob("*.jpg"))) == 1][:100]
    probes += [next(d.glob("*.jpg")) for d in singles]
    return probes, sorted(spare.glob("*.jpg"))


async def run_load(url: str, clients: int, seconds: float, photos: list[bytes], seed: int = 0) -> dict:
    import httpx

    stats: dict[str, list[float]] = {"identify": [], "people": [], "gallery": []}
    statuses: Counter = Counter()
    by_kind: dict[str, Counter] = {k: Counter() for k in stats}
    errors: Counter = Counter()
    stop_at = 0.0

    async def client(c, i: int) -> None:
        r = random.Random(seed * 1000 + i)
        await asyncio.sleep(r.random() * 0.5)
        while time.monotonic() < stop_at:
            x = r.random()
            kind = "identify" if x < 0.7 else "people" if x < 0.9 else "gallery"
            t0 = time.perf_counter()
            try:
                if kind == "identify":
                    data = photos[r.randrange(len(photos))]
                    resp = await c.post("/v1/identify", files={"file": ("probe.jpg", data, "image/jpeg")})
                else:
                    resp = await c.get(f"/v1/{kind}")
            except httpx.HTTPError as err:
                errors[type(err).__name__] += 1
                statuses["transport error"] += 1
                continue
            dt = time.perf_counter() - t0
            statuses[resp.status_code] += 1
            by_kind[kind][resp.status_code] += 1
            if 200 <= resp.status_code < 300:
                stats[kind].append(dt)
            elif resp.status_code == 503:
                wait = float(resp.headers.get("retry-after", "1"))
                await asyncio.sleep(min(wait, 10) * (0.5 + r.random()))

    # One client (and connection) each, made before the clock starts; one shared pool of 200
    # connections was the bottleneck itself (httpx's pool bookkeeping), not the server.
    import ssl

    ctx = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    pool = [httpx.AsyncClient(base_url=url, timeout=120, limits=limits, verify=ctx) for _ in range(clients)]
    try:
        stop_at = time.monotonic() + seconds
        t0 = time.monotonic()
        await asyncio.gather(*(client(c, i) for i, c in enumerate(pool)))
        elapsed = time.monotonic() - t0
    finally:
        for c in pool:
            await c.aclose()

    def pct(values: list[float], q: float) -> float | None:
        if not values:
            return None
        values = sorted(values)
        return round(1000 * values[min(len(values) - 1, int(q * len(values)))], 1)

    everything = [v for vs in stats.values() for v in vs]
    ok = len(everything)
    return {
        "clients": clients, "seconds": round(elapsed, 1),
        "requests_ok": ok, "requests_per_s": round(ok / elapsed, 1),
        "identify_per_s": round(len(stats["identify"]) / elapsed, 1),
        "latency_ms": {"p50": pct(everything, 0.50), "p95": pct(everything, 0.95), "p99": pct(everything, 0.99)},
        "latency_ms_by_kind": {k: {"n": len(v), "p50": pct(v, 0.5), "p95": pct(v, 0.95), "p99": pct(v, 0.99),
                                   "mean": round(1000 * statistics.fmean(v), 1) if v else None}
                               for k, v in stats.items()},
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "statuses_by_kind": {k: {str(s): n for s, n in c.items()} for k, c in by_kind.items()},
        "busy_503": statuses[503],
        "errors_other": sum(n for s, n in statuses.items() if not (isinstance(s, int) and (200 <= s < 300 or s == 503))),
        "transport_errors": dict(errors),
    }


def sample_memory(pid: int, stop: threading.Event, out: list[float]) -> None:
    while not stop.is_set():
        try:
            out.append(rss_mb(pid))
        except OSError:
            return
        stop.wait(0.5)


def kill_during_enroll(gallery: Path, photos: list[Path], log: Path) -> dict:
    import httpx

    import facedex

    person = photos[0].parent.name
    files = [("file", (p.name, p.read_bytes(), "image/jpeg")) for p in photos[:40]]
    with sqlite3.connect(gallery) as db:
        base = db.execute("SELECT COUNT(*) FROM sources").fetchone()[0]
    server = Server(gallery, [], log)
    result: dict = {}
    t = threading.Thread(target=lambda: result.setdefault("r", _post(httpx, server.url, person, files)))
    t.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with sqlite3.connect(f"file:{gallery}?mode=ro", uri=True, timeout=0.05) as db:
                if db.execute("SELECT COUNT(*) FROM sources").fetchone()[0] > base:
                    break
        except sqlite3.OperationalError:
            pass
        time.sleep(0.01)
    server.stop(signal.SIGKILL)
    t.join(60)
    with facedex.Gallery.open(gallery) as g:
        problems = g.store.integrity_check()
        info = {p.name: (p.faces, p.sources) for p in g.people()}.get(person, (0, 0))
    server = Server(gallery, [], log)
    again = httpx.post(f"{server.url}/v1/people/{person}/faces?multiple=largest", files=files, timeout=300).json()
    server.stop()
    with facedex.Gallery.open(gallery) as g:
        problems += g.store.integrity_check()
    return {"photos": len(files), "enrolled_when_killed": info[1], "faces_when_killed": info[0],
            "integrity_problems": problems, "resent_added": again["added"], "resent_skipped": again["skipped"],
            "resent_failed": again["failed"], "whole": not problems and info[0] == info[1]
            and again["skipped"] == info[1]}


def _post(httpx, url, person, files):
    try:
        return httpx.post(f"{url}/v1/people/{person}/faces?multiple=largest", files=files, timeout=120).status_code
    except httpx.HTTPError as err:
        return type(err).__name__


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=10)
    ap.add_argument("--people", type=int, default=61, help="people in the built gallery (10 photos each)")
    ap.add_argument("--gallery", type=Path, help="use this gallery (a copy is served) instead of building one")
    ap.add_argument("--serve-args", default="", help="extra arguments for facedex serve, e.g. '--queue 64'")
    ap.add_argument("--quick", action="store_true", help="20 people, 15 s")
    args = ap.parse_args()
    if args.quick:
        args.people, args.seconds, args.warmup = min(args.people, 20), 15, 5

    with tempfile.TemporaryDirectory(prefix="facedex-load-") as tmp:
        tmp = Path(tmp)
        gallery = tmp / "load.gallery"
        t0 = time.monotonic()
        if args.gallery:
            import shutil

            shutil.copy(args.gallery, gallery)
            lfw = lfw_dir()
            probes = sorted(lfw.glob("*/*_0011.jpg"))[:200]
            spare_dir = next(d for d in sorted(lfw.iterdir()) if len(list(d.glob("*.jpg"))) >= 40)
            spare = sorted(spare_dir.glob("*.jpg"))
        else:
            probes, spare = build_gallery(gallery, args.people, 10)
        built = time.monotonic() - t0
        photos = [p.read_bytes() for p in probes]
        log = tmp / "serve.log"
        server = Server(gallery, args.serve_args.split(), log)
        print(f"gallery ready in {built:.0f} s; server {server.url} (pid {server.proc.pid}); "
              f"{len(photos)} probe photos", flush=True)
        asyncio.run(run_load(server.url, min(args.clients, 50), args.warmup, photos, seed=1))
        time.sleep(2)
        rss_before = rss_mb(server.proc.pid)
        samples: list[float] = []
        stop = threading.Event()
        sampler = threading.Thread(target=sample_memory, args=(server.proc.pid, stop, samples))
        sampler.start()
        load = asyncio.run(run_load(server.url, args.clients, args.seconds, photos))
        stop.set()
        sampler.join()
        time.sleep(2)
        rss_after = rss_mb(server.proc.pid)
        load["memory_mb"] = {"before": round(rss_before, 1), "after": round(rss_after, 1),
                             "peak": round(max(samples + [rss_after]), 1)}
        server.stop()
        print(f"{load['requests_per_s']} req/s ({load['identify_per_s']} identify/s), latency p50/p95/p99 "
              f"{load['latency_ms']['p50']}/{load['latency_ms']['p95']}/{load['latency_ms']['p99']} ms, statuses "
              f"{load['statuses']}, memory {load['memory_mb']}", flush=True)
        crash = kill_during_enroll(gallery, spare, log)
        print(f"kill -9 during enroll: {crash}", flush=True)
        import facedex

        with facedex.Gallery.open(gallery) as g:
            counts = g.counts()
    out = save("service_quick" if args.quick else "service", {
        "command": "python bench/load_service.py" + (" --quick" if args.quick else ""),
        "gallery": counts, "workers": os.cpu_count(), "load": load, "kill_during_enroll": crash,
    })
    print(f"results: {out}")


if __name__ == "__main__":
    main()
