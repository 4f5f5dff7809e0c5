"""Batch work on Ray against the local engine (enroll, index, clean), and Milvus against faiss.

    python bench/ray_bench.py [--images 1000] [--actors 1,2] [--parts enroll index clean milvus]
                              [--clean-images N]

Every part runs on the same folder: the first ``--images`` LFW images (whole
person folders, in name order). Each Ray run starts a local Ray of 2 CPUs
(start-up timed and shown apart; the engine attaches to it, as the tests'
fixture does) with 1 and 2 actors of 1 CPU each (onnxruntime on 1 thread per
actor); the local engine is this process (all cores). Times are wall clock.
The 1-, 5- and 15-minute load averages at the start and end of each part are
saved with the results (``load_average``): the machine may be shared.

1. enroll (``Gallery.enroll`` vs ``facedex.engines.ray.enroll``): images/s,
   and whether the galleries hold the same people, sources and faces
   (embeddings within 1e-4) as the local engine's. A second Ray run over the
   same folder shows the resume (every shard already written: nothing embedded).
2. index (``facedex.library.LibraryIndexer(gallery, ray=…)``, what ``facedex
   index LIBRARY [--engine ray]`` runs): photos/s, and whether the library
   holds the same sightings as the local engine's (same sources with the same
   sizes and formats, faces per photo, boxes within a pixel, embeddings at
   cosine > 0.999, quality, crops). A second run into the same gallery shows
   the rerun (every file unchanged: nothing read, nothing sent to Ray).
3. clean (``facedex.clean.clean(src, dst, ray=…)``, what ``facedex clean SRC
   DST [--engine ray]`` runs; ``--clean-images`` for a smaller folder):
   images/s, and whether the decisions (kept / rejected with the reason) and
   the analyses (sizes, rotation, faces, boxes within a pixel, embeddings at
   cosine > 0.999) are the local engine's. A second run into the same DST
   shows the rerun (every analysis in the cache: 0 analysed).
4. milvus: the Ray enroll gallery (the local one when enroll did not run on
   Ray) is searched with every LFW image (13,233 probes, SFace embeddings from
   the cache bench/search.py uses) through faiss (exact) and through the
   Milvus backend (milvus-lite, FLAT): same names, same similarities?

Results: bench/results/ray.json (all parts), or ray_<parts>.json for a subset.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lfw_dir, save  # noqa: E402

PARTS = ("enroll", "index", "clean", "milvus")


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


def load_average(part: str, when: str) -> list[float]:
    """Show ``uptime`` and return the 1-, 5- and 15-minute load averages."""
    try:
        line = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        line = ""
    print(f"[{part} {when}] {line}", flush=True)
    return [round(x, 2) for x in os.getloadavg()]


def start_ray() -> float:
    """A local Ray of 2 CPUs, as the tests start one; returns the seconds it took."""
    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return time.perf_counter() - t0


# --- enroll ----------------------------------------------------------------------------------------
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


def enroll_part(root: Path, n: int, work: Path, actors_list: list[int]) -> list[dict]:
    import ray

    import facedex
    from facedex.engines.ray import RayOptions, enroll

    runs = []
    local = work / "local.gallery"
    with facedex.Gallery.open(local, create=True) as g:
        g.pipeline.embedder  # noqa: B018 - models loaded before the clock, as each actor does in its start-up
        g.pipeline.detector  # noqa: B018
        t0 = time.perf_counter()
        rep = g.enroll(root)
    secs = time.perf_counter() - t0
    runs.append({"engine": "local", "actors": None, "seconds": round(secs, 1),
                 "images_per_s": round(n / secs, 1), "added": rep.added, "failed": rep.failed})
    print(runs[-1], flush=True)
    for actors in actors_list:
        start = start_ray()
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
        runs.append(row)
        print(row, flush=True)
    return runs


# --- index -----------------------------------------------------------------------------------------
def library(path: Path) -> tuple[dict, dict]:
    """source → [(box, embedding, quality, has crop, kind)] sorted by box, and
    source → (kind, format, width, height) — as tests/test_scale_ray.py reads them."""
    import facedex
    from facedex.library import LibraryStore

    with facedex.Gallery.open(path) as g:
        lib = LibraryStore(g.store, create=False)
        table = lib.table()
        found = lib.sightings(table.ids)
        out: dict[str, list] = {}
        for sid, vec, q in zip(table.ids, table.vectors, table.quality):
            s = found[int(sid)]
            out.setdefault(s.source, []).append((np.asarray(s.box, dtype=float), np.asarray(vec, dtype=np.float64),
                                                 float(q), bool(lib.crop(int(sid))), s.kind))
        sources = {r[0]: r[1:] for r in g.store._conn.execute(
            "SELECT path, kind, format, width, height FROM library_sources")}
    return {k: sorted(v, key=lambda r: tuple(r[0])) for k, v in out.items()}, sources


def same_sightings(a: Path, b: Path) -> dict:
    la, sa = library(a)
    lb, sb = library(b)
    per_photo = sa.keys() == sb.keys() and all(len(la.get(s, [])) == len(lb.get(s, [])) for s in sa)
    box = cos = quality = None
    if per_photo:
        box, cos, quality = 0.0, 1.0, 0.0
        for s in la:
            for x, y in zip(la[s], lb[s]):
                box = max(box, float(np.abs(x[0] - y[0]).max()))
                cos = min(cos, float(x[1] @ y[1] / (np.linalg.norm(x[1]) * np.linalg.norm(y[1]))))
                quality = max(quality, abs(x[2] - y[2]))
    crops = all(r[3] for v in lb.values() for r in v)
    return {"same_sources": sa == sb, "same_faces_per_photo": per_photo,
            "box_max_abs_difference_px": box, "embedding_min_cosine": cos, "quality_max_abs_difference": quality,
            "every_sighting_has_a_crop": crops,
            "same_sightings": bool(per_photo and sa == sb and box <= 1.0 and cos > 0.999 and crops),
            "photos_with_faces": len(lb), "sightings": int(sum(len(v) for v in lb.values()))}


def index_once(path: Path, root: Path, ray_options, *, preload: bool) -> tuple[float, dict]:
    from collections import Counter

    import facedex
    from facedex.library import LibraryIndexer

    with facedex.Gallery.open(path, create=True) as g:
        if preload:
            g.pipeline.embedder  # noqa: B018 - models loaded before the clock, as in the enroll part
            g.pipeline.detector  # noqa: B018
        t0 = time.perf_counter()
        run = LibraryIndexer(g, ray=ray_options)
        run.run([root])
        secs = time.perf_counter() - t0
    status = Counter(i.status for i in run.items)
    r = run.ray_run
    return secs, {"indexed": status["indexed"], "unchanged": status["unchanged"], "failed": status["failed"],
                  "sightings_added": sum(i.sightings for i in run.items if i.status in ("indexed", "updated",
                                                                                          "duplicate")),
                  "ray_images": r.images if r is not None else 0,
                  "ray_shards_written": (len(r.shard_files) - r.shards_skipped) if r is not None else 0}


def index_part(root: Path, n: int, work: Path, actors_list: list[int]) -> list[dict]:
    import ray

    from facedex.engines.ray import RayOptions

    runs = []
    local = work / "index-local.gallery"
    secs, first = index_once(local, root, None, preload=True)
    again_s, again = index_once(local, root, None, preload=False)
    runs.append({"engine": "local", "actors": None, "seconds": round(secs, 1), "photos_per_s": round(n / secs, 1),
                 **first, "rerun_seconds": round(again_s, 2), "rerun_unchanged": again["unchanged"],
                 "rerun_sightings_added": again["sightings_added"]})
    print(runs[-1], flush=True)
    base = runs[0]["photos_per_s"]
    for actors in actors_list:
        start = start_ray()
        path = work / f"index-ray{actors}.gallery"
        opts = RayOptions(actors=actors, batch_size=32, shard_size=250)
        secs, first = index_once(path, root, opts, preload=False)
        again_s, again = index_once(path, root, opts, preload=False)
        ray.shutdown()
        row = {"engine": "ray", "actors": actors, "ray_start_s": round(start, 1), "seconds": round(secs, 1),
               "photos_per_s": round(n / secs, 1), "vs_local": round(n / secs / base, 2), **first,
               "rerun_seconds": round(again_s, 2), "rerun_unchanged": again["unchanged"],
               "rerun_sightings_added": again["sightings_added"], "rerun_ray_images": again["ray_images"],
               **same_sightings(local, path)}
        runs.append(row)
        print(row, flush=True)
    return runs


# --- clean -----------------------------------------------------------------------------------------
def analyses(dst: Path) -> dict:
    from facedex.clean.analyze import ROW_COLUMNS, from_row

    with sqlite3.connect(dst / ".facedex-clean" / "cache.sqlite") as db:
        return {r[0]: from_row(r[0], r[1:]) for r in db.execute(f"SELECT sha256, {', '.join(ROW_COLUMNS)} "
                                                                 "FROM analysis")}


def same_analyses(a: Path, b: Path) -> dict:
    x_all, y_all = analyses(a), analyses(b)
    same_images = sorted(x_all) == sorted(y_all)
    shape_diff, box, cos = 0, 0.0, 1.0
    for sha in x_all.keys() & y_all.keys():
        x, y = x_all[sha], y_all[sha]
        if (x.width, x.height, x.rotation, len(x.faces), bool(x.error)) != \
                (y.width, y.height, y.rotation, len(y.faces), bool(y.error)):
            shape_diff += 1
            continue
        for f, g in zip(x.faces, y.faces):
            box = max(box, float(np.abs(np.asarray(f.face.box, float) - np.asarray(g.face.box, float)).max()))
            cos = min(cos, float(f.embedding @ g.embedding) / float(np.linalg.norm(f.embedding) *
                                                                   np.linalg.norm(g.embedding)))
    return {"same_analysed_images": same_images, "analyses_differing_in_size_rotation_faces_or_error": shape_diff,
            "box_max_abs_difference_px": box, "embedding_min_cosine": cos}


def cache_errors(dst: Path) -> dict:
    """How many analyses DST's cache holds, and how many of them record an error (text or not)."""
    try:
        with sqlite3.connect(dst / ".facedex-clean" / "cache.sqlite") as db:
            total, errors, text = db.execute("SELECT count(*), count(error), sum(typeof(error) = 'text') "
                                             "FROM analysis").fetchone()
    except sqlite3.Error:
        return {}
    return {"cached_analyses": total, "cached_with_error": errors, "cached_with_text_error": int(text or 0)}


