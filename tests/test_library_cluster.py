"""Clustering (facedex.library.cluster) on small synthetic data: the graph
average linkage equals textbook average linkage, the dendrogram cut equals a
run at that threshold, chains do not glue groups together, and the scores
are the published definitions."""

from __future__ import annotations

import numpy as np
import pytest

from facedex.errors import ConfigError
from facedex.library.cluster import average_linkage, bcubed_f, cluster, knn_graph, pairwise_f, relabel
from facedex.library.discover import cluster_id, default_cluster_threshold


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def people(n_people: int, per: int, spread: float, dim: int = 16, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(n_people, dim)))
    x = np.repeat(centres, per, axis=0) + spread * rng.normal(size=(n_people * per, dim))
    return unit(x), np.repeat(np.arange(n_people), per)


def textbook_average_linkage(x: np.ndarray, threshold: float) -> np.ndarray:
    """O(n^3) average linkage on the full similarity matrix."""
    sim = x.astype(np.float64) @ x.T.astype(np.float64)
    groups = [[i] for i in range(len(x))]
    while len(groups) > 1:
        best, pair = -np.inf, None
        for a in range(len(groups)):
            for b in range(a + 1, len(groups)):
                s = sim[np.ix_(groups[a], groups[b])].mean()
                if s > best:
                    best, pair = s, (a, b)
        if best < threshold:
            break
        a, b = pair
        groups[a] += groups.pop(b)
    labels = np.empty(len(x), np.int64)
    for k, g in enumerate(groups):
        labels[g] = k
    return relabel(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_graph_average_linkage_is_average_linkage(seed, threshold):
    x, _ = people(6, 5, 0.5, seed=seed)
    got = average_linkage(x, threshold, k=len(x)).cut(threshold)  # a complete graph: exact
    assert np.array_equal(got, textbook_average_linkage(x, threshold))


def test_cut_equals_a_run_at_that_threshold():
    x, truth = people(40, 6, 0.45, dim=32)
    dendrogram = average_linkage(x, 0.2)
    assert np.all(np.diff(dendrogram.heights) <= 1e-6)  # reducible: merges come in decreasing order
    for t in (0.2, 0.35, 0.5, 0.65, 0.8):
        assert np.array_equal(dendrogram.cut(t), cluster(x, t))
    with pytest.raises(ConfigError):
        dendrogram.cut(0.1)


def test_a_chain_of_look_alikes_does_not_glue_two_people():
    rng = np.random.default_rng(3)
    a, b = unit(rng.normal(size=(2, 16)))
    # two tight groups and a bridge of faces between them, each close to its neighbours
    steps = np.linspace(0, 1, 12)[1:-1]
    bridge = unit(np.array([(1 - s) * a + s * b for s in steps]))
    x = np.concatenate([unit(a + 0.05 * rng.normal(size=(10, 16))), bridge, unit(b + 0.05 * rng.normal(size=(10, 16)))])
    labels = cluster(x, 0.6)
    assert labels[0] != labels[-1]  # single linkage / DBSCAN would join them through the bridge
    assert len(set(labels[:10])) == 1 and len(set(labels[-10:])) == 1


def test_recovers_separated_people():
    x, truth = people(30, 8, 0.05, dim=64, seed=5)
    labels = cluster(x, 0.5)
    assert pairwise_f(truth, labels)["f"] == pytest.approx(1.0) and bcubed_f(truth, labels)["f"] == pytest.approx(1.0)


def test_scores_match_their_definitions():
    truth = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 2])
    # pairs in one cluster: (0,1), (2,3), (2,4), (3,4) -> 4; correct: (0,1), (3,4) -> 2
    # pairs of one person: (0,1), (0,2), (1,2), (3,4) -> 4; found: 2
    assert pairwise_f(truth, pred) == {"precision": 0.5, "recall": 0.5, "f": 0.5}
    b = bcubed_f(truth, pred)
    assert b["precision"] == pytest.approx((1 + 1 + 1 / 3 + 2 / 3 + 2 / 3 + 1) / 6)
    assert b["recall"] == pytest.approx((2 / 3 + 2 / 3 + 1 / 3 + 1 + 1 + 1) / 6)
    assert pairwise_f(truth, truth)["f"] == 1.0 and bcubed_f(truth, truth)["f"] == 1.0


def test_graph_edges_and_small_inputs():
    x, _ = people(3, 4, 0.3)
    g = knn_graph(x, k=3, floor=0.5)
    assert np.all(g.rows < g.cols) and np.all(g.sims >= 0.5)
    assert len(set(zip(g.rows.tolist(), g.cols.tolist()))) == len(g.rows)  # each edge once
    assert cluster(x[:1], 0.5).tolist() == [0] and cluster(x[:0], 0.5).tolist() == []


def test_cluster_ids_and_default_threshold():
    from facedex import models

    assert cluster_id([3, 1, 2]) == cluster_id([1, 2, 3]) != cluster_id([1, 2])
    assert len(cluster_id(range(1000))) == 8
    value, source = default_cluster_threshold(models.get_card("sface-2021dec"))
    assert value == pytest.approx(0.461) and "sface" in source


def test_faces_of_one_photo_or_one_moment_are_never_one_person():
    from facedex.library.discover import cannot_link

    x, _ = people(1, 4, 0.01, dim=16)  # four faces that look alike
    assert len(set(cluster(x, 0.5))) == 1
    nan = float("nan")
    # faces 0 and 1 in one photo; faces 2 and 3 are two tracks of one video on screen together
    tokens = cannot_link(np.array([7, 7, 9, 9]), np.array([nan, nan, 0.0, 1.0]), np.array([nan, nan, 2.0, 3.0]))
    labels = cluster(x, 0.5, exclusive=tokens)
    assert labels[0] != labels[1] and labels[2] != labels[3] and len(set(labels)) == 2
    # tracks one after the other in a video may be one person (the face came back)
    tokens = cannot_link(np.array([9, 9, 9]), np.array([0.0, 2.0, 5.0]), np.array([2.0, 4.0, 6.0]))
    assert tokens == [set(), set(), set()]
