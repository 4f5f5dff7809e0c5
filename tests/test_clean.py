"""`facedex clean` on real LFW images: every filter, multi-person images,
rotation recovery, determinism, incremental runs, splits, safety."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image, ImageFilter

from facedex.clean import CleanConfig, clean
from facedex.errors import CleanError, SourcesFileError

from .conftest import KNOWN, check_schema, lfw_image, lfw_images, make_people
from .test_cli import facedex

MAIN = "Hugo_Chavez"
OTHER = "Ariel_Sharon"


def _jpeg(im: Image.Image, q: int = 90) -> bytes:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, format="JPEG", quality=q)
    return buf.getvalue()


def _tree_hash(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A small noisy collection with one example of every kind of noise."""
    root = tmp_path_factory.mktemp("clean") / "src"
    main = root / MAIN
    main.mkdir(parents=True)
    good = lfw_images(MAIN)[:10]
    for f in good:
        shutil.copy(f, main / f.name)
    for f in lfw_images(OTHER)[:2]:  # wrong person
        shutil.copy(f, main / f"wrong_{f.name}")
    shutil.copy(good[0], main / "copy_of_first.jpg")  # exact duplicate
    im = Image.open(good[1])
    (main / "resized_second.jpg").write_bytes(_jpeg(im.resize((150, 150), Image.Resampling.LANCZOS), 40))
    (main / "cropped_third.jpg").write_bytes(_jpeg(Image.open(good[2]).crop((14, 10, 238, 242)), 85))
    (main / "blurred.jpg").write_bytes(_jpeg(Image.open(lfw_images(MAIN)[10]).filter(ImageFilter.GaussianBlur(5))))
    (main / "tiny.jpg").write_bytes(_jpeg(Image.open(lfw_images(MAIN)[11]).resize((60, 60))))
    (main / "background.jpg").write_bytes(_jpeg(Image.open(good[3]).crop((0, 190, 60, 250)).resize((200, 200))))
    (main / "notes.jpg").write_text("not an image")
    (main / "upside_down.jpg").write_bytes(_jpeg(Image.open(lfw_images(MAIN)[12]).rotate(180)))
    (main / "sideways.jpg").write_bytes(_jpeg(Image.open(lfw_images(MAIN)[13]).rotate(90, expand=True)))
    a, b = Image.open(lfw_images(MAIN)[14]), Image.open(lfw_images(OTHER)[5])
    pair = Image.new("RGB", (500, 250))
    pair.paste(a, (0, 0))
    pair.paste(b, (250, 0))
    (main / "with_other.jpg").write_bytes(_jpeg(pair))
    shutil.copy(lfw_image("Bill_Clinton", 23), main / "profile.jpg")  # yaw ~ -58 degrees
    # a second person whose folder holds the same two-person photo (listed in sources)
    other = root / OTHER
    other.mkdir()
    for f in lfw_images(OTHER)[6:12]:
        shutil.copy(f, other / f.name)
    (other / "with_main.jpg").write_bytes((main / "with_other.jpg").read_bytes())
    # people with one and with two (inconsistent) images, and an odd folder name
    (root / "Only One").mkdir()
    shutil.copy(lfw_image("Zico", 1), root / "Only One" / "z.jpg")
    (root / "Two Mixed").mkdir()
    shutil.copy(lfw_image("Colin_Powell", 1), root / "Two Mixed" / "a.jpg")
    shutil.copy(lfw_image("Tony_Blair", 2), root / "Two Mixed" / "b.jpg")
    (root / "José M. Aznar").mkdir()
    for f in lfw_images("Jose_Maria_Aznar")[:3]:
        shutil.copy(f, root / "José M. Aznar" / f.name)
    (root / "sources.jsonl").write_text(json.dumps(
        {"people": [MAIN, OTHER], "files": [f"{MAIN}/with_other.jpg", f"{OTHER}/with_main.jpg"]}) + "\n")
    before = _tree_hash(root)
    dst = root.parent / "dst"
    report = clean(root, dst, CleanConfig(split=0.25, seed=7), report_html=root.parent / "review.html",
                   wide_margin=2.0)
    return root, dst, report, before


def _decision(report, person, name):
    return next(d for d in report.decisions if d.person == person and d.rel.endswith("/" + name))


def test_src_is_never_modified(noisy):
    root, _, _, before = noisy
    assert _tree_hash(root) == before


