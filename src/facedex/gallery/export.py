"""A gallery in and out of Parquet: ``facedex export`` / ``facedex import``.

One row per face, with its person and its source image::

    person        string      the person's name
    path          string      the source image as enrolled (null: a face added as an embedding only)
    path_bytes    binary      the path's raw bytes when it is not valid UTF-8 (else null): lossless
    sha256        string      the source's content hash (null with path)
    box           float64[4]  x, y, width, height in the source image
    landmarks     float64[10] five (x, y) points
    det_score     float64     the detector's score
    embedding     float32[D]  the embedding, bit for bit
    face_id       int64       the face's id in the exported gallery (for reference only)

The file's key-value metadata ``facedex`` holds a JSON document with the
schema (``facedex.gallery-export/1``), the embedder card, the open-set
threshold and the counts. Rows are written in order of source, so a source's
faces are contiguous, in row groups of :data:`ROW_GROUP` faces; both ends
stream, so memory stays bounded at any gallery size.

Importing checks the embedder: a gallery that holds another embedder's
vectors refuses the file (:class:`facedex.errors.EmbedderMismatchError`); a
new gallery is created with the file's embedder and threshold. A source
already in the gallery for that person is skipped, so importing twice adds
nothing. The round trip is lossless: the same people, sources, boxes,
landmarks and embeddings (bit for bit), and the same threshold, so the same
answers.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..errors import GalleryError, MissingDependencyError
from .store import FaceRecord, GalleryStore, SourceRecord

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

log = logging.getLogger(__name__)

EXPORT_SCHEMA = "facedex.gallery-export/1"
#: Faces per Parquet row group (and per transaction on import).
ROW_GROUP = 50_000
META_KEY = b"facedex"


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise MissingDependencyError("pyarrow", "parquet", "Parquet export and import") from None
    return pa, pq


def arrow_schema(dim: int, extra: "list[pa.Field] | None" = None) -> "pa.Schema":
    """The Arrow schema of an export with ``dim``-dimensional embeddings."""
    pa, _ = _pyarrow()
    fields = [
        pa.field("person", pa.string(), nullable=False),
        pa.field("path", pa.string()),
        pa.field("path_bytes", pa.binary()),
        pa.field("sha256", pa.string()),
        pa.field("box", pa.list_(pa.float64(), 4)),
        pa.field("landmarks", pa.list_(pa.float64(), 10)),
        pa.field("det_score", pa.float64()),
        pa.field("embedding", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("face_id", pa.int64()),
    ]
    return pa.schema(fields + list(extra or []))


def path_columns(path: str | bytes | None) -> tuple[str | None, bytes | None]:
    """``(path, path_bytes)`` for a stored path (a ``str``, or the raw bytes of one
    that is not valid UTF-8)."""
    if path is None:
        return None, None
    raw = path if isinstance(path, bytes) else os.fsencode(path)
    try:
        return raw.decode("utf-8"), None
    except UnicodeDecodeError:
        return raw.decode("utf-8", "replace"), raw


def path_from_columns(path: str | None, path_bytes: bytes | None) -> str | None:
    return os.fsdecode(path_bytes) if path_bytes is not None else path


# --- export -------------------------------------------------------------------------------------
@dataclass
class ExportReport:
    path: str
    people: int
    sources: int
    faces: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.path, "people": self.people, "sources": self.sources, "faces": self.faces,
                "bytes": self.bytes, "seconds": round(self.seconds, 3)}


def export_parquet(store: GalleryStore, target: str | os.PathLike) -> ExportReport:
    """Write every face of the gallery to ``target`` (replaced atomically)."""
    from ..files import atomic_path

    pa, pq = _pyarrow()
    t0 = time.perf_counter()
    card = store.embedder_card()
    dim = int(card.get("embedding_dim") or 0)
    if not dim:
        raise GalleryError(f"{store.path}: the embedder card has no embedding size; cannot export")
    counts = store.counts()
    threshold = store.meta("threshold")
    meta = {"schema": EXPORT_SCHEMA, "kind": "gallery", "embedder": card,
            "threshold": json.loads(threshold) if threshold else None, "counts": counts,
            "gallery": str(store.path), "exported_at": time.time()}
    schema = arrow_schema(dim).with_metadata({META_KEY: json.dumps(meta).encode()})
    target = Path(target)
    if target.exists() and target.resolve() == Path(store.path).resolve():
        raise GalleryError(f"{target} is the gallery itself; export to another file")
    with atomic_path(target) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for batch in _face_batches(store, dim, schema):
                writer.write_table(batch, row_group_size=ROW_GROUP)
    return ExportReport(str(target), counts["people"], counts["sources"], counts["faces"], target.stat().st_size,
                        time.perf_counter() - t0)


def _face_batches(store: GalleryStore, dim: int, schema: "pa.Schema") -> Iterator["pa.Table"]:
    pa, _ = _pyarrow()
    cur = store._conn.execute(
        """SELECT p.name, s.path, s.sha256, f.box, f.landmarks, f.det_score, f.embedding, f.id
           FROM faces f JOIN people p ON p.id = f.person_id LEFT JOIN sources s ON s.id = f.source_id
           ORDER BY f.source_id IS NULL, f.source_id, f.id""")
    while True:
        rows = cur.fetchmany(ROW_GROUP)
        if not rows:
            return
        paths = [path_columns(r[1]) for r in rows]
        emb = np.frombuffer(b"".join(r[6] for r in rows), dtype="<f4")
        if emb.size != len(rows) * dim:
            raise GalleryError(f"{store.path}: stored embeddings do not have {dim} dimensions; the file is damaged")
        boxes = np.array([json.loads(r[3]) for r in rows], np.float64).reshape(-1)
        marks = np.array([json.loads(r[4]) for r in rows], np.float64).reshape(-1)
        yield pa.table({
            "person": pa.array([r[0] for r in rows], pa.string()),
            "path": pa.array([p[0] for p in paths], pa.string()),
            "path_bytes": pa.array([p[1] for p in paths], pa.binary()),
            "sha256": pa.array([r[2] for r in rows], pa.string()),
            "box": pa.FixedSizeListArray.from_arrays(pa.array(boxes, pa.float64()), 4),
            "landmarks": pa.FixedSizeListArray.from_arrays(pa.array(marks, pa.float64()), 10),
            "det_score": pa.array([float(r[5]) for r in rows], pa.float64()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb, pa.float32()), dim),
            "face_id": pa.array([int(r[7]) for r in rows], pa.int64()),
        }, schema=schema)


# --- import -------------------------------------------------------------------------------------
def read_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``facedex`` metadata of a Parquet file written by facedex (checked)."""
    _, pq = _pyarrow()
    p = Path(path)
    try:
        md = pq.read_schema(p).metadata or {}
    except FileNotFoundError:
        raise GalleryError(f"{p}: no such file") from None
    except (OSError, ValueError) as err:  # pyarrow.ArrowInvalid is a ValueError
        raise GalleryError(f"{p}: not a Parquet file ({err})") from None
    raw = md.get(META_KEY)
    if raw is None:
        raise GalleryError(f"{p}: not written by facedex (no 'facedex' metadata); export one with "
                           "`facedex export GALLERY FILE.parquet`")
    try:
        meta = json.loads(raw)
    except ValueError:
        raise GalleryError(f"{p}: its facedex metadata is not valid JSON") from None
    schema = str(meta.get("schema", ""))
    if not schema.startswith("facedex.") or not isinstance(meta.get("embedder"), dict):
        raise GalleryError(f"{p}: unknown facedex metadata (schema {schema!r})")
    if schema.split("/")[-1] != "1":
        raise GalleryError(f"{p}: written by a newer facedex (schema {schema}); upgrade facedex to import it")
    return meta


