"""Listing the source tree and reading the optional sources file.

``SRC/<Person>/…`` holds each person's images (searched recursively; hidden
entries skipped). The person is the folder name, kept exactly.

A sources file says which people appear in an image or a group of images (an
album, a page). It is JSON Lines, one group per line; ``facedex collect``
writes one as ``SRC/sources.jsonl``, which is read by default::

    {"people": ["Ann Lee", "Bo Chan"], "files": ["Ann Lee/party.jpg", "Bo Chan/party.jpg"]}
    {"people": ["Ann Lee", "Bo Chan"], "sha256": ["9f2c…", "…"]}
    {"source": "https://…/album/7", "folders": ["Ann Lee", "Bo Chan"], "images": {"https://…/1.jpg": "9f2c…"}}

``folders`` (person folder names) wins over ``people`` when both are given;
files are matched by path relative to SRC or by content sha256.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..errors import SourcesFileError
from ..media import IMAGE_SUFFIXES, list_images


@dataclass(frozen=True)
class SourceImage:
    person: str
    rel: str  # path relative to SRC, with forward slashes
    path: Path


def scan(src: Path) -> tuple[list[SourceImage], list[tuple[str, str]]]:
    """Images per person folder, sorted; plus (item, reason) for what cannot be used."""
    images: list[SourceImage] = []
    problems: list[tuple[str, str]] = []
    for entry in sorted(src.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            found = list_images(entry)
            if not found:
                problems.append((entry.name + "/", "no image files in this person folder"))
            for p in found:
                images.append(SourceImage(entry.name, p.relative_to(src).as_posix(), p))
        elif entry.suffix.lower() in IMAGE_SUFFIXES:
            problems.append((entry.name, f"not inside a person folder (expected {src.name}/<Name>/…)"))
    return images, problems


@dataclass
class SourcesIndex:
    """People listed for each file (by relative path) and for each content hash."""

    by_rel: dict[str, set[str]]
    by_sha: dict[str, set[str]]
    groups: int = 0

    def people_for(self, rel: str, sha256: str) -> set[str]:
        return self.by_rel.get(rel, set()) | self.by_sha.get(sha256, set())

    @classmethod
    def empty(cls) -> "SourcesIndex":
        return cls({}, {}, 0)


def read_sources(path: Path) -> SourcesIndex:
    by_rel: dict[str, set[str]] = defaultdict(set)
    by_sha: dict[str, set[str]] = defaultdict(set)
    groups = 0
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise SourcesFileError(f"{path}: cannot read the sources file ({err})") from err
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise SourcesFileError(f"{path}:{n}: not a JSON object ({err.msg})") from None
        if not isinstance(row, dict):
            raise SourcesFileError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        people = row.get("folders") or row.get("people")
        if not isinstance(people, list) or not all(isinstance(p, str) for p in people) or not people:
            raise SourcesFileError(f"{path}:{n}: 'people' (or 'folders') must be a non-empty list of names")
        files = row.get("files", [])
        shas = row.get("sha256", [])
        images = row.get("images", {})
        if isinstance(images, dict):
            shas = list(shas) + [v for v in images.values() if isinstance(v, str)]
        elif isinstance(images, list):
            shas = list(shas) + [v for v in images if isinstance(v, str)]
        if not isinstance(files, list) or not isinstance(shas, list):
            raise SourcesFileError(f"{path}:{n}: 'files' and 'sha256' must be lists")
        if not files and not shas:
            raise SourcesFileError(f"{path}:{n}: the group names no files ('files', 'sha256' or 'images')")
        groups += 1
        for f in files:
            by_rel[str(f).replace("\\", "/")].update(people)
        for s in shas:
            by_sha[str(s).lower()].update(people)
    return SourcesIndex(dict(by_rel), dict(by_sha), groups)
