"""The HTTP API in-process (Starlette's TestClient): the same JSON as the CLI,
the library's error codes as 4xx, keys and scopes, limits, jobs."""

from __future__ import annotations

import io
import json
import logging
import sqlite3
import struct
import threading
import time
import zlib
from pathlib import Path

import pytest

import facedex
from facedex.errors import ConfigError
from facedex.media import MediaInput

from .conftest import check_schema, lfw_image, lfw_images, strangers
from .test_service_support import serve_extra

pytestmark = [serve_extra, pytest.mark.filterwarnings("ignore:Using `httpx` with")]

KEYS = {"read": "read-key-0123456789abcdef", "enroll": "enroll-key-0123456789abcdef",
        "admin": "admin-key-0123456789abcdef"}


def make_client(gallery: Path, **options):
    from starlette.testclient import TestClient

    from facedex.service import ServiceConfig, create_app

    options.setdefault("workers", 2)
    app = create_app(ServiceConfig(gallery, **options))
    client = TestClient(app, base_url="http://localhost")
    client.service = app.service
    return client


@pytest.fixture
def client(gallery_copy):
    with make_client(gallery_copy) as c:
        _wait_ready(c)
        yield c


def _wait_ready(c) -> None:
    for _ in range(300):
        if c.get("/healthz").status_code == 200:
            return
        time.sleep(0.05)
    raise AssertionError("not ready")


def seg(name: str) -> str:
    """A person's name as one URL path segment (as the page's encodeURIComponent)."""
    from urllib.parse import quote

    return quote(name, safe="").replace(".", "%2E")


def upload(path: Path, name: str | None = None, field: str = "file"):
    return (field, (name or path.name, path.read_bytes(), "application/octet-stream"))


def keyring():
    from facedex.service.keys import ApiKey, KeyRing, _digest

    return KeyRing([ApiKey(_digest(k), scope, f"test {scope}") for scope, k in KEYS.items()])


def auth(scope: str) -> dict:
    return {"Authorization": f"Bearer {KEYS[scope]}"}


# --- the same answers as the CLI and the library ---------------------------------------------------
def test_identify_answers_what_the_library_answers(client, gallery_copy):
    photo = lfw_image("Colin_Powell", 10)  # two faces: Colin Powell and someone unknown
    r = client.post("/v1/identify", files=[upload(photo)])
    assert r.status_code == 200, r.text
    doc = check_schema("identify-result", r.json())
    with facedex.Gallery.open(gallery_copy) as g:
        (expected,) = [x.to_dict() for x in facedex.identify_paths(g, [MediaInput(photo.name, data=photo.read_bytes())])]
    assert doc == expected
    names = [f["name"] for f in doc["faces"]]
    assert "Colin_Powell" in names and None in names  # unknown is an answer
    assert doc["input"] == photo.name and doc["threshold"]["method"] == "default"

    r = client.post("/v1/identify?threshold=0.95&top=1", files=[upload(photo)])
    doc = check_schema("identify-result", r.json())
    assert doc["threshold"] == {"value": 0.95, "method": "override"}
    assert all(f["name"] is None and len(f["candidates"]) <= 1 for f in doc["faces"])
    for bad in ("threshold=2", "threshold=abc", "top=9", "annotate=maybe", "sample_fps=-1", "scene_cut=3"):
        r = client.post(f"/v1/identify?{bad}", files=[upload(photo)])
        assert r.status_code == 400, (bad, r.text)
        check_schema("error", r.json())


def test_annotated_copies_by_url_or_inline(client):
    photo = lfw_image("Tony_Blair", 20)
    doc = client.post("/v1/identify?annotate=true", files=[upload(photo)]).json()
    assert doc["annotated"].startswith("/v1/files/")
    img = client.get(doc["annotated"])
    assert img.status_code == 200 and img.headers["content-type"] == "image/jpeg" and img.content[:2] == b"\xff\xd8"
    assert img.headers["cache-control"] == "no-store"
    assert client.get(doc["annotated"] + "x").status_code == 404
    assert client.get("/v1/files/nope/x.jpg").json()["error"]["code"] == "job.not_found"
    doc = client.post("/v1/identify?annotate=inline", files=[upload(photo)]).json()
    assert doc["annotated"].startswith("data:image/jpeg;base64,")


