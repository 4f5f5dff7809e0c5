"""A small gallery website on 127.0.0.1, built from real LFW images, with traps.

Used by the collect tests and by ``bench/collect_bench.py``. It reads LFW
files in place and keeps a log of every request, so tests can check exactly
what the collector asked for — and what it did not.

The gallery (:func:`build_gallery`) has a paginated person index whose last
page links back to the first (a pagination cycle), person pages (one spread
over two pages), an album page listing several people, a section that
robots.txt disallows, and people whose names need care (unicode in NFC and
NFD, ``../../etc/passwd``). The traps (:func:`add_traps`) are image URLs
that answer 404, 500, 503-then-200, 429 with Retry-After, time out, loop,
redirect off the host, are too large, are HTML served as ``.jpg``, are too
small or truncated, and one image served under two URLs.
"""

from __future__ import annotations

import html
import io
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Iterable, Iterator
from urllib.parse import quote

Body = bytes | Iterable[bytes]


@dataclass
class Reply:
    status: int = 200
    body: Body = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "text/html; charset=utf-8"
    chunked: bool = False          #: stream the body without Content-Length
    wait: threading.Event | None = None   #: hold the answer until this is set (or the site closes)
    stall_after: int | None = None  #: send this many body bytes, then wait for ``wait``


@dataclass(frozen=True)
class Hit:
    """One request, logged when it arrives."""

    path: str
    time: float
    headers: dict[str, str]


@dataclass(frozen=True)
class Served:
    """How the answer to one request ended, logged when it ends."""

    path: str
    status: int
    sent: int          #: body bytes written
    complete: bool     #: the whole body was written


Handler = Callable[[str], Reply]


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up (the collector aborting a download) is not an error here."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


class Site:
    """An HTTP/1.1 server on 127.0.0.1 (port chosen by the OS) with a request log."""

    def __init__(self, name: str = "site", tls: tuple[Path, Path] | None = None):
        """``tls``: (certificate, key) PEM files to serve HTTPS instead of HTTP."""
        self.name = name
        self.routes: dict[str, Handler | Reply] = {}
        self.hits: list[Hit] = []
        self.served: list[Served] = []
        self.closing = threading.Event()
        self._lock = threading.Lock()
        site = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out as separate writes

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                site._serve(self)

        self.server = _QuietServer(("127.0.0.1", 0), _Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.port = self.server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{name}-server", daemon=True)

    # --- lifecycle -----------------------------------------------------------------------
    def start(self) -> "Site":
        self._thread.start()
        return self

    def close(self) -> None:
        self.closing.set()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "Site":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # --- content ---------------------------------------------------------------------------
    def url(self, path: str) -> str:
        return f"{self.scheme}://{self.host}{path}"

    def add(self, path: str, reply: Handler | Reply) -> str:
        self.routes[path] = reply
        return self.url(path)

    def add_file(self, path: str, file: Path, content_type: str = "image/jpeg") -> str:
        return self.add(path, lambda _p, f=file: Reply(200, f.read_bytes(), content_type=content_type))

    def add_page(self, path: str, body_html: str, title: str = "") -> str:
        page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
                f"<body>{body_html}</body></html>")
        return self.add(path, Reply(200, page.encode("utf-8")))

    # --- the log -------------------------------------------------------------------------
    def count(self, path: str | None = None, prefix: str | None = None) -> int:
        with self._lock:
            return sum(1 for h in self.hits if (path is None or h.path == path)
                       and (prefix is None or h.path.startswith(prefix)))

    def log(self) -> list[Hit]:
        with self._lock:
            return list(self.hits)

    def times(self, path: str) -> list[float]:
        return [h.time for h in self.log() if h.path == path]

    def answers(self, path: str) -> list[Served]:
        with self._lock:
            return [s for s in self.served if s.path == path]

    def paths(self) -> list[str]:
        return [h.path for h in self.log()]

    # --- serving -------------------------------------------------------------------------
    def _serve(self, req: BaseHTTPRequestHandler) -> None:
        path = req.path
        with self._lock:
            self.hits.append(Hit(path, time.monotonic(), {k.lower(): v for k, v in req.headers.items()}))
        route = self.routes.get(path)
        reply = route(path) if callable(route) else route
        if reply is None:
            reply = Reply(404, b"<html><body>not found</body></html>")
        sent, complete = 0, False
        try:
            if reply.wait is not None and reply.stall_after is None:
                _wait(reply.wait, self.closing)
            req.send_response(reply.status)
            req.send_header("Content-Type", reply.content_type)
            for k, v in reply.headers.items():
                req.send_header(k, v)
            body = reply.body
            if isinstance(body, (bytes, bytearray)) and not reply.chunked:
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                if reply.stall_after is not None:
                    req.wfile.write(body[: reply.stall_after])
                    req.wfile.flush()
                    sent = reply.stall_after
                    _wait(reply.wait or self.closing, self.closing)
                    body = body[reply.stall_after:]
                req.wfile.write(body)
                sent += len(body)
            else:
                req.send_header("Transfer-Encoding", "chunked")
                req.end_headers()
                chunks = [body] if isinstance(body, (bytes, bytearray)) else body
                for chunk in chunks:
                    if self.closing.is_set():
                        raise ConnectionAbortedError
                    req.wfile.write(f"{len(chunk):X}\r\n".encode() + chunk + b"\r\n")
                    sent += len(chunk)
                req.wfile.write(b"0\r\n\r\n")
            req.wfile.flush()
            complete = True
        except (ConnectionError, BrokenPipeError, TimeoutError, OSError):
            req.close_connection = True
        finally:
            with self._lock:
                self.served.append(Served(path, reply.status, sent, complete))


