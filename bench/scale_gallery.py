"""A large gallery end to end: the index kept beside it, built, loaded, updated, forgotten.

    python bench/scale_gallery.py [--faces 200000]

Synthetic faces (the generator of bench/search.py, fitted to LFW's SFace
embeddings) are stored in a real gallery file as embedding-only faces; then
the gallery is used as a program would: the first search builds
``GALLERY.index``, a reopened gallery loads it, 100 new faces are enrolled
and the index updated by difference, one person is forgotten (the index file
rewritten before ``forget`` returns), faces are identified one at a time, and
the gallery is calibrated (``Gallery.calibrate``: its own index scores the
leave-one-person-out searches).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--faces", type=int, default=200_000)
    args = ap.parse_args()

    from search import generator

    import facedex
    from facedex.gallery.index import index_path
    from facedex.gallery.store import FaceRecord

    data = generator().sample_gallery(args.faces, probes=500, strangers=0, seed=1)
    out: dict = {"faces": args.faces}
    with tempfile.TemporaryDirectory(prefix="facedex-scale-") as tmp:
        path = Path(tmp) / "big.gallery"
        t0 = time.perf_counter()
        with facedex.Gallery.open(path, create=True) as g:
            zero = ((0.0, 0.0, 0.0, 0.0), ((0.0, 0.0),) * 5)
            bounds = np.flatnonzero(np.diff(np.concatenate([[-1], data.labels, [data.labels[-1] + 1]])))
            with g.store.transaction() as c:  # one transaction: as an import does it
                from facedex.gallery.store import GalleryStore

                people = {}
                for lo, hi in zip(bounds[:-1], bounds[1:]):
                    name = f"person-{int(data.labels[lo]):07d}"
                    pid = people[name] = int(c.execute("INSERT INTO people(name, created_at) VALUES(?, ?)",
                                                       (name, time.time())).lastrowid)
                    for v in data.gallery[lo:hi]:
                        GalleryStore._insert_face(c, pid, None, FaceRecord(zero[0], zero[1], 0.0, v), 128)
                GalleryStore._bump(c)
        out["store_s"] = round(time.perf_counter() - t0, 1)
        with facedex.Gallery.open(path) as g:
            t0 = time.perf_counter()
            g.decide(data.genuine[:1], threshold=0.5)
            out["first_search_builds_index_s"] = round(time.perf_counter() - t0, 1)
            out["index"] = g.index_recipe()[0]
        out["index_file_mb"] = round(index_path(path).stat().st_size / 2**20, 1)
        with facedex.Gallery.open(path) as g:
            t0 = time.perf_counter()
            g.decide(data.genuine[:1], threshold=0.5)
            out["reopen_first_search_s"] = round(time.perf_counter() - t0, 2)
            for q in data.genuine[:20]:
                g.decide(q[None], threshold=0.5)
            t0 = time.perf_counter()
            for q in data.genuine[20:]:
                g.decide(q[None], threshold=0.5)
            out["ms_per_face"] = round((time.perf_counter() - t0) / (len(data.genuine) - 20) * 1000, 2)
            new = data.genuine[:100]
            t0 = time.perf_counter()
            g.add_embeddings("newcomer", new, g.embedder_card.id)
            out["enroll_100_update"] = g.update_index()
            out["enroll_100_update_s"] = round(time.perf_counter() - t0, 2)
            victim = f"person-{int(data.labels[0]):07d}"
            t0 = time.perf_counter()
            removed = g.forget(victim)
            out["forget_s"] = round(time.perf_counter() - t0, 2)
            out["forget_removed_faces"] = removed["faces"]
            t0 = time.perf_counter()
            cal = g.calibrate(0.01)
            out["calibrate_s"] = round(time.perf_counter() - t0, 1)
            out["calibrate"] = {"threshold": round(cal.value, 4), "searches": cal.details["stranger_searches"],
                                "estimated_fnir": cal.details["estimated_fnir"]}
        out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(out)
    print(f"written {save('scale_gallery', {**out, 'note': 'machine shared with other jobs while it ran'})}")


if __name__ == "__main__":
    main()
