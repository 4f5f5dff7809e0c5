"""A 1:N identification protocol on any folder-per-person dataset.

People with at least ``min_images`` images are *enrolled* with
``gallery_per_person`` of them; their other images are the *genuine* probes.
People with fewer images are never enrolled: up to ``num_strangers`` of them give
one *stranger* probe each, and (for the gallery-size sweep) others are added
to the gallery as *distractor* identities that are never searched for.

Decisions are :class:`facedex.identify.Identifier`'s, as ``identify`` makes
them: the people among the 64 nearest faces, each scored by the cosine
similarity to their template (the normalised mean of their enrolled faces;
``evidence="max"``: the best similarity to any one face), the best one's score
lowered by the embedder's crowding penalty (``crowding=False``: without); a
search returns the best person when that score reaches the threshold.
Closed-set ranks use the same evidence over all people
(:func:`facedex.identify.evidence_scores`). Rates follow NIST FRVT 1:N:

* rank-k (closed set): share of genuine searches whose person is among the k
  best people;
* FPIR(t): share of stranger searches that return any name;
* FNIR(t): share of genuine searches that do not return their own name first.

Thresholds for FPIR targets are chosen with :func:`facedex.identify.threshold_at_fpir`,
the function ``facedex calibrate`` uses. The report also checks calibration:
the gallery is calibrated on itself (leave one person out, as ``facedex
calibrate`` does) and the resulting threshold is applied to the real strangers.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, DatasetError
from ..identify import Identifier, calibrate, evidence_scores, fnir_at, fpir_at, threshold_at_fpir
from ..media import IMAGE_SUFFIXES
from ..pipeline import FacePipeline
from .lfw import embed_central_faces

log = logging.getLogger(__name__)

FPIR_TARGETS = (0.01, 0.001)


@dataclass
class Split:
    enrolled: dict[str, list[Path]]
    genuine: dict[str, list[Path]]
    strangers: list[Path]
    distractors: dict[str, Path]


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def _whole(value: Any, low: int) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= low


def check_options(*, min_images: int = 10, gallery_per_person: int = 5, num_strangers: int = 1000,
                  num_distractors: int = 0, gallery_sizes: Sequence[int] = (),
                  max_probes_per_person: int | None = None) -> None:
    """Raise :class:`ConfigError` for option values the protocol cannot use (called
    before the dataset is read, so that a bad value fails at once)."""
    if not _whole(gallery_per_person, 1):
        raise ConfigError(f"gallery_per_person must be a whole number >= 1, got {gallery_per_person!r}")
    if not _whole(min_images, 2) or min_images <= gallery_per_person:
        raise ConfigError(f"min_images ({min_images!r}) must exceed gallery_per_person ({gallery_per_person}) "
                          "so that every enrolled person keeps at least one genuine search")
    for name, value in (("num_strangers", num_strangers), ("num_distractors", num_distractors)):
        if not _whole(value, 0):
            raise ConfigError(f"{name} must be a whole number >= 0, got {value!r}")
    if max_probes_per_person is not None and not _whole(max_probes_per_person, 1):
        raise ConfigError(f"max_probes_per_person must be a whole number >= 1, got {max_probes_per_person!r}")
    bad = [s for s in gallery_sizes if not _whole(s, 1)]
    if bad:
        raise ConfigError(f"gallery sizes must be whole numbers of identities >= 1, got {bad}")


def split_dataset(data_dir: str | Path, *, min_images: int = 10, gallery_per_person: int = 5,
                  num_strangers: int = 1000, num_distractors: int = 0, seed: int = 0,
                  max_probes_per_person: int | None = None) -> Split:
    """Deterministic split of a folder-per-person dataset (see the module doc)."""
    check_options(min_images=min_images, gallery_per_person=gallery_per_person, num_strangers=num_strangers,
                  num_distractors=num_distractors, max_probes_per_person=max_probes_per_person)
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (expected <DIR>/<Person>/<images>)")
    rng = np.random.default_rng(seed)
    people = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    enrolled, genuine, others = {}, {}, []
    for d in people:
        files = _images(d)
        if len(files) >= min_images:
            order = rng.permutation(len(files))
            chosen = [files[i] for i in order]
            enrolled[d.name] = sorted(chosen[:gallery_per_person])
            probes = sorted(chosen[gallery_per_person:])
            genuine[d.name] = probes[:max_probes_per_person] if max_probes_per_person else probes
        elif files:
            others.append(files)
    if len(enrolled) < 2:
        raise DatasetError(
            f"{root}: only {len(enrolled)} person(s) with at least {min_images} images; the protocol needs "
            "at least 2 enrolled people (lower --min-images or use a larger dataset)"
        )
    order = rng.permutation(len(others))
    pool = [others[i] for i in order]
    stranger_people = pool[:num_strangers]
    distractor_people = pool[num_strangers : num_strangers + num_distractors]
    if num_strangers and len(stranger_people) < num_strangers:
        log.warning("only %d people are available as strangers (asked for %d)", len(stranger_people), num_strangers)
    return Split(
        enrolled=enrolled,
        genuine=genuine,
        strangers=[files[0] for files in stranger_people],
        distractors={files[0].parent.name: files[0] for files in distractor_people},
    )




@dataclass
class OpenSetRates:
    fpir_target: float
    threshold: float
    fpir: float
    fnir: float

    def to_dict(self) -> dict[str, Any]:
        return {"fpir_target": self.fpir_target, "threshold": round(self.threshold, 5),
                "fpir": round(self.fpir, 5), "fnir": round(self.fnir, 5)}


def open_set(genuine_top: np.ndarray, genuine_correct: np.ndarray, stranger_top: np.ndarray,
             targets: Sequence[float] = FPIR_TARGETS) -> list[OpenSetRates]:
    rates = []
    for t in targets:
        thr = threshold_at_fpir(stranger_top, t)
        rates.append(OpenSetRates(t, thr, fpir_at(stranger_top, thr), fnir_at(genuine_top, genuine_correct, thr)))
    return rates


def det_curve(genuine_top: np.ndarray, genuine_correct: np.ndarray,
              stranger_top: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, FPIR, FNIR) at every distinct score: the exact DET curve."""
    ts = np.unique(np.concatenate([genuine_top, stranger_top]))
    s_sorted = np.sort(stranger_top)
    hits = np.sort(genuine_top[np.asarray(genuine_correct, bool)])
    fp = (len(s_sorted) - np.searchsorted(s_sorted, ts, side="left")) / max(1, len(s_sorted))
    named = len(hits) - np.searchsorted(hits, ts, side="left")
    fn = 1.0 - named / max(1, len(genuine_top))
    return ts, fp, fn


