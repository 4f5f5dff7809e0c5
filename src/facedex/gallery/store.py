"""The gallery's source of truth: one SQLite file, written in transactions.

Tables: ``meta`` (schema version, the embedder card, the open-set threshold,
a write generation), ``people``, ``sources`` (one enrolled image: its path and
content sha256) and ``faces`` (box, landmarks, detector score, embedding).
Deleting a person cascades to their sources and faces. ``secure_delete`` is on
and :meth:`GalleryStore.forget` vacuums, so a forgotten person's embeddings do
not survive in free pages of the file.

Every write happens in one transaction, so a process killed at any moment
leaves only whole records (a source row always comes with its faces). A new
gallery is built in a temporary file beside the target and linked into place
complete, so a gallery either exists whole or not at all; an empty file (a
creation that never finished, by an older facedex or another tool) counts as
"not created yet". SQLite's errors become :class:`GalleryError` subclasses
that name the gallery and the cause (read-only, busy, disk full, damaged),
and a failed write leaves the file as it was.

Source paths are stored losslessly: a path that is not valid UTF-8 (bytes
from a POSIX file system, decoded with ``surrogateescape``) is stored as the
raw bytes and read back as the same ``str``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import (
    EmbedderMismatchError,
    GalleryBusyError,
    GalleryCorruptError,
    GalleryError,
    GalleryFullError,
    GalleryNotFoundError,
    GalleryReadOnlyError,
    PersonNotFoundError,
)
from ..names import person_name as clean_name

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
APPLICATION_ID = 0x66646578  # "fdex": marks the SQLite file as a facedex gallery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS people (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS sources (
    id         INTEGER PRIMARY KEY,
    person_id  INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    path       TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    added_at   REAL NOT NULL,
    UNIQUE (person_id, sha256)
);
CREATE TABLE IF NOT EXISTS faces (
    id         INTEGER PRIMARY KEY,
    person_id  INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    source_id  INTEGER REFERENCES sources(id) ON DELETE CASCADE,
    box        TEXT NOT NULL,
    landmarks  TEXT NOT NULL,
    det_score  REAL NOT NULL,
    embedding  BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_person ON faces(person_id);
CREATE INDEX IF NOT EXISTS faces_source ON faces(source_id);
CREATE INDEX IF NOT EXISTS sources_sha ON sources(sha256);
"""


from .. import config


def db_error(path: Path, err: sqlite3.Error, doing: str) -> GalleryError:
    """An SQLite error as a facedex error that names the gallery and the cause."""
    text = str(err)
    low = text.lower()
    if "readonly" in low or "read-only" in low or "attempt to write" in low:
        return GalleryReadOnlyError(
            f"{path}: cannot {doing}: the gallery is read-only (its file, its folder or the file system); "
            "a change needs write access to the file and its folder — nothing was changed")
    if "locked" in low or "busy" in low:
        return GalleryBusyError(f"{path}: cannot {doing}: another program is using the gallery "
                                f"(waited {config.busy_timeout():g} s, FACEDEX_BUSY_TIMEOUT); try again when it is "
                                "done — nothing was changed")
    name = getattr(err, "sqlite_errorname", "")
    failed_write = name in ("SQLITE_IOERR_WRITE", "SQLITE_IOERR_FSYNC", "SQLITE_IOERR_TRUNCATE") or (
        "disk i/o" in low and not doing.startswith(("read", "open")))
    if "full" in low or "too big" in low or failed_write:
        return GalleryFullError(f"{path}: cannot {doing}: writing failed — the disk is full (or a file-size limit "
                                f"was reached: {text}); the change was rolled back and the gallery is as it was")
    if "malformed" in low or "not a database" in low or "corrupt" in low:
        return GalleryCorruptError(f"{path}: the file is damaged or not a facedex gallery ({text})")
    if ("unable to open" in low or "disk i/o" in low) and not doing.startswith(("read", "open")) \
            and not _folder_writable(path.parent):
        return GalleryReadOnlyError(
            f"{path}: cannot {doing}: its folder {path.parent} is read-only (SQLite writes a journal beside the "
            "gallery); a change needs write access to the file and its folder — nothing was changed")
    if "unable to open" in low or "disk i/o" in low:
        return GalleryError(f"{path}: cannot {doing}: cannot open or read the file ({text}); "
                            "check that it and its folder exist and are readable")
    return GalleryError(f"{path}: cannot {doing} ({text})")


