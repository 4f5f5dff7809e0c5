"""The gallery on real faces: enroll, identify, unknown, incremental, forget,
embedder mismatch, calibration, and bad input in a batch."""

from __future__ import annotations

import shutil
import sqlite3

import numpy as np
import pytest

import facedex
from facedex import models
from facedex.identify import person_templates
from facedex.errors import (
    CalibrationError,
    ConfigError,
    EmbedderMismatchError,
    GalleryError,
    GalleryNotFoundError,
    MediaNotFoundError,
    PersonNotFoundError,
)
from facedex.faces.detect import central_face
from facedex.media import load_image

from .conftest import KNOWN, lfw_image, lfw_images, make_people, strangers


def _central_identification(gallery, path):
    rgb = load_image(path)
    ids = gallery.identify(rgb)
    face = central_face([i.face for i in ids], rgb.shape[1], rgb.shape[0])
    return next(i for i in ids if i.face == face)


def test_enrolled_people_and_counts(base_gallery):
    with facedex.Gallery.open(base_gallery) as g:
        people = {p.name: p for p in g.people()}
        assert sorted(people) == sorted(KNOWN)
        assert all(p.faces == 6 and p.sources == 6 for p in people.values())
        assert g.counts() == {"people": 8, "sources": 48, "faces": 48}
        assert g.store.integrity_check() == []
        assert g.embedder_card.id == models.get_card("sface-2021dec").id


def test_held_out_images_are_identified(base_gallery, enrolled_split):
    _, held_out = enrolled_split
    with facedex.Gallery.open(base_gallery) as g:
        results = [(p, _central_identification(g, f)) for p, files in held_out.items() for f in files]
    correct = sum(r.name == p for p, r in results)
    wrong = [(p, r.name) for p, r in results if r.name not in (p, None)]
    assert correct >= 0.9 * len(results), results
    assert not wrong, f"named the wrong person: {wrong}"
    for _, r in results:
        assert r.candidates[0].similarity == r.similarity
        assert list(r.candidates) == sorted(r.candidates, key=lambda c: -c.similarity)


def test_strangers_are_unknown(base_gallery):
    with facedex.Gallery.open(base_gallery) as g:
        results = [_central_identification(g, f) for f in strangers(25)]
    named = [(r.name, round(r.similarity, 3)) for r in results if r.name is not None]
    assert len(named) <= 1, f"strangers matched as known people: {named}"
    assert all(r.candidates for r in results)  # the closest people are still reported


def test_every_face_in_a_group_photo_gets_its_own_decision(base_gallery):
    with facedex.Gallery.open(base_gallery) as g:
        ids = g.identify(lfw_image("Colin_Powell", 10))
    assert len(ids) == 3
    assert [i.name for i in ids].count("Colin_Powell") == 1
    assert sum(i.name is None for i in ids) == 2


def test_enrollment_is_incremental(gallery_copy, enrolled_split, tmp_path):
    enrolled, _ = enrolled_split
    root = make_people(tmp_path / "people", enrolled)
    with facedex.Gallery.open(gallery_copy) as g:
        again = g.enroll(root, multiple="largest")
        assert again.added == 0 and again.skipped == 48 and again.failed == 0
        shutil.copy(lfw_images("Tony_Blair")[20], root / "Tony_Blair")
        shutil.copy(lfw_images("Tony_Blair")[0], root / "Tony_Blair" / "copy-of-first.jpg")  # same bytes
        more = g.enroll(root, multiple="largest")
        assert more.added == 1 and more.skipped == 49
        assert {p.name: p.faces for p in g.people()}["Tony_Blair"] == 7
        assert g.store.integrity_check() == []


def test_enroll_one_person_from_files_and_arrays(gallery_copy):
    with facedex.Gallery.open(gallery_copy) as g:
        files = lfw_images("George_W_Bush")[:3]
        report = g.enroll(files, person="George W. Bush", multiple="largest")
        assert report.added == 3
        arr = load_image(lfw_images("George_W_Bush")[3])
        assert g.enroll([arr], person="George W. Bush", multiple="largest").added == 1
        assert g.enroll([arr], person="George W. Bush", multiple="largest").skipped == 1
        assert _central_identification(g, lfw_images("George_W_Bush")[10]).name == "George W. Bush"