@pytest.mark.parametrize("name,reason", [
    ("wrong_Ariel_Sharon_0001.jpg", "wrong_person"),
    ("wrong_Ariel_Sharon_0002.jpg", "wrong_person"),
    ("copy_of_first.jpg", "duplicate"),
    ("resized_second.jpg", "near_duplicate"),
    ("cropped_third.jpg", "near_duplicate"),
    ("blurred.jpg", "blurred"),
    ("tiny.jpg", "too_small"),
    ("background.jpg", "no_face"),
    ("notes.jpg", "unreadable"),
    ("profile.jpg", "extreme_pose"),
])
def test_each_filter_rejects_with_its_reason(noisy, name, reason):
    _, _, report, _ = noisy
    d = _decision(report, MAIN, name)
    assert (d.status, d.reason) == ("rejected", reason), d
    assert d.detail


def test_good_images_are_kept_and_written_aligned(noisy):
    _, dst, report, _ = noisy
    kept = [d for d in report.decisions if d.person == MAIN and d.status == "kept"]
    names = {d.rel.split("/")[-1] for d in kept}
    originals = {f.name for f in lfw_images(MAIN)[:10]}
    assert originals - {"Hugo_Chavez_0002.jpg", "Hugo_Chavez_0003.jpg"} <= names  # a near-duplicate may win
    manifest = [json.loads(x) for x in (dst / "manifest.jsonl").read_text().splitlines()]
    for rec in manifest:
        if rec["decision"] == "kept":
            crop = Image.open(dst / rec["output"])
            assert crop.size == (112, 112)
            assert Image.open(dst / rec["wide"]).size == (224, 224)
            assert "box" in rec and "quality" in rec and rec["split"] in ("train", "val")
        else:
            assert "output" not in rec and rec["reason"]


def test_rotated_images_are_recovered(noisy):
    _, _, report, _ = noisy
    up = _decision(report, MAIN, "upside_down.jpg")
    side = _decision(report, MAIN, "sideways.jpg")
    assert up.status == "kept" and up.rotation == 2
    assert side.status == "kept" and side.rotation == 3  # rotated 90° CCW, undone by 270° CCW


def test_two_person_photo_keeps_the_right_face_for_each(noisy):
    _, _, report, _ = noisy
    mine = _decision(report, MAIN, "with_other.jpg")
    theirs = _decision(report, OTHER, "with_main.jpg")
    assert mine.status == "kept" and theirs.status == "kept"
    assert mine.face_index != theirs.face_index
    a = {d.sha256: d for d in (mine,)}
    assert a  # same photo, two people, two different faces
    box_mine = json.loads(next(x for x in (noisy[1] / "manifest.jsonl").read_text().splitlines()
                               if "with_other.jpg" in x))["box"]
    assert box_mine[0] + box_mine[2] / 2 < 250  # the left half holds Hugo Chavez


def test_two_person_photo_without_sources_is_decided_by_consensus(tmp_path, noisy):
    root, _, _, _ = noisy
    src = tmp_path / "src"
    shutil.copytree(root / MAIN, src / MAIN)
    report = clean(src, tmp_path / "dst")  # no sources.jsonl here
    d = _decision(report, MAIN, "with_other.jpg")
    assert d.status == "kept" and d.extra.get("faces_in_image") == 2


def test_few_images_are_handled(noisy):
    _, dst, report, _ = noisy
    one = _decision(report, "Only One", "z.jpg")
    assert one.status == "kept" and one.unverified
    mixed = [d for d in report.decisions if d.person == "Two Mixed"]
    assert [d.reason for d in mixed] == ["inconsistent", "inconsistent"]
    assert "Two Mixed" in report.summary["people_without_kept_images"]


def test_odd_folder_names_are_preserved(noisy):
    _, dst, report, _ = noisy
    kept = [d for d in report.decisions if d.person == "José M. Aznar" and d.status == "kept"]
    assert len(kept) == 3
    assert len(list((dst / "José M. Aznar").glob("*.png"))) == 3


def test_split_is_reproducible(noisy, tmp_path):
    root, dst, report, _ = noisy
    val = [d for d in report.decisions if d.split == "val"]
    assert val and all(d.status == "kept" for d in val)
    again = clean(root, dst, CleanConfig(split=0.25, seed=7), wide_margin=2.0)
    assert [(d.rel, d.split) for d in again.decisions] == [(d.rel, d.split) for d in report.decisions]
    other = clean(root, dst, CleanConfig(split=0.25, seed=8), wide_margin=2.0)
    assert [d.split for d in other.decisions] != [d.split for d in report.decisions]
    clean(root, dst, CleanConfig(split=0.25, seed=7), wide_margin=2.0)  # leave the fixture as it was


