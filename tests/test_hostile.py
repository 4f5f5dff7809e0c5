"""Hostile input and faults (issue #12), kept as permanent cases: no hang, no
traceback, no overwritten file, no gallery left unusable, reports that count
what this process did."""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

import facedex
from facedex.gallery.store import GalleryStore

from .conftest import check_schema, lfw_image, lfw_images, make_people
from .hostile import build_corpus, explicit_inputs

GOOD = lfw_image("Tony_Blair", 2)


def run(*args, env=None, timeout=180, preexec=None, encoding_env=None):
    e = os.environ.copy()
    e.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "facedex", *map(os.fsdecode, args)], capture_output=True,
                          timeout=timeout, env=e, preexec_fn=preexec)
    assert b"Traceback" not in proc.stderr, proc.stderr.decode(errors="replace")[-3000:]
    return proc


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    expected = build_corpus(folder, GOOD)
    return folder, expected


def _codes(results):
    return {Path(r["input"]).name: (r["error"] or {}).get("code") for r in results}


def test_identify_answers_every_hostile_file_and_never_hangs(corpus, gallery_copy, tmp_path):
    folder, expected = corpus
    t0 = time.time()
    p = run("identify", gallery_copy, *explicit_inputs(folder, expected), "--json", "--annotate", tmp_path / "ann")
    assert p.returncode == 1
    doc = check_schema("identify", json.loads(p.stdout))
    folders = {"dir.jpg"}  # a folder given as INPUT is searched (it holds nothing: reported as skipped)
    assert _codes(doc["results"]) == {n: c for n, c in expected.items() if n not in folders}
    assert [Path(s["path"]).name for s in doc["skipped"]] == ["dir.jpg"]
    assert time.time() - t0 < 120  # a FIFO used to block for ever
    ok = [r for r in doc["results"] if r["error"] is None]
    assert all(Path(r["annotated"]).is_file() for r in ok)


def test_a_folder_of_hostile_files_is_listed_without_opening_special_files(corpus, gallery_copy):
    folder, expected = corpus
    p = run("identify", gallery_copy, folder, "--json")
    doc = check_schema("identify", json.loads(p.stdout))
    skipped = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert "fifo.jpg" in skipped and "not a regular file" in skipped["fifo.jpg"]
    codes = _codes(doc["results"])
    assert {n for n, c in codes.items() if c is None} == {n for n, c in expected.items() if c is None}
    assert all(codes[n] == expected[n] for n in codes)


def test_detect_and_enroll_answer_every_hostile_file(corpus, tmp_path):
    folder, expected = corpus
    inputs = explicit_inputs(folder, expected)
    p = run("detect", *inputs, "--json")
    assert p.returncode == 1
    got = _codes(check_schema("detect", json.loads(p.stdout))["results"])
    assert got == {n: c for n, c in expected.items() if n != "dir.jpg"}
    p = run("enroll", tmp_path / "g.gallery", *inputs, "--person", "Tony Blair", "--multiple", "largest", "--json")
    assert p.returncode == 1
    report = check_schema("enroll", json.loads(p.stdout))
    got = {Path(i["path"]).name: i["code"] for i in report["items"]}
    want = {n: c for n, c in expected.items()}
    # the two good files are one content: the second is "skipped" (same content), not failed
    assert {n for n, c in got.items() if c is None} == {n for n, c in want.items() if c is None}
    assert all(got[n] == want[n] for n in want if want[n] is not None)
    assert report["added"] == 1 and report["totals"]["faces"] == 1


def test_non_utf8_names_are_kept_losslessly_and_never_crash_output(tmp_path):
    people = tmp_path / "people"
    person = os.fsencode(people) + b"/Ren\xe9e"
    os.makedirs(person)
    for n, src in enumerate(lfw_images("Tony_Blair")[2:5]):
        with open(person + b"/photo-\xff%d.jpg" % n, "wb") as f:
            f.write(src.read_bytes())
    g = tmp_path / "g.gallery"
    p = run("enroll", g, people, "--json", env={"PYTHONIOENCODING": "utf-8:strict"})
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["added"] == 3
    with facedex.Gallery.open(g) as gal:
        (who,) = gal.people()
        paths = [f["path"] for f in gal.store.faces_of(who.name)]
    assert sorted(os.fsencode(x) for x in paths) == sorted(person + b"/photo-\xff%d.jpg" % n for n in range(3))
    for enc in ("ascii:strict", "utf-8:strict"):
        p = run("identify", g, os.fsdecode(person), env={"PYTHONIOENCODING": enc})
        assert p.returncode == 0 and b"photo-\\xff0.jpg" in p.stdout
        p = run("people", g, env={"PYTHONIOENCODING": enc})
        assert p.returncode == 0


def test_terminal_output_escapes_control_characters(corpus, gallery_copy):
    folder, _ = corpus
    p = run("identify", gallery_copy, folder / "name with\nnewline and \x1b[31mESC.jpg")
    assert p.returncode == 0 and b"\x1b" not in p.stdout and b"name with\\nnewline and \\x1b[31mESC.jpg" in p.stdout


