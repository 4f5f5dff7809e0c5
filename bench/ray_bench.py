"""Batch enrollment on Ray against the local engine, and Milvus against faiss.

    python bench/ray_bench.py [--images 1000] [--actors 1,2]

1. The first ``--images`` LFW images (whole person folders, in name order)
   are enrolled into a new gallery by the local engine (this process, all
   cores), then by ``--engine ray`` on a local Ray of 2 CPUs with 1 and 2
   embedding actors (1 CPU each, onnxruntime on 1 thread per actor). Reported:
   images/s (wall clock, Ray start-up included and shown apart), and whether
   the galleries hold the same people, sources and faces (embeddings within
   1e-4) as the local engine's. A second Ray run over the same folder shows
   the resume (every shard already written: nothing embedded).
2. The Ray gallery is searched with every LFW image (13,233 probes, SFace
   embeddings from the cache bench/search.py uses) through faiss (exact) and
   through the Milvus backend (milvus-lite, FLAT): same names, same
   similarities?
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lfw_dir, save  # noqa: E402


def people_folder(root: Path, images: int) -> int:
    """Copy whole LFW person folders (name order) until ``images`` images."""
    n = 0
    for person in sorted(p for p in lfw_dir().iterdir() if p.is_dir()):
        if n >= images:
            break
        files = sorted(person.glob("*.jpg"))
        (root / person.name).mkdir(parents=True)
        for f in files:
            shutil.copy(f, root / person.name / f.name)
        n += len(files)
    return n


def state(path: Path) -> tuple[dict, dict]:
    import facedex

    with facedex.Gallery.open(path) as g:
        people = {p.name: sorted((f["path"], f["sha256"]) for f in g.store.faces_of(p.name)) for p in g.people()}
        vecs = {p.name: g.store.vectors_of(p.name) for p in g.people()}
    return people, vecs


def same(a: Path, b: Path) -> dict:
    pa, va = state(a)
    pb, vb = state(b)
    shapes = all(va[n].shape == vb.get(n, np.zeros(0)).shape for n in va) and pa.keys() == pb.keys()
    diff = max((float(np.abs(va[n] - vb[n]).max()) for n in va if len(va[n])), default=0.0) if shapes else None
    cos = min((float((va[n] * vb[n]).sum(axis=1).min()) for n in va if len(va[n])), default=1.0) if shapes else None
    return {"same_people_and_sources": pa == pb, "embedding_max_abs_difference": diff,
            "embedding_min_cosine": cos, "people": len(pa), "faces": int(sum(len(v) for v in va.values()))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--actors", default="1,2")
    args = ap.parse_args()

    import ray

    import facedex
    from facedex.engines.ray import RayOptions, enroll

    work = Path(tempfile.mkdtemp(prefix="facedex-ray-bench-"))
    try:
        root = work / "people"
        n = people_folder(root, args.images)
        print(f"{n} images in {len(list(root.iterdir()))} person folders", flush=True)
        results: dict = {"images": n, "runs": []}
        local = work / "local.gallery"
        t0 = time.perf_counter()
        with facedex.Gallery.open(local, create=True) as g:
            g.pipeline.embedder  # noqa: B018 - models loaded before the clock, as each actor does in its start-up
            g.pipeline.detector  # noqa: B018
            t0 = time.perf_counter()
            rep = g.enroll(root)
        secs = time.perf_counter() - t0
        results["runs"].append({"engine": "local", "actors": None, "seconds": round(secs, 1),
                                "images_per_s": round(n / secs, 1), "added": rep.added, "failed": rep.failed})
        print(results["runs"][-1], flush=True)
        for actors in [int(a) for a in args.actors.split(",")]:
            t0 = time.perf_counter()
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            ray.data.DataContext.get_current().enable_progress_bars = False
            start = time.perf_counter() - t0
            path = work / f"ray{actors}.gallery"
            t1 = time.perf_counter()
            with facedex.Gallery.open(path, create=True) as g:
                rep = enroll(g, [root], options=RayOptions(actors=actors, batch_size=32, shard_size=250))
            secs = time.perf_counter() - t1
            t2 = time.perf_counter()
            with facedex.Gallery.open(path) as g:
                again = enroll(g, [root], options=RayOptions(actors=actors, batch_size=32, shard_size=250))
            resume = time.perf_counter() - t2
            ray.shutdown()
            row = {"engine": "ray", "actors": actors, "ray_start_s": round(start, 1), "seconds": round(secs, 1),
                   "images_per_s": round(n / secs, 1), "added": rep.added, "failed": rep.failed,
                   "rerun_seconds": round(resume, 1), "rerun_added": again.added, **same(local, path)}
            results["runs"].append(row)
            print(row, flush=True)
        results["milvus"] = milvus_check(work / "ray1.gallery" if (work / "ray1.gallery").exists() else local, work)
        print(results["milvus"], flush=True)
        out = save("ray", {**results, "note": "2-core machine shared with other jobs while it ran"})
        print(f"written {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def milvus_check(gallery: Path, work: Path) -> dict:
    from search import lfw_embeddings

    import facedex

    probes, _ = lfw_embeddings()
    copy = work / "milvus.gallery"
    shutil.copy(gallery, copy)
    with facedex.Gallery.open(copy) as g:
        t0 = time.perf_counter()
        want = g.decide(probes)
        faiss_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        g.set_search_backend("milvus", uri=str(work / "faces.db"))
        fill_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        got = g.decide(probes)
        milvus_s = time.perf_counter() - t0
        faces = g.counts()["faces"]
    names = sum(a.name == b.name for a, b in zip(want, got))
    cands = sum([c.name for c in a.candidates] == [c.name for c in b.candidates] for a, b in zip(want, got))
    diff = max(abs(a.similarity - b.similarity) for a, b in zip(want, got))
    return {"gallery_faces": faces, "probes": len(probes),
            "same_decision": names, "same_candidate_lists": cands, "max_similarity_difference": float(diff),
            "named_by_faiss": sum(a.name is not None for a in want), "faiss_s": round(faiss_s, 2),
            "milvus_fill_s": round(fill_s, 2), "milvus_s": round(milvus_s, 2)}


if __name__ == "__main__":
    main()