def decisions(report) -> list[tuple]:
    return sorted((d.person, d.rel, d.status, d.reason or "") for d in report.decisions)


def clean_part(root: Path, work: Path, actors_list: list[int]) -> list[dict]:
    import ray

    from facedex.clean import clean
    from facedex.engines.ray import RayOptions

    def once(dst: Path, opts) -> tuple[float, object]:
        t0 = time.perf_counter()
        rep = clean(root, dst, ray=opts)  # library defaults = the command's (models load inside, as on Ray)
        return time.perf_counter() - t0, rep

    def row(secs: float, rep, again_s: float, again) -> dict:
        s = rep.summary
        return {"seconds": round(secs, 1), "images": s["images"], "images_per_s": round(s["images"] / secs, 1),
                "analysed": rep.analysed, "kept": s["kept"], "rejected": s["rejected"],
                "by_reason": dict(sorted(s["by_reason"].items())), "written": rep.written,
                "rerun_seconds": round(again_s, 1), "rerun_analysed": again.analysed,
                "rerun_reused_from_cache": again.reused, "rerun_same_decisions": decisions(again) == decisions(rep)}

    runs = []
    local = work / "clean-local"
    secs, want = once(local, None)
    again_s, again = once(local, None)
    runs.append({"engine": "local", "actors": None, **row(secs, want, again_s, again)})
    print(runs[-1], flush=True)
    base = runs[0]["images_per_s"]
    for actors in actors_list:
        start = start_ray()
        dst = work / f"clean-ray{actors}"
        opts = RayOptions(actors=actors, batch_size=32)
        t0 = time.perf_counter()
        try:
            secs, got = once(dst, opts)
            again_s, again = once(dst, opts)
        except Exception as err:  # noqa: BLE001 - a failed run is a result: recorded, and the next part runs
            runs.append({"engine": "ray", "actors": actors, "ray_start_s": round(start, 1),
                         "error": f"{type(err).__name__}: {err}",
                         "seconds_until_error": round(time.perf_counter() - t0, 1), **cache_errors(dst)})
            print(runs[-1], flush=True)
            continue
        finally:
            ray.shutdown()
        mine, theirs = decisions(got), decisions(want)
        r = {"engine": "ray", "actors": actors, "ray_start_s": round(start, 1), **row(secs, got, again_s, again)}
        r["vs_local"] = round(r["images_per_s"] / base, 2)
        r.update({"same_decisions": mine == theirs, "decisions_differing": len(set(mine) ^ set(theirs)) // 2
                  if len(mine) == len(theirs) else None, **same_analyses(local, dst)})
        runs.append(r)
        print(r, flush=True)
    return runs


