"""Where the service's CPU work runs, and the jobs that outlive a request.

* :class:`Galleries` — one :class:`facedex.Gallery` per worker thread (its own
  SQLite connection and search index; the models are loaded once per process
  and shared). Writes (enroll, forget, calibrate, thumbnails) take
  :attr:`Galleries.write_lock`, one at a time; reads never wait for them
  except for SQLite's own locks.
* :class:`Pool` — a fixed number of threads (onnxruntime and OpenCV release the
  GIL, so threads suffice) and a bounded queue: when ``workers + queue`` tasks
  are pending, :meth:`Pool.submit` refuses with 503 ``service.busy`` and a
  ``Retry-After`` estimated from recent task times — never a pile-up.
* :class:`Jobs` — identifications that take longer than the request waits
  (``job_after``), and the annotated files of finished ones; kept for
  ``job_ttl`` seconds (at most ``max_jobs`` finished), then removed with
  their files. A job belongs to the key that made it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..faces.detect import DetectorConfig
from ..types import iso_time
from .errors import ServiceError
from .keys import ApiKey

log = logging.getLogger(__name__)


class Galleries:
    """Thread-local galleries on one file."""

    def __init__(self, path: Path, *, runtime: str | None = None, detector_config: DetectorConfig | None = None):
        self.path = Path(path)
        self.runtime = runtime
        self.detector_config = detector_config
        self.write_lock = threading.RLock()
        self._local = threading.local()
        self._opened: list = []
        self._lock = threading.Lock()

    def get(self):
        g = getattr(self._local, "gallery", None)
        if g is None:
            from ..identify.gallery import Gallery

            g = Gallery.open(self.path, runtime=self.runtime, detector_config=self.detector_config)
            self._local.gallery = g
            with self._lock:
                self._opened.append(g)
        return g

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for g in opened:
            try:
                g.close()
            except Exception:  # noqa: BLE001 - closing at shutdown must not hide the others
                log.debug("closing a gallery connection failed", exc_info=True)


class Pool:
    """A bounded pool: ``workers`` threads, at most ``workers + queue`` tasks pending."""

    def __init__(self, workers: int, queue: int, name: str):
        self.workers = workers
        self.capacity = workers + queue
        self.name = name
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix=f"facedex-{name}")
        self._lock = threading.Lock()
        self._pending = 0
        self._avg = 0.5  # seconds per task, a moving average
        self.refused = 0

    @property
    def pending(self) -> int:
        return self._pending

    def retry_after(self) -> int:
        waiting = max(1, self._pending - self.workers + 1)
        return int(min(120, max(1, math.ceil(self._avg * waiting / self.workers))))

    def _busy(self) -> ServiceError:
        self.refused += 1
        after = self.retry_after()
        return ServiceError(503, "service.busy",
                            f"the service is busy ({self._pending} requests in progress or waiting); "
                            f"retry in {after} s", {"Retry-After": str(after)})

    def check(self) -> None:
        """Refuse early (before an upload is read) when there is no room."""
        if self._pending >= self.capacity:
            raise self._busy()

    def submit(self, fn: Callable, *args: Any) -> Future:
        with self._lock:
            if self._pending >= self.capacity:
                raise self._busy()
            self._pending += 1
        try:
            fut = self._executor.submit(self._timed, fn, args)
        except RuntimeError:  # shut down
            with self._lock:
                self._pending -= 1
            raise ServiceError(503, "service.starting", "the service is shutting down") from None
        fut.add_done_callback(self._done)
        return fut

    async def run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.wrap_future(self.submit(fn, *args))

    def _timed(self, fn: Callable, args: tuple) -> Any:
        t0 = time.monotonic()
        try:
            return fn(*args)
        finally:
            self._avg = 0.8 * self._avg + 0.2 * (time.monotonic() - t0)

    def _done(self, _fut: Future) -> None:
        with self._lock:
            self._pending -= 1

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class Job:
    """One identification (see the module doc)."""

    id: str
    owner: str
    input: str
    created: float = field(default_factory=time.time)
    status: str = "queued"  # queued → running → done | failed
    started: float | None = None
    finished: float | None = None
    frames_done: int = 0
    frames_total: int | None = None
    result: dict | None = None
    status_code: int | None = None
    error: dict | None = None
    folder: Path | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    kept: bool = False

    @property
    def url(self) -> str:
        return f"/v1/jobs/{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": "facedex.job/1", "id": self.id, "url": self.url, "status": self.status, "input": self.input,
            "created": iso_time(self.created), "started": iso_time(self.started), "finished": iso_time(self.finished),
            "progress": {"frames_done": self.frames_done, "frames_total": self.frames_total},
            "status_code": self.status_code, "result": self.result, "error": self.error,
        }


class Jobs:
    def __init__(self, root: Path, *, ttl: float, max_jobs: int):
        self.root = Path(root)
        self.ttl = ttl
        self.max_jobs = max_jobs
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def new(self, key: ApiKey, input_name: str, *, outputs: bool) -> Job:
        job = Job(secrets.token_urlsafe(16), key.owner, input_name)
        if outputs:
            job.folder = self.root / job.id
        return job

    def keep(self, job: Job) -> None:
        """Remember ``job`` (its result and files) until it expires."""
        with self._lock:
            job.kept = True
            self._jobs[job.id] = job
        self.expire()

    def drop(self, job: Job) -> None:
        with self._lock:
            self._jobs.pop(job.id, None)
        self._remove_files(job)

    def get(self, job_id: str, key: ApiKey) -> Job:
        self.expire()
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None or (job.owner != key.owner and key.scope != "admin"):
            raise ServiceError(404, "job.not_found", f"no job {job_id!r}: unknown, expired (jobs are kept "
                               f"{self.ttl:g} s after they finish), or made with another key")
        return job

    def expire(self) -> None:
        now = time.time()
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.finished is not None), key=lambda j: j.finished)
            old = [j for j in done if now - j.finished > self.ttl]
            extra = len(done) - len(old) - self.max_jobs
            if extra > 0:
                old += [j for j in done if j not in old][:extra]
            for j in old:
                self._jobs.pop(j.id, None)
        for j in old:
            self._remove_files(j)

    def _remove_files(self, job: Job) -> None:
        if job.folder is not None and job.folder.exists():
            shutil.rmtree(job.folder, ignore_errors=True)
        job.outputs.clear()

    def counts(self) -> dict[str, int]:
        with self._lock:
            jobs = list(self._jobs.values())
        return {"kept": len(jobs), "running": sum(j.status in ("queued", "running") for j in jobs)}

    def close(self) -> None:
        with self._lock:
            jobs, self._jobs = list(self._jobs.values()), {}
        for j in jobs:
            self._remove_files(j)
