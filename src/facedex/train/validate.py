"""Validation by nearest neighbour, as the gallery will use the model — not by
the softmax, which only knows the training people.

* **Identification** on the training people: their training images are the
  gallery, their held-out images the genuine searches. Rank-1 is the share of
  searches whose best person is right; FNIR at FPIR 1 % is the share of
  searches that do not return their own name at the threshold that lets 1 %
  of stranger searches through. Strangers are crops of people not in DATA
  (``validation.strangers``) or, without them, each held-out image searched
  against the gallery without its own person (leave one person out — this
  flatters a model trained on those very people; give real strangers for an
  honest figure). Scores and rates come from :mod:`facedex.evaluate` and
  :mod:`facedex.identify`, the code `facedex eval identify` uses.
* **Generalisation**: LFW 10-fold accuracy (``facedex.evaluate.lfw``) on the
  pairs of ``pairs.txt`` whose two people are *not* among the training people
  (names matched by :func:`facedex.names.person_key`). The LFW images are
  detected and aligned once (central face, LFW protocol) and the crops cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import DataError
from ..evaluate.identification import open_set
from ..identify import evidence_scores
from ..evaluate.lfw import fallback_face, read_pairs, verification_metrics
from ..files import atomic_writer
from ..names import person_key
from .backbones.common import forward_from, forward_until
from .data import FaceDataset, ImageStore, read_crop_folder, to_tensor

log = logging.getLogger(__name__)

FPIR = 0.01


def autocast(device: torch.device, amp: bool):
    if amp and device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return contextlib.nullcontext()


Source = Callable[[np.ndarray], torch.Tensor]  # row indices → the network's input for those rows


def pixel_source(pixels: np.ndarray | Callable[[np.ndarray], np.ndarray], device: torch.device) -> Source:
    """Crops (an ``N x 112 x 112 x 3`` array or a function of row indices) as network input."""
    def get(rows: np.ndarray) -> torch.Tensor:
        return to_tensor(pixels[rows] if isinstance(pixels, np.ndarray) else pixels(rows), device)
    return get


def cache_source(cache: torch.Tensor, device: torch.device) -> Source:
    """Rows of a feature cache (see :func:`build_cache`) as input to the unfrozen stages."""
    def get(rows: np.ndarray) -> torch.Tensor:
        x = cache[torch.from_numpy(np.asarray(rows, np.int64))].to(device, non_blocking=True).float()
        return x.contiguous(memory_format=torch.channels_last)
    return get


@torch.no_grad()
def embed(model: torch.nn.Module, source: Source, n: int, device: torch.device, *, start: int = 0,
          amp: bool = False, batch_size: int = 128, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """L2-normalised float32 embeddings of rows ``0..n-1`` of ``source``, run from stage ``start``."""
    was_training = model.training
    model.eval()
    out = np.zeros((n, model.embedding_dim), np.float32)
    try:
        for i in range(0, n, batch_size):
            rows = np.arange(i, min(n, i + batch_size))
            with autocast(device, amp):
                e = forward_from(model, source(rows), start).float()
            out[rows] = torch.nn.functional.normalize(e, dim=1).cpu().numpy()
            if progress:
                progress(len(rows))
    finally:
        model.train(was_training)
    return out


def embed_pixels(model: torch.nn.Module, pixels: np.ndarray | Callable[[np.ndarray], np.ndarray], n: int,
                 device: torch.device, **kw: Any) -> np.ndarray:
    """:func:`embed` of crops through the whole network."""
    return embed(model, pixel_source(pixels, device), n, device, **kw)


@torch.no_grad()
def build_cache(model: torch.nn.Module, source: Source, n: int, end: int, device: torch.device, *,
                views: int = 1, augment: Callable | None = None, generator: torch.Generator | None = None,
                amp: bool = False, batch_size: int = 64, progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Outputs of the frozen stages ``[0, end)`` for ``views`` versions of each row, as float16 on
    the CPU: ``views x n x C x H x W`` (view 0 unaugmented, the others through ``augment``)."""
    was_training = model.training
    model.eval()
    cache: torch.Tensor | None = None
    try:
        for v in range(views):
            for i in range(0, n, batch_size):
                rows = np.arange(i, min(n, i + batch_size))
                x = source(rows)
                if v and augment is not None:
                    x = augment(x, generator)
                with autocast(device, amp):
                    h = forward_until(model, x, end)
                if cache is None:
                    cache = torch.empty((views, n, *h.shape[1:]), dtype=torch.float16)
                cache[v, i : i + len(rows)] = h.to("cpu", torch.float16)
                if progress:
                    progress(len(rows))
    finally:
        model.train(was_training)
    assert cache is not None
    return cache