def test_rerun_is_incremental_and_identical(noisy, tmp_path):
    root, _, _, _ = noisy
    src = tmp_path / "src"
    shutil.copytree(root, src)
    dst = tmp_path / "dst"
    first = clean(src, dst)
    files_first = _tree_hash(dst)
    second = clean(src, dst)
    assert second.analysed == 0 and second.reused == first.analysed + first.reused
    assert [(d.rel, d.status, d.reason) for d in second.decisions] == \
           [(d.rel, d.status, d.reason) for d in first.decisions]
    assert _tree_hash(dst) == files_first
    shutil.copy(lfw_images(MAIN)[20], src / MAIN)
    third = clean(src, dst)
    assert third.analysed == 1
    # an image removed from SRC takes its output with it; nothing else in DST is touched
    (dst / "my_notes.txt").write_text("mine")
    removed = src / MAIN / lfw_images(MAIN)[20].name
    out_before = {p.name for p in (dst / MAIN).glob("*.png")}
    removed.unlink()
    clean(src, dst)
    out_after = {p.name for p in (dst / MAIN).glob("*.png")}
    assert len(out_before - out_after) == 1 and not (out_after - out_before)
    assert (dst / "my_notes.txt").read_text() == "mine"


def test_interrupted_by_a_full_disk_then_resumed(noisy, tmp_path, monkeypatch):
    root, _, _, _ = noisy
    src = tmp_path / "src"
    shutil.copytree(root / MAIN, src / MAIN)
    dst = tmp_path / "dst"
    import facedex.clean as clean_mod

    real = clean_mod.atomic_write
    calls = {"n": 0}

    def flaky(path, data):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(clean_mod, "atomic_write", flaky)
    with pytest.raises(CleanError, match="No space left on device"):
        clean(src, dst)
    assert not (dst / "manifest.jsonl").exists()
    assert not list(dst.rglob("*.tmp"))
    monkeypatch.setattr(clean_mod, "atomic_write", real)
    report = clean(src, dst)
    manifest = [json.loads(x) for x in (dst / "manifest.jsonl").read_text().splitlines()]
    assert all((dst / r["output"]).is_file() for r in manifest if r["decision"] == "kept")
    assert sum(r["decision"] == "kept" for r in manifest) == report.summary["kept"]


def test_report_page_groups_rejections_with_thumbnails(noisy):
    root, _, report, _ = noisy
    page = (root.parent / "review.html").read_text()
    for reason in ("wrong_person", "duplicate", "near_duplicate", "blurred", "no_face", "unreadable"):
        assert f"id='{reason}'" in page
    assert page.count("data:image/jpeg;base64,") >= 8
    assert "José M. Aznar" in page


def test_bad_folders_and_sources(tmp_path):
    with pytest.raises(CleanError, match="no such folder"):
        clean(tmp_path / "missing", tmp_path / "dst")
    src = tmp_path / "src"
    (src / "A").mkdir(parents=True)
    shutil.copy(lfw_image("Zico", 1), src / "A")
    with pytest.raises(CleanError, match="must not contain"):
        clean(src, src / "out")
    (src / "sources.jsonl").write_text('{"people": "A"}\n')
    with pytest.raises(SourcesFileError, match="sources.jsonl:1"):
        clean(src, tmp_path / "dst")
    (src / "sources.jsonl").write_text("not json\n")
    with pytest.raises(SourcesFileError, match="not a JSON object"):
        clean(src, tmp_path / "dst")


def test_clean_command(tmp_path, noisy):
    root, _, _, _ = noisy
    src = tmp_path / "src"
    shutil.copytree(root / MAIN, src / MAIN)
    (src / "stray.jpg").write_bytes(lfw_image("Zico", 1).read_bytes())
    r = facedex("clean", src, tmp_path / "dst", "--json", "--split", "0.2", "--min-face", "40", "--min-score", "0.6",
                check_rc=1)
    data = check_schema("clean", json.loads(r.stdout))
    assert data["interrupted"] is False and data["kept"] + data["rejected"] == data["images"]
    assert data["by_reason"]["wrong_person"] == 2  # the two of Ariel Sharon
    assert data["by_reason"]["extreme_pose"] == 1  # Bill Clinton in profile
    assert data["problems"][0]["item"] == "stray.jpg"
    assert any(x["reason"] == "unreadable" and "notes.jpg" in x["source"] for x in data["rejections"])
    assert data["split"]["val"] >= 1
    r = facedex("clean", src, tmp_path / "dst", check_rc=1)
    assert "from the cache" in r.stdout and "wrong_person" in r.stdout


def test_thumbnails_and_vectors_survive_the_cache(noisy):
    """The cached analysis must give the very same decisions as a fresh one."""
    root, dst, report, _ = noisy
    sims = [d.similarity for d in report.decisions]
    again = clean(root, dst, CleanConfig(split=0.25, seed=7), wide_margin=2.0)
    assert again.analysed == 0
    assert np.allclose([s if s is not None else 9 for s in sims],
                       [d.similarity if d.similarity is not None else 9 for d in again.decisions])
    assert os.path.isfile(dst / "summary.json")


