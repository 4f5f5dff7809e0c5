"""The decisions of `clean`: which face of which image is kept for each person,
and why everything else is rejected.

Order of the tests (the first that fails is the reason reported):

1. ``unreadable``, ``no_face`` (also after trying 90°/180°/270° rotations),
   ``too_small``, then exact ``duplicate`` files within a person.
2. Images with one usable face: ``blurred`` and ``extreme_pose``.
3. The person's *consensus* — who the folder is mostly about — from those
   single-face images: a robust centroid (start from the faces most similar to
   all others, then iterate: average the faces within the threshold of the
   centroid) with leave-one-out similarities, so a face never vouches for
   itself. Faces below the threshold are ``wrong_person`` (and the report says
   whom they look like when another person's consensus matches). With one
   usable image there is nothing to check it against (kept, flagged
   ``unverified``); with two that disagree neither can be trusted
   (``inconsistent``); with three or more but no two agreeing, ``no_consensus``.
4. Images with several faces: the face that matches the consensus clearly
   (best similarity above the threshold, ahead of the runner-up face by the
   margin) is kept; with a sources file listing the people of that image, the
   face must also match this person better than every other listed person by
   the margin. Otherwise ``several_faces``.
5. ``near_duplicate``: the same photo again. Resized or recompressed copies:
   similar faces and whole-image thumbnails that correlate almost perfectly;
   cropped copies: very similar faces whose surroundings also match
   (correlation of the context signatures, see :mod:`facedex.clean.analyze`).
   The best-quality copy is kept.
6. ``label_conflict``: the same face kept under two people — kept where it
   matches the consensus clearly better, rejected elsewhere.

The outlier threshold is expressed in the embedder's own statistics (its
card's ``clean`` entry, measured on LFW by ``bench/embedder_stats.py``), not a
fixed number.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .analyze import FaceInfo, ImageAnalysis, correlation
from .scan import SourceImage, SourcesIndex

REASONS: dict[str, str] = {
    "unreadable": "the file cannot be decoded as an image",
    "no_face": "no face found (also after rotating by 90°, 180° and 270°)",
    "too_small": "the face is smaller than the minimum size",
    "duplicate": "the same file content is already kept for this person",
    "blurred": "the face is too blurred (sharpness below the minimum)",
    "extreme_pose": "the head is turned too far (yaw or pitch beyond the limits)",
    "wrong_person": "the face does not match the rest of this person's images",
    "inconsistent": "only two usable images and they do not show the same person",
    "no_consensus": "no two usable images show the same person",
    "several_faces": "several faces and none clearly belongs to this person",
    "near_duplicate": "the same photo is already kept (resized, recompressed or cropped copy)",
    "label_conflict": "the same face is filed under another person",
}


@dataclass(frozen=True)
class CleanConfig:
    """Settings of `clean`. ``outlier_threshold``/``pair_threshold`` left at
    ``None`` come from the embedder's card."""

    min_face: float = 40.0
    min_sharpness: float = 25.0
    max_yaw: float = 55.0
    max_pitch: float = 45.0
    outlier_threshold: float | None = None
    pair_threshold: float | None = None
    margin: float = 0.1
    near_dup_similarity: float = 0.88
    near_dup_correlation: float = 0.85
    resized_similarity: float = 0.8
    resized_correlation: float = 0.99
    split: float = 0.0
    seed: int = 0


@dataclass
class Decision:
    person: str
    rel: str
    sha256: str
    status: str  # "kept" | "rejected"
    reason: str | None = None
    detail: str | None = None
    face_index: int | None = None
    similarity: float | None = None
    rotation: int = 0
    ref: str | None = None
    unverified: bool = False
    split: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def reject(self, reason: str, detail: str | None = None, **kw: Any) -> None:
        self.status, self.reason, self.detail = "rejected", reason, detail or REASONS[reason]
        for k, v in kw.items():
            setattr(self, k, v)


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def loo_similarities(e: np.ndarray, inliers: np.ndarray) -> np.ndarray:
    """Similarity of each face to the mean of the inliers, leaving the face itself out."""
    total = e[inliers].sum(axis=0)
    sims = np.empty(len(e), dtype=np.float64)
    for i in range(len(e)):
        v = total - e[i] if inliers[i] else total
        n = float(np.linalg.norm(v))
        sims[i] = float(e[i] @ v) / n if n > 1e-9 else -1.0
    return sims