def test_forget_erases_every_trace(gallery_copy):
    with facedex.Gallery.open(gallery_copy) as g:
        before = _central_identification(g, lfw_image("Tony_Blair", 8))
        assert before.name == "Tony_Blair"
        table = g.store.embeddings()
        label = table.names.index("Tony_Blair")
        blobs = [v.astype("<f4").tobytes() for v in table.vectors[table.labels == label]]
        removed = g.forget("Tony_Blair")
        assert removed == {"faces": 6, "sources": 6}
        assert "Tony_Blair" not in {p.name for p in g.people()}
        after = _central_identification(g, lfw_image("Tony_Blair", 8))
        assert after.name != "Tony_Blair"
        assert all(c.name != "Tony_Blair" for c in after.candidates)
        with pytest.raises(PersonNotFoundError):
            g.forget("Tony_Blair")
    raw = gallery_copy.read_bytes()
    for blob in blobs:
        assert blob not in raw, "an embedding of the forgotten person survived in the file"
        assert blob[:64] not in raw
    assert b"Tony_Blair" not in raw
    conn = sqlite3.connect(gallery_copy)
    assert conn.execute("SELECT COUNT(*) FROM sources WHERE path LIKE '%Tony_Blair%'").fetchone()[0] == 0
    conn.close()


def test_a_different_embedder_is_refused(gallery_copy, tmp_path):
    other = models.ModelCard.from_dict(dict(models.get_card("sface-2021dec").to_dict(),
                                            name="sface-finetuned", sha256="0" * 64))
    with pytest.raises(EmbedderMismatchError, match="sface-2021dec"):
        facedex.Gallery.open(gallery_copy, embedder=other)
    with facedex.Gallery.open(gallery_copy) as g:
        vec = np.ones((1, 128), np.float32) / np.sqrt(128)
        with pytest.raises(EmbedderMismatchError):
            g.add_embeddings("Someone", vec, other.id)
        with pytest.raises(EmbedderMismatchError, match="dimensions"):
            g.add_embeddings("Someone", np.ones((1, 64), np.float32), g.embedder_card.id)
        assert g.add_embeddings("Someone", vec, g.embedder_card.id) == 1
    # a gallery made with the other card refuses the default embedder's vectors
    new = tmp_path / "other.gallery"
    with facedex.Gallery.open(new, create=True, embedder=other) as g2:
        with pytest.raises(EmbedderMismatchError):
            g2.add_embeddings("x", vec, models.get_card("sface-2021dec").id)
    with pytest.raises(EmbedderMismatchError):
        facedex.Gallery.open(new, embedder="sface-2021dec")


def test_opening_things_that_are_not_galleries(tmp_path):
    with pytest.raises(GalleryNotFoundError, match="facedex enroll"):
        facedex.Gallery.open(tmp_path / "missing.gallery")
    jpeg = tmp_path / "photo.gallery"
    shutil.copy(lfw_image("Tony_Blair", 1), jpeg)
    with pytest.raises(GalleryError, match="not a facedex gallery"):
        facedex.Gallery.open(jpeg)
    other_db = tmp_path / "other.sqlite"
    sqlite3.connect(other_db).execute("CREATE TABLE t(x)").connection.commit()
    with pytest.raises(GalleryError, match="not a facedex gallery"):
        facedex.Gallery.open(other_db)
    with pytest.raises(GalleryError, match="directory"):
        facedex.Gallery.open(tmp_path)


def test_calibration_is_stored_and_used(gallery_copy):
    with facedex.Gallery.open(gallery_copy) as g:
        assert g.threshold.method == "default" and g.threshold.value == pytest.approx(0.47)
        t = g.calibrate(fpir=0.05)
        assert t.method == "calibrated"
        assert t.details["stranger_searches"] == 48 and t.details["people"] == 8
        assert t.details["low_confidence"] is False  # 48 stranger searches >= 1 / 0.05
        assert t.details["measured_fpir"] <= 0.05
        assert t.value == pytest.approx(t.details["threshold_from_data"], abs=1e-5)
        strict = g.calibrate(fpir=0.01)  # would need 100 stranger searches
        assert strict.details["low_confidence"] is True
        assert strict.value >= 0.47  # never below the embedder's default on thin evidence
        t = g.calibrate(fpir=0.05)
    with facedex.Gallery.open(gallery_copy) as g:
        assert g.threshold.value == t.value and g.threshold.method == "calibrated"
        ids = g.identify(lfw_image("Colin_Powell", 8))
        assert all(i.threshold == t.value for i in ids)
        manual = g.set_threshold(0.9)
        assert g.threshold.method == "manual"
        assert all(i.name is None for i in g.identify(lfw_image("Colin_Powell", 8)))
        assert manual.value == 0.9


