"""Unit tests of the collect stage's parts: safe names, URL normalisation, robots.txt,
recipes, URL lists, the state database's crash recovery. Table-driven where the
input is hostile."""

from __future__ import annotations

import os
import random
import re
import stat
import sys
import time
import tomllib
import unicodedata
from email.utils import formatdate
from pathlib import Path

import pytest

from facedex.collect import CollectOptions, parse_size, person_key, safe_name
from facedex.collect.deps import require
from facedex.collect.extract import parse_srcset
from facedex.collect.fetch import parse_retry_after
from facedex.collect.lists import BadRow, Row, read_list
from facedex.collect.ratelimit import HostLimiter
from facedex.collect.recipe import load_recipe, parse_recipe
from facedex.collect.robots import RobotsRules
from facedex.collect.state import State
from facedex.collect.store import write_temp
from facedex.collect.urlnorm import HostMatcher, HostPattern, InvalidURL, normalize_url
from facedex.errors import (
    CollectError,
    InvalidNameError,
    MissingDependencyError,
    RecipeError,
    StateError,
    UrlListError,
)
from facedex.names import MAX_NAME_BYTES, folder_key, unique_folder

from .collect_site.harness import guard
from .conftest import LFW

REPO = Path(__file__).resolve().parents[1]


# --- safe names ------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,expected", [
    ("Jean Chrétien", "Jean Chrétien"),
    ("Jean Chre\u0301tien", "Jean Chrétien"),                 # NFD → NFC
    ("  Tony\tBlair \n", "Tony Blair"),
    ("Zoë Ångström-Nowak", "Zoë Ångström-Nowak"),
    ("王菲", "王菲"),
    ("Ｔｏｎｙ", "Ｔｏｎｙ"),                                     # full-width kept as written
    ("می\u200cخواهم", "می\u200cخواهم"),                       # ZWNJ is part of the spelling
    ("../../etc/passwd", "_.._etc_passwd"),
    ("..\\..\\windows", "_.._windows"),
    ('a/b\\c:d*e?f"g<h>i|j', "a_b_c_d_e_f_g_h_i_j"),
    ("\u202eevil\u200b\x00\x07name", "evilname"),              # bidi override, zero-width, controls
    (".hidden", "hidden"),
    ("-rf", "rf"),
    ("trailing. ", "trailing"),
    ("CON", "CON_"),
    ("nul.txt", "nul_.txt"),
    ("Com1", "Com1_"),
    ("Conan", "Conan"),
])
def test_safe_name_table(raw, expected):
    assert safe_name(raw) == expected


@pytest.mark.parametrize("raw", ["", " ", ".", "..", "../", "/", "***", "\x00\x01", "\u202e", ". .", "—"])
def test_names_without_letters_get_a_stable_placeholder(raw):
    name = safe_name(raw)
    assert re.fullmatch(r"unnamed-[0-9a-f]{8}", name)
    assert safe_name(raw) == name


def test_long_names_are_cut_with_a_hash_and_stay_distinct():
    a, b = "Ä" * 300 + "x", "Ä" * 300 + "y"
    na, nb = safe_name(a), safe_name(b)
    assert na != nb
    assert len(na.encode()) <= MAX_NAME_BYTES and len(nb.encode()) <= MAX_NAME_BYTES
    assert na.startswith("ÄÄÄ") and re.search(r"-[0-9a-f]{8}$", na)
    # combining marks are not split from their letter
    c = safe_name("e\u0301" * 200)
    assert unicodedata.is_normalized("NFC", c) and len(c.encode()) <= MAX_NAME_BYTES