@pytest.mark.parametrize("name, data, status, code", [
    ("notes.jpg", b"just some text, not a photo\n" * 20, 415, "media.unsupported"),
    ("cut.jpg", lfw_image("Tony_Blair", 1).read_bytes()[:600], 422, "media.corrupt"),
    ("empty.jpg", b"", 422, "media.corrupt"),
    ("song.mp3", b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 5000, 415, None),
])
def test_bad_files_get_4xx_with_their_code(client, name, data, status, code):
    r = client.post("/v1/identify", files=[("file", (name, data, "image/jpeg"))])
    assert r.status_code == status, r.text
    doc = check_schema("identify-result", r.json())
    assert doc["error"] and (code is None or doc["error"]["code"] == code)
    assert doc["input"] == name


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_pixel_limit_as_the_cli(client):
    r = client.post("/v1/identify", files=[("file", ("bomb.png", _png_header(40000, 40000), "image/png"))])
    assert r.status_code == 413 and r.json()["error"]["code"] == "media.too_large"


def test_verify_as_the_cli(client):
    a, b, other = lfw_image("Tony_Blair", 1), lfw_image("Tony_Blair", 2), lfw_image("Hugo_Chavez", 1)
    same = check_schema("verify", client.post("/v1/verify", files=[upload(a, field="a"), upload(b, field="b")]).json())
    diff = check_schema("verify", client.post("/v1/verify", files=[upload(a, field="a"),
                                                                     upload(other, field="b")]).json())
    assert same["same_person"] and not diff["same_person"]
    assert diff == facedex.verify(MediaInput(a.name, data=a.read_bytes()),
                                  MediaInput(other.name, data=other.read_bytes())).to_dict()
    r = client.post("/v1/verify", files=[upload(a, field="a")])
    assert r.status_code == 400
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (200, 200), (90, 120, 150)).save(blank, "PNG")
    r = client.post("/v1/verify", files=[upload(a, field="a"), ("b", ("blank.png", blank.getvalue(), "image/png"))])
    assert r.status_code == 422 and r.json()["error"]["code"] == "face.none"


def test_people_gallery_enroll_thumbnail_forget(client, gallery_copy):
    people = check_schema("people", client.get("/v1/people").json())
    assert [p["name"] for p in people["people"]] == sorted(p["name"] for p in people["people"])
    assert people["totals"] == {"people": 8, "sources": 48, "faces": 48}
    g = check_schema("gallery", client.get("/v1/gallery").json())
    assert g["threshold"]["method"] == "default" and g["embedder"].startswith("sface")
    assert g["caller"] == {"scope": "admin", "keys_required": False}

    name = "Zoë O'Brien"  # any name the CLI takes
    files = [upload(p) for p in lfw_images("George_W_Bush")[:3]]
    r = client.post(f"/v1/people/{name}/faces", files=files)
    assert r.status_code == 200, r.text
    doc = check_schema("enroll", r.json())
    assert doc["added"] == 3 and {i["person"] for i in doc["items"]} == {name}
    assert {i["path"] for i in doc["items"]} == {p.name for p in lfw_images("George_W_Bush")[:3]}
    again = check_schema("enroll", client.post(f"/v1/people/{name}/faces", files=files).json())
    assert again["added"] == 0 and again["skipped"] == 3

    person = check_schema("person", client.get(f"/v1/people/{name}").json())
    assert len(person["faces"]) == 3
    thumb = client.get(f"/v1/people/{name}/thumbnail")
    assert thumb.status_code == 200 and thumb.content[:2] == b"\xff\xd8" and thumb.headers["cache-control"] == "no-store"
    thumbs = list((gallery_copy.with_name(gallery_copy.name + ".serve") / "thumbs").glob("*.jpg"))
    assert len(thumbs) == 1 and all(len(t.stem) == 64 for t in thumbs)  # named by a digest, never by the name
    # a person enrolled with the CLI gets a thumbnail from their (unchanged) source file
    assert client.get("/v1/people/Tony_Blair/thumbnail").status_code == 200

    r = client.delete(f"/v1/people/{name}")
    doc = check_schema("forget", r.json())
    assert r.status_code == 200 and doc["results"][0] == {"name": name, "forgotten": True, "faces": 3, "sources": 3,
                                                          "error": None}
    assert client.get(f"/v1/people/{name}/thumbnail").status_code == 404
    assert not any(t.exists() for t in thumbs)
    r = client.delete(f"/v1/people/{name}")
    assert r.status_code == 404 and r.json()["error"]["code"] == "gallery.person_not_found"
    assert name.encode() not in gallery_copy.read_bytes()  # erased from the file, as `forget`
    probe = client.post("/v1/identify", files=[upload(lfw_images("George_W_Bush")[10])]).json()
    assert all(f["name"] != name for f in probe["faces"])


