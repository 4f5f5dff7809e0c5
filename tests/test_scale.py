"""Issue #16: large galleries (the approximate index kept beside the gallery,
updated by difference, forget at once), Parquet export / import, the Milvus
search backend, and the generator fitted to real embeddings."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3

import numpy as np
import pytest

import facedex
from facedex import models
from facedex.errors import ConfigError, EmbedderMismatchError, GalleryError
from facedex.gallery import index as index_mod
from facedex.gallery.index import PersistedIndex, PositionSearch, VectorIndex, auto_recipe, index_path, persistable
from tests.conftest import KNOWN, check_schema, lfw_image

pytest.importorskip("pyarrow")

DIM = 128


def _unit(x):
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _clusters(people: int, per: int, seed: int = 0, spread: float = 0.6):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((people, DIM)).astype(np.float32)
    faces = centres[:, None, :] + spread * rng.standard_normal((people, per, DIM)).astype(np.float32)
    return _unit(centres), _unit(faces)


def _embedding_gallery(path, people=60, per=5, seed=0):
    centres, faces = _clusters(people, per, seed)
    with facedex.Gallery.open(path, create=True) as g:
        for p in range(people):
            g.add_embeddings(f"P{p:03d}", faces[p], g.embedder_card.id)
    return centres


@pytest.fixture
def small_exact_limit(monkeypatch):
    """'auto' switches to the persisted approximate index above 100 faces."""
    monkeypatch.setattr(index_mod, "EXACT_UP_TO", 100)


# --- the index ------------------------------------------------------------------------------------
def test_auto_recipe_is_exact_for_small_galleries_and_approximate_above():
    assert auto_recipe(10) == ("Flat", "")
    assert auto_recipe(index_mod.EXACT_UP_TO - 1)[0] == "Flat"
    desc, params = auto_recipe(1_000_000)
    assert desc.endswith("RFlat") and persistable(desc) and "k_factor" in params
    assert not persistable("Flat") and not persistable("HNSW32") and not persistable("HNSW32,RFlat")
    assert persistable("IVF64,SQ8,RFlat") and persistable("PQ16x4fs,RFlat")


@pytest.mark.parametrize("bad", ["k_factor", "nprobe=abc", "nprobe=4"])
def test_bad_search_parameters_are_clear_errors(bad):
    with pytest.raises(ConfigError, match="parameter"):
        VectorIndex(DIM, "Flat" if bad == "nprobe=4" else "IVF8,Flat", bad)


def test_reranked_index_returns_ids_exact_scores_and_removes():
    _, faces = _clusters(200, 5, seed=1)
    x = faces.reshape(-1, DIM)
    ids = np.arange(len(x), dtype=np.int64) * 7 + 3
    approx = VectorIndex(DIM, "PQ16x4fs,RFlat", "k_factor=64")
    approx.add(x, ids)
    exact = VectorIndex(DIM, "Flat")
    exact.add(x, ids)
    q = x[::37]
    sa, ia = approx.search(q, 5)
    se, ie = exact.search(q, 5)
    assert (ia == ie).all()
    np.testing.assert_allclose(sa, se, atol=1e-5)  # re-ranked: exact similarities, not code estimates
    gone = ids[:50]
    assert approx.remove(gone) == 50
    s2, i2 = approx.search(x[:50], 10)
    assert not np.isin(i2, gone).any()
    assert approx.ntotal == len(x) - 50
    # more results asked than there are: padded the faiss way
    small = VectorIndex(DIM, "PQ16x4fs,RFlat")
    small.train(x)
    small.add(x[:3], ids[:3])
    s, i = small.search(x[:1], 5)
    assert list(i[0, 3:]) == [-1, -1] and np.isneginf(s[0, 3:]).all()


def test_position_search_drops_faces_no_longer_in_the_store():
    _, faces = _clusters(10, 3, seed=2)
    x = faces.reshape(-1, DIM)
    ids = np.arange(100, 100 + len(x), dtype=np.int64)
    ix = VectorIndex(DIM, "Flat")
    ix.add(x, ids)
    table = np.delete(ids, [0, 1, 2])  # the first person's faces were removed from the store
    sims, pos = PositionSearch(ix, table).search(x[:1], 6)
    assert (pos[0, :3] >= 0).all() and (pos[0, 3:] == -1).all()
    assert 0 not in set(table[pos[0, :3]] - 100)  # never the removed faces, never shifted onto someone else
    assert all(table[p] not in ids[:3] for p in pos[0] if p >= 0)


# --- the index kept beside a large gallery -------------------------------------------------------
def test_large_gallery_keeps_its_index_beside_it_and_answers_like_exact(tmp_path, small_exact_limit):
    path = tmp_path / "big.gallery"
    centres = _embedding_gallery(path)
    q = _unit(centres + 0.3 * np.random.default_rng(5).standard_normal(centres.shape).astype(np.float32))
    with facedex.Gallery.open(path, index="Flat") as exact:
        want = exact.decide(q, threshold=0.3)
    with facedex.Gallery.open(path) as g:
        got = g.decide(q, threshold=0.3)
        assert g.index_recipe()[0] == auto_recipe(10**6)[0]
    assert index_path(path).exists()
    assert [d.name for d in got] == [d.name for d in want]
    np.testing.assert_allclose([d.similarity for d in got], [d.similarity for d in want], atol=1e-5)
    header = PersistedIndex.read_header(index_path(path))
    assert header["faces"] == 300 and header["description"] == auto_recipe(10**6)[0]
    # reopening loads the file instead of building
    with facedex.Gallery.open(path) as g:
        g.decide(q[:1], threshold=0.3)
        assert g._persisted.info.changes == {}
        assert g._persisted.info.built_at == header["built_at"]


def test_enroll_updates_the_index_incrementally_and_forget_removes_at_once(tmp_path, small_exact_limit):
    path = tmp_path / "big.gallery"
    centres = _embedding_gallery(path)
    with facedex.Gallery.open(path) as g:
        g.decide(centres[:1], threshold=0.3)
        new = _unit(np.random.default_rng(9).standard_normal((2, DIM)))
        g.add_embeddings("Newcomer", new, g.embedder_card.id)
        changes = g.update_index()
        assert changes == {"rebuilt": 0, "added": 2, "removed": 0}
        assert g.decide(new[:1], threshold=0.5)[0].name == "Newcomer"
        forgotten = g.store.vectors_of("P007")
        face_ids = [f["face_id"] for f in g.store.faces_of("P007")]
        g.forget("P007")
        assert g._persisted.info.changes["removed"] == 5
        for d in g.decide(forgotten, threshold=-1.0):  # even at the lowest threshold
            assert d.name != "P007" and all(c.name != "P007" for c in d.candidates)
    raw = index_path(path).read_bytes()
    for v in forgotten:
        assert v.astype("<f4").tobytes() not in raw, "the forgotten face's vector survived in the index file"
    for fid in face_ids:
        assert np.int64(fid).tobytes() not in raw[: 200 + 8 * 400]
    # a new face never takes a forgotten face's id
    with facedex.Gallery.open(path) as g:
        g.forget("Newcomer")
        high = max(int(i) for i in g.store.face_ids())
        g.add_embeddings("Later", new, g.embedder_card.id)
        assert min(f["face_id"] for f in g.store.faces_of("Later")) > high + 2


def test_forget_reaches_the_index_file_from_a_process_that_searches_exactly(tmp_path, small_exact_limit):
    path = tmp_path / "big.gallery"
    centres = _embedding_gallery(path)
    with facedex.Gallery.open(path) as g:
        g.decide(centres[:1], threshold=0.3)  # builds the file
    with facedex.Gallery.open(path, index="Flat") as exact:
        vec = exact.store.vectors_of("P003")
        exact.forget("P003")
    raw = index_path(path).read_bytes()
    assert vec[0].astype("<f4").tobytes() not in raw
    assert PersistedIndex.read_header(index_path(path))["faces"] == 295


def test_changes_by_another_program_are_picked_up(tmp_path, small_exact_limit):
    path = tmp_path / "big.gallery"
    centres = _embedding_gallery(path)
    with facedex.Gallery.open(path) as a, facedex.Gallery.open(path) as b:
        a.decide(centres[:1], threshold=0.3)
        conn = sqlite3.connect(path)  # an edit the index was not told about (as `people --remove-face` does)
        conn.execute("DELETE FROM faces WHERE person_id = (SELECT id FROM people WHERE name = 'P010')")
        conn.execute("DELETE FROM people WHERE name = 'P010'")
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'generation'")
        conn.commit()
        conn.close()
        for g in (a, b):
            d = g.decide(centres[10:11], threshold=-1.0)[0]
            assert d.name != "P010" and all(c.name != "P010" for c in d.candidates)


def test_an_index_file_of_another_gallery_is_not_used(tmp_path, small_exact_limit):
    one, two = tmp_path / "one.gallery", tmp_path / "two.gallery"
    _embedding_gallery(one, seed=1)
    centres = _embedding_gallery(two, seed=2)
    with facedex.Gallery.open(one) as g:
        g.decide(centres[:1], threshold=0.3)
    shutil.copy(index_path(one), index_path(two))
    with facedex.Gallery.open(two) as g:
        d = g.decide(centres[4:5], threshold=0.3)[0]
        assert g._persisted.info.changes["rebuilt"] == 1
        assert d.name == "P004"


# --- Parquet -----------------------------------------------------------------------------------------
def _gallery_state(path):
    with facedex.Gallery.open(path) as g:
        people = {p.name: (p.faces, p.sources) for p in g.people()}
        faces = {n: sorted((f["path"], f["sha256"], tuple(f["box"]), json.dumps(f["landmarks"]),
                            f["detection_score"]) for f in g.store.faces_of(n)) for n in people}
        table = g.store.embeddings()
        vecs = {}
        for n in people:
            vecs[n] = sorted(v.tobytes() for v in table.vectors[table.labels == table.names.index(n)])
        return people, faces, vecs, g.threshold


def test_export_import_round_trip_is_lossless(gallery_copy, tmp_path):
    from facedex.gallery.export import export_parquet, import_parquet, read_meta
    from facedex.gallery.store import FaceRecord, GalleryStore, SourceRecord

    with facedex.Gallery.open(gallery_copy) as g:
        g.calibrate(0.05)
        odd = os.fsdecode(b"/photos/caf\xe9.jpg")  # a path that is not UTF-8: kept byte for byte
        v = _unit(np.random.default_rng(3).standard_normal(DIM))
        g.store.add_sources([SourceRecord("Odd Path", odd, "ab" * 32, [FaceRecord((1, 2, 3, 4), ((1, 1),) * 5, 0.9, v)])],
                            g.embedder_card.id)
        g.add_embeddings("Only Embedding", v, g.embedder_card.id)
    out = tmp_path / "g.parquet"
    store = GalleryStore.open(gallery_copy)
    rep = export_parquet(store, out)
    store.close()
    assert rep.faces == 8 * 6 + 2 and read_meta(out)["embedder"]["id"] == models.get_card("sface-2021dec").id
    new = tmp_path / "new.gallery"
    with facedex.Gallery.open(new, create=True) as g:
        r = import_parquet(g.store, [out])
        assert r.faces_added == rep.faces and r.threshold == "imported"
        again = import_parquet(g.store, [out])  # importing twice adds no source again
        assert again.sources_added == 0 and again.sources_skipped == rep.sources
        g.forget("Only Embedding")  # the embedding-only face was added twice: the one thing that is
    with facedex.Gallery.open(gallery_copy) as g:
        g.forget("Only Embedding")
    a, b = _gallery_state(gallery_copy), _gallery_state(new)
    assert a[0] == b[0] and a[1] == b[1] and a[2] == b[2]
    assert a[3].value == b[3].value and a[3].method == b[3].method
    assert odd in {f[0] for f in b[1]["Odd Path"]}
    # identical answers on real held-out photos
    with facedex.Gallery.open(gallery_copy) as g1, facedex.Gallery.open(new) as g2:
        for person in KNOWN[:3]:
            photo = lfw_image(person, 8)
            x = [(i.name, round(i.similarity, 6)) for i in g1.identify(photo)]
            y = [(i.name, round(i.similarity, 6)) for i in g2.identify(photo)]
            assert x == y and x[0][0] == person


def test_import_refuses_another_embedder_and_foreign_files(base_gallery, tmp_path):
    from facedex.gallery.export import export_parquet, import_parquet
    from facedex.gallery.store import GalleryStore

    out = tmp_path / "g.parquet"
    store = GalleryStore.open(base_gallery)
    export_parquet(store, out)
    store.close()
    other = models.ModelCard.from_dict(dict(models.get_card("sface-2021dec").to_dict(), name="sface-finetuned",
                                            sha256="0" * 64))
    with facedex.Gallery.open(tmp_path / "other.gallery", create=True, embedder=other) as g:
        with pytest.raises(EmbedderMismatchError, match="refusing"):
            import_parquet(g.store, [out])
        assert g.counts()["faces"] == 0
        plain = tmp_path / "plain.parquet"
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.table({"x": [1]}), plain)
        with pytest.raises(GalleryError, match="not written by facedex"):
            import_parquet(g.store, [plain])
        (tmp_path / "junk.parquet").write_text("not parquet")
        with pytest.raises(GalleryError, match="not a Parquet file"):
            import_parquet(g.store, [tmp_path / "junk.parquet"])


def test_cli_export_and_import(base_gallery, tmp_path, capsys):
    from facedex.cli.main import main

    out = tmp_path / "x.parquet"
    assert main(["export", str(base_gallery), str(out), "--json"]) == 0
    doc = check_schema("export", json.loads(capsys.readouterr().out))
    assert doc["faces"] == 48 and out.exists()
    new = tmp_path / "n.gallery"
    assert main(["import", str(new), str(out), "--json"]) == 0
    doc = check_schema("import", json.loads(capsys.readouterr().out))
    assert doc["faces_added"] == 48 and doc["totals"]["people"] == 8 and doc["kind"] == "gallery"
    assert main(["import", str(new), str(tmp_path / "missing.parquet"), "--json"]) == 2
    assert check_schema("error", json.loads(capsys.readouterr().out))["error"]["code"].startswith("gallery")


# --- Milvus -------------------------------------------------------------------------------------------
def test_milvus_backend_gives_the_same_answers_and_forgets(gallery_copy, tmp_path, enrolled_split):
    pytest.importorskip("pymilvus")
    from facedex.evaluate.lfw import embed_central_faces

    _, held_out = enrolled_split
    photos = [p for files in held_out.values() for p in files[:2]]
    with facedex.Gallery.open(gallery_copy) as g:
        probes = embed_central_faces(photos, g.pipeline).vectors
        want = g.decide(probes)
        config = g.set_search_backend("milvus", uri="faces.db")  # relative to the gallery's folder
        assert (tmp_path / "faces.db").exists() and config["index_type"] == "FLAT"
        got = g.decide(probes)
        assert [d.name for d in got] == [d.name for d in want]
        np.testing.assert_allclose([d.similarity for d in got], [d.similarity for d in want], atol=1e-4)
        assert [[c.name for c in d.candidates] for d in got] == [[c.name for c in d.candidates] for d in want]
    # another program opening the gallery searches Milvus too; forget reaches it at once
    with facedex.Gallery.open(gallery_copy) as g:
        assert g.search_backend()["engine"] == "milvus"
        blair = g.store.vectors_of("Tony_Blair")
        g.forget("Tony_Blair")
        assert g._remote.info.changes["removed"] == 6
        count = g._remote.client.query(g._remote.collection, filter="face_id >= 0", output_fields=["count(*)"])
        assert count[0]["count(*)"] == 42
        for d in g.decide(blair, threshold=-1.0):
            assert all(c.name != "Tony_Blair" for c in d.candidates)
        # back to faiss: the Milvus copy goes (it would no longer follow forget)
        g.set_search_backend("faiss")
        import pymilvus

        client = pymilvus.MilvusClient(str(tmp_path / "faces.db"))
        assert not client.has_collection(config["collection"])
        client.close()


def test_cli_backend(gallery_copy, tmp_path, capsys):
    pytest.importorskip("pymilvus")
    from facedex.cli.main import main

    assert main(["backend", str(gallery_copy), "--json"]) == 0
    doc = check_schema("backend", json.loads(capsys.readouterr().out))
    assert doc["engine"] == "faiss" and doc["exact"] is True and doc["faces"] == 48
    assert main(["backend", str(gallery_copy), "milvus", "--uri", str(tmp_path / "m.db"), "--json"]) == 0
    doc = check_schema("backend", json.loads(capsys.readouterr().out))
    assert doc["engine"] == "milvus" and doc["collection"].startswith("facedex_")
    assert main(["backend", str(gallery_copy), "milvus", "--json"]) == 2  # no --uri
    capsys.readouterr()
    assert main(["backend", str(gallery_copy), "faiss", "--uri", "x", "--json"]) == 2
    capsys.readouterr()


# --- the generator -------------------------------------------------------------------------------------
def test_generator_recovers_the_spread_it_was_fitted_on():
    from facedex.evaluate.synthetic import FaceGenerator

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((400, DIM)).astype(np.float32) * 0.1
    counts = rng.integers(1, 8, 400)
    labels = np.repeat(np.arange(400), counts)
    x = _unit(centres[labels] + 0.07 * rng.standard_normal((len(labels), DIM)).astype(np.float32))
    gen = FaceGenerator.fit(x, labels)
    data = gen.sample_gallery(3000, probes=200, strangers=100, seed=1)
    assert data.gallery.shape == (3000, DIM) and data.genuine.shape == (200, DIM)
    np.testing.assert_allclose(np.linalg.norm(data.gallery, axis=1), 1, atol=1e-5)

    def same_cos(v, lab):
        s = v @ v.T
        m = (lab[:, None] == lab[None, :]) & ~np.eye(len(lab), dtype=bool)
        return s[m].mean(), s[~m & ~np.eye(len(lab), dtype=bool)].mean()

    real, fake = same_cos(x[:1500], labels[:1500]), same_cos(data.gallery[:1500], data.labels[:1500])
    assert abs(real[0] - fake[0]) < 0.05 and abs(real[1] - fake[1]) < 0.05
    assert set(np.unique(data.genuine_labels)) <= set(np.unique(data.labels))
    with pytest.raises(ConfigError):
        FaceGenerator.fit(x[:5], labels[:5])
