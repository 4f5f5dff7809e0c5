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


def _clustered(people=40, faces=3, dim=16, spread=0.35, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(people, dim))
    vecs = np.concatenate([c + spread * rng.normal(size=(faces, dim)) for c in centres])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs.astype(np.float32), np.repeat(np.arange(people), faces)


def test_crowding_penalty_lowers_only_faces_that_resemble_many_people():
    vecs, labels = _clustered()
    names = [f"p{i}" for i in range(40)]
    plain = Identifier(k=64).fit(vecs, labels, names)
    crowd = Identifier(k=64, crowd_reference=0.0, cohort=8).fit(vecs, labels, names)
    probes = vecs[::3] + 0.05
    for (s0, c0), (s1, c1) in zip(plain.scored_candidates(probes), crowd.scored_candidates(probes)):
        assert [c.name for c in c0] == [c.name for c in c1]  # the ranking never changes
        assert s0 == pytest.approx(c0[0].similarity)  # without a reference the score is the similarity
        assert s1 <= s0 + 1e-6  # a penalty, never a bonus
    # a reference above every cohort mean leaves the scores alone
    high = Identifier(k=64, crowd_reference=1.0).fit(vecs, labels, names)
    assert [s for s, _ in high.scored_candidates(probes)] == pytest.approx([s for s, _ in plain.scored_candidates(probes)])
    # the penalty is the cohort's mean evidence above the reference, exactly
    score, cands = Identifier(k=200, max_candidates=40, crowd_reference=0.0, cohort=8).fit(
        vecs, labels, names).scored_candidates(probes[:1])[0]
    sims = [c.similarity for c in cands]
    assert score == pytest.approx(sims[0] - max(0.0, float(np.mean(sims[1:9]))), abs=1e-5)
    with pytest.raises(ConfigError, match="crowd_reference"):
        Identifier(crowd_reference=2.0)


@pytest.mark.parametrize("evidence", ["template", "max"])
@pytest.mark.parametrize("crowd", [None, 0.0])
def test_calibration_searches_score_as_identify_would(evidence, crowd):
    # calibrate's held-out searches must be the decisions identify makes on a gallery
    # without that person (strangers) or without that face (genuine)
    vecs, labels = _clustered(people=25, faces=3, seed=3)
    rows = np.array([0, 4, 11, 30, 52])
    stranger, s_lab = best_match_scores(vecs, labels, rows, exclude="person", evidence=evidence,
                                        crowd_reference=crowd)
    genuine, g_lab = best_match_scores(vecs, labels, rows, exclude="self", evidence=evidence, crowd_reference=crowd)
    for i, r in enumerate(rows):
        keep = labels != labels[r]
        ident = Identifier(evidence=evidence, crowd_reference=crowd).fit(vecs[keep], labels[keep],
                                                                         [str(n) for n in range(25)])
        ((score, cands),) = ident.scored_candidates(vecs[r][None])
        assert stranger[i] == pytest.approx(score, abs=1e-5) and s_lab[i] == int(cands[0].name)
        keep = np.arange(len(labels)) != r
        ident = Identifier(evidence=evidence, crowd_reference=crowd).fit(vecs[keep], labels[keep],
                                                                         [str(n) for n in range(25)])
        ((score, cands),) = ident.scored_candidates(vecs[r][None])
        assert genuine[i] == pytest.approx(score, abs=1e-5) and g_lab[i] == int(cands[0].name)


def test_gallery_calibrates_with_its_own_identifier(tmp_path):
    # Gallery.calibrate scores its searches with the identifier identify uses (its index,
    # templates and crowding penalty): below the exact-search size that is the exact answer
    import facedex

    vecs, labels = _clustered(people=30, faces=4, dim=128, spread=0.5, seed=5)
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        for p in range(30):
            g.add_embeddings(f"p{p:02d}", vecs[labels == p], g.embedder_card.id)
        t = g.calibrate(0.05)
        table = g.store.embeddings()
        want = calibrate(table.vectors, table.labels, 0.05, fallback=g.embedder_card.default_threshold,
                         crowd_reference=g.crowd_reference)
        assert g.crowd_reference == 0.25
        assert t.value == pytest.approx(want.threshold, abs=1e-6)
        assert t.details["estimated_fnir"] == want.details["estimated_fnir"]


@pytest.mark.parametrize("evidence", ["template", "max"])
def test_a_genuine_calibration_search_of_a_one_face_person_finds_them_gone(evidence):
    # left out of the gallery, a person's only face leaves no one of theirs: identify's answer
    rng = np.random.default_rng(1)
    vecs = rng.normal(size=(31, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    labels = np.repeat(np.arange(11), 3)[:31]  # person 10: one face (row 30)
    genuine, lab = best_match_scores(vecs, labels, np.array([30]), exclude="self", evidence=evidence,
                                     crowd_reference=0.0)
    keep = np.arange(31) != 30
    ident = Identifier(evidence=evidence, crowd_reference=0.0).fit(vecs[keep], labels[keep],
                                                                   [str(n) for n in range(11)])
    ((score, cands),) = ident.scored_candidates(vecs[30][None])
    assert lab[0] != 10 and lab[0] == int(cands[0].name) and genuine[0] == pytest.approx(score, abs=1e-5)
