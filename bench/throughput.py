"""End-to-end throughput: decode, detect, align and embed every face of N LFW
images, facedex beside face_recognition in the same run, on the same files.

    python bench/throughput.py [--images 2000] [--repeats 1] [--no-competitor]

facedex is measured one image at a time (what `identify` does per photo) and
batched (what `enroll` and `identify` do), with the default runtime (``auto``:
per model, the runtime measured fastest on this machine — see `facedex
models`) and with each runtime named (``--runtime X`` runs both models on X).
Each configuration runs `--repeats` times, alternating with the competitor,
and the best run counts (the least disturbed by other work on the machine).
Models are loaded and warmed up before timing. The 1-minute load average is
recorded before and after each run.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import lfw_sample, save  # noqa: E402


def load() -> float:
    return round(os.getloadavg()[0], 2)


def run_facedex(files, runtime: str | None, batched: bool, precision: str = "fp32") -> dict:
    from facedex.media import load_image
    from facedex.pipeline import FacePipeline

    before = os.environ.get("FACEDEX_PRECISION")
    os.environ["FACEDEX_PRECISION"] = precision  # read when the models load
    try:
        pipe = FacePipeline(runtime=runtime)
        pipe.analyze(files[0])  # load and warm up
    finally:
        if before is None:
            os.environ.pop("FACEDEX_PRECISION")
        else:
            os.environ["FACEDEX_PRECISION"] = before
    l0 = load()
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
    return {"seconds": dt, "faces": faces, "images": len(files), "load_before": l0, "load_after": load()}


def run_face_recognition(files) -> dict:
    from competitors import FaceRecognitionStack

    stack = FaceRecognitionStack()
    stack.all_faces(stack.load(files[0]))
    l0 = load()
    t0 = time.perf_counter()
    faces = 0
    for f in files:
        faces += len(stack.all_faces(stack.load(f)))
    return {"seconds": time.perf_counter() - t0, "faces": faces, "images": len(files), "load_before": l0,
            "load_after": load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-competitor", action="store_true")
    ap.add_argument("--runtimes", nargs="+", default=["onnxruntime", "opencv", "openvino"],
                    help="named runtimes measured beside the default (auto)")
    args = ap.parse_args()
    files = lfw_sample(args.images)
    from facedex import models

    configs = {"facedex default (auto), one image at a time": (None, False, "fp32"),
               "facedex default (auto), batched": (None, True, "fp32"),
               "facedex FACEDEX_PRECISION=bf16 (auto), one image at a time": (None, False, "bf16"),
               "facedex FACEDEX_PRECISION=bf16 (auto), batched": (None, True, "bf16")}
    for rt in args.runtimes:
        why = models.RUNTIMES[rt].unavailable() if rt in models.RUNTIMES else "unknown runtime"
        if why:
            print(f"skipping {rt}: {why}", flush=True)
            continue
        configs[f"facedex --runtime {rt}, one image at a time"] = (rt, False, "fp32")
        configs[f"facedex --runtime {rt}, batched"] = (rt, True, "fp32")
    runs: dict[str, list[dict]] = {k: [] for k in configs}
    if not args.no_competitor:
        runs["face_recognition"] = []
    for rep in range(args.repeats):
        for name, (rt, batched, precision) in configs.items():
            runs[name].append(run_facedex(files, rt, batched, precision))
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
    choices = {c.name: (models.runtime_choice(c) or {}).get("choice") for c in models.list_cards()
               if c.backend == "onnx"}
    loads = [x[k] for rs in runs.values() for x in rs for k in ("load_before", "load_after")]
    out = save("throughput", {"images": len(files), "repeats": args.repeats, "auto_choice": choices,
                              "load_average": f"{min(loads):.1f}-{max(loads):.1f}", "results": best})
    print(f"{'stack':60s} {'img/s':>7s} {'faces/s':>8s} {'x dlib (faces/s)':>17s}")
    for name, r in best.items():
        ratio = r.get("speedup_faces_vs_face_recognition")
        print(f"{name:60s} {r['images_per_s']:7.1f} {r['faces_per_s']:8.1f} "
              f"{'' if ratio is None else f'{ratio:17.2f}'}")
    print(f"written {out}")


if __name__ == "__main__":
    main()
