"""The collect loop: one scheduler thread, a few download workers.

The main thread owns the state database and the files in DST: it picks the
next pending items (images before pages, so the frontier stays small and
results come early), hands them to worker threads, and records each result
in one transaction. Workers only touch the network and the temporary
folder: they fetch, check the content (magic bytes, decodes, minimum size),
hash it and flush it to a temporary file.

Limits are checked before an item is handed out: a person with as many
images as ``max_per_person`` (counting downloads in flight) gets no more;
no download starts once ``max_total_bytes`` are stored (so the total may
exceed it by what was in flight); no page is fetched past ``max_pages``.
All three count the whole DST, across runs, so an interrupted and resumed
crawl ends where an uninterrupted one would. Items held back by a limit stay
queued in the database: a later run with a higher limit goes on with them.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import (
    CollectError,
    CorruptMediaError,
    FetchError,
    ImageTooLargeError,
    MediaError,
    UnsupportedMediaError,
)
from ..media import decode_image, describe_bytes, image_signature
from . import reasons
from ._interrupt import Interrupted
from .extract import Extractor, PageData
from .fetch import Fetcher
from .options import CollectOptions
from .recipe import Recipe
from .report import CollectReport, Failure, PageTally
from .state import Blob, PendingImage, PendingPage, State
from .store import extension, write_temp
from .urlnorm import HostMatcher

log = logging.getLogger(__name__)

#: Called from the main thread after each finished item with a snapshot of the counts.
ProgressFn = Callable[[dict], None]

_MAX_FAILURES_KEPT = 10_000


@dataclass(frozen=True)
class _ImageDone:
    final_url: str
    blob: Blob
    tmp: Path


@dataclass(frozen=True)
class _PageDone:
    final_url: str
    data: PageData


class _Workers:
    """Daemon threads running ``fn(task)``; results come back on one queue.

    Daemon threads (not a ThreadPoolExecutor) so that Ctrl-C ends the
    process at once even while a worker waits on a slow server: whatever
    it was doing stays pending in the state database."""

    def __init__(self, n: int, fn: Callable, stop: threading.Event):
        self.tasks: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self._fn = fn
        self._stop = stop
        self._threads = [threading.Thread(target=self._run, name=f"collect-{i}", daemon=True) for i in range(n)]
        for t in self._threads:
            t.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            task = self.tasks.get()
            if task is None:
                return
            try:
                outcome = self._fn(task)
            except BaseException as err:  # handed to the main thread, which decides
                outcome = err
            self.results.put((task, outcome))

    def submit(self, task) -> None:
        self.tasks.put(task)

    def close(self) -> None:
        for _ in self._threads:
            self.tasks.put(None)


@dataclass
class _Task:
    kind: str                       # "image" or "page"
    item: PendingImage | PendingPage
    reserved: tuple[int, ...] = ()  # person ids holding a per-person slot for this image


class Collector:
    """One run over one DST. Use :func:`facedex.collect.collect_urls` or
    :func:`facedex.collect.crawl` rather than this class directly."""

    def __init__(self, dst: str | Path, options: CollectOptions, command: str, *,
                 recipe: Recipe | None = None, progress: ProgressFn | None = None,
                 stop: threading.Event | None = None):
        self.dst = Path(dst)
        self.options = options
        self.command = command
        self.recipe = recipe
        self.progress = progress
        self.stop = stop or threading.Event()
        self.extractor = Extractor(recipe) if recipe is not None else None
        # this run's counts
        self.downloaded = 0
        self.bytes = 0
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.pages_fetched = 0
        self.page_skipped: Counter[str] = Counter()
        self.page_failed: Counter[str] = Counter()
        self.failures: list[Failure] = []
        self.failures_dropped = 0
        self.notes: list[str] = []
        # scheduling
        self._img_buf: deque[PendingImage] = deque()
        self._page_buf: deque[PendingPage] = deque()
        self._img_cursor = 0
        self._page_cursor = 0
        self._img_exhausted = False
        self._deferred: list[PendingImage] = []   # held back by downloads in flight for the same people
        self._ready: deque[PendingImage] = deque()  # released from _deferred: try again
        self._reserved: Counter[int] = Counter()
        self._counts: dict[int, int] = {}
        self._inflight = 0
        self._inflight_pages = 0
        self._stored = 0
        self._byte_limit_hit = False
        self._page_limit_hit = False
        self._last_progress = 0.0
        self._pending_estimate = 0

    # --- public ---------------------------------------------------------------------------
    def run(self, seed: Callable[[State], HostMatcher]) -> CollectReport:
        """Open DST, call ``seed(state)`` (which queues work and returns the hosts
        that may be contacted), collect, export the manifest, and report."""
        t0 = time.monotonic()
        self.dst.mkdir(parents=True, exist_ok=True)
        interrupted = False
        with State(self.dst) as state:
            self.state = state
            state.max_per_person = self.options.max_per_person
            state.recover()
            resets = state.begin_run(self.options.retry_failed, self.options.recrawl)
            log.debug("resume: %s", resets)
            run_id = state.start_run(self.command)
            allowed = seed(state)
            for p in self.options.allowed_hosts:
                allowed.add(p)
            self._counts = state.person_file_counts()
            self._stored = state.stored_bytes()
            fetcher = Fetcher(self.options, allowed, self.stop)
            self.fetcher = fetcher
            if not self.options.respect_robots:
                self.notes.append("robots.txt was NOT checked (--ignore-robots)")
            workers = _Workers(self.options.concurrency, self._work, self.stop)
            try:
                self._loop(workers)
            except KeyboardInterrupt:
                interrupted = True
                self.stop.set()
                log.warning("interrupted: what was in flight stays queued for the next run")
            finally:
                self.stop.set()
                workers.close()
                fetcher.close()
                self._finish_limits()
                manifest, sources = state.export()
            report = self._report(state, manifest, sources, time.monotonic() - t0, interrupted, fetcher)
            state.finish_run(run_id, report.to_dict())
        return report

    # --- scheduling -----------------------------------------------------------------------
    def _loop(self, workers: _Workers) -> None:
        while True:
            while self._inflight < self.options.concurrency:
                task = self._next_image() or self._next_page()
                if task is None:
                    break
                self._inflight += 1
                self._inflight_pages += task.kind == "page"
                workers.submit(task)
            if self._inflight == 0:
                return
            try:
                task, outcome = workers.results.get(timeout=0.2)
            except queue.Empty:
                continue
            self._inflight -= 1
            self._inflight_pages -= task.kind == "page"
            if isinstance(outcome, Interrupted):
                continue
            if isinstance(outcome, BaseException) and not isinstance(outcome, FetchError):
                raise outcome  # a bug or an unusable DST: stop, state stays consistent
            if task.kind == "image":
                self._image_result(task, outcome)
            else:
                self._page_result(task, outcome)
            self._report_progress()

    def _next_image(self) -> _Task | None:
        if self._byte_limit_hit:
            return None
        limit = self.options.max_total_bytes
        if limit is not None and self._stored >= limit:
            self._byte_limit_hit = True
            self.notes.append(f"stopped starting downloads: {self._stored:,} bytes stored, limit {limit:,}")
            return None
        # images that were waiting for a download in flight (which then failed) come first
        while self._ready:
            task = self._admit(self._ready.popleft(), defer=True)
            if task is not None:
                return task
        while True:
            if not self._img_buf:
                self._img_buf.extend(self.state.pending_images(self._img_cursor))
                if not self._img_buf:
                    return None
            cand = self._img_buf.popleft()
            self._img_cursor = cand.id
            task = self._admit(cand, defer=True)
            if task is not None:
                return task

    def _admit(self, cand: PendingImage, defer: bool) -> _Task | None:
        limit = self.options.max_per_person
        if limit is None or not cand.people:
            return _Task("image", cand)
        room = [p for p in cand.people if self._counts.get(p, 0) + self._reserved[p] < limit]
        if room:
            for p in room:
                self._reserved[p] += 1
            return _Task("image", cand, tuple(room))
        if defer:
            if any(self._reserved[p] for p in cand.people):
                self._deferred.append(cand)  # a download in flight may still fail and free a slot
            else:
                self._skip_image(cand, "person_limit", f"already {limit} image(s)")
        return None

    def _next_page(self) -> _Task | None:
        if self._byte_limit_hit or self._page_limit_hit:
            return None
        limit = self.options.max_pages
        if limit is not None and self.state.pages_attempted() + self._inflight_pages >= limit:
            if self._inflight_pages == 0:
                self._page_limit_hit = True
            return None
        if not self._page_buf:
            self._page_buf.extend(self.state.pending_pages(self._page_cursor))
            if not self._page_buf:
                return None
        cand = self._page_buf.popleft()
        self._page_cursor = cand.id
        return _Task("page", cand)

    def _finish_limits(self) -> None:
        """Count what the limits held back in this run (it stays queued for the next)."""
        if not self._byte_limit_hit:  # (otherwise they are still pending, and counted just below)
            for cand in [*self._deferred, *self._ready]:
                self._skip_image(cand, "person_limit", "limit reached")
        self._deferred.clear()
        self._ready.clear()
        if self._byte_limit_hit:
            n = self.state.count_images("pending")
            if n:
                self.skipped["byte_limit"] += n
            n = self.state.count_pages("pending")
            if n:
                self.page_skipped["byte_limit"] += n
        limit = self.options.max_pages
        if limit is not None and self._page_limit_hit:
            n = self.state.count_pages("pending")
            if n:
                self.page_skipped["page_limit"] += n
                self.notes.append(f"page limit of {limit} reached; {n} page(s) left for a later run "
                                  "with a higher max_pages")

    # --- workers --------------------------------------------------------------------------
    def _work(self, task: _Task):
        try:
            if task.kind == "image":
                return self._fetch_image(task.item.url)
            return self._fetch_page(task.item)
        except FetchError as err:
            return err

    def _fetch_image(self, url: str) -> _ImageDone:
        resp = self.fetcher.get_image(url)
        body = resp.body
        fmt = image_signature(body[:16])
        if fmt is None:
            ct = f"; served as {resp.content_type!r}" if resp.content_type else ""
            raise FetchError(url, "not_image", f"the content is {describe_bytes(body[:600])}, not an image{ct}")
        try:
            pixels = decode_image(body, item=url, max_pixels=self.options.max_pixels)
        except ImageTooLargeError as err:
            raise FetchError(url, "too_large", str(err).removeprefix(url + ": ")) from None
        except UnsupportedMediaError as err:
            raise FetchError(url, "not_image", str(err).removeprefix(url + ": ")) from None
        except (CorruptMediaError, MediaError) as err:
            raise FetchError(url, "corrupt", str(err).removeprefix(url + ": ")) from None
        height, width = pixels.shape[:2]
        del pixels
        side = self.options.min_side
        if width < side or height < side:
            raise FetchError(url, "too_small", f"{width}x{height} pixels; the minimum is {side} on each side")
        sha = hashlib.sha256(body).hexdigest()
        try:
            tmp = write_temp(self.state.tmp, body, sha[:16])
        except OSError as err:
            raise CollectError(f"cannot write into {self.state.tmp} ({err.strerror or err}); "
                               "is the disk full or read-only?") from err
        return _ImageDone(resp.final_url, Blob(sha, fmt, len(body), width, height), tmp)

    def _fetch_page(self, page: PendingPage) -> _PageDone:
        resp = self.fetcher.get_page(page.url)
        body = resp.body
        ct = resp.content_type.split(";")[0].strip().lower()
        head = body[:1024].lstrip().lower()
        if image_signature(body[:16]) is not None or (
                ct and "html" not in ct and "xml" not in ct and not head.startswith(b"<")):
            raise FetchError(page.url, "not_html", f"expected an HTML page, got {ct or 'unknown content'}")
        assert self.extractor is not None
        data = self.extractor.parse(page.kind, body, resp.final_url, resp.charset)
        return _PageDone(resp.final_url, data)

    # --- results (main thread) --------------------------------------------------------------
    def _people_names(self, pids) -> tuple[str, ...]:
        return tuple(self.state.person_row(p)[0] for p in pids)

    def _fail(self, kind: str, url: str, reason: str, detail: str, people=(), line=None) -> None:
        if len(self.failures) < _MAX_FAILURES_KEPT:
            self.failures.append(Failure(kind, url, reason, detail, tuple(people), line))
        else:
            self.failures_dropped += 1
        log.info("%s %s: %s%s", kind, url, reason, f" ({detail})" if detail else "")

    def _skip_image(self, cand: PendingImage, reason: str, detail: str) -> None:
        self.state.finish_image(cand.id, "skipped", reason, detail)
        self.skipped[reason] += 1

    def _release(self, task: _Task) -> None:
        for p in task.reserved:
            self._reserved[p] -= 1

    def _recheck_deferred(self) -> None:
        """After a download for someone ended: admit, keep waiting, or skip what was held back."""
        limit = self.options.max_per_person
        if not self._deferred or limit is None:
            return
        waiting = []
        for cand in self._deferred:
            if any(self._counts.get(p, 0) + self._reserved[p] < limit for p in cand.people):
                self._ready.append(cand)
            elif any(self._reserved[p] for p in cand.people):
                waiting.append(cand)
            else:
                self._skip_image(cand, "person_limit", f"already {limit} image(s)")
        self._deferred = waiting

    def _image_result(self, task: _Task, outcome) -> None:
        item: PendingImage = task.item  # type: ignore[assignment]
        self._release(task)
        if isinstance(outcome, FetchError):
            if reasons.is_skip(outcome.reason):
                self._skip_image(item, outcome.reason, outcome.detail)
            else:
                self.state.finish_image(item.id, "failed", outcome.reason, outcome.detail)
                self.failed[outcome.reason] += 1
                self._fail("image", item.url, outcome.reason, outcome.detail, self._people_names(item.people))
            self._recheck_deferred()
            return
        done: _ImageDone = outcome
        new = self.state.record_download(item.id, done.final_url, done.blob, done.tmp)
        if new:
            self.downloaded += 1
            self.bytes += done.blob.bytes
            self._stored += done.blob.bytes
            log.debug("image %s: stored (%dx%d %s, %d bytes)", item.url, done.blob.width, done.blob.height,
                      extension(done.blob.format), done.blob.bytes)
        else:
            self.skipped["duplicate"] += 1
        if self.options.max_per_person is not None:
            for p in item.people:
                self._counts[p] = self.state.person_file_count(p)
            self._recheck_deferred()

    def _page_result(self, task: _Task, outcome) -> None:
        page: PendingPage = task.item  # type: ignore[assignment]
        if isinstance(outcome, FetchError):
            if reasons.is_skip(outcome.reason):
                self.state.finish_page(page.id, "skipped", outcome.reason, outcome.detail)
                self.page_skipped[outcome.reason] += 1
            else:
                self.state.finish_page(page.id, "failed", outcome.reason, outcome.detail)
                self.page_failed[outcome.reason] += 1
                self._fail("page", page.url, outcome.reason, outcome.detail)
            return
        done: _PageDone = outcome
        data = done.data
        self.pages_fetched += 1
        st = self.state
        to_place: list[tuple[int, str]] = []
        fingerprint = data.fingerprint()
        with st.transaction():
            if page.via == "next" and not data.empty:
                earlier = st.same_page(page.kind, page.person_id, fingerprint, page.id)
                if earlier is not None:
                    st.finish_page(page.id, "skipped", "pagination_cycle", f"shows the same as {earlier}",
                                   done.final_url, fingerprint)
                    self.page_skipped["pagination_cycle"] += 1
                    self.notes.append(f"pagination cycle: {page.url} shows the same as {earlier}; not followed")
                    return
            if done.final_url != page.url:
                st.add_page(done.final_url, page.kind, person_id=page.person_id, people=page.people,
                            found_on=page.url, via="redirect")
                other = st.db.execute("SELECT id, status FROM pages WHERE url=?", (done.final_url,)).fetchone()
                if other and other[0] != page.id:
                    if other[1] == "pending":
                        st.finish_page(other[0], "done", None, f"reached through the redirect from {page.url}")
                    elif other[1] == "done":
                        st.finish_page(page.id, "done", None, f"redirects to {done.final_url}, already crawled",
                                       done.final_url)
                        return
            if page.kind == "index":
                self._index_page(page, data)
            elif page.kind == "person":
                if not self._person_page(page, data, to_place):
                    st.finish_page(page.id, "failed", "no_name", self._no_match("person", "name"),
                                   done.final_url, fingerprint)
                    self.page_failed["no_name"] += 1
                    self._fail("page", page.url, "no_name", self._no_match("person", "name"))
                    return
            elif page.kind == "source":
                if not self._source_page(page, data, to_place):
                    st.finish_page(page.id, "failed", "no_people", self._no_match("source", "people"),
                                   done.final_url, fingerprint)
                    self.page_failed["no_people"] += 1
                    self._fail("page", page.url, "no_people", self._no_match("source", "people"))
                    return
            st.finish_page(page.id, "done", None, None, done.final_url, fingerprint)
        for _image_id, sha in to_place:
            st.place(sha)
        log.debug("page %s (%s): %d people links, %d source links, %d images, next %s", page.url, page.kind,
                  len(data.person_links), len(data.source_links), len(data.images), data.next_page)

    def _no_match(self, table: str, key: str) -> str:
        rules = getattr(self.recipe, table, None)
        selector = getattr(rules, key, "?") if rules is not None else "?"
        return f"the selector [{table}] {key} = {selector!r} matched nothing on this page"

    def _follow_next(self, page: PendingPage, url: str | None, *, person_id=None, people=()) -> None:
        if not url:
            return
        if not self.state.add_page(url, page.kind, person_id=person_id, people=tuple(people),
                                   found_on=page.url, via="next"):
            self.page_skipped["pagination_cycle"] += 1
            self.notes.append(f"pagination cycle: the next page of {page.url} is {url}, already seen; not followed")

    def _add_images(self, urls, people: list[tuple[int, str]], source: str, kind: str,
                    to_place: list[tuple[int, str]]) -> None:
        for url in urls:
            for pid, name in people:
                image_id, status, sha = self.state.add_image(url, pid, name, source, kind)
                if sha and status in ("done", "duplicate"):
                    if self.state.plan(image_id, sha):
                        to_place.append((image_id, sha))

    def _index_page(self, page: PendingPage, data: PageData) -> None:
        for url in data.person_links:
            self.state.add_page(url, "person", found_on=page.url, via="index")
        for url in data.source_links:
            self.state.add_page(url, "source", found_on=page.url, via="index")
        self._follow_next(page, data.next_page)

    def _person_page(self, page: PendingPage, data: PageData, to_place) -> bool:
        if page.person_id is not None:
            pid = page.person_id
            name = data.name or self.state.person_row(pid)[0]
        elif data.name:
            pid, name = self.state.person(data.name), data.name
        else:
            return False
        self._add_images(data.images, [(pid, name)], page.url, "person", to_place)
        for url in data.source_links:
            self.state.add_page(url, "source", found_on=page.url, via="person")
        self._follow_next(page, data.next_page, person_id=pid)
        return True

    def _source_page(self, page: PendingPage, data: PageData, to_place) -> bool:
        if data.people:
            people = [(self.state.person(n), n) for n in data.people]
        elif page.people:
            people = [(p, self.state.person_row(p)[0]) for p in page.people]
        else:
            return False
        self._add_images(data.images, people, page.url, "album", to_place)
        self._follow_next(page, data.next_page, people=[p for p, _ in people])
        return True

    # --- progress and report ---------------------------------------------------------------
    def _report_progress(self, force: bool = False) -> None:
        if self.progress is None:
            return
        now = time.monotonic()
        if now - self._last_progress > 1.0 or force:
            self._pending_estimate = self.state.count_images("pending")
            self._last_progress = now
        self.progress({
            "downloaded": self.downloaded, "bytes": self.bytes,
            "skipped": sum(self.skipped.values()), "failed": sum(self.failed.values()),
            "pages": self.pages_fetched, "pending": self._pending_estimate, "in_flight": self._inflight,
        })

    def _report(self, state: State, manifest: Path, sources: Path, elapsed: float, interrupted: bool,
                fetcher: Fetcher) -> CollectReport:
        notes = list(dict.fromkeys(self.notes))
        if self.failures_dropped:
            notes.append(f"{self.failures_dropped} more failures not listed (see the state database)")
        return CollectReport(
            command=self.command, dst=str(self.dst), downloaded=self.downloaded, bytes=self.bytes,
            skipped_by_reason=dict(self.skipped), failed_by_reason=dict(self.failed),
            pages=PageTally(self.pages_fetched, dict(self.page_skipped), dict(self.page_failed)),
            failures=tuple(self.failures), notes=tuple(notes), totals=state.totals(),
            requests=fetcher.stats.requests, elapsed_s=elapsed, interrupted=interrupted,
            manifest=str(manifest), sources=str(sources), state=str(state.path))

