"""`facedex train` on LFW: fine-tune SFace, train MobileFaceNet from scratch, measure both.

    python bench/train_bench.py [--quick] [--work DIR]

Data (built once in WORK, reused by later runs):

* **trained people**: the 158 LFW people with >= 10 images (--quick: 30 of them);
  the face nearest each image's centre, aligned like `facedex eval`, written as
  `facedex clean` output; 30 % of each person's images held out (seeded);
* **strangers** for FPIR: LFW people with 4-9 images (never trained on), up to 4
  images each;
* **generalisation**: LFW View-2 pairs whose two people are not trained on
  (5,274 of the 6,000 pairs), 10-fold accuracy.

Runs: SFace fine-tuned with ArcFace (the recommended mode), and MobileFaceNet
from scratch with softmax + center loss. Both report the held-out rank-1 and
FNIR at FPIR 1 % against a gallery of the training images, before (SFace) and
after; and the LFW accuracy on the untrained pairs. The exported SFace model
is checked through `facedex.embed.make_embedder(path)` on the held-out crops.
Results: bench/results/train.json (train_quick.json) and bench/sections/40_train.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LFW, PAIRS, save  # noqa: E402


def build_people(out: Path, people: list[Path], *, val_fraction: float, seed: int, max_images: int | None = None,
                 split: bool = True) -> dict:
    """Central-face aligned crops of ``people`` as `facedex clean` output (manifest with a split)."""
    import cv2

    from facedex.evaluate.lfw import fallback_face
    from facedex.faces.detect import central_face
    from facedex.media import load_image
    from facedex.pipeline import FacePipeline

    if (out / "manifest.jsonl").is_file():
        return json.loads((out / "build.json").read_text())
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    pipe = FacePipeline()
    rng = np.random.default_rng(seed)
    lines, fallbacks, n = [], 0, 0
    for d in people:
        files = sorted(d.glob("*.jpg"))[:max_images]
        order = rng.permutation(len(files))
        n_val = int(round(len(files) * val_fraction)) if split else 0
        val = {files[i] for i in order[:n_val]}
        (tmp / d.name).mkdir()
        images = [load_image(f) for f in files]
        for f, im, faces in zip(files, images, pipe.detector.detect_batch(images)):
            h, w = im.shape[:2]
            face = central_face(faces, w, h)
            if face is None:
                fallbacks += 1
                face = fallback_face(w, h)
            crop = pipe.embedder.align(im, face)
            rel = f"{d.name}/{f.stem}.png"
            cv2.imwrite(str(tmp / rel), crop[:, :, ::-1])
            rec = {"person": d.name, "source": f"{d.name}/{f.name}", "decision": "kept", "output": rel}
            if split:
                rec["split"] = "val" if f in val else "train"
            lines.append(json.dumps(rec))
            n += 1
    (tmp / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    info = {"people": len(people), "images": n, "fallbacks": fallbacks,
            "val_images": sum('"split": "val"' in ln for ln in lines)}
    (tmp / "build.json").write_text(json.dumps(info))
    tmp.replace(out)
    return info


def lfw_people(min_images: int, max_images: int | None = None) -> list[Path]:
    out = []
    for d in sorted(p for p in LFW.iterdir() if p.is_dir()):
        k = len(list(d.glob("*.jpg")))
        if k >= min_images and (max_images is None or k <= max_images):
            out.append(d)
    return out


def run(data: Path, out: Path, overrides: dict, lfw_cache: Path | None = None) -> tuple[dict, float]:
    from facedex.train import train

    if out.exists():
        shutil.rmtree(out)
    if lfw_cache is not None and lfw_cache.is_dir():  # the aligned LFW crops of an earlier run (same people)
        shutil.copytree(lfw_cache, out / "cache")
    t0 = time.perf_counter()
    last = [0.0]

    def progress(e) -> None:
        if e.kind == "stage" or (e.kind == "epoch"):
            now = time.perf_counter() - t0
            if now - last[0] > 0 or e.kind == "epoch":
                msg = e.message if e.kind == "stage" else _brief(e.metrics)
                print(f"  [{now:6.0f} s] {msg}", flush=True)
                last[0] = now

    result = train(data, out, overrides=overrides, progress=progress)
    return result.to_dict(), time.perf_counter() - t0


def _brief(m: dict) -> str:
    keys = ("epoch", "train_loss", "images_per_s", "val_rank1", "val_fnir_at_fpir_0.01", "lfw_accuracy")
    return "  ".join(f"{k}={round(m[k], 4) if isinstance(m[k], float) else m[k]}" for k in keys if m.get(k) is not None)


def _metrics(row: dict) -> dict:
    keys = ("val_rank1", "val_fnir_at_fpir_0.01", "val_fnir_at_fpir_0.001", "val_threshold_at_fpir_0.01",
            "val_genuine_searches", "val_stranger_searches", "lfw_accuracy", "lfw_std", "lfw_pairs")
    return {k: row.get(k) for k in keys}


def check_exported(onnx: Path, data: Path, strangers: Path) -> dict:
    """The exported file through facedex's own embedder: held-out rank-1 and FNIR (as validation measures them)."""
    from facedex.embed import make_embedder
    from facedex.train.data import read_crop_folder, scan_dataset
    from facedex.train.validate import identification

    ds, store = scan_dataset(data)
    emb = make_embedder(str(onnx))
    g = emb.embed_crops(list(store.get(np.arange(len(ds.train)))))
    p = emb.embed_crops(list(store.get(len(ds.train) + np.arange(len(ds.val)))))
    _, s_px = read_crop_folder(strangers)
    s = emb.embed_crops(list(s_px))
    r = identification(g, ds.labels("train"), p, ds.labels("val"), len(ds.classes), s)
    return {"embedder": emb.id, "val_rank1": r["rank1"], "val_fnir_at_fpir_0.01": r["fnir_at_fpir_0.01"],
            "val_fnir_at_fpir_0.001": r["fnir_at_fpir_0.001"]}


