"""JSON Schemas (draft 2020-12) of what ``facedex … --json`` prints and the
HTTP service returns. Each document names its schema and version in its
``"schema"`` key (``"facedex.identify/1"``); a version changes only when a
field changes meaning or disappears (new fields may be added within one).

The files in ``docs/schemas/`` are written from here by ``scripts/gen-docs``,
and the test suite checks that they are current and that every command's
output validates.
"""

from __future__ import annotations

import json
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
IDENTIFICATION = {**FACE, "required": FACE["required"] + ["name", "similarity", "score", "candidates"],
                  "properties": {**FACE["properties"], "name": NULL_STR, "similarity": NUM, "score": NUM,
                                 "candidates": _arr(CANDIDATE)}}
IMAGE_RESULT = _obj({"input": STR, "kind": {"const": "image"}, "error": NULL_ERROR,
                     "threshold": {"oneOf": [{"type": "null"}, THRESHOLD_BRIEF]},
                     "faces": _arr(IDENTIFICATION), "annotated": NULL_STR})
TRACK = _obj({"track": INT, "name": NULL_STR, "similarity": NUM, "score": NUM, "first_seen": NUM, "last_seen": NUM,
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


# --- facedex watch (issue #17, docs/video.md) ------------------------------------------------------
NULL_NUM_NN = {"type": ["number", "null"], "minimum": 0}
WATCH_EVENT_PROPS = {
    "event": {"enum": ["source", "started", "named", "ended", "stopped"]}, "source": STR,
    "time": {"type": "string", "format": "date-time"}, "t": {"type": "number", "minimum": 0},
    # track events
    "track": INT, "box": BOX, "name": NULL_STR, "similarity": NULL_NUM, "candidates": _arr(CANDIDATE),
    "frames": INT, "first_seen": NUM, "last_seen": NUM, "segments": _arr(POINT),
    "ended": {"enum": ["gap", "cut", "end", "stop"]},
    "dropped": {"enum": [None, "short", "non_face", "poor"]},
    # source events
    "status": {"enum": ["connected", "lost", "reconnecting", "ended"]}, "error": STR, "attempt": INT,
    "retry_in": NUM, "codec": STR, "width": INT, "height": INT,
    # the final summary
    "frames_read": INT, "frames_wanted": INT, "frames_analysed": INT, "frames_dropped": INT, "reconnects": INT,
    "faces": INT, "embedded": INT, "tracks_merged": INT, "tracks_dropped": {"type": "object",
                                                                           "additionalProperties": INT},
    "latency": _obj({"p50": NULL_NUM_NN, "p95": NULL_NUM_NN, "max": NULL_NUM_NN}), "seconds": NUM,
}
_WATCH_REQUIRED = {
    "started": ["track", "box", "name", "similarity", "candidates", "frames"],
    "named": ["track", "box", "name", "similarity", "candidates"],
    "ended": ["track", "box", "name", "similarity", "first_seen", "last_seen", "frames", "segments", "ended",
              "dropped"],
    "source": ["status"],
    "stopped": ["frames_read", "frames_analysed", "frames_dropped", "reconnects", "latency", "seconds"],
}


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
        "items": _arr(INDEX_ITEM), "skipped": _arr(SKIPPED), "engine": {"enum": ["local", "ray"]},
        # --engine ray: what the Ray run did (null when no photo needed it)
        "ray": {"oneOf": [{"type": "null"}, _obj({"shards": INT, "shards_written": INT, "shards_skipped": INT,
                                                  "images": INT, "actors": INT, "seconds": NUM})]}}),
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

# --- the pipeline commands (issue #11): clean, collect, train, eval, data ----------------------------
COUNTS = {"type": "object", "additionalProperties": INT}
#: facedex clean's rejection reasons (facedex.clean.REASONS): stable codes
CLEAN_REASON = {"enum": ["unreadable", "no_face", "too_small", "duplicate", "blurred", "extreme_pose",
                         "wrong_person", "inconsistent", "no_consensus", "several_faces", "near_duplicate",
                         "label_conflict"]}
#: facedex collect's skip and failure reasons (facedex.collect.reasons): stable codes, http_<status> included
COLLECT_REASON = {"type": "string", "pattern": "^[a-z0-9_]+$"}
COLLECT_COUNTS = {"type": "object", "propertyNames": COLLECT_REASON, "additionalProperties": INT}
EXPORT = _obj({"onnx": STR, "card": STR, "card_id": STR, "max_abs_diff": NUM, "min_cosine": NUM,
               "default_threshold": NULL_NUM, "checkpoint": NULL_STR},
              ["onnx", "card", "card_id", "max_abs_diff", "min_cosine", "default_threshold"])
ANY_OBJ = {"type": "object"}
LFW_CHECK = _obj({"path": STR, "people": INT, "images": INT, "expected_people": INT, "expected_images": INT,
                  "pairs": {"type": "object", "additionalProperties": {"enum": ["ok", "missing", "different"]}},
                  "ok": BOOL, "problems": _arr(STR)})


