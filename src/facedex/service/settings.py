"""The service's settings, checked once before anything starts."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..faces.detect import DetectorConfig
from .keys import KeyRing

MB = 1024 * 1024

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")


def is_loopback(host: str) -> bool:
    """``host`` binds only the loopback interface (localhost, 127.0.0.0/8, ::1)."""
    h = host.strip("[]")
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServiceConfig:
    """Everything ``facedex serve`` is started with (see docs/service.md).

    Sizes are bytes, times seconds. ``workers`` threads do the CPU work
    (inference releases the GIL); ``queue`` more tasks may wait for them,
    beyond that requests get 503 with ``Retry-After``.
    """

    gallery: Path
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    queue: int = 32
    keys: KeyRing = field(default_factory=KeyRing)
    create: bool = False
    runtime: str | None = None
    detector_config: DetectorConfig | None = None
    data_dir: Path | None = None
    max_photo_bytes: int = 20 * MB
    max_video_bytes: int = 500 * MB
    max_enroll_bytes: int = 200 * MB
    max_files: int = 50
    max_part_header_bytes: int = 16 * 1024
    #: An upload with no byte for this long is dropped (408).
    body_idle_timeout: float = 20.0
    #: After ``upload_grace`` seconds an upload must average at least this many bytes/s (408).
    min_upload_rate: float = 32 * 1024
    upload_grace: float = 10.0
    #: A connection must send a complete request head within this time.
    header_timeout: float = 10.0
    #: ``POST /v1/identify`` answers inline when done within this time, else 202 and a job.
    job_after: float = 10.0
    job_ttl: float = 3600.0
    max_jobs: int = 200

    def __post_init__(self) -> None:
        if not (0 < self.port < 65536):
            raise ConfigError(f"--port must be in 1..65535, got {self.port}")
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.queue < 0:
            raise ConfigError(f"--queue must be >= 0, got {self.queue}")
        for name in ("max_photo_bytes", "max_video_bytes", "max_enroll_bytes", "max_files", "max_jobs",
                     "max_part_header_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("body_idle_timeout", "header_timeout", "job_ttl", "upload_grace"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise ConfigError(f"{name} must be a positive number of seconds, got {v}")
        if not (math.isfinite(self.job_after) and self.job_after >= 0):
            raise ConfigError(f"--job-after must be >= 0 seconds, got {self.job_after}")
        if not (math.isfinite(self.min_upload_rate) and self.min_upload_rate >= 0):
            raise ConfigError(f"min_upload_rate must be >= 0, got {self.min_upload_rate}")
        if not is_loopback(self.host) and not self.keys.enabled:
            raise ConfigError(
                f"refusing to serve on {self.host} without an API key: anyone who can reach it could read and "
                "change the gallery. Set FACEDEX_API_KEY or give --api-key-file (see docs/service.md), or bind "
                "127.0.0.1")

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def data_path(self) -> Path:
        """Thumbnails, upload spool and annotated outputs (default: ``GALLERY.serve/`` beside the gallery)."""
        if self.data_dir is not None:
            return Path(self.data_dir)
        g = Path(self.gallery)
        return g.with_name(g.name + ".serve")

    def limits(self) -> dict[str, int | float]:
        return {"max_photo_bytes": self.max_photo_bytes, "max_video_bytes": self.max_video_bytes,
                "max_enroll_bytes": self.max_enroll_bytes, "max_files": self.max_files,
                "workers": self.workers, "queue": self.queue, "job_after": self.job_after}
