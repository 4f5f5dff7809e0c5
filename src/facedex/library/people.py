"""Naming the people a library holds, and fixing people: name a cluster,
merge two people, rename one, remove a face or a source from one.

Every operation is one transaction on the gallery file, and marks the gallery
changed (its search index is rebuilt on the next decision). Removals are
followed by VACUUM, as ``forget`` is: ``secure_delete`` is on, so removed
embeddings do not survive in free pages.

* :func:`name_cluster` — a cluster of the last ``discover`` becomes a person,
  or joins one: its faces are enrolled (faces of one file under one source,
  as enrollment does) and each sighting is linked to the face it became, so
  that forgetting the person erases the sightings too. Faces the reviewer
  excluded are marked "not this person".
* :func:`merge_people` — A's faces, sources and named sightings join B; A
  is gone.
* :func:`rename_person` — same person, new name (refused when the new name
  is someone else's: merge instead).
* :func:`remove_faces` / :func:`remove_source` — a wrong face out of a
  person; a named sighting it came from goes back to the unnamed ones,
  marked "not this person". A person left without faces is removed.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from ..errors import (
    ClusterNotFoundError,
    FaceNotFoundError,
    PersonExistsError,
    PersonNotFoundError,
    SightingNotFoundError,
    SourceNotIndexedError,
)
from ..gallery.store import FaceRecord, GalleryStore, _path_value
from ..names import person_key, person_name
from .store import LibraryStore
from .types import NameResult, PeopleEdit

if TYPE_CHECKING:  # pragma: no cover
    from ..identify.gallery import Gallery

log = logging.getLogger(__name__)


def _pid(c: sqlite3.Connection, name: str) -> int | None:
    row = c.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
    return int(row[0]) if row else None


def _require(c: sqlite3.Connection, name: str, gallery: "Gallery") -> int:
    pid = _pid(c, name)
    if pid is None:
        raise PersonNotFoundError(f"{name!r} is not enrolled in {gallery.path}")
    return pid


def _changed(c: sqlite3.Connection) -> None:
    GalleryStore._bump(c)  # the gallery's generation: its search index is rebuilt


def _lookalikes(gallery: "Gallery", name: str) -> list[str]:
    key = person_key(name)
    return [p.name for p in gallery.people() if p.name != name and person_key(p.name) == key]


# --- naming a cluster ----------------------------------------------------------------------------
def name_cluster(gallery: "Gallery", cluster: str, name: str, *, exclude: Iterable[int] = ()) -> NameResult:
    """Enroll the faces of ``cluster`` (an id from the last ``discover``) as
    ``name`` — a new person, or one already enrolled. ``exclude`` holds the
    sighting ids a reviewer rejected: they are not enrolled and are marked
    as not this person. Raises :class:`ClusterNotFoundError` for an unknown
    id and :class:`SightingNotFoundError` for an excluded id that is not in
    the cluster — before changing anything."""
    name = person_name(name)
    store = gallery.store
    lib = LibraryStore(store, create=False)
    members = lib.cluster_members(str(cluster)) if lib.exists else None
    if members is None:
        raise ClusterNotFoundError(
            f"no cluster {cluster!r} in {gallery.path}: it was named already, or the clusters changed since it was "
            f"shown — run `facedex discover {gallery.path}` again and use an id it prints")
    ids = [s for s, _ in members]
    excluded = sorted({int(e) for e in exclude})
    stray = [e for e in excluded if e not in set(ids)]
    if stray:
        raise SightingNotFoundError(
            f"sighting{'s' if len(stray) > 1 else ''} {', '.join(map(str, stray))} "
            f"{'are' if len(stray) > 1 else 'is'} not in cluster {cluster}; its faces are "
            f"{', '.join(map(str, ids[:20]))}{'…' if len(ids) > 20 else ''}")
    keep = [s for s in ids if s not in set(excluded)]
    warnings = [f"{name!r} looks like {other!r} (same name but for case, accents, spaces or punctuation); "
                f"they are two people — name the cluster {other!r} to add to {other!r}"
                for other in _lookalikes(gallery, name)]
    embedder_id = gallery.embedder_card.id
    store.require_embedder(embedder_id)
    dim = int(store.embedder_card().get("embedding_dim") or 0)
    skipped: list[tuple[int, str]] = []
    enrolled = 0
    sources_touched: set[int] = set()
    with store.transaction(f"name cluster {cluster}") as c:
        pid = _pid(c, name)
        created = pid is None
        if created:
            pid = int(c.execute("INSERT INTO people(name, created_at) VALUES(?, ?)", (name, time.time())).lastrowid)
        rows = {}
        for start in range(0, len(keep), 500):
            chunk = keep[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for r in c.execute(
                    f"SELECT s.id, src.path, src.sha256, s.box, s.landmarks, s.det_score, s.embedding, p.name "
                    f"FROM library_sightings s JOIN library_sources src ON src.id = s.source_id "
                    f"LEFT JOIN faces f ON f.id = s.face_id LEFT JOIN people p ON p.id = f.person_id "
                    f"WHERE s.id IN ({marks})", chunk):
                rows[int(r[0])] = r
        for sid in keep:
            r = rows.get(sid)
            if r is None:
                continue  # its file was removed from the library since
            if r[7] is not None:
                if r[7] != name:
                    skipped.append((sid, r[7]))
                continue
            path, sha = r[1], r[2]
            src = c.execute("SELECT id FROM sources WHERE person_id = ? AND sha256 = ?", (pid, sha)).fetchone()
            if src is None:
                src_id = int(c.execute("INSERT INTO sources(person_id, path, sha256, added_at) VALUES(?, ?, ?, ?)",
                                       (pid, path, sha, time.time())).lastrowid)
            else:
                src_id = int(src[0])
            vec = np.frombuffer(r[6], dtype="<f4")
            face = FaceRecord(json.loads(r[3]), json.loads(r[4]), float(r[5]), vec)
            fid = GalleryStore._insert_face(c, pid, src_id, face, dim)
            c.execute("UPDATE library_sightings SET face_id = ? WHERE id = ?", (fid, sid))
            c.execute("DELETE FROM library_rejections WHERE sighting_id = ? AND person_id = ?", (sid, pid))
            enrolled += 1
            sources_touched.add(src_id)
        c.executemany("INSERT OR IGNORE INTO library_rejections(sighting_id, person_id) VALUES(?, ?)",
                      [(e, pid) for e in excluded])
        c.execute("DELETE FROM library_clusters WHERE id = ?", (str(cluster),))
        if created and not enrolled:
            c.execute("DELETE FROM people WHERE id = ?", (pid,))  # nothing to enroll: no empty person
        if enrolled:
            _changed(c)
    return NameResult(str(cluster), name, created and enrolled > 0, enrolled, len(sources_touched),
                      tuple(excluded), tuple(skipped), tuple(warnings))


# --- fixing people -------------------------------------------------------------------------------
def merge_people(gallery: "Gallery", person: str, into: str) -> PeopleEdit:
    """``person`` and ``into`` are one person, called ``into``: every face,
    source and named sighting of ``person`` moves to ``into``, and
    ``person`` is gone (a source both had is kept once)."""
    a, b = person_name(person), person_name(into)
    if a == b:
        raise PersonExistsError(f"cannot merge {a!r} into itself")
    moved = 0
    with gallery.store.transaction("merge two people") as c:
        pa, pb = _require(c, a, gallery), _require(c, b, gallery)
        for sid, sha in c.execute("SELECT id, sha256 FROM sources WHERE person_id = ?", (pa,)).fetchall():
            twin = c.execute("SELECT id FROM sources WHERE person_id = ? AND sha256 = ?", (pb, sha)).fetchone()
            if twin is None:
                c.execute("UPDATE sources SET person_id = ? WHERE id = ?", (pb, sid))
            else:
                c.execute("UPDATE faces SET source_id = ? WHERE source_id = ?", (int(twin[0]), sid))
                c.execute("DELETE FROM sources WHERE id = ?", (sid,))
        moved = c.execute("UPDATE faces SET person_id = ? WHERE person_id = ?", (pb, pa)).rowcount
        if _has_library(c):
            c.execute("INSERT OR IGNORE INTO library_rejections(sighting_id, person_id) "
                      "SELECT sighting_id, ? FROM library_rejections WHERE person_id = ?", (pb, pa))
        c.execute("DELETE FROM people WHERE id = ?", (pa,))
        _changed(c)
    return PeopleEdit("merge", a, b, faces_moved=int(moved), person_removed=True, people_affected=(a, b))


def rename_person(gallery: "Gallery", person: str, new_name: str) -> PeopleEdit:
    """Give ``person`` a new name (faces, sources and named sightings keep
    theirs). Raises :class:`PersonExistsError` when another person has that
    name: merge them instead."""
    a, b = person_name(person), person_name(new_name)
    with gallery.store.transaction("rename a person") as c:
        pa = _require(c, a, gallery)
        if a == b:
            raise PersonExistsError(f"{a!r} is already called that")
        if _pid(c, b) is not None:
            raise PersonExistsError(f"{b!r} is another person in {gallery.path}; to make them one, merge: "
                                    f"`facedex people {gallery.path} --merge {a!r} {b!r}`")
        c.execute("UPDATE people SET name = ? WHERE id = ?", (b, pa))
        _changed(c)
    return PeopleEdit("rename", a, b, people_affected=(b,))


def _has_library(c: sqlite3.Connection) -> bool:
    return c.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'library_rejections'").fetchone() \
        is not None


def remove_faces(gallery: "Gallery", face_ids: Sequence[int], person: str | None = None, *,
                 operation: str = "remove-face") -> PeopleEdit:
    """Remove enrolled faces (ids as ``facedex people GALLERY PERSON`` lists
    them); with ``person``, each must be theirs. A named sighting the face
    came from becomes unnamed again and is marked as not that person; a
    source left without faces, and a person left without faces, are removed;
    the file is vacuumed."""
    ids = sorted({int(f) for f in face_ids})
    name = person_name(person) if person is not None else None
    removed_people: list[str] = []
    affected: set[str] = set()
    n_src = 0
    with gallery.store.transaction("remove faces") as c:
        if name is not None:
            _require(c, name, gallery)
        owners = {}
        for fid in ids:
            r = c.execute("SELECT f.person_id, p.name FROM faces f JOIN people p ON p.id = f.person_id WHERE f.id = ?",
                          (fid,)).fetchone()
            if r is None or (name is not None and r[1] != name):
                raise FaceNotFoundError(
                    f"face {fid} is not " + (f"one of {name!r}'s faces" if name is not None else "in the gallery")
                    + f"; `facedex people {gallery.path} NAME` lists a person's faces with their ids")
            owners[fid] = (int(r[0]), r[1])
        lib = _has_library(c)
        for fid, (pid, pname) in owners.items():
            affected.add(pname)
            if lib:
                for (sid,) in c.execute("SELECT id FROM library_sightings WHERE face_id = ?", (fid,)).fetchall():
                    c.execute("UPDATE library_sightings SET face_id = NULL WHERE id = ?", (sid,))
                    c.execute("INSERT OR IGNORE INTO library_rejections(sighting_id, person_id) VALUES(?, ?)",
                              (sid, pid))
            c.execute("DELETE FROM faces WHERE id = ?", (fid,))
        n_src = c.execute("DELETE FROM sources WHERE NOT EXISTS (SELECT 1 FROM faces f WHERE f.source_id = "
                          "sources.id)").rowcount
        for pid, pname in set(owners.values()):
            if c.execute("SELECT 1 FROM faces WHERE person_id = ? LIMIT 1", (pid,)).fetchone() is None:
                c.execute("DELETE FROM people WHERE id = ?", (pid,))
                removed_people.append(pname)
        if ids:
            _changed(c)
    if ids:
        LibraryStore(gallery.store, create=False).vacuum()
        gallery.update_index()  # a persisted index (large galleries) must not keep the removed vectors
    label = name if name is not None else ", ".join(sorted(affected))
    return PeopleEdit(operation, label, faces_removed=len(ids), sources_removed=int(n_src),
                      person_removed=bool(removed_people), people_affected=tuple(sorted(affected)))


def remove_source(gallery: "Gallery", path: str | os.PathLike, person: str | None = None) -> PeopleEdit:
    """Remove the faces enrolled from one image or video (``path`` as enrolled,
    or its absolute path) — of ``person``, or of everyone when ``None``."""
    text = os.fsdecode(path)
    names = {text, os.path.abspath(text)}
    name = person_name(person) if person is not None else None
    marks = ",".join("?" * len(names))
    query = (f"SELECT f.id FROM faces f JOIN sources s ON s.id = f.source_id JOIN people p ON p.id = f.person_id "
             f"WHERE s.path IN ({marks})" + (" AND p.name = ?" if name is not None else ""))
    args = [_path_value(n) for n in names] + ([name] if name is not None else [])
    if name is not None and gallery.store._person_id(gallery.store._conn, name, create=False) is None:
        raise PersonNotFoundError(f"{name!r} is not enrolled in {gallery.path}")
    faces = [int(r[0]) for r in gallery.store._conn.execute(query, args).fetchall()]
    if not faces:
        raise SourceNotIndexedError(f"{text}: no face " + (f"of {name!r} " if name else "")
                                    + f"is enrolled from this file in {gallery.path}")
    return remove_faces(gallery, faces, name, operation="remove-source")


__all__ = ["merge_people", "name_cluster", "remove_faces", "remove_source", "rename_person"]
