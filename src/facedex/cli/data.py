"""`facedex data`: fetch the evaluation datasets once, verified, and say where they are."""

from __future__ import annotations

import argparse
import textwrap

from .output import emit_json, out, progress

EXIT_OK, EXIT_PARTIAL = 0, 1
ORDER = 95

_DATASETS = ["lfw"]


def _wrap(text: str) -> str:
    return textwrap.fill(text, 78)


def register(sub) -> None:
    p = sub.add_parser(
        "data", help="fetch LFW (images + pairs files) once, verified; show where it is",
        description=_wrap("Datasets the tests, benchmarks, scripts/demo and `facedex eval lfw` use. "
                    "LFW is looked for at an explicit path, $FACEDEX_LFW, ../shared/data/lfw beside the "
                    "repository, then the data cache ($FACEDEX_DATA_DIR, default ~/.cache/facedex/data)."),
        epilog="examples:\n  facedex data fetch lfw\n  facedex data path lfw\n  facedex data path lfw --check",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    ds = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    q = ds.add_parser(
        "fetch", help="download, verify (sha256) and unpack a dataset; a no-op when a verified copy is there",
        description=_wrap("Download the LFW images archive (lfw.tgz, about 180 MB) and the protocol files "
                    "(pairs.txt, pairsDevTrain.txt, pairsDevTest.txt) from figshare, or the UMass LFW site "
                    "when figshare fails; check each against its pinned sha256; unpack safely into DEST/lfw. "
                    "An interrupted download resumes. Files already in DEST under those names are checked "
                    "and used, so you can place them there by hand."),
        epilog="examples:\n  facedex data fetch lfw\n  facedex data fetch lfw --dest /data/lfw-copy --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("dataset", choices=_DATASETS, help="the dataset (only lfw for now)")
    q.add_argument("--dest", metavar="DIR",
                   help="folder to fetch into: DIR/lfw/ and DIR/pairs*.txt "
                        "(default: $FACEDEX_DATA_DIR, else ~/.cache/facedex/data)")
    q.add_argument("--keep-archive", action="store_true", help="keep lfw.tgz after unpacking it")
    q.add_argument("--json", action="store_true", help="print where the copy is and what was downloaded, as JSON")
    q.set_defaults(func=cmd_fetch)

    q = ds.add_parser(
        "path", help="print where the dataset is (the folder everything else will use)",
        description=_wrap("Print the LFW images folder that facedex finds, looking at --data, $FACEDEX_LFW, "
                    "../shared/data/lfw beside the repository, then the data cache. Exits 2, naming the "
                    "fetch command, when there is none. With --check, also count its people and images and "
                    "check the pairs files' sha256 (exit 1 when the copy is incomplete)."),
        epilog="examples:\n  facedex data path lfw\n  facedex data path lfw --check --json\n"
               "  LFW=$(facedex data path lfw) && ls \"$LFW\" | head",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    q.add_argument("dataset", choices=_DATASETS, help="the dataset (only lfw for now)")
    q.add_argument("--data", metavar="DIR", help="look here first (the lfw/ folder, or the folder holding it)")
    q.add_argument("--check", action="store_true",
                   help="count people and images and check the pairs files (a fraction of a second)")
    q.add_argument("--json", action="store_true", help="print the path, where it was found and the check as JSON")
    q.set_defaults(func=cmd_path)


class _Bars:
    """One byte-counting progress bar per file, on stderr, only on a terminal."""

    def __init__(self, enabled: bool):
        self.enabled, self.name, self.bar = enabled, None, None

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if name != self.name:
            self.close()
            self.name, self.bar = name, progress(total, name, enabled=self.enabled)
            self.bar.unit, self.bar.unit_scale, self.bar.unit_divisor = "B", True, 1024
            self.bar.refresh()
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
        emit_json(copy.to_dict())
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
        emit_json({"dataset": args.dataset, "path": str(path), "found_by": found_by,
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
