"""The HTTP API and the web page: FastAPI routes over the library calls the CLI makes.

Every route parses its request, calls the library — :func:`facedex.identify_paths`,
``Gallery.enrollment().run``, :func:`facedex.verify`, ``Gallery.forget``,
``Gallery.calibrate`` — and answers with the same JSON documents the CLI
prints with ``--json`` (schemas in docs/schemas/). Nothing here identifies,
enrolls, verifies or decodes by itself. See docs/service.md.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import mimetypes
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import FacedexError
from .errors import ServiceError, error_document, http_status
from .keys import ApiKey, require
from .limits import UploadRules, check_declared_length, read_form
from .settings import LOOPBACK_NAMES, ServiceConfig
from .thumbs import Thumbnails
from .work import Galleries, Job, Jobs, Pool

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
MAX_CANDIDATES = 5  # what the library's identifier returns per face

PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
            "script-src 'self'; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
            "form-action 'none'")
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'")


def _api_schema(name: str) -> dict:
    from ..schemas import schema

    return {k: v for k, v in schema(name).items() if not k.startswith("$")}


def _json_response(name: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _api_schema(name)}}}


def _multipart(fields: dict[str, str], required: list[str], many: str | None = None) -> dict:
    props: dict[str, Any] = {f: {"type": "string", "format": "binary", "description": d} for f, d in fields.items()}
    if many:
        props[many] = {"type": "array", "items": {"type": "string", "format": "binary"}, "description": fields[many]}
    return {"requestBody": {"required": True, "content": {"multipart/form-data": {
        "schema": {"type": "object", "properties": props, "required": required}}}}}


ERRORS = {code: {"description": d, "content": {"application/json": {"schema": _api_schema("error")}}}
          for code, d in {400: "bad request (request.invalid, config.*, name.invalid)",
                          401: "no key or a wrong key (auth.missing_key, auth.invalid_key)",
                          403: "the key's scope does not allow this (auth.scope)",
                          413: "over a size limit (media.too_large, request.too_large)",
                          503: "busy: retry after Retry-After seconds (service.busy)"}.items()}


class Service:
    """Everything one running service holds."""

    def __init__(self, config: ServiceConfig):
        self.config = config
        self.keys = config.keys
        self.galleries = Galleries(config.gallery, runtime=config.runtime, detector_config=config.detector_config)
        self.pool = Pool(config.workers, config.queue, "work")
        self.light = Pool(min(4, max(2, config.workers)), 256, "read")
        data = config.data_path
        self.spool = data / "spool"
        self.outputs = data / "outputs"
        self.thumbs_dir = data / "thumbs"
        self.jobs = Jobs(self.outputs, ttl=config.job_ttl, max_jobs=config.max_jobs)
        self.thumbs: Thumbnails | None = None
        self.ready = False
        self.warm_error: str | None = None
        self.display_name = Path(config.gallery).name
        c = config
        common = dict(max_part_header=c.max_part_header_bytes, idle_timeout=c.body_idle_timeout,
                      min_rate=c.min_upload_rate, grace=c.upload_grace)
        self.identify_rules = UploadRules(c.max_video_bytes + 1024 * 1024, 1, c.max_photo_bytes, c.max_video_bytes,
                                          **common)
        self.verify_rules = UploadRules(2 * c.max_photo_bytes + 1024 * 1024, 2, c.max_photo_bytes, None, **common)
        self.enroll_rules = UploadRules(c.max_enroll_bytes, c.max_files, c.max_photo_bytes, None, **common)
        self.allowed_hosts = {h.strip("[]").lower() for h in (*LOOPBACK_NAMES, c.host)}

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for d in (self.spool, self.outputs):
            shutil.rmtree(d, ignore_errors=True)  # leftovers of a killed run: uploads, annotated copies
            d.mkdir(parents=True, exist_ok=True)
            d.chmod(0o700)
        self.thumbs = Thumbnails(self.thumbs_dir)
        self.thumbs_dir.chmod(0o700)
        if self.config.create and not Path(self.config.gallery).exists():
            from ..identify.gallery import Gallery

            Gallery.open(self.config.gallery, create=True).close()
        g = self.galleries.get()  # fails now, not at the first request, when the gallery cannot be opened
        with self.galleries.write_lock:
            removed = self.thumbs.prune(p.name for p in g.people())
        if removed:
            log.info("removed %d thumbnails of people no longer in the gallery", removed)

    def warm_up(self) -> None:
        """Load the models (in a worker, so the first request is not the slow one)."""
        try:
            self._warm_up()
        except Exception as err:
            self.warm_error = f"{type(err).__name__}: {err}"
            log.exception("the models could not be loaded; /healthz answers 503")

    def _warm_up(self) -> None:
        import numpy as np

        g = self.galleries.get()
        g.pipeline.detector.detect(np.zeros((96, 96, 3), np.uint8))
        size = g.embedder_card.input_size or (112, 112)
        g.pipeline.embedder.embed_crops([np.zeros((size[1], size[0], 3), np.uint8)])
        g.threshold  # noqa: B018 - a gallery without a usable threshold says so in the log now
        self.ready = True
        log.info("ready: %s (%s)", self.display_name, g.embedder_card.id)

    def stop(self) -> None:
        self.pool.shutdown()
        self.light.shutdown()
        self.jobs.close()
        self.galleries.close()
        shutil.rmtree(self.spool, ignore_errors=True)

    # -- who is asking ---------------------------------------------------------------------------
    def caller(self, request, scope: str) -> ApiKey:
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            site = request.headers.get("sec-fetch-site")
            origin = request.headers.get("origin")
            host = request.headers.get("host", "")
            if site in ("cross-site", "same-site") or (origin and origin != "null"
                                                       and origin.split("://", 1)[-1] != host):
                raise ServiceError(403, "auth.cross_origin", "requests from another web site are refused")
        key = self.keys.check(request.headers.get("authorization"))
        require(key, scope)
        return key

    def check_host(self, host_header: str) -> bool:
        """Without keys on loopback, only loopback names may be in Host (a DNS
        rebinding page would send its own name)."""
        if self.keys.enabled or not self.config.loopback:
            return True
        host = host_header.lower()
        name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0] if ":" in host else host
        return name in self.allowed_hosts

    # -- documents ---------------------------------------------------------------------------------
    def gallery_doc(self, key: ApiKey) -> dict[str, Any]:
        g = self.galleries.get()
        return {"schema": "facedex.gallery/1", "gallery": self.display_name, "embedder": g.embedder_card.id,
                "totals": g.counts(), "threshold": g.threshold.to_dict(), "version": __version__,
                "ready": self.ready, "limits": self.config.limits(),
                "caller": {"scope": key.scope, "keys_required": self.keys.enabled},
                "load": {"pending": self.pool.pending, "capacity": self.pool.capacity, **self.jobs.counts()}}

    def people_doc(self) -> dict[str, Any]:
        g = self.galleries.get()
        # Thumbnails of people forgotten meanwhile (by the CLI) are removed here; skipped while a
        # write is in progress, so that a person being enrolled never loses a fresh thumbnail.
        if self.galleries.write_lock.acquire(blocking=False):
            try:
                self.thumbs.prune(p.name for p in g.people())
            finally:
                self.galleries.write_lock.release()
        people = g.people()
        return {"schema": "facedex.people/1", "gallery": self.display_name, "embedder": g.embedder_card.id,
                "totals": g.counts(), "threshold": g.threshold.to_dict(), "people": [p.to_dict() for p in people]}

    def person_doc(self, name: str) -> dict[str, Any]:
        from ..names import person_name

        g = self.galleries.get()
        person = person_name(name)
        return {"schema": "facedex.person/1", "gallery": self.display_name, "name": person,
                "faces": g.store.faces_of(person)}

    def thumbnail(self, name: str) -> bytes | None:
        g = self.galleries.get()
        data = self.thumbs.read(g, name)  # raises PersonNotFoundError: never served for someone forgotten
        if data is not None:
            return data
        with self.galleries.write_lock:  # made once, from a source photo on disk
            return self.thumbs.get(g, name)

    # -- the work (in the pool) -----------------------------------------------------------------------
    def identify_work(self, job: Job, upload, threshold, video, annotate: str, top: int) -> None:
        from ..identify.run import identify_paths
        from ..media import MediaInput

        job.status, job.started = "running", time.time()
        try:
            g = self.galleries.get()
            if upload.is_video and upload.path is not None:
                inp = MediaInput(upload.name, path=upload.path)
            else:
                inp = MediaInput(upload.name, data=upload.read_bytes())

            def on_frames(_name: str, done: int, total: int | None) -> None:
                job.frames_done, job.frames_total = done, total

            run = identify_paths(g, [inp], threshold=threshold, video=video,
                                 annotate=job.folder if annotate != "false" else None, on_frames=on_frames)
            try:
                result = next(run)
            finally:
                run.close()
            doc = self._present(result.to_dict(), job, annotate, top)
            job.result = doc
            job.status_code = http_status(doc["error"]["code"] if doc.get("error") else None)
            job.status = "done"
        except FacedexError as err:
            job.error, job.status_code, job.status = err.to_dict(), http_status(err.code), "failed"
        except Exception:
            log.exception("identify %s failed", job.input)
            job.error = {"code": "internal", "message": "an unexpected error; the server log has the details"}
            job.status_code, job.status = 500, "failed"
        finally:
            upload.discard()
            job.finished = time.time()

    def _present(self, doc: dict, job: Job, annotate: str, top: int) -> dict:
        for item in doc.get("faces", []) + doc.get("tracks", []):
            item["candidates"] = item.get("candidates", [])[:top]
        for key in ("annotated", "contact_sheet"):
            path = doc.get(key)
            if not path:
                continue
            p = Path(path)
            if annotate == "inline" and key == "annotated" and doc.get("kind") == "image":
                mime = mimetypes.guess_type(p.name)[0] or "application/octet-stream"
                doc[key] = f"data:{mime};base64," + base64.b64encode(p.read_bytes()).decode("ascii")
                p.unlink(missing_ok=True)
            else:
                job.outputs[p.name] = p
                doc[key] = f"/v1/files/{job.id}/{p.name}"
        return doc

    def enroll_work(self, person: str, uploads, multiple: str) -> tuple[int, dict]:
        from collections import Counter

        from ..media import MediaInput

        datas = [(u.name, u.read_bytes()) for u in uploads]
        by_sha = {hashlib.sha256(d).hexdigest(): d for _, d in datas}
        g = self.galleries.get()
        with self.galleries.write_lock:
            run = g.enrollment(multiple=multiple)
            report = run.run([MediaInput(n, data=d) for n, d in datas], person=person)
            if report.added:
                try:
                    self.thumbs.get(g, person, by_sha)
                except (FacedexError, OSError):
                    log.warning("could not make a thumbnail for an enrolled person", exc_info=True)
            counts, people_now, threshold = g.counts(), {p.name for p in g.people()}, g.threshold
        del datas, by_sha
        items = list(report.items)
        status = Counter(i.status for i in items)
        attempted = {i.person for i in items if i.person and i.status != "ignored"}
        doc = {"schema": "facedex.enroll/1", "gallery": self.display_name, "interrupted": False,
               "added": status["added"], "skipped": status["skipped"], "failed": status["failed"],
               "ignored": status["ignored"], "people_without_faces": sorted(attempted - people_now),
               "warnings": list(report.warnings), "totals": counts, "threshold": threshold.to_dict(),
               "items": [i.to_dict() for i in items]}
        code = 200
        if items and not (status["added"] or status["skipped"]):
            code = http_status(next((i.code for i in items if i.status == "failed" and i.code), "media.error"))
        return code, doc

    def forget_work(self, name: str) -> dict:
        g = self.galleries.get()
        with self.galleries.write_lock:
            removed = g.forget(name)
            self.thumbs.remove(name)
        from ..names import person_name

        return {"schema": "facedex.forget/1", "gallery": self.display_name,
                "results": [{"name": person_name(name), "forgotten": True, **removed, "error": None}]}

    def calibrate_work(self, fpir: float | None, value: float | None) -> dict:
        g = self.galleries.get()
        with self.galleries.write_lock:
            t = g.set_threshold(value) if value is not None else g.calibrate(fpir if fpir is not None else 0.01)
        return {"schema": "facedex.calibrate/1", "gallery": self.display_name, "threshold": t.to_dict()}

    def verify_work(self, a, b, threshold) -> dict:
        from ..identify.verify import verify
        from ..media import MediaInput

        g = self.galleries.get()
        v = verify(MediaInput(a.name, data=a.read_bytes()), MediaInput(b.name, data=b.read_bytes()),
                   threshold=threshold, embedder=g.embedder_card, pipeline=g.pipeline)
        return v.to_dict()


class _Guard:
    """Pure ASGI middleware: the Host check and security headers on every response."""

    def __init__(self, app, service: Service):
        self.app, self.service = app, service

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.service.check_host(host):
            from starlette.responses import JSONResponse

            resp = JSONResponse(error_document("auth.host", f"Host {host!r} is not a name of this service; "
                                               "use http://127.0.0.1 or http://localhost"), 421)
            return await resp(scope, receive, send)
        path = scope.get("path", "")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                h = list(message.get("headers") or [])
                names = {k.lower() for k, _ in h}
                extra = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                         (b"x-frame-options", b"DENY"), (b"cross-origin-resource-policy", b"same-origin")]
                if b"content-security-policy" not in names:
                    csp = DOCS_CSP if path.startswith("/docs") else PAGE_CSP
                    extra.append((b"content-security-policy", csp.encode()))
                if path.startswith("/v1/") and b"cache-control" not in names:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": h + [e for e in extra if e[0] not in names]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


#: Declares the bearer scheme in the OpenAPI document (the /docs "Authorize" button); the check is ours.
_BEARER = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer KEY` (when the "
                     "service has keys; scopes read < enroll < admin)")


def _scope(scope: str):
    async def dep(request: Request, _declared: Annotated[Any, Depends(_BEARER)] = None) -> ApiKey:
        return request.app.state.service.caller(request, scope)

    return Depends(dep)


#: The caller's key, checked for a scope (401 / 403 otherwise); ``ANONYMOUS`` without keys.
ReadKey = Annotated[ApiKey, _scope("read")]
EnrollKey = Annotated[ApiKey, _scope("enroll")]
AdminKey = Annotated[ApiKey, _scope("admin")]


def _number(value: str | None, name: str, low: float, high: float, *, integer: bool = False):
    if value is None or value == "":
        return None
    try:
        v = int(value) if integer else float(value)
    except ValueError:
        raise ServiceError(400, "request.invalid", f"{name}={value!r} is not {'an integer' if integer else 'a number'}"
                           ) from None
    if isinstance(v, float) and not math.isfinite(v) or not low <= v <= high:
        raise ServiceError(400, "request.invalid", f"{name}={value} is out of range [{low:g}, {high:g}]")
    return v


def create_app(config: ServiceConfig):
    """The ASGI application for ``config`` (``uvicorn.run(create_app(cfg))``)."""
    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        service.start()
        warm = asyncio.get_running_loop().run_in_executor(None, service.warm_up)
        try:
            yield
        finally:
            warm.cancel()
            service.stop()

    app = FastAPI(
        title="facedex", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None,
        description="Who is this? Identify the faces in photos, GIFs and videos against a gallery of people. "
                    "The JSON documents are those of the `facedex` CLI with `--json` (schemas in docs/schemas/). "
                    "Send `Authorization: Bearer KEY` when the service has keys. The web page is at `/`.",
    )
    app.state.service = service

    # -- errors ---------------------------------------------------------------------------------------
    @app.exception_handler(ServiceError)
    async def _service_error(_request, err: ServiceError):
        return JSONResponse(error_document(err.code, str(err)), err.status, headers=err.headers)

    @app.exception_handler(FacedexError)
    async def _facedex_error(_request, err: FacedexError):
        return JSONResponse(error_document(err.code, str(err)), http_status(err.code))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request, err: RequestValidationError):
        parts = [f"{'.'.join(str(x) for x in e.get('loc', ())[1:]) or 'request'}: {e.get('msg')}"
                 for e in err.errors()]
        return JSONResponse(error_document("request.invalid", "; ".join(parts) or "invalid request"), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request, err: StarletteHTTPException):
        code = {404: "request.not_found", 405: "request.method"}.get(err.status_code, "request.invalid")
        return JSONResponse(error_document(code, str(err.detail)), err.status_code,
                            headers=getattr(err, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_request, err: Exception):
        log.exception("unexpected error", exc_info=err)
        return JSONResponse(error_document("internal", "an unexpected error; the server log has the details"), 500)

    # -- page, docs, health -----------------------------------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    try:
        import fastapi_offline

        docs_assets = Path(fastapi_offline.__file__).resolve().parent / "static"
        app.mount("/docs-assets", StaticFiles(directory=docs_assets), name="docs-assets")
    except ImportError:  # pragma: no cover - the serve extra brings it
        docs_assets = None

    @app.get("/docs", include_in_schema=False)
    async def docs():
        from fastapi.openapi.docs import get_swagger_ui_html

        if docs_assets is None:  # pragma: no cover
            return HTMLResponse("<p>Interactive docs need the package fastapi-offline "
                                "(pip install 'facedex[serve]'); the API is described at /openapi.json.</p>")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="facedex API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/static/favicon.svg",
                                   swagger_ui_parameters={"tryItOutEnabled": True, "persistAuthorization": False})

    @app.get("/healthz", tags=["service"], summary="200 when the models are loaded and the gallery open (no key)")
    async def healthz():
        body = {"status": "ok" if service.ready else "failed" if service.warm_error else "starting",
                "ready": service.ready}
        if service.warm_error:
            body["error"] = service.warm_error
        return JSONResponse(body, 200 if service.ready else 503, headers=None if service.ready else {"Retry-After": "2"})

    # -- the gallery and people ------------------------------------------------------------------------------
    @app.get("/v1/gallery", tags=["gallery"], summary="totals, threshold in force, embedder, limits, your scope",
             responses={200: _json_response("gallery", "the gallery")})
    async def gallery(key: ReadKey):
        return await service.light.run(service.gallery_doc, key)

    @app.get("/v1/people", tags=["gallery"], summary="who is enrolled (as `facedex people --json`)",
             responses={200: _json_response("people", "the people")})
    async def people(key: ReadKey):
        return await service.light.run(service.people_doc)

    @app.get("/v1/people/{name:path}/thumbnail", tags=["gallery"], summary="a face thumbnail of the person (JPEG)",
             responses={200: {"content": {"image/jpeg": {}}, "description": "JPEG"}, 404: {"description": "none"}})
    async def thumbnail(name: str, key: ReadKey):
        data = await service.light.run(service.thumbnail, name)
        if data is None:
            raise ServiceError(404, "request.not_found", "no thumbnail: none of the person's source photos can be "
                               "read any more; add a photo through the service to get one")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @app.get("/v1/people/{name:path}", tags=["gallery"], summary="one person's faces and sources "
             "(as `facedex people GALLERY NAME --json`)", responses={200: _json_response("person", "the person")})
    async def person(name: str, key: ReadKey):
        return await service.light.run(service.person_doc, name)

    @app.post("/v1/people/{name:path}/faces", tags=["gallery"],
              summary="add photos of a person (as `facedex enroll GALLERY FILES --person NAME --json`)",
              description="Multipart field `file`, once or several times (each at most the photo limit). "
                          "`multiple`: what to do with a photo showing several faces (auto, largest, reject). "
                          "200 when something was added or was already enrolled; when every photo failed, the "
                          "status of the first failure (422 no face, 415 not an image…) with the same report.",
              openapi_extra=_multipart({"file": "photos of the person"}, ["file"], many=None),
              responses={200: _json_response("enroll", "the enrollment report"), **ERRORS})
    async def add_faces(name: str, request: Request, key: EnrollKey, multiple: str = "auto"):
        from ..identify.enroll import MULTIPLE_POLICIES
        from ..names import person_name

        person = person_name(name)
        if multiple not in MULTIPLE_POLICIES:
            raise ServiceError(400, "request.invalid", f"multiple must be one of {', '.join(MULTIPLE_POLICIES)}")
        service.pool.check()
        form = await read_form(request, service.enroll_rules, service.spool)
        try:
            if not form.files:
                raise ServiceError(400, "request.invalid", "no photo: send them as the multipart field 'file'")
            log.info("enroll %d photo(s) of a person, key %s", len(form.files), key.label)
            code, doc = await service.pool.run(service.enroll_work, person, form.files, multiple)
        finally:
            form.discard()
        return JSONResponse(doc, code)

    @app.delete("/v1/people/{name:path}", tags=["gallery"],
                summary="erase a person completely, thumbnail included (as `facedex forget --json`)",
                responses={200: _json_response("forget", "what was erased"), 404: {"description": "not enrolled"}})
    async def forget(name: str, request: Request, key: AdminKey):
        from ..names import person_name

        person_name(name)
        log.info("forget a person, key %s", key.label)
        return await service.pool.run(service.forget_work, name)

    @app.post("/v1/calibrate", tags=["gallery"],
              summary="set the unknown-threshold from the gallery (as `facedex calibrate --json`)",
              description='JSON body `{"fpir": 0.01}` (default) to calibrate, or `{"threshold": 0.5}` to set it '
                          "by hand.",
              openapi_extra={"requestBody": {"required": False, "content": {"application/json": {"schema": {
                  "type": "object", "properties": {"fpir": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                                                   "threshold": {"type": "number", "minimum": -1, "maximum": 1}}}}}}},
              responses={200: _json_response("calibrate", "the threshold now in force"), **ERRORS})
    async def calibrate(request: Request, key: AdminKey):
        check_declared_length(request.headers, 4096)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > 4096:
                raise ServiceError(413, "request.too_large", "the calibrate body is over 4 KB")
        fpir = value = None
        if body.strip():
            try:
                data = json.loads(body)
            except ValueError:
                raise ServiceError(400, "request.invalid", "the body is not JSON") from None
            if not isinstance(data, dict) or set(data) - {"fpir", "threshold"}:
                raise ServiceError(400, "request.invalid", 'give {"fpir": 0.01} or {"threshold": 0.5}')
            fpir = _number(None if data.get("fpir") is None else str(data["fpir"]), "fpir", 1e-9, 1.0)
            value = _number(None if data.get("threshold") is None else str(data["threshold"]), "threshold", -1, 1)
        log.info("calibrate, key %s", key.label)
        return await service.pool.run(service.calibrate_work, fpir, value)

    # -- identify, verify, jobs --------------------------------------------------------------------------------
    @app.post("/v1/identify", tags=["identify"],
              summary="who is in this photo, GIF or video? (one result of `facedex identify --json`)",
              description="Multipart field `file`. Query options as the CLI's: `threshold`, `top` (candidates per "
                          "face, 0-5), `annotate` (`true`: a URL of an annotated copy; `inline`: a data: URI, "
                          "photos only), and for videos `sample_fps`, `max_gap`, `scene_cut`, `min_track_frames`. "
                          "The answer comes inline when ready within `wait` seconds (default: the server's "
                          "--job-after); otherwise 202 with a job to poll at its `url`. A file that cannot be used "
                          "gets its result with `error` set and a 4xx status (413 too large, 415 not an image or "
                          "video, 422 damaged).",
              openapi_extra=_multipart({"file": "a photo, animated GIF or video"}, ["file"]),
              responses={200: _json_response("identify-result", "the result"),
                         202: _json_response("job", "still running: poll the job"), **ERRORS})
    async def identify(request: Request, key: ReadKey,
                       threshold: float | None = Query(None, ge=-1, le=1, description="similarity threshold for "
                                                       "this request instead of the gallery's"),
                       top: int = Query(MAX_CANDIDATES, ge=0, le=MAX_CANDIDATES, description="candidates per face"),
                       annotate: str = Query("false", description="false, true (URL of an annotated copy) or "
                                             "inline (data: URI, photos)"),
                       sample_fps: float = Query(5.0, ge=0, le=1000, description="video: frames analysed per "
                                                 "second (0 = every frame)"),
                       max_gap: float = Query(1.0, ge=0, le=3600, description="video: seconds unseen that end a "
                                              "track"),
                       scene_cut: float = Query(0.5, ge=0, le=1, description="video: scene-cut distance (0 = "
                                                "never)"),
                       min_track_frames: int = Query(1, ge=1, le=10 ** 6, description="video: shortest track kept"),
                       wait: float | None = Query(None, ge=0, le=300, description="seconds to wait for the answer "
                                                  "before 202 and a job (default: the server's --job-after)")):
        from ..identify.gallery import check_threshold
        from ..video.types import VideoOptions

        if threshold is not None:
            check_threshold(threshold)
        mode = {"false": "false", "0": "false", "no": "false", "true": "url", "1": "url", "yes": "url",
                "url": "url", "inline": "inline"}.get(annotate.lower())
        if mode is None:
            raise ServiceError(400, "request.invalid", "annotate must be false, true (a URL) or inline")
        video = VideoOptions(sample_fps=sample_fps or None, max_gap=max_gap, scene_cut=scene_cut,
                             min_track_frames=min_track_frames)
        wait_s = wait
        wait_s = config.job_after if wait_s is None else wait_s
        service.pool.check()
        form = await read_form(request, service.identify_rules, service.spool)
        if len(form.files) != 1:
            form.discard()
            raise ServiceError(400, "request.invalid", "send exactly one file, as the multipart field 'file' "
                               f"(got {len(form.files)}); one request per photo or video")
        upload = form.files[0]
        job = service.jobs.new(key, upload.name, outputs=mode != "false")
        try:
            fut = service.pool.submit(service.identify_work, job, upload, threshold, video, mode, top)
        except BaseException:
            form.discard()
            raise
        done = asyncio.wrap_future(fut)
        if wait_s > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), wait_s)
        if job.finished is None:
            service.jobs.keep(job)
            return JSONResponse(job.to_dict(), 202, headers={"Location": job.url, "Retry-After": "1"})
        if job.outputs:
            service.jobs.keep(job)  # its files are fetched later
        else:
            service.jobs.drop(job)
        if job.result is not None:
            return JSONResponse(job.result, job.status_code or 200)
        return JSONResponse({"schema": "facedex.error/1", "error": job.error}, job.status_code or 500)

    @app.get("/v1/jobs/{job_id}", tags=["identify"], summary="a job: status, progress, and the result when done",
             responses={200: _json_response("job", "the job")})
    async def get_job(job_id: str, key: ReadKey):
        return service.jobs.get(job_id, key).to_dict()

    @app.get("/v1/files/{job_id}/{name}", tags=["identify"], summary="an annotated copy or contact sheet of a job")
    async def get_file(job_id: str, name: str, key: ReadKey):
        job = service.jobs.get(job_id, key)
        path = job.outputs.get(name)
        if path is None or not path.is_file():
            raise ServiceError(404, "request.not_found", f"job {job_id} has no file {name!r}")
        return FileResponse(path, media_type=mimetypes.guess_type(name)[0] or "application/octet-stream",
                            headers={"Cache-Control": "no-store"})

    @app.post("/v1/verify", tags=["identify"], summary="are the people in two photos the same person? "
              "(as `facedex verify --json`)",
              description="Two files: multipart fields `a` and `b` (or `file` twice). `threshold` overrides the "
                          "embedder's 1:1 threshold.",
              openapi_extra=_multipart({"a": "first photo", "b": "second photo"}, ["a", "b"]),
              responses={200: _json_response("verify", "the answer"), **ERRORS})
    async def verify(request: Request, key: ReadKey,
                     threshold: float | None = Query(None, ge=-1, le=1, description="1:1 threshold override")):
        thr = threshold
        service.pool.check()
        form = await read_form(request, service.verify_rules, service.spool)
        try:
            files = form.files
            if {f.field for f in files} == {"a", "b"}:
                files = sorted(files, key=lambda f: f.field)
            if len(files) != 2:
                raise ServiceError(400, "request.invalid", f"send two photos (fields a and b); got {len(files)}")
            return await service.pool.run(service.verify_work, files[0], files[1], thr)
        finally:
            form.discard()

    guarded = _Guard(app, service)
    guarded.fastapi = app
    return guarded