# --- milvus ----------------------------------------------------------------------------------------
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--clean-images", type=int, default=None, help="images for the clean part (default: --images)")
    ap.add_argument("--actors", default="1,2")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), metavar="PART",
                    help=f"which parts to run ({', '.join(PARTS)}; default: all)")
    args = ap.parse_args()
    parts = [p for p in PARTS if p in args.parts]
    actors_list = [int(a) for a in args.actors.split(",")]

    import facedex

    work = Path(tempfile.mkdtemp(prefix="facedex-ray-bench-"))
    try:
        root = work / "people"
        n = people_folder(root, args.images)
        print(f"{n} images in {len(list(root.iterdir()))} person folders", flush=True)
        results: dict = {"images": n, "parts": parts, "load_average": {}}

        def measured(part: str, fn):
            load = {"start": load_average(part, "start")}
            value = fn()
            load["end"] = load_average(part, "end")
            results["load_average"][part] = load
            return value

        if "enroll" in parts:
            results["runs"] = measured("enroll", lambda: enroll_part(root, n, work, actors_list))
        if "index" in parts:
            results["index"] = {"photos": n, "runs": measured("index", lambda: index_part(root, n, work,
                                                                                          actors_list))}
        if "clean" in parts:
            src = root
            if args.clean_images and args.clean_images < n:
                src = work / "people-clean"
                people_folder(src, args.clean_images)
            results["clean"] = {"runs": measured("clean", lambda: clean_part(src, work, actors_list))}
        if "milvus" in parts:
            gallery = next((work / f"ray{a}.gallery" for a in actors_list if (work / f"ray{a}.gallery").exists()),
                           work / "local.gallery")
            if not gallery.exists():  # enroll did not run: an untimed local enrollment to search
                with facedex.Gallery.open(gallery, create=True) as g:
                    g.enroll(root)
            results["milvus"] = measured("milvus", lambda: milvus_check(gallery, work))
            print(results["milvus"], flush=True)
        name = "ray" if parts == list(PARTS) else "ray_" + "_".join(parts)
        out = save(name, {**results, "note": "2-core machine, possibly shared with other jobs while it ran: "
                                             "see load_average (1, 5, 15 min) at the start and end of each part"})
        print(f"written {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
