"""The library (issue #14) on real models and real faces: a library of LFW
photos under shuffled, meaningless file names, a video and an animated GIF
made from LFW stills, and a broken file; indexed, discovered, named, fixed,
searched and forgotten through the real `facedex` entry point (in process)
and the Python API.

Who is in it: three people nobody enrolled (six photos each; one of them
also in the video, another in the GIF), held-out photos of two people the
session gallery knows (claimed, not clustered), and four strangers seen once.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from pathlib import Path

import pytest

import facedex
from facedex import library

from .conftest import check_schema, lfw_images, strangers
from .video_fixtures.clips import clip_cache, single_clip

UNKNOWN = ["Serena_Williams", "Vladimir_Putin", "Jennifer_Capriati"]
CLAIMED = ["Colin_Powell", "Tony_Blair"]  # enrolled in base_gallery (first six photos); these are held out


def run(monkeypatch, capsys, *argv) -> tuple[int, str, str]:
    """The real `facedex` entry point, in this process (models load once)."""
    from facedex.cli import main

    code = main.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def built(tmp_path_factory, base_gallery):
    """The library folder, its ground truth (file → person) and an indexed gallery."""
    root = tmp_path_factory.mktemp("library")
    lib = root / "Photos"
    (lib / "2019").mkdir(parents=True)
    (lib / "misc" / "deep").mkdir(parents=True)
    rng = random.Random(14)
    truth: dict[str, str] = {}
    files = [(p, f) for p in UNKNOWN for f in lfw_images(p)[:6]]
    files += [(p, f) for p in CLAIMED for f in lfw_images(p)[6:8]]
    files += [(f.parent.name, f) for f in strangers(4, skip=40)]
    rng.shuffle(files)
    for i, (person, f) in enumerate(files):
        folder = lib / ("2019" if i % 2 else "misc/deep")
        dst = folder / f"{rng.getrandbits(48):012x}{'.jpg' if i % 3 else ''}"  # some have no suffix at all
        if person == "Serena_Williams" and not any(v == person for v in truth.values()):
            dst = folder / "<i>x&\"y'.jpg"  # a name that must be escaped in the contact sheet
        shutil.copy(f, dst)
        truth[str(dst)] = person
    clips = clip_cache(tmp_path_factory)
    video = lib / "2019" / f"{rng.getrandbits(48):012x}.mp4"
    shutil.copy(clips.video(single_clip("Serena_Williams", seconds=2.0)), video)
    gif = lib / "misc" / f"{rng.getrandbits(48):012x}.gif"
    shutil.copy(clips.gif(single_clip("Vladimir_Putin", seconds=1.6)), gif)
    truth[str(video)], truth[str(gif)] = "Serena_Williams", "Vladimir_Putin"
    broken = lib / "misc" / "IMG_0001.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4)  # a JPEG header, then nonsense
    (lib / "notes.txt").write_text("not a photo")
    gallery = root / "indexed.gallery"
    shutil.copy(base_gallery, gallery)
    return {"root": root, "lib": lib, "truth": truth, "gallery": gallery, "video": video, "gif": gif,
            "broken": broken}


@pytest.fixture(scope="module")
def indexed(built):
    """`facedex index --json` on the library, once (captured here without capsys: module scope)."""
    import contextlib
    import io

    from facedex.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main.main(["index", str(built["gallery"]), str(built["lib"]), "--json"])
    return code, check_schema("index", json.loads(buf.getvalue()))


@pytest.fixture
def gallery(built, indexed, tmp_path) -> Path:
    """A copy of the indexed gallery for a test that changes it."""
    dst = tmp_path / "lib.gallery"
    shutil.copy(built["gallery"], dst)
    return dst


def central_truth(built, sightings) -> dict[int, str]:
    """Ground truth per sighting: the person of the file for the face nearest
    the centre of an LFW photo (and for the one track of a clip); other faces
    (people in the background) get an identity of their own."""
    by_source: dict[str, list] = {}
    for s in sightings:
        by_source.setdefault(s.source, []).append(s)
    out = {}
    for source, items in by_source.items():
        def off_centre(s):
            x, y, w, h = s.box
            return abs(x + w / 2 - 125) + abs(y + h / 2 - 125)

        main_face = min(items, key=off_centre) if len(items) > 1 else items[0]
        for s in items:
            out[s.id] = built["truth"][source] if s is main_face else f"background:{s.id}"
    return out


# --- index -----------------------------------------------------------------------------------------
def test_index_reports_every_file_and_the_broken_one(built, indexed):
    code, doc = indexed
    assert code == 1  # one input failed; the rest was indexed
    items = {i["path"]: i for i in doc["items"]}
    assert len(items) == len(built["truth"]) + 1  # every photo, both clips, the broken file
    broken = items[str(built["broken"])]
    assert broken["status"] == "failed" and broken["code"].startswith("media.") and "IMG_0001.jpg" in broken["reason"]
    assert doc["failed"] == 1 and doc["indexed"] == len(built["truth"])
    for path in built["truth"]:
        assert items[path]["status"] == "indexed" and items[path]["sightings"] >= 1, items[path]
    assert items[str(built["video"])]["kind"] == "video" and items[str(built["gif"])]["kind"] == "animation"
    assert [s["path"] for s in doc["skipped"]] == [str(built["lib"] / "notes.txt")]
    assert doc["totals"]["sources"] == len(built["truth"]) and doc["totals"]["named"] == 0
    assert doc["totals"]["sightings"] == doc["sightings_added"] >= len(built["truth"])
    # sightings are not enrolled faces: identification is untouched
    with facedex.Gallery.open(built["gallery"]) as g:
        assert g.counts() == {"people": 8, "sources": 48, "faces": 48}
        clip = [s for s in g_sightings(g) if s.source == str(built["video"])]
    assert len(clip) == 1 and clip[0].time[0] == pytest.approx(0.0, abs=0.01)
    assert clip[0].time[1] == pytest.approx(2.0, abs=0.05) and clip[0].frames >= 8


def g_sightings(g):
    lib = library.LibraryStore(g.store, create=False)
    return list(lib.sightings(lib.table().ids).values())


def test_reindex_is_incremental(built, gallery, tmp_path, monkeypatch, capsys):
    lib = tmp_path / "lib"
    shutil.copytree(built["lib"], lib)
    # same gallery, copied folder: every file is new by path but its content is known: copied, not decoded
    code, out, _ = run(monkeypatch, capsys, "index", gallery, lib, "--json")
    doc = json.loads(out)
    assert code == 1 and doc["duplicate"] == len(built["truth"]) and doc["indexed"] == 0
    code, out, _ = run(monkeypatch, capsys, "index", gallery, lib, "--json")
    doc = json.loads(out)
    assert doc["unchanged"] == len(built["truth"]) and doc["duplicate"] == doc["indexed"] == 0
    # a new photo, a changed one (other content at the same path), a deleted one
    files = sorted(p for p in lib.rglob("*") if p.is_file() and p.suffix == ".jpg" and p.name != "IMG_0001.jpg")
    new = lib / "2019" / "new-photo.jpg"
    shutil.copy(lfw_images("Serena_Williams")[10], new)
    shutil.copy(lfw_images("Jennifer_Capriati")[10], files[0])
    files[1].unlink()
    code, out, _ = run(monkeypatch, capsys, "index", gallery, lib, "--prune", "--json")
    doc = check_schema("index", json.loads(out))
    status = {i["path"]: i["status"] for i in doc["items"]}
    assert status[str(new)] == "indexed" and status[str(files[0])] == "updated"
    assert status[str(files[1])] == "removed" and doc["removed"] == 1
    assert doc["indexed"] == 1 and doc["updated"] == 1 and doc["failed"] == 1
    assert doc["unchanged"] == len(built["truth"]) - 2
    # --forget-source: one file, then a whole folder
    code, out, _ = run(monkeypatch, capsys, "index", gallery, "--forget-source", new, "--json")
    assert code == 0 and [i["status"] for i in json.loads(out)["items"]] == ["removed"]
    code, out, _ = run(monkeypatch, capsys, "index", gallery, "--forget-source", lib / "misc", "--json")
    removed = json.loads(out)["items"]
    assert removed and all(i["path"].startswith(str(lib / "misc")) for i in removed)
    code, _, err = run(monkeypatch, capsys, "index", gallery, "--forget-source", lib / "misc", "--json")
    assert code == 2 and "nothing indexed" in err


# --- discover ----------------------------------------------------------------------------------------
def test_discover_groups_the_unknown_people(built, gallery, tmp_path, monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "discover", gallery, "--json", "--html", tmp_path / "review")
    doc = check_schema("discover", json.loads(out))
    assert code == 0 and doc["threshold"]["value"] == pytest.approx(0.461)
    # the held-out photos of enrolled people are claimed by them, with identify's decision
    assert doc["claimed"] == {p: 2 for p in CLAIMED}
    with facedex.Gallery.open(gallery) as g:
        truth = central_truth(built, g_sightings(g))
    sizes = [c["size"] for c in doc["clusters"]]
    assert sizes == sorted(sizes, reverse=True)
    found = {}
    for c in doc["clusters"]:
        people = {truth[f["sighting"]] for f in c["faces"]}
        assert len(people) == 1, f"impure cluster {c['id']}: {people}"  # purity
        found.setdefault(people.pop(), []).append(c)
        sims = [f["similarity_to_centre"] for f in c["faces"]]
        assert sims == sorted(sims, reverse=True)
    # each unknown person is one cluster with all their photos, the clip's track included
    for person in UNKNOWN:
        assert len(found.get(person, [])) == 1, (person, found.keys())
        faces = found[person][0]["faces"]
        assert sum(truth[f["sighting"]] == person for f in faces) >= 6
    serena = found["Serena_Williams"][0]["faces"]
    clip = [f for f in serena if f["kind"] == "video"]
    assert len(clip) == 1 and clip[0]["time_range"][1] == pytest.approx(2.0, abs=0.05)
    assert any(f["kind"] == "animation" for f in found["Vladimir_Putin"][0]["faces"])
    assert doc["unclustered"] >= 4  # the strangers seen once
    # the contact sheet: one section per cluster, crops embedded, links to the sources, nothing fetched
    page = (tmp_path / "review" / "index.html").read_text()
    assert page.count("<section") == len(doc["clusters"]) and "data:image/jpeg;base64," in page
    assert f'href="{built["video"].as_uri()}#t=' in page
    assert "http://" not in page and "https://" not in page and "Content-Security-Policy" in page
    assert "<i>x" not in page and "&lt;i&gt;x&amp;&quot;y&#x27;.jpg" in page
    # the same ids again while nothing changed; a sheet folder is reused, a foreign one refused
    code, out, _ = run(monkeypatch, capsys, "discover", gallery, "--json", "--html", tmp_path / "review")
    assert [c["id"] for c in json.loads(out)["clusters"]] == [c["id"] for c in doc["clusters"]]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "mine.txt").write_text("keep")
    code, out, err = run(monkeypatch, capsys, "discover", gallery, "--html", tmp_path / "other", "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "output.error"
    assert (tmp_path / "other" / "mine.txt").read_text() == "keep"


def _cluster_of(built, result, person):
    for c in result.clusters:
        if sum(built["truth"].get(f.sighting.source) == person for f in c.faces) >= 3:
            return c
    raise AssertionError(f"no cluster of {person}")


# --- name, find, fix ---------------------------------------------------------------------------------
def test_name_then_find_then_fix_people(built, gallery, monkeypatch, capsys):
    with facedex.Gallery.open(gallery) as g:
        result = library.discover(g)
        serena = _cluster_of(built, result, "Serena_Williams")
        putin = _cluster_of(built, result, "Vladimir_Putin")
        capriati = _cluster_of(built, result, "Jennifer_Capriati")
    rejected = serena.faces[-1].sighting  # the reviewer's doubt: least like the others
    code, out, _ = run(monkeypatch, capsys, "name", gallery, serena.id, "Serena", "--exclude", rejected.id, "--json")
    doc = check_schema("name", json.loads(out))
    assert code == 0 and doc["created"] and doc["enrolled"] == serena.size - 1 and doc["excluded"] == [rejected.id]
    assert doc["totals"]["people"] == 9
    # identify now names her in a photo the library never had
    with facedex.Gallery.open(gallery) as g:
        (res,) = list(facedex.identify_paths(g, [lfw_images("Serena_Williams")[12]]))
        assert [f.name for f in res.faces][:1] == ["Serena"]
    # find: every photo of the cluster, the video with its time range; not the excluded face
    code, out, _ = run(monkeypatch, capsys, "find", gallery, "Serena", "--json")
    doc = check_schema("find", json.loads(out))
    found = {a["sighting"] for a in doc["appearances"]}
    assert found >= {f.sighting.id for f in serena.faces} - {rejected.id} and rejected.id not in found
    video = [a for a in doc["appearances"] if a["kind"] == "video"]
    assert len(video) == 1 and video[0]["source"] == str(built["video"]) and video[0]["time"][0] == pytest.approx(0.0)
    assert all(built["truth"].get(a["source"]) == "Serena_Williams" for a in doc["appearances"])
    # naming the same id twice: it is gone from the clusters
    code, out, _ = run(monkeypatch, capsys, "name", gallery, serena.id, "Serena", "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "library.cluster_not_found"
    code, out, _ = run(monkeypatch, capsys, "name", gallery, putin.id, "V", "--exclude", rejected.id, "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "library.sighting_not_found"
    # rename, merge: a second name for Capriati joins the first
    assert run(monkeypatch, capsys, "name", gallery, putin.id, "V. Putin")[0] == 0
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "--rename", "V. Putin", "Vladimir Putin", "--json")
    assert code == 0 and check_schema("people-edit", json.loads(out))["into"] == "Vladimir Putin"
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "--rename", "Vladimir Putin", "Serena", "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "library.person_exists"
    assert run(monkeypatch, capsys, "enroll", gallery, lfw_images("Jennifer_Capriati")[20], "--person", "JC")[0] == 0
    assert run(monkeypatch, capsys, "name", gallery, capriati.id, "Jennifer Capriati")[0] == 0
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "--merge", "JC", "Jennifer Capriati", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["faces_moved"] == 1 and doc["person_removed"]
    with facedex.Gallery.open(gallery) as g:
        names = {p.name: p.faces for p in g.people()}
        assert "JC" not in names and names["Jennifer Capriati"] == capriati.size + 1
        assert names["Vladimir Putin"] == putin.size
        assert len(library.find(g, "Vladimir Putin").appearances) == putin.size
    # remove a source: the GIF's face leaves Putin, and find no longer lists the GIF for him
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "Vladimir Putin", "--remove-source", built["gif"],
                       "--json")
    assert code == 0 and json.loads(out)["faces_removed"] == 1 and json.loads(out)["operation"] == "remove-source"
    with facedex.Gallery.open(gallery) as g:
        assert str(built["gif"]) not in {a.sighting.source for a in library.find(g, "Vladimir Putin").appearances}
    # remove a wrong face: its sighting is unnamed again and never listed for her
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "Serena", "--json")
    faces = json.loads(out)["faces"]
    victim = faces[0]
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "Serena", "--remove-face", victim["face_id"], "--json")
    assert code == 0 and check_schema("people-edit", json.loads(out))["faces_removed"] == 1
    with facedex.Gallery.open(gallery) as g:
        after = {a.sighting.source for a in library.find(g, "Serena").appearances}
        assert victim["path"] not in after
        assert g.store.integrity_check() == []
    code, out, _ = run(monkeypatch, capsys, "people", gallery, "Serena", "--remove-face", 999999, "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "library.face_not_found"


def test_find_sees_people_enrolled_after_indexing(built, gallery, tmp_path):
    """No re-indexing: enrolling Capriati from photos outside the library makes
    her library photos findable at once."""
    with facedex.Gallery.open(gallery) as g:
        assert library.find(g, "Tony_Blair").appearances  # held-out photos of an enrolled person
        report = g.enroll(lfw_images("Jennifer_Capriati")[20:24], "Jennifer Capriati")
        assert report.added == 4
        found = library.find(g, "Jennifer Capriati")
    sources = {a.sighting.source for a in found.appearances}
    expected = {p for p, who in built["truth"].items() if who == "Jennifer_Capriati"}
    assert len(sources & expected) >= 5 and all(built["truth"].get(s) == "Jennifer_Capriati" for s in sources)


def test_forget_erases_the_named_sightings_and_their_crops(built, gallery, monkeypatch, capsys):
    with facedex.Gallery.open(gallery) as g:
        result = library.discover(g)
        putin = _cluster_of(built, result, "Vladimir_Putin")
        lib = library.LibraryStore(g.store)
        ids = [f.sighting.id for f in putin.faces]
        table = lib.table()
        vectors = [table.vectors[list(table.ids).index(i)].astype("<f4").tobytes() for i in ids]
        crops = [lib.crop(i) for i in ids]
        library.name_cluster(g, putin.id, "Zebulon Quux")
        before = lib.counts()["sightings"]
    assert all(crops)
    code, _, _ = run(monkeypatch, capsys, "forget", gallery, "Zebulon Quux")
    assert code == 0
    raw = gallery.read_bytes()
    assert b"Zebulon" not in raw
    assert not any(v in raw for v in vectors), "an embedding of a forgotten sighting survived in the file"
    assert not any(c[-300:-50] in raw for c in crops), "a crop of a forgotten sighting survived in the file"
    with facedex.Gallery.open(gallery) as g:
        lib = library.LibraryStore(g.store, create=False)
        assert lib.counts()["sightings"] == before - len(ids)
        assert g.store.integrity_check() == []
    con = sqlite3.connect(gallery)
    assert con.execute("SELECT COUNT(*) FROM library_crops WHERE sighting_id NOT IN "
                       "(SELECT id FROM library_sightings)").fetchone()[0] == 0
    con.close()


def test_library_commands_without_an_index(base_gallery, tmp_path, monkeypatch, capsys):
    g = tmp_path / "empty.gallery"
    shutil.copy(base_gallery, g)
    code, out, _ = run(monkeypatch, capsys, "discover", g, "--json")
    doc = check_schema("discover", json.loads(out))
    assert code == 0 and doc["clusters"] == [] and doc["sightings"] == 0
    code, out, _ = run(monkeypatch, capsys, "find", g, "Tony_Blair", "--json")
    assert code == 0 and json.loads(out)["appearances"] == []
    code, out, _ = run(monkeypatch, capsys, "find", g, "Nobody At All", "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "gallery.person_not_found"
    code, _, err = run(monkeypatch, capsys, "index", g)
    assert code == 2 and "PATH" in err
    code, out, _ = run(monkeypatch, capsys, "index", tmp_path / "missing.gallery", "--forget-source", "x", "--json")
    assert code == 2 and json.loads(out)["error"]["code"] == "gallery.not_found"
