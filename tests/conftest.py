"""Shared fixtures: real LFW images from ../shared/data, an isolated model cache,
and small real galleries built once per session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from facedex.datasets import DatasetNotFoundError, find_lfw

REPO = Path(__file__).resolve().parents[1]
# Looked for at $FACEDEX_LFW, ../shared/data/lfw, then the data cache (`facedex data fetch lfw`).
try:
    LFW, _LFW_MISSING = find_lfw(), None
except DatasetNotFoundError as _e:
    LFW, _LFW_MISSING = REPO / "lfw-not-found", str(_e)
PAIRS = Path(os.environ.get("FACEDEX_LFW_PAIRS", LFW.parent / "pairs.txt"))

# People with many LFW images (enrolled in test galleries) and people with one
# image (strangers: never enrolled anywhere in the tests).
KNOWN = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder",
         "Ariel_Sharon", "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien"]


def pytest_configure(config):
    # Prepared models: the tests use the same cache as the user (FACEDEX_CACHE_DIR or
    # ~/.cache/facedex), which `scripts/setup` fills once (`facedex models --prepare`), so
    # neither CI nor a developer prepares the models twice. Prepared files are verified
    # against their sidecar digest before use; tests of preparation itself use their own
    # temporary cache (tests/test_models.py).
    if _LFW_MISSING:
        raise pytest.UsageError(f"The tests run on real faces. {_LFW_MISSING}")


def lfw_image(person: str, n: int) -> Path:
    return LFW / person / f"{person}_{n:04d}.jpg"


def lfw_images(person: str) -> list[Path]:
    return sorted((LFW / person).glob("*.jpg"))


def strangers(count: int, skip: int = 0) -> list[Path]:
    """Single-image LFW people, deterministic, never used as known people."""
    out = []
    for d in sorted(LFW.iterdir()):
        files = list(d.glob("*.jpg"))
        if len(files) == 1 and d.name not in KNOWN:
            out.append(files[0])
    return out[skip : skip + count]


def make_people(root: Path, people: dict[str, list[Path]]) -> Path:
    """Copy images into root/<Name>/ and return root."""
    for name, files in people.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copy(f, d / f.name)
    return root


@pytest.fixture(scope="session")
def lfw() -> Path:
    return LFW


@pytest.fixture(scope="session")
def enrolled_split():
    """First 6 images of each KNOWN person are enrolled; images 7..9 are held out."""
    enrolled = {p: lfw_images(p)[:6] for p in KNOWN}
    held_out = {p: lfw_images(p)[6:9] for p in KNOWN}
    return enrolled, held_out


@pytest.fixture(scope="session")
def base_gallery(tmp_path_factory, enrolled_split):
    """A real gallery of 8 people x 6 images, built once; copy it before writing."""
    import facedex

    enrolled, _ = enrolled_split
    root = make_people(tmp_path_factory.mktemp("people"), enrolled)
    path = tmp_path_factory.mktemp("galleries") / "base.gallery"
    with facedex.Gallery.open(path, create=True) as g:
        report = g.enroll(root, multiple="largest")
        assert report.failed == 0, [i.reason for i in report.items if i.status == "failed"]
    return path


@pytest.fixture
def gallery_copy(base_gallery, tmp_path):
    dst = tmp_path / "copy.gallery"
    shutil.copy(base_gallery, dst)
    return dst


def check_schema(name: str, doc):
    """Validate a command's JSON output against its published schema (docs/schemas/)."""
    import jsonschema

    from facedex.schemas import schema

    jsonschema.validate(doc, schema(name), format_checker=jsonschema.FormatChecker())
    return doc


# Browser tests (the service's page, the annotated videos) drive Debian's chromium
# through Playwright; no browser is downloaded.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium for the module (skipped where it is not installed; a failure in CI)."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: scripts/setup installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    pw_api = pytest.importorskip("playwright.sync_api")
    with pw_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