def test_annotate_never_writes_through_links_or_over_inputs(gallery_copy, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, out / "photo.jpg")  # the name the annotated copy would take
    for n in range(3):
        os.symlink(victim, out / f"photo.jpg.{n}.tmp")
    src = tmp_path / "photo.jpg"
    shutil.copy(GOOD, src)
    p = run("identify", gallery_copy, src, "--annotate", out, "--json")
    assert p.returncode == 0
    written = json.loads(p.stdout)["results"][0]["annotated"]
    assert victim.read_text() == "precious" and os.path.islink(out / "photo.jpg")
    assert Path(written).is_file() and not Path(written).is_symlink()


def test_annotate_folder_problems_are_clear_errors_before_any_work(gallery_copy, tmp_path):
    (tmp_path / "file").write_text("x")
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        p = run("identify", gallery_copy, GOOD, "--annotate", bad, "--json")
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "output.error"
    ro = tmp_path / "ro"
    ro.mkdir()
    if not _immutable(ro):
        pytest.skip("chattr +i is not available here")
    try:
        p = run("identify", gallery_copy, GOOD, "--annotate", ro / "out", "--json")
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "output.error"
        p = run("identify", gallery_copy, GOOD, "--annotate", ro, "--json")
        assert p.returncode == 2 and "cannot write" in json.loads(p.stdout)["error"]["message"]
    finally:
        _immutable(ro, False)


def _immutable(path: Path, on: bool = True) -> bool:
    """``chattr +i``: read-only even for root (tests run as root in CI)."""
    try:
        return subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True).returncode == 0
    except FileNotFoundError:
        return False


def _faces(g: Path) -> int:
    con = sqlite3.connect(f"file:{g}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM faces").fetchone()[0]
    finally:
        con.close()


def test_read_only_gallery_file_and_folder_read_fine_and_refuse_changes_clearly(gallery_copy, tmp_path):
    before = gallery_copy.read_bytes()
    for target in (gallery_copy, gallery_copy.parent):
        if not _immutable(target):
            pytest.skip("chattr +i is not available here")
        try:
            p = run("people", gallery_copy, "--json")
            assert p.returncode == 0 and json.loads(p.stdout)["totals"]["faces"] == 48
            p = run("identify", gallery_copy, GOOD, "--json")
            assert p.returncode == 0
            for args in (("calibrate", gallery_copy, "--set", "0.5"), ("forget", gallery_copy, "Tony_Blair"),
                         ("enroll", gallery_copy, GOOD, "--person", "X")):
                p = run(*args, "--json")
                assert p.returncode == 2, (args, p.stdout, p.stderr)
                err = json.loads(p.stdout)["error"]
                assert err["code"] == "gallery.read_only" and str(gallery_copy) in err["message"]
        finally:
            _immutable(target, False)
    assert gallery_copy.read_bytes() == before


def test_a_busy_gallery_is_a_clear_error_and_stays_unchanged(gallery_copy):
    holder = sqlite3.connect(gallery_copy, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        p = run("calibrate", gallery_copy, "--set", "0.5", "--json", env={"FACEDEX_BUSY_TIMEOUT": "0.5"})
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "gallery.busy"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _faces(gallery_copy) == 48


def _mount_tmpfs(where: Path, options: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True).returncode == 0


def _assert_full_disk_error(p, gallery: Path, before: bytes) -> None:
    assert p.returncode == 2, p.stderr
    err = json.loads(p.stdout)["error"]
    assert err["code"] == "gallery.disk_full" and "rolled back" in err["message"] and str(gallery) in err["message"]
    assert b"cannot rollback" not in p.stderr
    assert gallery.read_bytes() == before
    store = GalleryStore.open(gallery)
    try:
        assert store.integrity_check() == []
    finally:
        store.close()


def test_a_full_disk_rolls_back_and_says_so(gallery_copy, tmp_path):
    people = make_people(tmp_path / "people", {"Gray_Davis": lfw_images("Gray_Davis")[:20]})
    # 1. a file-size limit: writes past it fail (EFBIG), as on a full disk
    size = gallery_copy.stat().st_size
    before = gallery_copy.read_bytes()

    def small_file_limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (size + 4096, size + 4096))

    _assert_full_disk_error(run("enroll", gallery_copy, people, "--json", preexec=small_file_limit),
                            gallery_copy, before)
    # 2. a really full file system (a small tmpfs: ENOSPC)
    mnt = tmp_path / "small"
    if not _mount_tmpfs(mnt, f"size={size // 1024 + 24}k"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        g = mnt / "g.gallery"
        shutil.copy(gallery_copy, g)
        fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT)  # fill the disk, then free a few KB
        try:
            while os.write(fd, b"\0" * 4096) == 4096:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(mnt / "filler", max(0, (mnt / "filler").stat().st_size - 8192))
        before = g.read_bytes()
        _assert_full_disk_error(run("enroll", g, people, "--json"), g, before)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_a_read_only_mount_reads_fine_and_refuses_changes(gallery_copy, tmp_path):
    mnt = tmp_path / "ro"
    if not _mount_tmpfs(mnt, "size=8m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        shutil.copy(gallery_copy, mnt / "g.gallery")
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True, capture_output=True)
        g = mnt / "g.gallery"
        assert run("people", g, "--json").returncode == 0
        assert run("identify", g, GOOD, "--json").returncode == 0
        p = run("calibrate", g, "--set", "0.5", "--json")
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "gallery.read_only"
        p = run("enroll", g, GOOD, "--person", "X", "--json")
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "gallery.read_only"
        p = run("enroll", mnt / "new.gallery", GOOD, "--person", "X", "--json")
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "gallery.read_only"
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_empty_or_unfinished_gallery_files_count_as_not_created(tmp_path):
    g = tmp_path / "g.gallery"
    g.write_bytes(b"")
    p = run("people", g, "--json")
    assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == "gallery.not_found"
    sqlite3.connect(tmp_path / "half.gallery").execute("PRAGMA user_version = 0").connection.close()
    for path in (g, tmp_path / "half.gallery"):
        p = run("enroll", path, GOOD, "--person", "Tony Blair", "--json")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["added"] == 1