@dataclass
class ImportReport:
    files: list[str]
    sources_added: int = 0
    sources_skipped: int = 0
    faces_added: int = 0
    people: set[str] = field(default_factory=set)
    threshold: str = "kept"  # "imported" (set from the file), "kept" (the gallery's own), "none"
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "people": len(self.people), "sources_added": self.sources_added,
                "sources_skipped": self.sources_skipped, "faces_added": self.faces_added,
                "threshold": self.threshold, "seconds": round(self.seconds, 3)}


def iter_rows(path: str | os.PathLike, columns: list[str] | None = None,
              batch_size: int = ROW_GROUP) -> Iterator[dict[str, Any]]:
    """Column batches of a facedex Parquet file as numpy arrays / lists."""
    _, pq = _pyarrow()
    f = pq.ParquetFile(path)
    dim = f.schema_arrow.field("embedding").type.list_size
    for batch in f.iter_batches(batch_size=batch_size, columns=columns):
        cols: dict[str, Any] = {}
        for name in batch.schema.names:
            col = batch.column(name)
            if name == "embedding":
                cols[name] = col.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, dim)
            elif name in ("box", "landmarks"):
                width = 4 if name == "box" else 10
                flat = col.flatten().to_numpy(zero_copy_only=False)
                cols[name] = flat.reshape(-1, width) if len(flat) == len(col) * width else col.to_pylist()
            else:
                cols[name] = col.to_pylist()
        yield cols


