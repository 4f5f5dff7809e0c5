"""One exception tree for facedex.

Every message names the item that was wrong, what was wrong with it and what
to do next. Batch operations catch :class:`FacedexError` per item, record it in
their report and carry on; anything else is a bug and propagates.
"""

from __future__ import annotations


class FacedexError(Exception):
    """Base class of every error facedex raises on purpose."""


# --- configuration and registries -------------------------------------------------
class ConfigError(FacedexError):
    """A setting, option or environment variable has an unusable value."""


class UnknownNameError(ConfigError, KeyError):
    """A registry lookup (detector, embedder, runtime…) found no such name."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind, self.name, self.known = kind, name, sorted(known)
        super().__init__(
            f"unknown {kind} {name!r}; known {kind}s: {', '.join(self.known) or '(none)'}"
        )

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


# --- models --------------------------------------------------------------------------
class ModelError(FacedexError):
    """A model file is missing, corrupt, or cannot be prepared or loaded."""


class ModelIntegrityError(ModelError):
    """A model file's sha256 does not match the digest pinned in its card."""


# --- media -----------------------------------------------------------------------------
class MediaError(FacedexError):
    """An input file or buffer cannot be used as an image or video."""

    def __init__(self, item: str, message: str):
        self.item = item
        super().__init__(f"{item}: {message}")


class MediaNotFoundError(MediaError):
    """The input path does not exist or is not a regular file."""


class UnsupportedMediaError(MediaError):
    """The bytes are not an image (or video) format facedex can decode."""


class CorruptMediaError(MediaError):
    """The file claims to be a known format but cannot be decoded (truncated, damaged)."""


class ImageTooLargeError(MediaError):
    """The image has more pixels than the configured limit (decompression-bomb guard)."""


class UnsupportedVideoError(UnsupportedMediaError):
    """Not a video facedex can decode: no video stream (audio only), an unknown
    container, or a codec the installed FFmpeg cannot decode."""


class CorruptVideoError(CorruptMediaError):
    """The file looks like a video or an animation but no frame can be decoded."""


class VideoTooLargeError(ImageTooLargeError):
    """The frames have more pixels than the configured limit (``FACEDEX_MAX_PIXELS``)."""


# --- faces -------------------------------------------------------------------------------
class FaceError(FacedexError):
    """A face-level problem on an otherwise readable image."""

    def __init__(self, item: str, message: str):
        self.item = item
        super().__init__(f"{item}: {message}")


class NoFaceError(FaceError):
    """No face (of at least the minimum size) was found."""


class MultipleFacesError(FaceError):
    """Several faces were found where exactly one was required."""


# --- gallery -----------------------------------------------------------------------------
class GalleryError(FacedexError):
    """The gallery file cannot be opened, read or written as asked."""


class GalleryNotFoundError(GalleryError):
    """The gallery does not exist and the operation does not create one."""


class EmbedderMismatchError(GalleryError):
    """Embeddings from one embedder were offered to a gallery built with another."""


class PersonNotFoundError(GalleryError, KeyError):
    """The named person is not enrolled in the gallery."""

    def __str__(self) -> str:
        return self.args[0]


class CalibrationError(GalleryError):
    """The gallery holds too little data to calibrate the requested threshold."""
