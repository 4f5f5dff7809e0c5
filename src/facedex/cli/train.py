"""``facedex train``: ``run`` fine-tunes SFace or trains a network on `facedex clean`
output; ``export`` turns a checkpoint into an ONNX embedder with its card;
``list`` shows the backbones and losses.

PyTorch is imported only when one of these commands runs (``pip install 'facedex[train]'``).
"""

from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Any

from .common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_USAGE,
    add_command,
    add_json,
    bounded,
    stop_on_interrupt,
)
from .output import emit_json, err, out, progress

ORDER = 40

#: the --json documents: facedex.train-run/1, train-export, train-list, train-config (docs/schemas/)
SCHEMA = "facedex.train-{}/1"


def register(sub) -> None:
    p = add_command(
        sub, "train", help="fine-tune or train a face-embedding network on `facedex clean` output",
        description="Train a face-embedding network on the output of `facedex clean` and export it as an ONNX "
                    "embedder that enroll, identify and eval use with --embedder. `run` trains, `export` "
                    "exports another checkpoint, `list` shows the backbones and losses. See docs/train.md.",
        examples=["facedex train run clean/ runs/ft1",
                  "facedex train export runs/ft1/checkpoints/last.pt",
                  "facedex train list --json"])
    tsub = p.add_subparsers(dest="train_command", metavar="ACTION", required=True)

    r = add_command(
        tsub, "run", help="train on DATA and write checkpoints, metrics and the exported model to OUT",
        description="Train on DATA (the output of `facedex clean`: aligned 112x112 crops and manifest.jsonl, or "
                    "DATA/<Person>/*.png aligned crops) and write checkpoints, metrics and an exported ONNX "
                    "embedder to OUT. By default the pretrained SFace network is fine-tuned with ArcFace, the "
                    "recommended mode for small datasets. Settings come from --config (TOML) and the options "
                    "below, which win over it; an option left out takes the setting named in its help from "
                    "the file, else that setting's default. Ctrl-C stops after the current step with a "
                    "checkpoint; --resume continues exactly.",
        examples=["facedex train run clean/ runs/ft1 --lfw ../shared/data/lfw",
                  "facedex train run clean/ runs/mfn --backbone mobilefacenet --loss cosface --epochs 30",
                  "facedex train run clean/ runs/ft1 --resume"])
    r.add_argument("data", metavar="DATA", nargs="?", help="training data (`facedex clean` output)")
    r.add_argument("out", metavar="OUT", nargs="?", help="run folder (created; must not hold another run)")
    r.add_argument("--config", metavar="TOML", help="settings file (see `facedex train run --print-config`)")
    r.add_argument("--resume", action="store_true", help="continue the run in OUT from checkpoints/last.pt")
    r.add_argument("--print-config", action="store_true",
                   help="print the resolved settings as TOML (a starting point for --config), then exit; "
                        "DATA and OUT are not needed")
    add_json(r, "the result (with --print-config: the settings)")
    g = r.add_argument_group("settings (win over --config; setting name and default in brackets)")
    g.add_argument("--epochs", type=bounded(int, 1), metavar="N",
                   help="passes over the training images [epochs; auto: 3 fine-tuning, 30 from scratch]")
    g.add_argument("--batch-size", type=bounded(int, 2), metavar="N", help="images per step [batch_size; 64]")
    g.add_argument("--lr", type=bounded(float, 0, low_open=True), metavar="LR",
                   help="learning rate of the loss head; the backbone's is LR x optim.backbone_lr_mult "
                        "[optim.lr; auto: 0.05 fine-tuning, 0.1 from scratch]")
    g.add_argument("--backbone", metavar="NAME",
                   help="network, see `facedex train list` [model.backbone; sface]")
    g.add_argument("--loss", metavar="NAME",
                   help="loss, see `facedex train list` [loss.name; arcface]")
    g.add_argument("--init", metavar="FROM",
                   help="scratch, sface (pretrained; needs --backbone sface) or a checkpoint .pt "
                        "[model.init; auto: sface for the sface backbone, else scratch]")
    g.add_argument("--freeze", type=bounded(int, 0), metavar="N",
                   help="keep the first N stages of the backbone as they are [model.freeze; auto: 23 for sface, else 0]")
    g.add_argument("--cache-views", type=bounded(int, 0, 64), metavar="K",
                   help="run the frozen stages once on K versions of each image, for fast CPU fine-tuning "
                        "[model.cache_views; auto: 3 when stages are frozen]")
    g.add_argument("--seed", type=bounded(int, 0), metavar="N", help="seed of every random choice [seed; 0]")
    g.add_argument("--device", metavar="DEV",
                   help="cpu, cuda or cuda:N [device; auto: a CUDA GPU when present, else the CPU]")
    g.add_argument("--strangers", metavar="DIR",
                   help="folder of aligned crops of people not in DATA, for FPIR "
                        "[validation.strangers; none: leave-one-person-out]")
    g.add_argument("--lfw", metavar="DIR",
                   help="LFW folder: accuracy on the pairs of people not trained on [validation.lfw; none]")
    g.add_argument("--lfw-pairs", metavar="FILE",
                   help="LFW pairs file [validation.lfw_pairs; pairs.txt beside the LFW folder]")
    g.add_argument("--name", metavar="NAME", help="name of the exported model [export.name; OUT's folder name]")
    g.add_argument("--no-export", action="store_true", help="do not export at the end [export.enabled = false]")
    r.set_defaults(func=cmd_run)

    e = add_command(
        tsub, "export", help="export a training checkpoint as an ONNX embedder with its model card",
        description="Write <NAME>.onnx and <NAME>.card.json (usable with --embedder) from CKPT, after checking "
                    "that onnxruntime gives PyTorch's embeddings. `facedex train run` already exports "
                    "OUT/export/ at the end; use this for another checkpoint (last.pt, or an interrupted run).",
        examples=["facedex train export runs/ft1/checkpoints/last.pt",
                  "facedex train export runs/ft1/checkpoints/best.pt --out models/ --name my-sface"])
    e.add_argument("checkpoint", metavar="CKPT", help="a checkpoint, e.g. OUT/checkpoints/last.pt")
    e.add_argument("--out", metavar="DIR", help="output folder (default: the run's export/ folder)")
    e.add_argument("--name", metavar="NAME", help="model name (default: the name the run exported under, "
                                                  "else the run folder's name)")
    add_json(e, "the export result")
    e.set_defaults(func=cmd_export)

    ls = add_command(tsub, "list", help="list the backbones and losses `facedex train run` can use",
                     description="The backbones (networks) and losses that --backbone and --loss accept, with "
                                 "the backbones that have pretrained weights.",
                     examples=["facedex train list", "facedex train list --json"])
    add_json(ls, "the backbones and losses")
    ls.set_defaults(func=cmd_list)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o = {"epochs": args.epochs, "batch_size": args.batch_size, "optim.lr": args.lr, "model.backbone": args.backbone,
         "loss.name": args.loss, "model.init": args.init, "model.freeze": args.freeze,
         "model.cache_views": args.cache_views, "seed": args.seed, "device": args.device,
         "validation.strangers": args.strangers, "validation.lfw": args.lfw, "validation.lfw_pairs": args.lfw_pairs,
         "export.name": args.name}
    if args.no_export:
        o["export.enabled"] = False
    return {k: v for k, v in o.items() if v is not None}