def throughput(data: Path, work: Path, quick: bool) -> dict:
    """Training images/s of one step (batch 64: data, augmentation, forward, backward, update) on this machine."""
    import json as _json

    sub = work / "throughput-data"
    if not sub.is_dir():  # 12 people, ~230 training images
        rows = [_json.loads(x) for x in (data / "manifest.jsonl").read_text().splitlines() if x.strip()]
        people = sorted({r["person"] for r in rows})[:12]
        keep = [r for r in rows if r["person"] in people]
        tmp = work / "throughput-data.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        for r in keep:
            (tmp / r["person"]).mkdir(parents=True, exist_ok=True)
            shutil.copy(data / r["output"], tmp / r["output"])
        (tmp / "manifest.jsonl").write_text("\n".join(_json.dumps(r) for r in keep) + "\n")
        tmp.replace(sub)
    setups = {
        "sface, all layers trained (no cache)": {"model.freeze": 0, "model.cache_views": 0},
        "sface, last 4 blocks + head, no cache": {"model.freeze": 23, "model.cache_views": 0},
        "sface, last 4 blocks + head, cached (the default)": {},
        "mobilefacenet from scratch": {"model.backbone": "mobilefacenet", "loss.name": "center"},
    }
    out = {}
    for name, over in setups.items():
        res, _ = run(sub, work / "throughput-run", {"epochs": 1 if quick else 2, "validation.before": False,
                                                     "export.enabled": False, **over})
        rates = [h["images_per_s"] for h in res["history"] if h.get("images_per_s")]
        out[name] = round(float(np.mean(rates)), 1)
        print(f"throughput: {name}: {out[name]} images/s", flush=True)
    shutil.rmtree(work / "throughput-run", ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="30 people, 100 strangers, 1 fine-tuning and 3 scratch epochs")
    ap.add_argument("--work", type=Path, default=Path("/tmp/facedex-train-bench"),
                    help="where to build the data and run (default /tmp/facedex-train-bench; reused)")
    ap.add_argument("--scratch-epochs", type=int, default=None, help="MobileFaceNet epochs (default 8; --quick 3)")
    args = ap.parse_args()
    t_all = time.perf_counter()
    work = args.work / ("quick" if args.quick else "full")
    work.mkdir(parents=True, exist_ok=True)
    trained = lfw_people(10)
    stranger_people = lfw_people(4, 9)
    if args.quick:
        trained, stranger_people = trained[::5][:30], stranger_people[:100]
    print(f"building the data in {work}", flush=True)
    t0 = time.perf_counter()
    data_info = build_people(work / "people", trained, val_fraction=0.3, seed=0)
    str_info = build_people(work / "strangers", stranger_people, val_fraction=0.0, seed=0, max_images=4, split=False)
    build_s = time.perf_counter() - t0
    common = {"validation.strangers": str(work / "strangers"), "validation.lfw": str(LFW),
              "validation.lfw_pairs": str(PAIRS)}

    print("fine-tuning SFace (the defaults)", flush=True)
    ft_over = {**common, **({"epochs": 1} if args.quick else {})}
    ft, ft_s = run(work / "people", work / "finetune", ft_over)
    before, after = ft["history"][0], ft["history"][-1]
    exported = check_exported(Path(ft["export"]["onnx"]), work / "people", work / "strangers")

    print("MobileFaceNet from scratch with softmax + center loss", flush=True)
    epochs = args.scratch_epochs or (3 if args.quick else 8)
    sc_over = {**common, "model.backbone": "mobilefacenet", "loss.name": "center", "epochs": epochs,
               "validation.before": False, "validation.every": 5}
    sc, sc_s = run(work / "people", work / "scratch", sc_over, lfw_cache=work / "finetune" / "cache")

    speeds = throughput(work / "people", work, args.quick)
    cfg = json.loads(json.dumps(ft["run"]))  # resolved settings are in config.toml; keep the essentials here
    result = {
        "quick": args.quick,
        "data": {"trained_people": data_info, "strangers": str_info, "lfw_pairs": after.get("lfw_pairs"),
                 "lfw_pairs_excluded": after.get("lfw_pairs_excluded"), "build_seconds": round(build_s, 1)},
        "finetune": {"overrides": ft_over, "config_toml": (work / "finetune" / "config.toml").read_text(),
                     "before": _metrics(before), "after": _metrics(after), "best": ft["best"],
                     "epochs": ft["epochs_done"], "seconds": round(ft_s, 1),
                     "train_images_per_s": [h.get("images_per_s") for h in ft["history"] if h.get("epoch")],
                     "history": ft["history"], "export": ft["export"], "exported_model_check": exported,
                     "model": cfg.get("model"), "sface_conversion": cfg.get("sface_conversion")},
        "scratch": {"overrides": sc_over, "after": _metrics(sc["history"][-1]), "epochs": sc["epochs_done"],
                    "seconds": round(sc_s, 1), "history": sc["history"], "model": sc["run"].get("model")},
        "throughput_images_per_s": speeds,
        "seconds": round(time.perf_counter() - t_all, 1),
    }
    out = save("train_quick" if args.quick else "train", result)
    render_section(json.loads(out.read_text()))
    print(f"written {out}")


