"""An HTML contact sheet of discovered clusters, for a person to review in a browser.

One section per cluster, largest first: a row of its face crops (best match
to the cluster's centre first, so doubtful faces come last and are outlined),
each linked to its source file (a video at the moment of the face: ``#t=``),
with the sighting id and similarity. Ticking a face's *exclude* box and
typing a name builds the ``facedex name`` command to paste into a terminal.

The sheet is self-contained: crops are embedded (``data:`` URIs), no request
leaves the page (a Content-Security-Policy forbids it), and every name and
path is HTML-escaped. Large results are split into pages of ``per_page``
clusters (``index.html``, ``page-2.html``…). The folder gets a small manifest
(``.facedex-sheet.json``): a folder holding other files is refused, and a
sheet written there earlier is replaced — never anything else. Files are
written atomically (:func:`facedex.files.atomic_write_text`).
"""

from __future__ import annotations

import base64
import html
import json
import os
import shlex
from pathlib import Path
from typing import Callable, Sequence
from urllib.parse import quote

from ..errors import OutputError
from ..files import atomic_write_text

MANIFEST = ".facedex-sheet.json"

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.1em;margin:0}
.meta{color:#555}.nav a{margin-right:.6em}
section{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.8em 1em;margin:1em 0}
.row{display:flex;flex-wrap:wrap;gap:8px;margin-top:.6em}
figure{margin:0;width:120px;font-size:11px;color:#444}
figure img{width:112px;height:112px;object-fit:cover;border:3px solid #cfe3cf;border-radius:4px;background:#eee}
figure.review img{border-color:#e8a33d}
figure.excluded img{opacity:.35;border-color:#c33}
figcaption{overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.cmd{display:flex;gap:.5em;align-items:center;margin-top:.5em;flex-wrap:wrap}
.cmd code{background:#f0f0f0;padding:.2em .4em;border-radius:3px;user-select:all;word-break:break-all}
input[type=text]{font:inherit;padding:.15em .3em}
"""

_JS = """
function q(s){return "'"+s.replace(/'/g,"'\\\\''")+"'"}
function upd(sec){
  var name=sec.querySelector('input[type=text]').value.trim()||'NAME';
  var ex=[];sec.querySelectorAll('input[type=checkbox]').forEach(function(b){
    b.closest('figure').classList.toggle('excluded',b.checked);if(b.checked)ex.push(b.dataset.sighting)});
  sec.querySelector('code').textContent='facedex name '+sec.dataset.gallery+' '+sec.dataset.cluster+' '+q(name)+
    (ex.length?' --exclude '+ex.join(' '):'');
}
document.querySelectorAll('section[data-cluster]').forEach(function(sec){
  sec.addEventListener('input',function(){upd(sec)});sec.addEventListener('change',function(){upd(sec)});upd(sec)});
"""

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
        "base-uri 'none'; form-action 'none'")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _time(t: float | None) -> str:
    if t is None:
        return ""
    from ..video.types import format_time

    return format_time(t)


def _link(source: str, best_time: float | None) -> str:
    try:
        uri = Path(source).as_uri() if os.path.isabs(source) else quote(source)
    except ValueError:
        uri = quote(source)
    return uri + (f"#t={best_time:.1f}" if best_time is not None else "")


def prepare_folder(folder: str | os.PathLike) -> list[str]:
    """Make the folder for a sheet (or take one a sheet was written to) and return
    the pages that earlier sheet wrote; :class:`OutputError` when it cannot be used."""
    folder = Path(folder)
    if folder.is_symlink() and not folder.exists():
        raise OutputError(f"{folder}: is a dangling link; give a folder for the contact sheet")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is not a folder; give a folder for the contact sheet")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entries = [e.name for e in folder.iterdir()]
    except OSError as err:
        raise OutputError(f"{folder}: cannot create or list the folder ({err.strerror or err})") from err
    if not entries:
        return []
    if MANIFEST not in entries:
        raise OutputError(f"{folder}: holds other files; give a new or empty folder for the contact sheet "
                          "(a folder a sheet was written to before is reused)")
    try:
        old = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("pages", [])
    except (OSError, ValueError, AttributeError):
        old = []
    return [p for p in old if isinstance(p, str) and "/" not in p and p.endswith(".html")]


def write_cluster_sheet(result, crop: Callable[[int], bytes | None], folder: str | os.PathLike, *,
                        gallery: str, per_page: int = 100, review_below: float | None = None,
                        title: str | None = None) -> list[Path]:
    """Write the contact sheet of a :class:`facedex.library.DiscoverResult`
    into ``folder``; ``crop(sighting_id)`` gives a face's JPEG (or ``None``).
    Faces whose similarity to their cluster's centre is below
    ``review_below`` are outlined for review. Returns the pages written,
    ``index.html`` first. Raises :class:`facedex.errors.OutputError` when
    the folder cannot be used (checked before anything is written)."""
    out = Path(folder)
    old_pages = prepare_folder(out)
    clusters = list(result.clusters)
    per_page = max(1, int(per_page))
    chunks = [clusters[i:i + per_page] for i in range(0, len(clusters), per_page)] or [[]]
    names = ["index.html"] + [f"page-{i}.html" for i in range(2, len(chunks) + 1)]
    gallery_q = shlex.quote(gallery)
    written = []
    for number, (page, chunk) in enumerate(zip(names, chunks), 1):
        text = _page(result, chunk, crop, names, number, gallery_q, review_below, title)
        atomic_write_text(out / page, text)
        written.append(out / page)
    for stale in set(old_pages) - set(names):
        try:
            (out / stale).unlink()
        except OSError:
            pass
    atomic_write_text(out / MANIFEST, json.dumps({"generator": "facedex discover --html", "pages": names}) + "\n")
    return written


def _page(result, clusters: Sequence, crop, names: list[str], number: int, gallery_q: str,
          review_below: float | None, title: str | None) -> str:
    faces = sum(c.size for c in result.clusters)
    head = title or "facedex — people found in the library"
    claimed = sum(result.claimed.values())
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>{_e(head)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(head)}</h1>",
        f'<p class=meta>{len(result.clusters)} clusters ({faces} faces) at average similarity '
        f'{result.threshold:.3f}; {result.unclustered} faces seen once (not shown); {claimed} claimed by enrolled '
        f'people; {result.named} already named. Review each row: faces with an '
        f'<span style="color:#c77d00">orange</span> border match their cluster least. Tick a wrong face, type the '
        f'person\'s name, and run the command.</p>',
    ]
    if len(names) > 1:
        parts.append('<p class=nav>' + " ".join(
            f'<b>{i}</b>' if i == number else f'<a href="{_e(n)}">{i}</a>' for i, n in enumerate(names, 1)) + "</p>")
    if not result.clusters:
        parts.append("<p>No clusters: every face is either claimed by an enrolled person or seen only once.</p>")
    for c in clusters:
        parts.append(f'<section id="c-{_e(c.id)}" data-cluster="{_e(c.id)}" data-gallery="{_e(gallery_q)}">')
        parts.append(f"<h2>cluster {_e(c.id)} · {c.size} faces</h2>")
        parts.append('<div class=cmd><label>name <input type=text placeholder="Name" aria-label="name"></label>'
                     '<code></code></div><div class=row>')
        for f in c.faces:
            s = f.sighting
            jpeg = crop(s.id)
            src = ("data:image/jpeg;base64," + base64.b64encode(jpeg).decode()) if jpeg else ""
            review = review_below is not None and f.similarity_to_centre < review_below
            when = f" · {_time(s.best_time)}" if s.best_time is not None else ""
            parts.append(
                f'<figure class="{"review" if review else ""}">'
                f'<a href="{_e(_link(s.source, s.best_time))}" title="{_e(s.source)}">'
                f'<img src="{_e(src)}" alt="face {s.id}" loading=lazy width=112 height=112></a>'
                f"<figcaption>#{s.id} · {f.similarity_to_centre:.2f}{_e(when)}</figcaption>"
                f'<figcaption title="{_e(s.source)}">{_e(os.path.basename(s.source))}</figcaption>'
                f'<label><input type=checkbox data-sighting="{s.id}"> exclude</label></figure>')
        parts.append("</div></section>")
    parts.append(f"<script>{_JS}</script></body></html>\n")
    return "\n".join(parts)


__all__ = ["MANIFEST", "prepare_folder", "write_cluster_sheet"]
