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
to any one of the person's faces. :func:`evidence_scores` computes either for
whole probe sets; calibration and the evaluation use it, so a calibrated
threshold and a measured rate mean the decision ``identify`` makes.

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


def check_evidence(evidence: str) -> str:
    if evidence not in EVIDENCE:
        raise ConfigError(f"evidence must be one of {', '.join(EVIDENCE)}; got {evidence!r}")
    return evidence


def person_templates(vectors: np.ndarray, labels: np.ndarray, n_people: int | None = None) -> np.ndarray:
    """One unit vector per label ``0..n_people-1``: the normalised mean of that
    label's vectors (zeros for a label without any)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    n = int(labels.max()) + 1 if n_people is None and labels.size else int(n_people or 0)
    sums = np.zeros((n, vectors.shape[1] if vectors.ndim == 2 else 0), np.float64)
    if labels.size:
        np.add.at(sums, labels, vectors)
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
    faces are scored (module doc).
    """

    def __init__(self, *, k: int = 64, max_candidates: int = 5, index: str = "Flat",
                 evidence: str = "template"):
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if max_candidates < 1:
            raise ConfigError(f"max_candidates must be at least 1, got {max_candidates}")
        self.k = k
        self.max_candidates = max_candidates
        self.index = index
        self.evidence = check_evidence(evidence)

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

    def candidates(self, queries: np.ndarray) -> list[list[Candidate]]:
        """Per probe: people among the ``k`` nearest faces, best similarity first."""
        if not hasattr(self, "index_"):
            raise NotFittedError("this Identifier is not fitted yet; call fit(vectors, labels, names) first")
        q = np.asarray(queries, dtype=np.float32).reshape(-1, self.dim_)
        if self.index_.ntotal == 0:
            return [[] for _ in range(q.shape[0])]
        sims, pos = self.index_.search(q, self.k)
        out = []
        for qv, srow, prow in zip(q, sims, pos):
            best: dict[int, float] = {}
            for s, p in zip(srow, prow):
                if p < 0:
                    break
                lab = int(self.labels_[p])
                if lab not in best:  # neighbours come sorted: the first is the best
                    best[lab] = float(s)
            if self.templates_ is not None and best:
                labs = np.fromiter(best, dtype=np.int64, count=len(best))
                best = dict(zip(labs.tolist(), (self.templates_[labs] @ qv).tolist()))
            ranked = sorted(best.items(), key=lambda kv: -kv[1])[: self.max_candidates]
            out.append([Candidate(self.classes_[lab], sim) for lab, sim in ranked])
        return out

    def decide(self, queries: np.ndarray, threshold: float) -> list[Decision]:
        """A name when the best person's similarity reaches ``threshold``, else unknown."""
        decisions = []
        for cands in self.candidates(queries):
            if not cands:
                decisions.append(Decision(None, 0.0, ()))
                continue
            top = cands[0]
            name = top.name if top.similarity >= threshold else None
            decisions.append(Decision(name, top.similarity, tuple(cands)))
        return decisions


__all__ = ["EVIDENCE", "Decision", "Identifier", "check_evidence", "evidence_scores", "person_templates"]
