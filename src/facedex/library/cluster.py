"""Clustering face embeddings into candidate people: a k-NN graph, then
average linkage on it.

Average linkage joins, again and again, the two groups of faces whose
*average* pairwise similarity is highest, and stops when no two groups
reach the threshold. It does not chain (a bridge of look-alikes does not glue
two people together, the "mega-cluster" of DBSCAN at a loose ``eps``), and on
LFW it is the most accurate of the usual methods. Done naively it needs the
matrix of all pairs — memory grows with the square of the faces (40 GB at
100,000). Two facts make it cheap:

1. **The average similarity of two groups is a dot product of their sums.**
   Embeddings are unit vectors and similarity is their dot product, so
   ``mean(a·b for a in A for b in B) = (ΣA · ΣB) / (|A| |B|)``. Each group
   keeps the sum of its vectors; the linkage of any two groups is exact and
   costs one dot product — no matrix.
2. **Only neighbours can be joined.** Two groups whose average similarity
   reaches ``t`` have at least one pair of faces at ``t`` or above, and such
   a pair is (unless a face has more than ``k`` closer faces) in the k-NN
   graph. So candidate pairs are the groups linked by a graph edge at or
   above the lowest threshold of interest; the graph is built once with
   faiss (exact inner-product search, in blocks).

Average linkage is *reducible*: a merge never makes a later merge's
similarity higher than its own, so the merges come out in decreasing order of
similarity. :func:`average_linkage` therefore records the merges once (a
dendrogram) and :meth:`Dendrogram.cut` gives the clusters at any threshold at
or above the one it was built with — the whole threshold curve costs one
clustering. Memory is the graph (``n·k`` edges) and one sum vector per face:
about 100 MB at 100,000 faces.

:func:`pairwise_f` and :func:`bcubed_f` score a clustering against the truth.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from typing import Hashable, Iterable, Sequence

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

#: Neighbours per face in the graph (more than any face needs at the
#: thresholds that separate people; raising it changes little but time).
DEFAULT_K = 32


@dataclass(frozen=True)
class Graph:
    """Undirected edges ``(i, j)`` with ``i < j`` and their similarities."""

    n: int
    rows: np.ndarray  # int64 (m,)
    cols: np.ndarray  # int64 (m,)
    sims: np.ndarray  # float32 (m,)


def knn_graph(vectors: np.ndarray, *, k: int = DEFAULT_K, floor: float = 0.0, block: int = 4096) -> Graph:
    """Each vector's ``k`` nearest neighbours by inner product (exact faiss
    search, ``block`` queries at a time), as undirected edges whose
    similarity is at least ``floor``."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = x.shape[0]
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if n < 2:
        e = np.zeros(0, np.int64)
        return Graph(n, e, e, np.zeros(0, np.float32))
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    kk = min(k + 1, n)  # the first neighbour is the face itself
    rows, cols, sims = [], [], []
    for start in range(0, n, block):
        s, j = index.search(x[start:start + block], kk)
        i = np.repeat(np.arange(start, start + len(s), dtype=np.int64), kk)
        j = j.reshape(-1).astype(np.int64)
        s = s.reshape(-1)
        keep = (j >= 0) & (j != i) & (s >= floor)
        i, j, s = i[keep], j[keep], s[keep]
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        rows.append(lo)
        cols.append(hi)
        sims.append(s.astype(np.float32))
    r, c, s = np.concatenate(rows), np.concatenate(cols), np.concatenate(sims)
    # an edge found from both ends is kept once
    key = r * n + c
    key, first = np.unique(key, return_index=True)
    return Graph(n, r[first], c[first], s[first])


