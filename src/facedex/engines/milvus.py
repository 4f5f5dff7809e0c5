"""Search a gallery in Milvus: galleries too big for one machine's memory.

The gallery's SQLite file stays the source of truth (people, sources, faces
and embeddings); Milvus holds a copy of the embeddings keyed by face id and
answers the k-nearest-neighbour searches. The same client code talks to a
Milvus server or cluster (``uri="http://host:19530"``) and to milvus-lite, a
local file (``uri="faces.db"``, what the tests use).

Choosing it is a gallery option, recorded in the gallery, so every program
that opens the gallery searches there::

    facedex backend my.gallery milvus --uri http://milvus:19530
    facedex backend my.gallery faiss          # back to in-process search

Keeping up: the face ids Milvus holds are listed in a small file beside the
gallery (``GALLERY.index``, the same file the faiss index uses, here with no
vectors); when the gallery changes, new faces are inserted and removed faces
deleted by difference of face ids (a face id is never reused, so a
difference is exact). ``Gallery.forget`` deletes the person's faces from
Milvus at once. A search result whose face is no longer in the gallery is
dropped in any case.

Index: ``FLAT`` (exact) by default, so answers are those of exact search;
on a server, ``index_type="HNSW"`` (``params={"M": 32, "efConstruction":
200}``, ``search_params={"ef": 512}``) or ``"IVF_SQ8"`` trade exactness for
speed the way bench/search.py measures for faiss.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, GalleryError, MissingDependencyError

if TYPE_CHECKING:  # pragma: no cover
    from ..gallery.store import GalleryStore
    from ..identify.gallery import Gallery

log = logging.getLogger(__name__)

#: Milvus refuses a search for more than this many neighbours.
MAX_TOPK = 16384
_INSERT_BATCH = 5000
_STATE_MAGIC = b"FACEDEX-MILVUS\n"


def _pymilvus():
    try:
        import pymilvus
    except ImportError:
        raise MissingDependencyError("pymilvus", "milvus", "the Milvus search backend") from None
    return pymilvus


def _is_remote(uri: str) -> bool:
    return bool(re.match(r"^[a-z]+://", uri))


def resolve_uri(uri: str, gallery_path: str | os.PathLike) -> str:
    """A milvus-lite file given relative to the gallery's folder; server URIs as they are."""
    if _is_remote(uri):
        return uri
    p = Path(uri).expanduser()
    return str(p if p.is_absolute() else Path(gallery_path).parent / p)


def default_collection(store: "GalleryStore") -> str:
    """``facedex_<gallery stem>_<hash of its creation stamp>``: one collection per gallery."""
    import hashlib

    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(store.path).stem)[:40] or "gallery"
    tag = hashlib.sha256(f"{store.meta('created_at', '')}|{store.path}".encode()).hexdigest()[:10]
    return f"facedex_{stem}_{tag}"


def configure(gallery: "Gallery", *, uri: str, collection: str | None = None, index_type: str = "FLAT",
              params: dict[str, Any] | None = None, search_params: dict[str, Any] | None = None,
              token: str | None = None) -> dict[str, Any]:
    """Check the settings, fill the collection from the gallery, return the config to record."""
    if not uri:
        raise ConfigError("the Milvus backend needs a URI: a server (http://host:19530) or a milvus-lite file")
    if token:
        raise ConfigError("do not store a Milvus token in the gallery; set MILVUS_TOKEN in the environment")
    config = {"engine": "milvus", "uri": uri, "collection": collection or default_collection(gallery.store),
              "index_type": index_type.upper(), "params": params or {}, "search_params": search_params or {}}
    search = MilvusSearch(gallery, config)
    search.sync(gallery.store, rebuild=True)
    search.close()
    return config


def open(gallery: "Gallery", config: dict[str, Any]) -> "MilvusSearch":  # noqa: A001 - the engine protocol
    return MilvusSearch(gallery, config)