def _variants(doc: dict[str, Any], *variants: dict[str, Any]) -> dict[str, Any]:
    """``doc`` whose instances are exactly one of ``variants`` (each a title, the
    keys it requires and the constant values that tell it apart)."""
    return {**doc, "oneOf": [{"title": v["title"], "required": v["required"],
                              "properties": {k: {"const": c} for k, c in v.get("const", {}).items()}}
                             for v in variants]}


SCHEMAS.update({
    "clean": _variants(_doc("clean", "facedex clean --json (a finished run, one stopped by Ctrl-C, or aborted)", {
        "interrupted": BOOL, "images": INT, "people": INT, "kept": INT, "rejected": INT,
        "by_reason": {"type": "object", "propertyNames": CLEAN_REASON, "additionalProperties": INT},
        "split": COUNTS, "people_without_kept_images": _arr(STR),
        "per_person": {"type": "object", "additionalProperties": _obj({
            "kept": INT, "rejected": INT,
            "reasons": {"type": "object", "propertyNames": CLEAN_REASON, "additionalProperties": INT}})},
        "problems": _arr(_obj({"item": STR, "reason": STR})),
        "thresholds": _obj({"outlier": NUM, "pair": NUM}), "config": ANY_OBJ, "embedder": STR,
        "sources_groups": INT, "manifest": NULL_STR, "report": NULL_STR, "analysed": INT,
        "reused_from_cache": INT, "written": INT,
        "rejections": _arr(_obj({"person": STR, "source": STR, "reason": CLEAN_REASON, "detail": STR})),
        "stopped_during": {"enum": ["hash", "analyse", "write"]}, "aborted": {"const": True},
        "progress": COUNTS}, ["schema", "interrupted"]),
        {"title": "finished", "const": {"interrupted": False},
         "required": ["images", "people", "kept", "rejected", "by_reason", "split", "people_without_kept_images",
                      "per_person", "problems", "thresholds", "config", "embedder", "sources_groups", "manifest",
                      "report", "analysed", "reused_from_cache", "written", "rejections"]},
        {"title": "stopped by Ctrl-C after the images in hand (finished work kept, manifest not updated)",
         "const": {"interrupted": True},
         "required": ["images", "people", "problems", "manifest", "report", "thresholds", "analysed",
                      "reused_from_cache", "written", "stopped_during"]},
        {"title": "aborted by a second Ctrl-C: how far each stage got", "const": {"interrupted": True},
         "required": ["aborted", "progress"]}),
    "collect": _doc("collect", "facedex collect urls|crawl --json", {
        "command": {"enum": ["urls", "crawl"]}, "dst": STR, "downloaded": INT, "bytes": INT, "skipped": INT,
        "failed": INT, "skipped_by_reason": COLLECT_COUNTS, "failed_by_reason": COLLECT_COUNTS,
        "pages": _obj({"fetched": INT, "skipped": INT, "failed": INT, "skipped_by_reason": COLLECT_COUNTS,
                       "failed_by_reason": COLLECT_COUNTS}),
        "failures": _arr(_obj({"kind": {"enum": ["image", "page", "row"]}, "url": STR, "reason": COLLECT_REASON,
                               "detail": STR, "people": _arr(STR), "line": INT},
                              ["kind", "url", "reason", "detail", "people"])),
        "notes": _arr(STR), "totals": _obj({"people": INT, "files": INT, "images": INT, "bytes": INT}),
        "requests": INT, "elapsed_s": NUM, "interrupted": BOOL, "manifest": STR, "sources": STR, "state": STR}),
    "train-run": _variants(_doc("train-run", "facedex train run --json (finished, stopped by Ctrl-C, or aborted)", {
        "out": STR, "epochs_done": INT, "global_step": INT, "interrupted": BOOL,
        "best": {"oneOf": [{"type": "null"}, _obj({"metric": STR, "value": NULL_NUM, "epoch": INT})]},
        "last_checkpoint": NULL_STR, "best_checkpoint": NULL_STR, "export": {"oneOf": [{"type": "null"}, EXPORT]},
        "history": _arr(_obj({"epoch": INT, "step": INT}, ["epoch", "step"])), "run": ANY_OBJ,
        "aborted": {"const": True}}, ["schema", "out", "interrupted", "last_checkpoint"]),
        {"title": "finished, or stopped by Ctrl-C after a step (with a checkpoint; --resume continues)",
         "required": ["epochs_done", "global_step", "best", "best_checkpoint", "export", "history", "run"]},
        {"title": "aborted by a second Ctrl-C: the last checkpoint stays valid", "const": {"interrupted": True},
         "required": ["aborted"]}),
    "train-export": _doc("train-export", "facedex train export --json", EXPORT["properties"], EXPORT["required"]
                         + ["checkpoint"]),
    "train-list": _doc("train-list", "facedex train list --json", {
        "backbones": _arr(_obj({"name": STR, "size": {"enum": ["small", "large"]}, "pretrained": _arr(STR),
                                "summary": STR})),
        "losses": _arr(_obj({"name": STR, "summary": STR}))}),
    "train-config": _doc("train-config", "facedex train run --print-config --json: the resolved settings", {
        "epochs": {"type": "integer", "minimum": 1}, "batch_size": {"type": "integer", "minimum": 2}, "seed": INT,
        "device": STR, "amp": BOOL, "threads": INT,
        **{section: ANY_OBJ for section in ("data", "augment", "optim", "stability", "validation", "checkpoint")},
        "model": _obj({"backbone": STR, "init": STR, "freeze": INT, "freeze_bn": BOOL, "cache_views": INT,
                       "args": ANY_OBJ}),
        "loss": _obj({"name": STR, "head_init": {"enum": ["class_means", "random"]}, "args": ANY_OBJ}),
        "export": _obj({"enabled": BOOL, "name": STR, "checkpoint": {"enum": ["best", "last"]}, "opset": INT})}),
    "eval-lfw": _doc("eval-lfw", "facedex eval lfw --json", {
        "protocol": STR, "embedder": STR, "accuracy": NUM, "accuracy_std": NUM, "fold_accuracies": _arr(NUM),
        "fold_thresholds": _arr(NUM), "val_at_far": NUM, "val_at_far_std": NUM, "far_target": NUM,
        "far_achieved": NUM, "pairs": INT, "images": INT, "fallbacks": INT, "fallback_images": _arr(STR),
        "seconds": NUM}),
    "eval-identify": _doc("eval-identify", "facedex eval identify --json", {
        "protocol": STR, "embedder": STR, "people": INT, "gallery_faces": INT, "genuine_searches": INT,
        "stranger_searches": INT, "rank1": NUM, "rank5": NUM,
        "open_set": _arr(_obj({"fpir_target": NUM, "threshold": NUM, "fpir": NUM, "fnir": NUM})),
        "calibration_check": {"type": "object", "additionalProperties": _obj({
            "threshold": NUM, "fpir_on_real_strangers": NUM, "fnir": NUM, "gallery_stranger_searches": INT,
            "low_confidence": BOOL})},
        "gallery_size_sweep": _arr({**_obj({"identities": INT, "distractors": INT, "faces": INT, "rank1": NULL_NUM,
                                            "note": STR}, ["identities", "distractors", "faces", "rank1"]),
                                    "patternProperties": {"^(fnir|threshold)_at_fpir_": NUM}}),
        "fallbacks": INT, "skipped_gallery_images": _arr(STR), "seconds": NUM}),
    "data-fetch": _doc("data-fetch", "facedex data fetch --json", {
        "path": STR, "data_dir": STR, "people": INT, "images": INT, "pairs": {"type": "object",
                                                                              "additionalProperties": STR},
        "downloaded": _arr(STR), "fetched": BOOL, "seconds": NUM}),
    "data-path": _doc("data-path", "facedex data path --json", {
        "dataset": {"enum": ["lfw"]}, "path": STR, "found_by": NULL_STR,
        "fetched_by_facedex": {"type": ["object", "null"]}, "check": {"oneOf": [{"type": "null"}, LFW_CHECK]}}),
})

