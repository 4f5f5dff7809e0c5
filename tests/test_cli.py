"""The real `facedex` command, driven as a user would: JSON shapes and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import check_schema, lfw_image, lfw_images, make_people, strangers


def facedex(*args, check_rc=None, timeout=300):
    proc = subprocess.run([sys.executable, "-m", "facedex", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=os.environ.copy())
    if check_rc is not None:
        assert proc.returncode == check_rc, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


@pytest.fixture
def people(tmp_path):
    return make_people(tmp_path / "people", {
        "Hugo_Chavez": lfw_images("Hugo_Chavez")[:4],
        "Ariel_Sharon": lfw_images("Ariel_Sharon")[:4],
        "Jean Chrétien": lfw_images("Jean_Chretien")[:4],
    })


def test_enroll_identify_people_forget_calibrate(tmp_path, people):
    g = tmp_path / "my.gallery"
    r = facedex("enroll", g, people, "--multiple", "largest", "--json", check_rc=0)
    report = check_schema("enroll", json.loads(r.stdout))
    assert report["added"] == 12 and report["failed"] == 0 and report["totals"]["people"] == 3

    r = facedex("enroll", g, people, "--multiple", "largest", check_rc=0)
    assert "added 0 images, skipped 12" in r.stdout

    probes = [lfw_image("Hugo_Chavez", 20), lfw_image("Jean_Chretien", 20), strangers(1)[0]]
    r = facedex("identify", g, *probes, "--json", "--annotate", tmp_path / "ann", check_rc=0)
    doc = check_schema("identify", json.loads(r.stdout))
    assert doc["threshold"]["value"] == 0.47 and doc["threshold"]["method"] == "default"  # which threshold applied
    assert doc["summary"] == {"inputs": 3, "processed": 3, "failed": 0, "faces": 3, "named": 2}
    results = doc["results"]
    assert [x["input"] for x in results] == [str(p) for p in probes]
    for res in results:
        assert res["error"] is None and res["faces"] and res["kind"] == "image"
        assert res["threshold"] == {"value": 0.47, "method": "default"}
        assert Path(res["annotated"]).parent == tmp_path / "ann" and Path(res["annotated"]).is_file()
        for face in res["faces"]:
            assert set(face) == {"box", "landmarks", "detection_score", "name", "similarity", "score", "candidates"}
            assert len(face["box"]) == 4 and len(face["landmarks"]) == 5
            assert all(len(p) == 2 for p in face["landmarks"])
            # the score (similarity less any crowding penalty) is what met the threshold, or did not
            assert face["score"] <= face["similarity"] + 1e-4 and (face["name"] is None) == (face["score"] < 0.47)
            assert all(set(c) == {"name", "similarity"} for c in face["candidates"])
    names = [{f["name"] for f in res["faces"]} for res in results]
    assert "Hugo_Chavez" in names[0] and "Jean Chrétien" in names[1] and names[2] == {None}
    assert "threshold 0.470 (default" in r.stderr  # says which threshold is in use
    assert sorted(os.listdir(tmp_path / "ann")) == sorted(p.name for p in probes)

    r = facedex("people", g, "--json", check_rc=0)
    listing = check_schema("people", json.loads(r.stdout))
    assert {p["name"]: p["faces"] for p in listing["people"]} == {
        "Hugo_Chavez": 4, "Ariel_Sharon": 4, "Jean Chrétien": 4}
    r = facedex("people", g, "Jean Chrétien", check_rc=0)
    assert "Jean_Chretien_0001.jpg" in r.stdout
    check_schema("person", json.loads(facedex("people", g, "Jean Chrétien", "--json", check_rc=0).stdout))

    r = facedex("calibrate", g, "--fpir", "0.1", "--json", check_rc=0)
    cal = check_schema("calibrate", json.loads(r.stdout))["threshold"]
    assert cal["method"] == "calibrated" and cal["stranger_searches"] == 12
    assert cal["calibrated_at"].endswith("Z") and cal["calibrated_at"][:2] == "20"  # ISO 8601, not an epoch
    r = facedex("identify", g, probes[0], check_rc=0)
    assert "calibrated for FPIR 0.1" in r.stderr

    r = facedex("forget", g, "Jean Chrétien", "Nobody", "--json", check_rc=1)
    out = check_schema("forget", json.loads(r.stdout))["results"]
    assert out[0]["forgotten"] and out[0]["faces"] == 4
    assert not out[1]["forgotten"] and "Nobody" in out[1]["error"]["message"]
    assert out[1]["error"]["code"] == "gallery.person_not_found"
    r = facedex("identify", g, probes[1], "--json", check_rc=0)
    assert all(f["name"] != "Jean Chrétien" for f in json.loads(r.stdout)["results"][0]["faces"])


def test_identify_exit_code_1_when_some_inputs_fail(tmp_path, people):
    g = tmp_path / "g.gallery"
    facedex("enroll", g, people, "--multiple", "largest", check_rc=0)
    (tmp_path / "bad.jpg").write_bytes(b"")
    r = facedex("identify", g, lfw_image("Ariel_Sharon", 30), tmp_path / "bad.jpg", tmp_path / "nope.png",
                "--json", check_rc=1)
    res = check_schema("identify", json.loads(r.stdout))["results"]
    assert res[0]["error"] is None and res[0]["faces"]
    assert "empty" in res[1]["error"]["message"] and res[1]["faces"] == [] and res[1]["error"]["code"] == "media.corrupt"
    assert "no such file" in res[2]["error"]["message"] and res[2]["error"]["code"] == "media.not_found"


def test_enroll_exit_code_1_and_report_when_some_images_fail(tmp_path, people):
    (people / "Hugo_Chavez" / "broken.jpg").write_text("not a jpeg")
    r = facedex("enroll", tmp_path / "g.gallery", people, "--multiple", "largest", check_rc=1)
    assert "added 12 images" in r.stdout and "broken.jpg" in r.stdout


def test_usage_errors_exit_2(tmp_path):
    assert facedex("identify", check_rc=2).stderr
    r = facedex("identify", tmp_path / "missing.gallery", lfw_image("Ariel_Sharon", 1), check_rc=2)
    assert "no gallery" in r.stderr
    r = facedex("enroll", tmp_path / "g.gallery", tmp_path, "--min-face", "-5", check_rc=2)
    assert "--min-face" in r.stderr and "must be >= 0" in r.stderr
    for bad in ("5", "-3", "nan", "inf", "x"):
        r = facedex("identify", tmp_path / "g.gallery", lfw_image("Ariel_Sharon", 1), "--threshold", bad, check_rc=2)
        assert "--threshold" in r.stderr
    r = facedex("identify", tmp_path / "missing.gallery", lfw_image("Ariel_Sharon", 1), "--json", check_rc=2)
    assert check_schema("error", json.loads(r.stdout))["error"]["code"] == "gallery.not_found"
    r = facedex("enroll", tmp_path / "g2.gallery", tmp_path, "--embedder", "no-such-model", check_rc=2)
    assert "sface-2021dec" in r.stderr  # lists the known embedders


def test_detect_json(tmp_path):
    r = facedex("detect", lfw_image("Colin_Powell", 10), tmp_path / "x.jpg", "--json", check_rc=1)
    res = check_schema("detect", json.loads(r.stdout))["results"]
    assert len(res[0]["faces"]) == 3 and res[1]["error"]["code"] == "media.not_found"
    r = facedex("models", "--json", check_rc=0)
    models = check_schema("models", json.loads(r.stdout))["models"]
    assert {m["name"] for m in models} == {"yunet-2023mar", "sface-2021dec", "dlib-resnet-v1"}


def test_sigkill_during_enroll_leaves_a_consistent_gallery_that_completes(tmp_path):
    """Kill -9 part-way: the gallery opens, holds only whole records, and the next
    run adds exactly what is missing."""
    people = make_people(tmp_path / "people", {
        "Colin_Powell": lfw_images("Colin_Powell")[:60],
        "Tony_Blair": lfw_images("Tony_Blair")[:60],
    })
    g = tmp_path / "kill.gallery"
    cmd = [sys.executable, "-m", "facedex", "enroll", str(g), str(people), "--multiple", "largest"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    faces = 0
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
            if not g.exists():
                continue
            try:
                con = sqlite3.connect(f"file:{g}?mode=ro", uri=True, timeout=0.05)
                faces = con.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
                con.close()
            except sqlite3.Error:
                continue
            if faces > 0:
                break
        assert proc.poll() is None, "enroll finished before it could be killed; use more images"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL
    con = sqlite3.connect(g)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    partial = con.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
    orphans = con.execute("SELECT COUNT(*) FROM sources s WHERE NOT EXISTS "
                          "(SELECT 1 FROM faces f WHERE f.source_id = s.id)").fetchone()[0]
    con.close()
    assert 0 < partial < 120 and orphans == 0
    r = facedex("enroll", g, people, "--multiple", "largest", "--json", check_rc=0)
    report = json.loads(r.stdout)
    assert report["skipped"] == partial and report["added"] == 120 - partial
    con = sqlite3.connect(g)
    assert con.execute("SELECT COUNT(*) FROM faces").fetchone()[0] == 120
    dup = con.execute("SELECT COUNT(*) FROM (SELECT person_id, sha256 FROM sources "
                      "GROUP BY person_id, sha256 HAVING COUNT(*) > 1)").fetchone()[0]
    assert dup == 0
    con.close()
    r = facedex("people", g, "--json", check_rc=0)
    assert json.loads(r.stdout)["totals"] == {"people": 2, "sources": 120, "faces": 120}


def test_help_lists_the_commands():
    r = facedex("--help", check_rc=0)
    for cmd in ("enroll", "identify", "people", "forget", "calibrate", "detect"):
        assert cmd in r.stdout
    assert Path(shutil.which("facedex") or "").name in ("facedex", "")
