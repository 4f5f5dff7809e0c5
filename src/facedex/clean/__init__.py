"""Clean: turn a noisy folder-per-person collection into trustworthy training and
enrollment data.

>>> from facedex.clean import clean, CleanConfig
>>> report = clean("raw/", "clean/", CleanConfig(split=0.2), report_html="review.html")
>>> report.summary["by_reason"]
{'duplicate': 12, 'no_face': 3, 'wrong_person': 9, ...}

``SRC`` is never modified. ``DST`` receives ``<Person>/<stem>-<sha8>.png``
(112x112 aligned crops of the kept faces; optionally ``<Person>/wide/…jpg``
crops with a margin), ``manifest.jsonl`` (one line per person and source
image: decision, reason, face, quality, similarity, split, output files),
``summary.json``, and ``.facedex-clean/`` (the analysis cache and the journal
of written files). Re-running is incremental — only new images are analysed —
and gives the same result. See :mod:`facedex.clean.decide` for the rules.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from .. import models
from ..errors import CleanError, ConfigError, FacedexError, SourcesFileError
from ..faces.detect import DetectorConfig
from ..files import atomic_write_bytes as atomic_write
from ..media import decode_image, read_file
from ..pipeline import FacePipeline
from .analyze import AnalysisCache, Analyzer, ImageAnalysis
from .decide import REASONS, CleanConfig, Decision, decide
from .output import (
    aligned_crop,
    encode,
    manifest_line,
    output_name,
    render_report,
    summarize,
    thumbnail,
    wide_crop,
)
from .scan import SourcesIndex, read_sources, scan

if TYPE_CHECKING:  # pragma: no cover
    from ..engines.ray import RayOptions

log = logging.getLogger(__name__)

__all__ = ["clean", "CleanConfig", "CleanReport", "REASONS", "CleanError", "SourcesFileError", "thresholds_for",
           "DETECT_MIN_FACE"]

STATE_DIR = ".facedex-clean"

#: Smallest face the detector looks for. Faces below ``CleanConfig.min_face``
#: but above this are found and rejected as ``too_small`` instead of ``no_face``.
DETECT_MIN_FACE = 16.0


@dataclass
class CleanReport:
    """What a run did. ``interrupted`` runs (``stop`` was set) stopped during
    ``stage`` (``"hash"``, ``"analyse"`` or ``"write"``): their ``summary`` only
    counts the images and people found, the manifest is the previous run's (or
    none), and every analysis and crop finished so far is kept for the next run."""

    summary: dict[str, Any]
    decisions: list[Decision] = field(default_factory=list)
    manifest: str = ""
    report_html: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    analysed: int = 0
    reused: int = 0
    written: int = 0
    interrupted: bool = False
    stage: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {**self.summary, "interrupted": self.interrupted, "manifest": self.manifest or None,
             "report": self.report_html, "thresholds": self.thresholds, "analysed": self.analysed,
             "reused_from_cache": self.reused, "written": self.written}
        if self.interrupted:
            d["stopped_during"] = self.stage
        else:
            d["rejections"] = [{"person": x.person, "source": x.rel, "reason": x.reason, "detail": x.detail}
                               for x in self.decisions if x.status == "rejected"]
        return d


def thresholds_for(card: models.ModelCard, cfg: CleanConfig) -> tuple[float, float]:
    """(outlier threshold, pair threshold) from the options or the embedder's card."""
    stats = card.extra.get("clean", {}) if card.extra else {}
    tau = cfg.outlier_threshold if cfg.outlier_threshold is not None else stats.get("outlier_threshold")
    pair = cfg.pair_threshold if cfg.pair_threshold is not None else stats.get("pair_threshold")
    if tau is None or pair is None:
        raise CleanError(
            f"the embedder {card.name!r} carries no statistics for cleaning; pass --outlier-threshold and "
            "--pair-threshold (cosine similarities: a face vs its person's consensus, and a pair of faces)"
        )
    return float(tau), float(pair)


def _inside(child: Path, parent: Path) -> bool:
    try:
        child.resolve().relative_to(parent.resolve())
        return True
    except ValueError:
        return False