def cache_bytes(model: torch.nn.Module, end: int, device: torch.device) -> int:
    """Bytes per cached image at cut ``end`` (float16)."""
    with torch.no_grad():
        was_training = model.training
        model.eval()
        try:
            h = forward_until(model, torch.zeros(1, 3, 112, 112, device=device), end)
        finally:
            model.train(was_training)
    return int(h.numel()) * 2


@dataclass
class LfwSubset:
    """The LFW pairs of people not trained on, with one aligned crop per image."""

    crops: np.ndarray  # M x 112 x 112 x 3
    a: np.ndarray  # pair → crop index
    b: np.ndarray
    same: np.ndarray
    folds: np.ndarray
    pairs_total: int
    fallbacks: int

    def info(self) -> dict[str, Any]:
        return {"pairs": int(len(self.a)), "pairs_excluded": int(self.pairs_total - len(self.a)),
                "matched": int(self.same.sum()), "images": int(len(self.crops)), "fallbacks": self.fallbacks}


def lfw_subset(lfw_dir: str | Path, pairs_file: str | Path | None, trained: list[str], *,
               cache_dir: Path | None = None, progress: Callable[[int, int], None] | None = None) -> LfwSubset | None:
    """Read ``pairs.txt``, drop the pairs with a trained person, align the rest (cached)."""
    from .. import models
    from ..faces.align import align_face
    from ..faces.detect import central_face, make_detector
    from ..media import load_image

    lfw_dir = Path(lfw_dir).expanduser()
    pairs_file = Path(pairs_file).expanduser() if pairs_file else lfw_dir.parent / "pairs.txt"
    if not lfw_dir.is_dir():
        raise DataError(f"validation.lfw: {lfw_dir} is not a folder (expected the lfw/ folder of LFW)")
    pairs = read_pairs(pairs_file, lfw_dir)
    keys = {person_key(n) for n in trained}
    keep = [p for p in pairs if person_key(p.a.parent.name) not in keys and person_key(p.b.parent.name) not in keys]
    if len({p.fold for p in keep}) < 2 or not any(p.same for p in keep):
        log.warning("LFW: too few pairs left after removing the trained people (%d of %d); skipping LFW",
                    len(keep), len(pairs))
        return None
    paths = sorted({p.a for p in keep} | {p.b for p in keep})
    index = {p: i for i, p in enumerate(paths)}
    tag = hashlib.sha256("\n".join(str(p) for p in paths).encode()).hexdigest()[:16]
    cache = cache_dir / f"lfw-crops-{tag}.npz" if cache_dir else None
    crops, fallbacks = None, 0
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                crops, fallbacks = z["crops"], int(z["fallbacks"])
            if crops.shape != (len(paths), 112, 112, 3):
                crops = None
        except (OSError, ValueError, KeyError):
            crops = None
    if crops is None:
        card = models.get_card(models.DEFAULT_EMBEDDER)
        detector = make_detector(models.DEFAULT_DETECTOR)
        crops = np.zeros((len(paths), 112, 112, 3), np.uint8)
        for start in range(0, len(paths), 32):
            chunk = paths[start : start + 32]
            images = [load_image(p) for p in chunk]
            for k, (im, faces) in enumerate(zip(images, detector.detect_batch(images))):
                h, w = im.shape[:2]
                face = central_face(faces, w, h)
                if face is None:
                    fallbacks += 1
                    face = fallback_face(w, h)
                crops[start + k] = align_face(im, face.landmarks_array(), tuple(card.input_size), card.template)
            if progress:
                progress(min(start + 32, len(paths)), len(paths))
        if cache is not None:
            with atomic_writer(cache) as f:
                np.savez(f, crops=crops, fallbacks=fallbacks)
    return LfwSubset(crops, np.array([index[p.a] for p in keep]), np.array([index[p.b] for p in keep]),
                     np.array([p.same for p in keep]), np.array([p.fold for p in keep]), len(pairs), fallbacks)


