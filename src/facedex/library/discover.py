"""Discover the people of an indexed library: cluster the sightings that no
enrolled person claims into candidate people.

1. Every unnamed sighting is decided against the gallery with the same
   calibrated open-set decision as ``identify``
   (:meth:`facedex.Gallery.decide`); the ones it names are *claimed* by
   that person (unless a reviewer said they are not them), and left out.
2. The rest are clustered by average linkage on a k-NN graph
   (:mod:`facedex.library.cluster`) at one threshold: the average cosine
   similarity at which two groups of faces are taken for one person. Its
   default comes from the embedder's card (the similarity at which a face
   agrees with a person's consensus, measured on LFW; SFace 0.461): on all
   13,233 LFW faces it gives pairwise F 0.996 and BCubed F 0.986, and both
   stay above 0.99 / 0.98 from 0.45 to 0.50 (``bench/cluster_bench.py``).
3. Groups of at least ``min_size`` faces are the clusters, largest first;
   each one's faces are ordered by similarity to its centre (the mean of its
   faces), so the faces a reviewer should look at twice come last. A
   cluster's id is derived from its faces: it stays the same while the
   cluster does, and an id from an outdated review names nothing instead of
   the wrong faces.

The clusters are stored in the gallery (replacing the previous ones) so that
``facedex name GALLERY CLUSTER_ID NAME`` names exactly what was reviewed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import time
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError
from .cluster import DEFAULT_K, average_linkage
from .store import LibraryStore
from .types import Cluster, ClusterFace, DiscoverResult

if TYPE_CHECKING:  # pragma: no cover
    from .. import models
    from ..identify.gallery import Gallery

log = logging.getLogger(__name__)


def default_cluster_threshold(card: "models.ModelCard") -> tuple[float, str]:
    """The clustering threshold for an embedder, and where it comes from: the
    card's ``extra["cluster"]["threshold"]``, else its consensus-agreement
    level (``extra["clean"]["outlier_threshold"]``), else its open-set
    default threshold."""
    extra = card.extra or {}
    value = (extra.get("cluster") or {}).get("threshold")
    if value is not None:
        return float(value), f"embedder {card.name}: clustering threshold"
    value = (extra.get("clean") or {}).get("outlier_threshold")
    if value is not None:
        return float(value), f"embedder {card.name}: consensus agreement level"
    if card.default_threshold is not None:
        return float(card.default_threshold), f"embedder {card.name}: default open-set threshold"
    raise ConfigError(f"the embedder {card.name} records no similarity level to cluster at; give a threshold "
                      "(facedex discover --threshold T)")


def cluster_id(sighting_ids) -> str:
    """A short id derived from the cluster's sightings (lower-case base32, 8 characters)."""
    text = ",".join(str(int(i)) for i in sorted(sighting_ids))
    digest = hashlib.sha256(text.encode()).digest()
    return base64.b32encode(digest[:5]).decode().lower()


def cannot_link(source_ids: np.ndarray, t_start: np.ndarray, t_end: np.ndarray) -> list[set]:
    """Tokens that keep faces apart (see :func:`~facedex.library.cluster.average_linkage`):
    the faces of one photo are different people, and so are two tracks of one
    video on screen at the same time (their time ranges overlap)."""
    tokens: list[set] = [set() for _ in range(len(source_ids))]
    order = np.argsort(source_ids, kind="stable")
    ids = source_ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(ids)]):
        if hi - lo < 2:
            continue
        members = order[lo:hi]
        src = int(ids[lo])
        tracks = []
        for i in members.tolist():
            if np.isnan(t_start[i]):
                tokens[i].add(("photo", src))
            else:
                tracks.append((float(t_start[i]), float(t_end[i]), i))
        tracks.sort()
        for a, (_, e0, i) in enumerate(tracks):
            for s1, _, j in tracks[a + 1:]:
                if s1 >= e0 - 1e-6:
                    break  # sorted by start: no later track overlaps this one
                tokens[i].add(("tracks", i, j))
                tokens[j].add(("tracks", i, j))
    return tokens


