"""``facedex serve``: the HTTP API and the web page, on the library calls the CLI makes.

>>> from facedex.service import ServiceConfig, create_app
>>> app = create_app(ServiceConfig("my.gallery"))      # any ASGI server; `facedex serve` uses uvicorn

Needs the ``serve`` extra (``pip install 'facedex[serve]'``: FastAPI, uvicorn,
python-multipart). Modules: :mod:`.app` (routes), :mod:`.keys` (API keys and
scopes), :mod:`.limits` (uploads, headers and time limits), :mod:`.work` (the
bounded pool, per-thread galleries, jobs), :mod:`.thumbs` (face thumbnails),
:mod:`.server` (uvicorn), ``static/`` (the page: plain HTML, CSS and JS).
See docs/service.md.
"""

from __future__ import annotations

from typing import Any

from .settings import ServiceConfig


def create_app(config: ServiceConfig) -> Any:
    """The ASGI application (imports FastAPI: needs ``facedex[serve]``)."""
    from .app import create_app as _create

    return _create(config)


__all__ = ["ServiceConfig", "create_app"]
