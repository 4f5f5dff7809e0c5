"""Similarity statistics of an embedder on LFW, for the thresholds `clean` uses.

    python bench/embedder_stats.py [--embedder sface-2021dec]

On people with >= 10 images: for consensus sizes of 3, 5 and 10 faces, the
similarity of a genuine face to its person's consensus (leave-one-out mean of
the others) and of other people's faces to it; and the similarity of pairs of
faces of one person and of two people. The thresholds written into the
embedder's card (``extra["clean"]``) are the midpoints:

* outlier threshold = (genuine-to-consensus 0.5 % quantile + impostor-to-consensus 99.9 % quantile) / 2
* pair threshold    = (same-person pair 1 % quantile + different-people pair 99.9 % quantile) / 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LFW, save  # noqa: E402


def stats(v: np.ndarray, lab: np.ndarray, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    people = np.unique(lab)
    gen, imp = [], []
    for n in (3, 5, 10):
        for p in people:
            idx = np.nonzero(lab == p)[0]
            s = rng.choice(idx, n, replace=False)
            tot = v[s].sum(0)
            for i in s:
                c = tot - v[i]
                gen.append(float(v[i] @ c / np.linalg.norm(c)))
            c = tot / np.linalg.norm(tot)
            imp += list(v[rng.choice(np.nonzero(lab != p)[0], 20, replace=False)] @ c)
    same, diff = [], []
    for p in people:
        idx = np.nonzero(lab == p)[0][:10]
        same += [float(v[a] @ v[b]) for i, a in enumerate(idx) for b in idx[i + 1:]]
        diff += list(v[rng.choice(np.nonzero(lab != p)[0], 30, replace=False)] @ v[idx[0]])
    gen, imp, same, diff = map(np.asarray, (gen, imp, same, diff))
    q = {
        "genuine_to_consensus_q005": float(np.quantile(gen, 0.005)),
        "genuine_to_consensus_median": float(np.median(gen)),
        "impostor_to_consensus_q999": float(np.quantile(imp, 0.999)),
        "impostor_to_consensus_mean": float(imp.mean()),
        "same_pair_q01": float(np.quantile(same, 0.01)),
        "diff_pair_q999": float(np.quantile(diff, 0.999)),
    }
    q["outlier_threshold"] = round((q["genuine_to_consensus_q005"] + q["impostor_to_consensus_q999"]) / 2, 3)
    q["pair_threshold"] = round((q["same_pair_q01"] + q["diff_pair_q999"]) / 2, 3)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in q.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", default="sface-2021dec")
    args = ap.parse_args()
    from facedex.evaluate.lfw import embed_central_faces
    from facedex.pipeline import FacePipeline

    people = sorted(d for d in LFW.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= 10)
    paths = [p for d in people for p in sorted(d.glob("*.jpg"))]
    labels = np.array([i for i, d in enumerate(people) for _ in sorted(d.glob("*.jpg"))])
    emb = embed_central_faces(paths, FacePipeline(embedder=args.embedder))
    result = stats(emb.vectors.astype(np.float64), labels)
    print(result)
    save(f"embedder_stats_{args.embedder}", {"embedder": args.embedder, "people": len(people),
                                              "images": len(paths), "stats": result})


if __name__ == "__main__":
    main()
