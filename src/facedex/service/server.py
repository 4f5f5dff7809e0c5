"""Running the service with uvicorn: one process, the bounded pool inside it."""

from __future__ import annotations

import logging

from .settings import ServiceConfig

log = logging.getLogger(__name__)


def uvicorn_config(config: ServiceConfig, *, log_level: str = "info", access_log: bool = True):
    """A ``uvicorn.Config`` for ``config``: h11 with the request-head timeout,
    keep-alive 30 s (a short one races with clients reusing an idle
    connection), and at most ``workers + queue + 256`` connections and tasks
    (beyond that uvicorn answers 503 before any of our code runs)."""
    import uvicorn

    from .app import create_app
    from .limits import guarded_h11

    return uvicorn.Config(
        create_app(config), host=config.host, port=config.port, http=guarded_h11(config.header_timeout),
        lifespan="on", log_level=log_level, access_log=access_log, timeout_keep_alive=30,
        limit_concurrency=config.workers + config.queue + 256, timeout_graceful_shutdown=10,
        server_header=False, proxy_headers=False, h11_max_incomplete_event_size=32 * 1024,
    )


def serve(config: ServiceConfig, *, log_level: str = "info", access_log: bool = True) -> None:
    """Serve until interrupted (SIGINT/SIGTERM stop it gracefully)."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(config, log_level=log_level, access_log=access_log))
    server.run()
