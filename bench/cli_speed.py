"""Whole-process speed: `facedex identify` beside face_recognition's command line
on the same photos, in the same run; one-photo latency, start-up, video, and a
per-stage profile.

    python bench/cli_speed.py [--images 300] [--repeats 3] [--before REV] [--parts ...]

Parts (all by default):

* ``cli`` — wall time of whole processes, start-up included, on the same
  ``--images`` LFW photos (spread over the whole set): ``facedex identify
  GALLERY unknown/ --json`` and ``face_recognition --cpus -1 known/ unknown/``
  (both cores). The known people are the 62 LFW people with at least 20
  photos, one photo each — a file per person for face_recognition, a gallery
  enrolled from the same photos for facedex (made once, not timed: facedex
  keeps its gallery, face_recognition encodes its known folder every run; its
  cost for that is measured separately on an empty unknown folder).
  Alternating, best of ``--repeats``. With ``--before REV`` the facedex of that
  commit runs too (``git archive``, same gallery, same run).
* ``latency`` — one photo through :func:`facedex.identify_paths` with the
  process already running and the models loaded: median and 90th percentile.
* ``startup`` — process start to first answer: ``facedex identify GALLERY
  one.jpg --json``, prepared models (and the ``auto`` runtime choice) cached.
* ``video`` — 720p 30 fps, 30 s, two faces, default sampling (the clip of
  bench/video_bench.py's speed part): real-time factor with the default
  runtime and with onnxruntime (the runtime before ``auto``).
* ``profile`` — where the time goes in `identify_paths` on the same photos:
  decode, detect, align, embed, search, output, each timed inside the run (with
  decoding ahead switched off, so the stages add up to the wall time), then the
  wall time with it on; for ``--before REV`` too.

The 1-minute load average is recorded before and after each part: the machine
may be shared. Results: bench/results/cli_speed.json; bench/sections/80_speed.md
is written from it, bench/results/throughput.json and runtime_accuracy.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import REPO, RESULTS, lfw_dir, lfw_sample, machine, save  # noqa: E402

BIN = Path(sys.executable).parent
SECTION = REPO / "bench" / "sections" / "80_speed.md"
PARTS = ("cli", "latency", "startup", "video", "profile")


def load() -> float:
    return round(os.getloadavg()[0], 2)


# -- data --------------------------------------------------------------------------------------------
def setup(work: Path, n_images: int) -> dict:
    """known/ (face_recognition), people/ (facedex enroll), unknown/ (the photos), the gallery."""
    lfw = lfw_dir()
    known, people, unknown, empty = work / "known", work / "people", work / f"unknown-{n_images}", work / "empty"
    if not known.is_dir():
        tmp = work / "known.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        (tmp / "people").mkdir(parents=True)
        for d in sorted(p for p in lfw.iterdir() if p.is_dir()):
            files = sorted(d.glob("*.jpg"))
            if len(files) >= 20:
                os.symlink(files[0], tmp / f"{d.name}.jpg")
                (tmp / "people" / d.name).mkdir()
                os.symlink(files[0], tmp / "people" / d.name / files[0].name)
        shutil.rmtree(people, ignore_errors=True)
        (tmp / "people").rename(people)
        tmp.rename(known)
    if not unknown.is_dir():
        tmp = work / "unknown.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in lfw_sample(n_images):
            os.symlink(f, tmp / f.name)
        tmp.rename(unknown)
    empty.mkdir(exist_ok=True)
    gallery = work / "known.gallery"
    if not gallery.exists():
        subprocess.run([str(BIN / "facedex"), "enroll", str(gallery), str(people), "--multiple", "largest"],
                       check=True,
                       stdout=subprocess.DEVNULL)
    return {"known": known, "people": people, "unknown": unknown, "empty": empty, "gallery": gallery,
            "photos": sorted(unknown.iterdir())}


def before_tree(work: Path, rev: str) -> Path:
    """The src/ folder of commit ``rev``, extracted once (``git archive``)."""
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    dest = work / f"before-{sha}"
    if not (dest / "src" / "facedex").is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "archive", sha, "src"], cwd=REPO, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def facedex_cmd(before: Path | None, precision: str = "fp32") -> tuple[list[str], dict]:
    env = dict(os.environ)
    env.pop("FACEDEX_RUNTIME", None)
    env["FACEDEX_PRECISION"] = precision
    if before is None:
        return [str(BIN / "facedex")], env
    env["PYTHONPATH"] = str(before / "src")
    return [sys.executable, "-c", "import sys; from facedex.cli.main import main; sys.exit(main())"], env


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-2000:]}")
    return wall, p.stdout


def face_recognition_faces(photos: list[Path], cache: Path) -> int:
    """Faces face_recognition's CLI encodes in these photos (its detector, HOG,
    upsample 1) — counted once in-process, not timed: its output cannot tell two
    faces from one face that matches two people."""
    key = f"{len(photos)}:{photos[0].name}:{photos[-1].name}"
    if cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("key") == key:
            return data["faces"]
    import face_recognition as fr

    n = sum(len(fr.face_locations(fr.load_image_file(str(p)))) for p in photos)
    cache.write_text(json.dumps({"key": key, "faces": n}))
    return n


# -- parts ---------------------------------------------------------------------------------------------
def part_cli(data: dict, work: Path, repeats: int, before: Path | None, competitor: bool) -> dict:
    stacks: dict[str, list[str]] = {}
    envs: dict[str, dict | None] = {}
    fx, env = facedex_cmd(None)
    stacks["facedex identify"] = fx + ["identify", str(data["gallery"]), str(data["unknown"]), "--json"]
    envs["facedex identify"] = env
    fx, env = facedex_cmd(None, "bf16")
    stacks["FACEDEX_PRECISION=bf16 facedex identify"] = fx + ["identify", str(data["gallery"]), str(data["unknown"]),
                                                             "--json"]
    envs["FACEDEX_PRECISION=bf16 facedex identify"] = env
    if before is not None:
        fx, env = facedex_cmd(before)
        label = f"facedex identify, before ({before.name.removeprefix('before-')})"
        stacks[label] = fx + ["identify", str(data["gallery"]), str(data["unknown"]), "--json"]
        envs[label] = env
    if competitor:
        fr = [str(BIN / "face_recognition"), "--cpus", "-1", str(data["known"])]
        stacks["face_recognition --cpus -1"] = fr + [str(data["unknown"])]
        stacks["face_recognition --cpus -1, known people only (empty unknown folder)"] = fr + [str(data["empty"])]
    runs: dict[str, list[dict]] = {k: [] for k in stacks}
    faces: dict[str, int] = {}
    for rep in range(repeats):
        for label, cmd in stacks.items():
            l0 = load()
            wall, out = timed(cmd, envs.get(label))
            runs[label].append({"seconds": round(wall, 3), "load_before": l0, "load_after": load()})
            if "facedex" in label:
                faces[label] = json.loads(out)["summary"]["faces"]
            print(f"[{rep}] {label}: {wall:.2f} s (load {l0} -> {load()})", flush=True)
    if competitor:
        n = face_recognition_faces(data["photos"], work / "face_recognition_faces.json")
        faces["face_recognition --cpus -1"] = n
    images = len(data["photos"])
    result = {}
    for label, rs in runs.items():
        best = min(rs, key=lambda r: r["seconds"])
        entry = {"best_seconds": best["seconds"], "median_seconds": statistics.median(r["seconds"] for r in rs),
                 "runs": rs, "images": images if "empty" not in label else 0}
        if label in faces:
            entry["faces"] = faces[label]
            entry["faces_per_s"] = faces[label] / best["seconds"]
            entry["images_per_s"] = images / best["seconds"]
        result[label] = entry
    ref = result.get("face_recognition --cpus -1")
    if ref:
        for entry in result.values():
            if "faces_per_s" in entry:
                entry["wall_ratio_vs_face_recognition"] = ref["best_seconds"] / entry["best_seconds"]
                entry["faces_per_s_ratio_vs_face_recognition"] = entry["faces_per_s"] / ref["faces_per_s"]
    return {"known_people": len(list(data["known"].iterdir())), "images": images, "repeats": repeats,
            "results": result}


def part_latency(data: dict, n: int = 100) -> dict:
    import facedex

    out = {}
    photos = data["photos"][:n]
    for precision in ("fp32", "bf16"):
        os.environ["FACEDEX_PRECISION"] = precision  # read when the models load
        l0 = load()
        with facedex.Gallery.open(data["gallery"]) as g:
            for p in photos[:3]:
                list(facedex.identify_paths(g, [p]))  # models loaded, warm
            ms = []
            for p in photos:
                t0 = time.perf_counter()
                list(facedex.identify_paths(g, [p]))
                ms.append(1000 * (time.perf_counter() - t0))
        ms.sort()
        out[precision] = {"photos": len(ms), "median_ms": statistics.median(ms), "p90_ms": ms[int(0.9 * (len(ms) - 1))],
                          "mean_ms": statistics.fmean(ms), "min_ms": ms[0], "load_before": l0, "load_after": load()}
    os.environ.pop("FACEDEX_PRECISION")
    return out


def part_startup(data: dict, before: Path | None, repeats: int = 5) -> dict:
    one = str(data["photos"][0])
    cmds = {"python -c pass": ([sys.executable, "-c", "pass"], None),
            "import facedex.cli.main": ([sys.executable, "-c", "import facedex.cli.main"], None)}
    fx, env = facedex_cmd(None)
    cmds["facedex identify GALLERY one.jpg --json"] = (fx + ["identify", str(data["gallery"]), one, "--json"], env)
    if before is not None:
        fx, benv = facedex_cmd(before)
        cmds[f"same, before ({before.name.removeprefix('before-')})"] = (
            fx + ["identify", str(data["gallery"]), one, "--json"], benv)
    l0 = load()
    out: dict[str, dict] = {}
    walls: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(repeats):
        for label, (cmd, env) in cmds.items():
            walls[label].append(timed(cmd, env)[0])
    for label, ws in walls.items():
        out[label] = {"median_s": statistics.median(ws), "min_s": min(ws), "all_s": [round(w, 3) for w in ws]}
    return {"commands": out, "load_before": l0, "load_after": load()}


def part_video(work: Path) -> dict:
    """Real-time factor of `identify_video` on bench/video_bench.py's 720p speed clip."""
    import numpy as np
    import video_bench  # noqa: F401  (its clip and gallery recipe; the file is not changed)

    import facedex

    enrolled, strangers = video_bench.people_pools(158)
    gpath = work / "video-158.gallery"
    if not gpath.exists():
        with facedex.Gallery.open(gpath, create=True) as g:
            for name, photos in enrolled.items():
                g.enroll(photos[:5], person=name, multiple="largest")
            g.calibrate(0.01)
    path, _ = video_bench.speed_clip(work, enrolled, strangers, 30.0)
    out = {}
    for label, runtime, precision in (("default (auto)", None, "fp32"), ("FACEDEX_PRECISION=bf16 (auto)", None, "bf16"),
                                      ("onnxruntime (the default before)", "onnxruntime", "fp32")):
        os.environ["FACEDEX_PRECISION"] = precision
        with facedex.Gallery.open(gpath, runtime=runtime) as g:
            warm = np.zeros((720, 1280, 3), np.uint8)
            g.pipeline.detector.detect(warm)
            g.pipeline.embedder.embed_crops([warm[:112, :112]])
            l0 = load()
            c0, t0 = time.process_time(), time.perf_counter()
            stream = g.identify_video(path)
            result = stream.result()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            out[label] = {"wall_s": wall, "cpu_s": cpu, "duration_s": result.duration,
                          "real_time_factor": result.duration / wall, "frames_sampled": result.frames_sampled,
                          "faces": stream.stats.faces, "embedded": stream.stats.embedded,
                          "tracks": len(result.tracks), "load_before": l0, "load_after": load()}
        print(f"video, {label}: {result.duration:.0f} s in {wall:.1f} s = {result.duration / wall:.2f}x real time "
              f"(load {l0})", flush=True)
    os.environ.pop("FACEDEX_PRECISION")
    return {"clip": "720p 30 fps MPEG-4, 30 s, 2 faces on screen (bench/video_bench.py speed_clip)", "runs": out}


