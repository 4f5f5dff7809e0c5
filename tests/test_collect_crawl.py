"""Crawling the local gallery with a recipe: the exact outcome, resume, limits."""

from __future__ import annotations

import os
import tomllib

import pytest

from facedex.collect import crawl
from facedex.collect.recipe import parse_recipe

from .collect_site.harness import (
    assert_complete_images,
    fast_options,
    loopback_only,
    manifest,
    page_row,
    person_files,
    sources,
)
from .collect_site.site import NAME_TRAVERSAL, Reply, Site, build_gallery
from .conftest import LFW

# what the gallery shows: folder -> number of images (album images count for both people in it)
EXPECTED = {"Colin Powell": 5, "Jean Chrétien": 3, "Hugo Chávez": 3 + 2, "_.._etc_passwd": 3,
            "Tony Blair": 3 + 2, "Gerhard Schröder": 3}


@pytest.fixture(autouse=True)
def _loopback():
    with loopback_only():
        yield


@pytest.fixture
def gallery():
    with Site("gallery") as site:
        yield build_gallery(site, LFW)


def recipe(gallery, extra: str = ""):
    return parse_recipe(tomllib.loads(gallery.recipe + extra), "gallery.toml", "sha-1")


def run(gallery, dst, extra: str = "", **opts):
    rec = recipe(gallery, extra)
    return crawl(rec, dst, rec.options(fast_options(**opts)))


def image_paths(site):
    return [p for p in site.paths() if p.startswith(("/img/", "/private/img/"))]


def test_crawl_collects_the_gallery_exactly(gallery, tmp_path):
    dst = tmp_path / "dst"
    report = run(gallery, dst)
    site = gallery.site

    assert report.failed == 0 and report.pages.failed == 0 and report.ok
    assert report.downloaded == 22  # 5+3+3+3+3+3 person images + 2 album images
    assert {k: len(v) for k, v in person_files(dst).items()} == EXPECTED
    assert assert_complete_images(dst) == 24
    # pages: 3 index + 6 person + Colin Powell's page 2 + the album; the private person is robots-skipped
    assert report.pages.fetched == 11
    assert report.pages.skipped_by_reason == {"robots": 1, "pagination_cycle": 1}
    assert any("pagination cycle" in n and "page=3" in n for n in report.notes)
    # every page and image requested once, robots.txt once, nothing under /private/
    paths = site.paths()
    assert len(paths) == len(set(paths)) == 1 + 11 + 22 == report.requests
    assert paths.count("/robots.txt") == 1 and paths[0] == "/robots.txt"
    assert not [p for p in paths if p.startswith("/private/")]
    for page in ("/people/?page=1", "/people/?page=2", "/people/?page=3"):
        assert paths.count(page) == 1
    assert page_row(dst, site.url("/private/person/1"))["reason"] == "robots"


def test_names_become_safe_folders_and_originals_are_kept(gallery, tmp_path):
    dst = tmp_path / "dst"
    run(gallery, dst)
    folders = set(person_files(dst))
    # NFD "Hugo Chávez" on his page and NFC on the album are one person, one NFC folder
    assert "Hugo Chávez" in folders and "Hugo Cha\u0301vez" not in folders
    # "../../etc/passwd" stays inside DST, in one folder, with the name preserved in the manifest
    assert "_.._etc_passwd" in folders
    assert not (tmp_path / "etc").exists() and sorted(os.listdir(tmp_path)) == ["dst"]
    entries = manifest(dst)
    assert len(entries) == 24
    hostile = [e for e in entries if e["folder"] == "_.._etc_passwd"]
    assert len(hostile) == 3 and {e["person"] for e in hostile} == {NAME_TRAVERSAL}
    for e in entries:
        assert set(e) >= {"file", "person", "folder", "url", "sources", "shows", "sha256", "bytes", "width",
                          "height", "format"}
        assert (dst / e["file"]).is_file() and e["file"].startswith(e["folder"] + "/")
        assert e["url"].startswith(gallery.site.url("/img/")) and e["width"] == e["height"] == 250


