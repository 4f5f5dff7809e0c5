"""Collect commands: ``facedex collect urls LIST DST`` and ``facedex collect crawl RECIPE DST``."""

from __future__ import annotations

import argparse
import signal
from contextlib import contextmanager
from typing import Iterator

from ..collect.options import CollectOptions, MiB, format_size
from .common import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, add_command, add_json, bounded
from .output import emit_json, err, out, plural, progress, summarize_reasons

ORDER = 50

#: the --json document of both commands (docs/schemas/collect.schema.json)
SCHEMA = "facedex.collect/1"

_POLITE = ("Polite by default: robots.txt is honoured, 1 request per second per host, 4 downloads at once, "
           "retries with backoff on timeouts, 429 and 5xx. Re-running the same command continues an "
           "interrupted run (Ctrl-C reports what finished) and downloads nothing twice.")

#: The defaults shown in --help: a recipe's [options] may change them for `crawl`, the options win over both.
_D = CollectOptions()


def register(sub) -> None:
    p = add_command(sub, "collect", help="download images of named people from a URL list or a crawled site",
                    description="Download images of named people into DST/<Name>/, with DST/manifest.jsonl "
                                "(original name and URL of each file) and DST/sources.jsonl (the people each "
                                "page, album or listed source shows). " + _POLITE + " See docs/collect.md.",
                    examples=["facedex collect urls people.csv raw/",
                              "facedex collect crawl site.toml raw/ --max-pages 50"])
    csub = p.add_subparsers(dest="collect_command", metavar="HOW", required=True)

    u = add_command(csub, "urls", help="download the images of a CSV or JSONL list of person, url[, source]",
                    description="Download the images listed in LIST (CSV or JSONL rows of person, url and "
                                "optionally source) into DST. " + _POLITE,
                    examples=["facedex collect urls people.csv raw/",
                              "facedex collect urls people.jsonl raw/ --max-per-person 30 --json",
                              "facedex collect urls people.csv raw/ --user-agent 'facedex-collect (+mailto:me@example.org)'"])
    u.add_argument("list", metavar="LIST", help="CSV (.csv/.tsv) or JSONL (.jsonl) file of person, url[, source]")
    u.add_argument("dst", metavar="DST", help="destination folder (created if missing)")
    _add_common(u)
    u.set_defaults(func=cmd_urls)

    c = add_command(csub, "crawl", help="crawl a site as a TOML recipe describes and download its people's images",
                    description="Crawl the site described by RECIPE (a TOML file: start pages, CSS selectors, "
                                "allowed hosts, limits; see docs/collect.md) into DST. A recipe's [options] "
                                "replace the defaults shown below; the options given here win over both. " + _POLITE,
                    examples=["facedex collect crawl site.toml raw/",
                              "facedex collect crawl site.toml raw/ --max-pages 50 --json",
                              "facedex collect crawl site.toml raw/ --recrawl"])
    c.add_argument("recipe", metavar="RECIPE", help="TOML recipe file")
    c.add_argument("dst", metavar="DST", help="destination folder (created if missing)")
    _add_common(c)
    g = c.add_argument_group("crawl")
    g.add_argument("--max-pages", type=bounded(int, 1), metavar="N",
                   help="fetch at most N pages in DST overall (overrides the recipe)")
    g.add_argument("--recrawl", action="store_true",
                   help="fetch pages crawled by earlier runs again, to find new images (images already "
                        "collected are still never downloaded again)")
    c.set_defaults(func=cmd_crawl)