def identification(gallery: np.ndarray, gallery_labels: np.ndarray, probes: np.ndarray, probe_labels: np.ndarray,
                   n_people: int, strangers: np.ndarray | None = None) -> dict[str, Any]:
    """Rank-1, and FNIR at FPIR 1 % and 0.1 %, of held-out images against the training gallery."""
    ps = evidence_scores(probes, gallery, gallery_labels, n_people)
    idx = np.arange(len(probes))
    top = np.argmax(ps, axis=1)
    genuine_top, correct = ps[idx, top], top == probe_labels
    if strangers is not None and len(strangers):
        stranger_top = evidence_scores(strangers, gallery, gallery_labels, n_people).max(axis=1)
        source = "strangers folder"
    else:
        others = ps.copy()
        others[idx, probe_labels] = -np.inf
        stranger_top = others.max(axis=1)
        source = "held-out images searched without their own person"
    rate, strict = open_set(genuine_top, correct, stranger_top, targets=(FPIR, FPIR / 10))
    return {
        "rank1": float(np.mean(correct)),
        "fnir_at_fpir_0.01": rate.fnir,
        "threshold_at_fpir_0.01": rate.threshold,
        "fpir_achieved": rate.fpir,
        "fnir_at_fpir_0.001": strict.fnir,
        "threshold_at_fpir_0.001": strict.threshold,
        "genuine_searches": int(len(probes)),
        "stranger_searches": int(len(stranger_top)),
        "stranger_source": source,
        "low_confidence": bool(len(stranger_top) < math.ceil(1 / FPIR)),  # at FPIR 1 %; 0.1 % needs 10x more
        "gallery_faces": int(len(gallery)),
        "people": int(n_people),
    }


def lfw_metrics(vectors: np.ndarray, subset: LfwSubset) -> dict[str, Any]:
    scores = np.sum(vectors[subset.a] * vectors[subset.b], axis=1)
    m = verification_metrics(scores, subset.same, subset.folds)
    return {"lfw_accuracy": m["accuracy_mean"], "lfw_std": m["accuracy_std"],
            **{f"lfw_{k}": v for k, v in subset.info().items()}}


