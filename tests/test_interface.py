"""The interface as a user meets it: one entry point for CLI and Python, global
options anywhere, help with examples, Ctrl-C that keeps what finished, verify,
stdin, folders listed by content, outputs that never replace inputs."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import facedex
from facedex.errors import OutputError

from .conftest import check_schema, lfw_image, lfw_images, make_people, strangers
from .test_cli import facedex as run_cli


@pytest.fixture
def gallery(gallery_copy):
    return gallery_copy


def test_cli_and_python_give_the_same_results(gallery, tmp_path):
    probes = [lfw_image("Hugo_Chavez", 20), strangers(1)[0], tmp_path / "missing.jpg"]
    r = run_cli("identify", gallery, *probes, "--json", check_rc=1)
    cli = check_schema("identify", json.loads(r.stdout))["results"]
    with facedex.Gallery.open(gallery) as g:
        api = [res.to_dict() for res in facedex.identify_paths(g, probes)]
    assert cli == api
    for res in api:
        check_schema("identify-result", res)


def test_global_options_work_before_and_after_the_command(gallery):
    photo = lfw_image("Hugo_Chavez", 20)
    after = run_cli("identify", gallery, photo, "--runtime", "opencv", "-v", "--json", check_rc=0)
    before = run_cli("--runtime", "opencv", "identify", gallery, photo, "--json", check_rc=0)
    a, b = json.loads(after.stdout)["results"][0], json.loads(before.stdout)["results"][0]
    assert [f["name"] for f in a["faces"]] == [f["name"] for f in b["faces"]]


def test_every_command_has_a_description_and_examples():
    from facedex.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    seen = set()
    for name, p in sub.choices.items():
        seen.add(name)
        nested = [a for a in p._actions if a.__class__.__name__ == "_SubParsersAction"]
        parsers = list(nested[0].choices.values()) if nested else [p]
        for q in parsers:
            assert q.description, q.prog
            text = q.format_help()
            assert "examples:" in text, q.prog
            for action in q._actions:
                if "--json" in action.option_strings:
                    assert action.help, q.prog
            assert "--runtime" in text, q.prog  # global options are accepted after the command
    assert {"enroll", "identify", "verify", "people", "forget", "calibrate", "detect", "models"} <= seen


def test_verify_same_and_different_people(tmp_path):
    a, b = lfw_image("Tony_Blair", 1), lfw_image("Tony_Blair", 2)
    other = lfw_image("Hugo_Chavez", 1)
    same = check_schema("verify", json.loads(run_cli("verify", a, b, "--json", check_rc=0).stdout))
    diff = check_schema("verify", json.loads(run_cli("verify", a, other, "--json", check_rc=0).stdout))
    assert same["same_person"] and not diff["same_person"]
    assert same["similarity"] > same["threshold"]["value"] > diff["similarity"]
    assert same["threshold"] == {"value": 0.331, "method": "default"}
    v = facedex.verify(a, other)
    assert v.to_dict() == diff
    r = run_cli("verify", a, tmp_path / "none.jpg", "--json", check_rc=2)
    assert json.loads(r.stdout)["error"]["code"] == "media.not_found"
    assert "same person" in run_cli("verify", a, b, check_rc=0).stdout


def test_stdin_is_read_as_an_image(gallery):
    data = lfw_image("Hugo_Chavez", 20).read_bytes()
    proc = subprocess.run([sys.executable, "-m", "facedex", "identify", str(gallery), "-", "--json"],
                          input=data, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (res,) = json.loads(proc.stdout)["results"]
    assert res["input"] == "-" and any(f["name"] == "Hugo_Chavez" for f in res["faces"])


def test_folders_are_listed_by_content_and_what_is_skipped_is_reported(gallery, tmp_path):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(lfw_image("Hugo_Chavez", 20), folder / "photo_without_suffix")
    shutil.copy(lfw_image("Ariel_Sharon", 20), folder / "sub" / "b.jpg")
    (folder / "notes.txt").write_text("hello")
    (folder / "broken.jpg").write_text("named like an image")  # kept: its result says what is wrong
    (folder / ".hidden.jpg").write_bytes(lfw_image("Hugo_Chavez", 21).read_bytes())
    r = run_cli("identify", gallery, folder, "--json", check_rc=1)
    doc = check_schema("identify", json.loads(r.stdout))
    names = sorted(Path(x["input"]).name for x in doc["results"])
    assert names == ["b.jpg", "broken.jpg", "photo_without_suffix"]
    skipped = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert set(skipped) == {"notes.txt", ".hidden.jpg"}
    assert "text" in skipped["notes.txt"] and "hidden" in skipped[".hidden.jpg"]
    text = run_cli("identify", gallery, folder, check_rc=1).stdout
    assert "skipped 2 files" in text and "notes.txt" in text


def test_annotate_never_replaces_an_input_and_is_checked_before_any_work(gallery, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    src = photos / "Hugo.jpg"
    shutil.copy(lfw_image("Hugo_Chavez", 20), src)
    before = src.read_bytes()
    r = run_cli("identify", gallery, src, "--annotate", photos, "--json", check_rc=0)
    res = json.loads(r.stdout)["results"][0]
    assert src.read_bytes() == before and res["annotated"] != str(src) and Path(res["annotated"]).is_file()
    # an existing output is not replaced either: a new name
    again = json.loads(run_cli("identify", gallery, src, "--annotate", photos, "--json", check_rc=0).stdout)
    assert again["results"][0]["annotated"] not in (res["annotated"], str(src))
    (tmp_path / "afile").write_text("x")
    for bad in (tmp_path / "afile", tmp_path / "afile" / "under"):
        r = run_cli("identify", gallery, src, "--annotate", bad, "--json", check_rc=2)
        assert json.loads(r.stdout)["error"]["code"] == "output.error" and "Traceback" not in r.stderr
    with facedex.Gallery.open(gallery) as g, pytest.raises(OutputError):
        facedex.identify_paths(g, [src], annotate=tmp_path / "afile")


def test_ctrl_c_prints_what_finished_as_valid_json_and_exits_130(gallery, tmp_path):
    folder = tmp_path / "many"
    folder.mkdir()
    for person in ("George_W_Bush", "Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"):
        for f in lfw_images(person)[:150]:
            os.symlink(f, folder / f.name)
    proc = subprocess.Popen([sys.executable, "-m", "facedex", "identify", str(gallery), str(folder), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stderr.readline()  # the threshold line: inputs are listed, work starts
    assert b"threshold" in line
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    out, errs = proc.communicate(timeout=120)
    assert proc.returncode == 130, errs[-2000:]
    doc = check_schema("identify", json.loads(out))
    assert doc["interrupted"] is True
    assert 0 < doc["summary"]["processed"] < doc["summary"]["inputs"] == len(os.listdir(folder))
    assert len(doc["results"]) == doc["summary"]["processed"]
    assert b"interrupted after" in errs


def test_enroll_picks_the_face_that_matches_the_person(tmp_path):
    # Colin_Powell_0010 shows three faces; with his single-face photos enrolled, "auto" takes his.
    people = make_people(tmp_path / "people", {"Colin_Powell": lfw_images("Colin_Powell")[:4] +
                                               [lfw_image("Colin_Powell", 10)]})
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        report = g.enroll(people)
        assert report.added == 5 and report.failed == 0
        (picked,) = [i for i in report.items if i.note]
        assert picked.path.endswith("Colin_Powell_0010.jpg") and "3 faces" in picked.note
        face = next(f for f in g.store.faces_of("Colin_Powell") if f["path"].endswith("_0010.jpg"))
        assert face["box"][2] > 80  # the large central face, not a bystander
        # "reject" keeps the old strict behaviour
        r = g.enroll([lfw_image("Colin_Powell", 10)], person="Someone", multiple="reject")
        assert r.failed == 1 and r.items[0].code == "face.multiple"


def test_a_name_spelled_like_an_enrolled_person_is_warned_about(tmp_path):
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        assert g.enroll([lfw_image("Tony_Blair", 1)], person="Tony Blair", multiple="largest").added == 1
        r = g.enroll([lfw_image("Tony_Blair", 2)], person="tony_blair", multiple="largest")
        assert r.added == 1 and any("'Tony Blair'" in w for w in r.warnings)
    r = run_cli("enroll", tmp_path / "g.gallery", lfw_image("Tony_Blair", 3), "--person", "TONY BLAIR",
                "--multiple", "largest", "--json", check_rc=0)
    assert any("Tony Blair" in w for w in json.loads(r.stdout)["warnings"])


def test_error_codes_are_unique_per_meaning_and_documented():
    from facedex.errors import FacedexError, error_codes

    codes = error_codes()
    assert "media.not_found" in codes and "gallery.not_found" in codes and "output.error" in codes
    stack, classes = [FacedexError], []
    while stack:
        c = stack.pop()
        classes.append(c)
        stack.extend(c.__subclasses__())
    assert all(c.code.count(".") >= 1 or c is FacedexError for c in classes)
    import importlib.machinery
    import importlib.util

    script = Path(__file__).resolve().parents[1] / "scripts" / "gen-docs"
    loader = importlib.machinery.SourceFileLoader("gen_docs", str(script))
    gen = importlib.util.module_from_spec(importlib.util.spec_from_loader("gen_docs", loader))
    loader.exec_module(gen)
    doc = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    assert doc == gen.errors_markdown(), "docs/errors.md is stale: run scripts/gen-docs"
    assert all(f"`{code}`" in doc for code in codes)


def test_published_schemas_match_the_code():
    from facedex.schemas import SCHEMAS

    folder = Path(__file__).resolve().parents[1] / "docs" / "schemas"
    for name, doc in SCHEMAS.items():
        assert json.loads((folder / f"{name}.schema.json").read_text()) == doc, \
            f"docs/schemas/{name}.schema.json is stale: run scripts/gen-docs"


def test_auto_refuses_to_guess_between_equal_faces_until_the_person_is_known(tmp_path):
    from PIL import Image

    # two faces of the same size side by side: Tony Blair on the left, Hugo Chavez on the right
    pair = Image.new("RGB", (500, 250))
    pair.paste(Image.open(lfw_image("Tony_Blair", 5)), (0, 0))
    pair.paste(Image.open(lfw_image("Hugo_Chavez", 5)), (250, 0))
    pair.save(tmp_path / "pair.jpg", quality=95)
    with facedex.Gallery.open(tmp_path / "g.gallery", create=True) as g:
        r = g.enroll([tmp_path / "pair.jpg"], person="Tony Blair")
        assert r.failed == 1 and r.items[0].code == "face.multiple" and "none clearly the largest" in r.items[0].reason
        assert g.enroll(lfw_images("Tony_Blair")[10:14], person="Tony Blair").added == 4
        r = g.enroll([tmp_path / "pair.jpg"], person="Tony Blair")
        assert r.added == 1 and "matches the person's 4 enrolled face(s)" in r.items[0].note
        box = next(f["box"] for f in g.store.faces_of("Tony Blair") if f["path"].endswith("pair.jpg"))
        assert box[0] < 250  # the left face: his
        # and for Hugo Chavez, whose photo shows him on the right, his face is the one taken
        assert g.enroll(lfw_images("Hugo_Chavez")[10:13], person="Hugo Chavez").added == 3
        r = g.enroll([tmp_path / "pair.jpg"], person="Hugo Chavez")
        assert r.added == 1
        box = next(f["box"] for f in g.store.faces_of("Hugo Chavez") if f["path"].endswith("pair.jpg"))
        assert box[0] > 250
