"""Open-set identification: neighbours → per-person evidence → threshold → a name or unknown.

:class:`Identifier` is an estimator in the scikit-learn manner: the
constructor stores parameters, :meth:`Identifier.fit` builds the vector index,
learned state is visible (``classes_``, ``index_``). Like scikit-learn's
``RadiusNeighborsClassifier`` it does not invent a label when nothing is near
enough: below the threshold the answer is ``None`` (unknown).

The evidence for a person is the highest cosine similarity between the probe
and any of that person's faces among the ``k`` nearest neighbours.

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


class Identifier:
    """k-nearest-neighbour identification with an open-set threshold.

    Parameters: ``k`` neighbours searched per probe; ``max_candidates`` people
    listed per answer; ``index`` a faiss factory string (see
    :class:`facedex.gallery.index.VectorIndex`).
    """

    def __init__(self, *, k: int = 64, max_candidates: int = 5, index: str = "Flat"):
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        if max_candidates < 1:
            raise ConfigError(f"max_candidates must be at least 1, got {max_candidates}")
        self.k = k
        self.max_candidates = max_candidates
        self.index = index

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
        return self

    def fit_index(self, index: Searcher, labels: np.ndarray, names: Sequence[str], dim: int) -> "Identifier":
        """Use a prepared searcher (a persisted index, a vector database) whose
        :meth:`search` returns positions into ``labels`` (see
        :class:`facedex.gallery.index.PositionSearch`), instead of building one."""
        self.classes_ = list(names)
        self.labels_ = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.dim_ = int(dim)
        self.index_ = index
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
        for srow, prow in zip(sims, pos):
            best: dict[int, float] = {}
            for s, p in zip(srow, prow):
                if p < 0:
                    break
                lab = int(self.labels_[p])
                if lab not in best:  # neighbours come sorted: the first is the best
                    best[lab] = float(s)
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


__all__ = ["Decision", "Identifier"]