def clean_statistics(vectors: np.ndarray, labels: np.ndarray, seed: int = 0) -> dict[str, float] | None:
    """Similarity statistics for `facedex clean` (the card's ``extra["clean"]``), measured as
    ``bench/embedder_stats.py`` measures them for SFace, on whoever has enough images:
    consensus sizes 3, 5 and 10 for people with at least that many images."""
    rng = np.random.default_rng(seed)
    people, counts = np.unique(labels, return_counts=True)
    if (counts >= 3).sum() < 2 or len(people) < 3:
        return None
    v = vectors.astype(np.float64)
    gen, imp, same, diff = [], [], [], []
    for n in (3, 5, 10):
        for p in people[counts >= n]:
            idx = np.nonzero(labels == p)[0]
            chosen = rng.choice(idx, n, replace=False)
            tot = v[chosen].sum(0)
            for i in chosen:
                c = tot - v[i]
                gen.append(float(v[i] @ c / max(np.linalg.norm(c), 1e-12)))
            c = tot / max(np.linalg.norm(tot), 1e-12)
            others = np.nonzero(labels != p)[0]
            imp += list(v[rng.choice(others, min(20, len(others)), replace=False)] @ c)
    for p in people[counts >= 2]:
        idx = np.nonzero(labels == p)[0][:10]
        same += [float(v[a] @ v[b]) for i, a in enumerate(idx) for b in idx[i + 1 :]]
        others = np.nonzero(labels != p)[0]
        diff += list(v[rng.choice(others, min(30, len(others)), replace=False)] @ v[idx[0]])
    q = {
        "genuine_to_consensus_q005": float(np.quantile(gen, 0.005)),
        "impostor_to_consensus_q999": float(np.quantile(imp, 0.999)),
        "same_pair_q01": float(np.quantile(same, 0.01)),
        "diff_pair_q999": float(np.quantile(diff, 0.999)),
    }
    q["outlier_threshold"] = (q["genuine_to_consensus_q005"] + q["impostor_to_consensus_q999"]) / 2
    q["pair_threshold"] = (q["same_pair_q01"] + q["diff_pair_q999"]) / 2
    return {k: round(x, 4) for k, x in q.items()}


