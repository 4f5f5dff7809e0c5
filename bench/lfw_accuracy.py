"""LFW View-2 10-fold verification: facedex beside face_recognition, same pairs.

    python bench/lfw_accuracy.py [--folds 10] [--no-competitor]

Both stacks embed the face nearest the image centre and fall back to a fixed
centre box when their detector finds none (the protocol needs every pair
scored). facedex's numbers come from the same code as `facedex eval lfw`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LFW, PAIRS, save  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folds", type=int, default=10, help="use only the first N folds (quick runs)")
    ap.add_argument("--no-competitor", action="store_true")
    ap.add_argument("--runtime", default=None)
    args = ap.parse_args()

    from facedex.evaluate.lfw import evaluate_lfw, read_pairs, verification_metrics
    from facedex.pipeline import FacePipeline

    results = {}
    res = evaluate_lfw(LFW, PAIRS, FacePipeline(runtime=args.runtime), limit_folds=args.folds)
    results["facedex (YuNet + SFace)"] = res.to_dict()
    print(f"facedex: {100 * res.accuracy_mean:.2f} ± {100 * res.accuracy_std:.2f} %  "
          f"VAL@FAR=0.1%: {100 * res.val_at_far:.2f} %  fallbacks {res.fallbacks}  {res.seconds:.0f} s", flush=True)

    if not args.no_competitor:
        from competitors import FaceRecognitionStack

        stack = FaceRecognitionStack()
        pairs = [p for p in read_pairs(PAIRS, LFW) if p.fold < args.folds]
        paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
        t0 = time.perf_counter()
        emb, fallbacks = {}, []
        for i, p in enumerate(paths):
            emb[p], fb = stack.central_face(stack.load(p))
            if fb:
                fallbacks.append(str(p))
            if i % 500 == 0:
                print(f"  face_recognition {i}/{len(paths)}", flush=True)
        seconds = time.perf_counter() - t0
        scores = np.array([stack.similarity(emb[p.a], emb[p.b]) for p in pairs])
        m = verification_metrics(scores, np.array([p.same for p in pairs]), np.array([p.fold for p in pairs]))
        results[stack.name] = {
            "accuracy": round(m["accuracy_mean"], 5), "accuracy_std": round(m["accuracy_std"], 5),
            "val_at_far": round(m["val_at_far"], 5), "val_at_far_std": round(m["val_at_far_std"], 5),
            "pairs": len(pairs), "images": len(paths), "fallbacks": len(fallbacks),
            "fallback_images": fallbacks, "seconds": round(seconds, 1),
        }
        print(f"face_recognition: {100 * m['accuracy_mean']:.2f} ± {100 * m['accuracy_std']:.2f} %  "
              f"VAL@FAR=0.1%: {100 * m['val_at_far']:.2f} %  fallbacks {len(fallbacks)}  {seconds:.0f} s")
    out = save("lfw_accuracy" if args.folds == 10 else f"lfw_accuracy_{args.folds}folds", {"results": results})
    print(f"written {out}")


if __name__ == "__main__":
    main()
