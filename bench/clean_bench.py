"""How well `facedex clean` cleans: a noisy LFW subset with known noise, per noise
type the share removed (recall) and the share of clean images wrongly removed
(loss), and what cleaning does to 1:N identification.

    python bench/clean_bench.py [--quick] [--work DIR]

The noisy set comes from bench/noisy_lfw.py (all 158 people with >= 10 LFW
images; --quick: 30 of them). Identification: galleries enrolled from the
noisy folders (largest face of every image, as a naive user would) and from
the cleaned output (the kept faces), searched with 3 held-out photos per
person and 500 strangers, with the 1:N evaluation code of `facedex eval identify`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LFW, save  # noqa: E402
from noisy_lfw import build  # noqa: E402


def score(truth: dict, manifest: list[dict]) -> dict:
    dec = {(m["person"], m["source"]): m for m in manifest}
    files = truth["files"]
    by_kind: dict[str, list[dict]] = defaultdict(list)
    for f in files:
        by_kind[f["kind"]].append(f)
    removed = {k: (dec[(f["folder"], f["file"])]["decision"] == "rejected") for f in files
               for k in [f["file"]]}
    out: dict[str, dict] = {}
    for kind in ("wrong_person", "no_face"):
        rows = by_kind[kind]
        out[kind] = {"files": len(rows), "removed": sum(removed[f["file"]] for f in rows)}
        out[kind]["recall"] = out[kind]["removed"] / max(1, len(rows))
    for kind in ("duplicate", "near_duplicate"):
        rows = by_kind[kind]
        pairs_ok = sum(1 for f in rows if removed[f["file"]] != removed[f["ref"]] or
                       (removed[f["file"]] and dec[(f["folder"], f["ref"])]["reason"] not in ("duplicate", "near_duplicate")))
        out[kind] = {"files": len(rows), "removed": sum(removed[f["file"]] for f in rows),
                     "pairs_resolved": pairs_ok, "recall": pairs_ok / max(1, len(rows))}
    rows = by_kind["rotated"]
    kept_rot = [f for f in rows if not removed[f["file"]]]
    out["rotated"] = {"files": len(rows), "recovered": len(kept_rot),
                      "recovery": len(kept_rot) / max(1, len(rows)),
                      "rotation_right": sum(1 for f in kept_rot
                                            if (360 - dec[(f["folder"], f["file"])].get("rotation", 0)) % 360 == f["rotation"])}
    rows = by_kind["composite"]
    right = 0
    for f in rows:
        m = dec[(f["folder"], f["file"])]
        if m["decision"] == "kept" and m["box"][0] + m["box"][2] / 2 < 250:
            right += 1
    out["composite"] = {"files": len(rows), "kept_with_right_face": right, "share": right / max(1, len(rows)),
                        "rejected": sum(removed[f["file"]] for f in rows)}
    clean_rows = by_kind["clean"]
    dup_refs = {f["ref"] for f in by_kind["duplicate"] + by_kind["near_duplicate"]}
    lost = [f for f in clean_rows if removed[f["file"]] and not (
        f["file"] in dup_refs and dec[(f["folder"], f["file"])]["reason"] in ("duplicate", "near_duplicate"))]
    out["clean"] = {"files": len(clean_rows), "wrongly_removed": len(lost), "loss": len(lost) / max(1, len(clean_rows)),
                    "loss_by_reason": dict(Counter(dec[(f["folder"], f["file"])]["reason"] for f in lost))}
    return out


def identification(truth: dict, manifest: list[dict], src: Path, strangers: int = 500) -> dict:
    """rank-1 and FNIR at FPIR 1 % for galleries enrolled from the noisy and the cleaned folders."""
    from facedex.evaluate.identification import open_set
    from facedex.identify import evidence_scores
    from facedex.evaluate.lfw import embed_central_faces
    from facedex.faces.detect import central_face  # noqa: F401  (the protocol's face choice)
    from facedex.media import load_image
    from facedex.pipeline import FacePipeline

    pipe = FacePipeline()
    names = truth["people"]
    label = {n: i for i, n in enumerate(names)}
    # noisy gallery: the largest face of every image in every folder, labelled by its folder
    noisy_vecs, noisy_labels = [], []
    for f in truth["files"]:
        faces = pipe.analyze(load_image(src / f["file"]))
        if faces:
            best = max(faces, key=lambda a: a.face.area)
            noisy_vecs.append(best.embedding)
            noisy_labels.append(label[f["folder"]])
    # cleaned gallery: the kept faces (embeddings recomputed from the source with the chosen face)
    clean_vecs, clean_labels = [], []
    for m in manifest:
        if m["decision"] != "kept":
            continue
        im = load_image(src / m["source"])
        k = (m.get("rotation", 0) // 90) % 4
        im = np.ascontiguousarray(np.rot90(im, k)) if k else im
        faces = pipe.detector.detect(im)
        face = min(faces, key=lambda fc: np.abs(np.array(fc.box) - np.array(m["box"])).sum())
        clean_vecs.append(pipe.embed_faces(im, [face])[0])
        clean_labels.append(label[m["person"]])
    probe_paths = [Path(p) for n in names for p in truth["probes"][n]]
    probe_labels = np.array([label[n] for n in names for _ in truth["probes"][n]])
    pool = sorted(d for d in LFW.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) < 10)
    rng = np.random.default_rng(1)
    stranger_paths = [sorted(pool[i].glob("*.jpg"))[0] for i in sorted(rng.choice(len(pool), strangers, replace=False))]
    probes = embed_central_faces(probe_paths, pipe).vectors
    others = embed_central_faces(stranger_paths, pipe).vectors
    out = {}
    for name, vecs, labs in (("noisy", noisy_vecs, noisy_labels), ("cleaned", clean_vecs, clean_labels)):
        g, gl = np.stack(vecs), np.array(labs)
        ps = evidence_scores(probes, g, gl, len(names))
        top = ps.argmax(1)
        gen_top = ps[np.arange(len(ps)), top]
        ss = evidence_scores(others, g, gl, len(names)).max(1)
        (r,) = open_set(gen_top, top == probe_labels, ss, targets=[0.01])
        out[name] = {"gallery_faces": len(g), "rank1": float(np.mean(top == probe_labels)),
                     "fnir_at_fpir_0.01": r.fnir, "threshold": r.threshold}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="30 people instead of all 158")
    ap.add_argument("--work", type=Path, default=None, help="where to build the noisy set (default: a temp dir)")
    args = ap.parse_args()
    from facedex.clean import CleanConfig, clean

    work = args.work or Path(tempfile.mkdtemp(prefix="facedex-clean-bench-"))
    info = build(work, 30 if args.quick else None, seed=0)
    truth = json.loads((work / "truth.json").read_text())
    t0 = time.perf_counter()
    report = clean(work / "noisy", work / "clean", CleanConfig(split=0.2), report_html=work / "report.html")
    seconds = time.perf_counter() - t0
    manifest = [json.loads(x) for x in (work / "clean" / "manifest.jsonl").read_text().splitlines() if x.strip()]
    metrics = score(truth, manifest)
    ident = identification(truth, manifest, work / "noisy")
    for k, v in metrics.items():
        print(k, v)
    print("identification", ident)
    name = "clean_quick" if args.quick else "clean"
    out = save(name, {"noisy_set": info, "seconds": round(seconds, 1), "images_per_s": round(info["files"] / seconds, 1),
                      "by_reason": report.summary["by_reason"], "metrics": metrics, "identification": ident,
                      "work": str(work)})
    render_section(json.loads(out.read_text()))
    print(f"written {out}")


def render_section(d: dict) -> None:
    m, ident = d["metrics"], d["identification"]

    def pct(x: float) -> str:
        return f"{100 * x:.1f} %"

    lines = ["## Cleaning a noisy collection (`facedex clean`)\n",
             f"A noisy copy of {d['noisy_set']['people']} LFW people ({d['noisy_set']['files']} files) built by "
             "`bench/noisy_lfw.py`, cleaned with the defaults; `python bench/clean_bench.py`. "
             f"{d['images_per_s']} images/s on the machine below.\n",
             f"_{d['machine']['cpu']}, {d['machine']['cores']} cores, commit {d['machine']['commit']}, {d['machine']['date']}_\n",
             "| noise | files | result | target |", "|---|---|---|---|",
             f"| wrong person (10 % moved to another folder) | {m['wrong_person']['files']} | {pct(m['wrong_person']['recall'])} removed | ≥ 95 % |",
             f"| exact duplicates | {m['duplicate']['files']} | {pct(m['duplicate']['recall'])} resolved (one copy kept) | ≥ 99 % |",
             f"| near duplicates (resized + recompressed, cropped) | {m['near_duplicate']['files']} | {pct(m['near_duplicate']['recall'])} resolved | |",
             f"| no face (background crops) | {m['no_face']['files']} | {pct(m['no_face']['recall'])} removed | ≥ 99 % |",
             f"| rotated 90°/180°/270° | {m['rotated']['files']} | {pct(m['rotated']['recovery'])} recovered and kept | |",
             f"| composites of two people | {m['composite']['files']} | {pct(m['composite']['share'])} kept with the right face | |",
             f"| **clean images** | {m['clean']['files']} | **{pct(m['clean']['loss'])} wrongly removed** | ≤ 2 % |",
             "", f"Clean images removed, by reason: {m['clean']['loss_by_reason'] or 'none'}. Many of them are "
             "genuinely unusable (profile views, heavy blur); look at the review page to judge.\n",
             "**Identification before and after** (held-out photos of the same people, 500 strangers):\n",
             "| gallery | faces | rank-1 | FNIR @ FPIR 1 % |", "|---|---|---|---|"]
    for k in ("noisy", "cleaned"):
        r = ident[k]
        lines.append(f"| {k} | {r['gallery_faces']} | {pct(r['rank1'])} | {pct(r['fnir_at_fpir_0.01'])} |")
    folder = Path(__file__).resolve().parent / "sections"
    folder.mkdir(exist_ok=True)
    (folder / "30_clean.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
