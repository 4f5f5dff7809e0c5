"""facedex.datasets and `facedex data`: finding LFW, and fetching it for real.

The download code runs unchanged against an HTTP server on loopback that
serves a small LFW-shaped archive built here (random bytes as images) and the
real protocol files; the sources (URLs, digests, counts) are injected. Nothing
binary is committed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest

from facedex.datasets import (
    LFW_SOURCES,
    ArchiveLimits,
    ChecksumError,
    DatasetIncompleteError,
    DatasetNotFoundError,
    DownloadError,
    LfwSources,
    RemoteFile,
    Timeouts,
    UnsafeArchiveError,
    extract_tar,
    fetch_lfw,
    find_lfw,
    verify_lfw,
)
from facedex.datasets import lfw as lfw_module

from .conftest import check_schema

PEOPLE = {"Ann_Able": 3, "Bob_Baker": 1, "Cy_Crane": 2}  # 3 people, 6 images
IMAGE_BYTES = 40_000  # random, so the archive is ~240 KB and does not compress


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def tar_gz(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def dir_info(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def lfw_members(seed: int = 0) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    rng = __import__("random").Random(seed)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = [(dir_info("lfw"), None)]
    for person, n in PEOPLE.items():
        members.append((dir_info(f"lfw/{person}"), None))
        for i in range(1, n + 1):
            members.append((tarfile.TarInfo(f"lfw/{person}/{person}_{i:04d}.jpg"), rng.randbytes(IMAGE_BYTES)))
    return members


@pytest.fixture(scope="module")
def archive() -> bytes:
    return tar_gz(lfw_members())


@pytest.fixture(scope="module")
def protocol(lfw) -> dict[str, bytes]:
    """The real protocol files, served with their real pinned digests."""
    return {r.name: (lfw.parent / r.name).read_bytes() for r in LFW_SOURCES.protocol}


class Site:
    """What the loopback server serves, how it misbehaves, and what it was asked."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.actions: dict[str, list[str]] = {}  # path → actions, one used per request
        self.log: list[tuple[str, str | None]] = []  # (path, Range header)

    def requests(self, path: str) -> list[str | None]:
        return [rng for p, rng in self.log if p == path]


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        site: Site = self.server.site
        site.log.append((self.path, self.headers.get("Range")))
        queue = site.actions.get(self.path, [])
        action = queue.pop(0) if queue else "ok"
        if action.startswith("redirect:"):
            self.send_response(302)
            self.send_header("Location", action.split(":", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if action == "404" or self.path not in site.files:
            self.send_error(404)
            return
        body = site.files[self.path]
        if action == "wrong":
            body = bytes(b ^ 0xFF for b in body[:64]) + body[64:]
        if action == "bigger":
            self.send_response(200)
            self.send_header("Content-Length", str(50 << 20))
            self.end_headers()
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and action != "norange":
            start = int(rng.split("=", 1)[1].split("-", 1)[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if action.startswith("cut:"):  # part of the body, then the connection drops
            self.wfile.write(body[start:start + int(action[4:])])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body[start:])


@pytest.fixture
def site():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.site = Site()
    server.site.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.site
    server.shutdown()
    server.server_close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No proxy between the tests and loopback; a data cache of their own."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("FACEDEX_DATA_DIR", str(tmp_path / "cache"))


def serve(site: Site, archive: bytes, protocol: dict[str, bytes], *,
          archive_urls: tuple[str, str] = ("/a/lfw.tgz", "/b/lfw.tgz")) -> LfwSources:
    """Put the files on both 'mirrors' (/a and /b) and describe them."""
    for mirror in ("/a/", "/b/"):
        site.files[mirror + "lfw.tgz"] = archive
        for name, data in protocol.items():
            site.files[mirror + name] = data
    return LfwSources(
        archive=RemoteFile("lfw.tgz", tuple(site.base + u for u in archive_urls), sha(archive),
                           size=len(archive), max_bytes=4 << 20),
        protocol=tuple(dataclasses.replace(r, urls=(f"{site.base}/a/{r.name}", f"{site.base}/b/{r.name}"))
                       for r in LFW_SOURCES.protocol),
        people=len(PEOPLE), images=sum(PEOPLE.values()),
        limits=ArchiveLimits(max_members=100, max_member_bytes=1 << 20, max_total_bytes=4 << 20),
        unpacked_bytes=0)


def fetch(dest: Path, sources: LfwSources, **kw):
    return fetch_lfw(dest, sources=sources, retry_wait=0, timeouts=Timeouts(connect=2, read=5), **kw)


def refused_url(path: str) -> str:
    """A loopback port nothing listens on: the connection is refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --- the pinned facts --------------------------------------------------------------------------------
def test_pinned_protocol_digests_are_those_of_the_real_files(lfw):
    for remote in LFW_SOURCES.protocol:
        data = (lfw.parent / remote.name).read_bytes()
        assert sha(data) == remote.sha256, remote.name
        assert len(data) == remote.size
    for remote in (LFW_SOURCES.archive, *LFW_SOURCES.protocol):
        hosts = {u.split("/")[2] for u in remote.urls}
        assert len(hosts) == 2 and "ndownloader.figshare.com" in hosts, remote.urls
        assert len(remote.sha256) == 64 and int(remote.sha256, 16) >= 0


def test_verify_a_real_copy(lfw):
    check = verify_lfw(lfw)
    assert (check.people, check.images) == (5_749, 13_233)
    assert check.pairs == {"pairs.txt": "ok", "pairsDevTrain.txt": "ok", "pairsDevTest.txt": "ok"}
    assert check.ok and not check.problems


def test_verify_names_what_is_missing(tmp_path, lfw):
    part = tmp_path / "lfw"
    (part / "Ann_Able").mkdir(parents=True)
    (part / "Ann_Able" / "Ann_Able_0001.jpg").write_bytes(b"x")
    (tmp_path / "pairs.txt").write_text("10 300\n")
    check = verify_lfw(part)
    assert (check.people, check.images, check.ok) == (1, 1, False)
    assert check.pairs == {"pairs.txt": "different", "pairsDevTrain.txt": "missing", "pairsDevTest.txt": "missing"}
    assert any("1 images of 1 people, not 13,233 of 5,749" in p for p in check.problems)


# --- fetching for real, on loopback ------------------------------------------------------------------
def test_fetch_downloads_verifies_unpacks_then_does_nothing(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    dest = tmp_path / "data"
    seen = []
    copy = fetch(dest, sources, progress=lambda name, done, total: seen.append((name, done, total)))
    assert copy.fetched and copy.path == (dest / "lfw").resolve()
    assert set(copy.downloaded) == {"lfw.tgz", "pairs.txt", "pairsDevTrain.txt", "pairsDevTest.txt"}
    assert (copy.people, copy.images) == (3, 6)
    assert (dest / "lfw" / "Ann_Able" / "Ann_Able_0003.jpg").stat().st_size == IMAGE_BYTES
    assert (dest / "pairs.txt").read_bytes() == protocol["pairs.txt"]
    assert not (dest / "lfw.tgz").exists() and not list(dest.glob("*.part")) and not list(dest.glob(".lfw.unpack*"))
    assert json.loads((dest / ".lfw-source.json").read_text())["sha256"] == sha(archive)
    assert ("lfw.tgz", len(archive), len(archive)) in seen
    assert verify_lfw(copy.path, sources).ok

    before = len(site.log)
    again = fetch(dest, sources)
    assert not again.fetched and again.downloaded == () and len(site.log) == before


def test_resume_after_a_cut_connection_through_a_redirect(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol, archive_urls=("/files/1", "/b/lfw.tgz"))
    site.actions["/files/1"] = ["redirect:/a/lfw.tgz", "redirect:/a/lfw.tgz"]
    site.actions["/a/lfw.tgz"] = ["cut:100000"]
    copy = fetch(tmp_path, sources)
    assert copy.images == 6
    assert site.requests("/a/lfw.tgz") == [None, "bytes=100000-"]  # resumed, not restarted
    assert site.requests("/b/lfw.tgz") == []


def test_resume_a_part_file_left_by_an_earlier_run(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    (tmp_path / "lfw.tgz.part").write_bytes(archive[:50_000])
    fetch(tmp_path, sources)
    assert site.requests("/a/lfw.tgz") == ["bytes=50000-"]


def test_resumed_bytes_that_were_wrong_start_over(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    (tmp_path / "lfw.tgz.part").write_bytes(b"\0" * 50_000)
    copy = fetch(tmp_path, sources)
    assert copy.images == 6
    assert site.requests("/a/lfw.tgz") == ["bytes=50000-", None]


def test_a_server_that_ignores_range_sends_the_whole_file(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    (tmp_path / "lfw.tgz.part").write_bytes(b"\0" * 50_000)
    site.actions["/a/lfw.tgz"] = ["norange"]
    assert fetch(tmp_path, sources).images == 6
    assert site.requests("/a/lfw.tgz") == ["bytes=50000-"]


def test_wrong_checksum_then_the_mirror(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    site.actions["/a/lfw.tgz"] = ["wrong"]
    copy = fetch(tmp_path, sources)
    assert copy.images == 6
    assert site.requests("/a/lfw.tgz") == [None] and site.requests("/b/lfw.tgz") == [None]


def test_wrong_checksum_everywhere_keeps_nothing(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    site.actions["/a/lfw.tgz"] = ["wrong"]
    site.actions["/b/lfw.tgz"] = ["wrong"]
    with pytest.raises(DownloadError) as e:
        fetch(tmp_path, sources)
    msg = str(e.value)
    assert msg.count("sha256 mismatch") == 2 and f"{site.base}/a/lfw.tgz" in msg and f"{site.base}/b/lfw.tgz" in msg
    assert not (tmp_path / "lfw.tgz").exists() and not (tmp_path / "lfw.tgz.part").exists()
    assert not (tmp_path / "lfw").exists()
    assert (tmp_path / "pairs.txt").exists()  # the files that did verify are kept for the next run


def test_404_then_the_mirror(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    site.actions["/a/lfw.tgz"] = ["404"]
    site.actions["/a/pairs.txt"] = ["404"]
    copy = fetch(tmp_path, sources)
    assert copy.images == 6 and (tmp_path / "pairs.txt").read_bytes() == protocol["pairs.txt"]
    assert site.requests("/b/lfw.tgz") == [None] and site.requests("/b/pairs.txt") == [None]


def test_a_body_over_the_limit_is_refused_before_reading(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    site.actions["/a/lfw.tgz"] = ["bigger"]
    site.actions["/b/lfw.tgz"] = ["bigger"]
    with pytest.raises(DownloadError, match="more than the 4,194,304-byte limit"):
        fetch(tmp_path, sources)
    assert not (tmp_path / "lfw.tgz.part").exists()


def test_hostile_archive_over_http_is_refused_and_nothing_escapes(site, protocol, tmp_path):
    evil = tarfile.TarInfo("lfw/Ann_Able/ok.jpg")
    link = tarfile.TarInfo("lfw/Ann_Able/passwd.jpg")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    members = [(dir_info("lfw"), None), (dir_info("lfw/Ann_Able"), None), (evil, b"fine"),
               (tarfile.TarInfo("lfw/../../escaped.txt"), b"pwned"), (link, None)]
    hostile = tar_gz(members)
    dest = tmp_path / "data"
    with pytest.raises(UnsafeArchiveError, match=r"climbs out of the folder with '\.\.'"):
        fetch(dest, serve(site, hostile, protocol))
    assert not (tmp_path / "escaped.txt").exists() and not (dest.parent / "escaped.txt").exists()
    assert not (dest / "lfw").exists() and not list(dest.glob(".lfw.unpack*"))


UNSAFE = [
    ("dotdot", [(tarfile.TarInfo("lfw/../../x.txt"), b"x")], "climbs out"),
    ("absolute", [(tarfile.TarInfo("/tmp/facedex-abs.txt"), b"x")], "absolute path"),
    ("symlink", [("sym", "lfw/a.jpg", "/etc/passwd")], "symbolic link"),
    ("symlink-relative", [("sym", "lfw/a.jpg", "../../../etc/passwd")], "symbolic link"),
    ("hardlink", [("lnk", "lfw/a.jpg", "/etc/passwd")], "hard link"),
    ("fifo", [("fifo", "lfw/pipe", "")], "not a file or folder"),
    ("member-too-big", [(tarfile.TarInfo("lfw/big.jpg"), b"x" * 2048)], "over the 1,024-byte limit"),
    ("too-many", [(tarfile.TarInfo(f"lfw/{i}.jpg"), b"x") for i in range(12)], "more than 10 members"),
    ("total-too-big", [(tarfile.TarInfo(f"lfw/{i}.jpg"), b"x" * 1000) for i in range(5)], "4,000-byte limit"),
]


@pytest.mark.parametrize("case,members,message", UNSAFE, ids=[c[0] for c in UNSAFE])
def test_unsafe_archives_are_refused(tmp_path, case, members, message):
    built = [(dir_info("lfw"), None)]
    for m in members:
        if isinstance(m[0], str):
            kind, name, target = m
            info = tarfile.TarInfo(name)
            info.type = {"sym": tarfile.SYMTYPE, "lnk": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            info.linkname = target
            built.append((info, None))
        else:
            built.append(m)
    path = tmp_path / "bad.tgz"
    path.write_bytes(tar_gz(built))
    into = tmp_path / "out" / "staging"
    into.parent.mkdir()
    limits = ArchiveLimits(max_members=10, max_member_bytes=1024, max_total_bytes=4000)
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_tar(path, into, top="lfw", limits=limits)
    assert not into.exists()
    assert list(tmp_path.rglob("x.txt")) == [] and not Path("/tmp/facedex-abs.txt").exists()


def test_a_damaged_archive_is_an_error_not_a_traceback(tmp_path, archive):
    path = tmp_path / "cut.tgz"
    path.write_bytes(archive[: len(archive) // 2])
    with pytest.raises(Exception) as e:
        extract_tar(path, tmp_path / "staging", top="lfw")
    assert type(e.value).__name__ == "DatasetError" and "damaged archive" in str(e.value)
    assert not (tmp_path / "staging").exists()


# --- offline, and files placed by hand ----------------------------------------------------------------
def test_offline_fails_in_seconds_naming_urls_and_the_manual_way(tmp_path, archive):
    sources = LfwSources(
        archive=RemoteFile("lfw.tgz", ("http://facedex-test.invalid/lfw.tgz", refused_url("/lfw.tgz")), sha(archive)),
        protocol=tuple(dataclasses.replace(r, urls=("http://facedex-test.invalid/" + r.name,
                                                    refused_url("/" + r.name))) for r in LFW_SOURCES.protocol),
        unpacked_bytes=0)
    started = time.monotonic()
    with pytest.raises(DownloadError) as e:
        fetch(tmp_path, sources)
    assert time.monotonic() - started < 10
    msg = str(e.value)
    for remote in (sources.archive, *sources.protocol):
        for url in remote.urls:
            assert url in msg
    assert "host name not resolved" in msg or "no connection" in msg
    assert "connection refused" in msg
    assert "by hand" in msg and f"--dest {tmp_path}" in msg and "FACEDEX_LFW" in msg


def test_a_server_that_never_answers_times_out(tmp_path, archive):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/lfw.tgz"
        sources = LfwSources(archive=RemoteFile("lfw.tgz", (url,), sha(archive)), protocol=(), unpacked_bytes=0)
        started = time.monotonic()
        with pytest.raises(DownloadError, match=r"no answer within 0\.5 s"):
            fetch_lfw(tmp_path, sources=sources, retry_wait=0, timeouts=Timeouts(connect=1, read=0.5))
        assert time.monotonic() - started < 5


def test_files_placed_by_hand_are_verified_and_used_without_network(tmp_path, archive, protocol):
    (tmp_path / "lfw.tgz").write_bytes(archive)
    for name, data in protocol.items():
        (tmp_path / name).write_bytes(data)
    sources = LfwSources(archive=RemoteFile("lfw.tgz", (refused_url("/x"),), sha(archive)),
                         protocol=tuple(dataclasses.replace(r, urls=(refused_url("/x"),))
                                        for r in LFW_SOURCES.protocol),
                         people=3, images=6, unpacked_bytes=0)
    copy = fetch(tmp_path, sources)
    assert copy.fetched and copy.downloaded == () and copy.images == 6
    assert (tmp_path / "lfw.tgz").exists()  # placed by hand: kept


def test_a_different_file_in_dest_is_never_overwritten(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    (tmp_path / "pairs.txt").write_text("my own pairs\n")
    with pytest.raises(ChecksumError, match="pairs.txt: sha256 is"):
        fetch(tmp_path, sources)
    assert (tmp_path / "pairs.txt").read_text() == "my own pairs\n"
    assert site.log == []


def test_an_incomplete_lfw_folder_in_dest_is_left_alone(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    (tmp_path / "lfw" / "Someone").mkdir(parents=True)
    with pytest.raises(DatasetIncompleteError, match="holds 0 images of 1 people"):
        fetch(tmp_path, sources)
    assert [p.name for p in (tmp_path / "lfw").iterdir()] == ["Someone"] and site.log == []


def test_a_complete_copy_missing_a_pairs_file_gets_only_that_file(site, archive, protocol, tmp_path):
    sources = serve(site, archive, protocol)
    fetch(tmp_path, sources)
    (tmp_path / "pairsDevTest.txt").unlink()
    site.log.clear()
    copy = fetch(tmp_path, sources)
    assert copy.downloaded == ("pairsDevTest.txt",)
    assert [p for p, _ in site.log] == ["/a/pairsDevTest.txt"]


# --- where LFW is looked for ------------------------------------------------------------------------
@pytest.fixture
def places(tmp_path, monkeypatch):
    spots = {k: tmp_path / k / "lfw" for k in ("explicit", "env", "shared", "cache")}
    monkeypatch.setattr(lfw_module, "_shared_lfw", lambda: spots["shared"])
    monkeypatch.setenv("FACEDEX_DATA_DIR", str(spots["cache"].parent))
    monkeypatch.delenv("FACEDEX_LFW", raising=False)
    return spots


def test_lookup_order_explicit_env_shared_cache(places, monkeypatch):
    for p in places.values():
        p.mkdir(parents=True)
    monkeypatch.setenv("FACEDEX_LFW", str(places["env"]))
    assert find_lfw(places["explicit"]) == places["explicit"].resolve()
    assert find_lfw() == places["env"].resolve()
    monkeypatch.delenv("FACEDEX_LFW")
    assert find_lfw() == places["shared"].resolve()
    places["shared"].rmdir()
    assert find_lfw() == places["cache"].resolve()


def test_lookup_accepts_the_data_folder_too(places):
    places["explicit"].mkdir(parents=True)
    (places["explicit"].parent / "pairs.txt").write_text("")
    assert find_lfw(places["explicit"].parent) == places["explicit"].resolve()


def test_nothing_found_names_the_places_and_the_fetch_command(places):
    with pytest.raises(DatasetNotFoundError) as e:
        find_lfw()
    msg = str(e.value)
    assert "facedex data fetch lfw" in msg and "FACEDEX_LFW (not set)" in msg
    assert str(places["shared"]) in msg and str(places["cache"]) in msg


def test_a_wrong_explicit_path_or_variable_is_an_error_not_skipped(places, monkeypatch):
    places["shared"].mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="given"):
        find_lfw(places["explicit"])
    monkeypatch.setenv("FACEDEX_LFW", str(places["env"]))
    with pytest.raises(DatasetNotFoundError, match=r"\(FACEDEX_LFW\).*facedex data fetch lfw"):
        find_lfw()


def test_the_shared_copy_is_found_from_a_source_checkout(lfw):
    shared = lfw_module._shared_lfw()
    assert shared is not None and shared.name == "lfw" and shared.parent.name == "data"


# --- the command line ---------------------------------------------------------------------------------
def run_cli(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    """The real `facedex` entry point, with only the `data` command registered
    (the other command modules are not needed here)."""
    from facedex.cli import data, main

    monkeypatch.setattr(main, "_command_modules", lambda: [data])
    code = main.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_path_prints_the_folder_and_checks_it(monkeypatch, capsys, lfw):
    code, out, _ = run_cli(monkeypatch, capsys, "data", "path", "lfw", "--data", str(lfw))
    assert (code, out.strip()) == (0, str(lfw.resolve()))
    code, out, _ = run_cli(monkeypatch, capsys, "data", "path", "lfw", "--data", str(lfw), "--check", "--json")
    report = check_schema("data-path", json.loads(out))
    assert code == 0 and report["check"]["ok"] and report["found_by"] == "explicit path"
    code, out, _ = run_cli(monkeypatch, capsys, "data", "path", "lfw", "--data", str(lfw), "--json")
    assert code == 0 and check_schema("data-path", json.loads(out))["check"] is None


def test_cli_path_when_nothing_is_there(monkeypatch, capsys, places):
    code, out, err = run_cli(monkeypatch, capsys, "data", "path", "lfw")
    assert code == 2 and out == "" and "facedex data fetch lfw" in err and "Traceback" not in err
    code, out, err = run_cli(monkeypatch, capsys, "data", "path", "lfw", "--json")
    error = check_schema("error", json.loads(out))["error"]
    assert code == 2 and error["code"] == "dataset.not_found" and "facedex data fetch lfw" in error["message"]


def test_cli_fetch_json_then_noop(monkeypatch, capsys, site, archive, protocol, tmp_path):
    monkeypatch.setattr(lfw_module, "LFW_SOURCES", serve(site, archive, protocol))
    code, out, _ = run_cli(monkeypatch, capsys, "data", "fetch", "lfw", "--dest", str(tmp_path), "--json")
    report = check_schema("data-fetch", json.loads(out))
    assert code == 0 and report["fetched"] and report["images"] == 6 and "lfw.tgz" in report["downloaded"]
    code, out, _ = run_cli(monkeypatch, capsys, "data", "fetch", "lfw", "--dest", str(tmp_path))
    assert code == 0 and "already there, verified" in out


def test_cli_fetch_offline_exits_2_with_the_urls(monkeypatch, capsys, tmp_path, archive):
    offline = LfwSources(archive=RemoteFile("lfw.tgz", (refused_url("/lfw.tgz"),), sha(archive)),
                         protocol=(), unpacked_bytes=0)
    monkeypatch.setattr(lfw_module, "LFW_SOURCES", offline)
    code, out, err = run_cli(monkeypatch, capsys, "data", "fetch", "lfw", "--dest", str(tmp_path))
    assert code == 2 and out == ""
    assert offline.archive.urls[0] in err and "by hand" in err and "Traceback" not in err


def test_importing_the_datasets_package_stays_light():
    code = ("import sys, facedex.datasets; "
            "print(sorted(m for m in ('numpy', 'cv2', 'onnxruntime', 'tqdm') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert result.stdout.strip() == "[]"


def test_a_second_fetch_into_the_same_folder_stops(site, archive, protocol, tmp_path):
    import fcntl

    from facedex.datasets import DatasetBusyError

    sources = serve(site, archive, protocol)
    with open(tmp_path / ".lfw.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        with pytest.raises(DatasetBusyError, match="another process is fetching LFW"):
            fetch(tmp_path, sources)
    assert site.log == []