def _folder_writable(folder: Path) -> bool:
    """Whether a file can be created in ``folder`` (tried: permissions alone say
    nothing for root, an immutable folder or a read-only mount)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".facedex-probe-", dir=folder)
    except OSError:
        return False
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return True


class _Connection(sqlite3.Connection):
    """An SQLite connection whose errors name the gallery and the cause
    (:func:`db_error`); ``doing`` says what was being done."""

    gallery_path: Path = Path("?")
    doing = "read the gallery"

    def execute(self, sql, parameters=(), /):  # type: ignore[override]
        try:
            return super().execute(sql, parameters)
        except sqlite3.Error as err:
            raise db_error(self.gallery_path, err, self.doing) from err


def _connect(target: str | Path, gallery: Path) -> _Connection:
    try:
        conn = sqlite3.connect(str(target), timeout=config.busy_timeout(), isolation_level=None, check_same_thread=False,
                               factory=_Connection)
    except sqlite3.Error as err:
        raise db_error(gallery, err, "open the gallery") from err
    conn.gallery_path = gallery
    return conn


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _path_value(path: str) -> str | bytes:
    """A path as SQLite can store it losslessly (see the module doc)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return os.fsencode(path)


def _path_text(value: str | bytes | None) -> str | None:
    return os.fsdecode(value) if isinstance(value, bytes) else value


def _file_state(p: Path) -> str:
    """``"missing"``, ``"empty"`` (0 bytes, or an SQLite file with no table and no
    facedex mark: a creation that never finished) or ``"present"``."""
    try:
        st = p.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        raise GalleryError(f"{p}: cannot access ({err.strerror or err})") from None
    if not os.path.isfile(p):
        raise GalleryError(f"{p} is not a regular file; a gallery is a single file")
    if st.st_size == 0:
        return "empty"
    try:
        con = sqlite3.connect(f"file:{p}?mode=ro", uri=True, timeout=config.busy_timeout())
        try:
            tables = con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            app_id = con.execute("PRAGMA application_id").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return "present"  # opening it properly gives the precise error
    return "empty" if tables == 0 and app_id == 0 else "present"


