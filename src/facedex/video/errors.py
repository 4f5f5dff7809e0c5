"""Video-specific errors, in the :class:`facedex.errors.MediaError` tree.

Each subclasses the image error a batch job already handles, so code that
catches :class:`~facedex.errors.CorruptMediaError` (say) also catches a
corrupt video. Messages name the file, say what was wrong and what to do.
"""

from __future__ import annotations

from ..errors import CorruptMediaError, ImageTooLargeError, UnsupportedMediaError


class UnsupportedVideoError(UnsupportedMediaError):
    """Not a video facedex can decode: no video stream (audio only), an unknown
    container, or a codec the installed FFmpeg cannot decode."""


class CorruptVideoError(CorruptMediaError):
    """The file looks like a video or an animation but no frame can be decoded."""


class VideoTooLargeError(ImageTooLargeError):
    """The frames have more pixels than the configured limit (``FACEDEX_MAX_PIXELS``)."""
