"""Helpers for the service tests: a real `facedex serve` process on a free port.

(No tests here; the test_service_*.py modules import from it.)
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: F401 (one definition, in conftest)

# the pieces of the [serve] extra
serve_extra = pytest.mark.skipif(
    any(__import__("importlib").util.find_spec(m) is None for m in ("fastapi", "uvicorn", "python_multipart")),
    reason="needs facedex[serve] (scripts/setup installs it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, proc: subprocess.Popen, port: int, log: Path):
        self.proc, self.port, self.log = proc, port, log
        self.url = f"http://127.0.0.1:{port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self, sig=signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0


def start_server(gallery: Path, tmp: Path, *args: str, env: dict | None = None, timeout: float = 90) -> Server:
    """`python -m facedex serve GALLERY` on a free port; returns once /healthz says ready."""
    import httpx

    port = free_port()
    log = tmp / f"serve-{port}.log"
    e = os.environ.copy()
    e.pop("FACEDEX_API_KEY", None)
    e.update(env or {})
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "facedex", "serve", str(gallery), "--port", str(port), *args],
                                stdout=fh, stderr=subprocess.STDOUT, env=e, start_new_session=True)
    server = Server(proc, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"facedex serve exited with {proc.returncode}:\n{server.log_text()[-3000:]}")
        try:
            if httpx.get(server.url + "/healthz", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise AssertionError(f"facedex serve was not ready in {timeout} s:\n{server.log_text()[-3000:]}")


@contextmanager
def running(gallery: Path, tmp: Path, *args: str, env: dict | None = None):
    server = start_server(gallery, tmp, *args, env=env)
    try:
        yield server
    finally:
        server.kill(signal.SIGTERM)