def test_enroll_failures_and_names(client, gallery_copy, tmp_path):
    blank = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (120, 120), (10, 200, 30)).save(blank, "PNG")
    r = client.post("/v1/people/Nobody/faces", files=[("file", ("blank.png", blank.getvalue(), "image/png"))])
    assert r.status_code == 422
    doc = check_schema("enroll", r.json())
    assert doc["failed"] == 1 and doc["items"][0]["code"] == "face.none" and doc["people_without_faces"] == ["Nobody"]
    # names are data, never paths: traversal-looking names round-trip and write nothing outside
    before = sorted(p.name for p in gallery_copy.parent.iterdir())
    for name in ("../../etc/passwd", "AC/DC", "..", "a\\b"):
        r = client.post(f"/v1/people/{seg(name)}/faces?multiple=largest", files=[upload(lfw_image("Hugo_Chavez", 30))])
        assert r.status_code == 200, (name, r.text)
        assert r.json()["items"][0]["person"] == name
        assert client.get(f"/v1/people/{seg(name)}/thumbnail").status_code == 200
        assert client.get(f"/v1/people/{seg(name)}").json()["name"] == name
        assert client.delete(f"/v1/people/{seg(name)}").status_code == 200
    assert sorted(p.name for p in gallery_copy.parent.iterdir()) == before
    r = client.post("/v1/people/%01%02%20/faces", files=[upload(lfw_image("Hugo_Chavez", 30))])
    assert r.status_code == 400 and r.json()["error"]["code"] == "name.invalid"
    r = client.post("/v1/people/x/faces?multiple=all", files=[upload(lfw_image("Hugo_Chavez", 30))])
    assert r.status_code == 400
    assert client.get("/static/../../../etc/passwd").status_code == 404
    assert client.get("/static/%2e%2e/%2e%2e/app.py").status_code == 404


def test_calibrate(client):
    doc = check_schema("calibrate", client.post("/v1/calibrate", json={"fpir": 0.05}).json())
    assert doc["threshold"]["method"] == "calibrated" and doc["threshold"]["fpir_target"] == 0.05
    doc = check_schema("calibrate", client.post("/v1/calibrate", json={"threshold": 0.5}).json())
    assert doc["threshold"]["value"] == 0.5 and doc["threshold"]["method"] == "manual"
    assert client.get("/v1/gallery").json()["threshold"]["value"] == 0.5
    for body in ('{"fpir": 0}', '{"threshold": 3}', "[1]", "not json", '{"set": 1}'):
        r = client.post("/v1/calibrate", content=body, headers={"Content-Type": "application/json"})
        assert r.status_code == 400, body
    assert client.post("/v1/calibrate").json()["threshold"]["method"] == "calibrated"