@dataclass
class IdentificationResult:
    embedder: str
    people: int
    gallery_faces: int
    genuine_searches: int
    stranger_searches: int
    rank1: float
    rank5: float
    rates: list[OpenSetRates]
    calibration: dict[str, Any]
    sweep: list[dict[str, Any]] = field(default_factory=list)
    fallbacks: int = 0
    skipped_gallery_images: list[str] = field(default_factory=list)
    seconds: float = 0.0
    genuine_top: np.ndarray | None = None
    genuine_correct: np.ndarray | None = None
    stranger_top: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": "1:N, folder per person; FPIR/FNIR as NIST FRVT 1:N",
            "embedder": self.embedder,
            "people": self.people,
            "gallery_faces": self.gallery_faces,
            "genuine_searches": self.genuine_searches,
            "stranger_searches": self.stranger_searches,
            "rank1": round(self.rank1, 5),
            "rank5": round(self.rank5, 5),
            "open_set": [r.to_dict() for r in self.rates],
            "calibration_check": self.calibration,
            "gallery_size_sweep": self.sweep,
            "fallbacks": self.fallbacks,
            "skipped_gallery_images": self.skipped_gallery_images,
            "seconds": round(self.seconds, 1),
        }


def _searches(probe_vecs: np.ndarray, gallery_vecs: np.ndarray, gallery_labels: np.ndarray,
              n_people: int, evidence: str = "template", crowd_reference: float | None = None,
              chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """Per probe: the score and the person :class:`facedex.identify.Identifier`
    decides with (64 nearest faces, exact search), as ``identify`` does."""
    if not len(probe_vecs) or not len(gallery_labels):
        return np.full(len(probe_vecs), -np.inf, np.float32), np.full(len(probe_vecs), -1, np.int64)
    ident = Identifier(evidence=evidence, crowd_reference=crowd_reference, max_candidates=1)
    ident.fit(gallery_vecs, gallery_labels, [str(i) for i in range(n_people)])
    tops, tops_lab = [], []
    for i in range(0, len(probe_vecs), chunk):
        for score, cands in ident.scored_candidates(probe_vecs[i : i + chunk]):
            tops.append(score if cands else -np.inf)
            tops_lab.append(int(cands[0].name) if cands else -1)
    return np.asarray(tops, np.float32), np.asarray(tops_lab, np.int64)


def _ranks(probe_vecs, probe_labels, gallery_vecs, gallery_labels, n_people, evidence: str = "template",
           chunk: int = 2048) -> np.ndarray:
    ranks = []
    for i in range(0, len(probe_vecs), chunk):
        ps = evidence_scores(probe_vecs[i : i + chunk], gallery_vecs, gallery_labels, n_people, evidence)
        true = ps[np.arange(len(ps)), probe_labels[i : i + chunk]]
        ranks.append(1 + (ps > true[:, None]).sum(axis=1))
    return np.concatenate(ranks) if ranks else np.zeros(0, np.int64)


def evaluate_identification(
    data_dir: str | Path,
    pipeline: FacePipeline | None = None,
    *,
    min_images: int = 10,
    gallery_per_person: int = 5,
    num_strangers: int = 1000,
    gallery_sizes: Sequence[int] = (),
    seed: int = 0,
    max_probes_per_person: int | None = None,
    progress: Callable[[int], None] | None = None,
    on_total: Callable[[int], None] | None = None,
    evidence: str = "template",
    crowding: bool = True,
) -> IdentificationResult:
    """The 1:N protocol on a folder-per-person dataset (see the module doc). Options
    and the dataset's layout are checked before any image is embedded."""
    check_options(min_images=min_images, gallery_per_person=gallery_per_person, num_strangers=num_strangers,
                  gallery_sizes=gallery_sizes, max_probes_per_person=max_probes_per_person)
    sizes = sorted(set(int(s) for s in gallery_sizes))
    split0 = split_dataset(data_dir, min_images=min_images, gallery_per_person=gallery_per_person,
                           num_strangers=num_strangers, seed=seed, max_probes_per_person=max_probes_per_person)
    n_enrolled = len(split0.enrolled)
    extra = max([s - n_enrolled for s in sizes], default=0)
    split = split0 if extra <= 0 else split_dataset(
        data_dir, min_images=min_images, gallery_per_person=gallery_per_person, num_strangers=num_strangers,
        num_distractors=extra, seed=seed, max_probes_per_person=max_probes_per_person)
    pipeline = pipeline or FacePipeline()
    names = sorted(split.enrolled)
    label = {n: i for i, n in enumerate(names)}
    gallery_paths = [p for n in names for p in split.enrolled[n]]
    gallery_labels = np.array([label[n] for n in names for _ in split.enrolled[n]], np.int64)
    genuine_paths = [p for n in names for p in split.genuine[n]]
    genuine_labels = np.array([label[n] for n in names for _ in split.genuine[n]], np.int64)
    distractor_names = sorted(split.distractors)
    distractor_paths = [split.distractors[n] for n in distractor_names]
    all_paths = gallery_paths + genuine_paths + split.strangers + distractor_paths
    if on_total:
        on_total(len(all_paths))
    t0 = time.perf_counter()
    emb = embed_central_faces(all_paths, pipeline, progress=progress)
    seconds = time.perf_counter() - t0
    fallback_set = set(emb.fallbacks)
    v = emb.vectors
    a, b, c = len(gallery_paths), len(gallery_paths) + len(genuine_paths), len(gallery_paths) + len(genuine_paths) + len(split.strangers)
    # gallery images without a detected face are not enrolled (as `enroll` would refuse them)
    keep = np.array([p not in fallback_set for p in gallery_paths], bool)
    skipped = [str(p) for p, k in zip(gallery_paths, keep) if not k]
    g_vecs, g_labels = v[:a][keep], gallery_labels[keep]
    p_vecs, s_vecs, d_vecs = v[a:b], v[b:c], v[c:]
    n_people = len(names)

    ranks = _ranks(p_vecs, genuine_labels, g_vecs, g_labels, n_people, evidence)
    crowd = pipeline.embedder.card.extra.get("crowd_reference") if crowding else None
    gen_top, gen_lab = _searches(p_vecs, g_vecs, g_labels, n_people, evidence, crowd)
    gen_ok = gen_lab == genuine_labels
    str_top, _ = _searches(s_vecs, g_vecs, g_labels, n_people, evidence, crowd)
    rates = open_set(gen_top, gen_ok, str_top) if len(str_top) else []

    cal = {}
    if len(str_top):
        for target in FPIR_TARGETS:
            cres = calibrate(g_vecs, g_labels, target, evidence=evidence, crowd_reference=crowd)
            cal[str(target)] = {
                "threshold": round(cres.threshold, 5),
                "fpir_on_real_strangers": round(fpir_at(str_top, cres.threshold), 5),
                "fnir": round(fnir_at(gen_top, gen_ok, cres.threshold), 5),
                "gallery_stranger_searches": cres.details["stranger_searches"],
                "low_confidence": cres.details["low_confidence"],
            }

    sweep = []
    for size in sizes:
        n_d = max(0, min(size - n_people, len(d_vecs)))
        sv = np.concatenate([g_vecs, d_vecs[:n_d]])
        sl = np.concatenate([g_labels, n_people + np.arange(n_d)])
        gt, gl = _searches(p_vecs, sv, sl, n_people + n_d, evidence, crowd)
        st, _ = _searches(s_vecs, sv, sl, n_people + n_d, evidence, crowd)
        entry = {"identities": n_people + n_d, "distractors": n_d, "faces": int(len(sv))}
        if n_people + n_d < size:
            entry["note"] = f"only {n_d} distractor identities available"
        for r in open_set(gt, gl == genuine_labels, st) if len(st) else []:
            entry[f"fnir_at_fpir_{r.fpir_target}"] = round(r.fnir, 5)
            entry[f"threshold_at_fpir_{r.fpir_target}"] = round(r.threshold, 5)
        entry["rank1"] = round(float(np.mean(gl == genuine_labels)), 5) if len(gl) else None
        sweep.append(entry)

    return IdentificationResult(
        embedder=pipeline.embedder_id, people=n_people, gallery_faces=int(len(g_vecs)),
        genuine_searches=int(len(p_vecs)), stranger_searches=int(len(s_vecs)),
        rank1=float(np.mean(ranks <= 1)) if len(ranks) else math.nan,
        rank5=float(np.mean(ranks <= 5)) if len(ranks) else math.nan,
        rates=rates, calibration=cal, sweep=sweep,
        fallbacks=len([p for p in emb.fallbacks if p not in set(gallery_paths)]),
        skipped_gallery_images=skipped, seconds=seconds,
        genuine_top=gen_top, genuine_correct=gen_ok, stranger_top=str_top,
    )