def test_album_images_go_to_everyone_listed_and_into_sources(gallery, tmp_path):
    dst = tmp_path / "dst"
    run(gallery, dst)
    album = [s for s in sources(dst) if s["kind"] == "album"]
    assert len(album) == 1
    (entry,) = album
    assert entry["source"] == gallery.site.url("/albums/summit")
    assert entry["people"] == ["Tony Blair", "Hugo Chávez"] and entry["folders"] == ["Tony Blair", "Hugo Chávez"]
    assert list(entry["images"]) == gallery.album_images
    by_sha = {e["sha256"]: [] for e in manifest(dst)}
    for e in manifest(dst):
        by_sha[e["sha256"]].append(e["file"])
    for sha in entry["images"].values():
        a, b = sorted(by_sha[sha])
        assert a.startswith("Hugo Chávez/") and b.startswith("Tony Blair/")
        assert os.stat(dst / a).st_ino == os.stat(dst / b).st_ino  # one copy on disk
    assert sorted(entry["files"]) == sorted(f for sha in entry["images"].values() for f in by_sha[sha])
    shows = {e["file"]: e["shows"] for e in manifest(dst)}
    for f in entry["files"]:
        assert shows[f] == ["Hugo Chávez", "Tony Blair"]
    person_sources = [s for s in sources(dst) if s["kind"] == "person"]
    assert len(person_sources) == 7 and all(len(s["people"]) == 1 for s in person_sources)


def test_second_run_downloads_nothing_and_recrawl_finds_new_images(gallery, tmp_path):
    dst = tmp_path / "dst"
    run(gallery, dst)
    site = gallery.site
    before = len(site.paths())
    report = run(gallery, dst)
    assert report.downloaded == 0 and report.pages.fetched == 0 and report.failed == 0
    assert report.skipped_by_reason == {"already_collected": 22}
    assert site.paths()[before:] == ["/robots.txt"]  # only robots.txt is read again

    # a new image appears on a person page: --recrawl reads pages again, downloads only the new one
    new_file = sorted((LFW / "Colin_Powell").glob("*.jpg"))[10]
    site.add_file("/img/p6/new.jpg", new_file)
    old_page = site.routes["/person/6"]
    body = old_page.body.replace(b"</div>", b"<img src='/img/p6/new.jpg'></div>")
    site.add("/person/6", Reply(200, body))
    before = len(site.paths())
    report = run(gallery, dst, recrawl=True)
    assert report.downloaded == 1 and report.pages.fetched == 11
    new_paths = site.paths()[before:]
    assert [p for p in new_paths if p.startswith("/img/")] == ["/img/p6/new.jpg"]
    assert len(person_files(dst)["Gerhard Schröder"]) == 4


def test_changed_recipe_is_noticed(gallery, tmp_path):
    dst = tmp_path / "dst"
    run(gallery, dst)
    rec = parse_recipe(tomllib.loads(gallery.recipe), "gallery.toml", "sha-2")
    report = crawl(rec, dst, rec.options(fast_options()))
    assert any("recipe changed" in n for n in report.notes)


def test_max_images_per_person_and_resume_with_a_higher_limit(gallery, tmp_path):
    dst = tmp_path / "dst"
    report = run(gallery, dst, "\n[limits]\nmax_images_per_person = 2\n")
    counts = {k: len(v) for k, v in person_files(dst).items()}
    assert counts == {k: 2 for k in EXPECTED}
    # 22 distinct images; 2 per person leaves some held back (they stay queued)
    held = report.skipped_by_reason["person_limit"]
    assert report.downloaded + held == 22 and held > 0
    report = run(gallery, dst)  # no limit now
    assert {k: len(v) for k, v in person_files(dst).items()} == EXPECTED
    assert report.downloaded == held
    images = image_paths(gallery.site)
    assert len(images) == len(set(images)) == 22  # nothing downloaded twice


def test_max_pages_stops_crawling_and_resumes(gallery, tmp_path):
    dst = tmp_path / "dst"
    report = run(gallery, dst, "\n[limits]\nmax_pages = 4\n")
    assert report.pages.fetched == 4
    assert report.pages.skipped_by_reason.get("page_limit", 0) > 0
    assert any("page limit of 4" in n for n in report.notes)
    report = run(gallery, dst, max_pages=100)
    assert {k: len(v) for k, v in person_files(dst).items()} == EXPECTED
    pages = [p for p in gallery.site.paths() if not p.startswith(("/img/", "/robots.txt"))]
    assert len(pages) == len(set(pages)) == 11


def test_max_total_bytes_stops_new_downloads(gallery, tmp_path):
    dst = tmp_path / "dst"
    report = run(gallery, dst, "\n[limits]\nmax_total_bytes = \"20kB\"\n", concurrency=1)
    assert 20_000 <= report.totals["bytes"] < 20_000 + 12_000  # one LFW image past the limit at most
    # what is left stays queued: here the pages not yet crawled
    assert report.pages.skipped_by_reason.get("byte_limit", 0) > 0
    assert any("stopped starting downloads" in n for n in report.notes)


