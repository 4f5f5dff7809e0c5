"""Render docs/benchmarks.md from the JSON files in bench/results/.

    python bench/report.py

Each section reads its own result file; a section whose file is missing says
which command produces it. Absolute times are for the machine named in each
result file; the ratios are what carries over to other machines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, RESULTS  # noqa: E402

DOC = REPO / "docs" / "benchmarks.md"


def load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def machine_line(d: dict) -> str:
    m = d.get("machine", {})
    return f"_{m.get('cpu', '?')}, {m.get('cores', '?')} cores, Python {m.get('python', '?')}, commit {m.get('commit', '?')}, {m.get('date', '?')}_"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def pct(x, nd=2) -> str:
    return "–" if x is None else f"{100 * x:.{nd}f} %"


def missing(cmd: str) -> str:
    return f"_Not measured yet: run `{cmd}`._\n"


def section_throughput() -> str:
    d = load("throughput")
    out = ["## End-to-end throughput\n",
           "Decode, detect, align and embed every face of the same LFW images, one stack after the other, "
           "alternating, best of the repeats. `python bench/throughput.py`\n"]
    if not d:
        return "\n".join(out) + missing("python bench/throughput.py")
    out.append(machine_line(d) + f", {d['images']} images\n")
    rows = []
    for name, r in d["results"].items():
        rows.append([name, f"{r['images_per_s']:.1f}", f"{r['faces_per_s']:.1f}", r["faces"],
                     f"{r['speedup_faces_vs_face_recognition']:.2f}×" if "speedup_faces_vs_face_recognition" in r else "–"])
    out.append(table(["stack", "images/s", "faces/s", "faces found", "faces/s vs face_recognition"], rows))
    out.append("\nface_recognition uses dlib's HOG detector, which finds fewer of the small background faces, "
               "so it embeds fewer faces per image; the ratio is taken on faces per second. deepface cannot run "
               "here: its weights download from GitHub at run time, and only package registries are reachable "
               "(`curl https://github.com` → could not resolve host).\n")
    return "\n".join(out)


def section_lfw() -> str:
    d = load("lfw_accuracy")
    out = ["## LFW verification (View 2, 10 folds)\n",
           "Both stacks embed the face nearest the image centre, with a fixed centre box when their detector finds "
           "none; threshold chosen on 9 folds, tested on the 10th. `python bench/lfw_accuracy.py` "
           "(facedex's numbers: `facedex eval lfw [LFW_DIR]`)\n"]
    if not d:
        return "\n".join(out) + missing("python bench/lfw_accuracy.py")
    out.append(machine_line(d) + "\n")
    rows = []
    for name, r in d["results"].items():
        rows.append([name, f"{100 * r['accuracy']:.2f} ± {100 * r['accuracy_std']:.2f} %",
                     f"{100 * r['val_at_far']:.2f} %", r["fallbacks"], f"{r['images'] / r['seconds']:.1f}"])
    out.append(table(["stack", "accuracy", "VAL @ FAR 0.1 %", "no face found (centre crop)", "images/s"], rows))
    out.append("\nPublished figures for comparison: dlib ResNet 99.38 % (with its own alignment and jittering), "
               "SFace 99.40 %.\n")
    return "\n".join(out)


def section_identification() -> str:
    d = load("identification")
    out = ["## 1:N identification on LFW\n",
           "People with ≥ 10 images are enrolled with 5 images each; their other images are genuine searches; "
           "1,000 people not enrolled are the strangers (one search each). FPIR = stranger searches that return a "
           "name; FNIR = genuine searches that do not return the right name (NIST FRVT 1:N). "
           "`python bench/identification.py` (same code as `facedex eval identify`)\n"]
    if not d:
        return "\n".join(out) + missing("python bench/identification.py")
    out.append(machine_line(d) + "\n")
    rows = []
    for name, r in d["results"].items():
        rates = {x["fpir_target"]: x for x in r["open_set"]}
        rows.append([name, r["people"], r["genuine_searches"], r["stranger_searches"], pct(r["rank1"]), pct(r["rank5"]),
                     pct(rates.get(0.01, {}).get("fnir")), pct(rates.get(0.001, {}).get("fnir"))])
    out.append(table(["embedder", "people", "genuine", "strangers", "rank-1", "rank-5", "FNIR @ FPIR 1 %",
                      "FNIR @ FPIR 0.1 %"], rows))
    out.append("\n**Does `facedex calibrate` keep its promise?** The gallery is calibrated on itself (each person "
               "searched against the others, no stranger data), then the threshold meets the real strangers:\n")
    rows = []
    for name, r in d["results"].items():
        for target, c in r["calibration_check"].items():
            rows.append([name, f"{100 * float(target):g} %", f"{c['threshold']:.3f}", pct(c["fpir_on_real_strangers"]),
                         pct(c["fnir"]), "yes" if c["low_confidence"] else "no"])
    out.append(table(["embedder", "target FPIR", "calibrated threshold", "FPIR on real strangers", "FNIR",
                      "flagged rough"], rows))
    for name, r in d["results"].items():
        if r["gallery_size_sweep"]:
            out.append(f"\n**Growing the gallery** ({name}): distractor identities (one face each, never searched "
                       "for) are added; the threshold is re-chosen for each size at the same FPIR.\n")
            rows = [[e["identities"], e["faces"], pct(e.get("fnir_at_fpir_0.01")), f"{e.get('threshold_at_fpir_0.01', 0):.3f}",
                     pct(e.get("fnir_at_fpir_0.001")), f"{e.get('threshold_at_fpir_0.001', 0):.3f}", pct(e["rank1"])]
                    for e in r["gallery_size_sweep"]]
            out.append(table(["identities", "faces", "FNIR @ FPIR 1 %", "threshold", "FNIR @ FPIR 0.1 %", "threshold",
                              "rank-1"], rows))
    return "\n".join(out) + "\n"


def section_search() -> str:
    """Vector search is reported by bench/search.py's own section (bench/sections/70_scale.md): it judges
    indexes by the FNIR they lose against exact search on a generator fitted to real SFace embeddings."""
    return ""


SECTIONS = [section_throughput, section_lfw, section_identification, section_search]


def extra_sections() -> list[str]:
    """Sections other benchmarks drop in as bench/sections/*.md (rendered by their own scripts)."""
    folder = Path(__file__).resolve().parent / "sections"
    return [p.read_text() for p in sorted(folder.glob("*.md"))] if folder.is_dir() else []


def main() -> None:
    parts = ["# Benchmarks\n",
             "Generated by `python bench/report.py` from `bench/results/*.json`; rerun everything with "
             "`bench/run_all` (or `bench/run_all --quick` for a few-minute check). Every comparison runs the "
             "competitor and facedex in the same run on the same inputs. Absolute times belong to the machine "
             "named under each table; ratios are what carries over.\n"]
    parts += [f() for f in SECTIONS]
    parts += extra_sections()
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text("\n".join(parts))
    print(f"written {DOC}")


if __name__ == "__main__":
    main()
