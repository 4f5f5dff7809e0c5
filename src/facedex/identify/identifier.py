"""Open-set identification: neighbours → per-person evidence → threshold → a name or unknown.

:class:`Identifier` is an estimator in the scikit-learn manner: the
constructor stores parameters, :meth:`Identifier.fit` builds the vector index,
learned state is visible (``classes_``, ``index_``). Like scikit-learn's
``RadiusNeighborsClassifier`` it does not invent a label when nothing is near
enough: below the threshold the answer is ``None`` (unknown).

The people considered for a probe are those with a face among its ``k``
nearest neighbours. The evidence for each (``evidence="template"``, the
default) is the cosine similarity between the probe and the person's
*template*: the normalised mean of all their enrolled faces, which averages
out what is particular to each photo (light, pose, expression). With many
faces in the gallery this matters: among a million faces some stranger's
single photo resembles a probe more than one of the person's own photos does,
but rarely more than their template (``bench/accuracy_scale.py``: FNIR at
FPIR 1 % with 1 M faces 5.75 % → 4.45 %; on the 158-person LFW gallery
0.31 % → 0.20 %). ``evidence="max"`` is the former rule: the best similarity
to any one of the person's faces.

**Crowding penalty.** A probe that resembles many enrolled people at once is
weak evidence for any one of them: among a million faces every face has
look-alikes, and a stranger's best match then reaches what a genuine match
reaches. With ``crowd_reference`` set (the embedder card's
``extra["crowd_reference"]``; 0.25 for SFace), the *score* compared with the
threshold is the best person's evidence less ``max(0, mean evidence of the
next `cohort` (32) candidates − crowd_reference)``: an adaptive cohort
normalisation whose cohort is the gallery's own nearest people, applied only
above a level typical strangers of a small gallery do not reach, so small
galleries keep their scores and thresholds (FNIR at FPIR 1 % with 100 k faces
0.37 % → 0.23 %; with an all-synthetic 1 M gallery of people with one or two
photos 4.45 % → 2.9 %). The ranking of people never changes.

Calibration (:meth:`Identifier.held_out_scores`, used by
:func:`facedex.identify.calibrate`) and the evaluation score their searches
with this same class, so a calibrated threshold and a measured rate mean the
decision ``identify`` makes. :func:`evidence_scores` gives the evidence of
every person at once (closed-set ranks).

The calibration of the threshold is in :mod:`facedex.identify.calibrate`.
"""

from __future__ import annotations

import logging
from typing import Sequence

import numpy as np

from ..errors import ConfigError, NotFittedError
from ..gallery.index import Searcher, VectorIndex
from ..types import Candidate, Decision

log = logging.getLogger(__name__)


EVIDENCE = ("template", "max")

#: How many people after the best one measure how crowded a probe's neighbourhood is.
COHORT = 32


def check_evidence(evidence: str) -> str:
    if evidence not in EVIDENCE:
        raise ConfigError(f"evidence must be one of {', '.join(EVIDENCE)}; got {evidence!r}")
    return evidence


def label_sums(vectors: np.ndarray, labels: np.ndarray, n: int, dtype=np.float64) -> np.ndarray:
    """``(n, dim)``: the sum of the vectors of each label ``0..n-1`` (one sort and
    one ``reduceat``; ``np.add.at`` takes seconds at a million rows)."""
    vectors = np.asarray(vectors)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    sums = np.zeros((n, vectors.shape[1] if vectors.ndim == 2 else 0), dtype)
    if labels.size:
        order = np.argsort(labels, kind="stable")
        lab = labels[order]
        starts = np.flatnonzero(np.concatenate([[True], lab[1:] != lab[:-1]]))
        sums[lab[starts]] = np.add.reduceat(vectors[order].astype(dtype, copy=False), starts, axis=0)
    return sums


