"""Writing `clean`'s results: aligned crops, optional wide crops, the manifest,
the summary and the HTML review page. Every file goes through a temporary
name and a rename; every file written is journalled first, so a re-run can
remove outputs that are no longer kept without ever touching anything else."""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable

import cv2
import numpy as np
from PIL import Image

from ..faces.align import align_face
from .analyze import ImageAnalysis, rotate
from .decide import REASONS, Decision


def encode(image: np.ndarray, fmt: str, quality: int = 95) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        Image.fromarray(image).save(buf, format=fmt, quality=quality)
    else:
        Image.fromarray(image).save(buf, format=fmt)
    return buf.getvalue()


def output_name(d: Decision) -> str:
    stem = Path(d.rel).stem or "image"
    return f"{d.person}/{stem}-{d.sha256[:8]}"


def aligned_crop(image: np.ndarray, a: ImageAnalysis, index: int) -> np.ndarray:
    face = a.faces[index].face
    return align_face(rotate(image, a.rotation), face.landmarks_array(), (112, 112))


def wide_crop(image: np.ndarray, a: ImageAnalysis, index: int, margin: float, size: int) -> np.ndarray:
    """A square crop around the face box, ``margin`` times its longer side, padded with black."""
    img = rotate(image, a.rotation)
    x, y, w, h = a.faces[index].face.box
    side = margin * max(w, h)
    cx, cy = x + w / 2, y + h / 2
    scale = size / side
    m = np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(img, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def thumbnail(image: np.ndarray | None, a: ImageAnalysis | None, index: int | None, size: int = 96) -> str:
    """A small JPEG as a data URI: the face with some margin, or the whole image."""
    if image is None:
        return ""
    if a is not None and index is not None and a.faces:
        thumb = wide_crop(image, a, index, 1.4, size)
    else:
        img = rotate(image, a.rotation) if a is not None else image
        h, w = img.shape[:2]
        s = size / max(h, w)
        thumb = cv2.resize(img, (max(1, int(w * s)), max(1, int(h * s))), interpolation=cv2.INTER_AREA)
    return "data:image/jpeg;base64," + base64.b64encode(encode(thumb, "JPEG", 80)).decode()


def summarize(decisions: Iterable[Decision], problems: list[tuple[str, str]]) -> dict[str, Any]:
    decisions = list(decisions)
    by_reason = Counter(d.reason for d in decisions if d.status == "rejected")
    per_person: dict[str, dict[str, Any]] = defaultdict(lambda: {"kept": 0, "rejected": 0, "reasons": Counter()})
    for d in decisions:
        p = per_person[d.person]
        if d.status == "kept":
            p["kept"] += 1
        else:
            p["rejected"] += 1
            p["reasons"][d.reason] += 1
    splits = Counter(d.split for d in decisions if d.status == "kept")
    return {
        "images": len(decisions),
        "people": len(per_person),
        "kept": sum(1 for d in decisions if d.status == "kept"),
        "rejected": sum(1 for d in decisions if d.status == "rejected"),
        "by_reason": dict(sorted(by_reason.items())),
        "split": dict(splits),
        "people_without_kept_images": sorted(p for p, v in per_person.items() if v["kept"] == 0),
        "per_person": {p: {"kept": v["kept"], "rejected": v["rejected"], "reasons": dict(sorted(v["reasons"].items()))}
                       for p, v in sorted(per_person.items())},
        "problems": [{"item": i, "reason": r} for i, r in problems],
    }


def manifest_line(d: Decision, a: ImageAnalysis | None, outputs: dict[str, str]) -> str:
    rec: dict[str, Any] = {"person": d.person, "source": d.rel, "sha256": d.sha256, "decision": d.status,
                           "reason": d.reason, "detail": d.detail}
    if a is not None and d.face_index is not None and a.faces:
        f = a.faces[d.face_index]
        rec.update(face_index=d.face_index, faces_in_image=len(a.faces), rotation=a.rotation * 90,
                   box=[round(v, 2) for v in f.face.box],
                   landmarks=[[round(x, 2), round(y, 2)] for x, y in f.face.landmarks],
                   quality=f.quality.to_dict())
    elif a is not None and a.faces:
        rec.update(faces_in_image=len(a.faces), rotation=a.rotation * 90)
    if d.similarity is not None:
        rec["similarity"] = round(d.similarity, 4)
    if d.ref:
        rec["ref"] = d.ref
    if d.unverified:
        rec["unverified"] = True
    if d.split:
        rec["split"] = d.split
    rec.update(outputs)
    rec.update({k: v for k, v in d.extra.items() if k not in rec})
    return json.dumps(rec, ensure_ascii=False)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}td:first-child,th:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:10px}.item{width:150px;font-size:11px;word-break:break-all}
.item img{width:96px;height:96px;object-fit:contain;background:#eee;display:block}h2{margin-top:1.6em}
.muted{color:#777}"""


def render_report(summary: dict[str, Any], items: list[tuple[Decision, str]], title: str,
                  max_per_reason: int = 400) -> str:
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title><style>{_CSS}</style>"
           "</head><body>", f"<h1>{e(title)}</h1>",
           f"<p>{summary['images']} images of {summary['people']} people: <b>{summary['kept']} kept</b>, "
           f"{summary['rejected']} rejected.</p>"]
    out.append("<table><tr><th>reason</th><th>images</th><th>meaning</th></tr>")
    for reason, n in summary["by_reason"].items():
        out.append(f"<tr><td><a href='#{e(reason)}'>{e(reason)}</a></td><td>{n}</td>"
                   f"<td style='text-align:left'>{e(REASONS.get(reason, ''))}</td></tr>")
    out.append("</table>")
    reasons = list(summary["by_reason"])
    out.append("<h2>Per person</h2><table><tr><th>person</th><th>kept</th><th>rejected</th>"
               + "".join(f"<th>{e(r)}</th>" for r in reasons) + "</tr>")
    for person, v in summary["per_person"].items():
        out.append(f"<tr><td>{e(person)}</td><td>{v['kept']}</td><td>{v['rejected']}</td>"
                   + "".join(f"<td>{v['reasons'].get(r, '') or ''}</td>" for r in reasons) + "</tr>")
    out.append("</table>")
    if summary["problems"]:
        out.append("<h2>Not processed</h2><ul>" + "".join(
            f"<li>{e(p['item'])}: {e(p['reason'])}</li>" for p in summary["problems"]) + "</ul>")
    grouped: dict[str, list[tuple[Decision, str]]] = defaultdict(list)
    for d, uri in items:
        grouped[d.reason or ""].append((d, uri))
    for reason in reasons:
        group = grouped.get(reason, [])
        out.append(f"<h2 id='{e(reason)}'>{e(reason)} ({len(group)})</h2><p class='muted'>{e(REASONS.get(reason, ''))}</p>"
                   "<div class='grid'>")
        for d, uri in group[:max_per_reason]:
            img = f"<img src='{uri}' alt=''>" if uri else "<div style='width:96px;height:96px;background:#eee'></div>"
            out.append(f"<div class='item'>{img}<b>{e(d.person)}</b><br>{e(d.rel)}<br>"
                       f"<span class='muted'>{e(d.detail or '')}</span></div>")
        if len(group) > max_per_reason:
            out.append(f"<p>… and {len(group) - max_per_reason} more (see the manifest)</p>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)
