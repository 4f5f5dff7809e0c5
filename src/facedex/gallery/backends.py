"""The registry of search backends a gallery can name (``Gallery.set_search_backend``).

A backend is a module with ``configure(gallery, **options)``, ``open(gallery,
config)`` (a searcher with ``sync``, ``search``, ``ntotal``), ``retire(gallery,
config)`` and ``default_collection(store)``. The built-in ``faiss`` backend and
the optional ``milvus`` one (``facedex[milvus]``) live in :mod:`facedex.engines`;
they are looked up here by name and imported only when used, so the gallery
layer never depends on the engines layer above it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..errors import UnknownNameError

#: Search backends: name → module implementing the protocol above.
SEARCH_BACKENDS = {"faiss": "facedex.engines.local", "milvus": "facedex.engines.milvus"}


def search_backend(name: str) -> ModuleType:
    """The module of the search backend ``name``; an unknown name lists the known ones."""
    if name not in SEARCH_BACKENDS:
        raise UnknownNameError("search backend", name, list(SEARCH_BACKENDS))
    return importlib.import_module(SEARCH_BACKENDS[name])


__all__ = ["SEARCH_BACKENDS", "search_backend"]
