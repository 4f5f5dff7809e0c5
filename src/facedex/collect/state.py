"""The state database: what a collect run has seen, fetched and stored.

One SQLite file, ``DST/.facedex-collect/state.sqlite``, is the source of
truth for a destination folder; the manifest and sources files are exported
from it. Every change is a transaction, so after a kill the database says
exactly which URLs were done, and the next run goes on from there:

* ``people``  — each person once (by :func:`.names.person_key`), with the
  spelling first seen and their folder;
* ``pages``   — the crawl frontier: every page URL (normalised) and its status;
* ``images``  — every image URL (normalised): pending, done, duplicate,
  skipped or failed with a reason code;
* ``wants``   — which people an image URL is said to show, found where
  (a person page, an album, a row of the URL list), spelled how;
* ``blobs``   — each distinct image content (sha256) once;
* ``files``   — which blob is stored in which person folder.

Storing an image is a two-step protocol that survives a kill at any moment
(see :meth:`State.record_download` and :meth:`State.recover`): the bytes are
already flushed to a temporary file when the database records the blob and
the planned files; then the files are renamed/linked into place and marked
placed. Recovery finishes whatever was planned, so nothing that was
downloaded completely is ever downloaded again.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import StateError
from ..names import clean_name, folder_key, person_key, person_name, unique_folder
from . import reasons
from .store import STATE_DIR, atomic_writer, file_name, link_into_place, move_into_place, sync_dir

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
MANIFEST = "manifest.jsonl"
SOURCES = "sources.jsonl"
#: Names at the top of DST that no person folder may take.
RESERVED = {folder_key(MANIFEST), folder_key(SOURCES), folder_key(STATE_DIR)}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
    folder TEXT NOT NULL, folder_key TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS pages (
    id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    person_id INTEGER, people TEXT, found_on TEXT, via TEXT,
    status TEXT NOT NULL DEFAULT 'pending', reason TEXT, detail TEXT,
    final_url TEXT, fingerprint TEXT, attempts INTEGER NOT NULL DEFAULT 0, updated REAL);
CREATE INDEX IF NOT EXISTS pages_status ON pages(status, id);
CREATE INDEX IF NOT EXISTS pages_fingerprint ON pages(fingerprint);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY, url TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL DEFAULT 'pending', reason TEXT, detail TEXT,
    sha256 TEXT, final_url TEXT, attempts INTEGER NOT NULL DEFAULT 0, updated REAL);
CREATE INDEX IF NOT EXISTS images_status ON images(status, id);
CREATE INDEX IF NOT EXISTS images_sha ON images(sha256);
CREATE TABLE IF NOT EXISTS wants (
    image_id INTEGER NOT NULL, person_id INTEGER NOT NULL, source TEXT NOT NULL,
    kind TEXT NOT NULL, name TEXT NOT NULL, PRIMARY KEY (image_id, person_id, source));
CREATE INDEX IF NOT EXISTS wants_source ON wants(source);
CREATE TABLE IF NOT EXISTS blobs (
    sha256 TEXT PRIMARY KEY, format TEXT NOT NULL, bytes INTEGER NOT NULL,
    width INTEGER NOT NULL, height INTEGER NOT NULL, tmp TEXT, created REAL);
CREATE TABLE IF NOT EXISTS files (
    sha256 TEXT NOT NULL, person_id INTEGER NOT NULL, path TEXT NOT NULL UNIQUE,
    image_id INTEGER NOT NULL, placed INTEGER NOT NULL DEFAULT 0, created REAL,
    PRIMARY KEY (sha256, person_id));
CREATE INDEX IF NOT EXISTS files_person ON files(person_id);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, command TEXT NOT NULL, started REAL NOT NULL, finished REAL, report TEXT);
"""


@dataclass(frozen=True)
class Blob:
    sha256: str
    format: str
    bytes: int
    width: int
    height: int


@dataclass(frozen=True)
class PendingImage:
    id: int
    url: str
    people: tuple[int, ...]


@dataclass(frozen=True)
class PendingPage:
    id: int
    url: str
    kind: str
    person_id: int | None
    people: tuple[int, ...]
    via: str | None


