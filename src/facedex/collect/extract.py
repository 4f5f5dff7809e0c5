"""Take links, names and image URLs out of an HTML page, as a recipe says.

Parsing uses Beautiful Soup with Python's own ``html.parser`` (lenient with
broken markup, no C extension needed) and CSS selectors through soupsieve.
Every URL found is resolved against the page (and its ``<base href>``) and
normalised; ``mailto:``, ``javascript:``, ``data:`` and other non-http
links are dropped. The result is plain data (:class:`PageData`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import InvalidNameError
from ..names import person_name
from .deps import require
from .recipe import Recipe
from .urlnorm import InvalidURL, normalize_url

_SRCSET_DESCRIPTOR = re.compile(r"^(\d+(?:\.\d+)?)([wx])$")


@dataclass
class PageData:
    """What one page yielded; lists keep page order, without repeats."""

    kind: str
    name: str | None = None                 #: person pages: the person's name
    people: list[str] = field(default_factory=list)  #: source pages: the people listed
    images: list[str] = field(default_factory=list)
    person_links: list[str] = field(default_factory=list)
    source_links: list[str] = field(default_factory=list)
    next_page: str | None = None
    dropped_links: int = 0                  #: links that were not usable http(s) URLs

    def fingerprint(self) -> str:
        """Identifies what the page showed; equal pages under two URLs have equal fingerprints."""
        h = hashlib.sha256()
        for part in ([self.kind, self.name or ""], self.people, self.images, self.person_links, self.source_links):
            h.update("\x1f".join(part).encode("utf-8", "surrogatepass") + b"\x1e")
        return h.hexdigest()

    @property
    def empty(self) -> bool:
        return not (self.images or self.person_links or self.source_links or self.people)


def parse_srcset(value: str) -> str | None:
    """The URL of the largest candidate in an ``srcset`` (by ``w``, else ``x``)."""
    best: tuple[float, str] | None = None
    pos, n = 0, len(value)
    while pos < n:
        while pos < n and (value[pos].isspace() or value[pos] == ","):
            pos += 1
        start = pos
        while pos < n and not value[pos].isspace():
            pos += 1
        url = value[start:pos]
        descriptor = ""
        if url.endswith(","):
            url = url.rstrip(",")
        else:
            d_start = pos
            depth = 0
            while pos < n and (depth or value[pos] != ","):
                depth += value[pos] == "("
                depth -= value[pos] == ")" and depth > 0
                pos += 1
            descriptor = value[d_start:pos].strip()
        if not url:
            continue
        score = 1.0
        m = _SRCSET_DESCRIPTOR.match(descriptor.split()[0]) if descriptor else None
        if m:
            score = float(m.group(1)) * (1.0 if m.group(2) == "w" else 10000.0)
        if best is None or score > best[0]:
            best = (score, url)
    return best[1] if best else None


class Extractor:
    """Applies one recipe's selectors to pages."""

    def __init__(self, recipe: Recipe):
        self.recipe = recipe
        self._bs4 = require("bs4")

    def parse(self, kind: str, body: bytes, url: str, charset: str | None = None) -> PageData:
        soup = self._bs4.BeautifulSoup(body, "html.parser", from_encoding=charset)
        base = url
        base_tag = soup.find("base", href=True)
        if base_tag is not None:
            try:
                base = normalize_url(str(base_tag["href"]), base=url)
            except InvalidURL:
                pass
        data = PageData(kind=kind)
        r = self.recipe
        if kind == "index":
            data.person_links = self._links(soup, r.index.person_links, ("href",), base, data)
            data.next_page = self._first(self._links(soup, r.index.next_page, ("href",), base, data))
        elif kind == "person" and r.person is not None:
            data.name = self._first(self._texts(soup, r.person.name, r.person.name_attr))
            data.images = self._links(soup, r.person.images, r.person.image_attrs, base, data)
            data.next_page = self._first(self._links(soup, r.person.next_page, ("href",), base, data))
        elif kind == "source" and r.source is not None:
            data.people = self._texts(soup, r.source.people, r.source.people_attr)
            data.images = self._links(soup, r.source.images, r.source.image_attrs, base, data)
            data.next_page = self._first(self._links(soup, r.source.next_page, ("href",), base, data))
        if kind in ("index", "person") and r.source is not None:
            data.source_links = self._links(soup, r.source.links, ("href",), base, data)
        if data.next_page == url:
            data.next_page = None  # a "next" link to the page itself is the end, not a cycle
        return data

    @staticmethod
    def _first(items: list[str]) -> str | None:
        return items[0] if items else None

    def _texts(self, soup, selector: str | None, attr: str | None) -> list[str]:
        """Person names where ``selector`` points; text that is no valid name (empty, or
        longer than a name can be: the selector caught a paragraph) is left out."""
        if not selector:
            return []
        out: list[str] = []
        for el in soup.select(selector):
            raw = el.get(attr) if attr else el.get_text(" ", strip=True)
            if isinstance(raw, list):
                raw = " ".join(raw)
            try:
                text = person_name(raw or "")
            except InvalidNameError:
                continue
            if text not in out:
                out.append(text)
        return out

    def _links(self, soup, selector: str | None, attrs: Sequence[str], base: str, data: PageData) -> list[str]:
        if not selector:
            return []
        out: dict[str, None] = {}
        for el in soup.select(selector):
            value = _attribute(el, attrs)
            if value is None:
                continue
            try:
                out[normalize_url(value, base=base, ignore_query=self.recipe.ignore_query)] = None
            except InvalidURL:
                data.dropped_links += 1
        return list(out)


def _attribute(el, attrs: Sequence[str]) -> str | None:
    """The first of ``attrs`` present on ``el`` (or, failing that, on a descendant)."""
    for candidate in (el, *el.find_all(True)):
        for attr in attrs:
            raw = candidate.get(attr)
            if raw is None:
                continue
            if isinstance(raw, list):
                raw = " ".join(raw)
            raw = raw.strip()
            if not raw:
                continue
            if attr.lower().endswith("srcset"):
                picked = parse_srcset(raw)
                if picked:
                    return picked
                continue
            return raw
    return None
