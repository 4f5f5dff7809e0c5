"""Issue #16: ``enroll --engine ray`` on a local Ray (2 CPUs) gives the same
people, faces and answers as the local engine; it resumes from its shards;
the shards load into a gallery with ``facedex import``; ``embed_files`` gives
every face of each file for other batch jobs."""

from __future__ import annotations

import json
import shutil

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
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
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
