"""The real ``facedex collect`` command in a subprocess: output, exit codes, and
a run killed part-way (SIGKILL) and resumed without downloading anything twice.
The subprocesses run with a guard that refuses any non-loopback connection."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from .collect_site.harness import (
    FAST_CLI,
    assert_complete_images,
    cli_env,
    db,
    facedex_cmd,
    manifest,
    person_files,
    run_cli,
    write_list,
)
from .collect_site.site import Reply, Site, add_robots, add_traps, build_gallery
from .conftest import LFW, check_schema


def test_urls_json_summary_and_exit_code(tmp_path):
    with Site() as site, Site() as other:
        traps = add_traps(site, LFW, other)
        lst = write_list(tmp_path / "list.jsonl", [("Jean Chrétien", traps.urls["ok"], "press photo"),
                                                   ("Jean Chrétien", traps.urls["404"]),
                                                   ("Ann", traps.urls["html_as_jpg"])])
        with lst.open("a", encoding="utf-8") as f:
            f.write("{broken\n")
        proc = run_cli(tmp_path, "collect", "urls", lst, tmp_path / "dst", "--json", *FAST_CLI)
        traps.release.set()
    assert proc.returncode == 1, proc.stderr
    report = check_schema("collect", json.loads(proc.stdout))
    assert report["command"] == "urls" and report["downloaded"] == 1 and report["interrupted"] is False
    assert report["failed_by_reason"] == {"http_404": 1, "invalid_row": 1, "not_image": 1}
    assert {f["reason"] for f in report["failures"]} == {"http_404", "invalid_row", "not_image"}
    row = next(f for f in report["failures"] if f["reason"] == "invalid_row")
    assert row["line"] == 4 and "not valid JSON" in row["detail"]
    assert report["totals"] == {"people": 1, "files": 1, "images": 1, "bytes": report["bytes"]}
    dst = tmp_path / "dst"
    assert person_files(dst).keys() == {"Jean Chrétien"}
    (entry,) = manifest(dst)
    assert entry["person"] == "Jean Chrétien" and entry["url"] == traps.urls["ok"]
    assert entry["sources"] == ["press photo"]
    assert proc.stderr == ""  # no progress bar without a terminal, no noise


def test_crawl_json_summary(tmp_path):
    with Site() as site:
        gallery = build_gallery(site, LFW)
        recipe = tmp_path / "site.toml"
        recipe.write_text(gallery.recipe, encoding="utf-8")
        proc = run_cli(tmp_path, "collect", "crawl", recipe, tmp_path / "dst", "--json", *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    report = check_schema("collect", json.loads(proc.stdout))
    assert report["command"] == "crawl" and report["downloaded"] == 22 and report["interrupted"] is False
    assert report["pages"]["fetched"] == 11
    assert report["pages"]["skipped_by_reason"] == {"pagination_cycle": 1, "robots": 1}
    assert any("pagination cycle" in note for note in report["notes"])


def test_crawl_text_summary(tmp_path):
    with Site() as site:
        gallery = build_gallery(site, LFW)
        recipe = tmp_path / "site.toml"
        recipe.write_text(gallery.recipe, encoding="utf-8")
        proc = run_cli(tmp_path, "collect", "crawl", recipe, tmp_path / "dst", *FAST_CLI)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "downloaded 22 images" in out and "failed 0" in out
    assert "pages: fetched 11, skipped 2, failed 0; skipped: pagination_cycle 1, robots 1" in out
    assert "note: pagination cycle" in out
    assert "6 people, 24 files" in out


@pytest.mark.parametrize("args,message", [
    (["collect", "crawl", "{dir}/nope.toml", "{dir}/dst"], "recipe {dir}/nope.toml: no such file"),
    (["collect", "crawl", "{dir}/bad.toml", "{dir}/dst"], "person.nmae: unknown key (did you mean 'name'?)"),
    (["collect", "urls", "{dir}/nope.csv", "{dir}/dst"], "URL list {dir}/nope.csv: no such file"),
    (["collect", "urls", "{dir}/bad.toml", "{dir}/dst", "--allow-host", "a/b"], "--allow-host 'a/b'"),
])
def test_usage_errors_exit_2(tmp_path, args, message):
    (tmp_path / "bad.toml").write_text('start = ["http://127.0.0.1:9/"]\n[index]\nperson_links = "a"\n'
                                       '[person]\nnmae = "h1"\nimages = "img"\n', encoding="utf-8")
    proc = run_cli(tmp_path, *[a.format(dir=tmp_path) for a in args], "--json")
    assert proc.returncode == 2
    assert proc.stderr.startswith("facedex collect: error: ")
    assert message.format(dir=tmp_path) in proc.stderr
    error = check_schema("error", json.loads(proc.stdout))["error"]  # with --json, also on stdout with its code
    assert message.format(dir=tmp_path) in error["message"]
    assert error["code"] in ("collect.recipe", "collect.url_list", "config.invalid")
    assert not (tmp_path / "dst").exists()  # nothing created before the input was checked


def test_bad_option_values_are_usage_errors(tmp_path):
    for bad in (["--rate", "-1"], ["--concurrency", "0"], ["--max-total", "lots"]):
        proc = run_cli(tmp_path, "collect", "urls", "x.csv", tmp_path / "dst", *bad)
        assert proc.returncode == 2 and "error: argument" in proc.stderr


# --- kill and resume -------------------------------------------------------------------------------
def _count(dst: Path, sql: str) -> int:
    try:
        with contextlib.closing(db(dst)) as con:
            return con.execute(sql).fetchone()[0]
    except Exception:  # not created yet
        return -1


def _wait_for(condition, proc, what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert proc.poll() is None, f"collector exited early while waiting for {what}: {proc.communicate()}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_sigkill_midway_then_resume_downloads_nothing_twice(tmp_path):
    people = ["Colin_Powell", "Tony_Blair", "Donald_Rumsfeld", "Gerhard_Schroeder", "Ariel_Sharon",
              "Hugo_Chavez", "Junichiro_Koizumi", "Jean_Chretien"]
    files = {p: sorted((LFW / p).glob("*.jpg"))[:5] for p in people}
    gate = threading.Event()
    lock = threading.Lock()
    served = [0]
    with Site() as site:
        add_robots(site)

        def image(data: bytes):
            def reply(_path: str) -> Reply:
                with lock:
                    served[0] += 1
                    n = served[0]
                if n > 10 and not gate.is_set():  # after 10 images, answers stop half-way through
                    return Reply(200, data, content_type="image/jpeg", wait=gate, stall_after=len(data) // 2)
                return Reply(200, data, content_type="image/jpeg")
            return reply

        rows = []
        for p, fs in files.items():
            for i, f in enumerate(fs):
                rows.append((p.replace("_", " "), site.add(f"/img/{p}/{i}.jpg", image(f.read_bytes()))))
        lst = write_list(tmp_path / "list.csv", rows)
        dst = tmp_path / "dst"
        env, violations = cli_env(tmp_path)
        cmd = facedex_cmd("collect", "urls", lst, dst, "--rate", "0", "--concurrency", "4", "--per-host", "4",
                          "--timeout", "60")

        # run 1: killed with SIGKILL once 10 images are stored and 4 downloads hang half-way
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_for(lambda: site.count(prefix="/img/") >= 14
                      and _count(dst, "SELECT COUNT(*) FROM files WHERE placed=1") >= 10, proc, "10 stored images")
        finally:
            proc.kill()
            proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        with contextlib.closing(db(dst)) as con:
            done_before = {r[0] for r in con.execute("SELECT url FROM images WHERE status='done'")}
        assert len(done_before) == 10
        assert assert_complete_images(dst) == 10  # whole images only, nothing half-written
        stray = [p for p in dst.rglob("*") if p.is_file() and ".facedex-collect" not in p.parts
                 and p.parent != dst]
        assert len(stray) == 10
        hits_run1 = Counter(site.paths())

        # run 2: still hanging server; stopped with SIGTERM it exits cleanly with a summary (in JSON here)
        proc = subprocess.Popen(cmd + ["--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            _wait_for(lambda: site.count(prefix="/img/") >= sum(hits_run1.values()) - 1 + 4, proc,
                      "4 hanging downloads")
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        stopped = check_schema("collect", json.loads(out))
        assert stopped["interrupted"] is True and stopped["downloaded"] == 0 and stopped["failed"] == 0
        assert "interrupted: downloaded 0 images" in err and "run the same command again" in err
        assert len(manifest(dst)) == 10
        hits_run2 = Counter(site.paths())

        # run 3: the server answers again; the run completes
        gate.set()
        proc = subprocess.run(cmd + ["--json"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = check_schema("collect", json.loads(proc.stdout))
    assert report["downloaded"] == 30 and report["failed"] == 0
    assert report["skipped_by_reason"] == {"already_collected": 10}
    assert assert_complete_images(dst) == 40 and len(manifest(dst)) == 40
    assert not any((dst / ".facedex-collect" / "tmp").iterdir())
    hits = Counter(site.paths())
    # nothing stored before the kill was asked for again, by either later run
    for url in done_before:
        path = url.split(str(site.port), 1)[1]
        assert hits[path] == hits_run1[path] == 1, path
    # the only repeats are the downloads that were cut off mid-body
    image_hits = {p: n for p, n in hits.items() if p.startswith("/img/")}
    assert len(image_hits) == 40
    repeated = {p for p, n in image_hits.items() if n > 1}
    assert 1 <= len(repeated) <= 8 and all(n <= 3 for n in image_hits.values())
    assert sum(hits_run2.values()) > sum(hits_run1.values())
    assert not violations.exists()


def test_the_subprocess_loopback_guard_is_active(tmp_path):
    """The guard the CLI tests rely on is really installed in the child processes."""
    env, _ = cli_env(tmp_path)
    code = "import socket; print(socket.socket.connect.__name__, socket.socket.connect_ex.__name__)"
    proc = subprocess.run([facedex_cmd()[0], "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["_connect", "_connect_ex"], proc.stderr