def test_safe_name_invariants_on_random_hostile_text():
    alphabet = list("abcXYZ019 ./\\:*?\"<>|-_~\t\n\r\x00\x1f\x7f") + ["\u202e", "\u200b", "\ufeff", "é", "e\u0301",
                                                                       "ß", "Ω", "中", "\U0001f600", "\u0085"]
    rng = random.Random(5)
    for _ in range(3000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        name = safe_name(raw)
        assert name and name not in (".", "..")
        assert not any(c in name for c in '/\\:*?"<>|')
        assert not any(unicodedata.category(c) in ("Cc", "Cf") and c not in "\u200c\u200d" for c in name)
        assert not name.startswith((".", "-", " ")) and not name.endswith((".", " "))
        assert len(name.encode()) <= MAX_NAME_BYTES
        assert unicodedata.is_normalized("NFC", name)


def test_person_key_merges_spellings_of_one_name():
    assert person_key("JEAN  Chrétien") == person_key("jean chre\u0301tien") == person_key("Jean_Chretien")
    assert person_key("Ｔｏｎｙ Blair") == person_key("tony blair")
    assert person_key("Tony Blair") != person_key("Tony Blaire")


def test_unique_folder_separates_clashing_people():
    taken = {folder_key("A_B")}
    other = unique_folder("A/B", person_key("A/B"), taken)
    assert other.startswith("A_B-") and folder_key(other) not in taken
    # names equal only on a case-insensitive file system
    taken = {folder_key("Anna_Lee")}
    assert unique_folder("anna/lee", person_key("anna/lee"), taken) != "anna_lee"


def test_state_gives_one_folder_per_person_and_never_a_reserved_one(tmp_path):
    with State(tmp_path / "dst") as st:
        a = st.person("Jean Chrétien")
        assert st.person("JEAN CHRE\u0301TIEN") == a
        assert st.person_row(a) == ("Jean Chrétien", "Jean Chrétien")
        # spellings that differ only in punctuation are one person, in one folder
        b, c = st.person("A/B"), st.person("A_B")
        assert b == c and st.person_row(b)[1] == "A_B"
        m = st.person("manifest.jsonl")
        assert st.person_row(m)[1] != "manifest.jsonl"
        with pytest.raises(InvalidNameError, match="empty"):
            st.person("  \u200b ")
        with pytest.raises(InvalidNameError, match="limit"):
            st.person("a" * 201)
    with State(tmp_path / "dst") as st:  # folders are stable across runs
        assert st.person("A_B") == c and st.person_row(c)[1] == "A_B"


# --- URLs ------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw,expected", [
    ("HTTP://Example.COM", "http://example.com/"),
    ("http://example.com:80/a", "http://example.com/a"),
    ("https://example.com:443/a", "https://example.com/a"),
    ("http://example.com:8080/a", "http://example.com:8080/a"),
    ("http://example.com./a", "http://example.com/a"),
    ("http://example.com/a/./b/../c", "http://example.com/a/c"),
    ("http://example.com/../../a", "http://example.com/a"),
    ("http://example.com/%7euser/%2f", "http://example.com/~user/%2F"),
    ("http://example.com/a b/é", "http://example.com/a%20b/%C3%A9"),
    ("http://example.com/a#frag", "http://example.com/a"),
    ("http://example.com/a?", "http://example.com/a"),
    ("http://example.com/a?b=1&a=2", "http://example.com/a?b=1&a=2"),
    ("http://bücher.example/x", "http://xn--bcher-kva.example/x"),
    ("http://[::1]:8000/x", "http://[::1]:8000/x"),
    (" http://example.com/a\n", "http://example.com/a"),
    ("http://example.com/100%", "http://example.com/100%25"),
])
def test_normalize_url_table(raw, expected):
    assert normalize_url(raw) == expected
    assert normalize_url(expected) == expected  # idempotent


def test_normalize_url_relative_and_ignored_params():
    assert normalize_url("../b.jpg?x=1#y", base="http://h.org/a/p/q.html") == "http://h.org/a/b.jpg?x=1"
    assert normalize_url("//cdn.h.org/i.jpg", base="https://h.org/") == "https://cdn.h.org/i.jpg"
    assert normalize_url("http://h.org/p?utm_source=x&id=3&sid=9", ignore_query=["utm_*", "sid"]) == \
        "http://h.org/p?id=3"


@pytest.mark.parametrize("raw", ["javascript:alert(1)", "mailto:a@b.c", "file:///etc/passwd",
                                 "data:image/gif;base64,R0l", "ftp://h.org/x", "/relative", "", "http://",
                                 "http://h.org:99999/"])
