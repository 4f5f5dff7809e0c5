"""Identify: neighbours → threshold → a name or unknown.

* :mod:`.identifier` — :class:`Identifier`, the k-NN open-set estimator.
* :mod:`.calibrate` — scores, FPIR/FNIR and the calibrated threshold (shared with evaluation).
* :mod:`.enroll` — images of named people → faces in the gallery.
* :mod:`.gallery` — :class:`Gallery`, what people open: enroll, identify, calibrate, forget.
* :mod:`.run` — :func:`identify_paths`, identify anything (the CLI's and the service's entry point).
* :mod:`.verify` — :func:`verify`, two photos: same person?
"""

from __future__ import annotations

from .calibrate import (
    Calibration,
    best_match_scores,
    calibrate,
    fnir_at,
    fpir_at,
    threshold_at_fpir,
)
from .identifier import EVIDENCE, Identifier, evidence_scores, person_templates

__all__ = ["EVIDENCE", "Calibration", "Identifier", "evidence_scores", "person_templates", "best_match_scores", "calibrate", "fnir_at", "fpir_at",
           "threshold_at_fpir"]
