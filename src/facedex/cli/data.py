"""`facedex data`: fetch the evaluation datasets once, verified, and say where they are."""

from __future__ import annotations

import argparse

from .common import EXIT_OK, EXIT_PARTIAL, HelpFormatter, add_command, add_json
from .output import emit_json, out, progress

ORDER = 95

_DATASETS = ["lfw"]


def register(sub) -> None:
    p = sub.add_parser(
        "data", help="fetch LFW (images + pairs files) once, verified; show where it is",
        description=("Datasets the tests, benchmarks, scripts/demo and `facedex eval lfw` use. "
                    "LFW is looked for at an explicit path, $FACEDEX_LFW, ../shared/data/lfw beside the "
                    "repository, then the data cache ($FACEDEX_DATA_DIR, default ~/.cache/facedex/data)."),
        epilog="examples:\n  facedex data fetch lfw\n  facedex data path lfw\n  facedex data path lfw --check",
        formatter_class=HelpFormatter)
    ds = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    q = add_command(
        ds, "fetch", help="download, verify (sha256) and unpack a dataset; a no-op when a verified copy is there",
        description=("Download the LFW images archive (lfw.tgz, about 180 MB) and the protocol files "
                    "(pairs.txt, pairsDevTrain.txt, pairsDevTest.txt) from figshare, or the UMass LFW site "
                    "when figshare fails; check each against its pinned sha256; unpack safely into DEST/lfw. "
                    "An interrupted download resumes. Files already in DEST under those names are checked "
                    "and used, so you can place them there by hand."),
        examples=["facedex data fetch lfw", "facedex data fetch lfw --dest /data/lfw-copy --json"])
    q.add_argument("dataset", choices=_DATASETS, help="the dataset (only lfw for now)")
    q.add_argument("--dest", metavar="DIR",
                   help="folder to fetch into: DIR/lfw/ and DIR/pairs*.txt "
                        "(default: $FACEDEX_DATA_DIR, else ~/.cache/facedex/data)")
    q.add_argument("--keep-archive", action="store_true", help="keep lfw.tgz after unpacking it")
    add_json(q, "where the copy is and what was downloaded")
    q.set_defaults(func=cmd_fetch)

    q = add_command(
        ds, "path", help="print where the dataset is (the folder everything else will use)",
        description=("Print the LFW images folder that facedex finds, looking at --data, $FACEDEX_LFW, "
                    "../shared/data/lfw beside the repository, then the data cache. Exits 2, naming the "
                    "fetch command, when there is none. With --check, also count its people and images and "
                    "check the pairs files' sha256 (exit 1 when the copy is incomplete)."),
        examples=["facedex data path lfw", "facedex data path lfw --check --json",
                  'LFW=$(facedex data path lfw) && ls "$LFW" | head'])
    q.add_argument("dataset", choices=_DATASETS, help="the dataset (only lfw for now)")
    q.add_argument("--data", metavar="DIR", help="look here first (the lfw/ folder, or the folder holding it)")
    q.add_argument("--check", action="store_true",
                   help="count people and images and check the pairs files (a fraction of a second)")
    add_json(q, "the path, where it was found and the check")
    q.set_defaults(func=cmd_path)


class _Bars:
    """One byte-counting progress bar per file, on stderr, only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled, self.name, self.bar = enabled, None, None

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if name != self.name:
            self.close()
            self.name, self.bar = name, progress(total, name, enabled=self.enabled, unit="B")
        if total is not None and self.bar.total != total:
            self.bar.total = total
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = self.name = None


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..datasets import fetch_lfw

    bars = _Bars(enabled=not args.json)
    try:
        copy = fetch_lfw(args.dest, progress=bars, keep_archive=args.keep_archive)
    finally:
        bars.close()
    if args.json:
        emit_json({"schema": "facedex.data-fetch/1", **copy.to_dict()})
        return EXIT_OK
    if copy.fetched:
        got = f"downloaded {', '.join(copy.downloaded)}; " if copy.downloaded else ""
        out(f"LFW: {got}{copy.images:,} images of {copy.people:,} people verified at {copy.path}")
    else:
        out(f"LFW: already there, verified ({copy.images:,} images of {copy.people:,} people) at {copy.path}")
    out(f"pairs files: {copy.data_dir}")
    return EXIT_OK


def cmd_path(args: argparse.Namespace) -> int:
    from ..datasets import find_lfw, lfw_candidates, lfw_source, verify_lfw

    path = find_lfw(args.data)
    found_by = next((label for label, p in lfw_candidates(args.data)
                     if p is not None and p.is_dir() and (p.resolve() == path or p.resolve() == path.parent)),
                    None)
    check = verify_lfw(path) if args.check else None
    if args.json:
        emit_json({"schema": "facedex.data-path/1", "dataset": args.dataset, "path": str(path), "found_by": found_by,
                   "fetched_by_facedex": lfw_source(path), "check": check.to_dict() if check else None})
    else:
        out(str(path))
        if check is not None:
            if check.ok:
                out(f"ok: {check.images:,} images of {check.people:,} people, "
                    f"{', '.join(check.pairs)} match their pinned sha256")
            for problem in check.problems:
                out(f"problem: {problem}")
    return EXIT_PARTIAL if check is not None and not check.ok else EXIT_OK


__all__ = ["cmd_fetch", "cmd_path"]
