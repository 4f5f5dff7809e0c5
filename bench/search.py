"""Vector search for large galleries, judged by what identification loses.

    python bench/search.py [--sizes 10000,100000,1000000] [--quick] [--no-validate]

1. **The generator is checked first.** :class:`facedex.evaluate.synthetic.FaceGenerator`
   is fitted to the SFace embeddings of all 13,233 LFW images (identity
   centres, within-person spread, faces per person). On the real LFW split of
   docs/FACTS (11,553 gallery faces, 1,680 queries: one image of every person
   with two or more) and on a synthetic set of the same shape, the recall@1 of
   the approximate indexes is measured side by side, and so is the open-set
   result (FNIR at FPIR 1 %, with 1,000 LFW people held out as strangers).
2. **Then the sizes.** For each gallery size (own process, so peak memory is
   that size's alone): a synthetic gallery, 2,000 genuine probes (new faces of
   enrolled identities) and 2,000 strangers. The threshold is set on *exact*
   search for FPIR 1 %; every index is then judged at that threshold: FNIR
   (genuine probes not given their own name) against exact, wrong names
   (genuine probes given someone else's name — must stay as exact's), FPIR,
   recall@1, ms per face on one thread (what identifying a photo does),
   build time and memory. Indexes are built with facedex's own
   :class:`facedex.gallery.index.VectorIndex` (the code a gallery uses); "auto"
   is what a gallery of that size gets.

Embeddings of LFW are read from bench/results/lfw_sface-2021dec_central.npz
(written by the clustering benchmark, or here once: ~5 min on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, save  # noqa: E402

DIM = 128
CACHE = RESULTS / "lfw_sface-2021dec_central.npz"
GENUINE = STRANGERS = 2000


def lfw_embeddings() -> tuple[np.ndarray, np.ndarray]:
    """SFace embeddings of every LFW image (the central face) and person labels, cached."""
    if not CACHE.exists():
        from common import lfw_dir

        from facedex.evaluate.lfw import embed_central_faces
        from facedex.pipeline import FacePipeline

        lfw = lfw_dir()
        paths = sorted(lfw.glob("*/*.jpg"))
        people = sorted({p.parent.name for p in paths})
        index = {p: i for i, p in enumerate(people)}
        emb = embed_central_faces(paths, FacePipeline())
        np.savez(CACHE, vectors=emb.vectors, labels=np.array([index[p.parent.name] for p in paths], np.int32),
                 people=np.array(people), paths=np.array([f"{p.parent.name}/{p.name}" for p in paths]),
                 fallbacks=np.array([], np.float64), seconds=np.float64(emb.seconds))
    with np.load(CACHE) as d:
        return d["vectors"].astype(np.float32), d["labels"].astype(np.int64)


def generator():
    from facedex.evaluate.synthetic import FaceGenerator

    x, labels = lfw_embeddings()
    return FaceGenerator.fit(x, labels)


# --- measuring -----------------------------------------------------------------------------------
def exact_top1(gallery: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from facedex.gallery.index import VectorIndex

    ix = VectorIndex(DIM, "Flat")
    ix.add(gallery)
    s, i = ix.search(queries, 1)
    return s[:, 0], i[:, 0]


def open_set(sims_g, ids_g, sims_s, labels, genuine_labels, threshold) -> dict:
    """FNIR, wrong names and FPIR at ``threshold`` from top-1 results (the
    identifier names the person of the best face when it reaches the threshold)."""
    named = sims_g >= threshold
    right = named & (ids_g >= 0) & (labels[np.maximum(ids_g, 0)] == genuine_labels)
    return {"fnir": float(1 - right.mean()), "wrong_names": int((named & ~right).sum()),
            "fpir": float((sims_s >= threshold).mean())}


def threshold_at_fpir(stranger_best: np.ndarray, fpir: float = 0.01) -> float:
    s = np.sort(stranger_best)[::-1]
    allowed = int(np.floor(fpir * len(s)))
    return float(np.nextafter(s[allowed], np.float32(np.inf))) if allowed < len(s) else float(s[-1])


def measure(desc: str, params: str, gallery: np.ndarray, ids: np.ndarray, labels: np.ndarray,
            genuine: np.ndarray, genuine_labels: np.ndarray, strangers: np.ndarray, exact: dict,
            built: dict) -> dict:
    import faiss

    from facedex.gallery.index import VectorIndex

    faiss.omp_set_num_threads(2)
    key = desc
    if key not in built:
        t0 = time.perf_counter()
        ix = VectorIndex(DIM, desc, params)
        if not ix.is_trained:
            nlist = int(desc.split("IVF")[1].split("_")[0].split(",")[0]) if "IVF" in desc else 1
            sample = min(len(gallery), max(50_000, 40 * nlist))
            rows = np.sort(np.random.default_rng(0).choice(len(gallery), sample, replace=False))
            ix.train(gallery[rows])
        ix.add(gallery, ids)
        built.clear()  # one index in memory at a time
        built[key] = (ix, time.perf_counter() - t0)
    ix, build_s = built[key]
    ix.params = {}
    from facedex.gallery.index import parse_params

    ix.params = parse_params(params)
    ix.k_factor = float(ix.params.get("k_factor", 4.0 if ix.refine else 1.0))
    ix._set_params()
    k = 64  # what the identifier asks for
    # one face at a time, one thread (identifying a photo)
    single = genuine[:300]
    ix.search(single[:5], k)
    t0 = time.perf_counter()
    for i in range(len(single)):
        ix.search(single[i:i + 1], k)
    ms = (time.perf_counter() - t0) / len(single) * 1000
    t0 = time.perf_counter()
    sg, ig = ix.search(genuine, k)
    ss, _ = ix.search(strangers, k)
    qps = (len(genuine) + len(strangers)) / (time.perf_counter() - t0)
    pos = np.searchsorted(ids, np.maximum(ig[:, 0], 0))
    pos = np.where(ig[:, 0] >= 0, pos, -1)
    res = open_set(sg[:, 0], pos, ss[:, 0], labels, genuine_labels, exact["threshold"])
    return {"index": desc, "params": params, "build_s": round(build_s, 1), "ms_per_face": round(ms, 3),
            "batch_faces_per_s": round(qps, 1),
            "recall_at_1": round(float(np.mean(pos == exact["top1_genuine"])), 4),
            "fnir": round(res["fnir"], 5), "fnir_vs_exact_points": round(100 * (res["fnir"] - exact["fnir"]), 3),
            "wrong_names": res["wrong_names"], "fpir": round(res["fpir"], 4),
            "memory_mb": round(ix.memory_bytes() / 2**20, 1)}


def configs(n: int, quick: bool) -> list[tuple[str, str]]:
    """Exact; the auto recipe (whatever the size); its neighbours; faiss's guidance
    for 1-10 M (an IVF with an HNSW coarse quantizer, SQ8 codes, re-ranked); HNSW."""
    from facedex.gallery.index import EXACT_UP_TO, auto_recipe

    auto = auto_recipe(max(n, EXACT_UP_TO))
    out = [("Flat", ""), auto]
    if quick:
        return out
    out += [("PQ32x4fs,RFlat", "k_factor=8"), ("PQ32x4fs,RFlat", "k_factor=16"), ("PQ64x4fs,RFlat", "k_factor=8")]
    nlist = int(2 ** round(np.log2(4 * np.sqrt(n))))
    for probe in (nlist // 16, nlist // 4):
        out.append((f"IVF{nlist}_HNSW32,SQ8,RFlat", f"nprobe={probe},quantizer_efSearch={max(2 * probe, 64)},k_factor=8"))
    if n <= 200_000:
        out += [("HNSW32", "efSearch=128"), ("HNSW32", "efSearch=512")]
    return out


def run_size(n: int, quick: bool) -> dict:
    import faiss

    from facedex.gallery.index import auto_recipe

    faiss.omp_set_num_threads(2)
    t0 = time.perf_counter()
    data = generator().sample_gallery(n, probes=GENUINE, strangers=STRANGERS, seed=n)
    gen_s = time.perf_counter() - t0
    ids = np.arange(1, n + 1, dtype=np.int64) * 3  # face ids as a gallery gives them (not positions)
    sg, pg = exact_top1(data.gallery, data.genuine)
    ss, _ = exact_top1(data.gallery, data.strangers)
    thr = threshold_at_fpir(ss, 0.01)
    ex = open_set(sg, pg, ss, data.labels, data.genuine_labels, thr)
    exact = {"threshold": thr, "fnir": ex["fnir"], "top1_genuine": pg}
    print(json.dumps({"n": n, "identities": int(data.labels.max() + 1), "threshold": round(thr, 4),
                      "exact_fnir": round(ex["fnir"], 5), "exact_wrong_names": ex["wrong_names"]}), flush=True)
    rows, built = [], {}
    for desc, params in configs(n, quick):
        r = measure(desc, params, data.gallery, ids, data.labels, data.genuine, data.genuine_labels,
                    data.strangers, exact, built)
        rows.append(r)
        print(json.dumps({"n": n, **r}), flush=True)
    return {"n": n, "identities": int(data.labels.max() + 1), "generate_s": round(gen_s, 1),
            "threshold_fpir_1pct": round(thr, 4), "exact_fnir": round(ex["fnir"], 5),
            "exact_wrong_names": ex["wrong_names"], "auto": list(auto_recipe(n)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "indexes": rows}


# --- the generator against real LFW --------------------------------------------------------------
def facts_split(labels: np.ndarray, strangers: int = 1000, seed: int = 0):
    """docs/FACTS's split (one query per person with >= 2 images; the rest is the
    gallery), plus ``strangers`` one-image people taken out of the gallery."""
    order = np.argsort(labels, kind="stable")
    _, first, counts = np.unique(labels[order], return_index=True, return_counts=True)
    queries = order[first[counts >= 2]]
    singles = order[first[counts == 1]]
    held = np.random.default_rng(seed).choice(singles, min(strangers, len(singles)), replace=False)
    gallery = np.ones(len(labels), bool)
    gallery[queries] = False
    return queries, held, gallery


def validate() -> dict:
    import faiss

    faiss.omp_set_num_threads(2)
    x, labels = lfw_embeddings()
    gen = generator()
    rng = np.random.default_rng(7)
    centres, scales = gen.identities(len(gen.faces_per_identity), rng)
    syn_labels = np.repeat(np.arange(len(centres)), gen.faces_per_identity)
    syn = gen.faces(centres, scales, syn_labels, rng)
    out = {"fit": {"scale_sigma": round(gen.scale_sigma, 4), "face_sigma": round(gen.face_sigma, 4)}}
    recall_cfgs = [("HNSW32", "efSearch=16"), ("HNSW32", "efSearch=32"), ("HNSW32", "efSearch=64"),
                   ("IVF128,Flat", "nprobe=16"), ("IVF128,PQ32", "nprobe=16"), ("SQ8", ""), ("SQfp16", "")]
    for name, (vecs, labs) in {"real LFW": (x, labels), "synthetic": (syn, syn_labels)}.items():
        queries, held, in_gallery = facts_split(labs)
        # 1. recall@1 on the FACTS split (strangers stay in the gallery, as there)
        g_all = np.ones(len(labs), bool)
        g_all[queries] = False
        gal = vecs[g_all]
        _, truth = exact_top1(gal, vecs[queries])
        rec = {}
        for desc, params in recall_cfgs:
            ix = faiss.index_factory(DIM, desc, faiss.METRIC_INNER_PRODUCT)
            if not ix.is_trained:
                ix.train(gal)
            ix.add(gal)
            if params:
                faiss.ParameterSpace().set_index_parameters(ix, params)
            _, got = ix.search(vecs[queries], 1)
            rec[f"{desc} {params}".strip()] = round(float(np.mean(got[:, 0] == truth)), 4)
        # 2. open set: strangers held out of the gallery
        gal_rows = np.flatnonzero(in_gallery & ~np.isin(np.arange(len(labs)), held))
        sg, pg = exact_top1(vecs[gal_rows], vecs[queries])
        ss, _ = exact_top1(vecs[gal_rows], vecs[held])
        thr = threshold_at_fpir(ss, 0.01)
        ex = open_set(sg, pg, ss, labs[gal_rows], labs[queries], thr)
        # the score distributions that decide FNIR
        out[name] = {"gallery": int(g_all.sum()), "queries": len(queries), "recall_at_1": rec,
                     "open_set": {"gallery": len(gal_rows), "strangers": len(held), "threshold": round(thr, 4),
                                  "fnir": round(ex["fnir"], 4)},
                     "genuine_best_p5_p50_p95": np.percentile(sg, [5, 50, 95]).round(3).tolist(),
                     "stranger_best_p50_p99": np.percentile(ss, [50, 99]).round(3).tolist()}
        print(json.dumps({name: out[name]}), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--quick", action="store_true", help="10 k and 100 k only, the auto settings only")
    ap.add_argument("--no-validate", action="store_true", help="skip the check of the generator on real LFW")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size in this process
    args = ap.parse_args()
    if args.one:
        print("RESULT " + json.dumps(run_size(args.one, args.quick)), flush=True)
        return
    lfw_embeddings()  # compute the cache once, before the sizes run in their own processes
    validation = None if args.no_validate else validate()
    sizes = [10_000, 100_000] if args.quick else [int(s) for s in args.sizes.split(",")]
    per_size = []
    for n in sizes:
        cmd = [sys.executable, __file__, "--one", str(n)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"size {n} failed:\n{proc.stderr[-3000:]}")
        for ln in proc.stdout.splitlines():
            if not ln.startswith("RESULT "):
                print(ln)
        per_size.append(json.loads(lines[0][7:]))
    out = save("search_quick" if args.quick else "search",
               {"dim": DIM, "genuine": GENUINE, "strangers": STRANGERS, "validation": validation, "sizes": per_size,
                "note": "machine shared with other jobs while it ran"})
    print(f"written {out}")


if __name__ == "__main__":
    main()