def cmd_list(args: argparse.Namespace) -> int:
    from ..train import require_torch

    require_torch()
    from ..train.backbones import list_backbones
    from ..train.losses import LOSSES
    from .output import table

    backbones = [{"name": b.name, "size": b.size, "pretrained": list(b.pretrained), "summary": b.summary}
                 for b in list_backbones()]
    losses = [{"name": n, "summary": LOSSES[n].summary} for n in sorted(LOSSES)]
    if args.json:
        emit_json({"schema": SCHEMA.format("list"), "backbones": backbones, "losses": losses})
        return EXIT_OK
    out(table([[b["name"], b["size"], ", ".join(b["pretrained"]) or "–", b["summary"]] for b in backbones],
              ["backbone", "size", "pretrained", ""]))
    out("")
    out(table([[x["name"], x["summary"]] for x in losses], ["loss", ""]))
    return EXIT_OK


class _Bars:
    """Progress bars from TrainEvents: one bar per stage, epoch lines on stdout."""

    def __init__(self, enabled: bool, quiet: bool):
        self.enabled, self.quiet = enabled, quiet
        self.bar = None
        self.loss = None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __call__(self, e) -> None:
        if e.kind == "stage":
            self.close()
            self.bar = progress(e.total, e.message[:60], enabled=self.enabled)
        elif e.kind == "advance" and self.bar is not None:
            if e.total and self.bar.total != e.total:
                self.bar.total = e.total
            self.bar.update(e.n)
        elif e.kind == "step" and self.bar is not None:
            self.loss = e.loss if self.loss is None or e.loss != e.loss else 0.9 * self.loss + 0.1 * e.loss
            self.bar.update(e.n)
            self.bar.set_postfix_str(f"loss {self.loss:.4f}  {e.images_per_s:.1f} img/s  lr {e.lr:.2e}", refresh=False)
        elif e.kind == "epoch":
            self.close()
            self.loss = None
            if not self.quiet:
                out(_epoch_line(e.metrics))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _epoch_line(m: dict[str, Any]) -> str:
    parts = [f"epoch {m['epoch']}" if m["epoch"] else "before training"]
    if m.get("train_loss") is not None:
        parts.append(f"loss {m['train_loss']:.4f}  train acc {_pct(m.get('train_acc'))}  "
                     f"{m.get('images_per_s') or 0:.1f} img/s")
        if m.get("skipped_steps"):
            parts.append(f"{m['skipped_steps']} steps skipped (NaN/Inf)")
    if m.get("val_rank1") is not None:
        parts.append(f"held-out rank-1 {_pct(m['val_rank1'])}  FNIR@FPIR1% {_pct(m.get('val_fnir_at_fpir_0.01'))}")
    if m.get("lfw_accuracy") is not None:
        parts.append(f"LFW (untrained pairs) {_pct(m['lfw_accuracy'])}")
    return "  |  ".join(parts)