def _add_common(p: argparse.ArgumentParser) -> None:
    add_json(p, "the summary")
    g = p.add_argument_group("politeness")
    g.add_argument("--user-agent", metavar="UA",
                   help=f"User-Agent sent and matched against robots.txt; add a way to contact you "
                        f"(default: {_D.user_agent})")
    g.add_argument("--ignore-robots", action="store_true",
                   help="do NOT honour robots.txt (only for sites you own or may crawl regardless)")
    g.add_argument("--rate", type=bounded(float, 0), metavar="R",
                   help=f"requests per second per host; 0 = no limit (default: {_D.rate:g})")
    g.add_argument("--concurrency", type=bounded(int, 1), metavar="N",
                   help=f"downloads in flight at once (default: {_D.concurrency})")
    g.add_argument("--per-host", type=bounded(int, 1), metavar="N", dest="per_host_connections",
                   help=f"connections per host at most (default: {_D.per_host_connections})")
    g.add_argument("--allow-host", action="append", metavar="HOST", dest="allowed_hosts",
                   help="also allow requests (and redirects) to HOST; example.org, *.example.org or host:port; "
                        "repeatable")
    g.add_argument("--ignore-query", action="append", metavar="GLOB",
                   help="drop query parameters matching GLOB from URLs (utm_*, sessionid); repeatable")
    g = p.add_argument_group("retries and timeouts")
    g.add_argument("--retries", type=bounded(int, 0), metavar="N",
                   help=f"retries on timeouts, 429 and 5xx (default: {_D.retries})")
    g.add_argument("--backoff", type=bounded(float, 0), metavar="S",
                   help=f"first retry delay in seconds, doubled each retry, with jitter (default: {_D.backoff:g})")
    g.add_argument("--max-backoff", type=bounded(float, 0), metavar="S",
                   help=f"longest retry delay (default: {_D.max_backoff:g})")
    g.add_argument("--max-retry-after", type=bounded(float, 0), metavar="S",
                   help=f"give up on an item whose Retry-After is longer than S seconds "
                        f"(default: {_D.max_retry_after:g})")
    g.add_argument("--timeout", type=bounded(float, 0, low_open=True), metavar="S",
                   help=f"connect timeout and longest silence while reading (default: {_D.timeout:g})")
    g.add_argument("--total-timeout", type=bounded(float, 0, low_open=True), metavar="S",
                   help=f"longest time for one response (default: {_D.total_timeout:g})")
    g = p.add_argument_group("content and limits")
    g.add_argument("--max-file-size", type=_size, metavar="SIZE", dest="max_image_bytes",
                   help=f"size cap per image, checked while streaming (default: {_D.max_image_bytes / MiB:g}MiB)")
    g.add_argument("--min-side", type=bounded(int, 1), metavar="PX",
                   help=f"minimum width and height of an image in pixels (default: {_D.min_side})")
    g.add_argument("--max-per-person", type=bounded(int, 1), metavar="N", help="at most N images per person")
    g.add_argument("--max-total", type=_size, metavar="SIZE", dest="max_total_bytes",
                   help="stop starting downloads once SIZE bytes are stored in DST (e.g. 2GB)")
    g.add_argument("--retry-failed", action="store_true",
                   help="also retry items that failed permanently in earlier runs (404, not an image…)")


