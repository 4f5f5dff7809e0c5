"""facedex — who is this? Open-set face identification against a gallery you build.

The public API is small and re-exported here; nothing heavy happens on
import (models load on first use)::

    import facedex
    gallery = facedex.Gallery.open("my.gallery", create=True)
    gallery.enroll("people/")                 # people/<Name>/*.jpg
    for face in gallery.identify("photo.jpg"):
        print(face.name or "unknown", round(face.similarity, 3))

    for result in facedex.identify_paths(gallery, ["photos/", "clip.mp4"]):
        print(result.to_dict())               # one per photo, GIF or video; the CLI's JSON
    facedex.verify("a.jpg", "b.jpg").same_person
    faces = facedex.detect("photo.jpg")       # boxes, landmarks, scores
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "Gallery": "facedex.identify.gallery",
    "detect": "facedex.identify.gallery",
    "identify_paths": "facedex.identify.run",
    "IdentifyRun": "facedex.identify.run",
    "verify": "facedex.identify.verify",
    "Verification": "facedex.identify.verify",
    "MediaInput": "facedex.media.inputs",
    "FacePipeline": "facedex.pipeline",
    "DetectorConfig": "facedex.faces.detect",
    "load_image": "facedex.media",
    "Face": "facedex.types",
    "Candidate": "facedex.types",
    "Identification": "facedex.types",
    "ImageResult": "facedex.types",
    "EnrollReport": "facedex.types",
    "Threshold": "facedex.types",
    "FacedexError": "facedex.errors",
    "VideoOptions": "facedex.video.types",
    "VideoResult": "facedex.video.types",
    "ErrorInfo": "facedex.types",
    "Track": "facedex.video.types",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from .identify.gallery import Gallery, detect
    from .identify.run import IdentifyRun, identify_paths
    from .identify.verify import Verification, verify
    from .media.inputs import MediaInput
    from .errors import FacedexError
    from .faces.detect import DetectorConfig
    from .media import load_image
    from .pipeline import FacePipeline
    from .types import (
        Candidate,
        EnrollReport,
        Face,
        Identification,
        ImageResult,
        Threshold,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facedex' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
