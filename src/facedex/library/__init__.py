"""The library: index a photo and video collection, discover the people in
it, name them, find them (docs/library.md).

>>> import facedex
>>> from facedex import library
>>> with facedex.Gallery.open("my.gallery", create=True) as g:
...     report = library.index_library(g, ["~/Pictures"])         # every face, as unlabelled sightings
...     found = library.discover(g)                                # clusters of faces nobody enrolled claims
...     library.name_cluster(g, found.clusters[0].id, "Ada Lovelace")  # enrolls the cluster's faces
...     for a in library.find(g, "Ada Lovelace").appearances:      # where she appears
...         print(a.sighting.source, a.sighting.time, a.similarity)

The sightings live in the gallery file, in their own tables
(:mod:`facedex.library.store`); identification never reads them.
"""

from .cluster import average_linkage, bcubed_f, cluster, knn_graph, pairwise_f
from .discover import default_cluster_threshold, discover
from .find import find
from .index import LibraryIndexer, forget_sources, index_library
from .people import merge_people, name_cluster, remove_faces, remove_source, rename_person
from .store import LibraryStore
from .types import (
    Appearance,
    Cluster,
    ClusterFace,
    DiscoverResult,
    FindResult,
    IndexItem,
    IndexReport,
    NameResult,
    PeopleEdit,
    Sighting,
)

__all__ = [
    "Appearance", "Cluster", "ClusterFace", "DiscoverResult", "FindResult", "IndexItem", "IndexReport",
    "LibraryIndexer", "LibraryStore", "NameResult", "PeopleEdit", "Sighting", "average_linkage", "bcubed_f",
    "cluster", "default_cluster_threshold", "discover", "find", "forget_sources", "index_library", "knn_graph",
    "merge_people", "name_cluster", "pairwise_f", "remove_faces", "remove_source", "rename_person",
]