def test_normalize_url_refuses_what_cannot_be_fetched(raw):
    with pytest.raises(InvalidURL):
        normalize_url(raw)


def test_host_patterns():
    m = HostMatcher(["example.org", "*.cdn.example.org", "127.0.0.1:8000"])
    assert m.allows("http://example.org/x") and m.allows("https://example.org:8443/x")
    assert not m.allows("http://www.example.org/x")
    assert m.allows("http://a.cdn.example.org/x") and not m.allows("http://cdn.example.org/x")
    assert m.allows("http://127.0.0.1:8000/") and not m.allows("http://127.0.0.1:8001/")
    assert not m.allows("http://example.org.evil.com/") and not m.allows("not a url")
    assert str(HostPattern.parse("https://Example.ORG/")) == "example.org"
    for bad in ("", "*.", "a/b", "h:port", "*x.org"):
        with pytest.raises(InvalidURL):
            HostPattern.parse(bad)


# --- robots.txt ----------------------------------------------------------------------------
ROBOTS = """
# comment
User-agent: *
Disallow: /private/
Allow: /private/open     # longer match wins
Disallow: /*.gif$
Disallow: /search?
Disallow:

User-agent: facedex-collect
User-agent: otherbot
Disallow: /only-us/
Allow: /only-us/ok
Disallow: /tie
Allow: /tie
Crawl-delay: 2.5

User-agent: facedex
Disallow: /shorter-token/
"""


@pytest.mark.parametrize("ua,path,allowed", [
    ("somebot/1.0", "/", True),
    ("somebot/1.0", "/private/x", False),
    ("somebot/1.0", "/private/open/x", True),
    ("somebot/1.0", "/a.gif", False),
    ("somebot/1.0", "/a.gif?x=1", True),
    ("somebot/1.0", "/search?q=1", False),
    ("somebot/1.0", "/search", True),
    ("somebot/1.0", "/robots.txt", True),
    # our own group replaces the * group entirely (the longest matching token wins)
    ("facedex-collect/0.1 (+https://x)", "/private/x", True),
    ("facedex-collect/0.1", "/only-us/x", False),
    ("facedex-collect/0.1", "/only-us/ok", True),
    ("facedex-collect/0.1", "/tie", True),           # equal length: Allow wins
    ("facedex-collect/0.1", "/shorter-token/", True),
    ("FaceDex/2", "/shorter-token/", False),          # case-insensitive
])
def test_robots_rules(ua, path, allowed):
    assert RobotsRules.parse(ROBOTS, ua).allowed(path) is allowed


def test_robots_crawl_delay_and_edge_cases():
    assert RobotsRules.parse(ROBOTS, "facedex-collect/0.1").crawl_delay == 2.5
    assert RobotsRules.parse(ROBOTS, "x/1").crawl_delay is None
    assert RobotsRules.parse("", "x").allowed("/anything")
    assert RobotsRules.parse("Disallow: /\n", "x").allowed("/a")  # no user-agent line: applies to no one
    assert not RobotsRules.parse("User-agent: *\nDisallow: /\n", "x").allowed("/a")
    assert RobotsRules.parse("User-agent: *\nDisallow: /caf%C3%A9\n", "x").allowed("/cafe")
    assert not RobotsRules.parse("User-agent: *\nDisallow: /café\n", "x").allowed("/caf%C3%A9/x")
    assert not RobotsRules.deny_everything("n").allowed("/")


# --- small parsers ---------------------------------------------------------------------------
def test_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("0") == 0.0
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    later = formatdate(time.time() + 30, usegmt=True)
    assert 25 < parse_retry_after(later) <= 31
    assert parse_retry_after(formatdate(time.time() - 100, usegmt=True)) == 0.0


@pytest.mark.parametrize("text,value", [("4096", 4096), ("800k", 800_000), ("20MB", 20_000_000),
                                        ("1.5 GiB", 1_610_612_736), ("2 gb", 2_000_000_000), (123, 123)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "MB", "-1", "1 XB", "ten", True])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_srcset():
    assert parse_srcset("a.jpg 1x, b.jpg 2x") == "b.jpg"
    assert parse_srcset("s.jpg 300w,m.jpg 600w, l.jpg 1200w") == "l.jpg"
    assert parse_srcset("https://x/w_300,h_2/a.jpg 300w, https://x/w_600,h_4/a.jpg 600w") == \
        "https://x/w_600,h_4/a.jpg"
    assert parse_srcset("only.jpg") == "only.jpg" and parse_srcset("  ") is None