class Validator:
    """Everything validation needs, prepared once per run: which crops form the
    gallery and the searches, the strangers, the LFW subset."""

    def __init__(self, ds: FaceDataset, store: ImageStore, cfg, *, seed: int, cache_dir: Path | None,
                 progress: Callable[[str, int, int], None] | None = None):
        self.ds, self.store, self.cfg = ds, store, cfg
        labels = ds.labels("train")
        rows = np.arange(len(ds.train))
        if cfg.gallery_per_person:
            rng = np.random.default_rng([seed, 7])
            rows = np.sort(np.concatenate([
                rng.permutation(np.nonzero(labels == k)[0])[: cfg.gallery_per_person] for k in range(len(ds.classes))]))
        self.gallery_rows, self.gallery_labels = rows, labels[rows]
        self.probe_rows = len(ds.train) + np.arange(len(ds.val))
        self.probe_labels = ds.labels("val")
        self.strangers: np.ndarray | None = None
        self.stranger_people: list[str] = []
        if cfg.strangers:
            people, px = read_crop_folder(cfg.strangers, "strangers")
            overlap = {person_key(p) for p in people} & {person_key(c) for c in ds.classes}
            if overlap:
                raise DataError(f"validation.strangers: {cfg.strangers} holds people who are in DATA "
                                f"({', '.join(sorted(overlap)[:5])}); strangers must be people not trained on")
            self.strangers, self.stranger_people = px, people
        self.lfw: LfwSubset | None = None
        if cfg.lfw:
            self.lfw = lfw_subset(cfg.lfw, cfg.lfw_pairs or None, ds.classes, cache_dir=cache_dir,
                                  progress=(lambda i, n: progress("lfw", i, n)) if progress else None)

        self.start = 0  # stage the cached sources feed (0: pixels)
        self._sources: dict[str, Source] | None = None
        self._start_of: dict[str, int] = {}

    @property
    def can_identify(self) -> bool:
        return len(self.probe_rows) > 0

    @property
    def can_validate(self) -> bool:
        return self.can_identify or self.lfw is not None

    def sets(self) -> dict[str, int]:
        """The image sets validation embeds, with their sizes."""
        out = {"train": len(self.ds.train)}
        if self.can_identify:
            out["probes"] = len(self.probe_rows)
            if self.strangers is not None:
                out["strangers"] = len(self.strangers)
        if self.lfw is not None:
            out["lfw"] = len(self.lfw.crops)
        return out

    def pixel_sources(self, device: torch.device) -> dict[str, Source]:
        src = {"train": pixel_source(self.store.get_rows_fn(np.arange(len(self.ds.train))), device),
               "probes": pixel_source(self.store.get_rows_fn(self.probe_rows), device)}
        if self.strangers is not None:
            src["strangers"] = pixel_source(self.strangers, device)
        if self.lfw is not None:
            src["lfw"] = pixel_source(self.lfw.crops, device)
        return src

    def use_cache(self, caches: dict[str, torch.Tensor], start: int, device: torch.device) -> None:
        """Embed the cached sets from stage ``start`` on (the frozen stages ran once)."""
        self.start = start
        sources = self.pixel_sources(device)
        self._start_of = {k: (start if k in caches else 0) for k in sources}
        for k, c in caches.items():
            sources[k] = cache_source(c, device)
        self._sources = sources

    def _embed(self, model, name: str, rows: np.ndarray | None, device, amp, progress) -> np.ndarray:
        sources = self._sources or self.pixel_sources(device)
        start = self._start_of.get(name, 0) if self._sources else 0
        src = sources[name]
        n = self.sets()[name]
        if rows is not None:
            full = src
            src = lambda i: full(rows[i])  # noqa: E731
            n = len(rows)
        return embed(model, src, n, device, start=start, amp=amp, batch_size=self.cfg.batch_size, progress=progress)

    def embed_train(self, model: torch.nn.Module, device: torch.device, amp: bool,
                    progress: Callable[[int], None] | None = None) -> np.ndarray:
        return self._embed(model, "train", None, device, amp, progress)

    def run(self, model: torch.nn.Module, device: torch.device, amp: bool, *, with_lfw: bool,
            train_embeddings: bool = False, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
        """Metrics of ``model`` now; ``train_embeddings`` also returns every training
        crop's embedding (``result["_train_vectors"]``, for the class-mean head init)."""
        res: dict[str, Any] = {}
        export_info: dict[str, Any] = {}
        g = None
        if train_embeddings:
            res["_train_vectors"] = t = self._embed(model, "train", None, device, amp, progress)
            g = t[self.gallery_rows]
        if self.can_identify:
            if g is None:
                g = self._embed(model, "train", self.gallery_rows, device, amp, progress)
            p = self._embed(model, "probes", None, device, amp, progress)
            s = self._embed(model, "strangers", None, device, amp, progress) if self.strangers is not None else None
            ident = identification(g, self.gallery_labels, p, self.probe_labels, len(self.ds.classes), s)
            res.update({f"val_{k}": v for k, v in ident.items()})
            export_info["threshold"] = {
                "value": round(ident["threshold_at_fpir_0.01"], 4), "fpir": FPIR,
                "gallery_people": ident["people"], "gallery_faces": ident["gallery_faces"],
                "stranger_searches": ident["stranger_searches"], "stranger_source": ident["stranger_source"],
                "low_confidence": ident["low_confidence"]}
            stats = None
            if s is not None:
                names = sorted(set(self.stranger_people))
                index = {n: i for i, n in enumerate(names)}
                labels = np.array([index[n] for n in self.stranger_people])
                stats, on = clean_statistics(s, labels), "strangers folder (people not trained on)"
            if stats is None:  # too few strangers with 3+ images: the held-out images (optimistic)
                stats, on = clean_statistics(p, self.probe_labels), "held-out images of the trained people"
            if stats:
                export_info["clean"] = {**stats, "measured_on": on}
        if with_lfw and self.lfw is not None:
            v = self._embed(model, "lfw", None, device, amp, progress)
            res.update(lfw_metrics(v, self.lfw))
        res["_export_info"] = export_info
        return res

    def images_per_run(self, with_lfw: bool, train_embeddings: bool = False) -> int:
        n = len(self.ds.train) if train_embeddings else 0
        if self.can_identify:
            n += 0 if train_embeddings else len(self.gallery_rows)
            n += len(self.probe_rows) + (0 if self.strangers is None else len(self.strangers))
        if with_lfw and self.lfw is not None:
            n += len(self.lfw.crops)
        return n
