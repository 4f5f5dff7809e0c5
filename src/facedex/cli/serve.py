"""``facedex serve``: the HTTP API and the web page over a gallery."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, add_command, add_detector_options, bounded, detector_config
from .output import err

ORDER = 60


def register(sub) -> None:
    p = add_command(sub, "serve", help="serve a gallery over HTTP, with a web page to identify and manage people",
                    description="Serve GALLERY: an HTTP API (the same JSON as the CLI's --json; OpenAPI at /docs) "
                                "and a web page at / to drop a photo, GIF or video and see who is in it, and to "
                                "add or erase people. Binds 127.0.0.1; another address needs an API key "
                                "(FACEDEX_API_KEY, or --api-key-file with read / enroll / admin keys).",
                    examples=["facedex serve my.gallery                       # then open http://127.0.0.1:8000/",
                              "FACEDEX_API_KEY=$(cat key) facedex serve my.gallery --host 0.0.0.0",
                              "facedex serve my.gallery --api-key-file keys.txt --workers 4 --port 9000"])
    p.add_argument("gallery", metavar="GALLERY", help="the gallery file, as made by `facedex enroll`")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind; anything but loopback needs an API key")
    p.add_argument("--port", type=bounded(int, 1, 65535), default=8000, help="TCP port")
    p.add_argument("--workers", type=bounded(int, 1, 256), default=None, metavar="N",
                   help="threads doing detection and recognition (default: the number of CPUs)")
    p.add_argument("--queue", type=bounded(int, 0, 100000), default=32, metavar="N",
                   help="requests that may wait for a worker; beyond that: 503 with Retry-After")
    p.add_argument("--api-key-file", metavar="FILE",
                   help="API keys, one a line: 'SCOPE KEY [LABEL]', SCOPE read, enroll or admin "
                        "(FACEDEX_API_KEY adds one admin key)")
    p.add_argument("--create", action="store_true", help="create an empty gallery when GALLERY does not exist")
    p.add_argument("--data-dir", metavar="DIR",
                   help="thumbnails, upload spool and annotated copies (default: GALLERY.serve beside the gallery)")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-photo-mb", type=bounded(float, 0, low_open=True), default=20.0, metavar="MB",
                     help="largest photo or GIF upload")
    lim.add_argument("--max-video-mb", type=bounded(float, 0, low_open=True), default=500.0, metavar="MB",
                     help="largest video upload")
    lim.add_argument("--max-files", type=bounded(int, 1, 10000), default=50, metavar="N",
                     help="photos per enrollment request")
    lim.add_argument("--job-after", type=bounded(float, 0), default=10.0, metavar="S",
                     help="identify answers inline when done within S seconds, else 202 and a job to poll")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info",
                   help="server log level (API keys are never logged)")
    p.add_argument("--no-access-log", action="store_true", help="do not log each request")
    add_detector_options(p)
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from ..errors import MissingDependencyError
    from ..service.keys import KeyRing
    from ..service.settings import MB, ServiceConfig

    for module, package in (("fastapi", "fastapi"), ("uvicorn", "uvicorn"), ("python_multipart", "python-multipart")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(package, "serve", "facedex serve") from None
    config = ServiceConfig(
        gallery=Path(args.gallery).expanduser(), host=args.host, port=args.port,
        workers=args.workers or os.cpu_count() or 1, queue=args.queue,
        keys=KeyRing.load(args.api_key_file), create=args.create, runtime=args.runtime,
        detector_config=detector_config(args), data_dir=Path(args.data_dir) if args.data_dir else None,
        max_photo_bytes=int(args.max_photo_mb * MB), max_video_bytes=int(args.max_video_mb * MB),
        max_files=args.max_files, job_after=args.job_after,
    )
    _open_gallery(config)
    import logging

    logging.getLogger("facedex.service").setLevel(args.log_level.upper())
    from ..service.server import serve

    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    keys = f"{len(config.keys)} API key(s)" if config.keys.enabled else "no API key (loopback only)"
    err(f"facedex serve: {config.gallery} on {where} — {keys}, {config.workers} worker(s); "
        f"API docs at {where}docs; Ctrl-C stops")
    serve(config, log_level=args.log_level, access_log=not args.no_access_log)
    return EXIT_OK


def _open_gallery(config) -> None:
    """Fail now (exit 2) when the gallery cannot be opened, not at the first request."""
    from ..identify.gallery import Gallery

    with Gallery.open(config.gallery, create=config.create, runtime=config.runtime) as g:
        g.threshold  # noqa: B018 - no threshold at all (custom embedder, never calibrated) is said now