# --- argument types ---------------------------------------------------------------------------
def _size(text: str) -> int:
    """A size in bytes: 500000, 800k, 20MB, 1.5GiB."""
    from ..collect.options import parse_size

    try:
        v = parse_size(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 byte")
    return v


# --- commands ----------------------------------------------------------------------------------
def _options(args: argparse.Namespace, base):
    return base.updated(
        user_agent=args.user_agent, respect_robots=False if args.ignore_robots else None, rate=args.rate,
        concurrency=args.concurrency, per_host_connections=args.per_host_connections, retries=args.retries,
        backoff=args.backoff, max_backoff=args.max_backoff, max_retry_after=args.max_retry_after,
        timeout=args.timeout, total_timeout=args.total_timeout, max_image_bytes=args.max_image_bytes,
        min_side=args.min_side, max_per_person=args.max_per_person, max_total_bytes=args.max_total_bytes,
        allowed_hosts=tuple(args.allowed_hosts) if args.allowed_hosts else None,
        ignore_query=tuple(args.ignore_query) if args.ignore_query else None,
        retry_failed=True if args.retry_failed else None,
        max_pages=getattr(args, "max_pages", None),
        recrawl=True if getattr(args, "recrawl", False) else None,
    )


def cmd_urls(args: argparse.Namespace) -> int:
    from ..collect import CollectOptions, collect_urls

    options = _options(args, CollectOptions())
    _check_hosts(options)
    with _live(args) as tick:
        report = collect_urls(args.list, args.dst, options, progress=tick)
    return _finish(args, report)


def cmd_crawl(args: argparse.Namespace) -> int:
    from ..collect import crawl, load_recipe

    recipe = load_recipe(args.recipe)
    options = _options(args, recipe.options())
    if args.ignore_query:
        options = options.updated(ignore_query=tuple(dict.fromkeys(recipe.ignore_query + tuple(args.ignore_query))))
    _check_hosts(options)
    with _live(args) as tick:
        report = crawl(recipe, args.dst, options, progress=tick)
    return _finish(args, report)


def _check_hosts(options) -> None:
    from ..collect.urlnorm import HostPattern, InvalidURL
    from ..errors import ConfigError

    for h in options.allowed_hosts:
        try:
            HostPattern.parse(h)
        except InvalidURL as e:
            raise ConfigError(f"--allow-host {h!r}: {e}") from None


@contextmanager
def _live(args: argparse.Namespace) -> Iterator:
    """A progress bar (stderr, terminals only), and SIGTERM treated like Ctrl-C
    so that a stopped run still writes its manifest and summary."""
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    except (ValueError, OSError):  # not the main thread, or no SIGTERM here
        previous = None
    try:
        with progress(None, "collect", enabled=not args.json) as bar:
            def tick(snap: dict) -> None:
                done = snap["downloaded"] + snap["skipped"] + snap["failed"]
                total = done + snap["pending"] + snap["in_flight"]
                if bar.total != total:
                    bar.total = total
                bar.set_postfix_str(f"ok {snap['downloaded']} skip {snap['skipped']} fail {snap['failed']} "
                                    f"pages {snap['pages']}", refresh=False)
                bar.update(done - bar.n)

            yield tick
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _finish(args: argparse.Namespace, report) -> int:
    head = (f"downloaded {plural(report.downloaded, 'image')} ({format_size(report.bytes)}), "
            f"skipped {report.skipped}, failed {report.failed}")
    if args.json:
        emit_json({"schema": SCHEMA, **report.to_dict()})
        if report.interrupted:
            err(f"facedex collect: interrupted: {head}; run the same command again to continue where it stopped")
    else:
        out(("interrupted: " if report.interrupted else "") + head)
        if report.skipped_by_reason:
            out("  skipped: " + _by_reason(report.skipped_by_reason))
        if report.failed_by_reason:
            out("  failed: " + _by_reason(report.failed_by_reason))
        pages = report.pages
        if pages.fetched or pages.skipped or pages.failed:
            line = f"pages: fetched {pages.fetched}, skipped {pages.skipped}, failed {pages.failed}"
            if pages.skipped_by_reason:
                line += f"; skipped: {_by_reason(pages.skipped_by_reason)}"
            if pages.failed_by_reason:
                line += f"; failed: {_by_reason(pages.failed_by_reason)}"
            out(line)
        if report.failures:
            out("failures:")
            for text in summarize_reasons(_failure_line(f) for f in report.failures):
                out(f"  {text}")
        for note in report.notes:
            out(f"note: {note}")
        t = report.totals
        out(f"{report.dst}: {plural(t.get('people', 0), 'person')}, {plural(t.get('files', 0), 'file')} "
            f"({format_size(t.get('bytes', 0))}); manifest {report.manifest}")
        if report.interrupted:
            err("run the same command again to continue where it stopped")
    if report.interrupted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_PARTIAL


def _by_reason(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _failure_line(f) -> str:
    who = f" [{', '.join(f.people)}]" if f.people else ""
    return f"{f.kind} {f.url}: {f.reason}" + (f" ({f.detail})" if f.detail else "") + who
