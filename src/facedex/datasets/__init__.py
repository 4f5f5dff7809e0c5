"""Standard evaluation datasets: find a local copy, or fetch one once, verified.

::

    from facedex.datasets import find_lfw, fetch_lfw
    lfw = find_lfw()          # explicit path, $FACEDEX_LFW, ../shared/data/lfw, the data cache
    copy = fetch_lfw()        # download + sha256 + safe unpack into the data cache; no-op when there

Standard library only: importing this package loads no model and no numpy.
"""

from __future__ import annotations

from ..errors import (
    ChecksumError,
    DatasetBusyError,
    DatasetError,
    DatasetIncompleteError,
    DatasetNotFoundError,
    DownloadError,
    UnsafeArchiveError,
)
from .fetch import ArchiveLimits, RemoteFile, Timeouts, download_file, extract_tar
from .lfw import (
    FETCH_COMMAND,
    LFW_SOURCES,
    LfwCheck,
    LfwCopy,
    LfwSources,
    data_dir,
    fetch_lfw,
    find_lfw,
    lfw_candidates,
    lfw_pairs,
    lfw_source,
    verify_lfw,
)

__all__ = [
    "ArchiveLimits", "ChecksumError", "DatasetBusyError", "DatasetError", "DatasetIncompleteError",
    "DatasetNotFoundError", "DownloadError", "FETCH_COMMAND", "LFW_SOURCES", "LfwCheck", "LfwCopy",
    "LfwSources", "RemoteFile", "Timeouts", "UnsafeArchiveError", "data_dir", "download_file",
    "extract_tar", "fetch_lfw", "find_lfw", "lfw_candidates", "lfw_pairs", "lfw_source", "verify_lfw",
]