def cmd_run(args: argparse.Namespace) -> int:
    from ..train import require_torch
    from ..train.config import apply_overrides, load_config, resolve, to_toml

    cfg = load_config(args.config) if args.config else None
    if args.print_config:
        require_torch()
        resolved = resolve(apply_overrides(cfg or load_config(None), _overrides(args)))
        if args.json:
            emit_json({"schema": SCHEMA.format("config"), **resolved.to_dict()})
        else:
            out(to_toml(resolved, "facedex train settings (resolved); edit and pass with --config"))
        return EXIT_OK
    if not args.data or not args.out:
        err("facedex train run: error: DATA and OUT are required (unless --print-config)")
        return EXIT_USAGE
    require_torch()
    from ..train import Trainer

    outdir = Path(args.out)
    bars = _Bars(enabled=not args.json, quiet=args.json)
    resume = f"facedex train run {shlex.quote(args.data)} {shlex.quote(args.out)} --resume"
    handler = None
    try:
        with stop_on_interrupt("stopping after this step (a checkpoint is written); press Ctrl-C again to "
                               "abort at once", on_first=bars.close) as stop:
            # the settings are checked before OUT is created
            trainer = Trainer(args.data, outdir, cfg, resume=args.resume, overrides=_overrides(args),
                              progress=bars, stop=stop)
            handler = _log_to_file(outdir)
            result = trainer.run()
    except KeyboardInterrupt:  # the second Ctrl-C: no checkpoint of this step, the last one stays valid
        bars.close()
        last = outdir / "checkpoints" / "last.pt"
        if args.json:
            emit_json({"schema": SCHEMA.format("run"), "out": str(outdir), "interrupted": True, "aborted": True,
                       "last_checkpoint": str(last) if last.is_file() else None})
        err("aborted; the last checkpoint is kept" + (f"; continue with: {resume}" if last.is_file() else ""))
        return EXIT_INTERRUPTED
    finally:
        bars.close()
        if handler is not None:
            logging.getLogger("facedex").removeHandler(handler)
            handler.close()
    skipped = result.run_info.get("dataset", {}).get("skipped_files", 0)
    if args.json:
        emit_json({"schema": SCHEMA.format("run"), **result.to_dict()})
    else:
        _summary(result, args)
    if result.interrupted:
        err(f"interrupted after {result.epochs_done} epoch(s), {result.global_step} steps; "
            f"continue with: {resume}")
        return EXIT_INTERRUPTED
    return EXIT_PARTIAL if skipped else EXIT_OK


