"""Vector search over the gallery's embeddings, derived from the store.

The index is never the source of truth: it is built from
:meth:`GalleryStore.embeddings` and rebuilt whenever the store's write
generation moves past the one it was built from. Search follows faiss's
contract: ``(similarities, positions)`` with ``-1`` where there is no result.
Embeddings are unit vectors, so inner product is cosine similarity.

Index descriptions are faiss factory strings; ``"Flat"`` (exact search) is the
default and the right choice up to a few hundred thousand faces on a CPU.
"""

from __future__ import annotations

import logging
import threading

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)

#: Query batches smaller than this are searched on one thread.
SMALL_BATCH = 16
_SEARCH_LOCK = threading.Lock()


def _first_line(err: BaseException) -> str:
    """The readable part of a faiss error (after its C++ location)."""
    text = " ".join(str(err).split())
    if "failed: " in text:
        return text.split("failed: ", 1)[1]
    return text.rsplit(": ", 1)[-1]


class VectorIndex:
    """Inner-product search over ``dim``-dimensional unit vectors.

    ``description`` is a faiss ``index_factory`` string (``"Flat"``,
    ``"HNSW32"``, ``"IVF1024,Flat"``…). Positions returned by :meth:`search`
    are the order in which vectors were added.
    """

    def __init__(self, dim: int, description: str = "Flat"):
        import faiss

        self.dim = int(dim)
        self.description = description
        try:
            self._index = faiss.index_factory(self.dim, description, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            raise ConfigError(f"invalid index description {description!r} ({_first_line(err)}); "
                              "see faiss's index_factory strings, e.g. 'Flat', 'HNSW32', 'IVF1024,Flat'") from None

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def add(self, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if x.shape[0] == 0:
            return
        if not self._index.is_trained:
            try:
                self._index.train(x)
            except RuntimeError as err:
                raise ConfigError(
                    f"index {self.description!r} cannot be trained on {x.shape[0]:,} faces ({_first_line(err)}); "
                    "such indexes need many more faces than their number of lists or codes — "
                    "use the default exact index 'Flat' for a gallery of this size") from None
        self._index.add(x)

    def _search(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        if q.shape[0] >= SMALL_BATCH:
            return self._index.search(q, k)
        # A few queries (the faces of one photo) run faster on one thread: OpenMP
        # start-up costs more than it saves, and far more when the other cores are busy.
        with _SEARCH_LOCK:
            before = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                return self._index.search(q, k)
            finally:
                faiss.omp_set_num_threads(before)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.ntotal == 0 or k <= 0 or q.shape[0] == 0:
            return (np.full((q.shape[0], max(k, 0)), -np.inf, np.float32),
                    np.full((q.shape[0], max(k, 0)), -1, np.int64))
        sims, pos = self._search(q, min(k, self.ntotal))
        if k > self.ntotal:
            pad = k - self.ntotal
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            pos = np.pad(pos, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.where(pos < 0, -np.inf, sims)
        return sims, pos
