"""Evaluation protocols: hand-computed metric cases, known answers on small LFW
subsets, the commands, and bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from facedex.errors import ConfigError, DatasetError, PairsError
from facedex.evaluate.identification import (
    det_curve,
    evaluate_identification,
    open_set,
    split_dataset,
)
from facedex.identify import evidence_scores, person_templates
from facedex.evaluate.lfw import best_accuracy_threshold, evaluate_lfw, read_pairs, verification_metrics

from .conftest import KNOWN, LFW, PAIRS, check_schema, lfw_images, strangers
from .test_cli import facedex


def test_ten_fold_accuracy_hand_computed():
    # 10 folds, one matched (0.9) and one mismatched (0.1) pair each; in fold 0 the
    # mismatched pair scores 0.95. Every training set picks t = 0.5; the test folds
    # score 1.0 except fold 0 (0.5): mean 0.95, population std 0.15.
    scores = np.array([0.9, 0.1] * 10)
    scores[1] = 0.95
    same = np.array([True, False] * 10)
    folds = np.repeat(np.arange(10), 2)
    m = verification_metrics(scores, same, folds)
    assert m["fold_accuracies"] == [0.5] + [1.0] * 9
    assert m["accuracy_mean"] == pytest.approx(0.95)
    assert m["accuracy_std"] == pytest.approx(0.15)
    assert all(t == pytest.approx(0.5) for t in m["fold_thresholds"])


def test_best_accuracy_threshold_cuts_between_scores():
    scores = np.array([0.9, 0.8, 0.4, 0.3, 0.35])
    same = np.array([True, True, False, False, True])
    t = best_accuracy_threshold(scores, same)
    assert 0.4 < t < 0.8  # 4/5 correct; any cut between 0.4 and 0.8
    assert np.mean((scores >= t) == same) == pytest.approx(0.8)


def test_val_at_far_hand_computed():
    rng = np.random.default_rng(0)
    folds = np.repeat(np.arange(2), 2000)
    same = np.tile(np.r_[np.ones(1000, bool), np.zeros(1000, bool)], 2)
    scores = np.where(same, rng.uniform(0.5, 1.0, 4000), rng.uniform(0.0, 0.6, 4000))
    m = verification_metrics(scores, same, folds, far=0.001)
    # at FAR 0.1 % the threshold sits near 0.6 (top of the mismatched scores):
    # about (1.0 - 0.6) / 0.5 = 80 % of matched pairs are above it
    assert m["val_at_far"] == pytest.approx(0.8, abs=0.03)
    assert m["far_achieved"] <= 0.005  # chosen on the other fold: close to, not exactly, 0.1 %


def test_open_set_rates_and_det_curve_hand_computed():
    stranger = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95])
    genuine = np.array([0.99, 0.97, 0.85, 0.75, 0.5])
    correct = np.array([True, True, True, False, True])
    (r,) = open_set(genuine, correct, stranger, targets=[0.1])
    assert 0.9 < r.threshold < 0.95 and r.fpir == pytest.approx(0.1)
    assert r.fnir == pytest.approx(0.6)  # only 0.99 and 0.97 are named (correctly)
    ts, fp, fn = det_curve(genuine, correct, stranger)
    i = int(np.searchsorted(ts, 0.5))
    assert fp[i] == pytest.approx(0.6) and fn[i] == pytest.approx(0.2)  # at t=0.5: 6 strangers pass; one wrong name


def test_evidence_max_takes_the_best_face_and_template_the_mean_direction():
    # four unit faces in 2-D: person 0 at 0 and 90 degrees, person 1 at 45, person 2 at 180
    faces = np.array([[1, 0], [0, 1], [np.sqrt(.5), np.sqrt(.5)], [-1, 0]], np.float32)
    labels = np.array([0, 0, 1, 2])
    probe = np.array([[1, 0]], np.float32)
    best = evidence_scores(probe, faces, labels, 4, "max")
    assert np.allclose(best[0, :3], [1.0, np.sqrt(.5), -1.0]) and np.isneginf(best[0, 3])  # person 3: no face
    mean = evidence_scores(probe, faces, labels, 4, "template")
    # person 0's template is the mean of its faces, at 45 degrees: the probe scores cos 45, not 1
    assert np.allclose(mean[0, :3], [np.sqrt(.5), np.sqrt(.5), -1.0]) and np.isneginf(mean[0, 3])
    assert np.allclose(person_templates(faces, labels, 3)[0], [np.sqrt(.5), np.sqrt(.5)])
    with pytest.raises(ConfigError, match="evidence"):
        evidence_scores(probe, faces, labels, 4, "median")


def _mini_pairs(tmp_path, per_fold=15, folds=2):
    """A pairs file with the first `per_fold` matched and mismatched pairs of the
    first `folds` folds of the real pairs.txt."""
    lines = PAIRS.read_text().splitlines()[1:]
    out = [f"{folds}\t{per_fold}"]
    for k in range(folds):
        block = lines[k * 600 : (k + 1) * 600]
        out += block[:per_fold] + block[300 : 300 + per_fold]
    p = tmp_path / "pairs.txt"
    p.write_text("\n".join(out) + "\n")
    return p


def test_lfw_known_answer_on_a_small_subset(tmp_path):
    res = evaluate_lfw(LFW, _mini_pairs(tmp_path))
    assert res.pairs == 60 and res.fallbacks == 0
    assert res.images == len({p for pr in read_pairs(_mini_pairs(tmp_path), LFW) for p in (pr.a, pr.b)})
    assert res.accuracy_mean >= 0.98  # SFace gets these pairs right; 1 error allowed
    same, diff = res.scores[res.same], res.scores[~res.same]
    assert same.mean() > 0.55 and diff.mean() < 0.15


def test_lfw_command_json_and_plot(tmp_path):
    plot = tmp_path / "roc.png"
    r = facedex("eval", "lfw", LFW, "--pairs", _mini_pairs(tmp_path), "--json", "--plot", plot, check_rc=0)
    data = check_schema("eval-lfw", json.loads(r.stdout))
    assert data["pairs"] == 60 and len(data["fold_accuracies"]) == 2
    assert data["protocol"].startswith("LFW View 2, 2-fold, threshold chosen on the other 1 folds")
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_roc_title_counts_the_pairs_it_shows(tmp_path, monkeypatch):
    axes = pytest.importorskip("matplotlib.axes")
    from facedex.evaluate.plots import roc_plot

    titles = []
    real = axes.Axes.set_title
    monkeypatch.setattr(axes.Axes, "set_title", lambda ax, t, *a, **k: titles.append(t) or real(ax, t))
    scores, same = np.r_[np.linspace(0.3, 0.9, 60), np.linspace(0, 0.5, 60)], np.r_[np.ones(60), np.zeros(60)]
    roc_plot([("x", scores, same.astype(bool))], tmp_path / "roc.svg")
    assert titles == ["LFW verification (View 2, 120 pairs)"]
    assert (tmp_path / "roc.svg").read_text().lstrip().startswith("<?xml")


class _NoPipeline:
    """Fails the test if the evaluation gets as far as embedding."""

    def __getattr__(self, name):
        raise AssertionError(f"options were not checked before the work started (pipeline.{name} used)")


@pytest.mark.parametrize("kwargs,match", [
    ({"limit_folds": 1}, "from 2 to 10"),
    ({"limit_folds": 11}, "from 2 to 10"),
    ({"limit_folds": 3}, "has 2 fold"),  # the mini pairs file has 2
    ({"far": 0.0}, "far must be a rate"),
    ({"far": 1.5}, "far must be a rate"),
])
def test_lfw_options_are_checked_before_any_work(tmp_path, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        evaluate_lfw(LFW, _mini_pairs(tmp_path), _NoPipeline(), **kwargs)
    with pytest.raises(DatasetError, match="no such folder"):
        evaluate_lfw(tmp_path / "nope", _mini_pairs(tmp_path), _NoPipeline())


@pytest.mark.parametrize("args,message", [
    (["eval", "lfw", "{lfw}", "--folds", "1"], "argument --folds: 1: must be >= 2"),
    (["eval", "lfw", "{lfw}", "--folds", "11"], "argument --folds: 11: must be <= 10"),
    (["eval", "lfw", "{lfw}", "--far", "0"], "argument --far"),
    (["eval", "lfw", "{lfw}", "--pairs", "{tmp}/nope.txt"], "nope.txt: no such file"),
    (["eval", "lfw", "{tmp}/nope"], "no such folder"),
    (["eval", "lfw", "{lfw}", "--plot", "{tmp}/roc.jpgx"], "give a file name with one of these suffixes"),
    (["eval", "identify", "{lfw}", "--min-images", "4", "--gallery-per-person", "4"], "must exceed"),
    (["eval", "identify", "{lfw}", "--num-strangers", "-1"], "argument --num-strangers"),
    (["eval", "identify", "{lfw}", "--gallery-sizes", "10,x"], "argument --gallery-sizes"),
    (["eval", "identify", "{tmp}/nope"], "no such folder"),
])
def test_eval_options_fail_fast_with_exit_2(tmp_path, args, message):
    r = facedex(*[a.format(lfw=LFW, tmp=tmp_path) for a in args], timeout=20, check_rc=2)
    assert message.format(tmp=tmp_path) in r.stderr


@pytest.mark.parametrize("defect,message", [
    ("missing", "does not exist"),
    ("malformed", "expected 'name i j'"),
    ("not-a-number", "not an integer"),
    ("count", "promises"),
])
def test_bad_pairs_files(tmp_path, defect, message):
    p = _mini_pairs(tmp_path, per_fold=3, folds=2)
    lines = p.read_text().splitlines()
    if defect == "missing":
        lines[2] = "Abel_Pacheco\t1\t99"
    elif defect == "malformed":
        lines[2] = "Abel_Pacheco 1"
    elif defect == "not-a-number":
        lines[2] = "Abel_Pacheco\tone\t2"
    else:
        lines = lines[:-1]
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(PairsError, match=message) as info:
        read_pairs(p, LFW)
    assert str(p) in str(info.value)
    r = facedex("eval", "lfw", LFW, "--pairs", p, "--json", check_rc=2)
    assert message in r.stderr
    error = check_schema("error", json.loads(r.stdout))["error"]  # with --json, also on stdout with its code
    assert error["code"] == "dataset.pairs" and message in error["message"]


def _dataset(tmp_path, people=KNOWN[:5], per_person=8, n_strangers=15):
    root = tmp_path / "data"
    for name in people:
        (root / name).mkdir(parents=True)
        for f in lfw_images(name)[:per_person]:
            os.symlink(f, root / name / f.name)
    for f in strangers(n_strangers):
        (root / f.parent.name).mkdir(parents=True)
        os.symlink(f, root / f.parent.name / f.name)
    return root


def test_identification_known_answer_on_a_small_subset(tmp_path):
    root = _dataset(tmp_path)
    res = evaluate_identification(root, min_images=8, gallery_per_person=4, num_strangers=10, gallery_sizes=[5, 10])
    assert res.people == 5 and res.gallery_faces == 20
    assert res.genuine_searches == 20 and res.stranger_searches == 10
    assert res.rank1 >= 0.95 and res.rank5 == 1.0
    fpir = {r.fpir_target: r for r in res.rates}
    assert fpir[0.01].fpir == 0.0  # 10 strangers: FPIR 1 % lets none through
    assert fpir[0.01].fnir <= 0.1
    assert [e["identities"] for e in res.sweep] == [5, 10]
    assert res.sweep[1]["distractors"] == 5
    assert set(res.calibration) == {"0.01", "0.001"}


def test_identify_command_json(tmp_path):
    root = _dataset(tmp_path)
    r = facedex("eval", "identify", root, "--min-images", "8", "--gallery-per-person", "4",
                "--num-strangers", "10", "--gallery-sizes", "5,10", "--json", "--plot", tmp_path / "det.png",
                check_rc=0)
    data = check_schema("eval-identify", json.loads(r.stdout))
    assert set(data["calibration_check"]) == {"0.01", "0.001"} and len(data["gallery_size_sweep"]) == 2
    assert data["people"] == 5 and data["rank1"] >= 0.95
    assert (tmp_path / "det.png").read_bytes()[:4] == b"\x89PNG"


def test_dataset_with_one_person_is_refused(tmp_path):
    root = _dataset(tmp_path, people=KNOWN[:1])
    with pytest.raises(DatasetError, match="at least 2 enrolled people"):
        split_dataset(root, min_images=8, gallery_per_person=4)
    r = facedex("eval", "identify", root, "--min-images", "8", "--gallery-per-person", "4", check_rc=2)
    assert "at least 2 enrolled people" in r.stderr
    with pytest.raises(ConfigError, match="must exceed"):
        split_dataset(root, min_images=4, gallery_per_person=4)
    with pytest.raises(ConfigError, match="num_strangers"):
        evaluate_identification(root, _NoPipeline(), num_strangers=-1)
    with pytest.raises(ConfigError, match="gallery sizes"):
        evaluate_identification(root, _NoPipeline(), gallery_sizes=[0])
    with pytest.raises(DatasetError, match="no such folder"):
        split_dataset(tmp_path / "nope")


def test_split_is_deterministic_and_disjoint(tmp_path):
    root = _dataset(tmp_path)
    a = split_dataset(root, min_images=8, gallery_per_person=4, num_strangers=5, num_distractors=5, seed=3)
    b = split_dataset(root, min_images=8, gallery_per_person=4, num_strangers=5, num_distractors=5, seed=3)
    assert a == b
    for name in a.enrolled:
        assert not set(a.enrolled[name]) & set(a.genuine[name])
    assert not {p.parent.name for p in a.strangers} & set(a.distractors)
