"""The 1:N protocol on LFW for facedex's embedder and for face_recognition's model
(dlib ResNet, run as facedex's optional `dlib-resnet-v1` embedder behind the same
detector), same split, same run.

    python bench/identification.py [--quick] [--no-competitor]

People with >= 10 images are enrolled with 5 each; their other images are the
genuine searches; 1,000 people with fewer images are the strangers. The sweep
adds distractor identities to show what a growing gallery does to FNIR at a
fixed FPIR. Same code as `facedex eval identify`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LFW, save  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 probes per person, 200 strangers, small sweep")
    ap.add_argument("--no-competitor", action="store_true")
    args = ap.parse_args()

    from facedex.evaluate.identification import evaluate_identification
    from facedex.pipeline import FacePipeline

    kw = dict(min_images=10, gallery_per_person=5, num_strangers=200 if args.quick else 1000,
              max_probes_per_person=2 if args.quick else None)
    stacks = [("facedex (YuNet + SFace)", "sface-2021dec", [158, 500] if args.quick else [158, 500, 1000, 2000, 4000])]
    if not args.no_competitor:
        stacks.append(("face_recognition's model (dlib ResNet)", "dlib-resnet-v1", []))
    results = {}
    for label, embedder, sizes in stacks:
        res = evaluate_identification(LFW, FacePipeline(embedder=embedder), gallery_sizes=sizes, **kw)
        results[label] = res.to_dict()
        rates = {r.fpir_target: r for r in res.rates}
        print(f"{label}: rank-1 {100 * res.rank1:.2f} %  FNIR@FPIR1% {100 * rates[0.01].fnir:.2f} %  "
              f"FNIR@FPIR0.1% {100 * rates[0.001].fnir:.2f} %  ({res.seconds:.0f} s)", flush=True)
    out = save("identification_quick" if args.quick else "identification", {"protocol": kw, "results": results})
    print(f"written {out}")


if __name__ == "__main__":
    main()