def test_bad_option_values_are_usage_errors(tmp_path):
    for bad in (["--split", "1"], ["--min-face", "-1"], ["--max-yaw", "91"], ["--outlier-threshold", "2"],
                ["--margin", "0.5"], ["--min-score", "0"]):
        r = facedex("clean", tmp_path / "src", tmp_path / "dst", *bad, timeout=20, check_rc=2)
        assert f"argument {bad[0]}" in r.stderr
    assert not (tmp_path / "dst").exists()


def test_outputs_get_the_permissions_of_a_plain_file(tmp_path):
    """Crops, manifest and summary are written through a temporary file, yet are
    readable by others like any file the user writes (0644 under umask 022)."""
    src = make_people(tmp_path / "src", {MAIN: lfw_images(MAIN)[:3]})
    old = os.umask(0o022)
    try:
        report = clean(src, tmp_path / "dst", wide_margin=2.0)
    finally:
        os.umask(old)
    assert report.summary["kept"] >= 1
    dst = tmp_path / "dst"
    files = [*dst.glob(f"{MAIN}/*.png"), *dst.glob(f"{MAIN}/wide/*.jpg"), dst / "manifest.jsonl", dst / "summary.json"]
    assert len(files) >= 4
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f


def _analysed(cache) -> int:
    try:
        with sqlite3.connect(f"file:{cache}?mode=ro", uri=True, timeout=0.1) as db:
            return db.execute("SELECT COUNT(*) FROM analysis").fetchone()[0]
    except sqlite3.Error:  # not created yet, or busy
        return 0


@pytest.mark.slow
def test_ctrl_c_reports_what_finished_keeps_it_and_a_rerun_completes(tmp_path):
    src = make_people(tmp_path / "src", {p: lfw_images(p)[:10] for p in KNOWN[:6]})  # 60 images
    dst = tmp_path / "dst"
    cmd = [sys.executable, "-m", "facedex", "clean", str(src), str(dst), "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    try:
        deadline = time.monotonic() + 180
        while _analysed(dst / ".facedex-clean" / "cache.sqlite") < 16:  # a first batch is analysed
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the analysis did not start"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    report = check_schema("clean", json.loads(out))  # valid JSON, marked as interrupted
    assert report["interrupted"] is True and report["stopped_during"] in ("analyse", "write")
    assert report["images"] == 60 and report["people"] == 6 and report["analysed"] >= 16
    assert "rejections" not in report and report["manifest"] is None
    assert "interrupted while" in err and "run the same command again" in err
    # what was written stays valid: the cache is sound, every crop decodes, no temporary file is left
    with sqlite3.connect(dst / ".facedex-clean" / "cache.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert db.execute("SELECT COUNT(*) FROM analysis").fetchone()[0] >= report["analysed"]
    for f in dst.rglob("*.png"):
        Image.open(f).verify()
    assert not [p for p in dst.rglob(".*") if p.is_file()]
    # the same command continues from there and completes
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=os.environ.copy())
    assert r.returncode == 0, r.stderr
    done = check_schema("clean", json.loads(r.stdout))
    assert done["interrupted"] is False and done["images"] == 60
    assert done["reused_from_cache"] >= report["analysed"] and done["reused_from_cache"] + done["analysed"] == 60
    assert len((dst / "manifest.jsonl").read_text().splitlines()) == 60


def test_a_second_ctrl_c_aborts_with_a_valid_json_document(tmp_path, monkeypatch, capsys):
    """The second Ctrl-C stops at once: the JSON says how far each stage got, in the same schema."""
    import facedex.clean
    from facedex.cli import main

    def aborted(src, dst, cfg, *, progress, **kw):
        progress("hash", 7, 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(facedex.clean, "clean", aborted)
    code = main.main(["clean", str(tmp_path / "src"), str(tmp_path / "dst"), "--json"])
    captured = capsys.readouterr()
    assert code == 130
    doc = check_schema("clean", json.loads(captured.out))
    assert doc == {"schema": "facedex.clean/1", "interrupted": True, "aborted": True, "progress": {"hash": 7}}
    assert "aborted" in captured.err and "run the same command again" in captured.err


def test_the_schema_knows_every_rejection_reason():
    from facedex.clean import REASONS
    from facedex.schemas import schema

    reasons = schema("clean")["properties"]["rejections"]["items"]["properties"]["reason"]["enum"]
    assert sorted(reasons) == sorted(REASONS)
