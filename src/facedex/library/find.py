"""Where does a person appear in the indexed library?

A sighting is an appearance of the person when the gallery's open-set
decision — the one ``identify`` makes, at the same (calibrated) threshold —
names them for it: their best similarity reaches the threshold and no other
enrolled person is closer. The decision is made now, against the gallery as
it is now, so people enrolled after the library was indexed are found
without indexing again.

Sightings named as someone else are theirs; sightings a reviewer excluded
for this person (``facedex name --exclude``, ``facedex people
--remove-face``) are never listed for them. To keep a search cheap on a large
library, only sightings within reach of one of the person's own faces (a
similarity at the threshold or above: anything less cannot be decided as
them) go through the full decision; the answer is the same.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from ..errors import PersonNotFoundError
from ..names import person_name
from .store import LibraryStore
from .types import Appearance, FindResult

if TYPE_CHECKING:  # pragma: no cover
    from ..identify.gallery import Gallery

log = logging.getLogger(__name__)


def find(gallery: "Gallery", person: str, *, threshold: float | None = None) -> FindResult:
    """Every appearance of ``person`` in the indexed library, in the order of
    the files' paths and then of time. ``threshold`` overrides the
    gallery's open-set threshold (as ``identify --threshold``). Raises
    :class:`facedex.errors.PersonNotFoundError` when nobody of that name is
    enrolled."""
    name = person_name(person)
    t = gallery.resolve_threshold(threshold)
    mine = gallery.store.vectors_of(name)
    if not len(mine):
        raise PersonNotFoundError(f"{name!r} is not enrolled in {gallery.path}; name a cluster "
                                  f"(`facedex discover {gallery.path}`, then `facedex name`) or enroll photos of them")
    lib = LibraryStore(gallery.store, create=False)
    table = lib.table()
    n = len(table.ids)
    eligible = np.array([p is None or p == name for p in table.person], dtype=bool)
    if n:
        reach = np.full(n, -1.0, np.float32)
        for start in range(0, n, 8192):
            reach[start:start + 8192] = (table.vectors[start:start + 8192] @ mine.T).max(axis=1)
        rows = np.nonzero(eligible & (reach >= t.value))[0]
    else:
        rows = np.zeros(0, np.int64)
    rejected = {s for s, p in lib.rejections() if p == name}
    hits: list[tuple[int, float]] = []
    if len(rows):
        decisions = gallery.decide(table.vectors[rows], threshold=t.value)
        for i, d in zip(rows, decisions):
            sid = int(table.ids[i])
            if d.name == name and sid not in rejected:
                hits.append((sid, float(d.similarity)))
    sightings = lib.sightings([s for s, _ in hits])
    appearances = [Appearance(sightings[s], sim) for s, sim in hits if s in sightings]
    appearances.sort(key=lambda a: (a.sighting.source, a.sighting.time[0] if a.sighting.time else 0.0,
                                    a.sighting.box[0], a.sighting.id))
    return FindResult(name, tuple(appearances), t, n, len({a.sighting.source for a in appearances}))


__all__ = ["find"]