class MilvusSearch:
    """A gallery's faces in a Milvus collection; :meth:`search` follows faiss's
    contract (similarities, face ids, ``-1`` for no result)."""

    def __init__(self, gallery: "Gallery", config: dict[str, Any]):
        pymilvus = _pymilvus()
        self.gallery_path = Path(gallery.path)
        self.dim = int(gallery.embedder_card.embedding_dim or 128)
        self.config = dict(config)
        self.collection = str(config["collection"])
        self.uri = resolve_uri(str(config["uri"]), gallery.path)
        if not _is_remote(self.uri):
            # milvus-lite serves in this process and logs a traceback at ERROR for a call it does not
            # implement (AllocTimestamp), which the client then does without: not the user's concern
            logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
        token = os.environ.get("MILVUS_TOKEN") or ""
        try:
            self.client = pymilvus.MilvusClient(self.uri, token=token) if token else pymilvus.MilvusClient(self.uri)
        except Exception as err:  # pymilvus raises its own exception types, and OSError for a bad file
            raise GalleryError(f"cannot reach Milvus at {self.uri} ({err}); check `facedex backend "
                               f"{gallery.path}` (the URI, the server, MILVUS_TOKEN)") from None
        self._ids = np.zeros(0, np.int64)
        self._generation = -1
        self.info = None
        self._state_loaded = False

    # -- the state file: which face ids the collection holds, at which generation ---------------
    @property
    def state_path(self) -> Path:
        from ..gallery.index import index_path

        return index_path(self.gallery_path)

    def _load_state(self, store: "GalleryStore") -> None:
        self._state_loaded = True
        try:
            with builtins.open(self.state_path, "rb") as f:
                if f.read(len(_STATE_MAGIC)) != _STATE_MAGIC:
                    return
                n = int.from_bytes(f.read(8), "little")
                header = json.loads(f.read(n))
                ids = np.frombuffer(f.read(8 * int(header["ids"])), "<i8").copy()
        except (OSError, ValueError, KeyError):
            return
        if header.get("collection") != self.collection or header.get("uri") != self.config["uri"] \
                or header.get("gallery_created_at") != store.meta("created_at", "") or len(ids) != header["ids"]:
            return
        self._ids, self._generation = ids, int(header["generation"])

    def _save_state(self, store: "GalleryStore") -> None:
        from ..files import atomic_writer

        header = json.dumps({"engine": "milvus", "collection": self.collection, "uri": self.config["uri"],
                             "gallery_created_at": store.meta("created_at", ""), "generation": self._generation,
                             "ids": len(self._ids), "updated_at": time.time()}).encode()
        try:
            with atomic_writer(self.state_path, "wb") as f:
                f.write(_STATE_MAGIC)
                f.write(len(header).to_bytes(8, "little"))
                f.write(header)
                f.write(np.ascontiguousarray(self._ids, "<i8").data)
        except OSError as err:
            log.warning("%s: cannot save which faces Milvus holds (%s); the next run compares again",
                        self.state_path, err.strerror or err)

    # -- the collection --------------------------------------------------------------------------
    def _create_collection(self) -> None:
        pymilvus = _pymilvus()
        DataType = pymilvus.DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("face_id", DataType.INT64, is_primary=True)
        schema.add_field("embedding", DataType.FLOAT_VECTOR, dim=self.dim)
        index = self.client.prepare_index_params()
        index.add_index(field_name="embedding", index_type=self.config.get("index_type", "FLAT"), metric_type="IP",
                        params=self.config.get("params") or {})
        self.client.create_collection(self.collection, schema=schema, index_params=index,
                                      consistency_level="Strong")

    def _ensure_collection(self, rebuild: bool) -> bool:
        """True when the collection had to be (re)created (it is then empty)."""
        exists = self.client.has_collection(self.collection)
        if exists and rebuild:
            self.client.drop_collection(self.collection)
            exists = False
        if not exists:
            self._create_collection()
            return True
        self.client.load_collection(self.collection)
        return False

    def sync(self, store: "GalleryStore", table_ids: np.ndarray | None = None, *, rebuild: bool = False):
        """Insert the faces Milvus lacks and delete those the gallery no longer has."""
        from ..gallery.index import IndexInfo

        if not self._state_loaded:
            self._load_state(store)
        generation = store.generation
        ids = store.face_ids() if table_ids is None else np.asarray(table_ids, np.int64)
        if not rebuild and self._generation == generation and len(ids) == len(self._ids):
            if self.info is None:  # state from the file: the collection must still be there
                if not self.client.has_collection(self.collection):
                    return self.sync(store, ids, rebuild=True)
                self.client.load_collection(self.collection)
                now = time.time()
                self.info = IndexInfo(f"milvus:{self.config.get('index_type', 'FLAT')}", {}, generation, len(ids),
                                      0, 0.0, now, now)
            self.info.changes = {}
            return self.info
        t0 = time.perf_counter()
        created = self._ensure_collection(rebuild or self._generation < 0 or self._generation > generation)
        have = np.zeros(0, np.int64) if created else self._ids
        removed = np.setdiff1d(have, ids, assume_unique=True)
        added = np.setdiff1d(ids, have, assume_unique=True)
        if len(removed):
            for start in range(0, len(removed), _INSERT_BATCH):
                chunk = [int(i) for i in removed[start:start + _INSERT_BATCH]]
                self.client.delete(self.collection, ids=chunk)
        for start in range(0, len(added), _INSERT_BATCH):
            chunk = added[start:start + _INSERT_BATCH]
            vecs = store.vectors_by_id(chunk)
            self.client.upsert(self.collection, [{"face_id": int(i), "embedding": v.tolist()}
                                                 for i, v in zip(chunk, vecs)])
        self._ids, self._generation = ids.copy(), generation
        self._save_state(store)
        now = time.time()
        self.info = IndexInfo(f"milvus:{self.config.get('index_type', 'FLAT')}", {}, generation, len(ids), 0,
                              time.perf_counter() - t0, now, now,
                              {"rebuilt": int(created), "added": len(added), "removed": len(removed)})
        return self.info

    @property
    def ntotal(self) -> int:
        return len(self._ids)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(int(k), 0)
        sims = np.full((q.shape[0], k), -np.inf, np.float32)
        ids = np.full((q.shape[0], k), -1, np.int64)
        limit = min(k, self.ntotal, MAX_TOPK)
        if q.shape[0] == 0 or limit == 0:
            return sims, ids
        params = {"metric_type": "IP", "params": dict(self.config.get("search_params") or {})}
        for start in range(0, q.shape[0], 256):
            chunk = q[start:start + 256]
            hits = self.client.search(self.collection, data=[v.tolist() for v in chunk], limit=limit,
                                      anns_field="embedding", search_params=params, output_fields=["face_id"])
            for row, found in enumerate(hits):
                for j, hit in enumerate(found[:limit]):
                    sims[start + row, j] = float(hit["distance"])
                    ids[start + row, j] = int(hit["face_id"])
        return sims, ids

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client that lost its server must not hide the real answer
            log.debug("closing the Milvus client failed", exc_info=True)


def retire(gallery: "Gallery", config: dict[str, Any]) -> None:
    """The gallery stops searching here: drop its collection (a copy of the
    gallery's vectors that ``forget`` would no longer reach) and the state file."""
    search = MilvusSearch(gallery, config)
    try:
        if search.client.has_collection(search.collection):
            search.client.drop_collection(search.collection)
    finally:
        search.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(search.state_path)


__all__ = ["MilvusSearch", "configure", "default_collection", "open", "resolve_uri", "retire"]
