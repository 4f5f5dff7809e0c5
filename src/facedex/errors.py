"""One exception tree for facedex.

Every message names the item that was wrong, what was wrong with it and what
to do next. Batch operations catch :class:`FacedexError` per item, record it in
their report and carry on; anything else is a bug and propagates.

Every class has a stable machine-readable ``code`` (``"media.corrupt"``,
``"gallery.not_found"`` …) that JSON output and the HTTP service report
beside the message; codes never change meaning between releases. The table
is in ``docs/errors.md`` (generated from :func:`error_codes`).
"""

from __future__ import annotations

from typing import Any


class FacedexError(Exception):
    """Base class of every error facedex raises on purpose."""

    code = "error"

    def to_dict(self) -> dict[str, Any]:
        """``{"code": …, "message": …}`` for JSON output and the service."""
        return {"code": self.code, "message": str(self)}


# --- configuration, registries, optional packages -------------------------------------
class ConfigError(FacedexError):
    """A setting, option or environment variable has an unusable value."""

    code = "config.invalid"


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup (detector, embedder, runtime…) found no such name."""

    code = "config.unknown_name"

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class InvalidNameError(ConfigError):
    """A person's name is empty, too long, or nothing but control characters."""

    code = "name.invalid"


class MissingDependencyError(FacedexError):
    """An optional package is not installed; the message says which extra brings it."""

    code = "dependency.missing"

    def __init__(self, package: str, extra: str, what: str = "this command"):
        self.package, self.extra = package, extra
        super().__init__(
            f"{what} needs the Python package {package!r}, which is not installed; "
            f"run: pip install 'facedex[{extra}]'"
        )


class NotFittedError(FacedexError):
    """An estimator was used before ``fit`` (as scikit-learn's ``NotFittedError``)."""

    code = "identify.not_fitted"


# --- models --------------------------------------------------------------------------
class ModelError(FacedexError):
    """A model file is missing, corrupt, or cannot be prepared or loaded."""

    code = "model.error"


class ModelIntegrityError(ModelError):
    """A model file's sha256 does not match the digest pinned in its card."""

    code = "model.integrity"


# --- media -----------------------------------------------------------------------------
class MediaError(FacedexError):
    """An input file or buffer cannot be used as an image or video."""

    code = "media.error"

    def __init__(self, item: str, message: str):
        self.item = item
        super().__init__(f"{item}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "item": self.item}


class MediaNotFoundError(MediaError):
    """The input path does not exist or is not a regular file."""

    code = "media.not_found"


class UnsupportedMediaError(MediaError):
    """The bytes are not an image (or video) format facedex can decode."""

    code = "media.unsupported"


class CorruptMediaError(MediaError):
    """The file claims to be a known format but cannot be decoded (truncated, damaged)."""

    code = "media.corrupt"


class ImageTooLargeError(MediaError):
    """The image has more pixels (or bytes) than the configured limit (decompression-bomb guard)."""

    code = "media.too_large"


class UnsupportedVideoError(UnsupportedMediaError):
    """Not a video facedex can decode: no video stream (audio only), an unknown
    container, or a codec the installed FFmpeg cannot decode."""

    code = "media.unsupported_video"


class CorruptVideoError(CorruptMediaError):
    """The file looks like a video or an animation but no frame can be decoded."""

    code = "media.corrupt_video"


class VideoTooLargeError(ImageTooLargeError):
    """The frames have more pixels than the configured limit (``FACEDEX_MAX_PIXELS``)."""

    code = "media.too_large"


# --- faces -------------------------------------------------------------------------------
class FaceError(FacedexError):
    """A face-level problem on an otherwise readable image."""

    code = "face.error"

    def __init__(self, item: str, message: str):
        self.item = item
        super().__init__(f"{item}: {message}")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "item": self.item}


class NoFaceError(FaceError):
    """No face (of at least the minimum size) was found."""

    code = "face.none"


class MultipleFacesError(FaceError):
    """Several faces were found where exactly one was required, and none could be
    told to be the person's."""

    code = "face.multiple"


# --- gallery -----------------------------------------------------------------------------
class GalleryError(FacedexError):
    """The gallery file cannot be opened, read or written as asked."""

    code = "gallery.error"


class GalleryNotFoundError(GalleryError):
    """The gallery does not exist and the operation does not create one."""

    code = "gallery.not_found"


class GalleryReadOnlyError(GalleryError):
    """The gallery (or its folder, or its file system) is read-only and a change was asked for."""

    code = "gallery.read_only"


class GalleryBusyError(GalleryError):
    """Another program held the gallery for longer than the wait (30 s)."""

    code = "gallery.busy"


class GalleryFullError(GalleryError):
    """The disk (or a file-size limit) is full; the change was rolled back."""

    code = "gallery.disk_full"


class GalleryCorruptError(GalleryError):
    """The file is damaged, or not a facedex gallery."""

    code = "gallery.corrupt"


class EmbedderMismatchError(GalleryError):
    """Embeddings from one embedder were offered to a gallery built with another."""

    code = "gallery.embedder_mismatch"


