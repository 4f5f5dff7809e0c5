"""Training data: `facedex clean` output (or a plain folder of aligned crops) →
people, training and held-out images, batches, augmentation.

``DATA`` is read in one of two forms:

* ``DATA/manifest.jsonl`` from ``facedex clean``: every line with
  ``"decision": "kept"`` gives a ``person`` and an ``output`` crop path
  (relative to DATA); ``"split": "val"`` marks held-out images (from
  ``facedex clean --split``);
* otherwise ``DATA/<Person>/*.png|jpg``: already aligned 112x112 crops, one
  folder per person (sub-folders such as ``wide/`` are ignored).

Without a split in the manifest, each person's images are split at random
(``data.val_fraction``, seeded per person so adding a person does not move
anyone else's images). People with fewer than ``data.min_images`` training
images are left out and listed. Every image is decoded once up front: an
unreadable file or a crop that is not 112x112 stops the run with a list of the
files (or is skipped with ``data.skip_bad_images``), before any training.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..errors import DataError
from ..media import IMAGE_SUFFIXES
from .config import AugmentConfig, DataConfig

log = logging.getLogger(__name__)

CROP = 112  # aligned crops are CROP x CROP RGB
_SHOW = 8  # files listed in an error message


@dataclass(frozen=True)
class Sample:
    path: Path
    person: str
    split: str  # "train" | "val"


@dataclass
class FaceDataset:
    """The people and images of one DATA folder (plain data; pixels live in :class:`ImageStore`)."""

    root: Path
    source: str  # "manifest" | "folders"
    classes: list[str]
    train: list[Sample]
    val: list[Sample]
    excluded: dict[str, str] = field(default_factory=dict)  # person → why not trained
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason) with skip_bad_images
    split_from: str = ""  # "manifest" | "random"

    @property
    def label_of(self) -> dict[str, int]:
        return {p: i for i, p in enumerate(self.classes)}

    def labels(self, split: str) -> np.ndarray:
        idx = self.label_of
        return np.array([idx[s.person] for s in getattr(self, split)], np.int64)

    def fingerprint(self) -> str:
        """Identifies the people, images and split (checked on --resume)."""
        h = hashlib.sha256()
        for split in ("train", "val"):
            for s in getattr(self, split):
                rel = s.path.relative_to(self.root) if s.path.is_relative_to(self.root) else s.path
                h.update(f"{split}\t{s.person}\t{rel.as_posix()}\n".encode())
        return h.hexdigest()

    def summary(self) -> dict:
        per = {p: [0, 0] for p in self.classes}
        for s in self.train:
            per[s.person][0] += 1
        for s in self.val:
            per[s.person][1] += 1
        counts = [t for t, _ in per.values()]
        return {"data": str(self.root), "source": self.source, "split_from": self.split_from,
                "people": len(self.classes), "train_images": len(self.train), "val_images": len(self.val),
                "train_images_per_person": {"min": min(counts), "median": float(np.median(counts)),
                                            "max": max(counts)} if counts else {},
                "excluded_people": dict(sorted(self.excluded.items())), "skipped_files": len(self.skipped)}


def decode_crop(path: Path) -> tuple[np.ndarray | None, str]:
    import cv2

    try:
        raw = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    img = cv2.imdecode(raw, cv2.IMREAD_COLOR) if raw.size else None
    if img is None:
        return None, "is not a readable image"
    if img.shape[:2] != (CROP, CROP):
        return None, f"is {img.shape[1]}x{img.shape[0]}, not a {CROP}x{CROP} aligned crop"
    return np.ascontiguousarray(img[:, :, ::-1]), ""


def _read_manifest(root: Path) -> list[tuple[str, Path, str]]:
    """(person, crop path, split) for every kept face in DATA/manifest.jsonl."""
    path = root / "manifest.jsonl"
    rows, seen = [], set()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read the manifest ({err})") from err
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as err:
            raise DataError(f"{path}:{n}: not a JSON object ({err}); is this a `facedex clean` manifest?") from err
        if not isinstance(rec, dict) or "person" not in rec or "decision" not in rec:
            raise DataError(f"{path}:{n}: a manifest line needs 'person' and 'decision' (written by `facedex clean`)")
        if rec["decision"] != "kept":
            continue
        out = rec.get("output")
        if not isinstance(out, str) or not out:
            raise DataError(f"{path}:{n}: a kept face without an 'output' crop path; re-run `facedex clean`")
        crop = (root / out).resolve()
        if crop in seen:
            continue
        seen.add(crop)
        split = rec.get("split") or ""
        if split not in ("", "train", "val"):
            raise DataError(f"{path}:{n}: split must be 'train' or 'val', got {split!r}")
        rows.append((str(rec["person"]), crop, split))
    return rows


def _read_folders(root: Path) -> list[tuple[str, Path, str]]:
    rows = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(d.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                rows.append((d.name, f, ""))
    return rows


def _random_split(rows: list[tuple[str, Path, str]], fraction: float, min_images: int,
                  seed: int) -> list[tuple[str, Path, str]]:
    by_person: dict[str, list[tuple[str, Path, str]]] = {}
    for r in rows:
        by_person.setdefault(r[0], []).append(r)
    out = []
    for person, items in by_person.items():
        items = sorted(items, key=lambda r: r[1].as_posix())
        rng = np.random.default_rng([seed, zlib.crc32(person.encode("utf-8"))])
        order = rng.permutation(len(items))
        n_val = max(0, min(int(math.floor(len(items) * fraction)), len(items) - min_images))
        val = set(order[:n_val].tolist())
        out += [(p, f, "val" if i in val else "train") for i, (p, f, _) in enumerate(items)]
    return out


def scan_dataset(root: str | Path, cfg: DataConfig | None = None, *, seed: int = 0,
                 progress: Callable[[int, int], None] | None = None) -> tuple[FaceDataset, "ImageStore"]:
    """Read DATA (see the module documentation); returns the dataset and its pixels."""
    cfg = cfg or DataConfig()
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; expected the output of `facedex clean` "
                        "(or <DATA>/<Person>/*.png aligned 112x112 crops)")
    if (root / "manifest.jsonl").is_file():
        rows, source = _read_manifest(root), "manifest"
    else:
        rows, source = _read_folders(root), "folders"
    if not rows:
        what = "kept faces in manifest.jsonl" if source == "manifest" else "person folders with images"
        raise DataError(f"{root}: no {what}; expected the output of `facedex clean` "
                        "(or <DATA>/<Person>/*.png aligned 112x112 crops)")

    # decode everything once: bad files are reported before any training
    images: dict[Path, np.ndarray] = {}
    bad: list[tuple[str, str]] = []
    for k, (_, path, _) in enumerate(rows):
        if not path.is_file():
            bad.append((str(path), "is missing (listed in the manifest)" if source == "manifest" else "is missing"))
        else:
            img, why = decode_crop(path)
            if img is None:
                bad.append((str(path), why))
            else:
                images[path] = img
        if progress and ((k + 1) % 256 == 0 or k + 1 == len(rows)):
            progress(k + 1, len(rows))
    if bad and not cfg.skip_bad_images:
        shown = "\n".join(f"  {f} {why}" for f, why in bad[:_SHOW])
        more = f"\n  … and {len(bad) - _SHOW} more" if len(bad) > _SHOW else ""
        raise DataError(
            f"{root}: {len(bad)} of {len(rows)} images cannot be used:\n{shown}{more}\n"
            "facedex train needs aligned 112x112 face crops: run `facedex clean RAW DATA` to make them, "
            "remove the files above, or set data.skip_bad_images = true to train without them")
    for f, why in bad:
        log.warning("skipping %s: it %s", f, why)
    rows = [r for r in rows if r[1] in images]

    has_split = source == "manifest" and any(r[2] for r in rows)
    if has_split:
        rows = [(p, f, s or "train") for p, f, s in rows]
    else:
        rows = _random_split(rows, cfg.val_fraction, cfg.min_images, seed)

    train_count: dict[str, int] = {}
    everyone: set[str] = set()
    for p, _, s in rows:
        everyone.add(p)
        if s == "train":
            train_count[p] = train_count.get(p, 0) + 1
    excluded = {p: f"{train_count.get(p, 0)} training image(s), fewer than data.min_images = {cfg.min_images}"
                for p in sorted(everyone) if train_count.get(p, 0) < cfg.min_images}
    classes = sorted(p for p in everyone if p not in excluded)
    for p, why in excluded.items():
        log.warning("not training on %s: %s", p, why)
    if len(classes) < 2:
        total = len(everyone)
        raise DataError(
            f"{root}: {len(classes)} of {total} {'person has' if total == 1 else 'people have'} at least "
            f"{cfg.min_images} training image(s); training needs at least 2 people to tell apart. "
            + ("Add people (folders), or lower data.min_images." if total < 2 else
               "Add images, lower data.min_images, or lower data.val_fraction."))
    keep = set(classes)
    train = [Sample(f, p, "train") for p, f, s in rows if s == "train" and p in keep]
    val = [Sample(f, p, "val") for p, f, s in rows if s == "val" and p in keep]
    ds = FaceDataset(root, source, classes, train, val, excluded, bad if cfg.skip_bad_images else [],
                     "manifest" if has_split else "random")
    order = [s.path for s in train + val]
    nbytes = len(order) * CROP * CROP * 3
    in_memory = nbytes <= cfg.memory_limit_mb * 2**20
    store = ImageStore(order, np.stack([images[p] for p in order]) if in_memory else None)
    if not in_memory:
        log.info("%d crops (%.0f MB) exceed data.memory_limit_mb; reading them from disk per batch",
                 len(order), nbytes / 2**20)
    return ds, store


def read_crop_folder(root: str | Path, what: str = "strangers") -> tuple[list[str], np.ndarray]:
    """Every aligned crop under a clean output or ``<DIR>/<Person>/`` folder: (person per crop, pixels)."""
    ds, store = scan_dataset(root, DataConfig(val_fraction=0.0, min_images=1))
    samples = ds.train + ds.val
    if not samples:
        raise DataError(f"{root}: no aligned crops for the {what}")
    return [s.person for s in samples], store.get(np.arange(len(samples)))


class ImageStore:
    """Pixels of the dataset's crops, ``N x 112 x 112 x 3`` RGB uint8, in memory or read per batch.
    Row ``i`` is ``(dataset.train + dataset.val)[i]``."""

    def __init__(self, paths: Sequence[Path], pixels: np.ndarray | None):
        self.paths = list(paths)
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.paths)

    def get_rows_fn(self, rows: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """``f(i)`` → pixels of ``rows[i]`` (for :func:`facedex.train.validate.embed_pixels`)."""
        rows = np.asarray(rows, np.int64)
        return lambda i: self.get(rows[i])

    def get(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, np.int64)
        if self.pixels is not None:
            return self.pixels[rows]
        out = np.empty((len(rows), CROP, CROP, 3), np.uint8)
        for k, r in enumerate(rows):
            img, why = decode_crop(self.paths[r])
            if img is None:
                raise DataError(f"{self.paths[r]} {why} (it was readable when training started)")
            out[k] = img
        return out


def epoch_order(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one epoch: a permutation fixed by (seed, epoch), last partial batch dropped
    (batch norm needs full batches); the same on every machine and after a resume."""
    perm = np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)
    full = n // batch_size
    return [perm[i * batch_size : (i + 1) * batch_size] for i in range(full)]


