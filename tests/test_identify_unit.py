"""Decision and calibration arithmetic on small hand-made vectors (fakes for speed:
the behaviour on real faces is in test_gallery.py)."""

from __future__ import annotations

import numpy as np
import pytest

from facedex.errors import CalibrationError, ConfigError
from facedex.identify import (
    Identifier,
    best_match_scores,
    calibrate,
    fnir_at,
    fpir_at,
    threshold_at_fpir,
)


def unit(*v):
    a = np.asarray(v, dtype=np.float32)
    return a / np.linalg.norm(a)


def test_threshold_at_fpir_hand_computed():
    scores = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.4, 0.6, 0.8, 0.0])
    # 10 stranger searches; FPIR 0.1 allows one through: threshold just above the 2nd best (0.8)
    t = threshold_at_fpir(scores, 0.1)
    assert 0.8 < t < 0.8 + 1e-9
    assert fpir_at(scores, t) == pytest.approx(0.1)
    # FPIR 0 lets nobody through
    t0 = threshold_at_fpir(scores, 0.0)
    assert 0.9 < t0 and fpir_at(scores, t0) == 0
    # FPIR 0.25 allows floor(2.5) = 2
    assert fpir_at(scores, threshold_at_fpir(scores, 0.25)) == pytest.approx(0.2)
    with pytest.raises(CalibrationError):
        threshold_at_fpir(np.array([]), 0.1)
    with pytest.raises(ConfigError):
        threshold_at_fpir(scores, 1.5)


def test_fnir_counts_wrong_names_and_misses():
    sims = np.array([0.9, 0.8, 0.3, 0.95])
    correct = np.array([True, False, True, True])
    # at 0.5: #2 wrong person, #3 below threshold -> 2 of 4 not named correctly
    assert fnir_at(sims, correct, 0.5) == pytest.approx(0.5)
    assert fnir_at(sims, correct, 0.2) == pytest.approx(0.25)


def test_identifier_aggregates_per_person_and_answers_unknown():
    vecs = np.stack([unit(1, 0, 0), unit(0.9, 0.1, 0), unit(0, 1, 0), unit(0, 0.9, 0.1)])
    ident = Identifier(k=4).fit(vecs, np.array([0, 0, 1, 1]), ["alice", "bob"])
    assert ident.classes_ == ["alice", "bob"]
    d_alice, d_stranger = ident.decide(np.stack([unit(1, 0.05, 0), unit(0, 0, 1)]), threshold=0.5)
    assert d_alice.name == "alice" and d_alice.similarity > 0.99
    assert [c.name for c in d_alice.candidates] == ["alice", "bob"]  # one entry per person
    assert d_stranger.name is None and d_stranger.candidates  # closest still listed
    assert d_stranger.similarity < 0.5


def test_empty_identifier_answers_unknown():
    ident = Identifier().fit(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), [])
    (d,) = ident.decide(np.stack([unit(1, 0, 0)]), threshold=0.3)
    assert d.name is None and d.candidates == ()


def test_best_match_scores_excludes_person_or_self():
    vecs = np.stack([unit(1, 0), unit(1, 0.1), unit(0, 1), unit(0.1, 1)])
    labels = np.array([0, 0, 1, 1])
    strangers, lab = best_match_scores(vecs, labels, np.array([0, 2]), exclude="person", evidence="max")
    assert list(lab) == [1, 0]
    assert strangers[0] == pytest.approx(float(vecs[0] @ vecs[3]), abs=1e-6)
    genuine, lab = best_match_scores(vecs, labels, np.array([0, 2]), exclude="self", evidence="max")
    assert list(lab) == [0, 1]
    assert genuine[0] == pytest.approx(float(vecs[0] @ vecs[1]), abs=1e-6)
    # the default evidence is the person's template: the mean of their faces (for a
    # genuine search, of their *other* faces: here the one other face itself)
    t1 = vecs[2] + vecs[3]
    strangers, lab = best_match_scores(vecs, labels, np.array([0, 2]), exclude="person")
    assert list(lab) == [1, 0]
    assert strangers[0] == pytest.approx(float(vecs[0] @ t1 / np.linalg.norm(t1)), abs=1e-6)
    genuine, lab = best_match_scores(vecs, labels, np.array([0, 2]), exclude="self")
    assert list(lab) == [0, 1]
    assert genuine[0] == pytest.approx(float(vecs[0] @ vecs[1]), abs=1e-6)


def test_identifier_scores_people_by_their_template():
    # person A: two faces either side of the probe; person B: one face nearer the
    # probe than either of A's. Best single face says B; A's template (the mean) is nearer.
    a1, a2, b = unit(1, 0.5), unit(1, -0.5), unit(1, 0.3)
    probe = unit(1, 0)
    vecs, labels = np.stack([a1, a2, b]), np.array([0, 0, 1])
    (by_max,) = Identifier(evidence="max").fit(vecs, labels, ["A", "B"]).decide(probe[None], threshold=0.5)
    (by_tpl,) = Identifier().fit(vecs, labels, ["A", "B"]).decide(probe[None], threshold=0.5)
    assert by_max.name == "B"
    assert by_tpl.name == "A" and by_tpl.similarity == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ConfigError, match="evidence"):
        Identifier(evidence="vote")


def test_calibrate_separable_people():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    vecs, labels = [], []
    for i, c in enumerate(centres):
        for _ in range(4):
            v = c + 0.1 * rng.normal(size=16)
            vecs.append(v / np.linalg.norm(v))
            labels.append(i)
    cal = calibrate(np.array(vecs, np.float32), np.array(labels), fpir=0.05)
    assert cal.details["stranger_searches"] == 120 and not cal.details["low_confidence"]
    assert cal.details["measured_fpir"] <= 0.05
    assert cal.details["estimated_fnir"] == 0.0  # tight clusters: every genuine search named
    with pytest.raises(CalibrationError):
        calibrate(np.array(vecs[:4], np.float32), np.zeros(4, np.int64))
