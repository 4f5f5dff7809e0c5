"""Scores, rates and the calibrated threshold, shared by ``facedex calibrate``
and the evaluation commands, so a calibrated threshold and a measured FPIR
agree by construction. The rates follow NIST FRVT 1:N: FPIR is the share of
searches by people *not* in the gallery that return any name; FNIR the share
of searches by enrolled people that do not return their own name.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import CalibrationError, ConfigError
from .identifier import Identifier

log = logging.getLogger(__name__)


# --- scores and rates shared with evaluation -------------------------------------------


def best_match_scores(
    vectors: np.ndarray,
    labels: np.ndarray,
    query_rows: np.ndarray,
    *,
    exclude: str,
    evidence: str = "template",
    crowd_reference: float | None = None,
    k: int = 64,
    identifier: Identifier | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """For each query row: the score :class:`~facedex.identify.Identifier` would
    give its best person (``k`` nearest faces, ``evidence``, crowding penalty
    with ``crowd_reference``) against the rest of the set, and that person's label.

    ``exclude="person"`` leaves out every face of the query's own person (the
    query acts as a stranger to a gallery without them); ``exclude="self"``
    leaves out only the query face itself (a genuine search: its person's
    template is made of their other faces).
    Returns ``(best_score, best_label)``; ``-inf`` / ``-1`` when nothing remains.
    ``identifier``: one already fitted to exactly these vectors and labels (a
    gallery's, with its own index), used instead of an exact one built here.
    """
    if identifier is not None:
        return identifier.held_out_scores(vectors, query_rows, exclude)
    if exclude not in ("person", "self"):
        raise ConfigError(f"exclude must be 'person' or 'self', got {exclude!r}")
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    query_rows = np.asarray(query_rows, dtype=np.int64)
    if not len(labels) or not len(query_rows):
        return np.full(len(query_rows), -np.inf, np.float32), np.full(len(query_rows), -1, np.int64)
    n_people = int(labels.max()) + 1
    ident = Identifier(k=k, evidence=evidence, crowd_reference=crowd_reference)
    ident.fit(vectors, labels, [str(i) for i in range(n_people)])
    return ident.held_out_scores(vectors, query_rows, exclude)


def threshold_at_fpir(stranger_scores: np.ndarray, fpir: float) -> float:
    """The smallest threshold at which at most ``fpir`` of the stranger searches
    would return a name (a search returns a name when its best score >= threshold)."""
    s = np.sort(np.asarray(stranger_scores, dtype=np.float64)[np.isfinite(stranger_scores)])[::-1]
    if s.size == 0:
        raise CalibrationError("no stranger searches to set a threshold from")
    if not 0.0 <= fpir < 1.0:
        raise ConfigError(f"FPIR must be in [0, 1), got {fpir}")
    allowed = int(math.floor(fpir * s.size + 1e-9))
    if allowed >= s.size:
        return float(s[-1])
    return float(np.nextafter(s[allowed], np.inf))


def fpir_at(stranger_scores: np.ndarray, threshold: float) -> float:
    s = np.asarray(stranger_scores, dtype=np.float64)
    return float(np.mean(s >= threshold)) if s.size else float("nan")


def fnir_at(genuine_scores: np.ndarray, genuine_correct: np.ndarray, threshold: float) -> float:
    s = np.asarray(genuine_scores, dtype=np.float64)
    ok = np.asarray(genuine_correct, dtype=bool)
    return float(np.mean(~(ok & (s >= threshold)))) if s.size else float("nan")


@dataclass(frozen=True)
class Calibration:
    threshold: float
    fpir_target: float
    details: dict[str, Any] = field(default_factory=dict)


def _sample_rows(labels: np.ndarray, per_person: int, max_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``per_person`` random rows of each label, at most ``max_rows`` in all, sorted.
    One sort for the whole gallery (a loop over people was quadratic: a minute at a million faces)."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size == 0:
        return np.zeros(0, np.int64)
    order = np.lexsort((rng.random(labels.size), labels))  # by person, in random order within each
    lab = labels[order]
    starts = np.flatnonzero(np.concatenate([[True], lab[1:] != lab[:-1]]))
    rank = np.arange(lab.size) - np.repeat(starts, np.diff(np.concatenate([starts, [lab.size]])))
    all_rows = np.sort(order[rank < per_person])
    if all_rows.size > max_rows:
        all_rows = np.sort(rng.choice(all_rows, max_rows, replace=False))
    return all_rows


def calibrate(
    vectors: np.ndarray,
    labels: np.ndarray,
    fpir: float = 0.01,
    *,
    fallback: float | None = None,
    queries_per_person: int = 10,
    max_queries: int = 20000,
    seed: int = 0,
    evidence: str = "template",
    crowd_reference: float | None = None,
    identifier: Identifier | None = None,
) -> Calibration:
    """Set the open-set threshold from the gallery itself.

    Each sampled face is searched against the gallery without its own person
    (a stranger search); the threshold lets through at most ``fpir`` of those.
    The same faces searched against the gallery without themselves estimate
    the FNIR at that threshold. With fewer stranger searches than ``1/fpir``
    the estimate is unreliable: the result is flagged ``low_confidence`` and
    never set below ``fallback`` (the embedder's default). The searches are
    scored as ``identifier`` (fitted to these vectors, e.g. a gallery's, with
    its index) decides, or by an exact :class:`Identifier` with ``evidence``
    and ``crowd_reference``.
    """
    if not 0.0 < fpir < 1.0:
        raise ConfigError(f"FPIR must be between 0 and 1 (exclusive), got {fpir}")
    labels = np.asarray(labels, dtype=np.int64)
    people = np.unique(labels)
    if people.size < 2:
        raise CalibrationError(
            f"calibration needs at least 2 enrolled people (it searches each person against "
            f"the others); this gallery has {people.size}"
        )
    rng = np.random.default_rng(seed)
    rows = _sample_rows(labels, queries_per_person, max_queries, rng)
    stranger, _ = best_match_scores(vectors, labels, rows, exclude="person", evidence=evidence,
                                    crowd_reference=crowd_reference, identifier=identifier)
    thr = threshold_at_fpir(stranger, fpir)
    needed = int(math.ceil(1.0 / fpir))
    low_conf = stranger.size < needed
    calibrated = thr
    if low_conf and fallback is not None and thr < fallback:
        thr = float(fallback)
    counts = np.bincount(labels)
    gen_rows = rows[counts[labels[rows]] >= 2]
    gen_sim, gen_lab = best_match_scores(vectors, labels, gen_rows, exclude="self", evidence=evidence,
                                         crowd_reference=crowd_reference, identifier=identifier)
    correct = gen_lab == labels[gen_rows]
    details = {
        "fpir_target": fpir,
        "stranger_searches": int(stranger.size),
        "stranger_searches_needed": needed,
        "low_confidence": bool(low_conf),
        "threshold_from_data": round(calibrated, 6),
        "measured_fpir": round(fpir_at(stranger, thr), 6),
        "genuine_searches": int(gen_rows.size),
        "estimated_fnir": round(fnir_at(gen_sim, correct, thr), 6) if gen_rows.size else None,
        "evidence": evidence,
        "crowd_reference": crowd_reference,
        "people": int(people.size),
        "faces": int(labels.size),
    }
    if low_conf:
        log.warning(
            "only %d stranger searches (need %d for FPIR %.3g); threshold %.4f is a rough estimate",
            stranger.size, needed, fpir, thr,
        )
    return Calibration(threshold=float(thr), fpir_target=fpir, details=details)
