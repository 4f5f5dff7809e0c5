"""Per-image analysis for `clean`: decode, detect (recovering rotated images),
align, measure quality, embed. Cached by content hash in DST, so re-runs only
analyse new images and give the same result.

With ``--engine ray`` (:meth:`Analyzer.analyze_on_ray`) the images not in the
cache are analysed by :class:`RayAnalyzer` actors (each loads the models once)
through :func:`facedex.engines.ray.map_files`, and each batch that comes back
goes into the same cache, in the cache's own row format: the cache is the
resume point (no Parquet shards are needed), and every later step of `clean`
reads the analyses as it always does."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import cv2
import numpy as np

from ..errors import FacedexError
from ..files import utf8_path
from ..faces.quality import Quality, assess
from ..media import decode_image, read_file
from ..pipeline import FacePipeline
from ..types import Face

if TYPE_CHECKING:  # pragma: no cover
    from ..engines.ray import RayOptions

log = logging.getLogger(__name__)

#: Bump when analysis changes in a way that invalidates cached results.
ANALYSIS_VERSION = 3

#: Context signature: the face and its surroundings (the ArcFace template
#: shrunk to 60 % of a 48x48 window), grey, slightly blurred. Two copies of one
#: photo (resized, recompressed, cropped) correlate above ~0.8; different
#: photos of one person, even from one event, rarely do.
SIGNATURE_SIZE = 48
SIGNATURE_ZOOM = 0.6


@dataclass(frozen=True)
class FaceInfo:
    face: Face
    quality: Quality
    embedding: np.ndarray
    signature: np.ndarray  # uint8 SIGNATURE_SIZE^2: the face in its context (near-duplicate test)

    def to_json(self) -> dict:
        return {"box": list(self.face.box), "landmarks": [list(p) for p in self.face.landmarks],
                "score": self.face.score, "quality": self.quality.__dict__}


@dataclass(frozen=True)
class ImageAnalysis:
    sha256: str
    width: int
    height: int
    rotation: int  # quarter turns counter-clockwise applied before detection (np.rot90 k)
    faces: tuple[FaceInfo, ...]
    error: str | None = None
    thumb: np.ndarray | None = None  # uint8 16x16 grey of the whole (rotated) image: resized copies match


def image_thumb(image: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (16, 16), interpolation=cv2.INTER_AREA).reshape(-1)


def rotate(image: np.ndarray, k: int) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, k)) if k % 4 else image


def signature(image: np.ndarray, face: Face) -> np.ndarray:
    """The face and its surroundings, aligned on the landmarks: uint8 grey, 48x48."""
    from ..faces.align import TEMPLATE_112, similarity_transform

    size = SIGNATURE_SIZE
    tpl = (TEMPLATE_112 - 56.0) * (size / 112.0 * SIGNATURE_ZOOM) + size / 2.0
    m = similarity_transform(face.landmarks_array(), tpl)
    grey = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    warped = cv2.warpAffine(grey, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return cv2.GaussianBlur(warped, (3, 3), 0).reshape(-1)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two signatures."""
    x, y = a.astype(np.float32), b.astype(np.float32)
    x, y = x - x.mean(), y - y.mean()
    den = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(x @ y) / den if den > 0 else 0.0


#: One analysis as the cache stores it (and as Ray actors send it back), after its sha256.
ROW_COLUMNS = ("width", "height", "rotation", "error", "faces", "embeddings", "signatures", "thumb")


def to_row(a: ImageAnalysis) -> tuple:
    """``a`` as a row of :data:`ROW_COLUMNS` (plain numbers, text and bytes)."""
    vecs = np.stack([f.embedding for f in a.faces]).astype("<f4").tobytes() if a.faces else b""
    sigs = np.stack([f.signature for f in a.faces]).astype(np.uint8).tobytes() if a.faces else b""
    thumb = a.thumb.astype(np.uint8).tobytes() if a.thumb is not None else None
    return (a.width, a.height, a.rotation, a.error, json.dumps([f.to_json() for f in a.faces]), vecs, sigs, thumb)