class State:
    """The state database of one DST, locked for the life of the object."""

    def __init__(self, dst: str | os.PathLike):
        self.dst = Path(dst)
        if self.dst.exists() and not self.dst.is_dir():
            raise StateError(f"destination {self.dst} exists and is not a folder")
        self.dir = self.dst / STATE_DIR
        self.tmp = self.dir / "tmp"
        try:
            self.tmp.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise StateError(f"cannot create {self.dir} ({err.strerror or err}); check DST is writable") from err
        self.path = self.dir / "state.sqlite"
        self._lock_fd = self._lock()
        self.max_per_person: int | None = None
        self._depth = 0
        self._people: dict[str, int] = {}
        self._rows: dict[int, tuple[str, str]] = {}
        self._taken: set[str] = set(RESERVED)
        self._folders_made: set[str] = set()
        self._touched: set[str] = set()
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA foreign_keys=OFF")
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise StateError(f"{self.path} was written by a newer facedex (state version {version}); "
                                 "upgrade facedex to continue this collection")
            self.db.executescript(_SCHEMA)
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            for key, pid, fk in self.db.execute("SELECT key, id, folder_key FROM people"):
                self._people[key] = pid
                self._taken.add(fk)
        except sqlite3.DatabaseError as err:
            self._unlock()
            raise StateError(f"state database {self.path} is unusable ({err}); move it away to start "
                             "a fresh collection state (files already in DST are kept)") from err

    # --- locking and transactions ------------------------------------------------------
    def _lock(self) -> int | None:
        path = self.dir / "lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl
        except ImportError:  # not POSIX: no advisory lock; documented
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                other = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:
                other = "?"
            os.close(fd)
            raise StateError(f"{self.dst} is being collected into by another facedex process (pid {other}); "
                             "wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        return fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def close(self) -> None:
        try:
            self.db.close()
        finally:
            self._unlock()

    def __enter__(self) -> "State":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction (re-entrant: an inner block joins the outer one)."""
        if self._depth:
            self._depth += 1
            try:
                yield self.db
            finally:
                self._depth -= 1
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield self.db
        except BaseException:
            self._depth = 0
            self.db.execute("ROLLBACK")
            raise
        self._depth = 0
        self.db.execute("COMMIT")

    # --- people -------------------------------------------------------------------------
    def person(self, raw_name: str) -> int:
        """The id of the person called ``raw_name``, created (with a folder) if new.
        Raises :class:`facedex.errors.InvalidNameError` for a name that is empty once
        cleaned, or too long (:func:`facedex.names.person_name`)."""
        name = person_name(raw_name)
        key = person_key(name)
        pid = self._people.get(key)
        if pid is not None:
            return pid
        folder = unique_folder(name, key, self._taken)
        with self.transaction() as db:
            cur = db.execute("INSERT INTO people(key, name, folder, folder_key) VALUES (?, ?, ?, ?)",
                             (key, name, folder, folder_key(folder)))
        pid = int(cur.lastrowid)
        self._people[key] = pid
        self._taken.add(folder_key(folder))
        return pid

    def person_row(self, pid: int) -> tuple[str, str]:
        """``(name as first seen, folder)`` of a person."""
        cached = self._rows.get(pid)
        if cached is None:
            row = self.db.execute("SELECT name, folder FROM people WHERE id=?", (pid,)).fetchone()
            if row is None:
                return ("?", "?")
            cached = self._rows[pid] = (row[0], row[1])
        return cached

    # --- runs ---------------------------------------------------------------------------
    def start_run(self, command: str) -> int:
        with self.transaction() as db:
            cur = db.execute("INSERT INTO runs(command, started) VALUES (?, ?)", (command, time.time()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, report: dict) -> None:
        with self.transaction() as db:
            db.execute("UPDATE runs SET finished=?, report=? WHERE id=?",
                       (time.time(), json.dumps(report, ensure_ascii=False), run_id))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def begin_run(self, retry_failed: bool = False, recrawl: bool = False) -> dict[str, int]:
        """Put back into the queue what this run should try again; returns counts."""
        transient = sorted(reasons.TRANSIENT)
        marks = ",".join("?" * len(transient))
        skips = sorted(reasons.REEVALUATED_SKIPS)
        smarks = ",".join("?" * len(skips))
        retry_clause = "1" if retry_failed else (
            f"(reason IN ({marks}) OR reason LIKE 'http\\_5%' ESCAPE '\\' OR reason='http_408')")
        params = [] if retry_failed else transient
        out = {}
        with self.transaction() as db:
            for table in ("images", "pages"):
                cur = db.execute(f"UPDATE {table} SET status='pending' WHERE status='failed' AND {retry_clause}",
                                 params)
                out[f"{table}_retried"] = cur.rowcount
                cur = db.execute(f"UPDATE {table} SET status='pending' WHERE status='skipped' AND reason IN ({smarks})",
                                 skips)
                out[f"{table}_reevaluated"] = cur.rowcount
            if recrawl:
                cur = db.execute("UPDATE pages SET status='pending', fingerprint=NULL WHERE status!='pending'")
                out["pages_recrawled"] = cur.rowcount
        return out

    # --- pages --------------------------------------------------------------------------
    def add_page(self, url: str, kind: str, *, person_id: int | None = None, people: tuple[int, ...] = (),
                 found_on: str | None = None, via: str | None = None) -> bool:
        """Queue a page; False if the URL is already known (in any state)."""
        with self.transaction() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO pages(url, kind, person_id, people, found_on, via) VALUES (?, ?, ?, ?, ?, ?)",
                (url, kind, person_id, json.dumps(list(people)) if people else None, found_on, via))
        return cur.rowcount == 1

    def pending_pages(self, after_id: int, limit: int = 64) -> list[PendingPage]:
        rows = self.db.execute(
            "SELECT id, url, kind, person_id, people, via FROM pages WHERE status='pending' AND id>? "
            "ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
        return [PendingPage(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])) if r[4] else (), r[5]) for r in rows]

    def finish_page(self, page_id: int, status: str, reason: str | None = None, detail: str | None = None,
                    final_url: str | None = None, fingerprint: str | None = None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE pages SET status=?, reason=?, detail=?, final_url=?, fingerprint=?, "
                       "attempts=attempts+1, updated=? WHERE id=?",
                       (status, reason, detail, final_url, fingerprint, time.time(), page_id))

    def same_page(self, kind: str, person_id: int | None, fingerprint: str, exclude_id: int) -> str | None:
        """URL of an earlier page of this kind (and person) that showed exactly the same things."""
        row = self.db.execute(
            "SELECT url FROM pages WHERE fingerprint=? AND kind=? AND person_id IS ? AND id!=? LIMIT 1",
            (fingerprint, kind, person_id, exclude_id)).fetchone()
        return row[0] if row else None

    def pages_attempted(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM pages WHERE attempts>0").fetchone()[0]

    # --- images -------------------------------------------------------------------------
    def add_image(self, url: str, person_id: int, name: str, source: str, kind: str) -> tuple[int, str, str | None]:
        """Record that ``url`` shows ``person_id``; returns ``(image id, status, sha256)``."""
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO images(url) VALUES (?)", (url,))
            image_id, status, sha = db.execute("SELECT id, status, sha256 FROM images WHERE url=?", (url,)).fetchone()
            db.execute("INSERT OR IGNORE INTO wants(image_id, person_id, source, kind, name) VALUES (?, ?, ?, ?, ?)",
                       (image_id, person_id, source, kind, clean_name(name)))
        return image_id, status, sha

    def pending_images(self, after_id: int, limit: int = 256) -> list[PendingImage]:
        rows = self.db.execute(
            "SELECT i.id, i.url, GROUP_CONCAT(w.person_id) FROM images i LEFT JOIN wants w ON w.image_id=i.id "
            "WHERE i.status='pending' AND i.id>? GROUP BY i.id ORDER BY i.id LIMIT ?", (after_id, limit)).fetchall()
        return [PendingImage(r[0], r[1], tuple(sorted({int(x) for x in r[2].split(",")})) if r[2] else ())
                for r in rows]

    def finish_image(self, image_id: int, status: str, reason: str | None, detail: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE images SET status=?, reason=?, detail=?, attempts=attempts+1, updated=? WHERE id=?",
                       (status, reason, detail, time.time(), image_id))

    def count_images(self, status: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM images WHERE status=?", (status,)).fetchone()[0]

    def count_pages(self, status: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM pages WHERE status=?", (status,)).fetchone()[0]

    # --- storing ------------------------------------------------------------------------
    def record_download(self, image_id: int, final_url: str, blob: Blob, tmp: Path) -> bool:
        """Record a validated download whose bytes are flushed in ``tmp``.

        Returns True for new content, False for a duplicate (``tmp`` is then
        removed). Files are planned in the same transaction and placed
        right after; see :meth:`recover` for a kill in between."""
        with self.transaction() as db:
            exists = db.execute("SELECT 1 FROM blobs WHERE sha256=?", (blob.sha256,)).fetchone() is not None
            if not exists:
                db.execute("INSERT INTO blobs(sha256, format, bytes, width, height, tmp, created) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           (blob.sha256, blob.format, blob.bytes, blob.width, blob.height, tmp.name, time.time()))
            db.execute("UPDATE images SET status=?, reason=?, detail=?, sha256=?, final_url=?, "
                       "attempts=attempts+1, updated=? WHERE id=?",
                       ("done" if not exists else "duplicate", None if not exists else "duplicate",
                        None, blob.sha256, final_url, time.time(), image_id))
            planned = self._plan_files(image_id, blob.sha256)
            if not exists and not planned:  # everyone in it is at their limit
                db.execute("UPDATE blobs SET tmp=NULL WHERE sha256=?", (blob.sha256,))
        if exists or not planned:
            _unlink(tmp)
        self.place(blob.sha256)
        return not exists

    def plan(self, image_id: int, sha256: str) -> int:
        """New people were said to be in an image already stored: plan their files
        (call :meth:`place` after the transaction); returns how many."""
        with self.transaction():
            return self._plan_files(image_id, sha256)

    def plan_missing(self) -> int:
        """Give stored images to people newly said to be in them (a URL list that
        gained a row, a page found again); returns how many files were placed."""
        rows = self.db.execute(
            "SELECT DISTINCT i.id, i.sha256 FROM wants w JOIN images i ON i.id=w.image_id "
            "WHERE i.sha256 IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM files f WHERE f.sha256=i.sha256 AND f.person_id=w.person_id)").fetchall()
        placed = 0
        for image_id, sha in rows:
            if self.plan(image_id, sha):
                placed += self.place(sha)
        return placed

    def person_file_count(self, pid: int) -> int:
        return self.db.execute("SELECT COUNT(*) FROM files WHERE person_id=?", (pid,)).fetchone()[0]

    def person_file_counts(self) -> dict[int, int]:
        return dict(self.db.execute("SELECT person_id, COUNT(*) FROM files GROUP BY person_id"))

    def stored_bytes(self) -> int:
        return self.db.execute("SELECT COALESCE(SUM(bytes), 0) FROM blobs").fetchone()[0]

    def _plan_files(self, image_id: int, sha: str) -> int:
        fmt = self.db.execute("SELECT format FROM blobs WHERE sha256=?", (sha,)).fetchone()[0]
        planned = 0
        # everyone said to be in any URL with this content, each with the first such URL
        wanted = self.db.execute(
            "SELECT w.person_id, MIN(i.id) FROM wants w JOIN images i ON i.id=w.image_id "
            "WHERE i.sha256=? GROUP BY w.person_id ORDER BY w.person_id", (sha,)).fetchall()
        for pid, first_image in wanted:
            if self.db.execute("SELECT 1 FROM files WHERE sha256=? AND person_id=?", (sha, pid)).fetchone():
                continue
            if self.max_per_person is not None:
                count = self.db.execute("SELECT COUNT(*) FROM files WHERE person_id=?", (pid,)).fetchone()[0]
                if count >= self.max_per_person:
                    continue
            folder = self.person_row(pid)[1]
            path = f"{folder}/{file_name(sha, fmt)}"
            if self.db.execute("SELECT 1 FROM files WHERE path=?", (path,)).fetchone():
                path = f"{folder}/{sha}.{file_name(sha, fmt).rsplit('.', 1)[1]}"  # 64-bit prefix clash
            self.db.execute("INSERT INTO files(sha256, person_id, path, image_id, placed, created) "
                            "VALUES (?, ?, ?, ?, 0, ?)", (sha, pid, path, first_image or image_id, time.time()))
            planned += 1
        return planned

    def place(self, sha: str | None = None) -> int:
        """Put planned files (of one blob, or all) into their folders; returns how many."""
        query = "SELECT sha256, person_id, path FROM files WHERE placed=0"
        rows = self.db.execute(query + (" AND sha256=?" if sha else "") + " ORDER BY sha256, person_id",
                               (sha,) if sha else ()).fetchall()
        done: list[tuple[str, int]] = []
        moved: set[str] = set()
        here: dict[str, Path] = {}  # sha -> a file placed in this call
        for sha_, pid, path in rows:
            final = self.dst / path
            if not final.exists():
                source = (here[sha_], False) if sha_ in here else self._source_for(sha_)
                if source is None:
                    self._lost(sha_)
                    continue
                src_path, is_tmp = source
                folder = path.split("/", 1)[0]
                try:
                    if folder not in self._folders_made:
                        final.parent.mkdir(parents=True, exist_ok=True)
                        self._folders_made.add(folder)
                    if is_tmp:
                        move_into_place(src_path, final)
                        moved.add(sha_)
                    else:
                        link_into_place(src_path, final, self.tmp)
                except OSError as err:
                    raise StateError(f"cannot store {final} ({err.strerror or err}); check that DST is writable "
                                     "and that nothing else (a file of that name?) is in the way") from err
                self._touched.add(folder)
            here.setdefault(sha_, final)
            done.append((sha_, pid))
        if done:
            with self.transaction() as db:
                db.executemany("UPDATE files SET placed=1 WHERE sha256=? AND person_id=?", done)
                db.executemany("UPDATE blobs SET tmp=NULL WHERE sha256=?", [(x,) for x in moved])
        return len(done)

    def sync(self) -> None:
        """Flush the folders that got new files to disk (once per run, not per file)."""
        for folder in sorted(self._touched):
            sync_dir(self.dst / folder)
        self._touched.clear()

    def _source_for(self, sha: str) -> tuple[Path, bool] | None:
        row = self.db.execute("SELECT tmp FROM blobs WHERE sha256=?", (sha,)).fetchone()
        if row and row[0] and (self.tmp / row[0]).is_file():
            return self.tmp / row[0], True
        for (path,) in self.db.execute("SELECT path FROM files WHERE sha256=? AND placed=1", (sha,)):
            if (self.dst / path).is_file():
                return self.dst / path, False
        return None

    def _lost(self, sha: str) -> None:
        """A planned file whose bytes are gone (the temp file vanished): download again."""
        log.warning("image %s… was recorded but its file is missing; it will be downloaded again", sha[:16])
        with self.transaction() as db:
            db.execute("DELETE FROM files WHERE sha256=? AND placed=0", (sha,))
            if not db.execute("SELECT 1 FROM files WHERE sha256=?", (sha,)).fetchone():
                db.execute("DELETE FROM blobs WHERE sha256=?", (sha,))
                db.execute("UPDATE images SET status='pending', sha256=NULL, reason=NULL, detail=NULL "
                           "WHERE sha256=?", (sha,))

    def recover(self) -> dict[str, int]:
        """Finish what a killed run left half-done; remove stale temporary files."""
        placed = self.place()
        with self.transaction() as db:
            db.execute("UPDATE blobs SET tmp=NULL WHERE tmp IS NOT NULL AND NOT EXISTS "
                       "(SELECT 1 FROM files f WHERE f.sha256=blobs.sha256 AND f.placed=0)")
        keep = {r[0] for r in self.db.execute("SELECT tmp FROM blobs WHERE tmp IS NOT NULL")}
        removed = 0
        for entry in self.tmp.iterdir():
            if entry.name not in keep and entry.is_file():
                _unlink(entry)
                removed += 1
        if placed or removed:
            log.info("recovered an interrupted run: %d file(s) put in place, %d temporary file(s) removed",
                     placed, removed)
        return {"placed": placed, "temp_removed": removed}

    # --- reporting and export -------------------------------------------------------------
    def totals(self) -> dict[str, int]:
        people = self.db.execute("SELECT COUNT(DISTINCT person_id) FROM files WHERE placed=1").fetchone()[0]
        files = self.db.execute("SELECT COUNT(*) FROM files WHERE placed=1").fetchone()[0]
        blobs, size = self.db.execute("SELECT COUNT(*), COALESCE(SUM(bytes), 0) FROM blobs").fetchone()
        return {"people": people, "files": files, "images": blobs, "bytes": size}

    def export(self) -> tuple[Path, Path]:
        """Write ``manifest.jsonl`` (one line per stored file) and ``sources.jsonl``
        (one line per source: the people it lists, the files of its images, and
        ``images`` mapping each image URL to its sha256)."""
        self.sync()
        manifest, sources = self.dst / MANIFEST, self.dst / SOURCES
        shows_cache: dict[str, list[str]] = {}

        def shows(sha: str) -> list[str]:
            if sha not in shows_cache:
                shows_cache[sha] = [r[0] for r in self.db.execute(
                    "SELECT DISTINCT p.name FROM wants w JOIN people p ON p.id=w.person_id WHERE w.source IN "
                    "(SELECT w2.source FROM wants w2 JOIN images i2 ON i2.id=w2.image_id WHERE i2.sha256=?) "
                    "ORDER BY p.name", (sha,))]
            return shows_cache[sha]

        with atomic_writer(manifest) as out:
            rows = self.db.execute(
                "SELECT f.path, f.sha256, f.person_id, p.name, p.folder, b.format, b.bytes, b.width, b.height, "
                "i.url, i.final_url FROM files f JOIN people p ON p.id=f.person_id "
                "JOIN blobs b ON b.sha256=f.sha256 JOIN images i ON i.id=f.image_id "
                "WHERE f.placed=1 ORDER BY p.folder, f.path")
            for path, sha, pid, pname, folder, fmt, size, w, h, url, final_url in rows:
                if not (self.dst / path).is_file():
                    continue  # removed by the user: respected, not downloaded again
                wants = self.db.execute(
                    "SELECT DISTINCT w.source, w.name FROM wants w JOIN images i ON i.id=w.image_id "
                    "WHERE i.sha256=? AND w.person_id=? ORDER BY w.source", (sha, pid)).fetchall()
                spelled = next((n for s, n in wants if n), pname)
                rec = {"file": path, "person": spelled, "folder": folder, "url": url,
                       "final_url": final_url if final_url != url else None,
                       "sources": [s for s, _ in wants], "shows": shows(sha), "sha256": sha,
                       "bytes": size, "width": w, "height": h, "format": fmt}
                if spelled != pname:
                    rec["person_as_first_seen"] = pname
                out.write(json.dumps(rec, ensure_ascii=False) + "\n")
                if len(shows_cache) > 4096:
                    shows_cache.clear()

        with atomic_writer(sources) as out:
            entry: dict | None = None
            rows = self.db.execute(
                "SELECT w.source, w.kind, p.name, p.folder, i.url, i.sha256 FROM wants w "
                "JOIN people p ON p.id=w.person_id JOIN images i ON i.id=w.image_id ORDER BY w.source, i.id")
            for source, kind, name, folder, url, sha in rows:
                if entry is None or source != entry["source"]:
                    self._write_source(out, entry)
                    entry = {"source": source, "kind": kind, "people": [], "folders": [], "images": {}}
                if name not in entry["people"]:
                    entry["people"].append(name)
                    entry["folders"].append(folder)
                if sha and url not in entry["images"]:
                    entry["images"][url] = sha
            self._write_source(out, entry)
        return manifest, sources

    def _write_source(self, out, entry: dict | None) -> None:
        if not entry:
            return
        images: dict[str, str] = {}
        files: list[str] = []
        for url, sha in entry["images"].items():
            stored = self.files_of(sha)
            if stored:
                images[url] = sha
                files.extend(f for f in stored if f not in files)
        if images:
            out.write(json.dumps({"source": entry["source"], "kind": entry["kind"], "people": entry["people"],
                                  "folders": entry["folders"], "files": files, "images": images},
                                 ensure_ascii=False) + "\n")

    def files_of(self, sha: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT path FROM files WHERE sha256=? AND placed=1 ORDER BY path",
                                              (sha,)) if (self.dst / r[0]).is_file()]


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
