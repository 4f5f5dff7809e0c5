"""Finding a person in an indexed library (`facedex find`, issue #14): recall
and false appearances on a library of LFW photos whose truth is known; and
what indexing a folder costs, first time and again.

    python bench/find_bench.py            # writes bench/results/find.json, bench/sections/61_find.md
    python bench/find_bench.py --quick    # 60 people, a smaller index run

The people with at least 10 LFW photos (158) are enrolled with their first 5
photos; the library holds every other LFW photo (12,443: the rest of theirs,
and 5,591 other people, 4,069 of them seen once) as sightings — one face
per photo, the one nearest the centre, with the cached embeddings of
bench/cluster_bench.py. For each enrolled person `find` lists appearances;
an appearance is right when the photo is theirs. Recall: share of their
library photos found; false appearances: wrong ones among all listed, and
per 1,000 photos of other people searched. At the embedder's default
threshold and after `facedex calibrate --fpir 0.01`; beside it, what a
search that skips the open-set decision (any photo similar enough to one of
the person's faces) would list.

Indexing: `facedex index` (decode, detect every face, embed, crops, store)
on LFW photos, then the same folder again (nothing changed: files are only
stat'ed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cluster_bench import EMBEDDER, lfw_embeddings  # noqa: E402
from common import REPO, RESULTS, lfw_dir, lfw_sample, save  # noqa: E402

SECTION = REPO / "bench" / "sections" / "61_find.md"


def build(data: dict, people_limit: int | None, gallery: Path):
    import facedex
    from facedex.library.store import LibraryStore, NewSighting, NewSource

    x, labels, names = data["vectors"], data["labels"], data["people"]
    counts = np.bincount(labels)
    enrolled = [p for p in range(len(names)) if counts[p] >= 10][:people_limit]
    enrolled_rows = set()
    with facedex.Gallery.open(gallery, create=True, embedder=EMBEDDER) as g:
        for p in enrolled:
            rows = np.flatnonzero(labels == p)[:5]
            enrolled_rows.update(rows.tolist())
            g.add_embeddings(str(names[p]), x[rows], g.embedder_card.id)
        lib = LibraryStore(g.store)
        zero = [(0.0, 0.0)] * 5
        library_rows = [i for i in range(len(x)) if i not in enrolled_rows]
        batch = []
        for i in library_rows:
            batch.append((NewSource(f"/lfw/{data['paths'][i]}", f"{i:064x}", 1, 0, "image", "JPEG", 250, 250),
                          [NewSighting((70, 60, 110, 130), zero, 0.9, 0.8, x[i])]))
        lib.store(batch)
    return enrolled, library_rows


def measure(g, enrolled, library_rows, data, threshold=None) -> dict:
    from facedex.library import find

    labels, names = data["labels"], data["people"]
    path_person = {f"/lfw/{data['paths'][i]}": int(labels[i]) for i in library_rows}
    lib_labels = labels[library_rows]
    x_lib = data["vectors"][library_rows]
    found = right = truth_total = wrong = others = 0
    naive_right = naive_wrong = 0
    t_value = None
    seconds = []
    for p in enrolled:
        t = time.perf_counter()
        r = find(g, str(names[p]), threshold=threshold)
        seconds.append(time.perf_counter() - t)
        t_value = r.threshold.value
        hits = [path_person[a.sighting.source] for a in r.appearances]
        n_truth = int((lib_labels == p).sum())
        truth_total += n_truth
        others += len(library_rows) - n_truth
        found += len(hits)
        right += sum(h == p for h in hits)
        wrong += sum(h != p for h in hits)
        # without the open-set decision: anything as similar as the threshold to one of their faces
        mine = data["vectors"][np.flatnonzero(labels == p)[:5]]
        near = (x_lib @ mine.T).max(axis=1) >= t_value
        naive_right += int((near & (lib_labels == p)).sum())
        naive_wrong += int((near & (lib_labels != p)).sum())
    return {"threshold": round(t_value, 4), "people": len(enrolled), "library_photos": len(library_rows),
            "their_photos": truth_total, "appearances": found, "recall": round(right / truth_total, 4),
            "false_appearances": wrong, "false_share": round(wrong / max(found, 1), 4),
            "false_per_1000_other_photos": round(1000 * wrong / max(others, 1), 4),
            "naive": {"recall": round(naive_right / truth_total, 4), "false_appearances": naive_wrong,
                      "false_share": round(naive_wrong / max(naive_right + naive_wrong, 1), 4)},
            "seconds_per_search": round(float(np.median(seconds)), 3)}


def index_run(n: int, work: Path) -> dict:
    import facedex
    from facedex.library import index_library

    folder = work / "photos"
    folder.mkdir()
    for i, p in enumerate(lfw_sample(n)):
        shutil.copy(p, folder / f"{i:05d}.jpg")
    gallery = work / "index.gallery"
    with facedex.Gallery.open(gallery, create=True, embedder=EMBEDDER) as g:
        _ = g.pipeline  # models loaded before the clock starts
        t = time.perf_counter()
        first = index_library(g, [folder])
        t1 = time.perf_counter()
        again = index_library(g, [folder])
        t2 = time.perf_counter()
    return {"photos": n, "faces": first.sightings_added, "failed": first.failed, "seconds": round(t1 - t, 1),
            "photos_per_s": round(n / (t1 - t), 1), "faces_per_s": round(first.sightings_added / (t1 - t), 1),
            "again_seconds": round(t2 - t1, 2), "again_unchanged": again.count("unchanged"),
            "gallery_mb": round(gallery.stat().st_size / 2 ** 20, 2)}


def render(d: dict) -> str:
    m = d["machine"]
    out = ["## Library: where does a person appear? (`facedex find`)\n",
           f"`python bench/find_bench.py` — _{m['cpu']}, {m['cores']} cores, commit {m['commit']}, {m['date']}_\n",
           f"{d['default']['people']} LFW people enrolled with 5 photos each; the library: the other "
           f"{d['default']['library_photos']:,} LFW photos ({d['default']['their_photos']:,} of the enrolled people). "
           "An appearance is right when the photo is the person's.\n",
           "| threshold | recall | appearances listed | false appearances | share of the list | per 1,000 other "
           "people's photos | without the open-set decision: recall / false | search time |",
           "|---|---|---|---|---|---|---|---|"]
    for key, label in (("default", "default"), ("calibrated", "calibrated, FPIR 1 %")):
        r = d[key]
        out.append(f"| {r['threshold']:.3f} ({label}) | {100 * r['recall']:.2f} % | {r['appearances']:,} | "
                   f"{r['false_appearances']} | {100 * r['false_share']:.2f} % | {r['false_per_1000_other_photos']:.3f} | "
                   f"{100 * r['naive']['recall']:.2f} % / {r['naive']['false_appearances']} | "
                   f"{1000 * r['seconds_per_search']:.0f} ms |")
    ix = d["index"]
    out.append(f"\n**Indexing** {ix['photos']} LFW photos: {ix['seconds']} s ({ix['photos_per_s']} photos/s, "
               f"{ix['faces_per_s']} faces/s, {ix['faces']} faces: background faces included), gallery "
               f"{ix['gallery_mb']} MB with crops; the same folder again: {ix['again_seconds']} s "
               f"({ix['again_unchanged']} files unchanged, not read).\n")
    if d.get("load"):
        out.append(f"_Load average on the machine during the run: {d['load']}; other jobs shared the 2 cores, so "
                   "the times are upper bounds._\n")
    return "\n".join(out) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="60 people, 100 photos indexed")
    ap.add_argument("--render", action="store_true", help="only write the section again from bench/results/find.json")
    args = ap.parse_args()
    if args.render:
        SECTION.write_text(render(json.loads((RESULTS / "find.json").read_text())))
        print(f"written {SECTION}")
        return
    load = [round(x, 1) for x in os.getloadavg()]
    import facedex

    lfw_dir()
    data = lfw_embeddings()
    limit = 60 if args.quick else None
    result = {"embedder": EMBEDDER}
    with tempfile.TemporaryDirectory(prefix="facedex-find-bench-") as work:
        work = Path(work)
        gallery = work / "find.gallery"
        enrolled, rows = build(data, limit, gallery)
        with facedex.Gallery.open(gallery) as g:
            result["default"] = measure(g, enrolled, rows, data)
            print(json.dumps(result["default"]), flush=True)
            t = g.calibrate(0.01)
            result["calibration"] = {"threshold": t.value, **{k: t.details.get(k) for k in ("measured_fpir",
                                                                                            "low_confidence")}}
            result["calibrated"] = measure(g, enrolled, rows, data)
            print(json.dumps(result["calibrated"]), flush=True)
        result["index"] = index_run(100 if args.quick else 500, work)
        print(json.dumps(result["index"]), flush=True)
    load += [round(x, 1) for x in os.getloadavg()]
    result["load"] = f"{min(load)}–{max(load)} (1-, 5- and 15-minute averages at the start and the end)"
    path = save("find_quick" if args.quick else "find", result)
    if not args.quick:
        SECTION.write_text(render(json.loads(path.read_text())))
    print(f"written {path}" + ("" if args.quick else f" and {SECTION}"))


if __name__ == "__main__":
    main()
