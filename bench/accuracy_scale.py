"""Accuracy at a million faces (issue #19): what each way of using SFace's embeddings is worth.

    python bench/accuracy_scale.py [--sizes 10000,100000,1000000] [--quick]

Features of all 13,233 LFW images (embedding, mirror-image embedding, detector
score, size, sharpness, pose) come from ``bench/lfw_features.py`` (run first
when missing, ~3 min). Then:

1. **LFW 10-fold** (View 2, 6,000 pairs) for: the plain embedding; the mean of
   the face's and its mirror image's embeddings (test-time augmentation); a
   within-class covariance normalisation (WCCN: whitening by the within-person
   scatter, fitted on the nine training folds' people, never on the test fold)
   alone and on top of the mirror.
2. **Real people among distractors** ("A"): LFW's 158 people with >= 10 images
   enrolled with 5 each (``facedex eval identify``'s split), their 3,534 other
   images as genuine probes, 1,000 real strangers; plus synthetic distractor
   faces drawn from :class:`facedex.evaluate.synthetic.FaceGenerator` fitted to
   the LFW people *not* used as enrolled or strangers (so no look-alike of a
   test person is planted). Checked first against the real thing: the same
   people among the 7,317 real LFW images of the held-out people.
3. **All synthetic** ("B", as ``bench/search.py``): a synthetic gallery whose
   people have LFW's faces-per-person (most 1 or 2), 2,000 genuine probes, 2,000
   strangers: the harder case, where a person has few enrolled photos.

Decisions: **max** (best single face, facedex <= 0.2), **template** (normalised
mean of the person's faces), on top of either a **cohort margin** (the best
person's score less the mean score of the next 32 people: an adaptive cohort
normalisation using the gallery's own nearest people), and **template +
crowding** (facedex's default now: the margin's penalty only where the
cohort's mean exceeds the embedder's reference, 0.25 for SFace, so small
galleries keep their scores and thresholds). All run through
:class:`facedex.identify.Identifier` (64 nearest faces, exact search): the
code ``identify`` runs. The threshold is
set for FPIR 1 % and 0.1 % on the strangers; FNIR counts genuine probes not
given their own name. For protocol A, the default decision is also judged at
the threshold ``facedex calibrate --fpir 0.01`` sets from the gallery alone
(leave-one-person-out searches; up to 20,000 of them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, lfw_dir, save  # noqa: E402

FEATURES = RESULTS / "lfw_sface_features.npz"
COHORT = 32  # people after the best one, for the cohort margin
FPIRS = (0.01, 0.001)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def features() -> dict[str, np.ndarray]:
    if not FEATURES.exists():
        subprocess.run([sys.executable, str(Path(__file__).with_name("lfw_features.py"))], check=True)
    with np.load(FEATURES) as d:
        return {k: d[k] for k in d.files}


def rates(gen_top, gen_ok, str_top) -> dict[str, float]:
    from facedex.identify import threshold_at_fpir

    out = {"rank1": round(float(np.mean(gen_ok)), 5)}
    for f in FPIRS:
        t = threshold_at_fpir(str_top, f)
        out[f"fnir_at_fpir_{f}"] = round(float(np.mean(~(gen_ok & (gen_top >= t)))), 5)
        out[f"threshold_at_fpir_{f}"] = round(float(t), 4)
    return out


def decisions(gallery, labels, genuine, genuine_labels, strangers, evidence: str,
              calibrate_too: bool = False) -> dict[str, dict]:
    """Through facedex's Identifier: the plain decision, the pure cohort margin on its
    candidates, and (template) the crowding penalty ``identify`` applies now."""
    from facedex.identify import Identifier
    from facedex.models import get_card

    ref = get_card("sface-2021dec").extra["crowd_reference"]
    n_people = int(labels.max()) + 1
    ident = Identifier(k=64, max_candidates=COHORT + 1, evidence=evidence, crowd_reference=ref, cohort=COHORT)
    ident.fit(gallery, labels, [str(i) for i in range(n_people)])
    probes = np.concatenate([genuine, strangers])
    best, margin, crowded = (np.full(len(probes), -1.0, np.float32) for _ in range(3))
    who = np.full(len(probes), -1, np.int64)
    for start in range(0, len(probes), 2000):
        for i, (score, cands) in enumerate(ident.scored_candidates(probes[start:start + 2000]), start):
            if not cands:
                continue
            sims = np.array([c.similarity for c in cands], np.float32)
            best[i], who[i], crowded[i] = sims[0], int(cands[0].name), score
            margin[i] = sims[0] - (sims[1:].mean() if len(sims) > 1 else 0.0)
    ng = len(genuine)
    ok = who[:ng] == genuine_labels
    out = {evidence: rates(best[:ng], ok, best[ng:]),
           f"{evidence} + cohort margin": rates(margin[:ng], ok, margin[ng:])}
    if evidence == "template":
        out[f"template + crowding {ref} (default)"] = r = rates(crowded[:ng], ok, crowded[ng:])
        if calibrate_too:  # what `facedex calibrate --fpir 0.01` sets on this gallery, judged on the real probes
            from facedex.identify import calibrate

            t0 = time.perf_counter()
            cal = calibrate(gallery, labels, 0.01, crowd_reference=ref)
            t = cal.threshold
            r["calibrated"] = {"threshold": round(t, 4), "fpir_on_strangers": round(float(np.mean(crowded[ng:] >= t)), 5),
                               "fnir": round(float(np.mean(~(ok & (crowded[:ng] >= t)))), 5),
                               "estimated_fnir": cal.details["estimated_fnir"],
                               "searches": cal.details["stranger_searches"], "seconds": round(time.perf_counter() - t0, 1)}
            print("  calibrate:", r["calibrated"], flush=True)
    return out


# -- 1. LFW 10-fold --------------------------------------------------------------------------------
def wccn(x: np.ndarray, labels: np.ndarray, eps: float = 0.1):
    """Whitening by the within-person scatter (regularised by ``eps`` x its mean variance)."""
    mu = x.mean(0)
    u, inv, c = np.unique(labels, return_inverse=True, return_counts=True)
    sums = np.zeros((len(u), x.shape[1])); np.add.at(sums, inv, x)
    r = (x - (sums / c[:, None])[inv])[c[inv] >= 2]
    w = r.T @ r / len(r)
    val, vec = np.linalg.eigh(w + eps * np.trace(w) / len(w) * np.eye(len(w)))
    p = vec / np.sqrt(val)
    return lambda z: unit((z - mu) @ p)


def lfw_ten_fold(d: dict) -> dict:
    from facedex.evaluate.lfw import read_pairs, verification_metrics

    lfw = lfw_dir()
    row = {p: i for i, p in enumerate(d["paths"])}
    pairs = read_pairs(lfw.parent / "pairs.txt", lfw)
    key = lambda p: f"{p.parent.name}/{p.name}"  # noqa: E731
    a = np.array([row[key(p.a)] for p in pairs]); b = np.array([row[key(p.b)] for p in pairs])
    same = np.array([p.same for p in pairs]); folds = np.array([p.fold for p in pairs])
    plain, mirror = d["vectors"].astype(np.float64), unit(d["vectors"] + d["flipped"]).astype(np.float64)

    def per_fold(e):
        s = np.zeros(len(pairs))
        for k in np.unique(folds):
            tr, te = folds != k, folds == k
            imgs = np.unique(np.concatenate([a[tr], b[tr]]))
            t = wccn(e[imgs], d["labels"][imgs])
            s[te] = (t(e[a[te]]) * t(e[b[te]])).sum(1)
        return s

    out = {}
    for name, s in [("plain (facedex today)", (plain[a] * plain[b]).sum(1)),
                    ("mirror TTA", (mirror[a] * mirror[b]).sum(1)),
                    ("WCCN (fitted per fold)", per_fold(plain)),
                    ("mirror TTA + WCCN", per_fold(mirror))]:
        m = verification_metrics(s, same, folds)
        out[name] = {"accuracy": round(m["accuracy_mean"], 5), "std": round(m["accuracy_std"], 5),
                     "val_at_far_0.001": round(m["val_at_far"], 5)}
        print(f"LFW 10-fold {name}: {100 * m['accuracy_mean']:.2f} %", flush=True)
    return out


# -- 2. real people among distractors --------------------------------------------------------------
def split_rows(d: dict):
    from facedex.evaluate.identification import split_dataset

    sp = split_dataset(lfw_dir(), min_images=10, gallery_per_person=5, num_strangers=1000, seed=0)
    row = {p: i for i, p in enumerate(d["paths"])}
    key = lambda p: f"{p.parent.name}/{p.name}"  # noqa: E731
    names = sorted(sp.enrolled)
    g = np.array([row[key(p)] for n in names for p in sp.enrolled[n]])
    gl = np.array([i for i, n in enumerate(names) for _ in sp.enrolled[n]])
    q = np.array([row[key(p)] for n in names for p in sp.genuine[n]])
    ql = np.array([i for i, n in enumerate(names) for _ in sp.genuine[n]])
    s = np.array([row[key(p)] for p in sp.strangers])
    used = set(d["labels"][g]) | set(d["labels"][s])
    spare = np.array([i for i in range(len(d["paths"])) if d["labels"][i] not in used])
    return g, gl, q, ql, s, spare


def real_people(d: dict, sizes: list[int], quality: bool) -> dict:
    from facedex.evaluate.synthetic import FaceGenerator

    g, gl, q, ql, s, spare = split_rows(d)
    out: dict = {"enrolled_faces": len(g), "genuine": len(q), "strangers": len(s), "sizes": []}
    for tta in (False, True):
        x = unit(d["vectors"] + d["flipped"]) if tta else d["vectors"].astype(np.float32)
        labels = d["labels"].astype(np.int64)
        # held-out real people as distractors, less the 7 whose photo is a stranger's or an
        # enrolled person's under another name (LFW's label noise: similarity > 0.65)
        probes = np.concatenate([x[s], x[g], x[q]])
        bad = set(labels[spare][((probes @ x[spare].T) > 0.65).any(0)])
        keep = spare[np.array([labels[i] not in bad for i in spare])]
        _, real_dl = np.unique(labels[keep], return_inverse=True)
        gen = FaceGenerator.fit(x[spare], labels[spare])
        runs = [("real LFW distractors", len(keep), x[keep], real_dl)]
        for n in [0, len(keep)] + sizes:
            if n == 0:
                runs.append(("no distractors", 0, np.zeros((0, x.shape[1]), np.float32), np.zeros(0, np.int64)))
            else:
                syn = gen.sample_gallery(n, probes=0, strangers=0, seed=7)
                runs.append(("synthetic distractors", n, syn.gallery, syn.labels))
        for kind, n, dv, dl in runs:
            t0 = time.perf_counter()
            gallery = np.concatenate([x[g], dv])
            glab = np.concatenate([gl, gl.max() + 1 + dl])
            entry = {"distractors": kind, "distractor_faces": n, "mirror_tta": tta, "methods": {}}
            for ev in ("max", "template"):
                entry["methods"].update(decisions(gallery, glab, x[q], ql, x[s], ev, calibrate_too=not tta))
            if quality and n == 0 and not tta:
                entry["quality_gate"] = quality_gate(d, gallery, glab, g, q, ql, s)
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            out["sizes"].append(entry)
            m = entry["methods"]
            print(f"A {kind} {n} tta={tta}: " + ", ".join(
                f"{k} {100 * v['fnir_at_fpir_0.01']:.2f}" for k, v in m.items()), flush=True)
    return out


def quality_gate(d, gallery, glab, g, q, ql, s) -> dict:
    """FNIR at FPIR 1 % when faces below a quality level are answered unknown
    (quality: detector score x size x sharpness x frontality, as video tracks weigh faces)."""
    import math

    from facedex.identify import Identifier

    def weight(i):
        size_w = min(1.0, max(0.1, 0.1 + 0.9 * (float(d["size"][i]) - 16.0) / 48.0))
        sharp_w = min(1.0, max(0.1, float(d["sharpness"][i]) / 100.0))
        front = max(0.0, math.cos(math.radians(min(abs(float(d["yaw"][i])), 90.0)))
                    * math.cos(math.radians(min(abs(float(d["pitch"][i])), 90.0))))
        return float(d["score"][i]) * size_w * sharp_w * max(0.05, front * front)

    x = d["vectors"].astype(np.float32)
    ident = Identifier().fit(gallery, glab, [str(i) for i in range(int(glab.max()) + 1)])
    probes = np.concatenate([q, s])
    dec = ident.decide(x[probes], threshold=-1.0)
    top = np.array([dd.similarity for dd in dec], np.float32)
    who = np.array([int(dd.name) for dd in dec])
    wq = np.array([weight(i) for i in probes])
    ng = len(q)
    out = {}
    for pct in (0, 1, 2, 5):
        cut = np.percentile(wq, pct) if pct else -1.0
        gated = np.where(wq >= cut, top, -np.inf)
        r = rates(gated[:ng], who[:ng] == ql, gated[ng:])
        out[f"lowest {pct} % unknown"] = r["fnir_at_fpir_0.01"]
    print("quality gate:", out, flush=True)
    return out


# -- 3. all synthetic ----------------------------------------------------------------------------------
def all_synthetic(d: dict, sizes: list[int]) -> dict:
    from facedex.evaluate.synthetic import FaceGenerator

    out = []
    for tta in (False, True):
        x = unit(d["vectors"] + d["flipped"]) if tta else d["vectors"].astype(np.float32)
        gen = FaceGenerator.fit(x, d["labels"].astype(np.int64))
        for n in sizes:
            t0 = time.perf_counter()
            data = gen.sample_gallery(n, probes=2000, strangers=2000, seed=1)
            entry = {"faces": n, "identities": int(data.labels.max()) + 1, "mirror_tta": tta, "methods": {}}
            for ev in ("max", "template"):
                entry["methods"].update(decisions(data.gallery, data.labels, data.genuine, data.genuine_labels,
                                                  data.strangers, ev))
            entry["seconds"] = round(time.perf_counter() - t0, 1)
            out.append(entry)
            print(f"B {n} tta={tta}: " + ", ".join(
                f"{k} {100 * v['fnir_at_fpir_0.01']:.2f}" for k, v in entry["methods"].items()), flush=True)
    return {"genuine": 2000, "strangers": 2000, "sizes": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--quick", action="store_true", help="sizes 10000 only")
    args = ap.parse_args()
    sizes = [10000] if args.quick else [int(v) for v in args.sizes.split(",")]
    d = features()
    t0 = time.perf_counter()
    res = {"embedder": str(d["embedder"]), "cohort": COHORT, "lfw_10_fold": lfw_ten_fold(d),
           "real_people": real_people(d, sizes, quality=True), "all_synthetic": all_synthetic(d, sizes)}
    res["seconds"] = round(time.perf_counter() - t0, 1)
    out = save("accuracy_scale_quick" if args.quick else "accuracy_scale", res)
    print(f"written {out}")


if __name__ == "__main__":
    main()
