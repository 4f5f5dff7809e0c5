"""Optional engines behind extras: Ray for batch work past one machine
(:mod:`facedex.engines.ray`, ``facedex[ray]``) and Milvus for search past one
machine's memory (:mod:`facedex.engines.milvus`, ``facedex[milvus]``).

Nothing here imports Ray or pymilvus until an engine is used; a missing
package raises :class:`facedex.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

import importlib

from ..errors import UnknownNameError

#: Search backends a gallery can name (``Gallery.set_search_backend``): name → module.
SEARCH_ENGINES = {"faiss": "facedex.engines.local", "milvus": "facedex.engines.milvus"}
#: Batch engines for enroll (``--engine``): name → module.
BATCH_ENGINES = {"local": None, "ray": "facedex.engines.ray"}


def search_engine(name: str):
    """The module of a search backend: it has ``configure(gallery, **options)`` and
    ``open(gallery, config)`` (a searcher with ``sync``, ``search``, ``ntotal``)."""
    if name not in SEARCH_ENGINES:
        raise UnknownNameError("search backend", name, list(SEARCH_ENGINES))
    return importlib.import_module(SEARCH_ENGINES[name])


__all__ = ["BATCH_ENGINES", "SEARCH_ENGINES", "search_engine"]