class PersonNotFoundError(GalleryError, KeyError):
    """The named person is not enrolled in the gallery."""

    code = "gallery.person_not_found"

    def __str__(self) -> str:
        return self.args[0]


class CalibrationError(GalleryError):
    """The gallery holds too little data to calibrate the requested threshold."""

    code = "gallery.calibration"


# --- outputs ---------------------------------------------------------------------------
class OutputError(FacedexError):
    """An output (annotated copy, report, folder) cannot be written where asked."""

    code = "output.error"


# --- collect -----------------------------------------------------------------------------
class CollectError(FacedexError):
    """The collector cannot start or go on (setup, destination, state database)."""

    code = "collect.error"


class RecipeError(CollectError, ConfigError):
    """A crawl recipe cannot be read or has an invalid value."""

    code = "collect.recipe"


class UrlListError(CollectError):
    """A URL list file cannot be read at all (a bad row is a per-item failure)."""

    code = "collect.url_list"


class StateError(CollectError):
    """The state database in DST is unusable, or DST is busy with another run."""

    code = "collect.state"


class FetchError(FacedexError):
    """One URL could not be collected; ``reason`` is a stable code (see :mod:`facedex.collect.reasons`)."""

    code = "collect.fetch"

    def __init__(self, url: str, reason: str, detail: str = "", *, retry_after: float | None = None):
        self.url, self.reason, self.detail = url, reason, detail
        self.retry_after = retry_after
        super().__init__(f"{url}: {reason}" + (f" ({detail})" if detail else ""))


# --- clean -------------------------------------------------------------------------------
class CleanError(FacedexError):
    """``facedex clean`` cannot start: SRC or DST unusable, or DST belongs to another run."""

    code = "clean.error"


class SourcesFileError(CleanError):
    """The sources file (who is in which image) cannot be read."""

    code = "clean.sources_file"


# --- train -------------------------------------------------------------------------------
class TrainError(FacedexError):
    """Training cannot start or continue as asked."""

    code = "train.error"


class TrainConfigError(TrainError, ConfigError):
    """The training configuration (file or options) has an unusable value."""

    code = "train.config"


class DataError(TrainError):
    """The training data folder cannot be used (too few people or images, bad files)."""

    code = "train.data"


class NonFiniteError(TrainError):
    """The loss or the gradients became NaN or infinite and the run was stopped."""

    code = "train.non_finite"

    def __init__(self, message: str, checkpoint: str | None = None):
        self.checkpoint = checkpoint
        super().__init__(message)


class CheckpointError(TrainError):
    """A checkpoint is missing, damaged, or does not belong to this run."""

    code = "train.checkpoint"


class ExportError(TrainError):
    """The model could not be exported, or the exported file disagrees with PyTorch."""

    code = "train.export"


class ConversionError(TrainError):
    """The pretrained ONNX model could not be converted into a PyTorch module."""

    code = "train.conversion"


# --- datasets (LFW and the evaluation protocols) ------------------------------------------
class DatasetError(FacedexError):
    """A dataset cannot be found, downloaded, verified, unpacked or used as the protocol needs."""

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


class PairsError(DatasetError):
    """An LFW pairs file cannot be read or names images that are not there."""

    code = "dataset.pairs"


def error_codes() -> dict[str, str]:
    """Every error code and the first line of its class's description."""
    seen: dict[str, str] = {}
    stack = [FacedexError]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.code not in seen:
            seen[cls.code] = (cls.__doc__ or "").strip().splitlines()[0]
    return dict(sorted(seen.items()))


def error_dict(err: BaseException) -> dict[str, Any]:
    """The JSON form of any error: a facedex error's own, else an ``internal`` code."""
    if isinstance(err, FacedexError):
        return err.to_dict()
    return {"code": "internal", "message": f"{type(err).__name__}: {err}"}


# --- library -----------------------------------------------------------------------------
class LibraryError(FacedexError):
    """The indexed library (sightings, clusters) in the gallery cannot be used as asked."""

    code = "library.error"


class ClusterNotFoundError(LibraryError, KeyError):
    """No cluster with this id in the last ``facedex discover``: run it again.

    The cluster was named since, or the clusters changed; an id from an
    outdated review names nothing rather than the wrong faces."""

    code = "library.cluster_not_found"

    def __str__(self) -> str:
        return self.args[0]


class SightingNotFoundError(LibraryError):
    """A sighting id (``--exclude``) is not one of the cluster's faces."""

    code = "library.sighting_not_found"


class FaceNotFoundError(LibraryError):
    """An enrolled face id (``facedex people --remove-face``) is not that person's, or not in the gallery."""

    code = "library.face_not_found"


class PersonExistsError(LibraryError):
    """A person cannot be renamed to a name another person has: merge them instead."""

    code = "library.person_exists"


class SourceNotIndexedError(LibraryError):
    """``--forget-source`` / ``--remove-source`` named a path with no indexed (or enrolled) faces."""

    code = "library.source_not_indexed"

