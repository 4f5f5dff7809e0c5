"""Scale commands (issue #16): export, import, backend; and the ``--engine``
options that ``enroll`` and ``index`` take (``facedex enroll … --engine ray``).

Each parses its arguments, calls the library (:mod:`facedex.gallery.export`,
:mod:`facedex.engines`) and prints. See docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from ..errors import ConfigError, GalleryError
from .common import EXIT_OK, EXIT_PARTIAL, add_command, add_gallery, add_json, bounded
from .output import emit_json, err, out, plural, printable

ORDER = 60

SCHEMA = "facedex.{}/1"


def register(sub) -> None:
    p = add_command(sub, "export", help="write a gallery to a Parquet file (people, sources, faces, embedder)",
                    description="Write every face of GALLERY to FILE (Parquet): person, source path and sha256, box, "
                                "landmarks, detection score and embedding (bit for bit), with the embedder card and "
                                "the threshold in the file's metadata. `facedex import` reads it back losslessly. "
                                "FILE is replaced atomically.",
                    examples=["facedex export my.gallery my-gallery.parquet",
                              "facedex export my.gallery out.parquet --json"])
    add_gallery(p)
    p.add_argument("file", metavar="FILE.parquet", help="the Parquet file to write")
    add_json(p, "what was written")
    p.set_defaults(func=cmd_export)

    p = add_command(sub, "import", help="add faces from Parquet files (an export, or Ray shards) to a gallery",
                    description="Add the faces of each FILE to GALLERY, creating it with the file's embedder when it "
                                "does not exist. FILE is a `facedex export` file, or enroll shards written by "
                                "`facedex enroll --engine ray` (a shard folder may be given). A gallery of another "
                                "embedder refuses the file; sources already enrolled for that person are skipped. "
                                "A new gallery also takes the file's threshold.",
                    examples=["facedex import new.gallery my-gallery.parquet",
                              "facedex import my.gallery my.gallery.shards/ --json"])
    add_gallery(p, create=True)
    p.add_argument("files", nargs="+", metavar="FILE", help="Parquet files, or folders of them")
    add_json(p, "what was imported")
    p.set_defaults(func=cmd_import)

    p = add_command(sub, "backend", help="show or choose where a gallery is searched (faiss, Milvus)",
                    description="Without ENGINE: show the gallery's search backend and the state of its index. "
                                "With ENGINE: search the gallery there from now on (every program that opens it). "
                                "faiss searches in-process: exactly below 50,000 faces, with an approximate index "
                                "kept beside the gallery above. milvus copies the embeddings into a Milvus "
                                "collection (a server, or a milvus-lite file) and searches there; the gallery file "
                                "stays the source of truth, and forget reaches the copy at once.",
                    examples=["facedex backend my.gallery",
                              "facedex backend my.gallery milvus --uri faces.db",
                              "facedex backend my.gallery milvus --uri http://milvus:19530 --index-type HNSW",
                              "facedex backend my.gallery faiss"])
    add_gallery(p)
    p.add_argument("engine", nargs="?", choices=["faiss", "milvus"], metavar="ENGINE",
                   help="faiss or milvus (left out: show the current one)")
    p.add_argument("--uri", help="milvus: a server (http://host:19530) or a milvus-lite file (relative to the "
                                 "gallery's folder); a token is read from $MILVUS_TOKEN")
    p.add_argument("--collection", help="milvus: the collection (default: facedex_<gallery>_<hash>)")
    p.add_argument("--index-type", default="FLAT",
                   help="milvus: the collection's index (FLAT is exact; HNSW, IVF_SQ8… on a server)")
    p.add_argument("--index-params", metavar="JSON", help='milvus: index build parameters, e.g. \'{"M": 32}\'')
    p.add_argument("--search-params", metavar="JSON", help='milvus: search parameters, e.g. \'{"ef": 512}\'')
    add_json(p, "the backend")
    p.set_defaults(func=cmd_backend)


# --- enroll --engine ----------------------------------------------------------------------------
def add_engine_options(p: argparse.ArgumentParser, note: str = "", *, shards: bool = True) -> None:
    """``--engine`` and the Ray options, for ``facedex enroll``, ``index`` and ``clean``
    (``note``: what the command does on Ray, added to ``--engine``'s help;
    ``shards``: whether it writes Parquet shards, and takes ``--shards``)."""
    g = p.add_argument_group("batch engine (docs/scale.md)")
    g.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: this process; ray: Ray Data with a pool of embedding actors"
                        + (", results written as Parquet shards then loaded (resumable: finished shards are skipped)"
                           if shards else "") + ". Needs facedex[ray]" + (f". {note}" if note else ""))
    g.add_argument("--ray-address", metavar="ADDR",
                   help="attach to this Ray cluster (ray://HEAD:10001, or auto on a cluster node); "
                        "default: start a local Ray on this machine's CPUs")
    g.add_argument("--ray-actors", type=bounded(int, 1), metavar="N",
                   help="embedding actors (default: the cluster's CPUs / --ray-cpus-per-actor)")
    g.add_argument("--ray-cpus-per-actor", type=bounded(int, 1), default=1, metavar="N",
                   help="CPUs each actor reserves, and onnxruntime's threads in it")
    if shards:
        g.add_argument("--shards", metavar="DIR", help="where shards are written (default: GALLERY.shards/ beside it)")
        g.add_argument("--shard-size", type=bounded(int, 1), default=1000, metavar="N", help="images per shard")


def enroll_with_engine(gallery, args: argparse.Namespace, tick: Callable) -> list[str]:
    """Run ``facedex enroll`` on ``args.engine`` (items reach ``tick`` as the local
    engine's do); returns the warnings."""
    from ..engines.ray import enroll

    options = ray_options(args)
    report = enroll(gallery, args.sources, args.person, multiple=args.multiple, options=options, progress=tick)
    return list(report.warnings)


def ray_options(args: argparse.Namespace):
    """The :class:`facedex.engines.ray.RayOptions` that ``--engine ray`` and its
    options ask for; ``None`` for ``--engine local``."""
    if args.engine == "local":
        return None
    if args.engine != "ray":
        raise ConfigError(f"unknown engine {args.engine!r}")
    from ..engines.ray import RayOptions

    return RayOptions(address=args.ray_address, actors=args.ray_actors, cpus_per_actor=args.ray_cpus_per_actor,
                      shards=getattr(args, "shards", None), shard_size=getattr(args, "shard_size", 1000)).check()


# --- export / import -----------------------------------------------------------------------------
def cmd_export(args: argparse.Namespace) -> int:
    from ..gallery.export import export_parquet
    from ..gallery.store import GalleryStore

    store = GalleryStore.open(args.gallery)
    try:
        report = export_parquet(store, args.file)
    finally:
        store.close()
    if args.json:
        emit_json({"schema": SCHEMA.format("export"), "gallery": args.gallery, **report.to_dict()})
    else:
        out(f"exported {plural(report.people, 'person')}, {plural(report.sources, 'source')}, "
            f"{plural(report.faces, 'face')} to {printable(report.path)} ({report.bytes / 2**20:.1f} MB, "
            f"{report.seconds:.1f} s)")
    return EXIT_OK


def _parquet_files(items: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(p.glob("*.parquet"))
            if not found:
                raise GalleryError(f"{p}: no .parquet files in this folder")
            files += found
        elif p.exists():
            files.append(p)
        else:
            raise GalleryError(f"{p}: no such file")
    return files


def cmd_import(args: argparse.Namespace) -> int:
    from .. import models
    from ..engines.ray import load_shards
    from ..gallery.export import import_parquet, read_meta
    from ..gallery.store import gallery_exists
    from ..identify.gallery import Gallery

    files = _parquet_files(args.files)
    metas = [read_meta(f) for f in files]
    kinds = {m.get("kind") for m in metas}
    if not kinds <= {"gallery", "enroll-shard"} or len(kinds) != 1:
        raise GalleryError("give either gallery exports or enroll shards, not both (and no other facedex file: "
                           f"found {', '.join(sorted(map(str, kinds)))})")
    embedder = None
    if not gallery_exists(args.gallery):
        embedder = models.ModelCard.from_dict(metas[0]["embedder"])
        registered = models.CARDS.get(embedder.name)
        embedder = registered if registered is not None and registered.id == embedder.id else embedder
    with Gallery.open(args.gallery, create=True, embedder=embedder) as g:
        if kinds == {"gallery"}:
            report = import_parquet(g.store, files)
            doc = report.to_dict()
            failed = 0
        else:
            shards = load_shards(g, files, multiple=metas[0].get("multiple", "auto"))
            status = {s: sum(i.status == s for i in shards.items) for s in ("added", "skipped", "failed")}
            failed = status["failed"]
            doc = {"files": [str(f) for f in files], "people": len({i.person for i in shards.items if i.person}),
                   "sources_added": status["added"], "sources_skipped": status["skipped"],
                   "faces_added": sum(i.faces_added for i in shards.items), "threshold": "kept",
                   "failed": failed, "warnings": list(shards.warnings)}
        g.update_index()
        counts = g.counts()
    if args.json:
        emit_json({"schema": SCHEMA.format("import"), "gallery": args.gallery, "kind": kinds.pop(), **doc,
                   "totals": counts})
    else:
        out(f"imported {plural(doc['faces_added'], 'face')} from {plural(doc['sources_added'], 'new source')} "
            f"({doc['sources_skipped']} already there)" + (f", {failed} failed" if failed else ""))
        if doc["threshold"] == "imported":
            out("the gallery takes the file's threshold")
        out(f"gallery {printable(args.gallery)}: {plural(counts['people'], 'person')}, "
            f"{plural(counts['faces'], 'face')}")
    return EXIT_PARTIAL if failed else EXIT_OK


# --- backend --------------------------------------------------------------------------------------
def _json_option(text: str | None, what: str) -> dict:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        raise ConfigError(f"{what} must be a JSON object, got {text!r}") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a JSON object, got {text!r}")
    return value


def backend_status(g) -> dict:
    """The backend, its settings and the state of its index (no search is run)."""
    from ..gallery.index import EXACT_UP_TO, PersistedIndex, index_path

    backend = g.search_backend()
    faces = g.counts()["faces"]
    doc = {"engine": backend.get("engine", "faiss"), "faces": faces}
    if doc["engine"] == "faiss":
        desc, params = g.index_recipe(faces)
        header = PersistedIndex.read_header(index_path(g.path))
        doc.update({"index": desc, "params": params or "", "exact": desc == "Flat", "exact_up_to": EXACT_UP_TO,
                    "index_file": str(index_path(g.path)) if header else None,
                    "index_generation": header.get("generation") if header else None,
                    "index_faces": header.get("faces") if header else None,
                    "build_seconds": header.get("build_seconds") if header else None,
                    "generation": g.store.generation})
    else:
        doc.update({k: backend.get(k) for k in ("uri", "collection", "index_type")})
        doc.update({"params": backend.get("params") or {}, "search_params": backend.get("search_params") or {},
                    "generation": g.store.generation})
    return doc


def cmd_backend(args: argparse.Namespace) -> int:
    from ..identify.gallery import Gallery

    with Gallery.open(args.gallery) as g:
        if args.engine:
            options = {}
            if args.engine == "milvus":
                if not args.uri:
                    raise ConfigError("milvus needs --uri: a server (http://host:19530) or a milvus-lite file")
                options = {"uri": args.uri, "collection": args.collection, "index_type": args.index_type,
                           "params": _json_option(args.index_params, "--index-params"),
                           "search_params": _json_option(args.search_params, "--search-params")}
            elif any([args.uri, args.collection, args.index_params, args.search_params]):
                raise ConfigError("--uri, --collection, --index-params and --search-params apply to milvus only")
            g.set_search_backend(args.engine, **options)
            if args.engine == "faiss":
                g.update_index()
        doc = backend_status(g)
    if args.json:
        emit_json({"schema": SCHEMA.format("backend"), "gallery": args.gallery, **doc})
        return EXIT_OK
    if doc["engine"] == "faiss":
        how = "exact search" if doc["exact"] else f"approximate index {doc['index']} ({doc['params']})"
        out(f"{printable(args.gallery)}: faiss in-process, {how}, {plural(doc['faces'], 'face')}")
        if doc["index_file"]:
            state = "current" if doc["index_generation"] == doc["generation"] else "updated at the next search"
            out(f"  index file {printable(doc['index_file'])}: {plural(doc['index_faces'] or 0, 'face')}, {state}")
        elif not doc["exact"]:
            out("  the index is built at the next search")
    else:
        out(f"{printable(args.gallery)}: milvus {printable(str(doc['uri']))}, collection {doc['collection']} "
            f"({doc['index_type']}), {plural(doc['faces'], 'face')}")
    if args.engine:
        err(f"{printable(args.gallery)} is now searched with {args.engine}")
    return EXIT_OK
