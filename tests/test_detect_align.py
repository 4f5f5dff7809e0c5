"""Detection and alignment on real LFW faces."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

import facedex
from facedex.errors import ConfigError
from facedex.faces.align import TEMPLATE_112, align_face, similarity_transform
from facedex.faces.detect import DetectorConfig, YuNetDetector, central_face
from facedex.media import load_image

from .conftest import KNOWN, lfw_image, lfw_images


def test_detects_the_central_face_in_lfw_images():
    files = [lfw_images(p)[0] for p in KNOWN]
    for f in files:
        rgb = load_image(f)
        faces = facedex.detect(rgb)
        face = central_face(faces, 250, 250)
        assert face is not None, f
        x, y, w, h = face.box
        cx, cy = x + w / 2, y + h / 2
        assert abs(cx - 125) < 30 and abs(cy - 125) < 40, (f, face.box)
        assert 60 < w < 160 and 60 < h < 200
        assert 0.5 < face.score <= 1.0
        lm = face.landmarks_array()
        # landmarks lie inside the box, eyes above nose above mouth, left/right in order
        assert (lm[:, 0] > x).all() and (lm[:, 0] < x + w).all()
        assert lm[0, 1] < lm[2, 1] < lm[3, 1] and lm[1, 1] < lm[2, 1] < lm[4, 1]
        assert lm[0, 0] < lm[1, 0] and lm[3, 0] < lm[4, 0]


def test_batch_detection_equals_one_by_one():
    images = [load_image(f) for f in lfw_images("Tony_Blair")[:6]]
    images.append(cv2.resize(images[0], (400, 300)))  # a different padded size in the same batch
    det = YuNetDetector()
    batch = det.detect_batch(images)
    for im, faces in zip(images, batch):
        single = det.detect(im)
        assert len(single) == len(faces)
        for a, b in zip(single, faces):
            assert np.allclose(a.box, b.box, atol=1e-3)


def test_large_image_is_detected_reduced_and_mapped_back():
    rgb = load_image(lfw_image("Colin_Powell", 1))
    small = central_face(facedex.detect(rgb), 250, 250)
    big = cv2.resize(rgb, (1500, 1500), interpolation=cv2.INTER_CUBIC)  # 6x
    det = YuNetDetector(config=DetectorConfig(max_side=640))
    face = central_face(det.detect(big), 1500, 1500)
    assert face is not None
    # exactly the detection on the reduced image, scaled back
    reduced = cv2.resize(big, (640, 640), interpolation=cv2.INTER_AREA)
    ref = central_face(YuNetDetector().detect(reduced), 640, 640)
    assert np.allclose(face.box, np.array(ref.box) * 1500 / 640, atol=1e-2)
    # and, loosely, the face of the original image (the detector's box varies with scale)
    assert np.allclose(np.array(face.box) / 6, small.box, atol=12)
    assert np.allclose(face.landmarks_array() / 6, small.landmarks_array(), atol=4)


def test_face_in_a_corner_of_a_large_canvas_keeps_its_coordinates():
    rgb = load_image(lfw_image("Hugo_Chavez", 1))
    canvas = np.full((2000, 3000, 3), 127, np.uint8)
    canvas[1500:1750, 2600:2850] = rgb
    faces = facedex.detect(canvas, min_face=10)
    ref = central_face(facedex.detect(rgb), 250, 250)
    assert faces
    box = faces[0].box
    assert abs(box[0] - (ref.box[0] + 2600)) < 12 and abs(box[1] - (ref.box[1] + 1500)) < 12


def test_minimum_face_size_filters_small_faces():
    rgb = load_image(lfw_image("Colin_Powell", 1))
    tiny = cv2.resize(rgb, (100, 100), interpolation=cv2.INTER_AREA)  # face ~40 px
    assert facedex.detect(tiny, min_face=20)
    assert not facedex.detect(tiny, min_face=60)


def test_no_face_in_background_crops():
    rgb = load_image(lfw_image("Colin_Powell", 1))
    flat = np.full((240, 320, 3), 90, np.uint8)
    assert facedex.detect(flat) == []
    corner = cv2.resize(rgb[:40, :40], (200, 200))
    assert facedex.detect(corner) == []


@pytest.mark.parametrize("bad", [dict(min_score=0), dict(min_face=-1), dict(max_side=10),
                                 dict(nms_threshold=2), dict(batch_size=0)])
def test_detector_config_is_validated(bad):
    with pytest.raises(ConfigError):
        DetectorConfig(**bad)


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, t = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = scale * src @ rot.T + t
    m = similarity_transform(src, dst)
    assert np.allclose(m[:, :2], scale * rot, atol=1e-9)
    assert np.allclose(m[:, 2], t, atol=1e-9)


def test_alignment_puts_landmarks_on_the_template():
    for person in KNOWN[:4]:
        rgb = load_image(lfw_image(person, 1))
        face = central_face(facedex.detect(rgb), 250, 250)
        lm = face.landmarks_array()
        crop = align_face(rgb, lm)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        m = similarity_transform(lm, TEMPLATE_112)
        mapped = np.c_[lm, np.ones(5)] @ m.T
        # a similarity cannot fit five points exactly (a turned head moves the nose), but close
        assert np.abs(mapped - TEMPLATE_112).mean() < 4 and np.abs(mapped - TEMPLATE_112).max() < 12
        # and the aligned crop itself holds a face where the template expects it
        faces = facedex.detect(cv2.copyMakeBorder(crop, 40, 40, 40, 40, cv2.BORDER_CONSTANT), min_face=10)
        assert faces
        got = faces[0].landmarks_array() - 40
        assert np.abs(got - TEMPLATE_112).mean() < 5


def test_alignment_of_a_very_large_face_does_not_alias():
    rgb = load_image(lfw_image("Colin_Powell", 1))
    face = central_face(facedex.detect(rgb), 250, 250)
    big = cv2.resize(rgb, (2000, 2000), interpolation=cv2.INTER_CUBIC)
    a = align_face(rgb, face.landmarks_array()).astype(float)
    b = align_face(big, face.landmarks_array() * 8).astype(float)
    assert np.abs(a - b).mean() < 8
