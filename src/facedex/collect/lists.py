"""URL lists for ``facedex collect urls``: CSV or JSONL rows of ``person, url[, source]``.

* **CSV** (``.csv``, ``.tsv`` for tab-separated): columns ``person, url`` and
  optionally ``source``. A header row is recognised when its first two
  cells are ``person`` and ``url`` (any case); with a header the columns may
  come in any order and extra columns are ignored.
* **JSONL** (``.jsonl``, ``.ndjson``, or any file whose first non-blank
  character is ``{``): one object per line with ``"person"`` and ``"url"``
  and optionally ``"source"``.

Files are read as UTF-8 (a BOM is fine). ``source`` says where the image
was seen (a page URL, an album name): rows with the same source are listed
together in ``sources.jsonl``. Blank lines and lines starting with ``#``
are skipped. A malformed row does not stop the run: it is reported as an
``invalid_row`` failure with its line number.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ..errors import UrlListError


@dataclass(frozen=True)
class Row:
    line: int
    person: str
    url: str
    source: str | None = None


@dataclass(frozen=True)
class BadRow:
    line: int
    message: str


def read_list(path: str | Path) -> Iterator[Row | BadRow]:
    """Rows of a URL list, in file order; raises :class:`UrlListError` if the file cannot be read."""
    p = Path(path)
    try:
        if p.is_dir():
            raise UrlListError(f"URL list {p} is a directory; give a .csv or .jsonl file")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise UrlListError(f"URL list {p}: no such file") from None
    except OSError as err:
        raise UrlListError(f"URL list {p}: cannot read ({err.strerror or err})") from err
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UrlListError(f"URL list {p}: not UTF-8 text (byte {err.start}); save it as UTF-8") from None
    suffix = p.suffix.lower()
    first = next((ln.lstrip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")), "")
    if suffix in (".jsonl", ".ndjson") or (suffix not in (".csv", ".tsv") and first.startswith("{")):
        yield from _jsonl(text)
    else:
        yield from _csv(text, "\t" if suffix == ".tsv" else ",")


def _clean(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def _jsonl(text: str) -> Iterator[Row | BadRow]:
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        try:
            obj = json.loads(s)
        except json.JSONDecodeError as err:
            yield BadRow(n, f"not valid JSON ({err.msg})")
            continue
        if not isinstance(obj, dict):
            yield BadRow(n, "expected a JSON object with \"person\" and \"url\"")
            continue
        unknown = sorted(set(obj) - {"person", "url", "source"})
        person, url = _clean(obj.get("person")), _clean(obj.get("url"))
        source = _clean(obj.get("source")) or None
        if not person or not url:
            missing = " and ".join(k for k, v in (("person", person), ("url", url)) if not v)
            extra = f" (unknown keys: {', '.join(unknown)})" if unknown else ""
            yield BadRow(n, f"missing {missing}{extra}")
            continue
        yield Row(n, person, url, source)


def _csv(text: str, delimiter: str) -> Iterator[Row | BadRow]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    columns = {"person": 0, "url": 1, "source": 2}
    first = True
    for cells in reader:
        n = reader.line_num
        if not cells or all(not c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
            continue
        if first:
            first = False
            lowered = [c.strip().lower() for c in cells]
            if "person" in lowered and "url" in lowered:
                columns = {k: lowered.index(k) for k in ("person", "url", "source") if k in lowered}
                continue
        person = cells[columns["person"]].strip() if len(cells) > columns["person"] else ""
        url = cells[columns["url"]].strip() if len(cells) > columns["url"] else ""
        s_idx = columns.get("source")
        source = cells[s_idx].strip() if s_idx is not None and len(cells) > s_idx else ""
        if not person or not url:
            missing = " and ".join(k for k, v in (("person", person), ("url", url)) if not v)
            yield BadRow(n, f"missing {missing}")
            continue
        yield Row(n, person, url, source or None)