def _plain(value: Any) -> Any:
    """A value of a column Ray Data returned, as the cache stores it: a column
    whose values were all ``None`` comes back as NaN, numbers as numpy scalars."""
    if isinstance(value, (float, np.floating)) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def from_row(sha: str, row: Sequence) -> ImageAnalysis:
    """The analysis of ``sha`` from a row of :data:`ROW_COLUMNS`."""
    w, h, rot, err, faces_json, blob, sigs, thumb = row
    faces = []
    if faces_json:
        meta = json.loads(faces_json)
        vecs = np.frombuffer(blob, dtype="<f4").reshape(len(meta), -1) if meta else []
        sig = np.frombuffer(sigs, dtype=np.uint8).reshape(len(meta), -1) if meta else []
        for m, v, g in zip(meta, vecs, sig):
            face = Face(tuple(m["box"]), tuple(tuple(p) for p in m["landmarks"]), m["score"])
            faces.append(FaceInfo(face, Quality(**m["quality"]), v.astype(np.float32), g.copy()))
    th = np.frombuffer(thumb, dtype=np.uint8).copy() if thumb else None
    return ImageAnalysis(sha, int(w), int(h), int(rot), tuple(faces), err if isinstance(err, str) and err else None, th)


class AnalysisCache:
    """SQLite cache of analyses in ``DST/.facedex-clean/cache.sqlite``; also the
    journal of every file `clean` has written into DST (so only those are ever removed)."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(str(path), isolation_level=None)
        self.db.execute("PRAGMA journal_mode = DELETE")
        if self.db.execute("PRAGMA user_version").fetchone()[0] != ANALYSIS_VERSION:
            # an older cache layout: it is only a cache, start it again (the journal of outputs stays)
            self.db.execute("DROP TABLE IF EXISTS analysis")
            self.db.execute(f"PRAGMA user_version = {ANALYSIS_VERSION}")
        self.db.execute("""CREATE TABLE IF NOT EXISTS analysis (
            sha256 TEXT NOT NULL, key TEXT NOT NULL, width INTEGER, height INTEGER, rotation INTEGER,
            error TEXT, faces TEXT, embeddings BLOB, signatures BLOB, thumb BLOB, PRIMARY KEY (sha256, key))""")
        self.db.execute("CREATE TABLE IF NOT EXISTS outputs (path TEXT PRIMARY KEY)")

    def get(self, sha: str, key: str) -> ImageAnalysis | None:
        row = self.db.execute(f"SELECT {', '.join(ROW_COLUMNS)} FROM analysis WHERE sha256 = ? AND key = ?",
                              (sha, key)).fetchone()
        return None if row is None else from_row(sha, row)

    def put_many(self, key: str, analyses: Iterable[ImageAnalysis]) -> None:
        rows = [(a.sha256, key, *to_row(a)) for a in analyses]
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO analysis VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        self.db.execute("COMMIT")

    @staticmethod
    def _key(rel: str) -> str | bytes:
        """File names that are not UTF-8 (POSIX bytes) are kept as their bytes."""
        try:
            rel.encode("utf-8")
            return rel
        except UnicodeEncodeError:
            return os.fsencode(rel)

    def record_output(self, rel: str) -> None:
        self.db.execute("INSERT OR IGNORE INTO outputs(path) VALUES (?)", (self._key(rel),))

    def forget_output(self, rel: str) -> None:
        self.db.execute("DELETE FROM outputs WHERE path = ?", (self._key(rel),))

    def outputs(self) -> set[str]:
        return {os.fsdecode(r[0]) if isinstance(r[0], bytes) else r[0]
                for r in self.db.execute("SELECT path FROM outputs")}

    def close(self) -> None:
        self.db.close()


class Analyzer:
    """Runs the pipeline on images, with rotation recovery, batched."""

    def __init__(self, pipeline: FacePipeline, *, rotation_probe_below: float = 0.9, rotation_margin: float = 0.02,
                 batch: int = 16):
        self.pipeline = pipeline
        self.rotation_probe_below = rotation_probe_below
        self.rotation_margin = rotation_margin
        self.batch = batch

    @property
    def key(self) -> str:
        cfg = self.pipeline.detector.config
        raw = json.dumps([ANALYSIS_VERSION, self.pipeline.embedder_id, self.pipeline.detector.card.id,
                          cfg.min_score, cfg.nms_threshold, cfg.min_face, cfg.max_side,
                          self.rotation_probe_below, self.rotation_margin])
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    def _best_rotation(self, image: np.ndarray, upright: list[Face]) -> tuple[int, list[Face]]:
        """Upright faces score above ~0.9; YuNet also finds upside-down and sideways
        faces, with lower scores, so an image whose best face scores below
        ``rotation_probe_below`` is also tried at 90°, 180° and 270°, and the
        orientation with the clearly best face wins (measured on LFW: right for
        every rotated image, and never moves an upright one)."""
        best_k, best_faces = 0, upright
        best_score = max((f.score for f in upright), default=0.0)
        if best_score >= self.rotation_probe_below:
            return best_k, best_faces
        for k in (1, 2, 3):
            faces = self.pipeline.detector.detect(rotate(image, k))
            score = max((f.score for f in faces), default=0.0)
            if score > best_score + self.rotation_margin:
                best_k, best_faces, best_score = k, faces, score
        return best_k, best_faces

    def analyze(self, items: list[tuple[str, Path]], cache: AnalysisCache,
                progress: Callable[[int], None] | None = None,
                stop: threading.Event | None = None) -> dict[str, ImageAnalysis]:
        """``items`` are (sha256, path); returns analyses by sha256, from the cache when possible.
        When ``stop`` is set, returns after the batch in hand (every finished batch is in the cache)."""
        key = self.key
        out: dict[str, ImageAnalysis] = {}
        todo = []
        for sha, path in items:
            if sha in out:
                continue
            hit = cache.get(sha, key)
            if hit is not None:
                out[sha] = hit
                if progress:
                    progress(1)
            else:
                todo.append((sha, path))
        for start in range(0, len(todo), self.batch):
            if stop is not None and stop.is_set():
                break
            chunk = todo[start : start + self.batch]
            done = self._analyze_chunk(chunk)
            cache.put_many(key, done)
            for a in done:
                out[a.sha256] = a
            if progress:
                progress(len(chunk))
        return out

    def _analyze_chunk(self, chunk: list[tuple[str, Path]]) -> list[ImageAnalysis]:
        decoded: list[tuple[str, np.ndarray | None, str | None]] = []
        for sha, path in chunk:
            try:
                decoded.append((sha, decode_image(read_file(path), str(path)), None))
            except FacedexError as err:
                decoded.append((sha, None, str(err)))
        return self._analyze_decoded(decoded)

    def _analyze_decoded(self, decoded: list[tuple[str, np.ndarray | None, str | None]]) -> list[ImageAnalysis]:
        """``(sha256, image or None, error or None)`` → analyses, in that order."""
        images = [im for _, im, _ in decoded if im is not None]
        detections = iter(self.pipeline.detector.detect_batch(images))
        pending = []  # (sha, h, w, k, rotated image, faces)
        results: dict[str, ImageAnalysis] = {}
        for sha, image, err in decoded:
            if image is None:
                results[sha] = ImageAnalysis(sha, 0, 0, 0, (), err)
                continue
            k, faces = self._best_rotation(image, next(detections))
            pending.append((sha, image.shape[0], image.shape[1], k, rotate(image, k), faces))
        crops, owners = [], []
        for i, (_, _, _, _, rimg, faces) in enumerate(pending):
            for f in faces:
                crops.append(self.pipeline.embedder.align(rimg, f))
                owners.append(i)
        emb = self.pipeline.embedder.embed_crops(crops)
        per: list[list[FaceInfo]] = [[] for _ in pending]
        for crop, owner, vec in zip(crops, owners, emb):
            face = pending[owner][5][len(per[owner])]
            per[owner].append(FaceInfo(face, assess(face, crop), vec, signature(pending[owner][4], face)))
        for (sha, h, w, k, rimg, _), infos in zip(pending, per):
            results[sha] = ImageAnalysis(sha, w, h, k, tuple(infos), None, image_thumb(rimg))
        return [results[sha] for sha, _, _ in decoded]

    def analyze_on_ray(self, items: list[tuple[str, Path]], cache: AnalysisCache, options: "RayOptions",
                       runtime: str | None = None, progress: Callable[[int], None] | None = None,
                       stop: threading.Event | None = None) -> dict[str, ImageAnalysis]:
        """:meth:`analyze`, with the images not in the cache analysed on Ray
        (:class:`RayAnalyzer` actors); each batch is put in the cache as it comes
        back, so a stopped run keeps what came back. File names that are not
        valid UTF-8 (Ray's readers need UTF-8) are analysed here. ``runtime``:
        the inference runtime the actors use (that of this analyzer's pipeline)."""
        from ..engines.ray import map_files

        key = self.key
        out: dict[str, ImageAnalysis] = {}
        remote: dict[str, str] = {}  # path -> sha256
        local: list[tuple[str, Path]] = []
        sent: set[str] = set()
        for sha, path in items:
            if sha in sent:
                continue
            sent.add(sha)
            hit = cache.get(sha, key)
            if hit is not None:
                out[sha] = hit
                if progress:
                    progress(1)
            elif utf8_path(str(path)):
                remote[os.path.abspath(path)] = sha
            else:
                local.append((sha, path))
        kwargs = {"card": self.pipeline.embedder.card.to_dict(),
                  "detector_config": dataclasses.asdict(self.pipeline.detector.config),
                  "runtime": runtime, "rotation_probe_below": self.rotation_probe_below,
                  "rotation_margin": self.rotation_margin}
        batches = map_files(sorted(remote), RayAnalyzer, kwargs, options)
        try:
            for batch in batches:
                done = [from_row(remote[str(path)], [_plain(v) for v in row])
                        for path, *row in zip(batch["path"], *(batch[c] for c in ROW_COLUMNS))]
                cache.put_many(key, done)
                out.update((a.sha256, a) for a in done)
                if progress:
                    progress(len(done))
                if stop is not None and stop.is_set():
                    return out
        finally:
            batches.close()
        out.update(self.analyze(local, cache, progress=progress, stop=stop))
        return out


class RayAnalyzer:
    """A Ray actor for ``clean --engine ray``: the models load once; each call
    decodes and analyses a batch of images (``{"bytes", "path"}``) exactly as
    :class:`Analyzer` does, and returns one row per image: ``path`` and the
    cache's :data:`ROW_COLUMNS`."""

    def __init__(self, card: dict, detector_config: dict, runtime: str | None, threads: int,
                 rotation_probe_below: float, rotation_margin: float):
        from ..engines.ray import actor_pipeline

        self.analyzer = Analyzer(actor_pipeline(card, detector_config, runtime, threads),
                                 rotation_probe_below=rotation_probe_below, rotation_margin=rotation_margin)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        decoded: list[tuple[str, np.ndarray | None, str | None]] = []
        for data, path in zip(batch["bytes"], batch["path"]):
            try:
                decoded.append((str(path), decode_image(bytes(data), str(path)), None))
            except FacedexError as err:
                decoded.append((str(path), None, str(err)))
        rows = [to_row(a) for a in self.analyzer._analyze_decoded(decoded)]
        cols: dict[str, Any] = {"path": np.array([str(p) for p in batch["path"]], dtype=object)}
        for n, name in enumerate(ROW_COLUMNS):
            cols[name] = np.array([r[n] for r in rows], dtype=object)
        return cols