def _summary(result, args: argparse.Namespace) -> None:
    ds = result.run_info.get("dataset", {})
    out(f"trained on {ds.get('people')} people, {ds.get('train_images')} images "
        f"({ds.get('val_images')} held out); {result.epochs_done} epochs, {result.global_step} steps")
    for name, why in list(ds.get("excluded_people", {}).items())[:10]:
        out(f"not trained on {name}: {why}")
    if ds.get("skipped_files"):
        out(f"warning: {ds['skipped_files']} unreadable or wrongly sized files were skipped (see train.log)")
    if result.best:
        out(f"best epoch: {result.best['epoch']} by {result.best['metric']}")
    out(f"checkpoints: {result.last_checkpoint}" + (f", {result.best_checkpoint}" if result.best_checkpoint else ""))
    out(f"metrics: {Path(result.out) / 'metrics.csv'}")
    if result.export:
        e = result.export
        out(f"exported: {e.onnx} ({e.card_id}; ONNX vs PyTorch relative difference {e.max_abs_diff:.1e})")
        if e.default_threshold is not None:
            out(f"default threshold {e.default_threshold:.3f} (1 % of stranger searches in validation); "
                "run `facedex calibrate` on your own gallery")
        out(f"use it: facedex enroll GALLERY PEOPLE/ --embedder {e.onnx}")


def _log_to_file(outdir: Path) -> logging.Handler | None:
    """Append the run's log to OUT/train.log (created with OUT)."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(outdir / "train.log", encoding="utf-8")
    except OSError as e:
        err(f"warning: cannot write {outdir / 'train.log'} ({e})")
        return None
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    for h in root.handlers:  # the terminal keeps the -v level while the file gets INFO
        if h.level == logging.NOTSET:
            h.setLevel(root.level)
    logger = logging.getLogger("facedex")
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    return handler


def cmd_export(args: argparse.Namespace) -> int:
    from ..train import require_torch

    require_torch()
    from ..train.checkpoint import load_checkpoint
    from ..train.export import export_checkpoint

    ckpt_path = Path(args.checkpoint)
    ckpt = load_checkpoint(ckpt_path)
    run_dir = ckpt_path.parent.parent if ckpt_path.parent.name == "checkpoints" else ckpt_path.parent
    outdir = Path(args.out) if args.out else run_dir / "export"
    name = args.name or ckpt["config"].get("export", {}).get("name") or _safe_name(run_dir.resolve().name)
    result = export_checkpoint(ckpt, outdir, name, check_pixels=_sample_crops(ckpt.get("data")),
                               opset=int(ckpt["config"].get("export", {}).get("opset", 17)), source_path=ckpt_path)
    if args.json:
        emit_json({"schema": SCHEMA.format("export"), **result.to_dict()})
    else:
        out(f"exported: {result.onnx} ({result.card_id}; ONNX vs PyTorch relative difference "
            f"{result.max_abs_diff:.1e}, lowest cosine {result.min_cosine:.7f})")
        out(f"card: {result.card}")
        out(f"use it: facedex enroll GALLERY PEOPLE/ --embedder {result.onnx}")
    return EXIT_OK


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in name).strip("-.") or "facedex-model"


def _sample_crops(data: str | None, limit: int = 32):
    """Up to ``limit`` aligned crops of the training data for the export check (when still there)."""
    import numpy as np

    if not data or not Path(data).is_dir():
        return None
    from ..train.data import CROP, decode_crop

    crops = []
    for f in sorted(Path(data).glob("*/*.png"))[: limit * 4]:
        img, _ = decode_crop(f)
        if img is not None and img.shape[:2] == (CROP, CROP):
            crops.append(img)
        if len(crops) >= limit:
            break
    return np.stack(crops) if crops else None
