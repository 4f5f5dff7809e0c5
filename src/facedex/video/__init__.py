"""Video and animated-GIF identification: who appears, when, and for how long.

One decision per face track, with the gallery's open-set threshold::

    import facedex

    gallery = facedex.Gallery.open("my.gallery")
    for track in gallery.identify_video("clip.mp4"):           # streams, as tracks end
        print(track.track, track.name or "unknown", track.first_seen, track.last_seen)

    result = gallery.identify_video("anim.gif").result()       # everything at once
    print(result.to_dict()["people"])

Decoding is in :mod:`facedex.media.video`, drawing (annotated copies, contact
sheets) in :mod:`facedex.render.video`, which builds on this package; this
package samples, tracks and decides through a :class:`Matcher`.

Nothing heavy is imported until a function is used. See ``docs/video.md``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "identify_video": "facedex.video.identify",
    "TrackStream": "facedex.video.identify",
    "summarize_people": "facedex.video.identify",
    "Matcher": "facedex.video.identify",
    "open_video": "facedex.media.video",
    "FrameSource": "facedex.media.video",
    "ArraySource": "facedex.media.video",
    "sniff": "facedex.media.sniff",
    "sampler": "facedex.video.identify",
    "VIDEO_SUFFIXES": "facedex.media.sniff",
    "VideoOptions": "facedex.video.types",
    "VideoInfo": "facedex.media.video",
    "VideoResult": "facedex.video.types",
    "Track": "facedex.video.types",
    "TrackPoint": "facedex.video.types",
    "PersonPresence": "facedex.video.types",
    "Frame": "facedex.media.video",
    "UnsupportedVideoError": "facedex.errors",
    "CorruptVideoError": "facedex.errors",
    "VideoTooLargeError": "facedex.errors",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from ..errors import CorruptVideoError, UnsupportedVideoError, VideoTooLargeError  # noqa: F401
    from ..media.sniff import VIDEO_SUFFIXES, sniff  # noqa: F401
    from ..media.video import ArraySource, Frame, FrameSource, VideoInfo, open_video  # noqa: F401
    from .identify import Matcher, TrackStream, identify_video, sampler, summarize_people  # noqa: F401
    from .types import PersonPresence, Track, TrackPoint, VideoOptions, VideoResult  # noqa: F401


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facedex.video' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
