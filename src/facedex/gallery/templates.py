"""Person templates kept up to date by difference, as the search index is.

A person's template is the normalised mean of their faces (what
identification scores people by, see :mod:`facedex.identify.identifier`).
Reading them all means reading every embedding: 1.9 s at a million faces.
:class:`TemplateCache` remembers which faces each template was made of; after
an enrollment, a forget, a merge or a removed face it re-reads only the people
whose faces changed, and copies the others.

>>> cache = TemplateCache()
>>> templates = cache.sync(store)          # all people, in face_labels()' order
>>> ...                                    # enroll 100 faces
>>> templates = cache.sync(store, store.face_labels())   # reads those people only
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .store import EmbeddingTable, GalleryStore

log = logging.getLogger(__name__)

#: Above this share of people changed, one full read is cheaper than many small ones.
FULL_READ_SHARE = 0.2


@dataclass
class _State:
    people: np.ndarray  # int64, ascending person ids: the rows of templates
    face_ids: np.ndarray  # int64, ascending
    face_people: np.ndarray  # int64, the person of each face
    templates: np.ndarray  # float32 (len(people), dim)


class TemplateCache:
    """The templates of a gallery's people, synced by difference (module doc)."""

    def __init__(self) -> None:
        self._state: _State | None = None
        self.last_read: int | None = None  # people read by the last sync (None: all of them)

    def sync(self, store: "GalleryStore", table: "EmbeddingTable | None" = None) -> np.ndarray:
        """One template per person, people ordered by id (``face_labels()``' names;
        pass that ``table`` when it has just been read, to read it once). The
        array returned is never changed afterwards (a new one on each change)."""
        table = store.face_labels() if table is None or table.person_ids is None else table
        people, face_ids = table.person_ids, table.face_ids
        face_people = people[table.labels] if len(table.labels) else np.zeros(0, np.int64)
        old = self._state
        if old is not None and np.array_equal(old.face_ids, face_ids) and np.array_equal(
                old.face_people, face_people) and np.array_equal(old.people, people):
            self.last_read = 0
            return old.templates
        changed = None if old is None else _changed_people(old, face_ids, face_people)
        if changed is None or len(changed) > FULL_READ_SHARE * max(1, len(people)):
            templates = store.person_templates()
            self.last_read = None
        else:
            templates = np.zeros((len(people), old.templates.shape[1]), np.float32)
            # people kept and unchanged: their old rows
            at_old = np.searchsorted(old.people, people)
            kept = (at_old < len(old.people)) & (old.people[np.minimum(at_old, len(old.people) - 1)] == people)
            kept &= ~np.isin(people, changed)
            templates[kept] = old.templates[at_old[kept]]
            fresh = people[~kept]  # changed, or new people
            if len(fresh):
                templates[~kept] = store.person_templates(fresh.tolist())
            self.last_read = int(len(fresh))
        self._state = _State(people, face_ids, face_people, templates)
        return templates


def _changed_people(old: _State, face_ids: np.ndarray, face_people: np.ndarray) -> np.ndarray:
    """Person ids whose set of faces differs between ``old`` and now: faces added,
    removed, or moved to another person (a merge), on both sides of a move."""
    added = ~np.isin(face_ids, old.face_ids, assume_unique=True)
    removed = ~np.isin(old.face_ids, face_ids, assume_unique=True)
    moved_new = face_people[~added]
    moved_old = old.face_people[~removed]  # the same faces, in the same (ascending id) order
    moved = moved_new != moved_old
    return np.unique(np.concatenate([face_people[added], old.face_people[removed], moved_new[moved],
                                     moved_old[moved]]).astype(np.int64))


__all__ = ["FULL_READ_SHARE", "TemplateCache"]
