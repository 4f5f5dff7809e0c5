"""Stable reason codes for skipped and failed items.

Every item the collector does not keep gets exactly one code; the summary,
``--json`` output and the state database use the same codes. ``http_<status>``
covers any HTTP status not listed here (``http_404``, ``http_503``…).

*Skipped* means the collector chose not to fetch or keep the item; *failed*
means it tried and got no usable image or page. Transient failures are tried
again by the next run on the same DST; permanent ones only with
``--retry-failed``.
"""

from __future__ import annotations

# code -> one-line explanation (shown in docs and by the CLI)
SKIP_REASONS: dict[str, str] = {
    "robots": "disallowed by the site's robots.txt for our user agent",
    "duplicate": "same content (sha256) as an image already collected",
    "already_collected": "collected by an earlier run on this DST",
    "failed_earlier": "failed permanently in an earlier run (use --retry-failed)",
    "host_not_allowed": "the URL's host is not in the allowed hosts",
    "person_limit": "the person already has the maximum number of images",
    "byte_limit": "the total-bytes limit was reached",
    "page_limit": "the page limit was reached",
    "pagination_cycle": "a next-page link led back to a page already crawled",
}

FAIL_REASONS: dict[str, str] = {
    "invalid_row": "a URL-list row is malformed (missing person or URL, bad JSON)",
    "invalid_url": "not an http(s) URL that can be fetched",
    "timeout": "no answer within the timeout, after all retries",
    "connection": "the connection failed or broke off, after all retries",
    "tls": "the HTTPS certificate could not be verified (not retried)",
    "http_429": "too many requests (HTTP 429), after all retries",
    "too_large": "larger than the size cap (aborted while streaming)",
    "not_image": "the content is not an image (e.g. an HTML page served as .jpg)",
    "corrupt": "starts like an image but cannot be decoded",
    "too_small": "below the minimum resolution",
    "not_html": "a page that is not HTML",
    "no_name": "the person page has no name where the recipe's selector points",
    "no_people": "the source page lists no people where the recipe's selector points",
    "redirect_loop": "the redirects lead back to a URL already visited",
    "too_many_redirects": "more redirects than the limit",
    "redirect_off_host": "a redirect to a host outside the allowed hosts",
    "bad_redirect": "a redirect without a usable Location",
    "robots_unavailable": "robots.txt could not be fetched (5xx, 429 or network); nothing fetched from that host",
}

#: Failures worth trying again on the next run: the cause may have gone away.
TRANSIENT = frozenset({"timeout", "connection", "http_429", "robots_unavailable"})

#: Skips that are re-evaluated on every run (the policy or limits may have changed).
REEVALUATED_SKIPS = frozenset({"robots", "host_not_allowed", "person_limit", "byte_limit", "page_limit"})


def is_transient(reason: str) -> bool:
    if reason in TRANSIENT:
        return True
    if reason.startswith("http_5") or reason == "http_408":
        return True
    return False


def is_skip(reason: str) -> bool:
    return reason in SKIP_REASONS


def describe(reason: str) -> str:
    if reason in SKIP_REASONS:
        return SKIP_REASONS[reason]
    if reason in FAIL_REASONS:
        return FAIL_REASONS[reason]
    if reason.startswith("http_"):
        return f"HTTP status {reason[5:]}"
    return reason
