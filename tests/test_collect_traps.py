"""Every trap of the local test site, one test each, with the exact outcome:
the state database row, the summary, the files on disk and the requests the
server saw. All traffic goes to 127.0.0.1 (the loopback guard fails the test
otherwise)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from facedex.collect import collect_urls
from facedex.collect.state import State

from .collect_site.harness import (
    assert_complete_images,
    fast_options,
    image_row,
    loopback_only,
    manifest,
    person_files,
    write_list,
)
from .collect_site.site import Reply, Site, add_traps
from .conftest import LFW


@pytest.fixture(autouse=True)
def _loopback():
    with loopback_only():
        yield


@pytest.fixture
def web():
    with Site("site") as site, Site("elsewhere") as other:
        traps = add_traps(site, LFW, other)
        site.other = other
        site.traps = traps
        try:
            yield site
        finally:
            traps.release.set()


def collect(tmp_path, rows, **opts):
    lst = write_list(tmp_path / "list.csv", rows)
    return collect_urls(lst, tmp_path / "dst", fast_options(**opts))


def only_ok_and(web, name, person="Trap Person"):
    return [("Good Person", web.traps.urls["ok"]), (person, web.traps.urls[name])]


# --- permanent HTTP failures ---------------------------------------------------------------
@pytest.mark.parametrize("code", ["404", "403"])
def test_permanent_http_error_recorded_once_and_not_retried(web, tmp_path, code):
    url = web.traps.urls[code]
    report = collect(tmp_path, only_ok_and(web, code), retries=3)
    assert report.downloaded == 1
    assert report.failed_by_reason == {f"http_{code}": 1}
    assert report.failures[0].url == url and report.failures[0].people == ("Trap Person",)
    row = image_row(tmp_path / "dst", url)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", f"http_{code}", 1)
    assert web.count(f"/trap/{code}.jpg") == 1  # not retried although retries=3
    assert person_files(tmp_path / "dst").keys() == {"Good Person"}

    again = collect(tmp_path, only_ok_and(web, code))
    assert again.failed == 0 and again.downloaded == 0
    assert again.skipped_by_reason == {"already_collected": 1, "failed_earlier": 1}
    assert web.count(f"/trap/{code}.jpg") == 1  # a later run does not ask again...

    lst = tmp_path / "list.csv"
    retried = collect_urls(lst, tmp_path / "dst", fast_options(retry_failed=True))
    assert retried.failed_by_reason == {f"http_{code}": 1}
    assert web.count(f"/trap/{code}.jpg") == 2  # ...unless told to


def test_500_is_retried_with_backoff_then_recorded(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "500"), retries=2, backoff=0.05, max_backoff=1)
    assert report.failed_by_reason == {"http_500": 1}
    assert "after 3 attempts" in report.failures[0].detail
    assert web.count("/trap/500.jpg") == 3
    t = web.times("/trap/500.jpg")
    # exponential backoff with "equal jitter": 0.025..0.05 s, then 0.05..0.1 s (less a little
    # for the jitter of arrival times at the server)
    assert 0.015 <= t[1] - t[0] and 0.035 <= t[2] - t[1]
    row = image_row(tmp_path / "dst", web.traps.urls["500"])
    assert (row["status"], row["reason"]) == ("failed", "http_500")
    # a transient failure is tried again by the next run
    collect(tmp_path, only_ok_and(web, "500"), retries=0)
    assert web.count("/trap/500.jpg") == 4


def test_503_then_200_is_downloaded_on_retry(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "flaky"))
    assert report.downloaded == 2 and report.failed == 0
    assert web.count("/trap/flaky.jpg") == 2
    assert image_row(tmp_path / "dst", web.traps.urls["flaky"])["status"] == "done"


def test_429_waits_for_retry_after_then_succeeds(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "429"), backoff=0.01)
    assert report.downloaded == 2 and report.failed == 0
    first, second = web.times("/trap/429.jpg")
    assert second - first >= 0.95  # Retry-After: 1, not the 0.01 s backoff


def test_429_with_a_too_long_retry_after_fails_at_once_and_spares_the_host(web, tmp_path):
    t0 = time.monotonic()
    rows = [("Trap Person", web.traps.urls["429_long"]), ("Good Person", web.traps.urls["ok"])]
    report = collect(tmp_path, rows, retries=3, max_retry_after=60, concurrency=1)
    assert time.monotonic() - t0 < 5
    assert report.failed_by_reason == {"http_429": 2}
    first, second = report.failures
    assert first.url == web.traps.urls["429_long"] and "Retry-After 3600s" in first.detail
    # the host asked for an hour's pause: nothing more is sent to it in this run
    assert second.url == web.traps.urls["ok"] and "not requested" in second.detail
    assert web.count("/trap/429-long.jpg") == 1 and web.count("/trap/ok.jpg") == 0
    # both are transient: the next run tries again
    assert image_row(tmp_path / "dst", web.traps.urls["ok"])["reason"] == "http_429"


def test_slow_endpoint_times_out_and_is_retried(web, tmp_path):
    t0 = time.monotonic()
    report = collect(tmp_path, only_ok_and(web, "slow"), timeout=0.3, retries=1)
    assert time.monotonic() - t0 < 5
    assert report.failed_by_reason == {"timeout": 1}
    assert web.count("/trap/slow.jpg") == 2
    row = image_row(tmp_path / "dst", web.traps.urls["slow"])
    assert (row["status"], row["reason"]) == ("failed", "timeout")


def test_redirect_loop_is_detected(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "loop"), retries=3)
    assert report.failed_by_reason == {"redirect_loop": 1}
    assert report.failures[0].detail.count("→") == 2
    assert web.count("/trap/loop-a.jpg") == 1 and web.count("/trap/loop-b.jpg") == 1


def test_off_host_redirect_is_not_followed(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "offhost"))
    assert report.failed_by_reason == {"redirect_off_host": 1}
    assert f"localhost:{web.other.port}" in report.failures[0].detail
    assert web.other.count() == 0  # not one request reached the other host
    # an explicitly allowed host is followed
    report = collect_urls(tmp_path / "list.csv", tmp_path / "dst",
                          fast_options(retry_failed=True, allowed_hosts=(f"localhost:{web.other.port}",)))
    assert report.downloaded == 1 and report.failed == 0
    assert web.other.count("/stolen.jpg") == 1
    row = image_row(tmp_path / "dst", web.traps.urls["offhost"])
    assert row["final_url"] == f"http://localhost:{web.other.port}/stolen.jpg"


def test_redirect_within_host_is_followed_and_recorded(web, tmp_path):
    # header names are case-insensitive: "location" works as well as "Location"
    lower = web.add("/trap/lower.jpg", Reply(302, b"", headers={"location": "/trap/moved.jpg"}))
    report = collect(tmp_path, only_ok_and(web, "redirect_ok") + [("Trap Person", lower)])
    assert report.downloaded == 2 and report.skipped_by_reason == {"duplicate": 1}
    entry = next(m for m in manifest(tmp_path / "dst") if m["person"] == "Trap Person")
    # the file's URL is whichever of the two finished first; both ended at the same place
    assert entry["url"] in (web.traps.urls["redirect_ok"], lower)
    assert entry["final_url"] == web.url("/img/moved-here.jpg")
    for url in (web.traps.urls["redirect_ok"], lower):
        assert image_row(tmp_path / "dst", url)["final_url"] == web.url("/img/moved-here.jpg")
    assert web.count("/trap/moved.jpg") == 2 and web.count("/img/moved-here.jpg") == 2


def test_oversized_file_with_content_length_is_refused_unread(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "big"), max_image_bytes=1_000_000, retries=3)
    assert report.failed_by_reason == {"too_large": 1}
    assert "Content-Length" in report.failures[0].detail
    assert web.count("/trap/big.jpg") == 1
    assert person_files(tmp_path / "dst").keys() == {"Good Person"}


def test_oversized_stream_is_aborted_while_streaming(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "big_stream"), max_image_bytes=1_000_000)
    assert report.failed_by_reason == {"too_large": 1}
    assert "download aborted" in report.failures[0].detail
    assert web.count("/trap/big-stream.jpg") == 1
    deadline = time.monotonic() + 10
    while not web.answers("/trap/big-stream.jpg") and time.monotonic() < deadline:
        time.sleep(0.02)  # the server notices the hang-up on its next write
    (answer,) = web.answers("/trap/big-stream.jpg")
    assert not answer.complete and answer.sent < 20_000_000  # of ~50 MB on offer
    assert not any((tmp_path / "dst" / ".facedex-collect" / "tmp").iterdir())


def test_html_served_as_jpg_is_rejected_by_content(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "html_as_jpg"))
    assert report.failed_by_reason == {"not_image": 1}
    assert "HTML page" in report.failures[0].detail and "image/jpeg" in report.failures[0].detail
    row = image_row(tmp_path / "dst", web.traps.urls["html_as_jpg"])
    assert (row["status"], row["reason"], row["sha256"]) == ("failed", "not_image", None)


@pytest.mark.parametrize("name,reason", [("tiny", "too_small"), ("truncated", "corrupt")])
def test_images_that_are_too_small_or_broken_are_rejected(web, tmp_path, name, reason):
    report = collect(tmp_path, only_ok_and(web, name), retries=2)
    assert report.failed_by_reason == {reason: 1}
    assert web.count(f"/trap/{'tiny' if name == 'tiny' else 'truncated'}.jpg") == 1
    assert person_files(tmp_path / "dst").keys() == {"Good Person"}


def test_same_image_under_two_urls_is_stored_once(web, tmp_path):
    a, b = web.traps.urls["dup_a"], web.traps.urls["dup_b"]
    report = collect(tmp_path, [("Ann", a), ("Ann", b), ("Bob", b)])
    assert report.downloaded == 1 and report.skipped_by_reason == {"duplicate": 1}
    dst = tmp_path / "dst"
    ra, rb = image_row(dst, a), image_row(dst, b)
    # whichever finished first is "done", the other a "duplicate" of it
    assert sorted([ra["status"], rb["status"]]) == ["done", "duplicate"] and ra["sha256"] == rb["sha256"]
    files = person_files(dst)
    assert files == {"Ann": [ra["sha256"][:16] + ".jpg"], "Bob": [ra["sha256"][:16] + ".jpg"]}
    # Bob's copy is a hard link: the content is on disk once
    assert os.stat(dst / "Ann" / files["Ann"][0]).st_ino == os.stat(dst / "Bob" / files["Bob"][0]).st_ino
    with State(dst) as st:
        size = (dst / "Ann" / files["Ann"][0]).stat().st_size
        assert st.totals() == {"people": 2, "files": 2, "images": 1, "bytes": size}


def test_robots_disallowed_url_is_never_requested(web, tmp_path):
    report = collect(tmp_path, only_ok_and(web, "robots"))
    assert report.skipped_by_reason == {"robots": 1} and report.failed == 0
    assert web.count("/private/img/2.jpg") == 0
    assert web.count("/robots.txt") == 1
    row = image_row(tmp_path / "dst", web.traps.urls["robots"])
    assert (row["status"], row["reason"]) == ("skipped", "robots")
    ua = web.log()[0].headers["user-agent"]
    assert ua.startswith("facedex-collect/")
    # only an explicit option turns robots.txt off
    report = collect(tmp_path, only_ok_and(web, "robots"), respect_robots=False)
    assert report.downloaded == 1 and web.count("/private/img/2.jpg") == 1
    assert any("robots.txt was NOT checked" in n for n in report.notes)


@pytest.mark.parametrize("status,outcome", [(404, "allowed"), (403, "robots"), (500, "robots_unavailable")])
def test_robots_txt_answers(tmp_path, status, outcome):
    with Site() as site:
        site.add("/robots.txt", Reply(status, b"nope"))
        site.add_file("/a.jpg", LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
        report = collect(tmp_path, [("Colin Powell", site.url("/a.jpg"))], retries=1)
        if outcome == "allowed":
            assert report.downloaded == 1
        elif outcome == "robots":
            assert report.skipped_by_reason == {"robots": 1}
        else:
            assert report.failed_by_reason == {"robots_unavailable": 1}
        assert site.count("/a.jpg") == (1 if outcome == "allowed" else 0)
        assert site.count("/robots.txt") == (2 if status == 500 else 1)  # 5xx retried like anything else


def test_rate_limit_and_crawl_delay_space_out_requests(tmp_path):
    files = sorted((LFW / "Tony_Blair").glob("*.jpg"))[:5]
    with Site() as site:
        site.add("/robots.txt", Reply(200, b"User-agent: *\nCrawl-delay: 0.15\n", content_type="text/plain"))
        urls = [site.add_file(f"/{i}.jpg", f) for i, f in enumerate(files)]
        report = collect(tmp_path, [("Tony Blair", u) for u in urls], rate=20, concurrency=4)
        assert report.downloaded == 5
        # arrival times at the server jitter a little (threads, a busy machine): check each gap
        # loosely and the whole span tightly
        starts = sorted(h.time for h in site.log() if h.path != "/robots.txt")
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        # Crawl-delay 0.15 s beats --rate 20 (0.05 s) once robots.txt is read
        assert min(gaps) >= 0.1 and starts[-1] - starts[0] >= 4 * 0.15 - 0.03, gaps
    with Site() as site:
        urls = [site.add_file(f"/{i}.jpg", f) for i, f in enumerate(files)]
        (tmp_path / "b").mkdir()
        report = collect(tmp_path / "b", [("Tony Blair", u) for u in urls], rate=20, concurrency=4)
        starts = sorted(h.time for h in site.log())
        gaps = [b - a for a, b in zip(starts, starts[1:])]
        assert min(gaps) >= 0.03 and starts[-1] - starts[0] >= 5 * 0.05 - 0.02, gaps
        assert report.downloaded == 5


def test_all_traps_together_give_an_exact_summary(web, tmp_path):
    """One run over every trap: the summary a user would read."""
    # (not "429_long": a host that asks for an hour's pause gets no more requests, see above)
    rows = [(f"Trap {k}", u) for k, u in web.traps.urls.items() if k != "429_long"]
    report = collect(tmp_path, rows, max_image_bytes=1_000_000, timeout=0.5, retries=1)
    assert report.downloaded == 5  # ok, flaky, 429, redirect_ok, dup_a
    assert report.skipped_by_reason == {"duplicate": 1, "robots": 1}
    assert report.failed_by_reason == {
        "http_404": 1, "http_403": 1, "http_500": 1, "timeout": 1, "redirect_loop": 1,
        "redirect_off_host": 1, "too_large": 2, "not_image": 1, "too_small": 1, "corrupt": 1}
    dst = tmp_path / "dst"
    assert assert_complete_images(dst) == 6  # dup_b's person gets a link to dup_a's content
    assert not list((dst / ".facedex-collect" / "tmp").iterdir())
    assert web.other.count() == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_https_certificates_are_verified(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    with Site("tls", tls=(cert, key)) as site:
        site.add_file("/a.jpg", LFW / "Colin_Powell" / "Colin_Powell_0001.jpg")
        report = collect(tmp_path, [("Colin Powell", site.url("/a.jpg"))], retries=3)
    # a self-signed certificate is refused, not retried (robots.txt is where it is first seen)
    assert report.failed_by_reason == {"tls": 1}
    assert "TLS/certificate error" in report.failures[0].detail
    assert site.count() == 0  # the handshake failed before any request was read


def test_max_per_person_counts_downloads_in_flight(web, tmp_path):
    """A limit of 2 with 4 download slots: a failure frees its slot, nothing more is requested."""
    files = sorted((LFW / "Gerhard_Schroeder").glob("*.jpg"))[:4]
    urls = [web.add_file(f"/gs/{i}.jpg", f) for i, f in enumerate(files)]
    rows = [("Gerhard Schröder", web.traps.urls["404"])] + [("Gerhard Schröder", u) for u in urls]
    report = collect(tmp_path, rows, max_per_person=2, concurrency=4)
    assert report.downloaded == 2
    assert report.failed_by_reason == {"http_404": 1}
    assert report.skipped_by_reason == {"person_limit": 2}
    assert [web.count(f"/gs/{i}.jpg") for i in range(4)] == [1, 1, 0, 0]
    assert len(person_files(tmp_path / "dst")["Gerhard Schröder"]) == 2
    # a later run with a higher limit goes on with what was held back
    report = collect(tmp_path, rows, max_per_person=3)
    assert report.downloaded == 1 and report.skipped_by_reason == {"already_collected": 2, "failed_earlier": 1,
                                                                   "person_limit": 1}
    assert [web.count(f"/gs/{i}.jpg") for i in range(4)] == [1, 1, 1, 0]