SCHEMAS["watch-event"] = {
    **_doc("watch-event", "facedex watch: one line of its JSON Lines output (and each --post body)",
           WATCH_EVENT_PROPS, ["schema", "event", "source", "time", "t"]),
    "allOf": [{"if": {"properties": {"event": {"const": kind}}}, "then": {"required": req}}
              for kind, req in _WATCH_REQUIRED.items()]
             + [{"if": {"properties": {"event": {"const": "named"}}},
                 "then": {"properties": {"name": {"type": "string"}}}}],
}


# --- scale (issue #16, docs/scale.md) ----------------------------------------------------------------
SCHEMAS.update({
    "export": _doc("export", "facedex export --json", {
        "gallery": STR, "file": STR, "people": INT, "sources": INT, "faces": INT, "bytes": INT, "seconds": NUM}),
    "import": _doc("import", "facedex import --json", {
        "gallery": STR, "kind": {"enum": ["gallery", "enroll-shard"]}, "files": _arr(STR), "people": INT,
        "sources_added": INT, "sources_skipped": INT, "faces_added": INT,
        "threshold": {"enum": ["imported", "kept", "none"]}, "failed": INT, "warnings": _arr(STR),
        "seconds": NUM, "totals": TOTALS},
        ["schema", "gallery", "kind", "files", "people", "sources_added", "sources_skipped", "faces_added",
         "threshold", "totals"]),
    "backend": _doc("backend", "facedex backend --json", {
        "gallery": STR, "engine": {"enum": ["faiss", "milvus"]}, "faces": INT, "generation": INT,
        "index": STR, "params": {"type": ["string", "object"]}, "exact": BOOL, "exact_up_to": INT,
        "index_file": NULL_STR, "index_generation": {"type": ["integer", "null"]},
        "index_faces": {"type": ["integer", "null"]}, "build_seconds": NULL_NUM,
        "uri": STR, "collection": STR, "index_type": STR, "search_params": {"type": "object"}},
        ["schema", "gallery", "engine", "faces", "generation"]),
})


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