def test_calibration_needs_two_people(tmp_path):
    with facedex.Gallery.open(tmp_path / "one.gallery", create=True) as g:
        g.enroll(lfw_images("Tony_Blair")[:3], person="Tony_Blair", multiple="largest")
        with pytest.raises(CalibrationError, match="at least 2"):
            g.calibrate()


def test_bad_inputs_are_reported_and_the_rest_enrolled(tmp_path):
    root = make_people(tmp_path / "people", {"Colin_Powell": lfw_images("Colin_Powell")[:3],
                                             "Hugo_Chavez": lfw_images("Hugo_Chavez")[:2]})
    bad = root / "Colin_Powell"
    (bad / "zero.jpg").write_bytes(b"")
    data = lfw_image("Colin_Powell", 5).read_bytes()
    (bad / "truncated.jpg").write_bytes(data[: len(data) // 4])
    (bad / "notes.jpg").write_text("not an image\n")
    from .test_media import _png_header_bomb

    (bad / "bomb.png").write_bytes(_png_header_bomb(30000, 30000))
    (bad / "folder.jpg").mkdir()
    flat = np.full((200, 200, 3), 120, np.uint8)
    from PIL import Image

    Image.fromarray(flat).save(bad / "wall.png")
    (root / "Nobody_Usable").mkdir()
    (root / "Nobody_Usable" / "empty.jpg").write_bytes(b"")
    (root / "Empty_Folder").mkdir()
    (root / "loose.jpg").write_bytes(data)
    (bad / "readme.txt").write_text("ignored: not an image extension")

    gallery = tmp_path / "g.gallery"
    with facedex.Gallery.open(gallery, create=True) as g:
        report = g.enroll(root, multiple="largest")
        failed = {i.path.split("/")[-1]: i.reason for i in report.items if i.status == "failed"}
        assert report.added == 5
        assert set(failed) == {"zero.jpg", "truncated.jpg", "notes.jpg", "bomb.png", "wall.png",
                               "empty.jpg", "Empty_Folder", "loose.jpg"}, failed
        assert "empty" in failed["zero.jpg"]
        assert "decode" in failed["truncated.jpg"]
        assert "text" in failed["notes.jpg"]
        assert "pixels" in failed["bomb.png"]
        assert "no face" in failed["wall.png"]
        assert "person folder" in failed["loose.jpg"]
        for name, reason in failed.items():
            assert name in reason, reason  # every message names its file
        assert sorted(p.name for p in g.people()) == ["Colin_Powell", "Hugo_Chavez"]
        assert g.store.integrity_check() == []
    missing = facedex.Gallery.open(gallery).enroll(tmp_path / "does-not-exist")
    assert missing.failed == 1 and "no such folder" in missing.items[0].reason


def test_a_photo_with_several_faces_is_not_silently_enrolled(tmp_path):
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        r = g.enroll([lfw_image("Colin_Powell", 10)], person="Colin_Powell", multiple="reject")
        assert r.failed == 1 and "3 faces" in r.items[0].reason and "--multiple" in r.items[0].reason
        # auto, with no other photo of him: the largest face only because it clearly dominates, and said so
        r = g.enroll([lfw_image("Colin_Powell", 10)], person="Colin_Powell")
        assert r.added == 1 and "took the largest" in r.items[0].note
        g.forget("Colin_Powell")
        r = g.enroll([lfw_image("Colin_Powell", 10)], person="Colin_Powell", multiple="largest")
        assert r.added == 1
        face = g.store.faces_of("Colin_Powell")[0]
        assert face["box"][2] > 80  # the large central face, not a bystander


def test_identify_paths_carries_on_after_bad_inputs(base_gallery, tmp_path):
    (tmp_path / "bad.jpg").write_text("nope")
    inputs = [lfw_image("Hugo_Chavez", 9), tmp_path / "bad.jpg", tmp_path / "missing.jpg",
              lfw_image("Ariel_Sharon", 9)]
    with facedex.Gallery.open(base_gallery) as g:
        run = facedex.identify_paths(g, inputs)
        assert run.threshold.method == "default" and run.threshold.value == pytest.approx(0.47)
        results = list(run)
    assert [r.ok for r in results] == [True, False, False, True]
    assert "bad.jpg" in results[1].error and "missing.jpg" in results[2].error
    assert results[1].error.code == "media.unsupported" and results[2].error.code == "media.not_found"
    assert all(r.threshold.value == pytest.approx(0.47) for r in results)
    assert any(f.name == "Hugo_Chavez" for f in results[0].faces)
    assert any(f.name == "Ariel_Sharon" for f in results[3].faces)
    with facedex.Gallery.open(base_gallery) as g, pytest.raises(MediaNotFoundError):
        g.identify(tmp_path / "missing.jpg")


def test_threshold_is_resolved_once_and_checked(base_gallery):
    with facedex.Gallery.open(base_gallery) as g:
        for bad in (5, -3, float("nan"), float("inf"), "x"):
            with pytest.raises(ConfigError):
                facedex.identify_paths(g, [lfw_image("Hugo_Chavez", 9)], threshold=bad)
            with pytest.raises(ConfigError):
                g.set_threshold(bad)
        run = facedex.identify_paths(g, [lfw_image("Hugo_Chavez", 9)], threshold=0.99)
        assert run.threshold.method == "override"
        (res,) = list(run)
        assert res.faces and all(f.name is None for f in res.faces)  # nobody reaches 0.99


def test_an_index_that_cannot_be_trained_is_a_clear_error(base_gallery):
    with facedex.Gallery.open(base_gallery, index="IVF1024,Flat") as g, pytest.raises(ConfigError, match="Flat"):
        g.identify(lfw_image("Hugo_Chavez", 9))
    with pytest.raises(ConfigError, match="index"):
        facedex.Gallery.open(base_gallery, index="NotAnIndex")


def test_person_names_are_validated(tmp_path):
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        for bad in ["", "   ", "\x00\x1b\u202e", "x" * 201]:
            r = g.enroll([lfw_image("Hugo_Chavez", 1)], person=bad)
            assert r.failed == 1 and r.items[0].code == "name.invalid"
        # one name rule everywhere: NFC, control characters dropped, spaces collapsed
        r = g.enroll([lfw_image("Hugo_Chavez", 1)], person="  José\tMartí\x1b  ")
        assert r.added == 1 and g.people()[0].name == "José Martí"


def test_enrolling_an_empty_folder_for_a_person_is_reported(tmp_path):
    (tmp_path / "empty").mkdir()
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        r = g.enroll(tmp_path / "empty", person="Nobody")
        assert r.failed == 1 and "no image files" in r.items[0].reason
        assert g.people() == []


def test_person_templates_follow_every_change_by_difference(tmp_path):
    # the template cache re-reads only the people whose faces changed, and always
    # agrees with a full read: enroll, a new person, a removed face, a merge, forget
    from facedex.gallery.templates import TemplateCache
    from facedex.library.people import merge_people, remove_faces

    rng = np.random.default_rng(0)

    def faces(n):
        v = rng.normal(size=(n, 128)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    with facedex.Gallery.open(tmp_path / "t.gallery", create=True) as g:
        card = g.embedder_card.id
        for i in range(30):
            g.add_embeddings(f"P{i:02d}", faces(3), card)
        cache = TemplateCache()

        def check(read):
            got = cache.sync(g.store)
            assert cache.last_read == read
            np.testing.assert_allclose(got, g.store.person_templates(), atol=1e-6)
            table = g.store.embeddings()
            np.testing.assert_allclose(got, person_templates(table.vectors, table.labels, len(table.names)),
                                       atol=1e-5)

        check(None)  # the first sync reads everyone
        check(0)  # nothing changed: nothing read
        g.add_embeddings("P03", faces(2), card)
        check(1)
        g.add_embeddings("Newcomer", faces(1), card)
        check(1)
        victim = g.store.faces_of("P05")[0]["face_id"]
        remove_faces(g, [victim])
        check(1)
        merge_people(g, "P07", "P08")
        check(2 - 1)  # P07 is gone; P08 is read again
        g.forget("P09")
        check(0)  # a person gone: their row dropped, no one read
        for i in range(10, 20):  # many people at once: one full read instead
            g.add_embeddings(f"P{i:02d}", faces(1), card)
        check(None)