def test_video_as_a_job(client, tmp_path_factory):
    from .video_fixtures.clips import clip_cache, pair_clip

    clip = clip_cache(tmp_path_factory).video(pair_clip())
    r = client.post("/v1/identify?wait=0", files=[upload(clip)])
    assert r.status_code == 202 and r.headers["location"].startswith("/v1/jobs/")
    job = check_schema("job", r.json())
    for _ in range(600):
        job = check_schema("job", client.get(job["url"]).json())
        if job["status"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert job["status"] == "done" and job["status_code"] == 200
    result = check_schema("identify-result", job["result"])
    assert result["kind"] == "video" and result["input"] == clip.name
    assert [p["name"] for p in result["people"]] == ["Ariel_Sharon"]
    assert job["progress"]["frames_done"] > 0
    # a job belongs to its key; and the inline answer is the same result
    r = client.post("/v1/identify", files=[upload(clip)])
    assert r.status_code == 200 and r.json()["people"] == result["people"]


def test_keys_and_scopes(gallery_copy, caplog):
    caplog.set_level(logging.DEBUG)
    with make_client(gallery_copy, keys=keyring()) as c:
        _wait_ready(c)
        assert c.get("/healthz").status_code == 200  # no key needed
        assert c.get("/").status_code == 200  # the page itself; its data needs a key
        r = c.get("/v1/people")
        assert r.status_code == 401 and r.json()["error"]["code"] == "auth.missing_key"
        assert r.headers["www-authenticate"].startswith("Bearer")
        r = c.get("/v1/people", headers={"Authorization": "Bearer wrong-key-0123456789abcdef"})
        assert r.status_code == 401 and r.json()["error"]["code"] == "auth.invalid_key"
        assert c.get("/v1/people", headers={"Authorization": "Basic " + KEYS["read"]}).status_code == 401
        assert c.get("/v1/people", headers=auth("read")).status_code == 200
        photo = [upload(lfw_image("Hugo_Chavez", 30))]
        assert c.post("/v1/identify", files=photo, headers=auth("read")).status_code == 200
        r = c.post("/v1/people/X/faces", files=photo, headers=auth("read"))
        assert r.status_code == 403 and r.json()["error"]["code"] == "auth.scope"
        assert c.post("/v1/people/X/faces?multiple=largest", files=photo, headers=auth("enroll")).status_code == 200
        assert c.delete("/v1/people/X", headers=auth("enroll")).status_code == 403
        assert c.post("/v1/calibrate", headers=auth("enroll")).status_code == 403
        assert c.delete("/v1/people/X", headers=auth("admin")).status_code == 200
        assert c.get("/v1/gallery", headers=auth("enroll")).json()["caller"]["scope"] == "enroll"
        # jobs belong to the key that made them (admin sees all)
        job = c.post("/v1/identify?wait=0", files=photo, headers=auth("enroll")).json()
        assert c.get(job["url"], headers=auth("read")).status_code == 404
        assert c.get(job["url"], headers=auth("enroll")).status_code == 200
        assert c.get(job["url"], headers=auth("admin")).status_code == 200
        # with keys, any Host is fine (the key is the guard)
        assert c.get("/v1/people", headers={**auth("read"), "Host": "faces.example"}).status_code == 200
    logged = caplog.text + "".join(str(r.args) for r in caplog.records)
    assert not any(k in logged for k in KEYS.values())


def test_key_loading(tmp_path):
    from facedex.service.keys import KeyRing

    f = tmp_path / "keys"
    f.write_text("# facedex keys\nread  r-0123456789abcdefXYZ  phone\nadmin a-0123456789abcdefXYZ\n")
    ring = KeyRing.load(f, env={"FACEDEX_API_KEY": "e-0123456789abcdefXYZ"})
    assert [(k.scope, k.label) for k in ring.keys] == [("admin", "FACEDEX_API_KEY"), ("read", "phone"),
                                                       ("admin", f"{f}:3")]
    assert ring.check("Bearer r-0123456789abcdefXYZ").scope == "read"
    for text in ("write r-0123456789abcdefXYZ\n", "read short\n", "read\n", "", "read a-0123456789abcdefXYZ\n" * 2):
        f.write_text(text)
        with pytest.raises(ConfigError) as e:
            KeyRing.load(f, env={})
        assert "0123456789" not in str(e.value)  # never the key in a message


def test_non_loopback_needs_a_key(gallery_copy):
    from facedex.service import ServiceConfig

    with pytest.raises(ConfigError, match="without an API key"):
        ServiceConfig(gallery_copy, host="0.0.0.0")
    ServiceConfig(gallery_copy, host="0.0.0.0", keys=keyring())
    ServiceConfig(gallery_copy, host="::1")
    from .test_cli import facedex as run_cli

    r = run_cli("serve", gallery_copy, "--host", "0.0.0.0", check_rc=2)
    assert "without an API key" in r.stderr
    r = run_cli("serve", gallery_copy.with_name("none.gallery"), check_rc=2)
    assert "no gallery" in r.stderr


def test_browser_guards(client):
    r = client.get("/v1/people", headers={"Host": "attacker.example"})  # DNS rebinding onto loopback
    assert r.status_code == 421 and r.json()["error"]["code"] == "auth.host"
    assert client.get("/v1/people", headers={"Host": "127.0.0.1:8000"}).status_code == 200
    r = client.delete("/v1/people/Tony_Blair", headers={"Origin": "http://attacker.example"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "auth.cross_origin"
    r = client.post("/v1/calibrate", headers={"Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for asset in ("/static/app.js", "/static/app.css", "/static/index.html"):
        text = client.get(asset).text
        assert "http://" not in text and "https://" not in text, asset  # no CDN
    docs = client.get("/docs").text
    assert "/docs-assets/swagger-ui-bundle.js" in docs and "cdn" not in docs.lower()
    assert client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/v1/identify", "/v1/verify", "/v1/people", "/v1/gallery", "/v1/calibrate", "/v1/jobs/{job_id}",
            "/v1/people/{name}/faces"} <= set(spec["paths"])


def test_upload_limits(gallery_copy):
    from facedex.service.settings import MB

    with make_client(gallery_copy, max_photo_bytes=100_000, max_files=3, max_enroll_bytes=MB) as c:
        _wait_ready(c)
        big = lfw_image("Tony_Blair", 1).read_bytes() + b"\0" * 150_000
        r = c.post("/v1/identify", files=[("file", ("big.jpg", big, "image/jpeg"))])
        assert r.status_code == 413 and r.json()["error"]["code"] == "media.too_large"
        r = c.post("/v1/people/X/faces", files=[upload(p) for p in lfw_images("Tony_Blair")[:4]])
        assert r.status_code == 413 and "too many files" in r.json()["error"]["message"]
        r = c.post("/v1/people/X/faces", content=b"x", headers={"Content-Type": "multipart/form-data; boundary=b",
                                                                 "Content-Length": str(5 * MB)})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request.too_large"
        r = c.post("/v1/identify", content=lfw_image("Tony_Blair", 1).read_bytes(),
                   headers={"Content-Type": "image/jpeg"})
        assert r.status_code == 415 and r.json()["error"]["code"] == "request.unsupported_type"
        r = c.post("/v1/identify", data={"note": "no file"}, files=[])
        assert r.status_code in (400, 415)
        body = (b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\nX-Pad: "
                + b"a" * 40_000 + b"\r\n\r\nxx\r\n--b--\r\n")
        r = c.post("/v1/identify", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 431 and r.json()["error"]["code"] == "request.headers_too_large"
        r = c.post("/v1/identify", content=b"--b\r\nnonsense", headers={"Content-Type": "multipart/form-data; boundary=b"})
        assert r.status_code == 400
        spool = gallery_copy.with_name(gallery_copy.name + ".serve") / "spool"
        assert list(spool.iterdir()) == []  # nothing left behind


def test_a_full_queue_answers_503_with_retry_after(gallery_copy):
    with make_client(gallery_copy, workers=1, queue=1) as c:
        _wait_ready(c)
        gate = threading.Event()
        pool = c.service.pool
        blockers = [pool.submit(gate.wait, 30) for _ in range(2)]  # the worker and the one queue place
        try:
            r = c.post("/v1/identify", files=[upload(lfw_image("Hugo_Chavez", 30))])
            assert r.status_code == 503 and r.json()["error"]["code"] == "service.busy"
            assert int(r.headers["retry-after"]) >= 1
            assert c.get("/v1/people").status_code == 200  # reads are not stuck behind the queue
        finally:
            gate.set()
            for b in blockers:
                b.result(10)
        assert c.post("/v1/identify", files=[upload(lfw_image("Hugo_Chavez", 30))]).status_code == 200
        assert pool.pending == 0


def test_the_service_does_not_change_a_gallery_it_only_reads(client, gallery_copy):
    before = gallery_copy.read_bytes()
    for p in strangers(3):
        assert client.post("/v1/identify", files=[upload(p)]).status_code == 200
    client.get("/v1/people")
    client.get("/v1/gallery")
    assert gallery_copy.read_bytes() == before
    with sqlite3.connect(gallery_copy) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_schemas_of_the_service_are_published():
    from facedex.schemas import SCHEMAS

    root = Path(__file__).resolve().parents[1] / "docs" / "schemas"
    for name in ("gallery", "job"):
        assert json.loads((root / f"{name}.schema.json").read_text()) == SCHEMAS[name]


@pytest.mark.parametrize("raw, expected", [
    ("photo.jpg", "photo.jpg"),
    ("../../etc/passwd", "passwd"),
    ("C:\\Users\\ada\\me.png", "me.png"),
    ("\x1b[31mred\x00.jpg", "[31mred.jpg"),
    (".hidden.jpg", "hidden.jpg"),
    ("", "upload-1"),
    ("..", "upload-1"),
    ("a" * 300 + ".jpeg", "a" * 190 + ".jpeg"),
])
def test_upload_names_are_safe(raw, expected):
    from facedex.service.limits import safe_filename

    assert safe_filename(raw, 1) == expected