def test_person_page_without_a_name_fails_with_no_name(tmp_path):
    with Site() as site:
        site.add_page("/p", "<div class='gallery'><img src='/a.jpg'></div>")
        site.add_file("/a.jpg", LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
        rec = parse_recipe({"person_pages": [site.url("/p")], "person": {"name": "h1", "images": "img"}})
        report = crawl(rec, tmp_path / "dst", rec.options(fast_options()))
        assert report.pages.failed_by_reason == {"no_name": 1} and not report.ok
        assert "h1" in report.failures[0].detail
        assert site.count("/a.jpg") == 0


def test_off_host_links_and_images_are_skipped(tmp_path):
    with Site() as site, Site() as other:
        other.add_file("/x.jpg", LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
        site.add_file("/a.jpg", LFW / "Colin_Powell" / "Colin_Powell_0002.jpg")
        site.add_page("/p", f"<h1>Colin Powell</h1><img src='/a.jpg'><img src='http://localhost:{other.port}/x.jpg'>")
        rec = parse_recipe({"person_pages": [site.url("/p")], "person": {"name": "h1", "images": "img"},
                            "allowed_hosts": ["127.0.0.1"]})
        report = crawl(rec, tmp_path / "dst", rec.options(fast_options()))
        assert report.downloaded == 1 and report.skipped_by_reason == {"host_not_allowed": 1}
        assert other.count() == 0


def test_srcset_and_lazy_attributes(tmp_path):
    with Site() as site:
        small, large = sorted((LFW / "Tony_Blair").glob("*.jpg"))[:2]
        site.add_file("/s.jpg", small)
        site.add_file("/l.jpg", large)
        site.add_file("/lazy.jpg", sorted((LFW / "Tony_Blair").glob("*.jpg"))[2])
        site.add_page("/p", "<h1>Tony Blair</h1><img srcset='/s.jpg 300w, /l.jpg 900w' src='/s.jpg'>"
                            "<img data-src='/lazy.jpg' src='data:image/gif;base64,R0lGOD'>")
        rec = parse_recipe({"person_pages": [site.url("/p")],
                            "person": {"name": "h1", "images": "img", "image_attr": ["srcset", "data-src", "src"]}})
        report = crawl(rec, tmp_path / "dst", rec.options(fast_options()))
        assert report.downloaded == 2
        assert site.count("/l.jpg") == 1 and site.count("/lazy.jpg") == 1 and site.count("/s.jpg") == 0


def test_next_page_showing_the_same_content_is_a_cycle(tmp_path):
    """An endless "?page=N" that repeats the last page is stopped by content, not only by URL."""
    with Site() as site:
        site.add_file("/a.jpg", LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
        site.add_page("/people?page=1", "<a class='person' href='/p'>x</a><a rel='next' href='/people?page=2'>n</a>")
        for n in range(2, 50):
            site.add_page(f"/people?page={n}",
                          f"<a class='person' href='/p'>x</a><a rel='next' href='/people?page={n + 1}'>n</a>")
        site.add_page("/p", "<h1>Colin Powell</h1><img src='/a.jpg'>")
        rec = parse_recipe({"start": [site.url("/people?page=1")],
                            "index": {"person_links": "a.person", "next_page": "a[rel=next]"},
                            "person": {"name": "h1", "images": "img"}})
        report = crawl(rec, tmp_path / "dst", rec.options(fast_options()))
        assert report.downloaded == 1
        assert report.pages.skipped_by_reason == {"pagination_cycle": 1}
        assert site.count("/people?page=2") == 1 and site.count("/people?page=3") == 0


def test_the_layout_is_what_clean_reads(gallery, tmp_path):
    """DST as `facedex clean` sees it: person folders, and sources naming who is in each image."""
    scan_mod = pytest.importorskip("facedex.clean.scan", reason="the clean stage is not in this tree")
    if not all(hasattr(scan_mod, n) for n in ("scan", "read_sources")):
        pytest.skip("facedex.clean.scan has another interface")
    import hashlib

    dst = tmp_path / "dst"
    run(gallery, dst)
    images, problems = scan_mod.scan(dst)
    assert problems == [] and len(images) == 24
    assert {im.person for im in images} == set(EXPECTED)
    index = scan_mod.read_sources(dst / "sources.jsonl")
    shared = {im.rel for im in images
              if len(index.people_for(im.rel, hashlib.sha256(im.path.read_bytes()).hexdigest())) > 1}
    assert len(shared) == 4 and all(r.split("/")[0] in ("Tony Blair", "Hugo Chávez") for r in shared)