def render_section(d: dict) -> None:
    ft, sc = d["finetune"], d["scratch"]
    b, a, s, x = ft["before"], ft["after"], sc["after"], ft["exported_model_check"]

    def pct(v, nd=2):
        return "–" if v is None else f"{100 * v:.{nd}f} %"

    def errors(rate, n):
        return "" if rate is None or not n else f" ({round(rate * n)})"

    n = a.get("val_genuine_searches") or 0
    m = d["machine"]
    dp = d["data"]["trained_people"]
    lines = [
        "## Training (`facedex train`)\n",
        f"{dp['people']} LFW people with ≥ 10 images ({dp['images']} images; {dp['val_images']} held out, 30 % per "
        f"person), aligned like `facedex eval` and written as `facedex clean` output. Held-out images are searched "
        f"against a gallery of the training images; FPIR from {d['data']['strangers']['images']} images of "
        f"{d['data']['strangers']['people']} LFW people never trained on; LFW 10-fold on the "
        f"{d['data']['lfw_pairs']} View-2 pairs whose two people were not trained on. "
        f"`python bench/train_bench.py{' --quick' if d['quick'] else ''}` ({d['seconds'] / 60:.0f} min in all).\n",
        f"_{m['cpu']}, {m['cores']} cores, commit {m['commit']}, {m['date']}_\n",
        "| model | held-out rank-1 | FNIR @ FPIR 1 % | FNIR @ FPIR 0.1 % | LFW, untrained pairs | training |",
        "|---|---|---|---|---|---|",
        f"| SFace as shipped | {pct(b['val_rank1'])}{errors(1 - b['val_rank1'], n)} | "
        f"{pct(b['val_fnir_at_fpir_0.01'])}{errors(b['val_fnir_at_fpir_0.01'], n)} | "
        f"{pct(b['val_fnir_at_fpir_0.001'])}{errors(b['val_fnir_at_fpir_0.001'], n)} | "
        f"{pct(b['lfw_accuracy'])} ± {pct(b['lfw_std'])} | – |",
        f"| SFace fine-tuned (defaults: ArcFace, last 4 blocks + head, {ft['epochs']} epochs) | "
        f"{pct(a['val_rank1'])}{errors(1 - a['val_rank1'], n)} | "
        f"{pct(a['val_fnir_at_fpir_0.01'])}{errors(a['val_fnir_at_fpir_0.01'], n)} | "
        f"{pct(a['val_fnir_at_fpir_0.001'])}{errors(a['val_fnir_at_fpir_0.001'], n)} | "
        f"{pct(a['lfw_accuracy'])} ± {pct(a['lfw_std'])} | {ft['seconds'] / 60:.0f} min |",
        f"| MobileFaceNet from scratch, softmax + center loss, {sc['epochs']} epochs | "
        f"{pct(s['val_rank1'])} | {pct(s['val_fnir_at_fpir_0.01'])} | {pct(s['val_fnir_at_fpir_0.001'])} | "
        f"{pct(s['lfw_accuracy'])} ± {pct(s['lfw_std'])} | {sc['seconds'] / 60:.0f} min |",
        "",
        f"Numbers in brackets: searches out of {n}; the fine-tuned row is the last epoch. The exported model is "
        f"`best.pt` (epoch {ft['best']['epoch']}, chosen by FNIR @ FPIR 1 %); its ONNX file, run through "
        f"`facedex.embed.make_embedder(path)`, gives held-out rank-1 {pct(x['val_rank1'])}"
        f"{errors(1 - x['val_rank1'], n)}, FNIR @ FPIR 1 % {pct(x['val_fnir_at_fpir_0.01'])}"
        f"{errors(x['val_fnir_at_fpir_0.01'], n)} and @ 0.1 % {pct(x['val_fnir_at_fpir_0.001'])}"
        f"{errors(x['val_fnir_at_fpir_0.001'], n)} (validation during training uses float16 cached intermediate "
        "values).",
        f"LFW change on untrained pairs: {100 * (a['lfw_accuracy'] - b['lfw_accuracy']):+.2f} points "
        "(target: no more than −0.3).\n",
        "**Training speed** (images/s, batch 64, augmentation + forward + backward + update):\n",
        "| setup | images/s |", "|---|---|",
    ]
    lines += [f"| {k} | {v} |" for k, v in d["throughput_images_per_s"].items()]
    folder = Path(__file__).resolve().parent / "sections"
    folder.mkdir(exist_ok=True)
    (folder / "40_train.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