# -- profile -------------------------------------------------------------------------------------------
def profile_worker(gallery: str, photos: list[str], prefetch: bool) -> dict:
    """Run identify_paths once with each stage timed (runs in the process of the code measured)."""
    t_start = time.perf_counter()
    import facedex
    import facedex.identify.run as run_mod

    stages = {k: 0.0 for k in ("decode", "detect", "align", "embed", "search", "output")}

    def timer(stage, fn):
        def wrapped(*a, **kw):
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stages[stage] += time.perf_counter() - t0
        return wrapped

    g = facedex.Gallery.open(gallery)
    pipe = g.pipeline
    from facedex.media import load_image

    warm = load_image(photos[0])
    g.identify_faces(warm, pipe.detector.detect(warm))  # models loaded
    startup = time.perf_counter() - t_start
    run_mod.open_media = timer("decode", run_mod.open_media)
    pipe.detector.detect_batch = timer("detect", pipe.detector.detect_batch)
    pipe.embedder.align = timer("align", pipe.embedder.align)
    pipe.embedder.embed_crops = timer("embed", pipe.embedder.embed_crops)
    g.decide = timer("search", g.decide)
    kwargs = {} if prefetch is None else {"prefetch": prefetch}
    t0 = time.perf_counter()
    results = list(facedex.identify_paths(g, photos, **kwargs))
    t1 = time.perf_counter()
    text = json.dumps({"results": [r.to_dict() for r in results]})
    stages["output"] = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    faces = sum(len(r.faces) for r in results)
    return {"startup_s": startup, "wall_s": wall, "stages_s": stages, "photos": len(photos), "faces": faces,
            "output_bytes": len(text)}