@dataclass(frozen=True)
class Dendrogram:
    """The merges of an average-linkage run, in the order they happened.

    ``merges[m] = (a, b)`` joined the groups holding faces ``a`` and ``b`` at
    average similarity ``heights[m]`` (non-increasing). Valid for thresholds
    at or above ``floor``.
    """

    n: int
    merges: np.ndarray  # int64 (m, 2)
    heights: np.ndarray  # float64 (m,)
    floor: float

    def cut(self, threshold: float) -> np.ndarray:
        """A cluster label per face (0..c-1, labels ordered by first face) for
        the groups whose merges reached ``threshold``."""
        if threshold < self.floor - 1e-9:
            raise ConfigError(f"this clustering was built down to {self.floor:.3f}; cannot cut at {threshold:.3f}")
        parent = np.arange(self.n, dtype=np.int64)

        def find(x: int) -> int:
            root = x
            while parent[root] != root:
                root = parent[root]
            while parent[x] != root:
                parent[x], x = root, parent[x]
            return root

        for a, b in self.merges[self.heights >= threshold].tolist():
            ra, rb = find(a), find(b)
            if ra != rb:
                parent[rb] = ra
        roots = np.fromiter((find(i) for i in range(self.n)), dtype=np.int64, count=self.n)
        _, labels = np.unique(roots, return_inverse=True)
        return relabel(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Labels renumbered 0..c-1 in order of first appearance."""
    labels = np.asarray(labels)
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first))
    return order[inverse].astype(np.int64)


def average_linkage(vectors: np.ndarray, threshold: float, *, graph: Graph | None = None,
                    k: int = DEFAULT_K, exclusive: Sequence[Iterable[Hashable]] | None = None) -> Dendrogram:
    """Average-linkage clustering of unit ``vectors`` down to ``threshold``
    (an average cosine similarity), restricted to groups joined by an edge of
    ``graph`` (built here with :func:`knn_graph` when not given).

    ``exclusive`` gives each face a few tokens; two groups that hold the same
    token are never joined ("cannot-link"): the faces of one photo, or two
    tracks on screen at the same moment of a video, are different people.

    Exact average linkage whenever every pair of groups that should merge
    has a graph edge at or above the threshold (see the module doc)."""
    x = np.asarray(vectors, dtype=np.float64)
    n = x.shape[0]
    if graph is None:
        graph = knn_graph(x.astype(np.float32), k=k, floor=threshold)
    keep = graph.sims >= threshold
    rows, cols, sims = graph.rows[keep], graph.cols[keep], graph.sims[keep].astype(np.float64)
    sums = x.copy()
    size = np.ones(n, dtype=np.float64)
    version = np.zeros(n, dtype=np.int64)
    alive = np.ones(n, dtype=bool)
    adj: dict[int, set[int]] = {}
    for a, b in zip(rows.tolist(), cols.tolist()):
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)
    tokens: dict[int, set] = {}
    if exclusive is not None:
        for i, t in enumerate(exclusive):
            if t:
                tokens[i] = set(t)
    # two single faces: their average similarity is their own similarity
    heap = [(-s, a, b, 0, 0) for a, b, s in zip(rows.tolist(), cols.tolist(), sims.tolist())]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    heights: list[float] = []
    while heap:
        neg, a, b, va, vb = heapq.heappop(heap)
        if not (alive[a] and alive[b]) or version[a] != va or version[b] != vb:
            continue  # stale: one of the groups has changed since
        ta, tb = tokens.get(a), tokens.get(b)
        if ta and tb and not ta.isdisjoint(tb):
            continue  # cannot-link: they hold faces that cannot be one person
        # keep the group with more neighbours as the survivor (fewer set moves)
        if len(adj.get(a, ())) < len(adj.get(b, ())):
            a, b, ta, tb = b, a, tb, ta
        merges.append((a, b))
        heights.append(-neg)
        sums[a] += sums[b]
        size[a] += size[b]
        if tb:
            if ta:
                ta |= tb
            else:
                tokens[a] = tb
            del tokens[b]
        alive[b] = False
        version[a] += 1
        na, nb = adj.setdefault(a, set()), adj.pop(b, set())
        na.discard(b)
        for c in nb:
            if c == a:
                continue
            nc = adj[c]
            nc.discard(b)
            nc.add(a)
            na.add(c)
        if not na:
            continue
        others = np.fromiter(na, dtype=np.int64, count=len(na))
        link = (sums[others] @ sums[a]) / (size[others] * size[a])
        for c, s in zip(others[link >= threshold].tolist(), link[link >= threshold].tolist()):
            heapq.heappush(heap, (-s, a, c, version[a], version[c]) if a < c else (-s, c, a, version[c], version[a]))
    return Dendrogram(n, np.asarray(merges, dtype=np.int64).reshape(-1, 2), np.asarray(heights, dtype=np.float64),
                      float(threshold))


def cluster(vectors: np.ndarray, threshold: float, *, k: int = DEFAULT_K,
            exclusive: Sequence[Iterable[Hashable]] | None = None) -> np.ndarray:
    """A cluster label per vector (see :func:`average_linkage`)."""
    return average_linkage(vectors, threshold, k=k, exclusive=exclusive).cut(threshold)


# --- scoring ----------------------------------------------------------------------------------
def _contingency(truth: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sizes of the (truth, pred) cells, of each truth class and of each cluster."""
    t = np.unique(np.asarray(truth), return_inverse=True)[1]
    p = np.unique(np.asarray(pred), return_inverse=True)[1]
    cell = np.unique(t.astype(np.int64) * (p.max() + 1) + p, return_counts=True)[1]
    return cell.astype(np.float64), np.bincount(t).astype(np.float64), np.bincount(p).astype(np.float64)


def pairwise_f(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Pairwise precision, recall and F1: over all pairs of faces put in one
    cluster (precision: share that are one person) and all pairs of faces of
    one person (recall: share put in one cluster)."""
    cell, tsize, psize = _contingency(truth, pred)
    same_both = float((cell * (cell - 1) / 2).sum())
    same_pred = float((psize * (psize - 1) / 2).sum())
    same_true = float((tsize * (tsize - 1) / 2).sum())
    p = same_both / same_pred if same_pred else 1.0
    r = same_both / same_true if same_true else 1.0
    return {"precision": p, "recall": r, "f": 2 * p * r / (p + r) if p + r else 0.0}


def bcubed_f(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """BCubed precision, recall and F1 (Bagga & Baldwin 1998; Amigó et al.
    2009): per face, the share of its cluster that is its person (precision)
    and the share of its person that is in its cluster (recall), averaged
    over faces. Unlike pairwise F it is not dominated by the largest people."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    t = np.unique(truth, return_inverse=True)[1]
    p = np.unique(pred, return_inverse=True)[1]
    key = t.astype(np.int64) * (p.max() + 1) + p
    _, cell_of, cell_n = np.unique(key, return_inverse=True, return_counts=True)
    per_face_cell = cell_n[cell_of].astype(np.float64)
    prec = float((per_face_cell / np.bincount(p)[p]).mean())
    rec = float((per_face_cell / np.bincount(t)[t]).mean())
    return {"precision": prec, "recall": rec, "f": 2 * prec * rec / (prec + rec) if prec + rec else 0.0}


__all__ = ["DEFAULT_K", "Dendrogram", "Graph", "average_linkage", "bcubed_f", "cluster", "knn_graph",
           "pairwise_f", "relabel"]