def clean(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    config: CleanConfig | None = None,
    *,
    sources: str | os.PathLike | None = None,
    embedder: str | models.ModelCard = models.DEFAULT_EMBEDDER,
    detector_config: DetectorConfig | None = None,
    runtime: str | None = None,
    wide_margin: float | None = None,
    wide_size: int = 224,
    report_html: str | os.PathLike | None = None,
    progress: Callable[[str, int, int | None], None] | None = None,
    stop: threading.Event | None = None,
    ray: "RayOptions | None" = None,
) -> CleanReport:
    """Clean ``src`` into ``dst``; see the module documentation.

    Setting ``stop`` (from another thread or a signal handler) ends the run after
    the batch of images in hand with an ``interrupted`` report; what finished is kept and
    the same call continues from there. ``ray``: analyse the images on Ray with
    these options (:meth:`facedex.clean.analyze.Analyzer.analyze_on_ray`); the
    decisions and the outputs are made here either way."""
    cfg = config or CleanConfig()
    src_p, dst_p = Path(src), Path(dst)
    if not src_p.is_dir():
        raise CleanError(f"{src_p}: no such folder (expected {src_p}/<Person>/<images>)")
    if _inside(dst_p, src_p) or _inside(src_p, dst_p):
        raise CleanError(f"{dst_p} and {src_p} must not contain one another: SRC is read, DST is written")
    if not 0.0 <= cfg.split < 1.0:
        raise ConfigError(f"--split must be in [0, 1), got {cfg.split}")
    if wide_margin is not None and wide_margin < 1.0:
        raise ConfigError(f"--margin must be at least 1.0 (times the face box), got {wide_margin}")
    pipeline = FacePipeline(embedder=embedder, runtime=runtime,
                            detector_config=detector_config or DetectorConfig(min_face=DETECT_MIN_FACE))
    tau, tau_pair = thresholds_for(pipeline.embedder.card, cfg)

    images, problems = scan(src_p)
    src_index = SourcesIndex.empty()
    sources_path = Path(sources) if sources else (src_p / "sources.jsonl")
    if sources or sources_path.is_file():
        src_index = read_sources(sources_path)
    try:
        dst_p.mkdir(parents=True, exist_ok=True)
        cache = AnalysisCache(dst_p / STATE_DIR / "cache.sqlite")
    except OSError as err:
        raise CleanError(f"cannot write to {dst_p} ({err.strerror or err})") from err
    try:
        return _run(src_p, dst_p, cfg, images, problems, src_index, pipeline, cache, tau, tau_pair,
                    wide_margin, wide_size, report_html, progress, stop or threading.Event(), ray, runtime)
    finally:
        cache.close()