def part_profile(data: dict, before: Path | None, repeats: int = 2) -> dict:
    photos = [str(p) for p in data["photos"]]
    args_file = Path(tempfile.mkstemp(suffix=".json")[1])
    args_file.write_text(json.dumps({"gallery": str(data["gallery"]), "photos": photos}))
    variants = {"after, decoding ahead off": (None, "off", "fp32"),
                "after, decoding ahead on (default)": (None, "on", "fp32"),
                "after, FACEDEX_PRECISION=bf16": (None, "on", "bf16")}
    if before is not None:
        variants = {f"before ({before.name.removeprefix('before-')})": (before, "none", "fp32"), **variants}
    out = {}
    l0 = load()
    for label, (tree, prefetch, precision) in variants.items():
        best = None
        for _ in range(repeats):
            fx, env = facedex_cmd(tree, precision)
            cmd = [sys.executable, __file__, "--profile-worker", str(args_file), prefetch]
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
            r = json.loads(p.stdout.strip().splitlines()[-1])
            if best is None or r["wall_s"] < best["wall_s"]:
                best = r
        out[label] = best
        s = best["stages_s"]
        print(f"profile {label}: wall {best['wall_s']:.2f} s, " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()),
              flush=True)
    args_file.unlink()
    return {"variants": out, "load_before": l0, "load_after": load()}


