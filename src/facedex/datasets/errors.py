"""Errors of :mod:`facedex.datasets`.

Each class carries a stable machine-readable ``code`` (for JSON output). They
live here until they move into :mod:`facedex.errors` with the rest of the tree.
"""

from __future__ import annotations

from ..errors import FacedexError


class DatasetError(FacedexError):
    """A dataset cannot be found, downloaded, verified or unpacked."""

    code = "dataset.error"


class DatasetNotFoundError(DatasetError):
    """No copy of the dataset at any of the places looked in; the message names
    them and the command that fetches one."""

    code = "dataset.not_found"


class DatasetIncompleteError(DatasetError):
    """A folder that should hold the dataset exists but does not hold all of it
    (wrong counts, a protocol file missing or different)."""

    code = "dataset.incomplete"


class DownloadError(DatasetError):
    """No mirror delivered a file; the message lists every URL with its reason and
    how to place the files by hand."""

    code = "dataset.download_failed"


class ChecksumError(DatasetError):
    """A file's sha256 differs from the pinned digest."""

    code = "dataset.checksum_mismatch"


class UnsafeArchiveError(DatasetError):
    """An archive member would escape the destination, is a link or a device, or
    breaks a size bound; nothing of the archive is kept."""

    code = "dataset.unsafe_archive"


class DatasetBusyError(DatasetError):
    """Another process is fetching into the same folder."""

    code = "dataset.busy"


__all__ = [
    "ChecksumError",
    "DatasetBusyError",
    "DatasetError",
    "DatasetIncompleteError",
    "DatasetNotFoundError",
    "DownloadError",
    "UnsafeArchiveError",
]
