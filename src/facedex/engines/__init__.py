"""Optional engines behind extras: Ray for batch work past one machine
(:mod:`facedex.engines.ray`, ``facedex[ray]``) and Milvus for search past one
machine's memory (:mod:`facedex.engines.milvus`, ``facedex[milvus]``).

Nothing here imports Ray or pymilvus until an engine is used; a missing
package raises :class:`facedex.errors.MissingDependencyError` naming the extra.
"""

from __future__ import annotations

from ..gallery.backends import SEARCH_BACKENDS as SEARCH_ENGINES  # noqa: F401 (the registry lives in gallery/)
from ..gallery.backends import search_backend as search_engine  # noqa: F401

#: Batch engines for enroll (``--engine``): name → module.
BATCH_ENGINES = {"local": None, "ray": "facedex.engines.ray"}


__all__ = ["BATCH_ENGINES", "SEARCH_ENGINES", "search_engine"]
