"""Vector search over the gallery's embeddings, derived from the store.

The index is never the source of truth: it is built from the store's
embeddings and brought up to date whenever the store's write generation moves
past the one it reflects. Search follows faiss's contract: ``(similarities,
ids)`` with ``-1`` where there is no result. Embeddings are unit vectors, so
inner product is cosine similarity.

Index descriptions are faiss factory strings. ``"Flat"`` is exact search.
``"auto"`` (what a gallery uses unless told otherwise) is exact search below
:data:`EXACT_UP_TO` faces and, above it, the recipe of :func:`auto_recipe`:
compact product-quantizer codes scanned exhaustively, and an exact re-ranking
of the candidates (``"PQ64x4fs,RFlat"``). ``RFlat`` here means what
it means in faiss (``IndexRefineFlat``: the ``k × k_factor`` candidates of the
coarse index are re-scored with the float32 vectors), but the re-ranking is
done by :class:`VectorIndex` itself so that faces can be added and removed by
id, which faiss's ``IndexRefine`` cannot.

A large gallery's index is costly to build (minutes at 1 M faces), so
:class:`PersistedIndex` keeps it in a file beside the gallery
(``my.gallery.index``) with the generation and face ids it reflects; opening
the gallery loads it, and a change to the gallery (enroll, forget, an edit by
another program) is applied by difference of face ids — new faces added,
removed faces removed, the file rewritten in place atomically. Faces removed
from the store are removed from the file at once by ``Gallery.forget``; a
search result whose face is no longer in the store is dropped in any case
(see :class:`PositionSearch`), so a forgotten face is never returned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..errors import ConfigError, GalleryError

if TYPE_CHECKING:  # pragma: no cover
    from .store import GalleryStore

log = logging.getLogger(__name__)

#: Query batches smaller than this are searched on one thread.
SMALL_BATCH = 16
_SEARCH_LOCK = threading.Lock()

#: ``"auto"`` searches exactly below this many faces. Exact search costs about
#: 0.05 ms per 1,000 faces per query on one core (2.6 ms at 50 k, 5.2 ms at
#: 100 k, 58 ms at 1 M: bench/search.py), and needs no build; above it the
#: approximate recipe answers in well under a millisecond.
EXACT_UP_TO = 50_000

#: The re-ranking suffix: the coarse index's candidates are re-scored exactly.
_REFINE = re.compile(r",\s*(RFlat|Refine\(Flat\))\s*$")


def _first_line(err: BaseException) -> str:
    """The readable part of a faiss error (after its C++ location)."""
    text = " ".join(str(err).split())
    if "failed: " in text:
        return text.split("failed: ", 1)[1]
    return text.rsplit(": ", 1)[-1]


def auto_recipe(n: int) -> tuple[str, str]:
    """``(description, search parameters)`` that ``"auto"`` uses for ``n`` faces.

    Below :data:`EXACT_UP_TO`: exact search. Above: every face as a 32-byte
    4-bit product-quantizer code scanned exhaustively with faiss's SIMD
    "fast scan", and the best ``8 × k`` candidates re-ranked with their exact
    float32 vectors (``"PQ64x4fs,RFlat"``, ``k_factor=8``). On embeddings
    shaped like SFace's (bench/search.py) this kept FNIR at FPIR 1 % equal to
    exact search at 100 k and 1 M faces, at 2.4 ms per face on one core at 1 M
    and 0.53 GB (the re-ranking vectors; the codes are 32 MB), built in 12 s.
    Inverted files (IVF, with an HNSW coarse quantizer as faiss suggests for
    1–10 M vectors) had to probe a quarter of their lists to come within 0.5
    points: SFace embeddings have little cluster structure, so a face's
    neighbours are spread over many cells.
    """
    if n < EXACT_UP_TO:
        return "Flat", ""
    return "PQ64x4fs,RFlat", "k_factor=8"


def is_exact(description: str) -> bool:
    return description.replace(" ", "") in ("Flat", "IDMap,Flat", "IDMap2,Flat")


def parse_params(params: str | dict[str, Any] | None) -> dict[str, float]:
    """``"nprobe=32,k_factor=4"`` (faiss's ParameterSpace syntax) or a dict → dict."""
    if not params:
        return {}
    if isinstance(params, dict):
        items = params.items()
    else:
        items = []
        for part in str(params).split(","):
            if not part.strip():
                continue
            if "=" not in part:
                raise ConfigError(f"search parameter {part.strip()!r} is not NAME=VALUE (e.g. 'nprobe=32,k_factor=4')")
            k, v = part.split("=", 1)
            items.append((k.strip(), v.strip()))
    out = {}
    for k, v in items:
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ConfigError(f"search parameter {k}={v!r} is not a number") from None
    return out


class Searcher(Protocol):
    """What :class:`facedex.identify.identifier.Identifier` searches: faiss's contract."""

    @property
    def ntotal(self) -> int: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...


class VectorIndex:
    """Inner-product search over ``dim``-dimensional unit vectors.

    ``description`` is a faiss ``index_factory`` string (``"Flat"``,
    ``"HNSW32"``, ``"IVF1024,Flat"``, ``"IVF4096_HNSW32,SQ8,RFlat"``…);
    ``params`` its search parameters in faiss's ``ParameterSpace`` syntax
    (``"nprobe=64,quantizer_efSearch=128"``) plus ``k_factor`` for ``RFlat``.
    :meth:`search` returns the ids given to :meth:`add` (by default the order
    in which vectors were added). :meth:`remove` takes ids out (indexes that
    faiss cannot remove from, such as HNSW, raise :class:`ConfigError`).
    """

    def __init__(self, dim: int, description: str = "Flat", params: str | dict | None = None):
        import faiss

        self.dim = int(dim)
        self.description = description
        self.params = parse_params(params)
        m = _REFINE.search(description)
        self.refine = m is not None
        base = description[: m.start()] if m else description
        self.k_factor = float(self.params.get("k_factor", 4.0 if self.refine else 1.0))
        try:
            index = faiss.index_factory(self.dim, base, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as err:
            raise ConfigError(f"invalid index description {description!r} ({_first_line(err)}); "
                              "see faiss's index_factory strings, e.g. 'Flat', 'HNSW32', 'IVF1024,Flat'") from None
        self._native_ids = self._supports_ids(index)
        self._index = index if self._native_ids else faiss.IndexIDMap2(index)
        self._inner = index  # keep the wrapped index alive beside its wrapper
        self._set_params()
        self._next_id = 0
        # exact re-ranking: face ids (sorted) and their float32 vectors
        self._ref_ids = np.zeros(0, np.int64)
        self._ref_vecs = np.zeros((0, self.dim), np.float32)
        self.trained_on = 0

    @staticmethod
    def _supports_ids(index) -> bool:
        import faiss

        return isinstance(index, (faiss.IndexIVF, faiss.IndexIDMap, faiss.IndexIDMap2))

    def _set_params(self) -> None:
        import faiss

        faiss_params = {k: v for k, v in self.params.items() if k != "k_factor"}
        if not faiss_params:
            return
        ps = faiss.ParameterSpace()
        for k, v in faiss_params.items():
            try:
                ps.set_index_parameter(self._index, k, int(v) if float(v).is_integer() else v)
            except RuntimeError as err:
                raise ConfigError(f"search parameter {k}={v:g} does not apply to index {self.description!r} "
                                  f"({_first_line(err)})") from None

    # -- state ---------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @property
    def is_trained(self) -> bool:
        return bool(self._index.is_trained)

    def memory_bytes(self) -> int:
        """Bytes the index holds (its serialized size plus the re-ranking vectors)."""
        import faiss

        return int(faiss.serialize_index(self._index).nbytes) + self._ref_ids.nbytes + self._ref_vecs.nbytes

    # -- changes -------------------------------------------------------------------------
    def train(self, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if self._index.is_trained:
            return
        try:
            self._index.train(x)
        except RuntimeError as err:
            raise ConfigError(
                f"index {self.description!r} cannot be trained on {x.shape[0]:,} faces ({_first_line(err)}); "
                "such indexes need many more faces than their number of lists or codes — "
                "use the default exact index 'Flat' (or 'auto') for a gallery of this size") from None
        self.trained_on = int(x.shape[0])
        self._set_params()  # some parameters (the quantizer's) exist only once trained

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        x = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if x.shape[0] == 0:
            return
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + x.shape[0], dtype=np.int64)
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if ids.shape[0] != x.shape[0]:
            raise ConfigError(f"{x.shape[0]} vectors but {ids.shape[0]} ids")
        if not self._index.is_trained:
            self.train(x)
        self._index.add_with_ids(x, ids)
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        if self.refine:
            if len(self._ref_ids) and ids.min() <= self._ref_ids[-1]:
                all_ids = np.concatenate([self._ref_ids, ids])
                order = np.argsort(all_ids, kind="stable")
                self._ref_ids = all_ids[order]
                self._ref_vecs = np.concatenate([self._ref_vecs, x])[order]
            else:
                self._ref_ids = np.concatenate([self._ref_ids, ids])
                self._ref_vecs = np.concatenate([self._ref_vecs, x]) if len(self._ref_vecs) else x.copy()

    def remove(self, ids: np.ndarray) -> int:
        """Take these ids out of the index (and their re-ranking vectors); returns how many were in it."""
        ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
        if ids.size == 0:
            return 0
        try:
            n = int(self._index.remove_ids(ids))
        except RuntimeError as err:
            raise ConfigError(f"index {self.description!r} cannot remove faces ({_first_line(err)}); "
                              "it must be rebuilt") from None
        if self.refine and len(self._ref_ids):
            keep = ~np.isin(self._ref_ids, ids)
            self._ref_ids, self._ref_vecs = self._ref_ids[keep], self._ref_vecs[keep]
        return n

    # -- search --------------------------------------------------------------------------
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

    def _rerank(self, q: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact inner products of the candidates, best ``k`` first."""
        if q.shape[0] > 64:  # bound the (queries, candidates, dim) block
            parts = [self._rerank(q[i:i + 64], cand[i:i + 64], k) for i in range(0, q.shape[0], 64)]
            return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
        rows = np.searchsorted(self._ref_ids, np.where(cand < 0, 0, cand))
        rows = np.minimum(rows, max(len(self._ref_ids) - 1, 0))
        valid = (cand >= 0) & (self._ref_ids[rows] == cand) if len(self._ref_ids) else np.zeros_like(cand, bool)
        vecs = self._ref_vecs[rows]  # (nq, kc, dim)
        sims = np.einsum("qkd,qd->qk", vecs, q).astype(np.float32)
        sims = np.where(valid, sims, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        sims = np.take_along_axis(sims, order, axis=1)
        ids = np.where(np.isfinite(sims), np.take_along_axis(cand, order, axis=1), -1)
        return sims, ids

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        if self.ntotal == 0 or k <= 0 or q.shape[0] == 0:
            return (np.full((q.shape[0], max(k, 0)), -np.inf, np.float32),
                    np.full((q.shape[0], max(k, 0)), -1, np.int64))
        kk = min(k, self.ntotal)
        if self.refine:
            kc = min(self.ntotal, max(kk, int(math.ceil(kk * self.k_factor))))
            _, cand = self._search(q, kc)
            sims, ids = self._rerank(q, cand, kk)
        else:
            sims, ids = self._search(q, kk)
        if k > kk:
            pad = k - kk
            sims = np.pad(sims, ((0, 0), (0, pad)), constant_values=-np.inf)
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
        sims = np.where(ids < 0, -np.inf, sims)
        return sims, ids

    # -- bytes -----------------------------------------------------------------------------
    def _faiss_bytes(self) -> np.ndarray:
        import faiss

        return faiss.serialize_index(self._index)

    @classmethod
    def _from_parts(cls, dim: int, description: str, params: dict, faiss_bytes: np.ndarray,
                    ref_ids: np.ndarray, ref_vecs: np.ndarray, next_id: int, trained_on: int) -> "VectorIndex":
        import faiss

        self = cls(dim, description, params)
        index = faiss.deserialize_index(faiss_bytes)
        self._index = index
        self._inner = index
        self._native_ids = True
        self._set_params()
        self._ref_ids, self._ref_vecs = ref_ids, ref_vecs
        self._next_id = next_id
        self.trained_on = trained_on
        return self


class PositionSearch:
    """A :class:`VectorIndex` over face ids seen as positions in the store's current
    table (what :class:`~facedex.identify.identifier.Identifier` expects): an id
    that is not in ``table_ids`` (a face removed from the store since) is dropped,
    never mapped to anyone."""

    def __init__(self, index: Searcher, table_ids: np.ndarray):
        self.index = index
        self.table_ids = np.asarray(table_ids, dtype=np.int64)  # sorted (store order: by face id)

    @property
    def ntotal(self) -> int:
        return min(int(self.index.ntotal), len(self.table_ids))

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        sims, ids = self.index.search(queries, k)
        if len(self.table_ids) == 0:
            return np.full_like(sims, -np.inf), np.full_like(ids, -1)
        pos = np.searchsorted(self.table_ids, ids)
        pos = np.minimum(pos, len(self.table_ids) - 1)
        ok = (ids >= 0) & (self.table_ids[pos] == ids)
        if ok.all():
            return sims, pos
        # drop the stale results, keep the order of the others, pad at the end
        order = np.argsort(~ok, axis=1, kind="stable")
        ok = np.take_along_axis(ok, order, axis=1)
        sims = np.where(ok, np.take_along_axis(sims, order, axis=1), -np.inf).astype(np.float32)
        pos = np.where(ok, np.take_along_axis(pos, order, axis=1), -1)
        return sims, pos


# --- the index kept beside the gallery -------------------------------------------------------

_MAGIC = b"FACEDEX-INDEX\n"
FORMAT = 1


def index_path(gallery: str | os.PathLike) -> Path:
    """Where a gallery's persisted index lives: ``GALLERY.index`` beside it."""
    p = Path(gallery)
    return p.with_name(p.name + ".index")


@dataclass
class IndexInfo:
    """What a :class:`PersistedIndex` reflects and how it was made (shown by ``facedex backend``)."""

    description: str
    params: dict[str, float]
    generation: int
    faces: int
    trained_on: int
    build_seconds: float
    built_at: float
    updated_at: float
    changes: dict[str, int] = field(default_factory=dict)  # last sync: added, removed, rebuilt

    def to_dict(self) -> dict[str, Any]:
        return {"description": self.description, "params": self.params, "generation": self.generation,
                "faces": self.faces, "trained_on": self.trained_on, "build_seconds": round(self.build_seconds, 3),
                "built_at": self.built_at, "updated_at": self.updated_at}


def _gallery_stamp(store: "GalleryStore") -> dict[str, Any]:
    """What ties an index file to one gallery: its creation time and embedder."""
    return {"gallery_created_at": store.meta("created_at", ""), "embedder": store.embedder_card().get("id")}


class PersistedIndex:
    """An approximate index kept in sync with a gallery and saved beside it.

    :meth:`sync` brings it up to date with the store (loading the file the
    first time, building it when there is none or it cannot be used, applying
    the difference of face ids otherwise) and saves it when it changed. The
    file is only ever replaced whole (a temporary file renamed over it).
    """

    #: Rebuild (retrain the coarse quantizer) when the gallery has grown past
    #: this many times the number of faces the index was trained on.
    RETRAIN_GROWTH = 4.0
    #: Faces sampled to train the coarse quantizer and the codes (per list; at least 50,000).
    TRAIN_PER_LIST = 40

    def __init__(self, gallery_path: str | os.PathLike, dim: int, description: str, params: str | dict | None,
                 *, persist: bool = True):
        self.path = index_path(gallery_path)
        self.dim = int(dim)
        self.description = description
        self.params = parse_params(params)
        self.persist = persist
        self.index: VectorIndex | None = None
        self.info: IndexInfo | None = None
        self._ids = np.zeros(0, np.int64)  # face ids in the index, sorted
        self._stamp: dict[str, Any] = {}

    # -- file ----------------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        assert self.index is not None and self.info is not None
        return {"format": FORMAT, "dim": self.dim, **self._stamp, **self.info.to_dict(),
                "refine": self.index.refine, "next_id": self.index._next_id,
                "ids": len(self._ids), "ref": len(self.index._ref_ids)}

    def save(self) -> None:
        """Write the index beside the gallery (atomically)."""
        from ..files import atomic_writer

        assert self.index is not None
        header = json.dumps(self._header()).encode()
        faiss_bytes = self.index._faiss_bytes()
        with atomic_writer(self.path, "wb") as f:
            f.write(_MAGIC)
            f.write(len(header).to_bytes(8, "little"))
            f.write(header)
            f.write(np.ascontiguousarray(self._ids, "<i8").data)
            f.write(np.ascontiguousarray(self.index._ref_ids, "<i8").data)
            f.write(np.ascontiguousarray(self.index._ref_vecs, "<f4").data)
            f.write(len(faiss_bytes).to_bytes(8, "little"))
            f.write(faiss_bytes.data)

    @staticmethod
    def read_header(path: str | os.PathLike) -> dict[str, Any] | None:
        """The header of an index file (``None`` when there is none or it is not one)."""
        try:
            with open(path, "rb") as f:
                if f.read(len(_MAGIC)) != _MAGIC:
                    return None
                n = int.from_bytes(f.read(8), "little")
                return json.loads(f.read(n))
        except (OSError, ValueError):
            return None

    @staticmethod
    def belongs_to(header: dict[str, Any], store: "GalleryStore") -> bool:
        """Whether an index file's header was made from this gallery."""
        return all(header.get(k) == v for k, v in _gallery_stamp(store).items())

    def _load(self) -> bool:
        """Load the file when it matches this gallery and recipe; False otherwise."""
        header = self.read_header(self.path)
        if header is None:
            return False
        if (header.get("format") != FORMAT or header.get("dim") != self.dim
                or header.get("description") != self.description or header.get("params") != self.params
                or any(header.get(k) != v for k, v in self._stamp.items())):
            log.info("%s: made for another gallery, recipe or version; rebuilding", self.path)
            return False
        try:
            with open(self.path, "rb") as f:
                f.seek(len(_MAGIC))
                f.seek(int.from_bytes(f.read(8), "little"), os.SEEK_CUR)
                ids = _read_array(f, "<i8", int(header["ids"]))
                ref_ids = _read_array(f, "<i8", int(header["ref"]))
                ref_vecs = _read_array(f, "<f4", int(header["ref"]) * self.dim).reshape(-1, self.dim)
                raw = _read_array(f, np.uint8, int.from_bytes(f.read(8), "little"))
            index = VectorIndex._from_parts(self.dim, self.description, self.params, raw, ref_ids, ref_vecs,
                                            int(header.get("next_id", 0)), int(header.get("trained_on", 0)))
        except (OSError, ValueError, RuntimeError) as err:
            log.warning("%s: cannot be read (%s); rebuilding it", self.path, err)
            return False
        self.index, self._ids = index, ids
        self.info = IndexInfo(header["description"], header["params"], int(header["generation"]), int(header["faces"]),
                              int(header["trained_on"]), float(header["build_seconds"]), float(header["built_at"]),
                              float(header["updated_at"]))
        return True

    def remove_file(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    # -- keeping up with the store ---------------------------------------------------------------
    def sync(self, store: "GalleryStore", table_ids: np.ndarray | None = None) -> IndexInfo:
        """Bring the index up to date with ``store`` and save it when it changed.

        ``table_ids`` are the store's face ids (sorted), when the caller has them.
        """
        generation = store.generation
        self._stamp = _gallery_stamp(store)
        if self.index is None and self.persist:
            self._load()
        if self.index is not None and self.info is not None and self.info.generation == generation \
                and (table_ids is None or len(table_ids) == len(self._ids)):
            self.info.changes = {}
            return self.info
        ids = store.face_ids() if table_ids is None else np.asarray(table_ids, np.int64)
        changes: dict[str, int]
        if self.index is None or self.info is None or self.info.generation > generation \
                or (len(self._ids) and int(self._ids[-1]) > store.face_id_high()) \
                or len(ids) > self.RETRAIN_GROWTH * max(self.index.trained_on, 1):
            self._build(store, generation)
            changes = {"rebuilt": 1, "added": len(self._ids), "removed": 0}
        else:
            removed = np.setdiff1d(self._ids, ids, assume_unique=True)
            added = np.setdiff1d(ids, self._ids, assume_unique=True)
            if len(removed):
                self.index.remove(removed)
            if len(added):
                self.index.add(store.vectors_by_id(added), added)
            self._ids = ids.copy()
            self.info.generation, self.info.faces, self.info.updated_at = generation, len(ids), time.time()
            changes = {"rebuilt": 0, "added": len(added), "removed": len(removed)}
        self.info.changes = changes
        if self.persist and (changes["added"] or changes["removed"] or changes["rebuilt"]
                             or self.read_header(self.path) is None):
            self._save_or_drop(removed_any=bool(changes["removed"]))
        return self.info

    def _save_or_drop(self, *, removed_any: bool) -> None:
        """Save; when the file cannot be written, it must not keep faces the gallery
        no longer has: remove it (the index lives on in memory)."""
        try:
            self.save()
        except OSError as err:
            if removed_any and self.path.exists():
                try:
                    self.remove_file()
                except OSError:
                    raise GalleryError(
                        f"{self.path}: faces were removed from the gallery but this index file cannot be rewritten "
                        f"or removed ({err.strerror or err}); delete it by hand — it still holds their vectors") from None
            log.warning("%s: cannot save the search index (%s); it is kept in memory only", self.path,
                        err.strerror or err)

    def _build(self, store: "GalleryStore", generation: int) -> None:
        t0 = time.perf_counter()
        table = store.embeddings()
        index = VectorIndex(self.dim, self.description, self.params)
        if not index.is_trained and len(table.vectors):
            nlist = _nlist(self.description)
            sample = min(len(table.vectors), max(50_000, self.TRAIN_PER_LIST * nlist))
            rng = np.random.default_rng(0)
            rows = np.sort(rng.choice(len(table.vectors), sample, replace=False)) if sample < len(table.vectors) \
                else slice(None)
            index.train(table.vectors[rows])
        index.add(table.vectors, table.face_ids)
        index.trained_on = len(table.face_ids)  # the gallery's size when trained: growth is measured from it
        ids = table.face_ids
        del table
        now = time.time()
        self.index, self._ids = index, ids
        self.info = IndexInfo(self.description, self.params, generation, len(ids), index.trained_on,
                              time.perf_counter() - t0, now, now)
        log.info("built %s over %d faces in %.1f s", self.description, len(ids), self.info.build_seconds)


def _read_array(f, dtype, count: int) -> np.ndarray:
    """Exactly ``count`` items from ``f`` into a new (writable) array."""
    dt = np.dtype(dtype)
    buf = bytearray(count * dt.itemsize)
    if f.readinto(buf) != len(buf):
        raise ValueError("the file is truncated")
    return np.frombuffer(buf, dtype=dt)


def _nlist(description: str) -> int:
    m = re.search(r"IVF(\d+)", description)
    return int(m.group(1)) if m else 1


def persistable(description: str) -> bool:
    """Whether an index of this description is kept beside the gallery and
    updated by difference: an approximate index faiss can add to and remove
    from by id (inverted files, PQ / SQ codes). Exact search is cheap to
    rebuild; graphs (HNSW, NSG) cannot remove, so they stay in memory and are
    rebuilt when the gallery changes."""
    if is_exact(description):
        return False
    base = _REFINE.sub("", description).replace(" ", "")
    return not re.match(r"(IDMap2?,)?(HNSW|NSG)", base)


__all__ = ["EXACT_UP_TO", "IndexInfo", "PersistedIndex", "PositionSearch", "Searcher", "VectorIndex",
           "auto_recipe", "index_path", "is_exact", "parse_params", "persistable"]