def gallery_exists(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a gallery (an empty or unfinished file does not)."""
    p = Path(path).expanduser()
    return not p.is_dir() and _file_state(p) == "present"


@dataclass(frozen=True)
class FaceRecord:
    box: Sequence[float]
    landmarks: Sequence[Sequence[float]]
    score: float
    embedding: np.ndarray


@dataclass(frozen=True)
class SourceRecord:
    """One enrollment image and the face(s) taken from it."""

    person: str
    path: str
    sha256: str
    faces: Sequence[FaceRecord]


@dataclass(frozen=True)
class PersonInfo:
    name: str
    faces: int
    sources: int
    created_at: float

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "faces": self.faces, "sources": self.sources}


@dataclass(frozen=True)
class EmbeddingTable:
    """All embeddings with their face ids and person labels (index into ``names``)."""

    face_ids: np.ndarray  # int64 (n,)
    labels: np.ndarray  # int64 (n,), index into names
    names: list[str]
    vectors: np.ndarray  # float32 (n, dim)
    person_ids: np.ndarray | None = None  # int64 (len(names),): the person id of each name, ascending


class GalleryStore:
    """Low-level access to a gallery file. Use :class:`facedex.Gallery` instead."""

    def __init__(self, conn: sqlite3.Connection, path: Path):
        self._conn = conn
        self.path = path

    # -- opening ------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike, *, create: bool = False,
             embedder_card: dict[str, Any] | None = None) -> "GalleryStore":
        """Open (or, with ``create``, make) the gallery at ``path``.

        A new gallery records ``embedder_card``; an existing one refuses a
        different embedder with :class:`EmbedderMismatchError`.
        """
        p = Path(path).expanduser()
        if p.is_dir():
            raise GalleryError(f"{p} is a directory; a gallery is a single file")
        state = _file_state(p)
        if state != "present":
            if not create:
                what = "no gallery" if state == "missing" else "an empty file (a gallery whose creation never finished)"
                raise GalleryNotFoundError(f"{what} at {p}; create one with `facedex enroll {p} FOLDER`")
            if embedder_card is None:
                raise GalleryError(f"cannot create {p} without an embedder card")
            if not p.parent.is_dir():
                raise GalleryError(f"cannot create {p}: folder {p.parent} does not exist")
            cls._create(p, embedder_card, replace_empty=state == "empty")
        conn = _connect(p, p)
        store = cls(conn, p)
        try:
            conn.doing = "open the gallery"
            store._configure()
            store._check_existing()
            conn.doing = "read the gallery"
        except BaseException:
            conn.close()
            raise
        if embedder_card is not None:
            store.require_embedder(embedder_card["id"])
        return store

    @classmethod
    def _create(cls, p: Path, embedder_card: dict[str, Any], *, replace_empty: bool) -> None:
        """Build the gallery in a temporary file beside ``p`` and put it in place
        whole: linked when ``p`` does not exist (if another process created it
        meanwhile, theirs is kept), or swapped for an empty file under a lock."""
        try:
            fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".creating", dir=p.parent)
        except OSError as err:
            raise GalleryReadOnlyError(f"cannot create {p}: cannot write into {p.parent} "
                                       f"({err.strerror or err})") from None
        os.close(fd)
        try:
            conn = _connect(tmp, p)
            conn.doing = "create the gallery"
            try:
                store = cls(conn, p)
                store._configure()
                store._initialise(embedder_card)
            finally:
                conn.close()
            os.chmod(tmp, 0o666 & ~_umask())
            if replace_empty:
                cls._replace_empty(p, tmp)
            else:
                try:
                    os.link(tmp, p)
                except FileExistsError:
                    pass  # created by another process in the meantime: use theirs
                except OSError:  # a file system without hard links
                    if not p.exists():
                        os.replace(tmp, p)
        except OSError as err:
            raise GalleryError(f"cannot create {p} ({err.strerror or err})") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp + "-journal")

    @staticmethod
    def _replace_empty(p: Path, tmp: str) -> None:
        fd = os.open(p, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            same_file = os.fstat(fd).st_ino == os.stat(p).st_ino
            if same_file and _file_state(p) == "empty":
                os.replace(tmp, p)
        finally:
            os.close(fd)

    def _configure(self) -> None:
        c = self._conn
        c.execute("PRAGMA foreign_keys = ON")
        c.execute("PRAGMA secure_delete = ON")
        c.execute("PRAGMA journal_mode = DELETE")
        c.execute("PRAGMA synchronous = FULL")

    def _check_existing(self) -> None:
        app_id = self._conn.execute("PRAGMA application_id").fetchone()[0]
        if app_id != APPLICATION_ID:
            raise GalleryCorruptError(f"{self.path} is an SQLite file but not a facedex gallery")
        version = int(self.meta("schema_version", "0"))
        if version > SCHEMA_VERSION:
            raise GalleryError(
                f"{self.path} uses gallery schema {version}; this facedex reads up to "
                f"{SCHEMA_VERSION} — upgrade facedex"
            )

    def _initialise(self, embedder_card: dict[str, Any]) -> None:
        with self.transaction() as c:
            c.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            for stmt in _SCHEMA.strip().split(";"):
                if stmt.strip():
                    c.execute(stmt)
            self._set_meta(c, "schema_version", str(SCHEMA_VERSION))
            self._set_meta(c, "embedder", json.dumps(embedder_card, sort_keys=True))
            self._set_meta(c, "created_at", repr(time.time()))
            self._set_meta(c, "generation", "0")

    def close(self) -> None:
        self._conn.close()

    # -- transactions and meta ---------------------------------------------------------
    class _Tx:
        """``BEGIN IMMEDIATE`` … ``COMMIT``; on any error a ``ROLLBACK`` whose own
        failure (no transaction left after a disk-full error) never hides the
        cause; SQLite errors arrive as :class:`GalleryError` subclasses."""

        def __init__(self, store: "GalleryStore", doing: str):
            self.store, self.doing = store, doing
            self.conn: _Connection = store._conn

        def __enter__(self) -> sqlite3.Connection:
            self.before = self.conn.doing
            self.conn.doing = self.doing
            try:
                self.conn.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.conn.doing = self.before
                raise
            return self.conn

        def __exit__(self, exc_type, exc, tb) -> bool:
            try:
                if exc_type is None:
                    try:
                        self.conn.execute("COMMIT")
                    except BaseException:
                        self._rollback()
                        raise
                else:
                    self._rollback()
            finally:
                self.conn.doing = self.before
            return False

        def _rollback(self) -> None:
            if self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error, GalleryError):
                    sqlite3.Connection.execute(self.conn, "ROLLBACK")

    def transaction(self, doing: str = "change the gallery") -> "GalleryStore._Tx":
        return GalleryStore._Tx(self, doing)

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    @staticmethod
    def _set_meta(c: sqlite3.Connection, key: str, value: str) -> None:
        c.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    @staticmethod
    def _bump(c: sqlite3.Connection) -> None:
        c.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as c:
            self._set_meta(c, key, value)

    @property
    def generation(self) -> int:
        """Increases with every change to people or faces (the index's staleness stamp)."""
        return int(self.meta("generation", "0"))

    def embedder_card(self) -> dict[str, Any]:
        return json.loads(self.meta("embedder", "{}"))

    def require_embedder(self, embedder_id: str) -> None:
        have = self.embedder_card().get("id")
        if have != embedder_id:
            raise EmbedderMismatchError(
                f"{self.path} holds embeddings from {have!r}; refusing vectors from {embedder_id!r}. "
                "Open the gallery with the embedder it was built with, or enroll into a new gallery."
            )

    # -- writing ---------------------------------------------------------------------------
    def _person_id(self, c: sqlite3.Connection, name: str, create: bool) -> int | None:
        row = c.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
        if row:
            return int(row[0])
        if not create:
            return None
        cur = c.execute("INSERT INTO people(name, created_at) VALUES(?, ?)", (name, time.time()))
        return int(cur.lastrowid)

    def has_source(self, person: str, sha256: str) -> bool:
        row = self._conn.execute(
            "SELECT 1 FROM sources s JOIN people p ON p.id = s.person_id WHERE p.name = ? AND s.sha256 = ?",
            (clean_name(person), sha256),
        ).fetchone()
        return row is not None

    def persons_with_source(self, sha256: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT p.name FROM sources s JOIN people p ON p.id = s.person_id WHERE s.sha256 = ?",
            (sha256,),
        ).fetchall()
        return [r[0] for r in rows]

    def add_sources(self, records: Iterable[SourceRecord], embedder_id: str) -> list[list[int]]:
        """Add whole records (a source and its faces) in one transaction.

        Returns, per record, the face ids this call added: an empty list when
        the record's (person, sha256) was already stored (by an earlier run, or
        by another process at the same moment), so callers report what *they*
        stored.
        """
        self.require_embedder(embedder_id)
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        added: list[list[int]] = []
        with self.transaction() as c:
            for rec in records:
                if not rec.faces:
                    raise GalleryError(f"{rec.path}: a source record needs at least one face")
                name = clean_name(rec.person)
                pid = self._person_id(c, name, create=True)
                cur = c.execute(
                    "INSERT OR IGNORE INTO sources(person_id, path, sha256, added_at) VALUES(?, ?, ?, ?)",
                    (pid, _path_value(rec.path), rec.sha256, time.time()),
                )
                if cur.rowcount == 0:
                    added.append([])
                    continue
                sid = int(cur.lastrowid)
                added.append([self._insert_face(c, pid, sid, f, dim) for f in rec.faces])
            if any(added):
                self._bump(c)
            # a person created for records that were all already stored stays only if it has faces
            c.execute("DELETE FROM people WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = people.id)")
        return added

    def add_faces(self, person: str, faces: Iterable[FaceRecord], embedder_id: str) -> list[int]:
        """Add faces with no source image (precomputed embeddings)."""
        self.require_embedder(embedder_id)
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        with self.transaction() as c:
            pid = self._person_id(c, clean_name(person), create=True)
            ids = [self._insert_face(c, pid, None, f, dim) for f in faces]
            self._bump(c)
        return ids

    @staticmethod
    def _insert_face(c: sqlite3.Connection, pid: int, sid: int | None, f: FaceRecord, dim: int) -> int:
        vec = np.asarray(f.embedding, dtype="<f4").reshape(-1)
        if dim and vec.size != dim:
            raise EmbedderMismatchError(f"embedding has {vec.size} dimensions; this gallery stores {dim}")
        if not np.all(np.isfinite(vec)):
            raise GalleryError("refusing an embedding with NaN or infinite values")
        # Face ids are never reused (SQLite would give a deleted top id again): the
        # persisted search index follows the store by difference of face ids.
        fid = GalleryStore._next_face_id(c)
        cur = c.execute(
            "INSERT INTO faces(id, person_id, source_id, box, landmarks, det_score, embedding) "
            "VALUES(?, ?, ?, ?, ?, ?, ?)",
            (
                fid,
                pid,
                sid,
                json.dumps([round(float(v), 3) for v in f.box]),
                json.dumps([[round(float(x), 3), round(float(y), 3)] for x, y in f.landmarks]),
                float(f.score),
                vec.tobytes(),
            ),
        )
        return int(cur.lastrowid)

    # -- face ids and the search index (issue #16) -------------------------------------------
    @staticmethod
    def _next_face_id(c: sqlite3.Connection) -> int:
        """The id for a new face: above every face id this gallery ever held
        (``meta.face_id_high``, kept up to date here), so a search index that
        follows the store by face ids never sees an id change meaning."""
        row = c.execute("SELECT MAX(COALESCE((SELECT MAX(id) FROM faces), 0), "
                        "COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'face_id_high'), 0))").fetchone()
        fid = int(row[0]) + 1
        GalleryStore._set_meta(c, "face_id_high", str(fid))
        return fid

    def face_id_high(self) -> int:
        """The highest face id this gallery ever gave (0 for none)."""
        row = self._conn.execute("SELECT MAX(COALESCE((SELECT MAX(id) FROM faces), 0), "
                                 "COALESCE((SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'face_id_high'), 0))"
                                 ).fetchone()
        return int(row[0])

    def face_ids(self) -> np.ndarray:
        """Every face id, sorted (read from an index: no embedding is read)."""
        rows = self._conn.execute("SELECT id FROM faces ORDER BY id").fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def face_labels(self) -> EmbeddingTable:
        """:meth:`embeddings` without the vectors (``vectors`` is empty): face ids,
        person labels and names, cheap even for millions of faces."""
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        names_rows = self._conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
        pos = {pid: i for i, (pid, _) in enumerate(names_rows)}
        rows = self._conn.execute("SELECT id, person_id FROM faces ORDER BY id").fetchall()
        n = len(rows)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        labels = np.fromiter((pos[r[1]] for r in rows), dtype=np.int64, count=n)
        return EmbeddingTable(face_ids=ids, labels=labels, names=[nm for _, nm in names_rows],
                              person_ids=np.fromiter((pid for pid, _ in names_rows), np.int64, len(names_rows)),
                              vectors=np.zeros((0, dim), np.float32))

    def vectors_by_id(self, face_ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """The embeddings of these face ids, in the order given (a missing id raises)."""
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        wanted = [int(i) for i in np.asarray(face_ids).reshape(-1)]
        found: dict[int, bytes] = {}
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for fid, blob in self._conn.execute(f"SELECT id, embedding FROM faces WHERE id IN ({marks})", chunk):
                found[int(fid)] = blob
        missing = [i for i in wanted if i not in found]
        if missing:
            raise GalleryError(f"{self.path}: face ids {missing[:5]} are not in the gallery (changed meanwhile?)")
        if not wanted:
            return np.zeros((0, dim), np.float32)
        return np.frombuffer(b"".join(found[i] for i in wanted), dtype="<f4").reshape(len(wanted), -1).copy()

    def forget(self, person: str) -> dict[str, int]:
        """Erase a person: their row, sources and faces, then VACUUM the file so
        no page keeps their embeddings. Returns counts of what was removed."""
        name = clean_name(person)
        with self.transaction() as c:
            pid = self._person_id(c, name, create=False)
            if pid is None:
                raise PersonNotFoundError(f"{name!r} is not enrolled in {self.path}")
            n_faces = c.execute("SELECT COUNT(*) FROM faces WHERE person_id = ?", (pid,)).fetchone()[0]
            n_src = c.execute("SELECT COUNT(*) FROM sources WHERE person_id = ?", (pid,)).fetchone()[0]
            c.execute("DELETE FROM people WHERE id = ?", (pid,))
            self._bump(c)
        self._conn.doing = "compact the file after erasing (the person is already removed)"
        try:
            self._conn.execute("VACUUM")
        finally:
            self._conn.doing = "read the gallery"
        return {"faces": int(n_faces), "sources": int(n_src)}

    # -- reading -----------------------------------------------------------------------------
    def people(self) -> list[PersonInfo]:
        rows = self._conn.execute(
            """SELECT p.name, p.created_at,
                      (SELECT COUNT(*) FROM faces f WHERE f.person_id = p.id),
                      (SELECT COUNT(*) FROM sources s WHERE s.person_id = p.id)
               FROM people p ORDER BY p.name"""
        ).fetchall()
        return [PersonInfo(name=r[0], created_at=r[1], faces=r[2], sources=r[3]) for r in rows]

    def counts(self) -> dict[str, int]:
        q = self._conn.execute
        return {
            "people": q("SELECT COUNT(*) FROM people").fetchone()[0],
            "sources": q("SELECT COUNT(*) FROM sources").fetchone()[0],
            "faces": q("SELECT COUNT(*) FROM faces").fetchone()[0],
        }

    def embeddings(self) -> EmbeddingTable:
        """Every face's embedding with its person label, ordered by face id."""
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        names_rows = self._conn.execute("SELECT id, name FROM people ORDER BY id").fetchall()
        pos = {pid: i for i, (pid, _) in enumerate(names_rows)}
        names = [n for _, n in names_rows]
        rows = self._conn.execute("SELECT id, person_id, embedding FROM faces ORDER BY id").fetchall()
        n = len(rows)
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=n)
        labels = np.fromiter((pos[r[1]] for r in rows), dtype=np.int64, count=n)
        blob = b"".join(r[2] for r in rows)
        if dim and len(blob) != n * dim * 4:
            raise GalleryError(f"{self.path}: stored embeddings do not have {dim} dimensions; the file is damaged")
        vectors = np.frombuffer(blob, dtype="<f4").reshape(n, dim if dim else -1).astype(np.float32) if n else np.zeros((0, dim), np.float32)
        return EmbeddingTable(face_ids=ids, labels=labels, names=names, vectors=vectors)

    def person_templates(self, people: Sequence[int] | None = None, chunk: int = 50_000) -> np.ndarray:
        """One row per person — every person, in the order of :meth:`face_labels`'
        names (people ordered by id), or the person ids ``people`` in the order
        given: the normalised mean of the person's embeddings (see
        :func:`facedex.identify.identifier.person_templates`; zeros for a person
        without faces). Read in chunks, so a gallery of millions of faces never
        holds all its vectors at once."""
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        if people is None:
            ids = [r[0] for r in self._conn.execute("SELECT id FROM people ORDER BY id")]
            cursors = [self._conn.execute("SELECT person_id, embedding FROM faces ORDER BY person_id")]
        else:
            ids = [int(p) for p in people]
            wanted = sorted(set(ids))
            # by person (the faces_person index), at most 500 ids per statement (SQLite's variable limit)
            cursors = (self._conn.execute(
                f"SELECT person_id, embedding FROM faces WHERE person_id IN ({','.join('?' * len(part))}) "
                "ORDER BY person_id", part) for part in (wanted[i:i + 500] for i in range(0, len(wanted), 500)))
        pos = {pid: i for i, pid in enumerate(ids)}
        sums = np.zeros((len(ids), dim), np.float32)  # float32 sums of unit vectors: ample for a mean
        for cur in cursors:
            while True:
                rows = cur.fetchmany(chunk)
                if not rows:
                    break
                lab = np.fromiter((pos[r[0]] for r in rows), dtype=np.int64, count=len(rows))
                blob = b"".join(r[1] for r in rows)
                if len(blob) != len(rows) * dim * 4:
                    raise GalleryError(f"{self.path}: stored embeddings do not have {dim} dimensions; "
                                       "the file is damaged")
                vecs = np.frombuffer(blob, dtype="<f4").reshape(len(rows), dim)
                starts = np.flatnonzero(np.concatenate([[True], lab[1:] != lab[:-1]]))
                sums[lab[starts]] += np.add.reduceat(vecs, starts, axis=0)
        norms = np.sqrt(np.einsum("ij,ij->i", sums, sums))[:, None]
        sums /= np.where(norms > 0, norms, np.float32(1.0))
        if people is not None and len(ids) != len(pos):  # a person asked twice: each row its own copy
            return sums[[pos[p] for p in ids]]
        return sums

    def vectors_of(self, person: str) -> np.ndarray:
        """The embeddings of one person (``(0, dim)`` when not enrolled)."""
        dim = int(self.embedder_card().get("embedding_dim") or 0)
        rows = self._conn.execute(
            "SELECT f.embedding FROM faces f JOIN people p ON p.id = f.person_id WHERE p.name = ? ORDER BY f.id",
            (clean_name(person),),
        ).fetchall()
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.frombuffer(b"".join(r[0] for r in rows), dtype="<f4").reshape(len(rows), -1).astype(np.float32)

    def faces_of(self, person: str) -> list[dict[str, Any]]:
        name = clean_name(person)
        rows = self._conn.execute(
            """SELECT f.id, s.path, s.sha256, f.box, f.landmarks, f.det_score FROM faces f
               JOIN people p ON p.id = f.person_id LEFT JOIN sources s ON s.id = f.source_id
               WHERE p.name = ? ORDER BY f.id""",
            (name,),
        ).fetchall()
        if not rows and self._person_id(self._conn, name, create=False) is None:
            raise PersonNotFoundError(f"{name!r} is not enrolled in {self.path}")
        return [
            {"face_id": r[0], "path": _path_text(r[1]), "sha256": r[2], "box": json.loads(r[3]),
             "landmarks": json.loads(r[4]), "detection_score": r[5]}
            for r in rows
        ]

    def integrity_check(self) -> list[str]:
        """SQLite's integrity check plus facedex's own invariants; empty when sound."""
        problems = [r[0] for r in self._conn.execute("PRAGMA integrity_check").fetchall() if r[0] != "ok"]
        problems += [f"foreign key violation in {r[0]}" for r in self._conn.execute("PRAGMA foreign_key_check").fetchall()]
        orphan = self._conn.execute(
            "SELECT COUNT(*) FROM sources s WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.source_id = s.id)"
        ).fetchone()[0]
        if orphan:
            problems.append(f"{orphan} source(s) without faces")
        empty = self._conn.execute(
            "SELECT COUNT(*) FROM people p WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)"
        ).fetchone()[0]
        if empty:
            problems.append(f"{empty} person(s) without faces")
        return problems
