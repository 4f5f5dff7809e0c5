"""Video and animated-GIF identification: who appears, when, and for how long.

One decision per face track, with the gallery's open-set threshold::

    import facedex
    from facedex.video import identify_video

    gallery = facedex.Gallery.open("my.gallery")
    for track in identify_video(gallery, "clip.mp4"):        # streams, as tracks end
        print(track.track, track.name or "unknown", track.first_seen, track.last_seen)

    result = identify_video(gallery, "anim.gif").result()      # everything at once
    print(result.to_dict()["people"])

Nothing heavy is imported until a function is used. See ``docs/video.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "identify_video": "facedex.video.identify",
    "TrackStream": "facedex.video.identify",
    "summarize_people": "facedex.video.identify",
    "open_video": "facedex.video.decode",
    "FrameSource": "facedex.video.decode",
    "ArraySource": "facedex.video.decode",
    "sniff": "facedex.video.content",
    "sampler": "facedex.video.identify",
    "VIDEO_SUFFIXES": "facedex.video.content",
    "VideoOptions": "facedex.video.types",
    "VideoInfo": "facedex.video.types",
    "VideoResult": "facedex.video.types",
    "Track": "facedex.video.types",
    "TrackPoint": "facedex.video.types",
    "PersonPresence": "facedex.video.types",
    "Frame": "facedex.video.types",
    "UnsupportedVideoError": "facedex.errors",
    "CorruptVideoError": "facedex.errors",
    "VideoTooLargeError": "facedex.errors",
    "write_annotated": "facedex.video.annotate",
    "contact_sheet": "facedex.video.annotate",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from ..errors import CorruptVideoError, UnsupportedVideoError, VideoTooLargeError  # noqa: F401
    from .annotate import contact_sheet, write_annotated  # noqa: F401
    from .content import VIDEO_SUFFIXES, sniff  # noqa: F401
    from .decode import ArraySource, FrameSource, open_video  # noqa: F401
    from .identify import TrackStream, identify_video, sampler, summarize_people  # noqa: F401
    from .types import Frame, PersonPresence, Track, TrackPoint, VideoInfo, VideoOptions, VideoResult  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facedex.video' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
