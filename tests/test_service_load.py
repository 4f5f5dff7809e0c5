"""A short version of bench/load_service.py: 200 concurrent clients for a few
seconds get only 2xx answers or the deliberate 503 + Retry-After, and the
server is still well afterwards."""

from __future__ import annotations

import asyncio
import sys

import pytest

from .conftest import KNOWN, REPO, lfw_image, strangers
from .test_service_support import running, serve_extra

pytestmark = [serve_extra, pytest.mark.filterwarnings("ignore:Using `httpx` with")]


def test_200_clients_get_answers_or_a_polite_503(gallery_copy, tmp_path):
    import httpx

    sys.path.insert(0, str(REPO / "bench"))
    try:
        import load_service
    finally:
        sys.path.remove(str(REPO / "bench"))
    photos = [p.read_bytes() for p in strangers(10) + [lfw_image(k, 8) for k in KNOWN]]
    with running(gallery_copy, tmp_path, "--queue", "16", "--no-access-log") as server:
        rss = server.rss_kb()
        res = asyncio.run(load_service.run_load(server.url, 200, 6, photos))
        assert res["errors_other"] == 0, res["statuses"]
        assert set(res["statuses"]) <= {"200", "503"}, res["statuses"]
        assert res["requests_ok"] > 30 and res["identify_per_s"] > 1, (res["statuses_by_kind"], res["transport_errors"])
        assert httpx.get(server.url + "/healthz", timeout=10).status_code == 200
        r = httpx.post(server.url + "/v1/identify", files={"file": open(lfw_image("Tony_Blair", 20), "rb")},
                       timeout=60)
        assert r.status_code == 200
        assert server.rss_kb() - rss < 200 * 1024