def _hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _run(src_p, dst_p, cfg, images, problems, src_index, pipeline, cache, tau, tau_pair,
         wide_margin, wide_size, report_html, progress, stop: threading.Event, ray=None,
         runtime: str | None = None) -> CleanReport:
    def tick(stage: str, n: int, total: int | None) -> None:
        if progress:
            progress(stage, n, total)

    thresholds = {"outlier": tau, "pair": tau_pair}
    old_manifest = dst_p / "manifest.jsonl"

    def interrupted(stage: str, analysed: int = 0, reused: int = 0, written: int = 0) -> CleanReport:
        log.info("stopped during %s: %d image(s) analysed, %d crop(s) written", stage, analysed, written)
        summary = {"images": len(images), "people": len({im.person for im in images}),
                   "problems": [{"item": i, "reason": r} for i, r in problems]}
        return CleanReport(summary=summary, manifest=str(old_manifest) if old_manifest.is_file() else "",
                           thresholds=thresholds, analysed=analysed, reused=reused, written=written,
                           interrupted=True, stage=stage)

    sha_of: dict[str, str] = {}
    unreadable: dict[str, str] = {}
    for im in images:
        if stop.is_set():
            return interrupted("hash")
        try:
            sha_of[im.rel] = _hash(im.path)
        except OSError as err:
            sha_of[im.rel] = "unreadable:" + im.rel
            unreadable[sha_of[im.rel]] = f"{im.path}: cannot read ({err.strerror or err})"
        tick("hash", 1, len(images))
    analyzer = Analyzer(pipeline)
    todo = [(sha_of[im.rel], im.path) for im in images if sha_of[im.rel] not in unreadable]
    before = {sha for sha, _ in todo if cache.get(sha, analyzer.key) is not None}
    analysed_tick = lambda n: tick("analyse", n, len(todo))  # noqa: E731
    if ray is not None:
        analyses = analyzer.analyze_on_ray(todo, cache, ray, runtime, progress=analysed_tick, stop=stop)
    else:
        analyses = analyzer.analyze(todo, cache, progress=analysed_tick, stop=stop)
    analysed = len(set(analyses) - before)
    if stop.is_set():
        return interrupted("analyse", analysed, len(before))
    for sha, err in unreadable.items():
        analyses[sha] = ImageAnalysis(sha, 0, 0, 0, (), err)

    decisions = decide(images, sha_of, analyses, src_index, cfg, tau, tau_pair)
    path_of = {im.rel: im.path for im in images}

    # outputs
    previous = _previous_outputs(dst_p / "manifest.jsonl")
    journal = cache.outputs()
    produced: set[str] = set()
    lines: list[str] = []
    thumbs: list[tuple[Decision, str]] = []
    want_thumbs = report_html is not None
    decoded_cache: dict[str, Any] = {}

    def load(rel: str):
        if rel not in decoded_cache:
            decoded_cache.clear()
            try:
                decoded_cache[rel] = decode_image(read_file(path_of[rel]), str(path_of[rel]))
            except FacedexError:
                decoded_cache[rel] = None
        return decoded_cache[rel]

    written = 0
    try:
        for d in decisions:
            if stop.is_set():
                return interrupted("write", analysed, len(before), written)
            a = analyses.get(d.sha256)
            outs: dict[str, str] = {}
            if d.status == "kept" and a is not None and d.face_index is not None:
                base = output_name(d)
                key = f"{d.sha256}:{d.face_index}:{a.rotation}:{a.faces[d.face_index].face.box}"
                targets = {"output": base + ".png"}
                if wide_margin is not None:
                    targets["wide"] = f"{d.person}/wide/{Path(base).name}.jpg"
                for kind, rel in targets.items():
                    out_path = dst_p / rel
                    if not _inside(out_path, dst_p):
                        raise CleanError(f"refusing to write outside {dst_p}: {rel}")
                    produced.add(rel)
                    outs[kind] = rel
                    if out_path.is_file() and rel in journal and previous.get(rel) == key:
                        continue
                    image = load(d.rel)
                    if image is None:
                        raise CleanError(f"{path_of[d.rel]} changed while cleaning; run again")
                    cache.record_output(rel)
                    if kind == "output":
                        atomic_write(out_path, encode(aligned_crop(image, a, d.face_index), "PNG"))
                    else:
                        atomic_write(out_path, encode(wide_crop(image, a, d.face_index, wide_margin, wide_size), "JPEG"))
                    written += 1
                outs["output_key"] = key
            elif want_thumbs and d.status == "rejected":
                idx = d.face_index
                if idx is None and a is not None and a.faces:
                    idx = max(range(len(a.faces)), key=lambda i: a.faces[i].quality.size)
                thumbs.append((d, thumbnail(load(d.rel) if d.reason != "unreadable" else None, a, idx)))
            lines.append(manifest_line(d, a, outs))
            tick("write", 1, len(decisions))
        summary = summarize(decisions, problems)
        summary.update(thresholds=thresholds, config=asdict(cfg),
                       embedder=pipeline.embedder_id, sources_groups=src_index.groups)
        # file names that are not UTF-8 are written as \udcXX escapes: valid JSON, read back losslessly
        atomic_write(dst_p / "manifest.jsonl", ("\n".join(lines) + "\n").encode("utf-8", "backslashreplace"))
        atomic_write(dst_p / "summary.json",
                     json.dumps(summary, indent=2, ensure_ascii=False).encode("utf-8", "backslashreplace"))
        for rel in sorted(journal - produced):
            try:
                (dst_p / rel).unlink()
            except FileNotFoundError:
                pass
            cache.forget_output(rel)
        report_path = None
        if report_html is not None:
            report_path = str(report_html)
            html = render_report(summary, thumbs, f"facedex clean: {src_p}")
            atomic_write(Path(report_html), html.encode("utf-8", "xmlcharrefreplace"))
    except OSError as err:
        raise CleanError(
            f"cannot write to {dst_p} ({err.strerror or err}); nothing already written was lost — free some "
            "space and run the same command again to continue"
        ) from err
    return CleanReport(summary=summary, decisions=decisions, manifest=str(dst_p / "manifest.jsonl"),
                       report_html=report_path, thresholds=thresholds,
                       analysed=analysed, reused=len(before), written=written)


def _previous_outputs(manifest: Path) -> dict[str, str]:
    """output path → output_key, from the last run's manifest."""
    out: dict[str, str] = {}
    if not manifest.is_file():
        return out
    try:
        for line in manifest.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            for kind in ("output", "wide"):
                if rec.get(kind):
                    out[rec[kind]] = rec.get("output_key", "")
    except (OSError, ValueError):
        return {}
    return out