def test_options_are_validated():
    with pytest.raises(CollectError, match="concurrency"):
        CollectOptions(concurrency=0)
    with pytest.raises(CollectError, match="max_per_person"):
        CollectOptions(max_per_person=0)
    with pytest.raises(CollectError, match="unknown"):
        CollectOptions().updated(colour="red")
    assert CollectOptions().updated(rate=None, retries=0).retries == 0


def test_missing_optional_dependency_says_how_to_install(monkeypatch):
    with pytest.raises(MissingDependencyError, match=r"pip install 'facedex\[collect\]'"):
        require("facedex_no_such_package_xyz")
    from facedex.collect.extract import Extractor
    from facedex.collect.fetch import Fetcher

    recipe = parse_recipe(GOOD)
    monkeypatch.setitem(sys.modules, "urllib3", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "bs4", None)
    with pytest.raises(MissingDependencyError, match="'urllib3'"):
        Fetcher(CollectOptions(), HostMatcher())
    with pytest.raises(MissingDependencyError, match="'beautifulsoup4'"):
        Extractor(recipe)
    monkeypatch.setitem(sys.modules, "soupsieve", None)
    with pytest.raises(MissingDependencyError, match="'soupsieve'"):
        parse_recipe(GOOD)


def test_host_limiter_spaces_and_pauses():
    lim = HostLimiter(rate=50)
    t0 = time.monotonic()
    for _ in range(4):
        lim.wait("h")
    assert time.monotonic() - t0 >= 0.059  # 3 intervals of 0.02 s
    lim.wait("other")  # another host is not held up
    lim.pause("h", 0.1)
    t1 = time.monotonic()
    lim.wait("h")
    assert time.monotonic() - t1 >= 0.09


def test_loopback_guard_classifies_addresses():
    g = guard()
    assert g._is_loopback(("127.0.0.1", 80)) and g._is_loopback(("127.8.9.10", 80))
    assert g._is_loopback(("::1", 80, 0, 0)) and g._is_loopback(("localhost", 80))
    assert not g._is_loopback(("10.0.0.1", 80)) and not g._is_loopback(("192.0.2.1", 80))


# --- recipes ---------------------------------------------------------------------------------
GOOD = {
    "start": ["https://example.org/people/"],
    "index": {"person_links": "ul.people a", "next_page": "a[rel=next]"},
    "person": {"name": "h1", "images": ".gallery img"},
}


def with_(base: dict, path: str, value) -> dict:
    import copy

    d = copy.deepcopy(base)
    keys = path.split(".")
    target = d
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    if value is _DELETE:
        del target[keys[-1]]
    else:
        target[keys[-1]] = value
    return d


_DELETE = object()