def person_templates(vectors: np.ndarray, labels: np.ndarray, n_people: int | None = None) -> np.ndarray:
    """One unit vector per label ``0..n_people-1``: the normalised mean of that
    label's vectors (zeros for a label without any)."""
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = int(labels.max()) + 1 if n_people is None and labels.size else int(n_people or 0)
    sums = label_sums(np.asarray(vectors, dtype=np.float32), labels, n)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def evidence_scores(probes: np.ndarray, vectors: np.ndarray, labels: np.ndarray, n_people: int,
                    evidence: str = "template", templates: np.ndarray | None = None) -> np.ndarray:
    """Per probe and person (``(len(probes), n_people)``): the person's evidence,
    ``-inf`` for a person without faces. ``template``: similarity to the
    normalised mean of the person's faces (pass ``templates`` to reuse them);
    ``max``: best similarity to any one of them."""
    check_evidence(evidence)
    probes = np.asarray(probes, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    present = np.bincount(labels, minlength=n_people)[:n_people] > 0
    out = np.full((probes.shape[0], n_people), -np.inf, dtype=np.float32)
    if not probes.shape[0] or not present.any():
        return out
    if evidence == "template":
        t = person_templates(vectors, labels, n_people) if templates is None else templates
        out[:, present] = probes @ t[present].T
        return out
    order = np.argsort(labels, kind="stable")
    starts = np.searchsorted(labels[order], np.arange(n_people))
    sims = probes @ np.asarray(vectors, dtype=np.float32)[order].T
    out[:, present] = np.maximum.reduceat(sims, starts[present], axis=1)
    return out


class Identifier:
    """k-nearest-neighbour identification with an open-set threshold.

    Parameters: ``k`` neighbours searched per probe; ``max_candidates`` people
    listed per answer; ``index`` a faiss factory string (see
    :class:`facedex.gallery.index.VectorIndex`); ``evidence`` how a person's
    faces are scored; ``crowd_reference`` (``None``: off) and ``cohort`` the
    crowding penalty (module doc).
    """

    def __init__(self, *, k: int = 64, max_candidates: int = 5, index: str = "Flat",
                 evidence: str = "template", crowd_reference: float | None = None, cohort: int = COHORT):
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if max_candidates < 1:
            raise ConfigError(f"max_candidates must be at least 1, got {max_candidates}")
        self.k = k
        self.max_candidates = max_candidates
        self.index = index
        self.evidence = check_evidence(evidence)
        if crowd_reference is not None and not (isinstance(crowd_reference, (int, float))
                                                and -1.0 <= crowd_reference <= 1.0):
            raise ConfigError(f"crowd_reference must be a similarity in [-1, 1] or None, got {crowd_reference!r}")
        if cohort < 1:
            raise ConfigError(f"cohort must be at least 1, got {cohort}")
        self.crowd_reference = None if crowd_reference is None else float(crowd_reference)
        self.cohort = cohort

    def fit(self, vectors: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> "Identifier":
        vectors = np.asarray(vectors, dtype=np.float32)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if vectors.ndim != 2 or vectors.shape[0] != labels.shape[0]:
            raise ConfigError(f"vectors {vectors.shape} and labels {labels.shape} do not match")
        self.classes_ = list(names)
        self.labels_ = labels
        self.dim_ = vectors.shape[1]
        self.index_ = VectorIndex(self.dim_, self.index)
        self.index_.add(vectors)
        self.templates_ = person_templates(vectors, labels, len(self.classes_)) if self.evidence == "template" else None
        return self

    def fit_index(self, index: Searcher, labels: np.ndarray, names: Sequence[str], dim: int,
                  templates: np.ndarray | None = None) -> "Identifier":
        """Use a prepared searcher (a persisted index, a vector database) whose
        :meth:`search` returns positions into ``labels`` (see
        :class:`facedex.gallery.index.PositionSearch`), instead of building one.
        With ``evidence="template"``, ``templates`` (one row per name, see
        :func:`person_templates`) are required."""
        self.classes_ = list(names)
        self.labels_ = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.dim_ = int(dim)
        self.index_ = index
        if self.evidence == "template":
            if templates is None or len(templates) != len(self.classes_):
                raise ConfigError("evidence='template' needs one template per person (person_templates)")
            self.templates_ = np.asarray(templates, dtype=np.float32)
        else:
            self.templates_ = None
        return self

    def _ranked(self, qv: np.ndarray, srow: np.ndarray, prow: np.ndarray, *, skip_label: int = -1,
                skip_pos: int = -1, loo_template: np.ndarray | None = None) -> list[tuple[int, float]]:
        """Every person among the neighbours ``(srow, prow)`` of ``qv`` with their
        evidence, best first. ``skip_label``/``skip_pos`` leave a person or one face
        out (calibration's searches); ``loo_template`` replaces ``skip_pos``'s
        person's template (their template without that face)."""
        best: dict[int, float] = {}
        seen = 0
        for s, p in zip(srow, prow):
            if p < 0 or seen >= self.k:
                break
            if p == skip_pos:
                continue
            lab = int(self.labels_[p])
            if lab == skip_label:
                continue
            seen += 1
            if lab not in best:  # neighbours come sorted: the first is the best
                best[lab] = float(s)
        if self.templates_ is not None and best:
            labs = np.fromiter(best, dtype=np.int64, count=len(best))
            sims = self.templates_[labs] @ qv
            if loo_template is not None and skip_pos >= 0:
                sims[labs == int(self.labels_[skip_pos])] = float(loo_template @ qv)
            best = dict(zip(labs.tolist(), sims.tolist()))
        return sorted(best.items(), key=lambda kv: -kv[1])

    def _score(self, ranked: list[tuple[int, float]]) -> float:
        """The value compared with the threshold: the best person's evidence, less
        the crowding penalty when ``crowd_reference`` is set (module doc)."""
        if not ranked:
            return 0.0
        top = ranked[0][1]
        if self.crowd_reference is None or len(ranked) < 2:
            return top
        cohort = [sim for _, sim in ranked[1 : 1 + self.cohort]]
        return top - max(0.0, float(np.mean(cohort)) - self.crowd_reference)

    def _check_fitted(self) -> None:
        if not hasattr(self, "index_"):
            raise NotFittedError("this Identifier is not fitted yet; call fit(vectors, labels, names) first")

    def scored_candidates(self, queries: np.ndarray) -> list[tuple[float, list[Candidate]]]:
        """Per probe: the decision score and the people among the ``k`` nearest
        faces (at most ``max_candidates``), best evidence first."""
        self._check_fitted()
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim_)
        if self.index_.ntotal == 0:
            return [(0.0, []) for _ in range(q.shape[0])]
        sims, pos = self.index_.search(q, self.k)
        out = []
        for qv, srow, prow in zip(q, sims, pos):
            ranked = self._ranked(qv, srow, prow)
            out.append((self._score(ranked),
                        [Candidate(self.classes_[lab], sim) for lab, sim in ranked[: self.max_candidates]]))
        return out

    def candidates(self, queries: np.ndarray) -> list[list[Candidate]]:
        """Per probe: people among the ``k`` nearest faces, best evidence first."""
        return [cands for _, cands in self.scored_candidates(queries)]

    def decide(self, queries: np.ndarray, threshold: float) -> list[Decision]:
        """A name when the best person's score reaches ``threshold``, else unknown."""
        decisions = []
        for score, cands in self.scored_candidates(queries):
            if not cands:
                decisions.append(Decision(None, 0.0, (), 0.0))
                continue
            top = cands[0]
            name = top.name if score >= threshold else None
            decisions.append(Decision(name, top.similarity, tuple(cands), score))
        return decisions

    def held_out_scores(self, vectors: np.ndarray, rows: np.ndarray, exclude: str,
                        chunk: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Searches of the fitted faces ``rows`` (``vectors`` are the fitted
        vectors, in order) as :meth:`decide` would score them, with a part of the
        gallery left out: ``exclude="person"`` every face of the query's own person
        (a stranger search), ``"self"`` only the face itself (a genuine search; its
        person's template is made of their other faces). Returns the decision
        scores and best labels (``-inf`` / ``-1`` when no one remains)."""
        if exclude not in ("person", "self"):
            raise ConfigError(f"exclude must be 'person' or 'self', got {exclude!r}")
        self._check_fitted()
        vectors = np.asarray(vectors, dtype=np.float32)
        rows = np.asarray(rows, dtype=np.int64)
        counts = np.bincount(self.labels_, minlength=len(self.classes_))
        sums = None
        if self.templates_ is not None and exclude == "self":
            sums = label_sums(vectors, self.labels_, len(self.classes_))
        scores = np.full(len(rows), -np.inf, np.float32)
        best = np.full(len(rows), -1, np.int64)
        # people with few faces first: a stranger search asks for k + the person's own face count
        # neighbours, so chunks of small people stay small
        by_size = np.argsort(counts[self.labels_[rows]], kind="stable")
        for start in range(0, len(rows), chunk):
            idx = by_size[start : start + chunk]
            part = rows[idx]
            extra = int(counts[self.labels_[part]].max()) if exclude == "person" else 1
            sims, pos = self.index_.search(vectors[part], min(self.k + extra, self.index_.ntotal))
            for i, r, srow, prow in zip(idx, part, sims, pos):
                own = int(self.labels_[r])
                rest = None if sums is None else sums[own] - vectors[r]  # their template without this face
                norm = 0.0 if rest is None else float(np.linalg.norm(rest))
                if exclude == "person" or counts[own] <= 1 or (rest is not None and norm == 0.0):
                    # a stranger search, or the face was its person's only one: the person is gone
                    ranked = self._ranked(vectors[r], srow, prow, skip_label=own)
                else:
                    loo = None if rest is None else (rest / norm).astype(np.float32)
                    ranked = self._ranked(vectors[r], srow, prow, skip_pos=int(r), loo_template=loo)
                if ranked:
                    scores[i], best[i] = self._score(ranked), ranked[0][0]
        return scores, best


__all__ = ["COHORT", "EVIDENCE", "Decision", "Identifier", "check_evidence", "evidence_scores", "person_templates"]