# -- section -------------------------------------------------------------------------------------------
def _load(name: str) -> dict | None:
    p = RESULTS / f"{name}.json"
    return json.loads(p.read_text()) if p.is_file() else None


def section(d: dict) -> str:
    m = d.get("machine", {})
    lines = ["## Speed: runtimes, whole processes, latency, start-up (issue #15)\n",
             f"`python bench/cli_speed.py` — _{m.get('cpu', '?')}, {m.get('cores', '?')} cores, commit "
             f"{m.get('commit', '?')}, {m.get('date', '?')}_. The 1-minute load average is given for each part: "
             "the machine is shared, and absolute times move with it; ratios from the same run carry over.\n"]
    cli = d.get("cli")
    if cli:
        lines.append(f"**Whole processes, start-up included**, {cli['images']} LFW photos, {cli['known_people']} "
                     f"known people, best of {cli['repeats']} alternating runs:\n")
        lines.append("| command | wall s (best) | median | faces | faces/s | × face_recognition (wall) | load |")
        lines.append("|---|---|---|---|---|---|---|")
        for label, r in cli["results"].items():
            loads = [x["load_before"] for x in r["runs"]]
            ratio = r.get("wall_ratio_vs_face_recognition")
            fps = f"{r['faces_per_s']:.1f}" if "faces_per_s" in r else "–"
            lines.append(f"| `{label}` | {r['best_seconds']:.2f} | {r['median_seconds']:.2f} | {r.get('faces', '–')} | "
                         f"{fps} | {'' if ratio is None else f'{ratio:.1f}×'} | {min(loads):.1f}–{max(loads):.1f} |")
        lines.append("")
    lat = d.get("latency")
    if lat:
        parts = [f"{'default' if k == 'fp32' else 'FACEDEX_PRECISION=' + k}: median {v['median_ms']:.1f} ms, 90th "
                 f"percentile {v['p90_ms']:.1f} ms (load {v['load_before']} → {v['load_after']})"
                 for k, v in lat.items()]
        lines.append(f"**One photo, process running** (`identify_paths` on one LFW photo at a time, "
                     f"{next(iter(lat.values()))['photos']} photos): " + "; ".join(parts) + ".\n")
    st = d.get("startup")
    if st:
        lines.append(f"**Process start to first answer** (median of 5; load {st['load_before']} → {st['load_after']}):\n")
        lines.append("| command | median s | best s |")
        lines.append("|---|---|---|")
        for label, r in st["commands"].items():
            lines.append(f"| `{label}` | {r['median_s']:.2f} | {r['min_s']:.2f} |")
        lines.append("")
    vid = d.get("video")
    if vid:
        lines.append(f"**Video**, {vid['clip']}, default sampling:\n")
        lines.append("| runtime | wall s | real-time factor | faces | embedded | load |")
        lines.append("|---|---|---|---|---|---|")
        for label, r in vid["runs"].items():
            lines.append(f"| {label} | {r['wall_s']:.1f} | {r['real_time_factor']:.2f}× | {r['faces']} | "
                         f"{r['embedded']} | {r['load_before']} |")
        lines.append("")
    prof = d.get("profile")
    if prof:
        v = prof["variants"]
        lines.append(f"**Where the time goes** in `identify_paths` on the same photos (seconds; stages timed "
                     f"inside the run; load {prof['load_before']} → {prof['load_after']}):\n")
        stages = ["decode", "detect", "align", "embed", "search", "output"]
        lines.append("| code | start-up | " + " | ".join(stages) + " | sum of stages | wall | faces/s |")
        lines.append("|---|" + "---|" * (len(stages) + 4))
        for label, r in v.items():
            s = r["stages_s"]
            lines.append(f"| {label} | {r['startup_s']:.2f} | " + " | ".join(f"{s[k]:.2f}" for k in stages)
                         + f" | {sum(s.values()):.2f} | {r['wall_s']:.2f} | {r['faces'] / r['wall_s']:.0f} |")
        lines.append("\nWith decoding ahead on, decoding runs in its own thread beside detection and embedding, "
                     "so the stages add up to more than the wall time.\n")
    lines.append("The throughput of decode → detect → align → embed per runtime is in *End-to-end throughput* "
                 "above (`python bench/throughput.py`).\n")
    acc = _load("runtime_accuracy")
    if acc:
        lines.append("**Same answers?** `python bench/runtime_accuracy.py` — detector runtime + embedder runtime; "
                     f"cosine to {acc['reference']} on the central face of {acc['images']} LFW images:\n")
        lines.append("| detector + embedder | cosine min | cosine mean | LFW 10-fold | rank-1 | FNIR @ FPIR 1 % | "
                     "FNIR @ FPIR 0.1 % |")
        lines.append("|---|---|---|---|---|---|---|")
        for label, r in acc["results"].items():
            lines.append(f"| {label} | {r['cosine_to_first_min']:.5f} | {r['cosine_to_first_mean']:.6f} | "
                         f"{100 * r['lfw_accuracy']:.2f} % | {100 * r['rank1']:.2f} % | "
                         f"{100 * r['fnir_at_fpir_1pct']:.2f} % | {100 * r['fnir_at_fpir_0_1pct']:.2f} % |")
        lines.append("")
        lines.append("The first row is what facedex ran before issue #15. YuNet in bf16 (the fourth row, measured "
                     "at commit 7c778e7) moves the landmarks enough to change embeddings, so facedex now runs a "
                     "detector that is not verified in bf16 in float32, even under `--runtime openvino-bf16`.\n")
    goals = _goals(d, acc)
    if goals:
        lines.append("**Issue #15's goals**, from the tables above:\n")
        lines.append("| goal | target | default (`auto`, float32) | `FACEDEX_PRECISION=bf16` | before |")
        lines.append("|---|---|---|---|---|")
        lines += goals
        lines.append("")
    return "\n".join(lines)


