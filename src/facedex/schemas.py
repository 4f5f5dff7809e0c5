"""JSON Schemas (draft 2020-12) of what ``facedex … --json`` prints and the
HTTP service returns. Each document names its schema and version in its
``"schema"`` key (``"facedex.identify/1"``); a version changes only when a
field changes meaning or disappears (new fields may be added within one).

The files in ``docs/schemas/`` are written from here::

    python -m facedex.schemas docs/schemas

and the test suite checks that every command's output validates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

NUM = {"type": "number"}
INT = {"type": "integer", "minimum": 0}
STR = {"type": "string"}
BOOL = {"type": "boolean"}
NULL_STR = {"type": ["string", "null"]}
NULL_NUM = {"type": ["number", "null"]}


def _obj(props: dict[str, Any], required: list[str] | None = None, extra: bool = True) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": extra}


def _arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


ERROR = _obj({"code": {"type": "string", "pattern": r"^[a-z_]+(\.[a-z_]+)*$"}, "message": STR}, ["code", "message"])
NULL_ERROR = {"oneOf": [{"type": "null"}, ERROR]}
BOX = {"type": "array", "items": NUM, "minItems": 4, "maxItems": 4}
POINT = {"type": "array", "items": NUM, "minItems": 2, "maxItems": 2}
FACE = _obj({"box": BOX, "landmarks": {"type": "array", "items": POINT, "minItems": 5, "maxItems": 5},
             "detection_score": NUM})
CANDIDATE = _obj({"name": STR, "similarity": NUM})
THRESHOLD_BRIEF = _obj({"value": {"type": "number", "minimum": -1, "maximum": 1},
                        "method": {"enum": ["default", "calibrated", "manual", "override"]}})
THRESHOLD = {**THRESHOLD_BRIEF, "required": ["value", "method"],
             "properties": {**THRESHOLD_BRIEF["properties"],
                            "calibrated_at": {"type": "string", "format": "date-time"},
                            "set_at": {"type": "string", "format": "date-time"},
                            "stale": BOOL}}
IDENTIFICATION = {**FACE, "required": FACE["required"] + ["name", "similarity", "candidates"],
                  "properties": {**FACE["properties"], "name": NULL_STR, "similarity": NUM,
                                 "candidates": _arr(CANDIDATE)}}
IMAGE_RESULT = _obj({"input": STR, "kind": {"const": "image"}, "error": NULL_ERROR,
                     "threshold": {"oneOf": [{"type": "null"}, THRESHOLD_BRIEF]},
                     "faces": _arr(IDENTIFICATION), "annotated": NULL_STR})
TRACK = _obj({"track": INT, "name": NULL_STR, "similarity": NUM, "first_seen": NUM, "last_seen": NUM,
              "frames": INT, "best_frame_time": NUM, "candidates": _arr(CANDIDATE)})
PRESENCE = _obj({"name": STR, "ranges": _arr(POINT), "seconds": NUM, "tracks": _arr(INT)})
VIDEO_RESULT = _obj({"input": STR, "kind": {"const": "video"}, "error": NULL_ERROR,
                     "threshold": {"oneOf": [{"type": "null"}, THRESHOLD_BRIEF]},
                     "duration": NUM, "frames_decoded": INT, "frames_sampled": INT, "broken_frames": INT,
                     "tracks": _arr(TRACK), "people": _arr(PRESENCE), "format": NULL_STR,
                     "width": {"type": ["integer", "null"]}, "height": {"type": ["integer", "null"]},
                     "fps": NULL_NUM, "sample_fps": NULL_NUM, "warnings": _arr(STR),
                     "annotated": NULL_STR, "contact_sheet": NULL_STR})
SKIPPED = _obj({"path": STR, "reason": STR})
TOTALS = _obj({"people": INT, "sources": INT, "faces": INT})
ENROLL_ITEM = _obj({"path": STR, "person": STR,
                    "status": {"enum": ["added", "skipped", "failed", "ignored"]},
                    "code": NULL_STR, "reason": NULL_STR, "note": NULL_STR, "faces_added": INT})


# --- the library (issue #14) ---------------------------------------------------------------------
KIND = {"enum": ["image", "animation", "video"]}
TIME_RANGE = {"oneOf": [{"type": "null"}, POINT]}
LIBRARY_TOTALS = _obj({"sources": INT, "sightings": INT, "named": INT, "clusters": INT})
INDEX_ITEM = _obj({"path": STR, "status": {"enum": ["indexed", "updated", "unchanged", "duplicate", "failed",
                                                    "removed"]},
                   "kind": {"oneOf": [{"type": "null"}, KIND]}, "sightings": INT, "code": NULL_STR,
                   "reason": NULL_STR})
CLUSTER_FACE = _obj({"sighting": INT, "source": STR, "kind": KIND, "box": BOX, "time": NULL_NUM,
                     "time_range": TIME_RANGE, "similarity_to_centre": NUM})
APPEARANCE = _obj({"sighting": INT, "source": STR, "kind": KIND, "box": BOX, "time": TIME_RANGE,
                   "best_time": NULL_NUM, "similarity": NUM, "named": BOOL})


def _doc(name: str, title: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    body = _obj({"schema": {"const": f"facedex.{name}/1"}, **props}, required)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": f"facedex.{name}/1",
            "title": title, **body}


SCHEMAS: dict[str, dict[str, Any]] = {
    "identify": _doc("identify", "facedex identify --json", {
        "gallery": STR, "threshold": THRESHOLD, "interrupted": BOOL,
        "results": _arr({"oneOf": [IMAGE_RESULT, VIDEO_RESULT]}), "skipped": _arr(SKIPPED),
        "summary": _obj({"inputs": INT, "processed": INT, "failed": INT, "faces": INT, "named": INT})}),
    "identify-result": {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": "facedex.identify-result/1",
                        "title": "one input's result (an element of identify's results; the service's /v1/identify)",
                        "oneOf": [IMAGE_RESULT, VIDEO_RESULT]},
    "enroll": _doc("enroll", "facedex enroll --json", {
        "gallery": STR, "interrupted": BOOL, "added": INT, "skipped": INT, "failed": INT, "ignored": INT,
        "people_without_faces": _arr(STR), "warnings": _arr(STR), "totals": TOTALS, "threshold": THRESHOLD,
        "items": _arr(ENROLL_ITEM)}),
    "verify": _doc("verify", "facedex verify --json", {
        "inputs": {**_arr(STR), "minItems": 2, "maxItems": 2}, "same_person": BOOL, "similarity": NUM,
        "threshold": THRESHOLD_BRIEF, "faces": {**_arr(FACE), "minItems": 2, "maxItems": 2},
        "faces_found": _arr(INT), "embedder": STR}),
    "people": _doc("people", "facedex people --json", {
        "gallery": STR, "embedder": STR, "totals": TOTALS, "threshold": THRESHOLD,
        "people": _arr(_obj({"name": STR, "faces": INT, "sources": INT}))}),
    "person": _doc("person", "facedex people GALLERY PERSON --json", {
        "gallery": STR, "name": STR,
        "faces": _arr(_obj({"face_id": INT, "path": NULL_STR, "sha256": NULL_STR, "box": BOX,
                            "landmarks": _arr(POINT), "detection_score": NUM}))}),
    "forget": _doc("forget", "facedex forget --json", {
        "gallery": STR,
        "results": _arr(_obj({"name": STR, "forgotten": BOOL, "faces": INT, "sources": INT, "error": NULL_ERROR}))}),
    "calibrate": _doc("calibrate", "facedex calibrate --json", {"gallery": STR, "threshold": THRESHOLD}),
    "detect": _doc("detect", "facedex detect --json", {
        "interrupted": BOOL,
        "results": _arr(_obj({"input": STR, "kind": {"const": "image"}, "error": NULL_ERROR,
                              "faces": _arr(FACE), "annotated": NULL_STR})),
        "skipped": _arr(SKIPPED),
        "summary": _obj({"inputs": INT, "processed": INT, "failed": INT, "faces": INT})}),
    "models": _doc("models", "facedex models --json", {
        "models": _arr(_obj({"name": STR, "task": {"enum": ["detector", "embedder"]}, "sha256": STR, "id": STR,
                             "prepared": NULL_STR}))}),
    "error": _doc("error", "any command's fatal error with --json (exit 2); every error answer of facedex serve",
                  {"error": ERROR}),
    # facedex serve (docs/service.md): documents that only the HTTP service returns
    "gallery": _doc("gallery", "facedex serve: GET /v1/gallery", {
        "gallery": STR, "embedder": STR, "totals": TOTALS, "threshold": THRESHOLD, "version": STR, "ready": BOOL,
        "limits": _obj({"max_photo_bytes": INT, "max_video_bytes": INT, "max_enroll_bytes": INT, "max_files": INT,
                        "workers": INT, "queue": INT, "job_after": NUM}),
        "caller": _obj({"scope": {"enum": ["read", "enroll", "admin"]}, "keys_required": BOOL}),
        "load": _obj({"pending": INT, "capacity": INT, "kept": INT, "running": INT})}),
    "job": _doc("job", "facedex serve: an identification job (POST /v1/identify's 202, GET /v1/jobs/ID)", {
        "id": STR, "url": STR, "status": {"enum": ["queued", "running", "done", "failed"]}, "input": STR,
        "created": {"type": "string", "format": "date-time"},
        "started": {"type": ["string", "null"], "format": "date-time"},
        "finished": {"type": ["string", "null"], "format": "date-time"},
        "progress": _obj({"frames_done": INT, "frames_total": {"type": ["integer", "null"], "minimum": 0}}),
        "status_code": {"type": ["integer", "null"]},
        "result": {"oneOf": [{"type": "null"}, IMAGE_RESULT, VIDEO_RESULT]}, "error": NULL_ERROR}),
    # --- the library (issue #14, docs/library.md) ------------------------------------------------
    "index": _doc("index", "facedex index --json", {
        "gallery": STR, "interrupted": BOOL, "indexed": INT, "updated": INT, "unchanged": INT, "duplicate": INT,
        "failed": INT, "removed": INT, "sightings_added": INT, "totals": LIBRARY_TOTALS,
        "items": _arr(INDEX_ITEM), "skipped": _arr(SKIPPED)}),
    "discover": _doc("discover", "facedex discover --json", {
        "gallery": STR,
        "clusters": _arr(_obj({"id": {"type": "string", "pattern": "^[a-z2-7]{8}$"}, "size": INT,
                               "faces": _arr(CLUSTER_FACE)})),
        "unclustered": INT, "sightings": INT, "claimed": {"type": "object", "additionalProperties": INT},
        "named": INT, "low_quality": INT,
        "threshold": _obj({"value": {"type": "number", "minimum": -1, "maximum": 1}, "source": STR}),
        "identify_threshold": {"oneOf": [{"type": "null"}, THRESHOLD]}, "min_size": INT, "html": NULL_STR}),
    "name": _doc("name", "facedex name --json", {
        "gallery": STR, "cluster": STR, "person": STR, "created": BOOL, "enrolled": INT, "sources": INT,
        "excluded": _arr(INT), "skipped": _arr(_obj({"sighting": INT, "person": STR})), "warnings": _arr(STR),
        "totals": TOTALS}),
    "find": _doc("find", "facedex find --json", {
        "gallery": STR, "person": STR, "threshold": THRESHOLD, "appearances": _arr(APPEARANCE), "sources": INT,
        "sightings_searched": INT}),
    "people-edit": _doc("people-edit", "facedex people --merge/--rename/--remove-face/--remove-source --json", {
        "gallery": STR, "operation": {"enum": ["merge", "rename", "remove-face", "remove-source"]}, "person": STR,
        "into": NULL_STR, "faces_moved": INT, "faces_removed": INT, "sources_removed": INT, "person_removed": BOOL,
        "people_affected": _arr(STR), "totals": TOTALS}),
}


def schema(name: str) -> dict[str, Any]:
    return SCHEMAS[name]


def write(folder: str | Path) -> list[Path]:
    """Write every schema as ``<folder>/<name>.schema.json``."""
    from .files import atomic_write_text

    out = []
    for name, doc in SCHEMAS.items():
        path = Path(folder) / f"{name}.schema.json"
        atomic_write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover
    for p in write(sys.argv[1] if len(sys.argv) > 1 else "docs/schemas"):
        print(p)
