"""Collect: a polite, resumable image collector (``facedex collect``).

Two ways in, one destination layout::

    from facedex.collect import collect_urls, crawl, CollectOptions

    report = collect_urls("people.csv", "raw/")            # rows: person, url[, source]
    report = crawl("site.toml", "raw/", CollectOptions(rate=0.5))

``raw/<Name>/<sha16>.<ext>`` holds the images (one file per distinct
content per person), ``raw/manifest.jsonl`` one line per file (original
name, URL, size, sha256), ``raw/sources.jsonl`` one line per page, album or
list source with the people it lists, and ``raw/.facedex-collect/`` the
state database that makes every run resumable. ``docs/collect.md`` has the
details. Needs the ``facedex[collect]`` extra (urllib3, beautifulsoup4).
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import (
    CollectError,
    FetchError,
    InvalidNameError,
    MissingDependencyError,
    RecipeError,
    StateError,
    UrlListError,
)
from ..names import person_key, safe_name
from .options import DEFAULT_USER_AGENT, CollectOptions, parse_size
from .recipe import Recipe, load_recipe
from .report import CollectReport, Failure, PageTally

__all__ = [
    "collect_urls", "crawl", "CollectOptions", "CollectReport", "Failure", "PageTally", "Recipe", "load_recipe",
    "safe_name", "person_key", "parse_size", "DEFAULT_USER_AGENT", "CollectError", "FetchError",
    "MissingDependencyError", "RecipeError", "StateError", "UrlListError",
]


def collect_urls(url_list: str | Path, dst: str | Path, options: CollectOptions | None = None, *,
                 progress=None, stop: threading.Event | None = None) -> CollectReport:
    """Download the images of a URL list (CSV or JSONL rows of ``person, url[, source]``) into ``dst``."""
    from .engine import Collector
    from .lists import BadRow, read_list
    from .urlnorm import HostMatcher, InvalidURL, host_port, normalize_url

    options = options or CollectOptions()
    collector = Collector(dst, options, "urls", progress=progress, stop=stop)
    rows = list(read_list(url_list))  # read fully first: a list that cannot be read stops before any request

    def seed(state) -> HostMatcher:
        hosts: dict[str, None] = {}
        seen: set[int] = set()
        with state.transaction():
            for row in rows:
                if isinstance(row, BadRow):
                    collector.failed["invalid_row"] += 1
                    collector._fail("row", f"{url_list}:{row.line}", "invalid_row", row.message, line=row.line)
                    continue
                try:
                    url = normalize_url(row.url, ignore_query=options.ignore_query)
                except InvalidURL as err:
                    collector.failed["invalid_url"] += 1
                    collector._fail("row", row.url, "invalid_url", str(err), (row.person,), row.line)
                    continue
                try:
                    pid = state.person(row.person)
                except InvalidNameError as err:
                    collector.failed["invalid_row"] += 1
                    collector._fail("row", f"{url_list}:{row.line}", "invalid_row", str(err), line=row.line)
                    continue
                source, kind = (row.source, "list") if row.source else (url, "image")
                image_id, status, sha = state.add_image(url, pid, row.person, source, kind)
                hosts[host_port(url)[0]] = None
                if image_id in seen:
                    continue
                seen.add(image_id)
                if status in ("done", "duplicate"):
                    collector.skipped["already_collected"] += 1
                elif status == "failed":
                    collector.skipped["failed_earlier"] += 1
        state.plan_missing()
        return HostMatcher(hosts)

    return collector.run(seed)


def crawl(recipe: str | Path | Recipe, dst: str | Path, options: CollectOptions | None = None, *,
          progress=None, stop: threading.Event | None = None) -> CollectReport:
    """Crawl a site as a recipe describes and download its people's images into ``dst``.

    ``options`` override the recipe's ``[limits]`` and ``[http]`` only where
    they differ from the defaults; build them with ``recipe.options(...)``
    to start from the recipe's values."""
    from .engine import Collector

    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    opts = options or rec.options()
    if not opts.ignore_query and rec.ignore_query:
        opts = opts.updated(ignore_query=rec.ignore_query)
    collector = Collector(dst, opts, "crawl", recipe=rec, progress=progress, stop=stop)

    def seed(state):
        previous = state.meta("recipe_sha256")
        if previous and rec.sha256 and previous != rec.sha256 and not opts.recrawl:
            collector.notes.append("the recipe changed since the last run; pages crawled before are not "
                                   "read again (use --recrawl to re-read them)")
        if rec.sha256:
            state.set_meta("recipe_sha256", rec.sha256)
        with state.transaction():
            for url in rec.start:
                state.add_page(url, "index", via="start")
            for url in rec.person_pages:
                state.add_page(url, "person", via="start")
            for url in rec.source_pages:
                state.add_page(url, "source", via="start")
        finished_before = state.count_images("done") + state.count_images("duplicate")
        if finished_before:
            collector.skipped["already_collected"] += finished_before
        failed_before = state.count_images("failed")
        if failed_before:
            collector.skipped["failed_earlier"] += failed_before
        return rec.hosts()

    return collector.run(seed)
