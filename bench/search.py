"""Vector search for the gallery: latency per query, recall@1 against exact search,
build time and memory, for galleries of 10 k, 100 k and 1 M faces.

    python bench/search.py [--sizes 10000,100000,1000000] [--quick]

Galleries are synthetic but shaped like face embeddings: 128-d unit vectors in
identity clusters (three faces per identity, same-identity cosine ~0.6,
different identities ~0, as SFace gives on LFW). Queries are new faces of
enrolled identities. Each size runs in its own process so peak memory (RSS) is
that size's alone. Indexes are faiss factory strings; "Flat" is exact search,
what the gallery uses today.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402

DIM = 128
SIGMA = 0.82  # noise norm giving same-identity cosine ~ 1 / (1 + SIGMA^2) ~ 0.6


def make_data(n: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = max(1, n // 3)
    centres = rng.standard_normal((ids, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    x = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        e = rng.standard_normal((stop - start, DIM)).astype(np.float32) * (SIGMA / math.sqrt(DIM))
        x[start:stop] = centres[np.arange(start, stop) % ids] + e
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = centres[rng.integers(0, ids, queries)] + rng.standard_normal((queries, DIM)).astype(np.float32) * (
        SIGMA / math.sqrt(DIM))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q.astype(np.float32)


def configs(n: int, quick: bool) -> list[tuple[str, dict]]:
    nlist = 1 << int(round(math.log2(max(64, 4 * math.sqrt(n)))))
    out = [("Flat", {})]
    for ef in ([64] if quick else [32, 64, 128]):
        out.append(("HNSW32", {"efSearch": ef}))
    for nprobe in ([16] if quick else [8, 16, 32]):
        out.append((f"IVF{nlist},Flat", {"nprobe": nprobe}))
    if not quick:
        out.append((f"IVF{nlist},PQ32", {"nprobe": 16}))
    return out


def run_size(n: int, quick: bool, queries: int) -> dict:
    import faiss

    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    x, q = make_data(n, queries)
    gen_s = time.perf_counter() - t0
    rss_data = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    exact = faiss.IndexFlatIP(DIM)
    exact.add(x)
    _, truth = exact.search(q, 1)
    results = []
    built: dict[str, object] = {}
    for desc, params in configs(n, quick):
        if desc not in built:
            t0 = time.perf_counter()
            index = faiss.index_factory(DIM, desc, faiss.METRIC_INNER_PRODUCT)
            if not index.is_trained:
                index.train(x[: min(n, 256 * 4096)])
            index.add(x)
            build_s = time.perf_counter() - t0
            built[desc] = (index, build_s)
        index, build_s = built[desc]
        ps = faiss.ParameterSpace()
        for k, v in params.items():
            ps.set_index_parameter(index, k, v)
        # one query at a time (what identifying a photo does)
        # one thread for single queries, as the gallery does (facedex.gallery.index.SMALL_BATCH)
        single = q[:200]
        faiss.omp_set_num_threads(1)
        index.search(single[:5], 10)
        t0 = time.perf_counter()
        for i in range(len(single)):
            index.search(single[i : i + 1], 10)
        single_ms = (time.perf_counter() - t0) / len(single) * 1000
        faiss.omp_set_num_threads(2)
        t0 = time.perf_counter()
        _, got = index.search(q, 10)
        batch_qps = len(q) / (time.perf_counter() - t0)
        recall = float(np.mean(got[:, 0] == truth[:, 0]))
        size_bytes = int(faiss.serialize_index(index).nbytes) if desc != "Flat" else int(x.nbytes)
        results.append({"index": desc, **params, "build_s": round(build_s, 2), "ms_per_query": round(single_ms, 3),
                        "batch_queries_per_s": round(batch_qps, 1), "recall_at_1": round(recall, 4),
                        "index_mb": round(size_bytes / 2**20, 1)})
        print(json.dumps({"n": n, **results[-1]}), flush=True)
    return {"n": n, "generate_s": round(gen_s, 1), "rss_after_data_mb": round(rss_data / 1024, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "indexes": results}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--quick", action="store_true", help="10 k and 100 k only, one setting per index")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_size(args.one, args.quick, args.queries)), flush=True)
        return
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    per_size = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--one", str(n), "--queries", str(args.queries)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"size {n} failed:\n{proc.stderr[-3000:]}")
        for ln in proc.stdout.splitlines():
            if not ln.startswith("RESULT "):
                print(ln)
        per_size.append(json.loads(lines[0][7:]))
    out = save("search_quick" if args.quick else "search", {"dim": DIM, "queries": args.queries, "sizes": per_size})
    print(f"written {out}")


if __name__ == "__main__":
    main()