def test_sigkill_while_creating_a_gallery_never_leaves_it_unusable(tmp_path):
    people = make_people(tmp_path / "people", {"Tony_Blair": lfw_images("Tony_Blair")[2:6]})
    rng = random.Random(0)
    for trial in range(6):
        g = tmp_path / f"k{trial}.gallery"
        proc = subprocess.Popen([sys.executable, "-m", "facedex", "enroll", str(g), str(people)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 2.5))
        proc.kill()
        proc.wait()
        p = run("people", g, "--json")
        assert p.returncode in (0, 2)
        if p.returncode == 2:
            assert json.loads(p.stdout)["error"]["code"] == "gallery.not_found"
        p = run("enroll", g, people, "--json")
        assert p.returncode == 0, p.stderr
        with facedex.Gallery.open(g) as gal:
            assert gal.counts()["faces"] == 4 and gal.store.integrity_check() == []
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith((".creating", "-journal"))]
    assert len(leftovers) <= 6  # killed creations may leave their temporary file, never a broken gallery


def test_racing_creations_and_enrolls_report_what_each_stored(tmp_path):
    people = make_people(tmp_path / "people", {"Tony_Blair": lfw_images("Tony_Blair")[2:14],
                                               "Gray_Davis": lfw_images("Gray_Davis")[:12]})
    g = tmp_path / "race.gallery"
    cmd = [sys.executable, "-m", "facedex", "enroll", str(g), str(people), "--multiple", "largest", "--json"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    reports = []
    for proc in procs:
        out, errs = proc.communicate(timeout=300)
        assert proc.returncode == 0, errs[-2000:]
        reports.append(json.loads(out))
    added = sum(r["added"] for r in reports)
    assert added == _faces(g) == 24  # each counts only what it stored


def test_pixel_limit_is_the_documented_one(tmp_path):
    from PIL import Image

    big = tmp_path / "big.png"
    Image.new("RGB", (9500, 9500), (30, 60, 90)).save(big)  # 90.25 MP: over Pillow's own 89.5 MP cap
    p = run("detect", big, "--json")
    assert p.returncode == 0, p.stdout  # under the documented 100 MP
    p = run("detect", big, "--json", env={"FACEDEX_MAX_PIXELS": "50000000"})
    assert json.loads(p.stdout)["results"][0]["error"]["code"] == "media.too_large"


def test_verify_and_clean_answer_hostile_files(corpus, tmp_path):
    folder, expected = corpus
    for name, code in sorted(expected.items()):
        if code is None or name == "dir.jpg":
            continue
        p = run("verify", GOOD, folder / name, "--json")
        assert p.returncode == 2 and json.loads(p.stdout)["error"]["code"] == code, (name, p.stdout)
    src = tmp_path / "src"
    build_corpus(src / "Tony_Blair", GOOD)  # the corpus as one person's folder, FIFO and links included
    p = run("clean", src, tmp_path / "dst", "--json", timeout=300)
    assert p.returncode in (0, 1), p.stderr
    json.loads(p.stdout)


def test_sigkill_during_forget_leaves_a_sound_gallery(gallery_copy):
    names = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld"]
    for trial, delay in enumerate((0.15, 0.4, 0.8)):
        proc = subprocess.Popen([sys.executable, "-m", "facedex", "forget", str(gallery_copy), names[trial]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.kill()
        proc.wait()
        with facedex.Gallery.open(gallery_copy) as g:
            assert g.store.integrity_check() == []
            left = {p.name for p in g.people()}
        if names[trial] in left:  # killed before the commit: forgetting again completes it
            assert run("forget", gallery_copy, names[trial]).returncode == 0
        with facedex.Gallery.open(gallery_copy) as g:
            assert names[trial] not in {p.name for p in g.people()}