def discover(gallery: "Gallery", *, threshold: float | None = None, identify_threshold: float | None = None,
             min_size: int = 2, min_quality: float = 0.0, k: int = DEFAULT_K, save: bool = True) -> DiscoverResult:
    """Cluster the library's unclaimed sightings into candidate people (see the
    module doc). ``threshold`` overrides the clustering threshold (an average
    cosine similarity), ``identify_threshold`` the open-set threshold used to
    claim sightings for enrolled people; ``min_quality`` leaves out faces of
    lower quality (0..1: detection score x size x sharpness x frontality).
    With ``save`` the clusters replace the stored ones."""
    from ..identify.gallery import check_threshold

    t0 = time.perf_counter()
    if min_size < 1:
        raise ConfigError(f"min_size must be at least 1, got {min_size}")
    if not 0.0 <= min_quality <= 1.0:
        raise ConfigError(f"min_quality is a quality in [0, 1], got {min_quality}")
    if threshold is None:
        t_value, t_source = default_cluster_threshold(gallery.embedder_card)
    else:
        t_value, t_source = check_threshold(threshold, "the clustering threshold"), "override"
    lib = LibraryStore(gallery.store, create=False)  # nothing indexed: nothing to write either
    table = lib.table(unnamed_only=True)
    n = len(table.ids)
    claimed_by: list[str | None] = [None] * n
    t_id = None
    if gallery.counts()["faces"]:
        t_id = gallery.resolve_threshold(identify_threshold)
        if n:
            rejected = lib.rejections()
            for start in range(0, n, 8192):
                decisions = gallery.decide(table.vectors[start:start + 8192], threshold=t_id.value)
                for i, d in enumerate(decisions, start):
                    if d.name is not None and (int(table.ids[i]), d.name) not in rejected:
                        claimed_by[i] = d.name
    elif identify_threshold is not None:
        t_id = gallery.resolve_threshold(identify_threshold)
    claimed: dict[str, int] = {}
    for name in claimed_by:
        if name is not None:
            claimed[name] = claimed.get(name, 0) + 1
    free = np.array([c is None for c in claimed_by], dtype=bool)
    good = table.quality >= min_quality
    pool = np.nonzero(free & good)[0]
    low_quality = int((free & ~good).sum())
    vecs = table.vectors[pool]
    groups: list[np.ndarray] = []
    if len(pool) >= 2:
        exclusive = cannot_link(table.source_ids[pool], table.t_start[pool], table.t_end[pool])
        labels = average_linkage(vecs, t_value, k=k, exclusive=exclusive).cut(t_value)
        sizes = np.bincount(labels)
        order = np.argsort(labels, kind="stable")
        bounds = np.concatenate([[0], np.cumsum(sizes)])
        for lab in np.nonzero(sizes >= min_size)[0]:
            groups.append(order[bounds[lab]:bounds[lab + 1]])
    elif len(pool) == 1 and min_size <= 1:
        groups.append(np.array([0]))
    built = []
    for members in groups:
        centre = vecs[members].astype(np.float64).sum(axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        sims = vecs[members] @ centre
        rank = np.argsort(-sims, kind="stable")
        ids = table.ids[pool[members[rank]]]
        built.append((cluster_id(ids), [int(i) for i in ids], [float(s) for s in sims[rank]]))
    built.sort(key=lambda c: (-len(c[1]), min(c[1])))
    sightings = lib.sightings([i for _, ids, _ in built for i in ids])
    clusters = tuple(Cluster(cid, tuple(ClusterFace(sightings[i], s) for i, s in zip(ids, sims)))
                     for cid, ids, sims in built)
    if save and lib.exists:
        lib.save_clusters([(c.id, [(f.sighting.id, f.similarity_to_centre) for f in c.faces]) for c in clusters])
        gallery.store.set_meta("library_discover", json.dumps({
            "at": time.time(), "threshold": t_value, "min_size": min_size, "min_quality": min_quality,
            "identify_threshold": None if t_id is None else t_id.value, "clusters": len(clusters)}))
    clustered = sum(c.size for c in clusters)
    named = lib.counts()["named"]
    return DiscoverResult(clusters=clusters, unclustered=int(len(pool) - clustered), sightings=n + named,
                          claimed=claimed, named=named, low_quality=low_quality, threshold=t_value,
                          threshold_source=t_source, identify_threshold=t_id, min_size=min_size,
                          seconds=time.perf_counter() - t0)


__all__ = ["cannot_link", "cluster_id", "default_cluster_threshold", "discover"]