@pytest.mark.parametrize("path,value,message", [
    ("colour", "red", "colour: unknown key"),
    ("person.nmae", "h1", "person.nmae: unknown key (did you mean 'name'?); [person] keys are: image_attr, images, name"),
    ("person.name", "h1[", "person.name: invalid CSS selector"),
    ("person.name", 3, "person.name: must be a CSS selector string"),
    ("person.images", _DELETE, "person.images: required"),
    ("person", _DELETE, "person: person pages are crawled"),
    ("index", _DELETE, "index: start pages are index pages"),
    ("start", ["ftp://example.org/"], "start: 'ftp://example.org/': only http and https"),
    ("start", [], "give at least one URL to start from"),
    ("allowed_hosts", ["other.org"], "allowed_hosts: start URL https://example.org/people/ is not on an allowed host"),
    ("allowed_hosts", ["a/b"], "allowed_hosts: 'a/b' is not a host pattern"),
    ("limits.max_pages", "ten", "limits.max_pages: must be a whole number"),
    ("limits.max_pages", 0, "max_pages=0 must be at least 1"),
    ("limits.max_total_bytes", "lots", "limits.max_total_bytes: 'lots' is not a size"),
    ("http.respect_robots", False, "robots.txt cannot be switched off in a recipe"),
    ("http.rate", True, "http.rate: must be a number"),
    ("http.concurrency", 0, "concurrency=0 must be at least 1"),
    ("source_pages", ["https://example.org/a"], "source: source_pages are given"),
    ("person.image_attr", "data src", "person.image_attr: must be an attribute name"),
])
def test_recipe_errors_name_the_key(path, value, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(with_(GOOD, path, value), "site.toml")
    assert "recipe site.toml" in str(info.value) and message in str(info.value)


def test_recipe_defaults_and_settings():
    rec = parse_recipe(with_(with_(GOOD, "limits.max_images_per_person", 30), "http.rate", 0.5), "r.toml")
    assert rec.allowed_hosts == ("example.org",)
    assert rec.person.image_attrs == ("src",)
    opts = rec.options()
    assert opts.max_per_person == 30 and opts.rate == 0.5 and opts.respect_robots is True


def test_recipe_file_errors(tmp_path):
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("start = [\n", encoding="utf-8")
    with pytest.raises(RecipeError, match="not valid TOML"):
        load_recipe(bad)


def test_the_recipe_in_the_docs_is_valid():
    text = (REPO / "docs" / "collect.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    assert blocks, "docs/collect.md should show a full recipe"
    for block in blocks:
        rec = parse_recipe(tomllib.loads(block), "docs/collect.md")
        assert rec.person is not None and rec.start


# --- URL lists -------------------------------------------------------------------------------
def test_csv_list_with_header_in_any_order(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("\ufeffurl,source,person\nhttp://h/a.jpg,album 1,Ann\n\n# comment\nhttp://h/b.jpg,,Bob\n,,Cy\n",
                 encoding="utf-8")
    assert list(read_list(p)) == [Row(2, "Ann", "http://h/a.jpg", "album 1"), Row(5, "Bob", "http://h/b.jpg"),
                                  BadRow(6, "missing url")]


def test_csv_without_header_and_tsv(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text('Ann,http://h/a.jpg\n"Lee, Bruce",http://h/b.jpg,page\n', encoding="utf-8")
    assert list(read_list(p)) == [Row(1, "Ann", "http://h/a.jpg"), Row(2, "Lee, Bruce", "http://h/b.jpg", "page")]
    t = tmp_path / "l.tsv"
    t.write_text("person\turl\nAnn\thttp://h/a.jpg\n", encoding="utf-8")
    assert list(read_list(t)) == [Row(2, "Ann", "http://h/a.jpg")]


def test_jsonl_list(tmp_path):
    p = tmp_path / "l.jsonl"
    p.write_text('{"person": "Zoë", "url": "http://h/a.jpg", "source": "s"}\n{"person": "x"}\nnot json\n[1]\n'
                 '{"person": "Bo", "url": "http://h/b.jpg", "sorce": "typo"}\n', encoding="utf-8")
    rows = list(read_list(p))
    assert rows[0] == Row(1, "Zoë", "http://h/a.jpg", "s")
    assert rows[1] == BadRow(2, "missing url")
    assert isinstance(rows[2], BadRow) and rows[2].line == 3 and "not valid JSON" in rows[2].message
    assert isinstance(rows[3], BadRow) and rows[3].line == 4
    assert rows[4] == Row(5, "Bo", "http://h/b.jpg")


def test_unreadable_lists(tmp_path):
    with pytest.raises(UrlListError, match="no such file"):
        list(read_list(tmp_path / "none.csv"))
    with pytest.raises(UrlListError, match="directory"):
        list(read_list(tmp_path))
    p = tmp_path / "latin1.csv"
    p.write_bytes("Zoë,http://h/a.jpg\n".encode("latin-1"))
    with pytest.raises(UrlListError, match="not UTF-8"):
        list(read_list(p))


# --- state: locking and crash recovery ----------------------------------------------------------
def _blob(data: bytes):
    import hashlib

    from facedex.collect.state import Blob

    return Blob(hashlib.sha256(data).hexdigest(), "JPEG", len(data), 250, 250)


def test_one_run_at_a_time(tmp_path):
    with State(tmp_path / "dst"):
        with pytest.raises(StateError, match="another facedex process"):
            State(tmp_path / "dst")
    State(tmp_path / "dst").close()  # free again


def test_kill_between_commit_and_rename_is_finished_by_the_next_run(tmp_path, monkeypatch):
    from facedex.collect import state as state_mod

    data = (LFW / "Colin_Powell" / "Colin_Powell_0001.jpg").read_bytes()
    dst = tmp_path / "dst"
    st = State(dst)
    pid = st.person("Colin Powell")
    image_id, _, _ = st.add_image("http://h/a.jpg", pid, "Colin Powell", "http://h/p", "person")
    tmp = write_temp(st.tmp, data, "x")

    def killed(*a, **k):
        raise KeyboardInterrupt  # the process dies right after the database commit
    monkeypatch.setattr(state_mod, "move_into_place", killed)
    with pytest.raises(KeyboardInterrupt):
        st.record_download(image_id, "http://h/a.jpg", _blob(data), tmp)
    st.close()
    monkeypatch.undo()
    assert not list(dst.glob("Colin Powell/*")) and tmp.exists()  # no file in the folder yet

    with State(dst) as st:
        assert st.recover() == {"placed": 1, "temp_removed": 0}
        files = list((dst / "Colin Powell").iterdir())
        assert len(files) == 1 and files[0].read_bytes() == data
        assert st.count_images("done") == 1 and not any(st.tmp.iterdir())


def test_a_lost_temporary_file_means_download_again(tmp_path, monkeypatch):
    from facedex.collect import state as state_mod

    data = b"\xff\xd8\xff" + b"x" * 100
    dst = tmp_path / "dst"
    st = State(dst)
    pid = st.person("A")
    image_id, _, _ = st.add_image("http://h/a.jpg", pid, "A", "http://h/a.jpg", "image")
    tmp = write_temp(st.tmp, data, "x")
    monkeypatch.setattr(state_mod, "move_into_place", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        st.record_download(image_id, "http://h/a.jpg", _blob(data), tmp)
    st.close()
    monkeypatch.undo()
    tmp.unlink()  # e.g. a clean-up of /tmp-like folders by the user
    with State(dst) as st:
        st.recover()
        assert st.count_images("pending") == 1 and st.totals()["images"] == 0


def test_stored_images_are_whole_and_readable_by_others(tmp_path, monkeypatch):
    from facedex.collect import store

    tmp_dir, a, b, c = (tmp_path / n for n in ("tmp", "A", "B", "C"))
    for d in (tmp_dir, a, b, c):
        d.mkdir()
    old = os.umask(0o022)
    try:
        staged = write_temp(tmp_dir, b"image bytes", "abc")
        assert staged.parent == tmp_dir and staged.read_bytes() == b"image bytes"
        store.move_into_place(staged, a / "x.jpg")
        store.link_into_place(a / "x.jpg", b / "x.jpg", tmp_dir)  # a hard link
        assert (a / "x.jpg").stat().st_ino == (b / "x.jpg").stat().st_ino

        def no_links(*args):
            raise OSError("this file system has no hard links")
        monkeypatch.setattr(store.os, "link", no_links)
        store.link_into_place(a / "x.jpg", c / "x.jpg", tmp_dir)  # a copy
    finally:
        os.umask(old)
    assert (c / "x.jpg").read_bytes() == b"image bytes" and (c / "x.jpg").stat().st_ino != (a / "x.jpg").stat().st_ino
    for f in (a / "x.jpg", c / "x.jpg"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f  # not mkstemp's 0600
    assert not any(tmp_dir.iterdir())


def test_stale_partial_files_are_removed(tmp_path):
    dst = tmp_path / "dst"
    with State(dst) as st:
        (st.tmp / "abc.part").write_bytes(b"half an image")
    with State(dst) as st:
        assert st.recover()["temp_removed"] == 1 and not any(st.tmp.iterdir())
