"""The library's tables, in the gallery file beside the people, through the
gallery's own connection and transactions.

Created on first use (``CREATE TABLE IF NOT EXISTS`` in one transaction; the
meta key ``library_schema`` records the version):

``library_sources``
    One indexed file: its absolute path (unique), content sha256, size and
    modification time (an unchanged file is not read again), kind and size.
``library_sightings``
    One face of a photo, or one face track of a video: box, landmarks,
    detector score, quality, time range, the embedding (little-endian
    float32, as the ``faces`` table), and ``face_id`` — the enrolled face it
    became when it was named (``facedex name``). Deleting that face deletes
    the sighting (``ON DELETE CASCADE``), so ``forget`` erases a person's
    named sightings with their faces, and a merge or rename carries them
    along. Sightings are never read by identification, which reads the
    ``faces`` table only.
``library_crops``
    A small JPEG of each sighting's face, for review (the contact sheet).
``library_clusters`` / ``library_cluster_faces``
    The clusters of the last ``discover``, so that ``name CLUSTER_ID`` names
    exactly what the reviewer saw.
``library_rejections``
    "This sighting is not that person" — faces a reviewer excluded, or removed
    from a person: ``find`` never lists them for that person and discover
    does not let that person claim them.

Every row hangs off a source or a person by a cascading foreign key, so
removing either leaves nothing behind; removals are followed by VACUUM
(``secure_delete`` is on in every gallery).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from ..errors import GalleryError
from ..gallery.store import GalleryStore, _path_text, _path_value
from .types import Sighting

LIBRARY_SCHEMA = 1

_TABLES = """
CREATE TABLE IF NOT EXISTS library_sources (
    id         INTEGER PRIMARY KEY,
    path       TEXT NOT NULL UNIQUE,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    kind       TEXT NOT NULL,
    format     TEXT,
    width      INTEGER,
    height     INTEGER,
    duration   REAL,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS library_sources_sha ON library_sources(sha256);
CREATE TABLE IF NOT EXISTS library_sightings (
    id         INTEGER PRIMARY KEY,
    source_id  INTEGER NOT NULL REFERENCES library_sources(id) ON DELETE CASCADE,
    box        TEXT NOT NULL,
    landmarks  TEXT NOT NULL,
    det_score  REAL NOT NULL,
    quality    REAL NOT NULL,
    t_start    REAL,
    t_end      REAL,
    t_best     REAL,
    frames     INTEGER,
    embedding  BLOB NOT NULL,
    face_id    INTEGER REFERENCES faces(id) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS library_sightings_source ON library_sightings(source_id);
CREATE INDEX IF NOT EXISTS library_sightings_face ON library_sightings(face_id);
CREATE TABLE IF NOT EXISTS library_crops (
    sighting_id INTEGER PRIMARY KEY REFERENCES library_sightings(id) ON DELETE CASCADE,
    jpeg        BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS library_clusters (
    id         TEXT PRIMARY KEY,
    rank       INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS library_cluster_faces (
    cluster_id  TEXT NOT NULL REFERENCES library_clusters(id) ON DELETE CASCADE,
    sighting_id INTEGER NOT NULL REFERENCES library_sightings(id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    similarity  REAL NOT NULL,
    PRIMARY KEY (cluster_id, sighting_id)
);
CREATE INDEX IF NOT EXISTS library_cluster_faces_sighting ON library_cluster_faces(sighting_id);
CREATE TABLE IF NOT EXISTS library_rejections (
    sighting_id INTEGER NOT NULL REFERENCES library_sightings(id) ON DELETE CASCADE,
    person_id   INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    PRIMARY KEY (sighting_id, person_id)
);
CREATE INDEX IF NOT EXISTS library_rejections_person ON library_rejections(person_id);
"""

_SIGHTING_COLUMNS = """s.id, src.path, src.kind, s.box, s.t_start, s.t_end, s.t_best, s.frames, s.quality,
                       s.det_score, p.name"""
_SIGHTING_JOINS = """FROM library_sightings s JOIN library_sources src ON src.id = s.source_id
                     LEFT JOIN faces f ON f.id = s.face_id LEFT JOIN people p ON p.id = f.person_id"""


@dataclass(frozen=True)
class SourceRow:
    id: int
    path: str
    sha256: str
    size: int
    mtime_ns: int
    kind: str


@dataclass(frozen=True)
class NewSource:
    """A file to store: what it is, and its sightings."""

    path: str
    sha256: str
    size: int
    mtime_ns: int
    kind: str
    format: str | None = None
    width: int | None = None
    height: int | None = None
    duration: float | None = None


@dataclass(frozen=True)
class NewSighting:
    box: Sequence[float]
    landmarks: Sequence[Sequence[float]]
    score: float
    quality: float
    embedding: np.ndarray
    crop_jpeg: bytes | None = None
    t_start: float | None = None
    t_end: float | None = None
    t_best: float | None = None
    frames: int | None = None


@dataclass(frozen=True)
class SightingTable:
    """Sightings with their embeddings (row ``i`` of ``vectors`` is ``ids[i]``)."""

    ids: np.ndarray  # int64 (n,)
    vectors: np.ndarray  # float32 (n, dim)
    quality: np.ndarray  # float32 (n,)
    person: list[str | None]  # the name a sighting was given, else None
    source_ids: np.ndarray  # int64 (n,)
    t_start: np.ndarray  # float64 (n,), NaN for photos
    t_end: np.ndarray  # float64 (n,), NaN for photos


def _source(r) -> SourceRow:
    return SourceRow(int(r[0]), _path_text(r[1]), r[2], int(r[3]), int(r[4]), r[5])


def _sighting(r) -> Sighting:
    time_range = None if r[4] is None else (float(r[4]), float(r[5]))
    return Sighting(id=int(r[0]), source=_path_text(r[1]), kind=r[2], box=tuple(json.loads(r[3])), time=time_range,
                    best_time=None if r[6] is None else float(r[6]), frames=r[7], quality=float(r[8]),
                    detection_score=float(r[9]), person=r[10])


class LibraryStore:
    """The library tables of one gallery (see the module doc). ``create=False``
    never writes: a gallery that was never indexed reads as empty."""

    def __init__(self, store: GalleryStore, *, create: bool = True):
        self.gallery = store
        self._conn: sqlite3.Connection = store._conn
        self.exists = self._ensure(create)

    # -- schema --------------------------------------------------------------------------------
    def _ensure(self, create: bool) -> bool:
        version = int(self.gallery.meta("library_schema", "0") or 0)
        if version > LIBRARY_SCHEMA:
            raise GalleryError(f"{self.gallery.path} holds a library of schema {version}; this facedex reads up to "
                               f"{LIBRARY_SCHEMA} — upgrade facedex")
        if version == LIBRARY_SCHEMA:
            return True
        if not create:
            return False
        with self.gallery.transaction("add the library's tables") as c:
            for stmt in _TABLES.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            GalleryStore._set_meta(c, "library_schema", str(LIBRARY_SCHEMA))
        return True

    def transaction(self, doing: str = "change the library"):
        return self.gallery.transaction(doing)

    @property
    def dim(self) -> int:
        return int(self.gallery.embedder_card().get("embedding_dim") or 0)

    def vacuum(self) -> None:
        """Rewrite the file so that deleted rows leave nothing in free pages."""
        before, self._conn.doing = getattr(self._conn, "doing", ""), "compact the file after removing faces"
        try:
            self._conn.execute("VACUUM")
        finally:
            self._conn.doing = before

    # -- sources -------------------------------------------------------------------------------
    def source_by_path(self, path: str) -> SourceRow | None:
        if not self.exists:
            return None
        r = self._conn.execute("SELECT id, path, sha256, size, mtime_ns, kind FROM library_sources WHERE path = ?",
                               (_path_value(path),)).fetchone()
        return _source(r) if r else None

    def source_by_sha(self, sha256: str) -> SourceRow | None:
        if not self.exists:
            return None
        r = self._conn.execute("SELECT id, path, sha256, size, mtime_ns, kind FROM library_sources WHERE sha256 = ? "
                               "ORDER BY id LIMIT 1", (sha256,)).fetchone()
        return _source(r) if r else None

    def source_paths(self) -> list[str]:
        if not self.exists:
            return []
        return sorted(_path_text(r[0]) for r in self._conn.execute("SELECT path FROM library_sources"))

    def touch(self, source_id: int, size: int, mtime_ns: int) -> None:
        with self.transaction("update the library") as c:
            c.execute("UPDATE library_sources SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, source_id))

    def store(self, batch: Iterable[tuple[NewSource, Sequence[NewSighting]]]) -> list[int]:
        """Store files and their sightings in one transaction; a file already
        stored at the same path is replaced (its old sightings go). Returns the
        new source ids."""
        dim = self.dim
        ids = []
        with self.transaction("store the library's faces") as c:
            for src, sightings in batch:
                c.execute("DELETE FROM library_sources WHERE path = ?", (_path_value(src.path),))
                cur = c.execute(
                    "INSERT INTO library_sources(path, sha256, size, mtime_ns, kind, format, width, height, duration, "
                    "indexed_at) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (_path_value(src.path), src.sha256, src.size, src.mtime_ns, src.kind, src.format, src.width, src.height,
                     src.duration, time.time()))
                sid = int(cur.lastrowid)
                for s in sightings:
                    self._insert(c, sid, s, dim)
                ids.append(sid)
        return ids

    @staticmethod
    def _insert(c: sqlite3.Connection, source_id: int, s: NewSighting, dim: int) -> int:
        vec = np.asarray(s.embedding, dtype="<f4").reshape(-1)
        if dim and vec.size != dim:
            raise GalleryError(f"a sighting's embedding has {vec.size} dimensions; this gallery stores {dim}")
        if not np.all(np.isfinite(vec)):
            raise GalleryError("refusing a sighting embedding with NaN or infinite values")
        cur = c.execute(
            "INSERT INTO library_sightings(source_id, box, landmarks, det_score, quality, t_start, t_end, t_best, "
            "frames, embedding) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (source_id, json.dumps([round(float(v), 2) for v in s.box]),
             json.dumps([[round(float(x), 2), round(float(y), 2)] for x, y in s.landmarks]),
             float(s.score), float(s.quality),
             None if s.t_start is None else float(s.t_start), None if s.t_end is None else float(s.t_end),
             None if s.t_best is None else float(s.t_best), s.frames, vec.tobytes()))
        sid = int(cur.lastrowid)
        if s.crop_jpeg:
            c.execute("INSERT INTO library_crops(sighting_id, jpeg) VALUES(?, ?)", (sid, s.crop_jpeg))
        return sid

    def copy_source(self, original: SourceRow, path: str, size: int, mtime_ns: int) -> int:
        """Index ``path`` as a copy of ``original`` (same content): its sightings
        and crops are duplicated, unnamed. Returns the number of sightings."""
        with self.transaction("store the library's faces") as c:
            c.execute("DELETE FROM library_sources WHERE path = ?", (_path_value(path),))
            cur = c.execute(
                "INSERT INTO library_sources(path, sha256, size, mtime_ns, kind, format, width, height, duration, "
                "indexed_at) SELECT ?, sha256, ?, ?, kind, format, width, height, duration, ? "
                "FROM library_sources WHERE id = ?", (_path_value(path), size, mtime_ns, time.time(), original.id))
            new = int(cur.lastrowid)
            rows = c.execute("SELECT id FROM library_sightings WHERE source_id = ? ORDER BY id",
                             (original.id,)).fetchall()
            for (old_id,) in rows:
                cur = c.execute(
                    "INSERT INTO library_sightings(source_id, box, landmarks, det_score, quality, t_start, t_end, "
                    "t_best, frames, embedding) SELECT ?, box, landmarks, det_score, quality, t_start, t_end, t_best, "
                    "frames, embedding FROM library_sightings WHERE id = ?", (new, old_id))
                c.execute("INSERT INTO library_crops(sighting_id, jpeg) SELECT ?, jpeg FROM library_crops "
                          "WHERE sighting_id = ?", (int(cur.lastrowid), old_id))
        return len(rows)

    def remove_sources(self, paths: Sequence[str], *, vacuum: bool = True) -> dict[str, int]:
        """Remove these files' sightings (and crops, cluster places, rejections)."""
        if not self.exists or not paths:
            return {"sources": 0, "sightings": 0, "named": 0}
        n_src = n_sight = n_named = 0
        with self.transaction("remove faces from the library") as c:
            for path in paths:
                row = c.execute("SELECT id FROM library_sources WHERE path = ?", (_path_value(path),)).fetchone()
                if row is None:
                    continue
                n_sight += c.execute("SELECT COUNT(*) FROM library_sightings WHERE source_id = ?", row).fetchone()[0]
                n_named += c.execute("SELECT COUNT(*) FROM library_sightings WHERE source_id = ? AND face_id IS NOT "
                                     "NULL", row).fetchone()[0]
                c.execute("DELETE FROM library_sources WHERE id = ?", row)
                n_src += 1
        if n_src and vacuum:
            self.vacuum()
        return {"sources": n_src, "sightings": int(n_sight), "named": int(n_named)}

    def paths_under(self, prefix: str) -> list[str]:
        """Indexed paths equal to ``prefix`` or inside the folder ``prefix``."""
        if not self.exists:
            return []
        folder = prefix.rstrip(os.sep) + os.sep
        return [p for p in self.source_paths() if p == prefix or p.startswith(folder)]

    # -- reading sightings -----------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        if not self.exists:
            return {"sources": 0, "sightings": 0, "named": 0, "clusters": 0}
        q = self._conn.execute
        return {"sources": q("SELECT COUNT(*) FROM library_sources").fetchone()[0],
                "sightings": q("SELECT COUNT(*) FROM library_sightings").fetchone()[0],
                "named": q("SELECT COUNT(*) FROM library_sightings WHERE face_id IS NOT NULL").fetchone()[0],
                "clusters": q("SELECT COUNT(*) FROM library_clusters").fetchone()[0]}

    def table(self, *, unnamed_only: bool = False) -> SightingTable:
        """Sightings with their embeddings, by id."""
        dim = self.dim
        if not self.exists:
            return SightingTable(np.zeros(0, np.int64), np.zeros((0, dim), np.float32), np.zeros(0, np.float32), [],
                                 np.zeros(0, np.int64), np.zeros(0), np.zeros(0))
        where = "WHERE s.face_id IS NULL" if unnamed_only else ""
        rows = self._conn.execute(
            f"SELECT s.id, s.embedding, s.quality, p.name, s.source_id, s.t_start, s.t_end FROM library_sightings s "
            f"LEFT JOIN faces f ON f.id = s.face_id LEFT JOIN people p ON p.id = f.person_id {where} "
            f"ORDER BY s.id").fetchall()
        n = len(rows)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        blob = b"".join(r[1] for r in rows)
        if dim and len(blob) != n * dim * 4:
            raise GalleryError(f"{self.gallery.path}: stored sighting embeddings do not have {dim} dimensions; "
                               "the file is damaged")
        vectors = (np.frombuffer(blob, dtype="<f4").reshape(n, dim).astype(np.float32) if n
                   else np.zeros((0, dim), np.float32))
        quality = np.fromiter((r[2] for r in rows), dtype=np.float32, count=n)
        sources = np.fromiter((r[4] for r in rows), dtype=np.int64, count=n)
        nan = float("nan")
        t0 = np.fromiter((nan if r[5] is None else r[5] for r in rows), dtype=np.float64, count=n)
        t1 = np.fromiter((nan if r[6] is None else r[6] for r in rows), dtype=np.float64, count=n)
        return SightingTable(ids, vectors, quality, [r[3] for r in rows], sources, t0, t1)

    def sightings(self, ids: Sequence[int]) -> dict[int, Sighting]:
        """Sightings by id (those that exist)."""
        if not self.exists:
            return {}
        out: dict[int, Sighting] = {}
        ids = [int(i) for i in ids]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self._conn.execute(f"SELECT {_SIGHTING_COLUMNS} {_SIGHTING_JOINS} WHERE s.id IN ({marks})",
                                        chunk):
                out[int(r[0])] = _sighting(r)
        return out

    def crop(self, sighting_id: int) -> bytes | None:
        if not self.exists:
            return None
        r = self._conn.execute("SELECT jpeg FROM library_crops WHERE sighting_id = ?", (int(sighting_id),)).fetchone()
        return r[0] if r else None

    def rejections(self) -> set[tuple[int, str]]:
        """``(sighting id, person name)`` pairs a reviewer said are not that person."""
        if not self.exists:
            return set()
        rows = self._conn.execute("SELECT r.sighting_id, p.name FROM library_rejections r "
                                  "JOIN people p ON p.id = r.person_id").fetchall()
        return {(int(a), b) for a, b in rows}

    # -- clusters --------------------------------------------------------------------------------
    def save_clusters(self, clusters: Sequence[tuple[str, Sequence[tuple[int, float]]]]) -> None:
        """Replace the stored clusters: ``(id, [(sighting id, similarity), …])`` in rank order."""
        now = time.time()
        with self.transaction("store the clusters") as c:
            c.execute("DELETE FROM library_clusters")
            for rank, (cid, members) in enumerate(clusters):
                c.execute("INSERT INTO library_clusters(id, rank, created_at) VALUES(?, ?, ?)", (cid, rank, now))
                c.executemany("INSERT INTO library_cluster_faces(cluster_id, sighting_id, position, similarity) "
                              "VALUES(?, ?, ?, ?)", [(cid, int(s), i, float(sim)) for i, (s, sim) in enumerate(members)])

    def cluster_members(self, cluster_id: str) -> list[tuple[int, float]] | None:
        """The stored cluster's ``(sighting id, similarity)``, or ``None``."""
        if not self.exists:
            return None
        if self._conn.execute("SELECT 1 FROM library_clusters WHERE id = ?", (cluster_id,)).fetchone() is None:
            return None
        rows = self._conn.execute("SELECT sighting_id, similarity FROM library_cluster_faces WHERE cluster_id = ? "
                                  "ORDER BY position", (cluster_id,)).fetchall()
        return [(int(a), float(b)) for a, b in rows]

    def cluster_ids(self) -> list[str]:
        if not self.exists:
            return []
        return [r[0] for r in self._conn.execute("SELECT id FROM library_clusters ORDER BY rank")]


__all__ = ["LIBRARY_SCHEMA", "LibraryStore", "NewSighting", "NewSource", "SightingTable", "SourceRow"]