def robust_consensus(e: np.ndarray, tau: float, iterations: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(centroid, inlier mask, leave-one-out similarities) for n >= 3 faces."""
    n = len(e)
    s = e @ e.T
    np.fill_diagonal(s, np.nan)
    central = np.nanmedian(s, axis=1)
    core = np.argsort(-central, kind="stable")[: max(2, math.ceil(n / 2))]
    inl = np.zeros(n, bool)
    inl[core] = True
    for _ in range(iterations):
        sims = loo_similarities(e, inl)
        new = sims >= tau
        if new.sum() < 2:
            break
        if np.array_equal(new, inl):
            break
        inl = new
    sims = loo_similarities(e, inl)
    return _unit(e[inl].mean(axis=0)), inl, sims


@dataclass
class _Cand:
    decision: Decision
    info: FaceInfo


def _quality_reason(info: FaceInfo, cfg: CleanConfig) -> tuple[str, str] | None:
    q = info.quality
    if q.sharpness < cfg.min_sharpness:
        return "blurred", f"sharpness {q.sharpness:.0f} < {cfg.min_sharpness:g}"
    if abs(q.yaw) > cfg.max_yaw or abs(q.pitch) > cfg.max_pitch:
        return "extreme_pose", f"yaw {q.yaw:.0f}°, pitch {q.pitch:.0f}° (limits ±{cfg.max_yaw:g}°, ±{cfg.max_pitch:g}°)"
    return None


def _split(decisions: list[Decision], fraction: float, seed: int) -> None:
    kept = [d for d in decisions if d.status == "kept"]
    if fraction <= 0:
        for d in kept:
            d.split = "train"
        return
    order = sorted(kept, key=lambda d: hashlib.sha256(f"{seed}:{d.sha256}:{d.rel}".encode()).hexdigest())
    n_val = min(len(order) - 1, round(fraction * len(order))) if len(order) > 1 else 0
    for i, d in enumerate(order):
        d.split = "val" if i < n_val else "train"


def decide(images: list[SourceImage], sha_of: dict[str, str], analyses: dict[str, ImageAnalysis],
           sources: SourcesIndex, cfg: CleanConfig, tau: float, tau_pair: float) -> list[Decision]:
    """Every (person, image) decision, in a stable order (person, path)."""
    by_person: dict[str, list[SourceImage]] = defaultdict(list)
    for im in images:
        by_person[im.person].append(im)
    decisions: list[Decision] = []
    singles: dict[str, list[_Cand]] = defaultdict(list)
    multis: dict[str, list[tuple[Decision, list[int]]]] = defaultdict(list)

    # 1-2: image-level tests, exact duplicates, quality of single-face images
    for person in sorted(by_person):
        seen: dict[str, str] = {}
        for im in sorted(by_person[person], key=lambda x: x.rel):
            sha = sha_of.get(im.rel, "")
            a = analyses.get(sha)
            d = Decision(person, im.rel, sha, "kept", rotation=a.rotation if a else 0)
            decisions.append(d)
            if a is None or a.error:
                d.reject("unreadable", a.error if a else "not analysed")
                continue
            if sha in seen:
                d.reject("duplicate", f"same content as {seen[sha]}", ref=seen[sha])
                continue
            seen[sha] = im.rel
            if not a.faces:
                d.reject("no_face")
                continue
            usable = [i for i, f in enumerate(a.faces) if f.quality.size >= cfg.min_face]
            if not usable:
                big = max(f.quality.size for f in a.faces)
                d.reject("too_small", f"largest face {big:.0f} px < {cfg.min_face:g} px")
                continue
            if len(usable) == 1:
                info = a.faces[usable[0]]
                d.face_index = usable[0]
                bad = _quality_reason(info, cfg)
                if bad:
                    d.reject(*bad)
                    continue
                singles[person].append(_Cand(d, info))
            else:
                multis[person].append((d, usable))

    # 3: consensus from single-face images
    centroid: dict[str, np.ndarray] = {}

    def establish(person: str, cands: list[_Cand]) -> None:
        if not cands:
            return
        e = np.stack([c.info.embedding for c in cands]).astype(np.float64)
        if len(cands) == 1:
            centroid[person] = _unit(e[0])
            cands[0].decision.unverified = True
            return
        if len(cands) == 2:
            sim = float(e[0] @ e[1])
            if sim >= tau_pair:
                centroid[person] = _unit(e.mean(axis=0))
                for c in cands:
                    c.decision.similarity = sim
            else:
                for c in cands:
                    c.decision.reject("inconsistent", f"the two usable images have similarity {sim:.2f} "
                                                      f"< {tau_pair:.2f}; cannot tell which shows {person}",
                                      similarity=sim)
            return
        c, inl, sims = robust_consensus(e, tau)
        if inl.sum() < 2 or not (sims >= tau).any():
            for cand, s in zip(cands, sims):
                cand.decision.reject("no_consensus", similarity=float(s))
            return
        centroid[person] = c
        for cand, s in zip(cands, sims):
            cand.decision.similarity = float(s)

    for person in sorted(singles):
        establish(person, singles[person])

    # 4: images with several faces
    assigned: dict[str, list[_Cand]] = defaultdict(list)
    for person in sorted(multis):
        for d, usable in multis[person]:
            a = analyses[d.sha256]
            c = centroid.get(person)
            if c is None:
                d.reject("several_faces", f"{len(usable)} faces and no consensus for {person} to choose by")
                continue
            sims = np.array([float(a.faces[i].embedding @ c) for i in usable])
            order = np.argsort(-sims, kind="stable")
            best = usable[int(order[0])]
            top = float(sims[order[0]])
            runner = float(sims[order[1]]) if len(order) > 1 else -1.0
            listed = sources.people_for(d.rel, d.sha256) - {person}
            rivals = [float(a.faces[best].embedding @ centroid[q]) for q in sorted(listed) if q in centroid]
            rival = max(rivals, default=-1.0)
            if top < tau:
                d.reject("several_faces", f"{len(usable)} faces; the best matches {person} at {top:.2f} < {tau:.2f}",
                         similarity=top)
            elif top - runner < cfg.margin:
                d.reject("several_faces", f"{len(usable)} faces match {person} alike ({top:.2f}, {runner:.2f})",
                         similarity=top)
            elif top - rival < cfg.margin:
                d.reject("several_faces", f"the best face matches another listed person as well ({rival:.2f})",
                         similarity=top)
            else:
                info = a.faces[best]
                d.face_index, d.similarity = best, top
                d.extra["faces_in_image"] = len(a.faces)
                bad = _quality_reason(info, cfg)
                if bad:
                    d.reject(*bad)
                else:
                    assigned[person].append(_Cand(d, info))

    # 3 (again): final outlier pass over every kept face, with leave-one-out similarities
    for person in sorted(set(singles) | set(assigned)):
        cands = [c for c in singles[person] + assigned[person] if c.decision.status == "kept"]
        if len(cands) < 3 or person not in centroid:
            continue
        e = np.stack([c.info.embedding for c in cands]).astype(np.float64)
        c, inl, sims = robust_consensus(e, tau)
        centroid[person] = c
        for cand, s in zip(cands, sims):
            cand.decision.similarity = float(s)
            if s < tau:
                cand.decision.reject("wrong_person", f"similarity to {person}'s consensus {s:.2f} < {tau:.2f}")
    # say whom the rejected faces look like
    names = sorted(centroid)
    if names:
        cmat = np.stack([centroid[n] for n in names])
        for person in sorted(set(singles) | set(assigned)):
            for cand in singles[person] + assigned[person]:
                d = cand.decision
                if d.reason in ("wrong_person", "inconsistent", "no_consensus"):
                    sims = cmat @ cand.info.embedding
                    for j in np.argsort(-sims):
                        if names[j] != person and sims[j] >= tau:
                            d.detail += f"; looks like {names[j]} ({sims[j]:.2f})"
                            d.extra["looks_like"] = names[j]
                        break

    # 5: near-duplicates within a person
    kept = [c for p in sorted(set(singles) | set(assigned)) for c in singles[p] + assigned[p]
            if c.decision.status == "kept"]
    by_p: dict[str, list[_Cand]] = defaultdict(list)
    for c in kept:
        by_p[c.decision.person].append(c)

    def rank(c: _Cand) -> tuple:
        """Best copy first: the larger face (within 5 %), then the larger image
        (a crop loses context), then the sharper face, then the path."""
        q = c.info.quality
        a = analyses[c.decision.sha256]
        return (-round(math.log(max(q.size, 1.0)) / math.log(1.05)), -(a.width * a.height), -q.sharpness,
                c.decision.rel)

    for _person, cands in sorted(by_p.items()):
        cands = sorted(cands, key=rank)
        e = np.stack([c.info.embedding for c in cands])
        s = e @ e.T
        for j in range(len(cands)):
            for i in range(j):
                if cands[i].decision.status != "kept":
                    continue
                how = _same_photo(cands[i], cands[j], float(s[i, j]), analyses, cfg)
                if how:
                    cands[j].decision.reject("near_duplicate", f"same photo as {cands[i].decision.rel} ({how})",
                                             ref=cands[i].decision.rel)
                    break

    # 6: the same face kept under two people
    kept = [c for c in kept if c.decision.status == "kept"]
    floor = min(cfg.resized_similarity, cfg.near_dup_similarity)
    if len(kept) > 1:
        e = np.stack([c.info.embedding for c in kept])
        for start in range(0, len(kept), 1024):
            block = e[start : start + 1024] @ e.T
            for bi, row in enumerate(block):
                i = start + bi
                for j in np.nonzero(row >= floor)[0]:
                    if j <= i:
                        continue
                    a, b = kept[i], kept[j]
                    if a.decision.person == b.decision.person:
                        continue
                    if a.decision.sha256 != b.decision.sha256 and \
                            not _same_photo(a, b, float(row[j]), analyses, cfg):
                        continue
                    _resolve_conflict(a, b, centroid, cfg)

    for person in sorted(by_person):
        _split([d for d in decisions if d.person == person], cfg.split, cfg.seed)
    return decisions


def _same_photo(a: _Cand, b: _Cand, sim: float, analyses: dict[str, ImageAnalysis], cfg: CleanConfig) -> str:
    """Why faces a and b come from one photo ("" when they do not)."""
    if sim < min(cfg.resized_similarity, cfg.near_dup_similarity):
        return ""
    ia, ib = analyses[a.decision.sha256], analyses[b.decision.sha256]
    if sim >= cfg.resized_similarity and ia.thumb is not None and ib.thumb is not None:
        ra, rb = ia.width / max(1, ia.height), ib.width / max(1, ib.height)
        if abs(ra - rb) <= 0.02 * max(ra, rb):
            corr = correlation(ia.thumb, ib.thumb)
            if corr >= cfg.resized_correlation:
                return f"resized or recompressed copy: image correlation {corr:.3f}, face similarity {sim:.2f}"
    if sim >= cfg.near_dup_similarity:
        corr = correlation(a.info.signature, b.info.signature)
        if corr >= cfg.near_dup_correlation:
            return f"face similarity {sim:.2f}, surroundings correlation {corr:.2f}"
    return ""


def _resolve_conflict(a: _Cand, b: _Cand, centroid: dict[str, np.ndarray], cfg: CleanConfig) -> None:
    pa, pb = a.decision.person, b.decision.person
    sa = float(a.info.embedding @ centroid[pa]) if pa in centroid else -1.0
    sb = float(b.info.embedding @ centroid[pb]) if pb in centroid else -1.0
    if sa - sb >= cfg.margin:
        losers = [(b, pa)]
    elif sb - sa >= cfg.margin:
        losers = [(a, pb)]
    else:
        losers = [(a, pb), (b, pa)]
    for loser, other in losers:
        winner = b if loser is a else a
        if loser.decision.status == "kept":
            loser.decision.reject("label_conflict", f"the same face is filed under {other} "
                                  f"({winner.decision.rel})", ref=winner.decision.rel)
