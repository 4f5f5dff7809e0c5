"""The training run: data → model → loss → optimiser → epochs → checkpoints → export.

    >>> from facedex.train import train, TrainConfig
    >>> result = train("clean/", "runs/ft1", TrainConfig(epochs=6))
    >>> result.export.onnx
    PosixPath('runs/ft1/export/ft1.onnx')

``OUT`` receives ``config.toml`` (the resolved settings), ``checkpoints/last.pt``
(after every epoch, every ``checkpoint.every_steps`` steps, and when stopped),
``checkpoints/best.pt`` (best validation so far, see ``validation.select``),
``metrics.csv`` / ``metrics.json`` / ``curves.png``, ``run.json`` (data
summary, conversion check, environment) and ``export/``.

Stability: the global gradient norm is clipped (``stability.clip_grad_norm``);
a NaN or infinite loss or gradient either stops the run with
:class:`NonFiniteError` — the weights of the last checkpoint are the last good
ones, as nothing non-finite is ever applied or saved — or skips the step
(``stability.on_nonfinite = "skip"``, stopping after ``max_skipped_steps`` in a
row). Runs are seeded; every random choice (batch order, augmentation,
dropout) comes from generators stored in the checkpoints, so ``resume=True``
continues with exactly the step an uninterrupted run would have taken.
A CUDA GPU is used when present, with mixed precision (bfloat16, or float16
with loss scaling); the CPU otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import platform
import random
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..errors import CheckpointError, NonFiniteError, TrainConfigError, TrainError, UnknownNameError
from ..files import atomic_path, atomic_write_bytes, atomic_write_text
from .backbones import create_backbone, get_backbone
from .backbones.common import forward_from
from .checkpoint import capture_rng, load_checkpoint, restore_rng, save_checkpoint
from .config import TrainConfig, apply_overrides, resolve, to_toml, trajectory_differences
from .data import Augmenter, FaceDataset, ImageStore, epoch_order, scan_dataset, to_tensor
from .export import ExportResult, export_checkpoint
from .losses import create_loss
from .metrics import plot_curves, write_metrics
from .validate import Validator, autocast, build_cache, cache_bytes, pixel_source

log = logging.getLogger(__name__)


@dataclass
class TrainEvent:
    """Progress reported to the caller (the CLI draws bars from these).

    kind: ``"stage"`` (message; ``total`` images when known), ``"advance"`` (``n`` more of the
    stage done), ``"step"`` (one optimiser step: epoch, step, steps, loss, images_per_s, lr),
    ``"epoch"`` (the epoch's metrics in ``metrics``), ``"warning"`` (message).
    """

    kind: str
    message: str = ""
    n: int = 0
    total: int | None = None
    epoch: int = 0
    step: int = 0
    steps: int = 0
    loss: float = float("nan")
    images_per_s: float = 0.0
    lr: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


Progress = Callable[[TrainEvent], None]


@dataclass
class TrainResult:
    out: Path
    epochs_done: int
    global_step: int
    history: list[dict[str, Any]]
    best: dict[str, Any] | None
    last_checkpoint: Path | None
    best_checkpoint: Path | None
    export: ExportResult | None = None
    interrupted: bool = False
    run_info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "epochs_done": self.epochs_done, "global_step": self.global_step,
                "interrupted": self.interrupted, "best": self.best,
                "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
                "best_checkpoint": str(self.best_checkpoint) if self.best_checkpoint else None,
                "export": self.export.to_dict() if self.export else None,
                "history": self.history, "run": self.run_info}


def _import_check() -> None:
    if not hasattr(torch, "nn"):
        raise TrainError("PyTorch is not usable here; install it with: pip install 'facedex[train]'")


# --- optimisation helpers ------------------------------------------------------------------


def lr_factor(cfg: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then the schedule."""
    o = cfg.optim
    total = cfg.epochs * steps_per_epoch
    warm = int(round(float(o.warmup_epochs) * steps_per_epoch))
    if warm and step < warm:
        return (step + 1) / warm
    if o.scheduler == "constant":
        return 1.0
    if o.scheduler == "step":
        epoch = step / max(1, steps_per_epoch)
        return o.step_gamma ** sum(1 for e in o.step_epochs if epoch >= e)
    progress = (step - warm) / max(1, total - warm)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _param_groups(model: torch.nn.Module, loss: torch.nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """Backbone and head groups; no weight decay on biases, batch norms and PReLU slopes."""
    lr = float(cfg.optim.lr)
    groups = []
    for params, mult, tag in ((model.parameters(), float(cfg.optim.backbone_lr_mult), "backbone"),
                              (loss.parameters(), 1.0, "head")):
        decay, no_decay = [], []
        for p in params:
            if p.requires_grad:
                (decay if p.ndim > 1 else no_decay).append(p)
        for ps, wd in ((decay, cfg.optim.weight_decay), (no_decay, 0.0)):
            if ps:
                groups.append({"params": ps, "lr": lr * mult, "base_lr": lr * mult, "weight_decay": wd, "tag": tag})
    return groups


def _optimizer(groups: list[dict[str, Any]], cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optim.name == "adamw":
        return torch.optim.AdamW(groups, lr=float(cfg.optim.lr))
    return torch.optim.SGD(groups, lr=float(cfg.optim.lr), momentum=cfg.optim.momentum,
                           nesterov=cfg.optim.momentum > 0)


def freeze(model: torch.nn.Module, n: int) -> list[torch.nn.Module]:
    """Freeze the first ``n`` stages; returns them (kept in eval mode while training)."""
    stages = model.stages()
    if n > len(stages):
        raise TrainConfigError(f"model.freeze = {n}, but this backbone has {len(stages)} stages "
                               f"(freezing all of them leaves nothing to train)")
    for s in stages[:n]:
        for p in s.parameters():
            p.requires_grad_(False)
    return stages[:n]


def set_train_mode(model: torch.nn.Module, frozen: list[torch.nn.Module], freeze_bn: bool) -> None:
    model.train()
    for s in frozen:
        s.eval()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _device(cfg: TrainConfig) -> torch.device:
    if cfg.device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrainConfigError(f"device {cfg.device!r}: no CUDA GPU is available to PyTorch here; "
                                   "use --device cpu (or install a CUDA build of torch)")
        return torch.device(cfg.device)
    return torch.device("cpu")


def _seed_everything(seed: int, deterministic: bool, device: torch.device) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = not deterministic
    torch.use_deterministic_algorithms(deterministic, warn_only=True)


# --- the run ------------------------------------------------------------------------------


@dataclass
class _Run:
    """What one call of :meth:`Trainer.run` works on: built by ``_setup``, the optimiser by
    ``_build_optimizer``; the counters and history change as it trains (and go into checkpoints)."""

    device: torch.device
    amp: bool
    ds: FaceDataset
    store: ImageStore
    fingerprint: str
    resumed: dict[str, Any] | None  # the checkpoint resumed from
    train_labels: torch.Tensor
    n_train: int
    batch_size: int
    steps_per_epoch: int
    net: torch.nn.Module
    model_args: dict[str, Any]
    frozen: list[torch.nn.Module]
    loss_fn: torch.nn.Module
    loss_args: dict[str, Any]
    validator: Validator
    augment: Augmenter
    start: int  # the first stage run at each step (the earlier ones are frozen and cached)
    train_cache: torch.Tensor | None
    last_path: Path
    best_path: Path
    run_info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    export_info: dict[str, Any] = field(default_factory=dict)
    optimizer: torch.optim.Optimizer | None = None
    scaler: Any = None
    aug_gen: torch.Generator | None = None
    trainable: list[torch.nn.Parameter] = field(default_factory=list)
    start_epoch: int = 0
    start_step: int = 0
    global_step: int = 0
    acc: _EpochStats = field(default_factory=lambda: _EpochStats())
    skipped_total: int = 0
    consecutive: int = 0
    factor: float = 1.0  # the learning-rate multiplier of the latest step


class Trainer:
    """One training run in ``out`` (see the module documentation). Use :func:`train`."""

    def __init__(self, data: str | Path, out: str | Path, config: TrainConfig | None = None, *,
                 resume: bool = False, overrides: dict[str, Any] | None = None,
                 progress: Progress | None = None, stop: threading.Event | None = None):
        self.data = Path(data)
        self.out = Path(out)
        self.progress = progress or (lambda e: None)
        self.stop = stop or threading.Event()
        self.ckpt_dir = self.out / "checkpoints"
        self.resume_from: dict[str, Any] | None = None
        last = self.ckpt_dir / "last.pt"
        overrides = dict(overrides or {})
        if resume:
            if not last.is_file():
                raise CheckpointError(f"{self.out}: nothing to resume ({last} does not exist); "
                                      "start the run without --resume")
            self.resume_from = load_checkpoint(last)
            stored = TrainConfig.from_dict(self.resume_from["config"], f"{last} (stored config)")
            wanted = apply_overrides(config or stored, overrides)
            diffs = trajectory_differences(stored, resolve(dataclasses.replace(wanted, device="cpu")))
            if diffs:
                raise TrainConfigError(
                    f"{self.out}: --resume continues the run as it was configured; these settings differ:\n  "
                    + "\n  ".join(diffs) + "\nstart a new run in another OUT folder to change them")
            self.config = resolve(dataclasses.replace(stored, epochs=wanted.epochs, device=wanted.device if (
                config or "device" in overrides) else "auto", amp=wanted.amp if (config or "amp" in overrides) else "auto",
                threads=wanted.threads, validation=wanted.validation, checkpoint=wanted.checkpoint,
                export=wanted.export))
            if self.config.epochs != stored.epochs:
                log.warning("resuming with epochs = %d instead of %d: the learning-rate schedule follows the "
                            "new length from here on", self.config.epochs, stored.epochs)
        else:
            if last.is_file():
                raise TrainError(f"{self.out} already holds a training run ({last}); continue it with --resume, "
                                 "or choose a new OUT folder")
            self.config = resolve(apply_overrides(config or TrainConfig(), overrides))
        self._check_combination()

    def _check_combination(self) -> None:
        c = self.config
        spec = get_backbone(c.model.backbone)
        init = c.model.init
        if init not in ("scratch",) and not init.endswith(".pt") and init not in spec.pretrained:
            known = ["scratch", *spec.pretrained, "<checkpoint.pt>"]
            if init in ("sface",):
                raise TrainConfigError(f"model.init = 'sface' needs backbone 'sface' (the pretrained weights fit only "
                                       f"that network), not {c.model.backbone!r}; use init = 'scratch' for it")
            raise UnknownNameError(f"init for backbone {c.model.backbone!r}", init, known)
        if init == "sface" and c.model.args:
            raise TrainConfigError(f"model.args {c.model.args} change the SFace network, so the pretrained weights "
                                   "no longer fit; remove model.args or use init = 'scratch'")
        if c.validation.select == "lfw" and not c.validation.lfw:
            raise TrainConfigError("validation.select = 'lfw' needs validation.lfw (the LFW folder)")

    # -- helpers ---------------------------------------------------------------------------
    def _event(self, kind: str, **kw: Any) -> None:
        self.progress(TrainEvent(kind, **kw))

    def _absolute_progress(self) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback that reports increments as "advance" events."""
        seen = [0]

        def report(done: int, total: int) -> None:
            self._event("advance", n=done - seen[0], total=total)
            seen[0] = done

        return report

    def _stage(self, message: str, total: int | None = None) -> None:
        log.info("%s", message)
        self._event("stage", message=message, total=total)

    def _build_model(self, ds: FaceDataset, store: ImageStore) -> tuple[torch.nn.Module, dict[str, Any], dict]:
        c = self.config
        report: dict[str, Any] = {}
        if self.resume_from is not None:
            m = self.resume_from["model"]
            net, args = create_backbone(m["backbone"], m["args"])
            net.load_state_dict(m["state_dict"])
            return net, args, report
        if c.model.init == "sface":
            from .backbones.sface import pretrained_sface

            self._stage("converting SFace from ONNX and checking it against onnxruntime")
            real = store.get(np.arange(min(16, len(store)))).astype(np.float32).transpose(0, 3, 1, 2)
            net, report = pretrained_sface(check_inputs=real)
            report = {k: v for k, v in report.items() if k != "config"}
            return net, dataclasses.asdict(net.config), report
        net, args = create_backbone(c.model.backbone, c.model.args)
        if c.model.init.endswith(".pt"):
            src = load_checkpoint(c.model.init)
            if src["model"]["backbone"] != c.model.backbone:
                raise TrainConfigError(f"model.init {c.model.init}: holds a {src['model']['backbone']!r} network, "
                                       f"not {c.model.backbone!r}")
            net, args = create_backbone(src["model"]["backbone"], src["model"]["args"])
            net.load_state_dict(src["model"]["state_dict"])
            report = {"init_checkpoint": c.model.init, "init_classes": len(src.get("classes", []))}
        return net, args, report

    # -- main ------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        """Set up, measure the starting point, train the remaining epochs, then write the
        metrics and export (the steps below, in this order)."""
        _import_check()
        s = self._setup()
        self._starting_point(s)
        self._build_optimizer(s)
        interrupted = self._train(s)
        return self._finish(s, interrupted)

    # -- setup -----------------------------------------------------------------------------
    def _setup(self) -> _Run:
        """Device and seeds, the data, the model, the loss, the validator, the frozen-stage
        cache; writes config.toml and run.json."""
        c = self.config
        device = _device(c)
        amp = bool(c.amp) and device.type == "cuda"
        if c.threads:
            torch.set_num_threads(c.threads)
        _seed_everything(c.seed, c.stability.deterministic, device)
        self.out.mkdir(parents=True, exist_ok=True)
        self.ckpt_dir.mkdir(exist_ok=True)

        ds, store, fingerprint, batch_size = self._read_data()
        n_train = len(ds.train)
        rc = self.resume_from
        net, model_args, conversion = self._build_model(ds, store)
        net = net.to(device).to(memory_format=torch.channels_last)
        frozen = freeze(net, c.model.freeze)
        loss_fn, loss_args = create_loss(c.loss.name, c.loss.args, num_classes=len(ds.classes),
                                         embedding_dim=net.embedding_dim)
        loss_fn = loss_fn.to(device)
        if c.validation.lfw:
            self._stage("aligning the LFW images of people not trained on (once; cached in OUT/cache)")
        lfw_progress = self._absolute_progress()
        validator = Validator(ds, store, c.validation, seed=c.seed, cache_dir=self.out / "cache",
                              progress=lambda what, i, n: lfw_progress(i, n))

        augment = Augmenter(c.augment)
        start, train_cache = self._frozen_cache(net, store, n_train, validator, augment, device, amp)

        s = _Run(device=device, amp=amp, ds=ds, store=store, fingerprint=fingerprint, resumed=rc,
                 train_labels=torch.from_numpy(ds.labels("train")), n_train=n_train, batch_size=batch_size,
                 steps_per_epoch=n_train // batch_size, net=net, model_args=model_args, frozen=frozen,
                 loss_fn=loss_fn, loss_args=loss_args, validator=validator, augment=augment, start=start,
                 train_cache=train_cache, last_path=self.ckpt_dir / "last.pt", best_path=self.ckpt_dir / "best.pt")
        s.run_info = self._run_info(s, conversion)
        atomic_write_text(self.out / "config.toml", to_toml(c, f"facedex train: resolved config of {self.out}"))
        self._write_json("run.json", s.run_info)

        if rc is not None:
            s.history = list(rc["history"])
            s.best = rc.get("best")
            s.export_info = rc.get("export_info", {})
        return s

    def _read_data(self) -> tuple[FaceDataset, ImageStore, str, int]:
        """DATA, checked against the checkpoint when resuming; and the batch size it allows."""
        c = self.config
        self._stage(f"reading {self.data}")
        ds, store = scan_dataset(self.data, c.data, seed=c.seed, progress=self._absolute_progress())
        fingerprint = ds.fingerprint()
        rc = self.resume_from
        if rc is not None and (rc["data_fingerprint"] != fingerprint or rc["classes"] != ds.classes):
            raise CheckpointError(f"{self.data}: these are not the images this run was trained on (people or files "
                                  "changed since); resume needs the same data, or start a new run")
        n_train = len(ds.train)
        batch_size = c.batch_size
        if n_train < batch_size:
            log.warning("only %d training images; using batches of %d instead of %d", n_train, n_train, batch_size)
            batch_size = n_train
        if batch_size < 2:
            raise TrainError(f"{self.data}: {n_train} training image(s); training needs at least 2")
        return ds, store, fingerprint, batch_size

    def _run_info(self, s: _Run, conversion: dict[str, Any]) -> dict[str, Any]:
        """run.json: versions, device, data summary, model and loss, validation sets."""
        c = self.config
        info = {
            "facedex": __version__, "torch": str(torch.__version__), "python": platform.python_version(),
            "device": str(s.device), "amp": s.amp, "threads": torch.get_num_threads(), "dataset": s.ds.summary(),
            "data_fingerprint": s.fingerprint,
            "model": {"backbone": c.model.backbone, "args": s.model_args,
                      "parameters": sum(p.numel() for p in s.net.parameters()),
                      "trainable": sum(p.numel() for p in s.net.parameters() if p.requires_grad)},
            "loss": {"name": c.loss.name, "args": s.loss_args}, "sface_conversion": conversion or None,
            "steps_per_epoch": s.steps_per_epoch, "batch_size": s.batch_size,
            "validation": {"strangers": c.validation.strangers or None,
                           "lfw": s.validator.lfw.info() if s.validator.lfw else None},
        }
        if s.resumed is not None:  # the conversion check of the run's start
            info["sface_conversion"] = (s.resumed.get("run_info") or {}).get("sface_conversion")
        return info

    def _starting_point(self, s: _Run) -> None:
        """A new run: validation before training and the class-mean head; a resumed one:
        the loss state from the checkpoint."""
        c = self.config
        if s.resumed is not None:
            s.loss_fn.load_state_dict(s.resumed["loss"]["state_dict"])
            return
        need_means = c.loss.head_init == "class_means"
        means_from = None
        if c.validation.before and s.validator.can_validate:
            res = self._validate(s.validator, s.net, s.device, s.amp, with_lfw=True, train_embeddings=need_means,
                                 epoch=0)
            means_from = res.pop("_train_vectors", None)
            s.export_info = dict(res.pop("_export_info", {}), epoch=0)
            s.history.append({"epoch": 0, "step": 0, **res})
            self._event("epoch", epoch=0, metrics=s.history[-1])
        if need_means:
            if means_from is None:
                self._stage("embedding the training images for the class-mean head", s.n_train)
                means_from = s.validator.embed_train(s.net, s.device, s.amp,
                                                     progress=lambda k: self._event("advance", n=k))
            v = torch.from_numpy(means_from)
            means = torch.zeros(len(s.ds.classes), v.shape[1]).index_add_(0, s.train_labels, v)
            counts = torch.bincount(s.train_labels).clamp_min(1)[:, None].float()
            s.loss_fn.init_from_means((means / counts).to(s.device))

    def _build_optimizer(self, s: _Run) -> None:
        """Optimiser, loss scaler and augmentation generator; on resume, their states and the
        position in the run."""
        c = self.config
        groups = _param_groups(s.net, s.loss_fn, c)
        if not any(g["tag"] == "backbone" for g in groups) and c.model.freeze < len(s.net.stages()):
            log.warning("no backbone parameter is trainable")
        s.optimizer = _optimizer(groups, c)
        s.scaler = torch.amp.GradScaler("cuda", enabled=s.amp and not torch.cuda.is_bf16_supported()) \
            if s.device.type == "cuda" else None
        s.aug_gen = torch.Generator().manual_seed(c.seed + 1)
        s.trainable = [p for g in groups for p in g["params"]]
        rc = s.resumed
        if rc is not None:
            s.optimizer.load_state_dict(rc["optimizer"])
            if s.scaler is not None and rc.get("scaler"):
                s.scaler.load_state_dict(rc["scaler"])
            s.start_epoch, s.start_step, s.global_step = rc["epoch"], rc["step_in_epoch"], rc["global_step"]
            s.acc = _EpochStats(**rc.get("epoch_stats", {}))
            s.skipped_total, s.consecutive = rc.get("skipped_steps", 0), rc.get("consecutive_skips", 0)
            restore_rng(rc["rng"], s.aug_gen)
            self._stage(f"resuming at epoch {s.start_epoch + 1}, step {s.start_step + 1} of {s.steps_per_epoch}")
            self.resume_from = None
        s.factor = lr_factor(c, s.global_step, s.steps_per_epoch)

    # -- epochs ----------------------------------------------------------------------------
    def _train(self, s: _Run) -> bool:
        """The remaining epochs; True when stopped (``stop``) before the last one ended."""
        c = self.config
        for epoch in range(s.start_epoch, c.epochs):
            t_epoch = time.perf_counter()
            if self._epoch(s, epoch):
                return True
            s.start_step = 0
            last_epoch = epoch + 1 == c.epochs
            self._end_epoch(s, epoch, time.perf_counter() - t_epoch, last_epoch)
            if self.stop.is_set() and not last_epoch:
                return True
        return False

    def _epoch(self, s: _Run, epoch: int) -> bool:
        """The steps of one epoch (from ``s.start_step`` on a resumed run); True when stopped
        part-way, after writing a checkpoint to resume from."""
        c = self.config
        batches = epoch_order(s.n_train, s.batch_size, c.seed, epoch)
        set_train_mode(s.net, s.frozen, bool(c.model.freeze_bn))
        self._stage(f"epoch {epoch + 1}/{c.epochs}", s.steps_per_epoch * s.batch_size)
        for i in range(s.start_step, len(batches)):
            self._step(s, epoch, i, batches[i])
            done_in_epoch = i + 1
            if self.stop.is_set() and done_in_epoch < len(batches):
                save_checkpoint(s.last_path, self._payload(s, epoch, done_in_epoch, "interrupted"))
                return True
            every = c.checkpoint.every_steps
            if every and s.global_step % every == 0 and done_in_epoch < len(batches):
                save_checkpoint(s.last_path, self._payload(s, epoch, done_in_epoch, "mid_epoch"))
        return False

    def _step(self, s: _Run, epoch: int, i: int, rows: np.ndarray) -> None:
        """One optimiser step on the batch ``rows``, with the NaN/Inf guard (see the module doc)."""
        c = self.config
        t0 = time.perf_counter()
        y = s.train_labels[rows].to(s.device)
        if s.train_cache is not None:  # a random cached view of each image
            views = torch.randint(s.train_cache.shape[0], (len(rows),), generator=s.aug_gen)
            x = s.train_cache[views, torch.from_numpy(rows)].to(s.device).float()
            x = x.contiguous(memory_format=torch.channels_last)
        else:
            x = s.augment(to_tensor(s.store.get(rows), s.device), s.aug_gen)
        s.factor = lr_factor(c, s.global_step, s.steps_per_epoch)
        for g in s.optimizer.param_groups:
            g["lr"] = g["base_lr"] * s.factor
        with autocast(s.device, s.amp):
            emb = forward_from(s.net, x, s.start)
            out = s.loss_fn(emb, y)
        loss = out.loss
        loss_ok = bool(torch.isfinite(loss))
        grad_norm = float("nan")
        scaling = s.scaler is not None and s.scaler.is_enabled()
        if loss_ok:
            (s.scaler.scale(loss) if scaling else loss).backward()
            if scaling:
                s.scaler.unscale_(s.optimizer)
            max_norm = c.stability.clip_grad_norm or float("inf")
            grad_norm = float(torch.nn.utils.clip_grad_norm_(s.trainable, max_norm))
        grads_ok = math.isfinite(grad_norm) or (scaling and loss_ok)
        if loss_ok and grads_ok:
            if scaling:
                s.scaler.step(s.optimizer)  # skips the step itself when float16 gradients overflowed
                s.scaler.update()
            else:
                s.optimizer.step()
            s.consecutive = 0
            if math.isfinite(grad_norm):
                s.loss_fn.after_step(emb.detach(), y)
                s.acc.add(out, y, grad_norm, len(rows))
        else:
            s.skipped_total += 1
            s.consecutive += 1
            what = self._describe_nonfinite(out, loss_ok, grad_norm)
            if c.stability.on_nonfinite == "stop" or s.consecutive > c.stability.max_skipped_steps:
                s.optimizer.zero_grad(set_to_none=True)
                raise NonFiniteError(self._nonfinite_message(what, epoch, i, s.consecutive, s.last_path),
                                     str(s.last_path) if s.last_path.is_file() else None)
            log.warning("epoch %d step %d: %s; step skipped (%d in a row)", epoch + 1, i + 1, what, s.consecutive)
            s.acc.skipped += 1
        s.optimizer.zero_grad(set_to_none=True)
        s.global_step += 1
        dt = time.perf_counter() - t0
        s.acc.seconds += dt
        self._event("step", epoch=epoch + 1, step=i + 1, steps=s.steps_per_epoch,
                    loss=float(loss.detach()) if loss_ok else float("nan"),
                    images_per_s=len(rows) / dt if dt > 0 else 0.0, lr=float(c.optim.lr) * s.factor, n=len(rows))

    def _end_epoch(self, s: _Run, epoch: int, seconds: float, last_epoch: bool) -> None:
        """Validation when due, the best epoch so far, checkpoints and metrics files."""
        c = self.config
        row = {"epoch": epoch + 1, "step": s.global_step, "lr": float(c.optim.lr) * s.factor, **s.acc.summary(),
               "epoch_seconds": round(seconds, 2)}
        due = (c.validation.every and (epoch + 1) % c.validation.every == 0) or last_epoch
        epoch_export = None
        if due and s.validator.can_validate:
            lfw_due = last_epoch or (c.validation.lfw_every and (epoch + 1) % c.validation.lfw_every == 0)
            res = self._validate(s.validator, s.net, s.device, s.amp, with_lfw=bool(lfw_due), epoch=epoch + 1)
            epoch_export = res.pop("_export_info", {})
            res.pop("_train_vectors", None)
            row.update(res)
        s.history.append(row)
        s.acc = _EpochStats()
        improved = self._improved(row, s.best)
        if improved:
            s.best = {"metric": c.validation.select, "value": self._select_value(row), "epoch": epoch + 1}
        # threshold and statistics describe the weights they were measured on: none for unvalidated epochs
        s.export_info = dict(epoch_export, epoch=epoch + 1) if epoch_export else {}
        self._save_epoch_checkpoints(s, epoch, improved)
        write_metrics(self.out, s.history, s.run_info)
        self._event("epoch", epoch=epoch + 1, metrics=row)

    # -- checkpoints -----------------------------------------------------------------------
    def _payload(self, s: _Run, epoch_done: int, step_in_epoch: int, kind: str) -> dict[str, Any]:
        """Everything a checkpoint holds (see :mod:`facedex.train.checkpoint`)."""
        c = self.config
        return {
            "kind": kind, "epoch": epoch_done, "step_in_epoch": step_in_epoch, "global_step": s.global_step,
            "model": {"backbone": c.model.backbone, "args": s.model_args, "state_dict": s.net.state_dict()},
            "loss": {"name": c.loss.name, "args": s.loss_args, "state_dict": s.loss_fn.state_dict()},
            "config": c.to_dict(), "classes": s.ds.classes, "data": str(s.ds.root),
            "data_fingerprint": s.fingerprint, "optimizer": s.optimizer.state_dict(),
            "scaler": s.scaler.state_dict() if s.scaler is not None else None,
            "rng": capture_rng(s.aug_gen), "epoch_stats": dataclasses.asdict(s.acc), "history": s.history,
            "best": s.best, "skipped_steps": s.skipped_total, "consecutive_skips": s.consecutive,
            "export_info": s.export_info, "run_info": s.run_info, "saved_at": time.time(),
        }

    def _save_epoch_checkpoints(self, s: _Run, epoch: int, improved: bool) -> None:
        """last.pt after every epoch; best.pt, a copy of it, when the epoch is the best so far."""
        save_checkpoint(s.last_path, self._payload(s, epoch + 1, 0, "epoch_end"))
        if improved:
            with atomic_path(s.best_path) as tmp:
                shutil.copyfile(s.last_path, tmp)

    # -- the end ---------------------------------------------------------------------------
    def _finish(self, s: _Run, interrupted: bool) -> TrainResult:
        """Metrics, curves, the export (unless stopped early) and the final run.json."""
        c = self.config
        write_metrics(self.out, s.history, s.run_info)
        plot_curves(self.out, s.history, f"{self.out.name}: {c.model.backbone} + {c.loss.name}")
        result = TrainResult(self.out, len([h for h in s.history if h.get("epoch", 0) > 0]), s.global_step,
                             s.history, s.best, s.last_path if s.last_path.is_file() else None,
                             s.best_path if s.best_path.is_file() else None, interrupted=interrupted,
                             run_info=s.run_info)
        if not interrupted and c.export.enabled:
            result.export = self._export(s)
        self._write_json("run.json", {**s.run_info, "result": {k: v for k, v in result.to_dict().items()
                                                               if k not in ("history", "run")}})
        return result

    def _export(self, s: _Run) -> ExportResult:
        c = self.config
        src = s.best_path if (c.export.checkpoint == "best" and s.best_path.is_file()) else s.last_path
        name = c.export.name or _model_name(self.out)
        self._stage(f"exporting {src.name} to {self.out / 'export'}")
        return export_checkpoint(src, self.out / "export", name, opset=c.export.opset,
                                 check_pixels=s.store.get(np.arange(min(32, len(s.store)))), source_path=src)

    # -- pieces ----------------------------------------------------------------------------------
    def _frozen_cache(self, net, store: ImageStore, n_train: int, validator: Validator, augment: Augmenter,
                      device: torch.device, amp: bool) -> tuple[int, torch.Tensor | None]:
        """With ``model.cache_views``: run the frozen stages once (training views and validation
        sets, float16, in memory) so that each step only runs the trainable stages."""
        c = self.config
        views, start = c.model.cache_views, c.model.freeze
        if not views:
            return 0, None
        per = cache_bytes(net, start, device)
        budget = c.data.memory_limit_mb * 2**20 - (store.pixels.nbytes if store.pixels is not None else 0)
        need = per * views * n_train
        if need > budget:
            raise TrainConfigError(
                f"model.cache_views = {views} needs {need / 2**20:.0f} MB for the frozen-stage outputs of {n_train} "
                f"images, more than data.memory_limit_mb leaves ({max(0, budget) / 2**20:.0f} MB); lower "
                "cache_views, raise data.memory_limit_mb, or set cache_views = 0")
        sets = {k: n for k, n in validator.sets().items() if k != "train"}
        fit, left = [], budget - need
        for k, n in sets.items():
            if n * per <= left:
                fit.append(k)
                left -= n * per
            else:
                log.info("validation set %s (%d images) does not fit the cache; it runs through every stage", k, n)
        total = views * n_train + sum(sets[k] for k in fit)
        self._stage(f"running the {start} frozen stages once on {views} view(s) of the training images "
                    f"({need / 2**20:.0f} MB) and on the validation images", total)
        tick = lambda k: self._event("advance", n=k)  # noqa: E731
        gen = torch.Generator().manual_seed(c.seed + 2)
        train_cache = build_cache(net, pixel_source(store.get_rows_fn(np.arange(n_train)), device), n_train, start,
                                  device, views=views, augment=augment, generator=gen, amp=amp, progress=tick)
        caches = {"train": train_cache[0]}
        sources = validator.pixel_sources(device)
        for k in fit:
            caches[k] = build_cache(net, sources[k], sets[k], start, device, amp=amp, progress=tick)[0]
        validator.use_cache(caches, start, device)
        return start, train_cache

    def _validate(self, validator: Validator, net, device, amp, *, with_lfw: bool, epoch: int,
                  train_embeddings: bool = False) -> dict[str, Any]:
        total = validator.images_per_run(with_lfw, train_embeddings)
        self._stage("validating before training" if epoch == 0 else f"validating epoch {epoch}", total)
        t0 = time.perf_counter()
        res = validator.run(net, device, amp, with_lfw=with_lfw, train_embeddings=train_embeddings,
                            progress=lambda k: self._event("advance", n=k))
        res["validation_seconds"] = round(time.perf_counter() - t0, 2)
        return res

    def _select_value(self, row: dict[str, Any]) -> float | None:
        key = {"fnir": "val_fnir_at_fpir_0.01", "rank1": "val_rank1", "lfw": "lfw_accuracy",
               "loss": "train_loss"}[self.config.validation.select]
        return row.get(key)

    def _improved(self, row: dict[str, Any], best: dict[str, Any] | None) -> bool:
        v = self._select_value(row)
        if v is None:
            # nothing measured this epoch: the latest epoch is the best we know of, unless a measured one exists
            return best is None or best.get("value") is None
        if best is None or best.get("value") is None:
            return True
        lower = self.config.validation.select in ("fnir", "loss")
        return v <= best["value"] if lower else v >= best["value"]

    @staticmethod
    def _describe_nonfinite(out, loss_ok: bool, grad_norm: float) -> str:
        if not loss_ok:
            bad = [k for k, v in out.parts.items() if not bool(torch.isfinite(v))]
            return "the loss is " + ("NaN/Inf in its " + " and ".join(bad) + " term" if bad else "NaN/Inf")
        return f"the gradient norm is {grad_norm}"

    def _nonfinite_message(self, what: str, epoch: int, step: int, consecutive: int, last: Path) -> str:
        c = self.config
        where = f"epoch {epoch + 1}, step {step + 1}"
        ck = (f"the last good checkpoint is {last} (resume from it with --resume after changing nothing, or start a "
              "new run with the changes below)") if last.is_file() else "no checkpoint was written before this step"
        hints = [f"lower optim.lr (now {c.optim.lr})"]
        if not c.stability.clip_grad_norm:
            hints.append("turn gradient clipping on (stability.clip_grad_norm = 5)")
        if c.loss.name == "center":
            hints.append("lower loss.args.weight or loss.args.center_lr, and keep loss.args.normalize = true")
        if c.stability.on_nonfinite == "stop":
            hints.append('or set stability.on_nonfinite = "skip" to skip such steps')
        stopped = f" ({consecutive} steps in a row)" if consecutive > 1 else ""
        return f"training stopped at {where}: {what}{stopped}; {ck}. To avoid it: " + "; ".join(hints) + "."

    def _write_json(self, name: str, data: dict[str, Any]) -> None:
        atomic_write_bytes(self.out / name, json.dumps(data, indent=2, ensure_ascii=False, default=str).encode())


@dataclass
class _EpochStats:
    """Running sums of one epoch (stored in mid-epoch checkpoints)."""

    images: int = 0
    steps: int = 0
    loss: float = 0.0
    correct: int = 0
    grad_norm: float = 0.0
    skipped: int = 0
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)

    def add(self, out, y: torch.Tensor, grad_norm: float, n: int) -> None:
        self.images += n
        self.steps += 1
        self.loss += float(out.loss.detach()) * n
        self.correct += int((out.logits.argmax(1) == y).sum())
        self.grad_norm += grad_norm
        for k, v in out.parts.items():
            self.parts[k] = self.parts.get(k, 0.0) + float(v) * n

    def summary(self) -> dict[str, Any]:
        n = max(1, self.images)
        row = {"train_loss": self.loss / n if self.images else None,
               "train_acc": self.correct / n if self.images else None,
               "grad_norm": self.grad_norm / max(1, self.steps) if self.steps else None,
               "skipped_steps": self.skipped,
               "images_per_s": round(self.images / self.seconds, 2) if self.seconds else None}
        for k, v in self.parts.items():
            row[f"loss_{k}"] = v / n
        return row


def _model_name(out: Path) -> str:
    name = "".join(c if c.isalnum() or c in "._-" else "-" for c in out.resolve().name).strip("-.")
    return name or "facedex-model"


def train(data: str | Path, out: str | Path, config: TrainConfig | None = None, *, resume: bool = False,
          overrides: dict[str, Any] | None = None, progress: Progress | None = None,
          stop: threading.Event | None = None) -> TrainResult:
    """Train on ``data`` (``facedex clean`` output) into ``out``; see the module documentation.

    ``overrides`` are dotted settings (``{"epochs": 3, "model.backbone": "mobilefacenet"}``) applied on
    top of ``config``; with ``resume`` the run's stored config is used and only settings that do not change
    the training (epochs, validation, export, device, threads) may differ. Setting ``stop`` ends the run
    after the current step with a checkpoint to resume from (``result.interrupted``).
    """
    return Trainer(data, out, config, resume=resume, overrides=overrides, progress=progress, stop=stop).run()