def to_tensor(pixels: np.ndarray, device) -> "torch.Tensor":  # noqa: F821
    """``N x 112 x 112 x 3`` uint8 → ``N x 3 x 112 x 112`` float 0..255 (channels-last memory)."""
    import torch

    t = torch.from_numpy(np.ascontiguousarray(pixels)).to(device, non_blocking=True)
    return t.permute(0, 3, 1, 2).float().contiguous(memory_format=torch.channels_last)


class Augmenter:
    """Random flip, shift/zoom/rotation and colour changes on a batch, drawn from a
    ``torch.Generator`` (on the CPU, so a seed gives the same crops on any device)."""

    def __init__(self, cfg: AugmentConfig):
        self.cfg = cfg

    def __call__(self, x, generator):
        import torch
        import torch.nn.functional as F

        c = self.cfg
        n = x.shape[0]

        def uniform(lo: float, hi: float, size: int = n) -> torch.Tensor:
            return (torch.rand(size, generator=generator) * (hi - lo) + lo).to(x.device)

        if c.flip and not (c.shift or c.scale or c.rotate):  # exact and cheap
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        elif c.shift or c.scale or c.rotate or c.flip:
            flip = (torch.rand(n, generator=generator) < 0.5).to(x.device) if c.flip else torch.zeros(n, dtype=torch.bool, device=x.device)
            zoom = uniform(1 - c.scale, 1 + c.scale)
            angle = uniform(-c.rotate, c.rotate) * math.pi / 180
            tx, ty = uniform(-2 * c.shift, 2 * c.shift), uniform(-2 * c.shift, 2 * c.shift)
            cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
            sx = torch.where(flip, -1.0, 1.0)
            theta = torch.stack([torch.stack([cos * sx, -sin, tx], 1), torch.stack([sin * sx, cos, ty], 1)], 1)
            grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if c.color:
            b = uniform(1 - c.color, 1 + c.color).view(n, 1, 1, 1)
            k = uniform(1 - c.color, 1 + c.color).view(n, 1, 1, 1)
            s = uniform(1 - c.color, 1 + c.color).view(n, 1, 1, 1)
            grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = grey + (x - grey) * s  # saturation
            mean = grey.mean(dim=(2, 3), keepdim=True)
            x = (x - mean) * k + mean  # contrast
            x = x * b  # brightness
        if c.gray:
            g = (torch.rand(n, generator=generator) < c.gray).to(x.device).view(n, 1, 1, 1)
            grey = (x * torch.tensor([0.299, 0.587, 0.114], device=x.device).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = torch.where(g, grey.expand_as(x), x)
        return x.clamp(0, 255).contiguous(memory_format=torch.channels_last)


def iterate_batches(store: ImageStore, rows: np.ndarray, batch_size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, pixels) for consecutive chunks of ``rows`` (validation, no shuffling)."""
    for i in range(0, len(rows), batch_size):
        yield i, store.get(rows[i : i + batch_size])
