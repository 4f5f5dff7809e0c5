"""Build a noisy, scraped-looking copy of an LFW subset, reproducibly, with the
ground truth of every file.

    python bench/noisy_lfw.py OUT [--people N] [--seed 0]

From people with at least 10 images (3 of each held out as probes, never in
OUT): 10 % of the images are moved to a wrong person's folder; exact and near
duplicates (resized + recompressed, or slightly cropped) are added; non-face
crops are added as images with no face; some faces are turned upside down or
sideways (they should be recovered, not rejected); and composites put two
people side by side under one of them. ``OUT/truth.json`` says what each
file is.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import LFW  # noqa: E402

HELD_OUT = 3


def eligible_people(min_images: int = 10) -> list[Path]:
    return sorted(d for d in LFW.iterdir() if d.is_dir() and len(list(d.glob("*.jpg"))) >= min_images)


def build(out: Path, people: int | None = None, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    dirs = eligible_people()
    if people:
        dirs = [dirs[i] for i in sorted(rng.choice(len(dirs), people, replace=False))]
    if out.exists():
        shutil.rmtree(out)
    src = out / "noisy"
    src.mkdir(parents=True)
    names = [d.name for d in dirs]
    truth: list[dict] = []
    probes: dict[str, list[str]] = {}
    pool: list[tuple[str, Path]] = []
    for d in dirs:
        files = sorted(d.glob("*.jpg"))
        order = rng.permutation(len(files))
        probes[d.name] = [str(files[i]) for i in order[:HELD_OUT]]
        pool += [(d.name, files[i]) for i in sorted(order[HELD_OUT:])]
        (src / d.name).mkdir()

    def put(folder: str, name: str, data: bytes | None = None, copy_of: Path | None = None, **info) -> None:
        path = src / folder / name
        if copy_of is not None:
            shutil.copy(copy_of, path)
        else:
            path.write_bytes(data)
        truth.append({"file": f"{folder}/{name}", "folder": folder, **info})

    def jpeg(im: Image.Image, q: int = 90) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=q)
        return buf.getvalue()

    n = len(pool)
    kinds = np.array(["clean"] * n, dtype=object)
    idx = rng.permutation(n)
    cut = [0]
    for share in (0.10, 0.04, 0.03):  # wrong person, rotated, composite
        cut.append(cut[-1] + int(round(share * n)))
    kinds[idx[cut[0]:cut[1]]] = "wrong_person"
    kinds[idx[cut[1]:cut[2]]] = "rotated"
    kinds[idx[cut[2]:cut[3]]] = "composite"
    for (person, f), kind in zip(pool, kinds):
        if kind == "clean":
            put(person, f.name, copy_of=f, kind="clean", true_person=person)
        elif kind == "wrong_person":
            other = names[(names.index(person) + 1 + rng.integers(len(names) - 1)) % len(names)]
            put(other, f.name, copy_of=f, kind="wrong_person", true_person=person)
        elif kind == "rotated":
            k = int(rng.choice([1, 2, 2, 3]))  # mostly upside down
            im = Image.open(f).rotate(90 * k, expand=True)
            put(person, f"rot{90 * k}_{f.name}", jpeg(im, 95), kind="rotated", true_person=person, rotation=90 * k)
        else:
            other_person, other_file = pool[int(rng.integers(n))]
            while other_person == person:
                other_person, other_file = pool[int(rng.integers(n))]
            a, b = Image.open(f).convert("RGB"), Image.open(other_file).convert("RGB")
            canvas = Image.new("RGB", (a.width + b.width, max(a.height, b.height)))
            canvas.paste(a, (0, 0))
            canvas.paste(b, (a.width, 0))
            put(person, f"composite_{f.name}", jpeg(canvas, 92), kind="composite", true_person=person,
                other_person=other_person, true_side="left")
    clean_rows = [t for t in truth if t["kind"] == "clean"]
    picks = rng.permutation(len(clean_rows))
    n_dup = int(round(0.05 * len(clean_rows)))
    for i in picks[:n_dup]:
        row = clean_rows[i]
        put(row["folder"], f"copy_{Path(row['file']).name}", copy_of=src / row["file"], kind="duplicate",
            true_person=row["true_person"], ref=row["file"])
    for j, i in enumerate(picks[n_dup : 2 * n_dup]):
        row = clean_rows[i]
        im = Image.open(src / row["file"]).convert("RGB")
        if j % 2 == 0:
            variant = im.resize((int(im.width * 0.6), int(im.height * 0.6)), Image.Resampling.LANCZOS)
            data, how = jpeg(variant, 40), "resized 60 % and recompressed at quality 40"
        else:
            w, h = im.size
            variant = im.crop((int(0.06 * w), int(0.04 * h), int(0.95 * w), int(0.97 * h)))
            data, how = jpeg(variant, 85), "cropped by ~5 % and recompressed"
        put(row["folder"], f"near_{Path(row['file']).name}", data, kind="near_duplicate",
            true_person=row["true_person"], ref=row["file"], how=how)
    n_noface = int(round(0.04 * n))
    for j in range(n_noface):
        person, f = pool[int(rng.integers(n))]
        im = Image.open(f).convert("RGB")
        box = [(0, 190, 60, 250), (190, 190, 250, 250), (0, 200, 250, 250)][j % 3]  # background, clothing
        crop = im.crop(box).resize((200, int(200 * (box[3] - box[1]) / (box[2] - box[0]))))
        put(person, f"noface_{j:04d}.jpg", jpeg(crop), kind="no_face", true_person=None)
    (out / "truth.json").write_text(json.dumps({"seed": seed, "people": names, "files": truth, "probes": probes},
                                               indent=1, ensure_ascii=False))
    return {"files": len(truth), "people": len(names)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--people", type=int, default=None, help="use N random eligible people (default all 158)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(build(args.out, args.people, args.seed))


if __name__ == "__main__":
    main()
