"""The test clips, with their ground truth, built once per test session.

People enrolled in the session gallery (``base_gallery`` in conftest: the
first six LFW photos of each KNOWN person) appear through held-out photos
(7th to 10th); strangers are LFW people with a single photo, never enrolled.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from ..conftest import lfw_images, strangers
from .synth import Actor, ClipSpec, Shot, write_gif, write_video


def held_out(person: str, n: int = 3) -> list[Path]:
    return lfw_images(person)[6:6 + n]


@functools.lru_cache(maxsize=None)
def stranger_photo(i: int) -> Path:
    return strangers(1, skip=i)[0]


def stranger(i: int = 0) -> Actor:
    return Actor(stranger_photo(i).parent.name, [stranger_photo(i)], [], known=False)


def _with_path(actor: Actor, path) -> Actor:
    return Actor(actor.person, actor.images, path, actor.known, actor.hold)


def scene_clip(fps: float = 15.0) -> ClipSpec:
    """7 s, two shots. Shot 1 (0-4 s): Colin Powell moves right and grows;
    Tony Blair enters from the right edge at 1 s (cropped by it at first) and
    leaves through the left edge at about 3.6 s. Cut at 4 s. Shot 2 (4-7 s):
    Hugo Chavez shrinks while a stranger stands on the right from 4.5 s."""
    return ClipSpec("scene", [
        Shot(0.0, 4.0, 11, [
            Actor("Colin_Powell", held_out("Colin_Powell"), [(0.0, 0.25, 0.45, 110), (4.0, 0.45, 0.5, 150)]),
            Actor("Tony_Blair", held_out("Tony_Blair"), [(1.0, 1.15, 0.55, 110), (2.2, 0.75, 0.55, 115),
                                                         (3.6, -0.2, 0.5, 115)]),
        ]),
        Shot(4.0, 7.0, 23, [
            Actor("Hugo_Chavez", held_out("Hugo_Chavez"), [(4.0, 0.3, 0.5, 140), (7.0, 0.35, 0.5, 100)]),
            _with_path(stranger(0), [(4.5, 0.75, 0.5, 120), (7.0, 0.72, 0.48, 120)]),
        ]),
    ], width=480, height=270, fps=fps)


def pair_clip(seconds: float = 2.4, fps: float = 10.0) -> ClipSpec:
    """One known person (Ariel Sharon, left) and a stranger (right), one shot."""
    return ClipSpec("pair", [Shot(0.0, seconds, 5, [
        Actor("Ariel_Sharon", held_out("Ariel_Sharon"), [(0.0, 0.3, 0.5, 120), (seconds, 0.35, 0.5, 130)]),
        _with_path(stranger(1), [(0.0, 0.72, 0.5, 120), (seconds, 0.68, 0.5, 120)]),
    ])], width=400, height=240, fps=fps)


def single_clip(person: str = "Gerhard_Schroeder", seconds: float = 2.0, fps: float = 10.0,
                width: int = 320, height: int = 240, known: bool = True) -> ClipSpec:
    images = held_out(person) if known else [stranger_photo(3)]
    name = person if known else images[0].parent.name
    return ClipSpec(f"single-{name}", [Shot(0.0, seconds, 9, [
        Actor(name, images, [(0.0, 0.5, 0.5, 130), (seconds, 0.5, 0.5, 130)], known=known)])],
        width=width, height=height, fps=fps)


class ClipCache:
    """Builds each (clip, format) once per session in a temporary folder; clips
    of different content never share a file (the folder is named by a digest
    of the spec), and the file keeps the clip's readable name."""

    def __init__(self, root: Path):
        self.root = root

    def _dir(self, spec: ClipSpec, extra: str = "") -> Path:
        digest = hashlib.sha1((repr(spec) + extra).encode()).hexdigest()[:10]
        d = self.root / digest
        d.mkdir(exist_ok=True)
        return d

    def video(self, spec: ClipSpec, codec: str = "mp4") -> Path:
        from .synth import CODECS

        path = self._dir(spec) / f"{spec.name}-{codec}.{CODECS[codec][0]}"
        if not path.exists():
            write_video(spec, path, codec)
        return path

    def video_av(self, spec: ClipSpec, codec: str = "h264", audio: bool = False) -> Path:
        """The clip encoded with PyAV (H.264, HEVC, VP9, AV1; see synth.AV_CODECS)."""
        from .synth import AV_CODECS, write_video_av

        path = self._dir(spec, "av") / f"{spec.name}-{codec}{'-audio' if audio else ''}.{AV_CODECS[codec][0]}"
        if not path.exists():
            write_video_av(spec, path, codec, audio=audio)
        return path

    def gif(self, spec: ClipSpec, durations_ms=None, tag: str = "") -> Path:
        path = self._dir(spec, repr(durations_ms)) / f"{spec.name}{tag}.gif"
        if not path.exists():
            write_gif(spec, path, durations_ms)
        return path


def clip_cache(tmp_path_factory) -> ClipCache:
    """The session's clip folder (shared by every test module that asks)."""
    root = tmp_path_factory.getbasetemp() / "video-clips"
    root.mkdir(exist_ok=True)
    return ClipCache(root)