def _goals(d: dict, acc: dict | None) -> list[str]:
    rows = []
    cli = (d.get("cli") or {}).get("results", {})
    fx, bf = (cli.get(k) for k in ("facedex identify", "FACEDEX_PRECISION=bf16 facedex identify"))
    before = next((v for k, v in cli.items() if k.startswith("facedex identify, before")), None)
    if fx:
        cells = [f"{r['faces_per_s']:.0f}" if r else "–" for r in (fx, bf, before)]
        rows.append(f"| faces/s, whole process, {d['cli']['images']} LFW photos | ≥ 100 | " + " | ".join(cells) + " |")
        if "wall_ratio_vs_face_recognition" in fx:
            cells = [f"{r['wall_ratio_vs_face_recognition']:.1f}× ({r['faces_per_s_ratio_vs_face_recognition']:.1f}× "
                     "in faces/s)" if r else "–" for r in (fx, bf, before)]
            rows.append("| × `face_recognition --cpus -1`, wall time | ≥ 8× | " + " | ".join(cells) + " |")
    lat = d.get("latency")
    if lat:
        cells = [f"{lat[k]['median_ms']:.1f} ms median, {lat[k]['p90_ms']:.1f} ms p90" if k in lat else "–"
                 for k in ("fp32", "bf16")]
        rows.append("| one photo, process running | ≤ 25 ms | " + " | ".join(cells) + " | – |")
    st = (d.get("startup") or {}).get("commands", {})
    if st:
        now = st.get("facedex identify GALLERY one.jpg --json")
        was = next((v for k, v in st.items() if k.startswith("same, before")), None)
        rows.append(f"| process start to first answer | ≤ 1 s | {now['median_s']:.2f} s | – | "
                    f"{'–' if was is None else format(was['median_s'], '.2f') + ' s'} |")
    vid = (d.get("video") or {}).get("runs", {})
    if vid:
        cells = [f"{vid[k]['real_time_factor']:.1f}×" if k in vid else "–"
                 for k in ("default (auto)", "FACEDEX_PRECISION=bf16 (auto)", "onnxruntime (the default before)")]
        cells[-1] += " (today's video code on onnxruntime)"
        rows.append("| video 720p30, default sampling, real-time factor | ≥ 3× | " + " | ".join(cells) + " |")
    if acc:
        r = acc["results"]
        ref, f32, b16 = (r.get(k) for k in ("onnxruntime+onnxruntime", "onnxruntime+openvino",
                                            "onnxruntime+openvino-bf16"))
        if ref and f32 and b16:
            def cell(x):
                return (f"LFW {100 * x['lfw_accuracy']:.2f} %, FNIR {100 * x['fnir_at_fpir_1pct']:.2f} %")
            rows.append(f"| accuracy: LFW ± 0.05 points, FNIR @ FPIR 1 % ± 0.1 points | same | {cell(f32)} | "
                        f"{cell(b16)} | {cell(ref)} |")
    return rows


