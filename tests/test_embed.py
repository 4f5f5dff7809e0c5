"""Embeddings of real LFW faces: unit length, same person closer than different people."""

from __future__ import annotations

import numpy as np
import pytest

from facedex.errors import ConfigError
from facedex.faces.detect import central_face
from facedex.media import load_image
from facedex.pipeline import FacePipeline

from .conftest import LFW, PAIRS


@pytest.fixture(scope="module")
def pipeline():
    return FacePipeline()


def _embed_central(pipeline, path):
    rgb = load_image(path)
    face = central_face(pipeline.detector.detect(rgb), rgb.shape[1], rgb.shape[0])
    assert face is not None, path
    return pipeline.embed_faces(rgb, [face])[0]


def _pairs(fold: int = 0):
    lines = PAIRS.read_text().split("\n")[1:]
    same, diff = [], []
    for line in lines[fold * 600 : fold * 600 + 600]:
        t = line.split()
        if len(t) == 3:
            same.append((LFW / t[0] / f"{t[0]}_{int(t[1]):04d}.jpg", LFW / t[0] / f"{t[0]}_{int(t[2]):04d}.jpg"))
        elif len(t) == 4:
            diff.append((LFW / t[0] / f"{t[0]}_{int(t[1]):04d}.jpg", LFW / t[2] / f"{t[2]}_{int(t[3]):04d}.jpg"))
    return same, diff


def test_same_person_is_more_similar_than_different_people(pipeline):
    same, diff = _pairs()
    same, diff = same[::10], diff[::10]  # 30 + 30 pairs of the first fold
    s_same = np.array([_embed_central(pipeline, a) @ _embed_central(pipeline, b) for a, b in same])
    s_diff = np.array([_embed_central(pipeline, a) @ _embed_central(pipeline, b) for a, b in diff])
    assert s_same.mean() - s_diff.mean() > 0.35
    # SFace's 1 %-FAR threshold on single pairs is ~0.29; nearly every pair falls on its side
    accuracy = ((s_same >= 0.29).sum() + (s_diff < 0.29).sum()) / (len(s_same) + len(s_diff))
    assert accuracy >= 0.95


def test_embeddings_are_unit_length_and_deterministic(pipeline):
    path = LFW / "Tony_Blair" / "Tony_Blair_0001.jpg"
    a = _embed_central(pipeline, path)
    b = _embed_central(pipeline, path)
    assert a.shape == (128,) and a.dtype == np.float32
    assert abs(np.linalg.norm(a) - 1) < 1e-5
    assert np.array_equal(a, b)


def test_embedding_a_batch_equals_embedding_one_by_one(pipeline):
    rgb = load_image(LFW / "Colin_Powell" / "Colin_Powell_0010.jpg")  # several faces
    faces = pipeline.detector.detect(rgb)
    assert len(faces) >= 2
    together = pipeline.embed_faces(rgb, faces)
    alone = np.stack([pipeline.embed_faces(rgb, [f])[0] for f in faces])
    assert np.allclose(together, alone, atol=1e-5)


def test_crops_of_the_wrong_size_are_refused(pipeline):
    with pytest.raises(ConfigError, match="112x112x3"):
        pipeline.embedder.embed_crops([np.zeros((100, 100, 3), np.uint8)])


def test_dlib_embedder_separates_people_and_has_its_own_identity(tmp_path):
    """The optional dlib ResNet (face_recognition's model) as a facedex embedder."""
    import facedex
    from facedex.errors import EmbedderMismatchError

    pipe = FacePipeline(embedder="dlib-resnet-v1")
    same, diff = _pairs()
    same, diff = same[:8], diff[:8]
    s_same = np.array([_embed_central(pipe, a) @ _embed_central(pipe, b) for a, b in same])
    s_diff = np.array([_embed_central(pipe, a) @ _embed_central(pipe, b) for a, b in diff])
    assert s_same.min() > s_diff.max() - 0.05 and s_same.mean() - s_diff.mean() > 0.1
    chip = pipe.embedder.align(load_image(same[0][0]), pipe.detector.detect(load_image(same[0][0]))[0])
    assert chip.shape == (150, 150, 3)
    g = tmp_path / "dlib.gallery"
    people = {"Colin": "Colin_Powell", "Tony": "Tony_Blair", "Hugo": "Hugo_Chavez"}
    with facedex.Gallery.open(g, create=True, embedder="dlib-resnet-v1") as gal:
        for name, folder in people.items():
            files = sorted((LFW / folder).glob("*.jpg"))[:3]
            assert gal.enroll(files, person=name, multiple="largest").added == 3
    with pytest.raises(EmbedderMismatchError, match="dlib-resnet-v1"):
        facedex.Gallery.open(g, embedder="sface-2021dec")
    with facedex.Gallery.open(g) as gal:  # reopened with its own embedder and its default threshold
        assert gal.embedder_card.name == "dlib-resnet-v1"
        assert gal.threshold.value == pytest.approx(0.947)
        for name, folder in people.items():
            probe = sorted((LFW / folder).glob("*.jpg"))[20]
            rgb = load_image(probe)
            ids = gal.identify(rgb)
            face = central_face([i.face for i in ids], rgb.shape[1], rgb.shape[0])
            best = next(i for i in ids if i.face == face)
            assert best.candidates[0].name == name
