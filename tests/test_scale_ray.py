"""Issue #16: ``enroll --engine ray`` on a local Ray (2 CPUs) gives the same
people, faces and answers as the local engine; it resumes from its shards;
the shards load into a gallery with ``facedex import``; ``embed_files`` gives
every face of each file for other batch jobs."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

import facedex
from tests.conftest import check_schema, lfw_image, lfw_images, make_people

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (starting one costs seconds); the engine
    attaches to it instead of starting its own."""
    for attempt in range(3):  # a loaded machine can miss Ray's 30 s raylet start-up wait: try again
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception:  # noqa: BLE001 - Ray raises a bare Exception for the start-up timeout
            ray.shutdown()
            if attempt == 2:
                raise
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    root = make_people(tmp_path_factory.mktemp("people"), {
        "Hugo_Chavez": lfw_images("Hugo_Chavez")[:3],
        "Tony_Blair": lfw_images("Tony_Blair")[:3],
        # Colin_Powell_0010 shows three faces: decided by the person's other photos (--multiple auto)
        "Colin_Powell": lfw_images("Colin_Powell")[:2] + [lfw_image("Colin_Powell", 10)],
    })
    (root / "Tony_Blair" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shutil.copy(lfw_image("Tony_Blair", 1), root / "Tony_Blair" / "same-content.jpg")
    return root


def _state(g):
    out = {}
    for p in g.people():
        out[p.name] = sorted((f["path"], f["sha256"], tuple(round(v, 1) for v in f["box"]))
                             for f in g.store.faces_of(p.name))
    return out


def test_ray_enroll_gives_the_local_engine_s_people_faces_and_answers(local_ray, people, tmp_path):
    from facedex.engines.ray import RayOptions

    local, remote = tmp_path / "local.gallery", tmp_path / "ray.gallery"
    with facedex.Gallery.open(local, create=True) as g:
        want = g.enroll(people)
    with facedex.Gallery.open(remote, create=True) as g:
        from facedex.engines.ray import enroll

        got = enroll(g, [people], options=RayOptions(actors=2, batch_size=4, shard_size=4))
    key = lambda r: sorted((i.path, i.person, i.status, i.code or "") for i in r.items)  # noqa: E731
    assert key(got) == key(want)
    assert {i.status for i in got.items} == {"added", "skipped", "failed"}
    assert any(i.note for i in got.items if i.status == "added")  # the group photo, decided like the local engine
    with facedex.Gallery.open(local) as a, facedex.Gallery.open(remote) as b:
        assert _state(a) == _state(b)
        for name in ("Hugo_Chavez", "Tony_Blair", "Colin_Powell"):
            # each actor runs what `auto` measured fastest for its thread count: runtimes differ in the last digits
            np.testing.assert_allclose(a.store.vectors_of(name), b.store.vectors_of(name), atol=2e-3)
        for person in ("Hugo_Chavez", "Tony_Blair", "Colin_Powell"):
            photo = lfw_image(person, 5)
            x = [(i.name, round(i.similarity, 3)) for i in a.identify(photo)]
            y = [(i.name, round(i.similarity, 3)) for i in b.identify(photo)]
            assert x == y and x[0][0] == person


def test_ray_enroll_resumes_from_its_shards_and_they_import(local_ray, people, tmp_path, capsys):
    from facedex.cli.main import main
    from facedex.engines.ray import shard_folder

    gallery = tmp_path / "g.gallery"
    args = ["enroll", str(gallery), str(people), "--engine", "ray", "--ray-actors", "1", "--shard-size", "5", "--json"]
    assert main(args) == 1  # the broken file
    doc = check_schema("enroll", json.loads(capsys.readouterr().out))
    assert doc["added"] == 9 and doc["failed"] == 1 and doc["skipped"] == 1
    shards = sorted(shard_folder(gallery).glob("enroll-*.parquet"))
    assert len(shards) == 3  # 11 images, 5 a shard
    stamps = [s.stat().st_mtime_ns for s in shards]
    # again: every shard is there, nothing is embedded or added
    assert main(args) == 1
    doc = check_schema("enroll", json.loads(capsys.readouterr().out))
    assert doc["added"] == 0 and doc["skipped"] == 10
    assert [s.stat().st_mtime_ns for s in shards] == stamps
    # the shards are how batch results reach any gallery
    other = tmp_path / "other.gallery"
    assert main(["import", str(other), str(shard_folder(gallery)), "--json"]) == 1
    doc = check_schema("import", json.loads(capsys.readouterr().out))
    assert doc["kind"] == "enroll-shard" and doc["sources_added"] == 9 and doc["failed"] == 1
    with facedex.Gallery.open(gallery) as a, facedex.Gallery.open(other) as b:
        assert _state(a) == _state(b)


def test_embed_files_gives_every_face_for_batch_jobs(local_ray, tmp_path):
    from facedex.engines.ray import RayOptions, embed_files
    from facedex.gallery.export import iter_rows

    files = [lfw_image("Colin_Powell", 10), lfw_image("Hugo_Chavez", 1)]
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        run = embed_files(g, files, options=RayOptions(actors=1, shards=tmp_path / "shards"))
        local = [g.pipeline.detector.detect(facedex.media.load_image(f)) for f in files]
    rows = [r for f in run.shard_files for r in [*iter_rows(f)]]
    paths = [p for r in rows for p in r["path"]]
    assert paths.count(str(files[0])) == len(local[0]) == 3 and paths.count(str(files[1])) == len(local[1])
    assert all(q > 0 for r in rows for q in r["quality"])


# --- facedex index --engine ray --------------------------------------------------------------------
@pytest.fixture(scope="module")
def photo_library(tmp_path_factory):
    """Seven LFW photos (one with three faces), a photo without a face, a broken
    JPEG, an animated GIF (indexed locally whatever the engine) and a text file."""
    from PIL import Image

    root = tmp_path_factory.mktemp("photos")
    (root / "trip").mkdir()
    files = [lfw_image("Colin_Powell", 10), *lfw_images("Hugo_Chavez")[:3], *lfw_images("Serena_Williams")[:3]]
    for i, f in enumerate(files):
        shutil.copy(f, root / ("trip" if i % 2 else ".") / f.name)
    Image.new("RGB", (200, 150), (120, 130, 140)).save(root / "wall.png")
    (root / "trip" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    frames = [Image.open(f).convert("RGB") for f in lfw_images("Tony_Blair")[:2]]
    frames[0].save(root / "blink.gif", save_all=True, append_images=frames[1:], duration=400, loop=0)
    (root / "notes.txt").write_text("not a photo")
    return root


def _library(gallery_path):
    """source → [(box, embedding, quality, has crop)] sorted by box, and the items' kinds."""
    from facedex.library import LibraryStore

    with facedex.Gallery.open(gallery_path) as g:
        lib = LibraryStore(g.store, create=False)
        table = lib.table()
        found = lib.sightings(table.ids)
        out: dict[str, list] = {}
        for sid, vec, q in zip(table.ids, table.vectors, table.quality):
            s = found[int(sid)]
            out.setdefault(s.source, []).append((np.asarray(s.box), vec, float(q), bool(lib.crop(int(sid))), s.kind))
        sources = {r[0]: r[1:] for r in g.store._conn.execute(
            "SELECT path, kind, format, width, height FROM library_sources")}
    return {k: sorted(v, key=lambda r: tuple(r[0])) for k, v in out.items()}, sources


def test_ray_index_gives_the_local_engine_s_sightings(local_ray, photo_library, tmp_path, capsys):
    from facedex.cli.main import main

    local = tmp_path / "local.gallery"
    assert main(["index", str(local), str(photo_library), "--json"]) == 1
    want = check_schema("index", json.loads(capsys.readouterr().out))
    assert want["engine"] == "local" and want["ray"] is None
    remote = tmp_path / "ray.gallery"
    assert main(["index", str(remote), str(photo_library), "--engine", "ray", "--ray-actors", "2",
                 "--shard-size", "3", "--json"]) == 1  # the broken file
    doc = check_schema("index", json.loads(capsys.readouterr().out))
    # 9 photos on Ray (the GIF is indexed here), 3 a shard
    assert doc["engine"] == "ray" and doc["ray"]["shards_written"] == 3 and doc["ray"]["images"] == 9
    key = lambda items: sorted((i["path"], i["status"], i["kind"], i["code"] or "", i["sightings"])  # noqa: E731
                               for i in items)
    assert key(doc["items"]) == key(want["items"])
    broken = [i for i in doc["items"] if i["status"] == "failed"]
    assert [(i["path"], i["code"]) for i in broken] == [(str(photo_library / "trip" / "broken.jpg"), "media.corrupt")]
    assert doc["indexed"] == 9 and [s["path"] for s in doc["skipped"]] == [str(photo_library / "notes.txt")]

    a, a_sources = _library(local)
    b, b_sources = _library(remote)
    assert a_sources == b_sources  # same files, kinds, formats and sizes (wall.png: indexed, no face)
    assert sorted(a) == sorted(b) and len(a) == 8  # 7 photos with faces and the GIF
    assert len(b[str(photo_library / "Colin_Powell_0010.jpg")]) == 3
    for source in a:
        assert len(a[source]) == len(b[source]), source
        for (box_a, vec_a, q_a, crop_a, kind_a), (box_b, vec_b, q_b, crop_b, kind_b) in zip(a[source], b[source]):
            np.testing.assert_allclose(box_a, box_b, atol=1.0)
            assert float(vec_a @ vec_b) / float(np.linalg.norm(vec_a) * np.linalg.norm(vec_b)) > 0.999
            assert abs(q_a - q_b) < 0.01 and crop_a and crop_b and kind_a == kind_b


def test_ray_index_resumes_from_its_shards(local_ray, photo_library, tmp_path, capsys):
    from facedex.cli.main import main

    first, shards = tmp_path / "first.gallery", tmp_path / "shards"
    args = [str(photo_library), "--engine", "ray", "--ray-actors", "1", "--shards", str(shards), "--json"]
    assert main(["index", str(first), *args]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ray"]["shards_written"] == 1 and doc["ray"]["shards_skipped"] == 0
    written = sorted(shards.glob("index-*.parquet"))
    assert len(written) == 1
    stamps = [s.stat().st_mtime_ns for s in written]
    # again into the same gallery: nothing changed and nothing is read, but the broken file is tried again
    # (as the local engine does)
    assert main(["index", str(first), *args]) == 1
    doc = check_schema("index", json.loads(capsys.readouterr().out))
    assert doc["unchanged"] == 9 and doc["failed"] == 1 and doc["sightings_added"] == 0
    assert doc["ray"]["images"] == 1
    # a run that stopped after its shards were written: the next one stores them without embedding anything
    second = tmp_path / "second.gallery"
    assert main(["index", str(second), *args]) == 1
    doc = check_schema("index", json.loads(capsys.readouterr().out))
    assert doc["ray"]["shards_written"] == 0 and doc["ray"]["shards_skipped"] == 1 and doc["indexed"] == 9
    assert [s.stat().st_mtime_ns for s in written] == stamps
    a, b = _library(first)[0], _library(second)[0]
    assert {k: [(tuple(r[0]), r[1].tobytes()) for r in v] for k, v in a.items()} == \
        {k: [(tuple(r[0]), r[1].tobytes()) for r in v] for k, v in b.items()}


def test_index_help_says_what_runs_on_ray(capsys):
    from facedex.cli.main import main

    with pytest.raises(SystemExit):
        main(["index", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--engine {local,ray}" in text and "--ray-address" in text
    assert "videos and animated GIFs are indexed in this process" in text


# --- facedex clean --engine ray ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_noisy(tmp_path_factory):
    """Two people: good photos, another person's photo, an upside-down photo, a
    photo without a face, a broken file and an exact copy."""
    from PIL import Image

    root = tmp_path_factory.mktemp("noisy") / "src"
    for person in ("Hugo_Chavez", "Serena_Williams"):
        (root / person).mkdir(parents=True)
        for f in lfw_images(person)[:4]:
            shutil.copy(f, root / person / f.name)
    main = root / "Hugo_Chavez"
    shutil.copy(lfw_image("Tony_Blair", 1), main / "wrong.jpg")
    Image.open(lfw_images("Hugo_Chavez")[5]).rotate(180).save(main / "upside_down.jpg", quality=90)
    Image.new("RGB", (200, 200), (90, 90, 90)).save(main / "wall.jpg")
    (main / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shutil.copy(lfw_images("Hugo_Chavez")[0], main / "copy.jpg")
    return root


def _analyses(dst):
    from facedex.clean.analyze import ROW_COLUMNS, from_row

    with sqlite3.connect(dst / ".facedex-clean" / "cache.sqlite") as db:
        return {r[0]: from_row(r[0], r[1:]) for r in db.execute(f"SELECT sha256, {', '.join(ROW_COLUMNS)} "
                                                                 "FROM analysis")}


def test_ray_clean_gives_the_local_engine_s_analyses_and_decisions(local_ray, tiny_noisy, tmp_path, capsys):
    from facedex.cli.main import main

    def clean(dst, *extra):
        code = main(["clean", str(tiny_noisy), str(dst), "--json", *extra])
        return code, check_schema("clean", json.loads(capsys.readouterr().out))

    code_a, want = clean(tmp_path / "local")
    code_b, got = clean(tmp_path / "ray", "--engine", "ray", "--ray-actors", "2")
    assert code_a == code_b and got["analysed"] == want["analysed"] == 12  # 13 images, one a copy
    key = lambda doc: sorted((r["person"], r["source"], r["reason"]) for r in doc["rejections"])  # noqa: E731
    assert key(got) == key(want)
    assert {r for _, s, r in key(got) if "Hugo_Chavez/" in s} >= {"no_face", "unreadable", "duplicate"}
    assert {k: got[k] for k in ("kept", "rejected", "by_reason")} == {k: want[k] for k in ("kept", "rejected",
                                                                                            "by_reason")}
    a, b = _analyses(tmp_path / "local"), _analyses(tmp_path / "ray")
    assert sorted(a) == sorted(b)
    assert sum(x.rotation == 2 for x in b.values()) == 1  # the upside-down photo, recovered on Ray too
    for sha in a:
        x, y = a[sha], b[sha]
        assert (x.width, x.height, x.rotation, len(x.faces), bool(x.error)) == \
            (y.width, y.height, y.rotation, len(y.faces), bool(y.error))
        for f, g in zip(x.faces, y.faces):
            np.testing.assert_allclose(f.face.box, g.face.box, atol=1.0)
            assert float(f.embedding @ g.embedding) / float(np.linalg.norm(f.embedding) *
                                                           np.linalg.norm(g.embedding)) > 0.999
    # again: every analysis is in the cache, nothing goes to Ray
    code_c, again = clean(tmp_path / "ray", "--engine", "ray")
    assert code_c == code_b and again["analysed"] == 0 and again["reused_from_cache"] == 12
    assert key(again) == key(got)


def test_ray_clean_of_a_folder_without_bad_files(local_ray, tmp_path, capsys):
    # a batch in which no image fails: Ray Data turns the all-None error column into
    # NaN, which must not read back as an error (every image was once "unreadable")
    from facedex.cli.main import main

    src = tmp_path / "src"
    for person in ("Hugo_Chavez", "Serena_Williams"):
        (src / person).mkdir(parents=True)
        for f in lfw_images(person)[:3]:
            shutil.copy(f, src / person / f.name)
    assert main(["clean", str(src), str(tmp_path / "ray"), "--json", "--engine", "ray"]) == 0
    got = check_schema("clean", json.loads(capsys.readouterr().out))
    assert got["analysed"] == 6 and got["kept"] == 6 and got["rejected"] == 0
    assert not any(a.error for a in _analyses(tmp_path / "ray").values())
