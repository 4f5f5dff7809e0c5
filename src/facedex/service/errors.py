"""HTTP errors of the service, and the status each library error code gets.

Library errors (:class:`facedex.errors.FacedexError`) keep their stable code
and message; the service only chooses the HTTP status. Errors that exist only
over HTTP (a missing key, a full queue, an upload over the limit…) are
:class:`ServiceError`, with codes of their own (``auth.*``, ``request.*``,
``service.*``, ``job.*``), listed in docs/service.md. None of them is a
``FacedexError``: they never reach the library or the CLI.
"""

from __future__ import annotations

from typing import Any, Mapping

#: Statuses of library error codes: exact codes first, then the longest prefix.
_EXACT = {
    "media.too_large": 413,
    "media.unsupported": 415,
    "media.unsupported_video": 415,
    "gallery.person_not_found": 404,
    "gallery.embedder_mismatch": 409,
    "gallery.calibration": 409,
    "gallery.not_found": 503,
    "output.error": 500,
}
_PREFIX = {
    "media.": 422,
    "face.": 422,
    "config.": 400,
    "name.": 400,
    "identify.": 409,
    "gallery.": 503,
    "model.": 503,
    "dependency.": 503,
}


def http_status(code: str | None) -> int:
    """The HTTP status for a facedex error code (``None``: 200)."""
    if code is None:
        return 200
    if code in _EXACT:
        return _EXACT[code]
    for prefix, status in _PREFIX.items():
        if code.startswith(prefix):
            return status
    return 500


class ServiceError(Exception):
    """An error answered over HTTP: a status, a stable code, a message that
    says what to do, and optional response headers (``Retry-After``,
    ``WWW-Authenticate``)."""

    def __init__(self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = dict(headers or {})

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": str(self)}


def error_document(code: str, message: str) -> dict[str, Any]:
    """The body of every error response: the CLI's ``facedex.error/1`` document."""
    return {"schema": "facedex.error/1", "error": {"code": code, "message": message}}


#: Codes the service adds, with their status and meaning (docs/service.md lists them).
SERVICE_CODES = {
    "auth.missing_key": (401, "no API key given (Authorization: Bearer KEY)"),
    "auth.invalid_key": (401, "the API key is not one of the service's keys"),
    "auth.scope": (403, "the key's scope does not allow this (read < enroll < admin)"),
    "auth.cross_origin": (403, "a browser request from another site (Origin or Sec-Fetch-Site)"),
    "auth.host": (421, "the Host header is not a name of this loopback service (DNS rebinding guard)"),
    "request.invalid": (400, "the request is malformed: missing file field, bad multipart, bad query value"),
    "request.too_large": (413, "the request body is over the limit for this endpoint"),
    "request.headers_too_large": (431, "a multipart part's headers are too large"),
    "request.timeout": (408, "the upload stalled or was too slow"),
    "request.unsupported_type": (415, "the body is not multipart/form-data (or JSON where JSON is expected)"),
    "request.not_found": (404, "no such endpoint or file"),
    "request.method": (405, "the endpoint does not take this method"),
    "service.busy": (503, "the work queue is full; retry after Retry-After seconds"),
    "service.starting": (503, "the models are still loading"),
    "job.not_found": (404, "no such job (unknown, expired, or another key's)"),
    "internal": (500, "a bug: an unexpected exception (please report it)"),
}
