"""Crawl recipes: a small TOML file that says where a site keeps its people.

A recipe names the pages to start from, the CSS selectors for the links
to follow and for what to take from each kind of page, the hosts the
crawler may contact, and limits. Three kinds of page:

* **index** pages (the ``start`` URLs and their next pages) list people
  (``person_links``) and/or albums (``[source] links``);
* **person** pages show one person: their name (``name``) and images
  (``images``), maybe over several pages (``next_page``);
* **source** pages (optional: an album, an article) show images
  (``images``) and list the people in them (``people``).

The full format, with an example, is in ``docs/collect.md``. Recipes are
checked completely when loaded — unknown keys (typos), wrong types, CSS
selectors that do not parse, URLs that are not http(s), start URLs outside
the allowed hosts — and every error names the file and the key.
"""

from __future__ import annotations

import difflib
import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from .deps import require
from .options import CollectOptions, parse_size
from .urlnorm import HostMatcher, HostPattern, InvalidURL, host_port, normalize_url

_TOP_KEYS = {"name", "description", "start", "person_pages", "source_pages", "allowed_hosts", "ignore_query",
             "index", "person", "source", "limits", "http"}
_INDEX_KEYS = {"person_links", "next_page"}
_PERSON_KEYS = {"name", "name_attr", "images", "image_attr", "next_page"}
_SOURCE_KEYS = {"links", "people", "people_attr", "images", "image_attr", "next_page"}
# recipe key -> CollectOptions field
_LIMIT_KEYS = {"max_pages": "max_pages", "max_images_per_person": "max_per_person",
               "max_total_bytes": "max_total_bytes", "min_side": "min_side"}
_HTTP_KEYS = {"user_agent", "rate", "concurrency", "per_host_connections", "retries", "backoff", "max_backoff",
              "max_retry_after", "timeout", "total_timeout", "max_redirects", "max_image_bytes", "max_page_bytes"}
_SIZE_KEYS = {"max_total_bytes", "max_image_bytes", "max_page_bytes"}
_ROBOTS_KEYS = {"respect_robots", "ignore_robots", "robots"}


@dataclass(frozen=True)
class IndexRules:
    person_links: str | None = None
    next_page: str | None = None


@dataclass(frozen=True)
class PersonRules:
    name: str
    images: str
    name_attr: str | None = None           #: None: the element's text
    image_attrs: tuple[str, ...] = ("src",)  #: first present wins; "srcset" picks the largest
    next_page: str | None = None


@dataclass(frozen=True)
class SourceRules:
    people: str
    images: str
    links: str | None = None               #: links to source pages, on index and person pages
    people_attr: str | None = None
    image_attrs: tuple[str, ...] = ("src",)
    next_page: str | None = None