def face_record(cols: dict[str, Any], i: int) -> FaceRecord:
    box = cols["box"][i]
    marks = np.asarray(cols["landmarks"][i], np.float64).reshape(5, 2)
    return FaceRecord(tuple(float(v) for v in box), tuple((float(x), float(y)) for x, y in marks),
                      float(cols["det_score"][i] or 0.0), cols["embedding"][i])


def import_parquet(store: GalleryStore, files: list[str | os.PathLike], *, set_threshold: bool = True) -> ImportReport:
    """Add the faces of exported files to the gallery in ``store`` (see the module doc).

    Every file is checked (facedex metadata, same embedder as the gallery)
    before anything is written.
    """
    t0 = time.perf_counter()
    have = store.embedder_card()
    metas = []
    for f in files:
        meta = read_meta(f)
        if meta.get("kind") != "gallery":
            raise GalleryError(f"{f}: a {meta.get('kind')!r} file, not a gallery export")
        got = meta["embedder"]
        if got.get("id") != have.get("id"):
            from ..errors import EmbedderMismatchError

            raise EmbedderMismatchError(
                f"{f} holds embeddings from {got.get('id')!r}; {store.path} holds {have.get('id')!r} — "
                "refusing to mix embedders. Import into a new gallery (it takes the file's embedder).")
        metas.append(meta)
    report = ImportReport([str(f) for f in files])
    embedder_id = have["id"]
    for f in files:
        _import_file(store, f, embedder_id, report)
    if set_threshold:
        theirs = next((m.get("threshold") for m in metas if m.get("threshold")), None)
        if store.meta("threshold") is None and theirs is not None:
            store.set_meta("threshold", json.dumps(theirs))
            report.threshold = "imported"
        elif store.meta("threshold") is None:
            report.threshold = "none"
    report.seconds = time.perf_counter() - t0
    return report


def _import_file(store: GalleryStore, path: str | os.PathLike, embedder_id: str, report: ImportReport) -> None:
    seen: set[tuple[str, str]] = set()
    pending: SourceRecord | None = None  # the last source of a batch may go on in the next
    for cols in iter_rows(path):
        records: list[SourceRecord] = []
        loose: dict[str, list[FaceRecord]] = {}
        for i in range(len(cols["person"])):
            person = cols["person"][i]
            face = face_record(cols, i)
            src_path = path_from_columns(cols["path"][i], cols["path_bytes"][i])
            sha = cols["sha256"][i]
            report.people.add(person)
            if src_path is None or sha is None:
                loose.setdefault(person, []).append(face)
                continue
            key = (person, sha)
            if pending is not None and (pending.person, pending.sha256) == key:
                pending.faces.append(face)  # type: ignore[attr-defined]
                continue
            if pending is not None:
                records.append(pending)
            if key in seen:
                raise GalleryError(f"{path}: the faces of {src_path!r} ({person}) are not contiguous; a facedex "
                                   "export keeps each source's faces together — was the file re-sorted?")
            seen.add(key)
            pending = SourceRecord(person, src_path, sha, [face])
        _store_records(store, records, loose, embedder_id, report)
    if pending is not None:
        _store_records(store, [pending], {}, embedder_id, report)


def _store_records(store: GalleryStore, records: list[SourceRecord], loose: dict[str, list[FaceRecord]],
                   embedder_id: str, report: ImportReport) -> None:
    if records:
        added = store.add_sources(records, embedder_id)
        for ids in added:
            if ids:
                report.sources_added += 1
                report.faces_added += len(ids)
            else:
                report.sources_skipped += 1
    for person, faces in loose.items():
        report.faces_added += len(store.add_faces(person, faces, embedder_id))


__all__ = ["EXPORT_SCHEMA", "ExportReport", "ImportReport", "arrow_schema", "export_parquet", "import_parquet",
           "iter_rows", "read_meta"]
