"""End-to-end throughput: decode, detect, align and embed every face of N LFW
images, facedex beside face_recognition in the same run, on the same files.

    python bench/throughput.py [--images 2000] [--repeats 1] [--no-competitor]

facedex is measured one image at a time (what `identify` does per photo) and
batched (what `enroll` does), with each inference runtime. Each configuration
runs `--repeats` times, alternating with the competitor, and the best run
counts (the least disturbed by other work on the machine). Models are loaded
and warmed up before timing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lfw_sample, save  # noqa: E402


def run_facedex(files, runtime: str, batched: bool) -> dict:
    from facedex.media import load_image
    from facedex.pipeline import FacePipeline

    pipe = FacePipeline(runtime=runtime)
    pipe.analyze(files[0])  # load and warm up
    t0 = time.perf_counter()
    faces = 0
    if batched:
        for i in range(0, len(files), 32):
            images = [load_image(f) for f in files[i : i + 32]]
            faces += sum(len(r) for r in pipe.analyze_arrays(images))
    else:
        for f in files:
            faces += len(pipe.analyze(f))
    dt = time.perf_counter() - t0
    return {"seconds": dt, "faces": faces, "images": len(files)}


def run_face_recognition(files) -> dict:
    from competitors import FaceRecognitionStack

    stack = FaceRecognitionStack()
    stack.all_faces(stack.load(files[0]))
    t0 = time.perf_counter()
    faces = 0
    for f in files:
        faces += len(stack.all_faces(stack.load(f)))
    return {"seconds": time.perf_counter() - t0, "faces": faces, "images": len(files)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-competitor", action="store_true")
    args = ap.parse_args()
    files = lfw_sample(args.images)
    configs = {
        "facedex onnxruntime, one image at a time": ("onnxruntime", False),
        "facedex onnxruntime, batched": ("onnxruntime", True),
        "facedex opencv, one image at a time": ("opencv", False),
        "facedex opencv, batched": ("opencv", True),
    }
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    if not args.no_competitor:
        runs["face_recognition"] = []
    for rep in range(args.repeats):
        for name, (rt, batched) in configs.items():
            runs[name].append(run_facedex(files, rt, batched))
            print(f"[{rep}] {name}: {runs[name][-1]}", flush=True)
        if not args.no_competitor:
            runs["face_recognition"].append(run_face_recognition(files))
            print(f"[{rep}] face_recognition: {runs['face_recognition'][-1]}", flush=True)
    best = {}
    for name, rs in runs.items():
        r = min(rs, key=lambda r: r["seconds"])
        best[name] = {**r, "images_per_s": r["images"] / r["seconds"], "faces_per_s": r["faces"] / r["seconds"],
                      "ms_per_image": 1000 * r["seconds"] / r["images"], "all_seconds": [x["seconds"] for x in rs]}
    if "face_recognition" in best:
        ref = best["face_recognition"]
        for r in best.values():
            r["speedup_images_vs_face_recognition"] = r["images_per_s"] / ref["images_per_s"]
            r["speedup_faces_vs_face_recognition"] = r["faces_per_s"] / ref["faces_per_s"]
    out = save("throughput", {"images": len(files), "repeats": args.repeats, "results": best})
    print(f"{'stack':45s} {'img/s':>7s} {'faces/s':>8s} {'x dlib (faces/s)':>17s}")
    for name, r in best.items():
        ratio = r.get("speedup_faces_vs_face_recognition")
        print(f"{name:45s} {r['images_per_s']:7.1f} {r['faces_per_s']:8.1f} "
              f"{'' if ratio is None else f'{ratio:17.2f}'}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