def _wait(event: threading.Event, closing: threading.Event, limit: float = 30.0) -> None:
    """Block until ``event`` or the site closes (never longer than ``limit``)."""
    deadline = time.monotonic() + limit
    while not event.is_set() and not closing.is_set() and time.monotonic() < deadline:
        event.wait(0.05)


# --- content builders ------------------------------------------------------------------------
ROBOTS_TXT = b"User-agent: *\nDisallow: /private/\n\nUser-agent: otherbot\nDisallow: /\n"


def add_robots(site: Site) -> None:
    """robots.txt: everyone may crawl everything except ``/private/``."""
    site.add("/robots.txt", Reply(200, ROBOTS_TXT, content_type="text/plain"))

def jpeg(path: Path) -> bytes:
    return path.read_bytes()


def small_jpeg(src: Path, side: int) -> bytes:
    from PIL import Image

    im = Image.open(src).convert("RGB").resize((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _img_tags(urls: Iterable[str]) -> str:
    return "".join(f"<img src='{html.escape(u)}' alt=''>" for u in urls)


@dataclass
class Gallery:
    """What :func:`build_gallery` put on the site, for the tests to check against."""

    site: Site
    people: dict[str, list[str]]      #: display name (as on the person page) -> image URLs
    album_people: list[str]           #: names listed on the album
    album_images: list[str]           #: image URLs on the album
    private_images: list[str]         #: image URLs in the robots-disallowed section
    index_pages: list[str]
    recipe: str                       #: TOML recipe text for this site


# Display names: a unicode name in NFC, the same in NFD on the album, a hostile one.
NAME_CHRETIEN = "Jean Chrétien"
NAME_CHAVEZ_NFD = "Hugo Cha\u0301vez"       # á decomposed
NAME_TRAVERSAL = "../../etc/passwd"


def build_gallery(site: Site, lfw: Path, per_person: int = 3) -> Gallery:
    """The crawlable part of the site (see the module doc)."""
    cast = [
        ("Colin Powell", "Colin_Powell"),
        (NAME_CHRETIEN, "Jean_Chretien"),
        (NAME_CHAVEZ_NFD, "Hugo_Chavez"),
        (NAME_TRAVERSAL, "Ariel_Sharon"),
        ("Tony Blair", "Tony_Blair"),
        ("Gerhard Schröder", "Gerhard_Schroeder"),
    ]
    people: dict[str, list[str]] = {}
    person_paths: list[str] = []
    for i, (name, folder) in enumerate(cast, 1):
        files = sorted((lfw / folder).glob("*.jpg"))[:per_person + (2 if i == 1 else 0)]
        urls = [site.add_file(f"/img/p{i}/{n}.jpg", f) for n, f in enumerate(files, 1)]
        people[name] = urls
        path = f"/person/{i}"
        person_paths.append(path)
        if i == 1:  # Colin Powell's gallery spans two pages
            site.add_page(path, f"<h1 class='name'>{html.escape(name)}</h1><div class='gallery'>"
                                f"{_img_tags(urls[:per_person])}</div><a class='more' href='{path}/2'>more</a>")
            site.add_page(f"{path}/2", f"<h1 class='name'>{html.escape(name)}</h1><div class='gallery'>"
                                       f"{_img_tags(urls[per_person:])}</div>")
        else:
            site.add_page(path, f"<h1 class='name'>{html.escape(name)}</h1>"
                                f"<div class='gallery'>{_img_tags(urls)}</div>")

    # the album: Tony Blair and Hugo Chávez (spelled in NFC here) together
    album_people = ["Tony Blair", "Hugo Chávez"]
    album_files = [sorted((lfw / "George_W_Bush").glob("*.jpg"))[k] for k in (0, 1)]
    album_images = [site.add_file(f"/img/album/{n}.jpg", f) for n, f in enumerate(album_files, 1)]
    site.add_page("/albums/summit", "<h1>Summit</h1><ul class='tags'>"
                  + "".join(f"<li><a href='/tag/{quote(n)}'>{html.escape(n)}</a></li>" for n in album_people)
                  + f"</ul><div class='photos'>{_img_tags(album_images)}</div>")

    # a section robots.txt disallows
    private_file = sorted((lfw / "Donald_Rumsfeld").glob("*.jpg"))[0]
    private_images = [site.add_file("/private/img/1.jpg", private_file)]
    site.add_page("/private/person/1", f"<h1 class='name'>Donald Rumsfeld</h1>{_img_tags(private_images)}")
    add_robots(site)

    # the index: 3 pages, 2 people each; page 1 links the album; page 3 links the private person
    # and its "next" goes back to page 1 (a pagination cycle)
    index_pages = []
    for page in (1, 2, 3):
        links = "".join(f"<li><a class='person' href='{p}'>x</a></li>" for p in person_paths[(page - 1) * 2: page * 2])
        if page == 1:
            links += "<li><a class='album' href='/albums/summit'>Summit</a></li>"
        if page == 3:
            links += "<li><a class='person' href='/private/person/1'>x</a></li>"
        nxt = f"/people/?page={page % 3 + 1}"
        index_pages.append(site.add_page(f"/people/?page={page}",
                                         f"<ul>{links}</ul><a rel='next' href='{nxt}'>next</a>"))
    recipe = f"""
name = "test gallery"
start = ["{site.url('/people/?page=1')}"]
allowed_hosts = ["127.0.0.1"]

[index]
person_links = "a.person"
next_page = "a[rel=next]"

[person]
name = "h1.name"
images = "img"
image_attr = "src"
next_page = "a.more"

[source]
links = "a.album"
people = "ul.tags a"
images = ".photos img"
"""
    return Gallery(site, people, album_people, album_images, private_images, index_pages, recipe)


@dataclass
class Traps:
    """URLs of the trap endpoints (see :func:`add_traps`)."""

    urls: dict[str, str]
    release: threading.Event          #: lets the slow endpoint answer


def add_traps(site: Site, lfw: Path, other: Site, *, big_bytes: int = 3_000_000) -> Traps:
    """Image URLs that misbehave in every way the collector must survive."""
    sample = sorted((lfw / "Junichiro_Koizumi").glob("*.jpg"))
    good = jpeg(sample[0])
    release = threading.Event()
    urls: dict[str, str] = {}
    urls["ok"] = site.add("/trap/ok.jpg", Reply(200, good, content_type="image/jpeg"))
    urls["404"] = site.add("/trap/404.jpg", Reply(404, b"<html>gone</html>"))
    urls["403"] = site.add("/trap/403.jpg", Reply(403, b"<html>forbidden</html>"))
    urls["500"] = site.add("/trap/500.jpg", Reply(500, b"<html>oops</html>"))

    state = {"flaky": 0, "429": 0}

    def flaky(_p: str) -> Reply:
        state["flaky"] += 1
        if state["flaky"] == 1:
            return Reply(503, b"busy")
        return Reply(200, jpeg(sample[1]), content_type="image/jpeg")

    def too_many(_p: str) -> Reply:
        state["429"] += 1
        if state["429"] == 1:
            return Reply(429, b"slow down", headers={"Retry-After": "1"})
        return Reply(200, jpeg(sample[2]), content_type="image/jpeg")

    urls["flaky"] = site.add("/trap/flaky.jpg", flaky)
    urls["429"] = site.add("/trap/429.jpg", too_many)
    urls["429_long"] = site.add("/trap/429-long.jpg", Reply(429, b"go away", headers={"Retry-After": "3600"}))
    urls["slow"] = site.add("/trap/slow.jpg", Reply(200, good, content_type="image/jpeg", wait=release))
    urls["loop"] = site.add("/trap/loop-a.jpg", Reply(302, b"", headers={"Location": "/trap/loop-b.jpg"}))
    site.add("/trap/loop-b.jpg", Reply(301, b"", headers={"Location": site.url("/trap/loop-a.jpg")}))
    other.add("/stolen.jpg", Reply(200, jpeg(sample[6]), content_type="image/jpeg"))
    urls["offhost"] = site.add("/trap/offhost.jpg",
                               Reply(302, b"", headers={"Location": f"http://localhost:{other.port}/stolen.jpg"}))
    urls["redirect_ok"] = site.add("/trap/moved.jpg", Reply(308, b"", headers={"Location": "/img/moved-here.jpg"}))
    site.add("/img/moved-here.jpg", Reply(200, jpeg(sample[3]), content_type="image/jpeg"))
    urls["big"] = site.add("/trap/big.jpg", Reply(200, good + b"\0" * big_bytes, content_type="image/jpeg"))

    def endless(_p: str) -> Reply:
        def chunks() -> Iterator[bytes]:
            yield good
            block = b"\0" * 65536
            for _ in range(50_000_000 // len(block)):  # ~50 MB if nobody stops reading
                yield block
        return Reply(200, chunks(), content_type="image/jpeg", chunked=True)

    urls["big_stream"] = site.add("/trap/big-stream.jpg", endless)
    urls["html_as_jpg"] = site.add("/trap/fake.jpg", Reply(200, b"<!DOCTYPE html><html><body>Login first"
                                                            b"</body></html>", content_type="image/jpeg"))
    urls["tiny"] = site.add("/trap/tiny.jpg", Reply(200, small_jpeg(sample[4], 40), content_type="image/jpeg"))
    urls["truncated"] = site.add("/trap/truncated.jpg", Reply(200, good[: len(good) // 3], content_type="image/jpeg"))
    dup = jpeg(sample[5])
    urls["dup_a"] = site.add("/img/dup-a.jpg", Reply(200, dup, content_type="image/jpeg"))
    urls["dup_b"] = site.add("/img/copy/of-a.jpg", Reply(200, dup, content_type="application/octet-stream"))
    urls["robots"] = site.add("/private/img/2.jpg", Reply(200, jpeg(sample[7]), content_type="image/jpeg"))
    add_robots(site)
    return Traps(urls, release)
