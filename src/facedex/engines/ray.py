"""Batch work on a Ray cluster: detect and embed many images with Ray Data.

``facedex enroll GALLERY SOURCE --engine ray`` (and :func:`embed_files` for
``facedex index --engine ray``, which also asks the actors for each face's
quality, crop and image size; :func:`map_files` runs another job's actor —
``facedex clean --engine ray``'s analysis — over files and hands back its
batches):

1. The inputs are listed on the driver exactly as the local engine lists them
   (person folders, files recognised by content; what is ignored or fails at
   this stage is reported the same way) and cut into **shards** of
   :attr:`RayOptions.shard_size` images, each named by a hash of its images and
   of the settings (embedder, detector, ``--multiple``).
2. Shards whose Parquet file is already in the shard folder are **skipped**
   (an interrupted run resumes; re-running a finished one embeds nothing).
3. For the others, Ray Data reads the files as binary
   (``ray.data.read_binary_files``), and decodes, detects, aligns and embeds
   them in ``map_batches`` on a pool of long-lived actors: each actor loads the
   ONNX models once, with onnxruntime's threads set to the actor's CPUs.
4. The driver gathers each shard's rows and writes the shard atomically
   (``enroll-00012-<hash>.parquet``: the gallery export's columns plus
   ``status``, ``code``, ``reason``; metadata names the embedder).
5. The shards are **bulk-loaded** into the gallery (:func:`load_shards`, also
   what ``facedex import GALLERY SHARD_FOLDER`` does): failed images are
   reported with their error code, single faces stored in large transactions,
   images with several faces decided by the same rule as the local engine
   (``--multiple auto``: the face that matches the person's other photos).

``address=None`` starts a local Ray (the CPUs of this machine); an address
(``"ray://head:10001"``, ``"auto"``) attaches to an existing cluster, whose
nodes need facedex installed (``pip install 'facedex[ray]'``) and the input
files at the same paths (a shared file system, or any path Ray's file
readers understand).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, FacedexError, GalleryError, MissingDependencyError
from ..files import utf8_path
from ..types import EnrollItem, EnrollReport

if TYPE_CHECKING:  # pragma: no cover
    from ..identify.gallery import Gallery

log = logging.getLogger(__name__)

SHARD_SCHEMA = "facedex.enroll-shard/1"
FILES_SCHEMA = "facedex.faces-shard/1"


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise MissingDependencyError("ray", "ray", "--engine ray") from None
    return ray


def require_ray() -> None:
    """Raise :class:`facedex.errors.MissingDependencyError` now (before any
    work) when Ray is not installed."""
    _ray()


@dataclass
class RayOptions:
    """How a batch job runs on Ray.

    ``address``: an existing cluster (``None``: start a local Ray on this
    machine's CPUs, or ``num_cpus`` of them); ``actors``: embedding actors
    (default: as many as the cluster's CPUs allow); ``cpus_per_actor``: CPUs
    each actor reserves, and onnxruntime's threads in it; ``batch_size``:
    images per ``map_batches`` call; ``shard_size``: images per shard file;
    ``shards``: the shard folder (default: ``GALLERY.shards/`` beside the gallery).
    """

    address: str | None = None
    actors: int | None = None
    cpus_per_actor: int = 1
    batch_size: int = 32
    shard_size: int = 1000
    shards: str | os.PathLike | None = None
    num_cpus: int | None = None

    def check(self) -> "RayOptions":
        for name in ("cpus_per_actor", "batch_size", "shard_size"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.actors is not None and self.actors < 1:
            raise ConfigError(f"actors must be at least 1, got {self.actors}")
        return self


@contextlib.contextmanager
def ray_session(options: RayOptions):
    """``ray.init`` for one job (attach to ``address``, or a local Ray), shut down
    after unless Ray was already initialised by the caller."""
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                              "logging_level": logging.WARNING, "configure_logging": False}
    if options.address:
        kwargs["address"] = options.address
    elif options.num_cpus:
        kwargs["num_cpus"] = int(options.num_cpus)
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = options.address or "a local Ray"
        raise ConfigError(f"cannot start or reach {where} ({err}); check --ray-address "
                          "(e.g. ray://HEAD:10001, or 'auto' on a cluster node)") from None
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        yield ray
    finally:
        ray.shutdown()


# --- the work done in each actor --------------------------------------------------------------------
def actor_pipeline(card: dict, detector_config: dict, runtime: str | None, threads: int):
    """The :class:`facedex.pipeline.FacePipeline` an actor runs: the embedder of
    ``card`` (the registered one when it is the same model), the detector
    settings, onnxruntime on ``threads`` threads (the actor's CPUs)."""
    os.environ["FACEDEX_THREADS"] = str(max(1, int(threads)))
    from .. import models
    from ..faces.detect import DetectorConfig
    from ..pipeline import FacePipeline

    stored = models.ModelCard.from_dict(card)
    registered = models.CARDS.get(stored.name)
    card_obj = registered if registered is not None and registered.id == stored.id else stored
    return FacePipeline(embedder=card_obj, detector_config=DetectorConfig(**detector_config), runtime=runtime)


def _dataset(ray, paths: Sequence[str], actor: type, actor_kwargs: dict[str, Any], options: RayOptions):
    """Ray Data reading ``paths`` as binary into ``map_batches(actor)`` on a pool of
    long-lived actors; returns the dataset and the pool's size."""
    cpus = int(ray.cluster_resources().get("CPU", 1))
    actors = options.actors or max(1, cpus // options.cpus_per_actor)
    # reading is light: its tasks must not wait for CPUs the actors hold
    ds = ray.data.read_binary_files(list(paths), include_paths=True, num_cpus=0,
                                    override_num_blocks=max(1, min(len(paths) // 16 + 1, 16 * actors)))
    ds = ds.map_batches(actor, fn_constructor_kwargs={**actor_kwargs, "threads": options.cpus_per_actor},
                        batch_size=options.batch_size, compute=ray.data.ActorPoolStrategy(size=actors),
                        num_cpus=options.cpus_per_actor, batch_format="numpy")
    return ds, actors


def map_files(paths: Sequence[str], actor: type, actor_kwargs: dict[str, Any],
              options: RayOptions | None = None) -> Iterator[dict[str, Any]]:
    """Run ``actor`` (a class: ``actor(**actor_kwargs, threads=N)`` once per actor,
    then called with batches ``{"bytes", "path"}`` of numpy arrays) over the files
    ``paths`` on Ray, and yield its output batches (numpy columns) as they come
    back, in no particular order. For batch jobs whose results are kept by the
    caller as they arrive (``facedex clean --engine ray``: its analysis cache).
    Closing the generator ends the Ray session it started."""
    options = (options or RayOptions()).check()
    if not paths:
        return
    with ray_session(options) as ray:
        ds, _ = _dataset(ray, paths, actor, actor_kwargs, options)
        yield from ds.iter_batches(batch_format="numpy", batch_size=None)


class FaceActor:
    """A long-lived Ray actor: the models load once; each call decodes, detects,
    aligns and embeds a batch of images (``{"bytes", "path"}``).

    One output row per face kept (``status``: ``"face"``, or ``"ambiguous"`` for
    each face of an image whose choice is left to the loader), or one
    ``"failed"`` row (with ``code`` and ``reason``) for an image that could not
    be used. ``faces="all"`` keeps every face (indexing), and every row also
    tells the image's ``width`` and ``height`` (0 when it could not be
    decoded); ``"one"`` applies an enrollment's ``multiple`` policy.
    ``quality`` adds each face's quality weight (as the video tracker computes
    it); ``crops`` adds the small JPEG of each face that the library keeps
    (:func:`facedex.faces.crop.crop_jpeg`), so that nothing is decoded twice.
    """

    def __init__(self, card: dict, detector_config: dict, runtime: str | None, threads: int,
                 faces: str = "one", multiple: str = "auto", quality: bool = False, crops: bool = False):
        self.pipeline = actor_pipeline(card, detector_config, runtime, threads)
        self.dim = self.pipeline.embedder.dim
        self.faces, self.multiple, self.quality, self.crops = faces, multiple, quality, crops

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        from ..identify.enroll import PIXEL_BUDGET
        from ..media import decode_image

        rows: list[dict[str, Any]] = []
        images: list[tuple[str, str, np.ndarray]] = []
        pixels = 0
        for data, path in zip(batch["bytes"], batch["path"]):
            path = str(path)
            data = bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            try:
                rgb = decode_image(data, path)
            except FacedexError as err:
                rows.append(self._sized(_failed_row(path, sha, err.code, str(err)), None))
                continue
            images.append((path, sha, rgb))
            pixels += rgb.shape[0] * rgb.shape[1]
            if pixels >= PIXEL_BUDGET:
                rows += self._faces(images)
                images, pixels = [], 0
        rows += self._faces(images)
        return _columns(rows, self.dim)

    def _sized(self, row: dict[str, Any], rgb: np.ndarray | None) -> dict[str, Any]:
        if self.faces == "all":
            row["width"], row["height"] = (0, 0) if rgb is None else (int(rgb.shape[1]), int(rgb.shape[0]))
        return row

    def _faces(self, images: list[tuple[str, str, np.ndarray]]) -> list[dict[str, Any]]:
        from ..errors import MultipleFacesError, NoFaceError

        if not images:
            return []
        embedder = self.pipeline.embedder
        detections = self.pipeline.detector.detect_batch([im for _, _, im in images])
        todo: list[tuple[int, Any, str, int]] = []  # (image, face, status, faces in image)
        rows: list[dict[str, Any]] = []
        for n, ((path, sha, _), faces) in enumerate(zip(images, detections)):
            if not faces:
                err = NoFaceError(path, "no face found (faces smaller than the minimum size are ignored)")
                rows.append(self._sized(_failed_row(path, sha, err.code, str(err)), images[n][2]))
            elif self.faces == "all" or len(faces) == 1:
                todo += [(n, f, "face", len(faces)) for f in faces]
            elif self.multiple == "largest":
                todo.append((n, max(faces, key=lambda f: f.area), "face", len(faces)))
            elif self.multiple == "reject":
                err = MultipleFacesError(path, f"{len(faces)} faces found; an enrollment image must show one "
                                               "person (crop it, or use --multiple auto or largest)")
                rows.append(_failed_row(path, sha, err.code, str(err)))
            else:
                todo += [(n, f, "ambiguous", len(faces)) for f in faces]
        crops = [embedder.align(images[n][2], f) for n, f, _, _ in todo]
        vectors = embedder.embed_crops(crops)
        for (n, f, status, count), crop, vec in zip(todo, crops, vectors):
            path, sha, rgb = images[n]
            row = {"path": path, "sha256": sha, "status": status, "code": None, "reason": None,
                   "faces_in_image": count, "box": list(map(float, f.box)),
                   "landmarks": [float(v) for pt in f.landmarks for v in pt], "det_score": float(f.score),
                   "embedding": vec}
            if self.quality:
                from ..video.tracker import face_weight

                h, w = rgb.shape[:2]
                row["quality"] = float(face_weight(f, crop, w, h))
            if self.crops:
                from ..faces.crop import crop_jpeg

                row["crop"] = crop_jpeg(rgb, f.box)
            rows.append(self._sized(row, rgb))
        return rows


#: Columns only some jobs ask for (``FaceActor``'s ``quality``, ``crops``, ``faces="all"``):
#: name → (numpy dtype in Ray batches, Arrow type name in shards, value for a row without it).
OPTIONAL_COLUMNS = {"quality": (np.float64, "float64", 0.0), "width": (np.int64, "int32", 0),
                    "height": (np.int64, "int32", 0), "crop": (object, "binary", None)}


def _failed_row(path: str, sha: str, code: str, reason: str) -> dict[str, Any]:
    return {"path": path, "sha256": sha, "status": "failed", "code": code, "reason": reason, "faces_in_image": 0,
            "box": [0.0] * 4, "landmarks": [0.0] * 10, "det_score": 0.0, "embedding": None}


def _columns(rows: list[dict[str, Any]], dim: int) -> dict[str, Any]:
    """Rows as the column batch Ray Data carries (fixed-width numeric columns)."""
    out: dict[str, Any] = {
        "path": np.array([r["path"] for r in rows], dtype=object),
        "sha256": np.array([r["sha256"] for r in rows], dtype=object),
        "status": np.array([r["status"] for r in rows], dtype=object),
        "code": np.array([r["code"] or "" for r in rows], dtype=object),
        "reason": np.array([r["reason"] or "" for r in rows], dtype=object),
        "faces_in_image": np.array([r["faces_in_image"] for r in rows], dtype=np.int64),
        "box": np.array([r["box"] for r in rows], dtype=np.float64).reshape(-1, 4),
        "landmarks": np.array([r["landmarks"] for r in rows], dtype=np.float64).reshape(-1, 10),
        "det_score": np.array([r["det_score"] for r in rows], dtype=np.float64),
        "embedding": np.stack([np.zeros(dim, np.float32) if r["embedding"] is None else r["embedding"]
                               for r in rows]).astype(np.float32) if rows else np.zeros((0, dim), np.float32),
    }
    for name, (dtype, _, missing) in OPTIONAL_COLUMNS.items():
        if any(name in r for r in rows):
            out[name] = np.array([r.get(name, missing) for r in rows], dtype=dtype)
    return out


# --- shards ---------------------------------------------------------------------------------------
@dataclass
class Shard:
    number: int
    key: str
    items: list[tuple[str, str]]  # (person, path)

    def name(self, prefix: str) -> str:
        return f"{prefix}-{self.number:05d}-{self.key}.parquet"


def make_shards(items: Sequence[tuple[str, str]], size: int, settings: dict[str, Any]) -> list[Shard]:
    """Cut ``(person, path)`` items into shards named by a hash of their content and ``settings``."""
    ordered = sorted(items)
    shards = []
    stamp = json.dumps(settings, sort_keys=True)
    for number, start in enumerate(range(0, len(ordered), size)):
        chunk = ordered[start:start + size]
        h = hashlib.sha256((stamp + "\n" + json.dumps(chunk)).encode("utf-8", "surrogateescape")).hexdigest()[:16]
        shards.append(Shard(number, h, chunk))
    return shards


def _shard_schema(dim: int, meta: dict[str, Any], optional: Sequence[str] = ()):
    import pyarrow as pa

    from ..gallery.export import META_KEY, arrow_schema

    extra = [pa.field("status", pa.string()), pa.field("code", pa.string()), pa.field("reason", pa.string()),
             pa.field("faces_in_image", pa.int32())]
    extra += [pa.field(name, getattr(pa, OPTIONAL_COLUMNS[name][1])()) for name in optional]
    return arrow_schema(dim, extra).with_metadata({META_KEY: json.dumps(meta).encode()})


def write_shard(path: Path, rows: list[dict[str, Any]], dim: int, meta: dict[str, Any]) -> None:
    """One shard file, written atomically (the gallery export's columns plus status)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..files import atomic_path
    from ..gallery.export import path_columns

    optional = [name for name in OPTIONAL_COLUMNS if any(name in r for r in rows)]
    schema = _shard_schema(dim, meta, optional)
    paths = [path_columns(r["path"]) for r in rows]
    failed = [r["status"] == "failed" for r in rows]
    emb = np.stack([np.asarray(r["embedding"], np.float32) for r in rows]) if rows else np.zeros((0, dim), np.float32)
    cols = {
        "person": pa.array([r.get("person") or "" for r in rows], pa.string()),
        "path": pa.array([p[0] for p in paths], pa.string()),
        "path_bytes": pa.array([p[1] for p in paths], pa.binary()),
        "sha256": pa.array([r["sha256"] for r in rows], pa.string()),
        "box": pa.FixedSizeListArray.from_arrays(pa.array(np.asarray([r["box"] for r in rows], np.float64).reshape(-1),
                                                          pa.float64()), 4),
        "landmarks": pa.FixedSizeListArray.from_arrays(
            pa.array(np.asarray([r["landmarks"] for r in rows], np.float64).reshape(-1), pa.float64()), 10),
        "det_score": pa.array([float(r["det_score"]) for r in rows], pa.float64()),
        "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1), pa.float32()), dim),
        "face_id": pa.array([None] * len(rows), pa.int64()),
        "status": pa.array([r["status"] for r in rows], pa.string()),
        "code": pa.array([r["code"] if f else None for r, f in zip(rows, failed)], pa.string()),
        "reason": pa.array([r["reason"] if f else None for r, f in zip(rows, failed)], pa.string()),
        "faces_in_image": pa.array([int(r["faces_in_image"]) for r in rows], pa.int32()),
    }
    for name in optional:
        values = [r.get(name, OPTIONAL_COLUMNS[name][2]) for r in rows]
        if name == "crop":
            values = [bytes(v) if v is not None else None for v in values]
        cols[name] = pa.array(values, getattr(pa, OPTIONAL_COLUMNS[name][1])())
    table = pa.table(cols, schema=schema)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")


# --- running the shards on Ray -------------------------------------------------------------------------
@dataclass
class BatchRun:
    """What one Ray run did: shard files (all of them, in order), how many were
    skipped as already written, images processed, seconds."""

    shard_files: list[Path] = field(default_factory=list)
    shards_skipped: int = 0
    images: int = 0
    seconds: float = 0.0
    actors: int = 0


def run_shards(shards: list[Shard], folder: Path, prefix: str, meta: dict[str, Any], actor_kwargs: dict[str, Any],
               options: RayOptions, *, on_shard: Callable[[Path, int], None] | None = None) -> BatchRun:
    """Embed the shards not yet in ``folder`` on Ray; write each as it completes."""
    folder.mkdir(parents=True, exist_ok=True)
    run = BatchRun(shard_files=[folder / s.name(prefix) for s in shards])
    todo = [s for s, f in zip(shards, run.shard_files) if not f.exists()]
    run.shards_skipped = len(shards) - len(todo)
    if not todo:
        return run
    t0 = time.perf_counter()
    where: dict[str, tuple[int, str]] = {}  # path -> (shard number, person)
    expected: dict[int, int] = {}
    for s in todo:
        for person, path in s.items:
            where[path] = (s.number, person)
        expected[s.number] = len({p for _, p in s.items})
    by_number = {s.number: s for s in todo}
    dim = int(meta["embedder"].get("embedding_dim") or 128)
    with ray_session(options) as ray:
        ds, run.actors = _dataset(ray, sorted(where), FaceActor, actor_kwargs, options)
        all_faces = actor_kwargs.get("faces") == "all"
        pending: dict[int, list[dict[str, Any]]] = {}
        have: dict[int, dict[str, int]] = {}  # shard -> path -> rows received
        want: dict[int, dict[str, int]] = {}  # shard -> path -> rows expected
        for batch in ds.iter_batches(batch_format="numpy", batch_size=None):
            touched = set()
            for i in range(len(batch["path"])):
                path = str(batch["path"][i])
                number, person = where[path]
                row = {k: batch[k][i] for k in batch}
                row["path"], row["person"] = path, person
                pending.setdefault(number, []).append(row)
                have.setdefault(number, {})[path] = have.get(number, {}).get(path, 0) + 1
                status, n = str(row["status"]), int(row["faces_in_image"])
                want.setdefault(number, {})[path] = n if (status == "ambiguous" or (status == "face" and all_faces)) \
                    else 1
                touched.add(number)
            for number in touched:
                got, need = have[number], want[number]
                if len(got) < expected[number] or any(got[p] < need[p] for p in got):
                    continue
                target = folder / by_number[number].name(prefix)
                write_shard(target, _sorted_rows(pending.pop(number), by_number[number]), dim,
                            {**meta, "shard": number, "images": expected[number]})
                run.images += expected[number]
                if on_shard:
                    on_shard(target, expected[number])
        if pending:
            raise GalleryError(f"the Ray run ended with {len(pending)} shard(s) incomplete; run the command again "
                               "(finished shards are kept)")
    run.seconds = time.perf_counter() - t0
    return run


def _sorted_rows(rows: list[dict[str, Any]], shard: Shard) -> list[dict[str, Any]]:
    order = {path: i for i, (_, path) in enumerate(shard.items)}
    return sorted(rows, key=lambda r: order[r["path"]])


# --- enroll ------------------------------------------------------------------------------------------
def enroll(gallery: "Gallery", sources: Sequence[str | os.PathLike], person: str | None = None, *,
           multiple: str = "auto", options: RayOptions | None = None,
           progress: Callable[[EnrollItem, int, int], None] | None = None) -> EnrollReport:
    """``facedex enroll --engine ray``: the same people, faces and answers as
    :meth:`facedex.Gallery.enroll`, computed on Ray (see the module doc)."""
    from ..identify.enroll import MULTIPLE_POLICIES, Enrollment

    options = (options or RayOptions()).check()
    if multiple not in MULTIPLE_POLICIES:
        raise ConfigError(f"multiple must be one of {', '.join(MULTIPLE_POLICIES)}; got {multiple!r}")
    planner = Enrollment(gallery.store, None, gallery.embedder_card.id, multiple=multiple)  # type: ignore[arg-type]
    items: list[EnrollItem] = []
    todo: list[tuple[str, str]] = []
    names: list[str] = []
    for src in sources:
        plan = planner.plan(src, person)
        items += plan.items
        names += plan.names
        for p in plan.pending:
            if p.data is not None or p.image is not None:
                raise ConfigError("--engine ray enrolls files; give paths (uploads use the local engine)")
            if not utf8_path(p.path):
                items.append(EnrollItem(p.path, p.person, "failed",
                                        f"{p.path}: the file name is not valid UTF-8, which Ray's readers need; "
                                        "enroll it with the local engine", code="media.not_found"))
                continue
            todo.append((p.person, os.path.abspath(p.path)))
    planner._name_warnings(names)
    meta, actor_kwargs = _settings(gallery, "one", multiple)
    shards = make_shards(todo, options.shard_size, {"embedder": gallery.embedder_card.id, "faces": "one",
                                                    "multiple": multiple, "detector": actor_kwargs["detector_config"]})
    folder = Path(options.shards) if options.shards else shard_folder(gallery.path)
    run = run_shards(shards, folder, "enroll", meta, actor_kwargs, options)
    report = load_shards(gallery, run.shard_files, multiple=multiple, progress=progress, prior=items)
    return EnrollReport(report.items, tuple(planner.warnings) + report.warnings)


def shard_folder(gallery_path: str | os.PathLike) -> Path:
    p = Path(gallery_path)
    return p.with_name(p.name + ".shards")


def _settings(gallery: "Gallery", faces: str, multiple: str, quality: bool = False,
              crops: bool = False) -> tuple[dict, dict]:
    import dataclasses

    from ..faces.detect import DetectorConfig

    cfg = gallery._detector_config or DetectorConfig()
    card = gallery.embedder_card.to_dict()
    meta = {"schema": SHARD_SCHEMA if faces == "one" else FILES_SCHEMA,
            "kind": "enroll-shard" if faces == "one" else "faces-shard",
            "embedder": card, "multiple": multiple, "detector": dataclasses.asdict(cfg)}
    actor = {"card": card, "detector_config": dataclasses.asdict(cfg), "runtime": gallery._runtime,
             "faces": faces, "multiple": multiple, "quality": quality, "crops": crops}
    return meta, actor


def load_shards(gallery: "Gallery", files: Iterable[str | os.PathLike], *, multiple: str = "auto",
                progress: Callable[[EnrollItem, int, int], None] | None = None,
                prior: Sequence[EnrollItem] = ()) -> EnrollReport:
    """Bulk-load enroll shards into the gallery (what the local engine would have
    stored): failed images reported, single faces stored in one transaction per
    shard, images with several faces decided at the end against the person's
    enrolled faces. Only needs pyarrow (no Ray)."""
    from ..gallery.export import face_record, iter_rows, path_from_columns, read_meta
    from ..gallery.store import SourceRecord
    from ..identify.enroll import Enrollment, _Ambiguous
    from ..types import Face

    files = [Path(f) for f in files]
    card_id = gallery.embedder_card.id
    for f in files:
        meta = read_meta(f)
        if meta.get("kind") != "enroll-shard":
            raise GalleryError(f"{f}: a {meta.get('kind')!r} file, not an enroll shard")
        if meta["embedder"].get("id") != card_id:
            from ..errors import EmbedderMismatchError

            raise EmbedderMismatchError(f"{f} holds embeddings from {meta['embedder'].get('id')!r}; {gallery.path} "
                                        f"holds {card_id!r} — refusing to mix embedders")
    resolver = Enrollment(gallery.store, None, card_id, multiple=multiple,  # type: ignore[arg-type]
                          agree=_agree(gallery))
    items: list[EnrollItem] = list(prior)
    total = len(items)

    def done(item: EnrollItem) -> None:
        items.append(item)
        if progress:
            progress(item, len(items), max(total, len(items)))

    seen: dict[tuple[str, str], str] = {}
    for f in files:
        groups: dict[str, dict[str, Any]] = {}
        order: list[str] = []
        for cols in iter_rows(f):
            for i in range(len(cols["person"])):
                path = path_from_columns(cols["path"][i], cols["path_bytes"][i])
                g = groups.get(path)
                if g is None:
                    g = groups[path] = {"person": cols["person"][i], "sha": cols["sha256"][i], "rows": []}
                    order.append(path)
                g["rows"].append((cols["status"][i], cols["code"][i], cols["reason"][i], face_record(cols, i)))
        total += len(order)
        records, recs_meta = [], []
        for path in order:
            g = groups[path]
            person, sha, rows = g["person"], g["sha"], g["rows"]
            status = rows[0][0]
            if status == "failed":
                done(EnrollItem(path, person, "failed", rows[0][2], code=rows[0][1]))
                continue
            key = (person, sha)
            if key in seen:
                done(EnrollItem(path, person, "skipped", f"same content as {seen[key]}"))
                continue
            seen[key] = path
            if status == "ambiguous":
                faces = [Face(tuple(r[3].box), tuple(r[3].landmarks), r[3].score) for r in rows]
                resolver._ambiguous.append(_Ambiguous(person, path, sha, faces,
                                                      np.stack([r[3].embedding for r in rows])))
                continue
            records.append(SourceRecord(person, path, sha, [rows[0][3]]))
            recs_meta.append((path, person))
        stored = gallery.store.add_sources(records, card_id) if records else []
        for (path, person), ids in zip(recs_meta, stored):
            done(EnrollItem(path, person, "added", None, len(ids)) if ids else
                 EnrollItem(path, person, "skipped", "already enrolled"))
    for item in resolver._resolve_ambiguous():
        done(item)
    return EnrollReport(tuple(items), tuple(resolver.warnings))


def _agree(gallery: "Gallery") -> float:
    from ..identify.enroll import agreement_level

    try:
        fallback = gallery.threshold.value
    except FacedexError:
        fallback = 0.5
    return agreement_level(gallery.embedder_card.extra, fallback)


# --- other batch jobs: every face of many files ---------------------------------------------------------
def embed_files(gallery: "Gallery", paths: Sequence[str | os.PathLike], *, options: RayOptions | None = None,
                quality: bool = True, crops: bool = False, prefix: str = "faces",
                on_shard: Callable[[Path, int], None] | None = None) -> BatchRun:
    """Every face of every image in ``paths`` (detected, aligned, embedded with the
    gallery's pipeline) into Parquet shards on Ray — for ``facedex index --engine
    ray`` and other batch jobs. Rows: the gallery export's columns (``person``
    empty) plus ``status``, ``code``, ``reason``, ``faces_in_image``, the
    image's ``width`` and ``height``, with ``quality`` the face's quality
    weight (as the video tracker computes it) and with ``crops`` its small
    JPEG (``crop``, as :func:`facedex.faces.crop.crop_jpeg` makes it). An image
    without a face gives one row with status ``"failed"`` and code
    ``face.none``. Resumable like enrollment: shards already in the folder are
    not recomputed (``on_shard(file, images)`` is called for each shard written
    by this run, as it is written). Read the shards with
    :func:`facedex.gallery.export.iter_rows`.
    """
    options = (options or RayOptions()).check()
    items = [("", os.path.abspath(os.fsdecode(p))) for p in paths]
    meta, actor_kwargs = _settings(gallery, "all", "all", quality, crops)
    shards = make_shards(items, options.shard_size, {"embedder": gallery.embedder_card.id, "faces": "all",
                                                     "quality": quality, "crops": crops, "sizes": True,
                                                     "detector": actor_kwargs["detector_config"]})
    folder = Path(options.shards) if options.shards else shard_folder(gallery.path)
    return run_shards(shards, folder, prefix, meta, actor_kwargs, options, on_shard=on_shard)


__all__ = ["BatchRun", "FaceActor", "RayOptions", "actor_pipeline", "embed_files", "enroll", "load_shards",
           "make_shards", "map_files", "ray_session", "require_ray", "shard_folder"]