@dataclass(frozen=True)
class Recipe:
    path: str
    start: tuple[str, ...]
    person_pages: tuple[str, ...] = ()
    source_pages: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    ignore_query: tuple[str, ...] = ()
    index: IndexRules = field(default_factory=IndexRules)
    person: PersonRules | None = None
    source: SourceRules | None = None
    settings: dict[str, Any] = field(default_factory=dict)  #: [limits] and [http], as CollectOptions fields
    name: str = ""
    sha256: str = ""

    def options(self, base: CollectOptions | None = None) -> CollectOptions:
        """``base`` (defaults if None) with the recipe's [limits] and [http] applied."""
        base = base or CollectOptions()
        return base.updated(**self.settings)

    def hosts(self) -> HostMatcher:
        return HostMatcher(self.allowed_hosts)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raises :class:`RecipeError`."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise RecipeError(f"recipe {p}: no such file") from None
    except OSError as err:
        raise RecipeError(f"recipe {p}: cannot read ({err.strerror or err})") from err
    try:
        data = tomllib.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise RecipeError(f"recipe {p}: not UTF-8 text ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise RecipeError(f"recipe {p}: not valid TOML: {err}") from None
    return parse_recipe(data, str(p), hashlib.sha256(raw).hexdigest())


def parse_recipe(data: dict[str, Any], where: str = "<recipe>", sha256: str = "") -> Recipe:
    v = _Validator(where)
    v.keys(data, _TOP_KEYS, "")
    ignore_query = tuple(v.str_list(data, "ignore_query", ""))
    start = tuple(v.urls(data, "start", ignore_query))
    person_pages = tuple(v.urls(data, "person_pages", ignore_query))
    source_pages = tuple(v.urls(data, "source_pages", ignore_query))
    if not (start or person_pages or source_pages):
        raise v.error("", "give at least one URL to start from: start = [...] (index pages), "
                          "person_pages = [...] or source_pages = [...]")

    index = IndexRules()
    if "index" in data:
        t = v.table(data, "index")
        v.keys(t, _INDEX_KEYS, "index")
        index = IndexRules(person_links=v.selector(t, "person_links", "index"),
                           next_page=v.selector(t, "next_page", "index"))
    person = None
    if "person" in data:
        t = v.table(data, "person")
        v.keys(t, _PERSON_KEYS, "person")
        person = PersonRules(name=v.selector(t, "name", "person", required=True),
                             images=v.selector(t, "images", "person", required=True),
                             name_attr=v.attr(t, "name_attr", "person"),
                             image_attrs=v.attrs(t, "image_attr", "person"),
                             next_page=v.selector(t, "next_page", "person"))
    source = None
    if "source" in data:
        t = v.table(data, "source")
        v.keys(t, _SOURCE_KEYS, "source")
        source = SourceRules(people=v.selector(t, "people", "source", required=True),
                             images=v.selector(t, "images", "source", required=True),
                             links=v.selector(t, "links", "source"),
                             people_attr=v.attr(t, "people_attr", "source"),
                             image_attrs=v.attrs(t, "image_attr", "source"),
                             next_page=v.selector(t, "next_page", "source"))

    if start and not (index.person_links or (source and source.links)):
        raise v.error("index", "start pages are index pages: set [index] person_links and/or [source] links "
                               "so the crawler knows what to follow from them")
    if (index.person_links or person_pages) and person is None:
        raise v.error("person", "person pages are crawled, so a [person] table with name and images is required")
    if source_pages and source is None:
        raise v.error("source", "source_pages are given, so a [source] table with people and images is required")

    settings: dict[str, Any] = {}
    for table, known in (("limits", set(_LIMIT_KEYS)), ("http", _HTTP_KEYS)):
        if table not in data:
            continue
        t = v.table(data, table)
        for key in t:
            if key in _ROBOTS_KEYS:
                raise v.error(f"{table}.{key}", "robots.txt cannot be switched off in a recipe; "
                                                "use --ignore-robots on the command line if you really must")
        v.keys(t, known, table)
        for key, value in t.items():
            settings[_LIMIT_KEYS.get(key, key)] = v.setting(table, key, value)

    seeds = start + person_pages + source_pages
    if "allowed_hosts" in data:
        patterns = v.str_list(data, "allowed_hosts", "")
        try:
            parsed = [HostPattern.parse(x) for x in patterns]
        except InvalidURL as err:
            raise v.error("allowed_hosts", str(err)) from None
        matcher = HostMatcher(parsed)
        for url in seeds:
            if not matcher.allows(url):
                raise v.error("allowed_hosts", f"start URL {url} is not on an allowed host ({matcher})")
        allowed = tuple(str(x) for x in parsed)
    else:
        allowed = tuple(dict.fromkeys(host_port(u)[0] for u in seeds))
    try:
        CollectOptions().updated(**settings)
    except Exception as err:  # CollectError: an out-of-range value
        raise v.error("limits/http", str(err)) from None
    return Recipe(path=where, start=start, person_pages=person_pages, source_pages=source_pages,
                  allowed_hosts=allowed, ignore_query=ignore_query, index=index, person=person, source=source,
                  settings=settings, name=str(data.get("name", "")), sha256=sha256)


class _Validator:
    def __init__(self, where: str):
        self.where = where
        self._sv = None

    def error(self, key: str, message: str) -> RecipeError:
        return RecipeError(f"recipe {self.where}: {key + ': ' if key else ''}{message}")

    def keys(self, table: dict, known: set[str], prefix: str) -> None:
        for key in table:
            if key not in known:
                where = f"[{prefix}] " if prefix else ""
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise self.error(f"{prefix + '.' if prefix else ''}{key}",
                                 f"unknown key{hint}; {where}keys are: {', '.join(sorted(known))}")

    def table(self, data: dict, key: str) -> dict:
        value = data[key]
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table ([{key}]), got {type(value).__name__}")
        return value

    def str_list(self, data: dict, key: str, prefix: str) -> list[str]:
        value = data.get(key, [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(x, str) and x.strip() for x in value):
            raise self.error(key, "must be a string or a list of non-empty strings")
        return [x.strip() for x in value]

    def urls(self, data: dict, key: str, ignore_query: tuple[str, ...]) -> list[str]:
        out = []
        for text in self.str_list(data, key, ""):
            try:
                out.append(normalize_url(text, ignore_query=ignore_query))
            except InvalidURL as err:
                raise self.error(key, str(err)) from None
        return list(dict.fromkeys(out))

    def selector(self, table: dict, key: str, prefix: str, required: bool = False) -> str | None:
        full = f"{prefix}.{key}"
        if key not in table:
            if required:
                raise self.error(full, f"required: a CSS selector ([{prefix}] {key} = \"...\")")
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip():
            raise self.error(full, f"must be a CSS selector string, got {value!r}")
        if self._sv is None:
            self._sv = require("soupsieve")
        try:
            self._sv.compile(value)
        except Exception as err:  # soupsieve.SelectorSyntaxError and friends
            raise self.error(full, f"invalid CSS selector {value!r}: {str(err).splitlines()[0]}") from None
        return value.strip()

    def attr(self, table: dict, key: str, prefix: str) -> str | None:
        if key not in table:
            return None
        value = table[key]
        if not isinstance(value, str) or not value.strip() or any(c.isspace() for c in value.strip()):
            raise self.error(f"{prefix}.{key}", f"must be an attribute name, got {value!r}")
        return value.strip()

    def attrs(self, table: dict, key: str, prefix: str) -> tuple[str, ...]:
        if key not in table:
            return ("src",)
        value = table[key]
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(
                isinstance(x, str) and x.strip() and not any(c.isspace() for c in x.strip()) for x in values):
            raise self.error(f"{prefix}.{key}", f"must be an attribute name or a list of them, got {value!r}")
        return tuple(x.strip() for x in values)

    def setting(self, table: str, key: str, value: Any) -> Any:
        full = f"{table}.{key}"
        if isinstance(value, bool):
            raise self.error(full, f"must be a number, got {value!r}")
        if key in _SIZE_KEYS:
            try:
                return parse_size(value)
            except ValueError as err:
                raise self.error(full, str(err)) from None
        if key == "user_agent":
            if not isinstance(value, str) or not value.strip():
                raise self.error(full, "must be a non-empty string")
            return value.strip()
        if key in ("rate", "backoff", "max_backoff", "max_retry_after", "timeout", "total_timeout"):
            if not isinstance(value, (int, float)):
                raise self.error(full, f"must be a number, got {value!r}")
            return float(value)
        if not isinstance(value, int):
            raise self.error(full, f"must be a whole number, got {value!r}")
        return value