def write_section(d: dict) -> None:
    SECTION.parent.mkdir(exist_ok=True)
    tmp = SECTION.with_suffix(".md.tmp")
    tmp.write_text(section(d))
    tmp.replace(SECTION)


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--profile-worker":
        a = json.loads(Path(sys.argv[2]).read_text())
        prefetch = {"on": True, "off": False, "none": None}[sys.argv[3]]
        print(json.dumps(profile_worker(a["gallery"], a["photos"], prefetch)))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--before", metavar="REV", help="also run the facedex of this commit (cli, startup, profile)")
    ap.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    ap.add_argument("--no-competitor", action="store_true")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "facedex-cli-speed",
                    help="where the photo folders, galleries and clips are kept (reused)")
    ap.add_argument("--save-as", default="cli_speed")
    ap.add_argument("--section-only", action="store_true", help="rewrite bench/sections/80_speed.md from the results")
    args = ap.parse_args()
    if args.section_only:
        write_section(_load(args.save_as) or {})
        print(f"written {SECTION}")
        return
    args.work.mkdir(parents=True, exist_ok=True)
    data = setup(args.work, args.images)
    before = before_tree(args.work, args.before) if args.before else None
    previous = _load(args.save_as) or {}
    result = {k: v for k, v in previous.items() if k in PARTS}
    if "cli" in args.parts:
        result["cli"] = part_cli(data, args.work, args.repeats, before, not args.no_competitor)
    if "latency" in args.parts:
        result["latency"] = part_latency(data)
        print(f"latency: {result['latency']}", flush=True)
    if "startup" in args.parts:
        result["startup"] = part_startup(data, before)
        print(f"startup: {result['startup']}", flush=True)
    if "video" in args.parts:
        result["video"] = part_video(args.work)
    if "profile" in args.parts:
        result["profile"] = part_profile(data, before)
    out = save(args.save_as, result)
    write_section({**result, "machine": machine()})
    print(f"written {out} and {SECTION}")


if __name__ == "__main__":
    main()
