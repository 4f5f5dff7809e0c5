"""Training configuration: TOML file → validated dataclasses → resolved values.

A config file only needs the settings that differ from the defaults::

    epochs = 4
    [model]
    backbone = "sface"     # fine-tune the pretrained SFace (the default)
    freeze = 20            # keep the first 20 of its 27 blocks as they are
    [loss]
    name = "arcface"
    [loss.args]
    s = 32.0

Settings written ``"auto"`` are chosen by :func:`resolve` from the rest (mostly:
fine-tuning a pretrained network or training from scratch); the resolved
config is written to ``OUT/config.toml`` and stored in every checkpoint, so a
run can always be repeated and resumed exactly. Unknown keys are errors that
list the known ones.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TrainConfigError

AUTO = "auto"


@dataclass
class DataConfig:
    """How DATA is read (see facedex.train.data)."""

    val_fraction: float = 0.2  # held-out share per person when the manifest has no split
    min_images: int = 2  # training images a person needs to be trained on
    skip_bad_images: bool = False  # skip unreadable / wrongly sized files instead of stopping
    memory_limit_mb: int = 4096  # keep decoded crops in memory up to this size, else read per batch


@dataclass
class AugmentConfig:
    """Random changes to each training crop (none at validation)."""

    flip: bool = True  # horizontal flip with probability 1/2
    shift: float = 0.03  # translation up to this share of the crop size
    scale: float = 0.05  # zoom in or out by up to this share
    rotate: float = 0.0  # rotation up to this many degrees
    color: float = 0.15  # brightness, contrast and saturation changed by up to this share
    gray: float = 0.05  # probability of turning a crop grey


@dataclass
class ModelConfig:
    backbone: str = "sface"
    init: str = AUTO  # "scratch", "sface" (pretrained), a facedex checkpoint (.pt); auto: sface for sface
    freeze: int | str = AUTO  # leading stages kept as they are (sface: 27 blocks + head); auto: 23 for sface, else 0
    freeze_bn: bool | str = AUTO  # keep batch-norm statistics fixed; auto: when starting from pretrained weights
    cache_views: int | str = AUTO  # >0: run the frozen stages once on this many versions of each image; auto: 3 if frozen
    args: dict[str, Any] = field(default_factory=dict)  # backbone settings, e.g. {embedding_dim = 256}


@dataclass
class LossConfig:
    name: str = "arcface"
    head_init: str = AUTO  # "class_means" or "random"; auto: class means when starting from pretrained weights
    args: dict[str, Any] = field(default_factory=dict)  # loss settings, e.g. {s = 32.0, m2 = 0.4}


@dataclass
class OptimConfig:
    name: str = "sgd"  # "sgd" (momentum, Nesterov) or "adamw"
    lr: float | str = AUTO  # learning rate of the loss head; auto (sgd): 0.1 from scratch, 0.05 fine-tuning
    backbone_lr_mult: float | str = AUTO  # backbone lr = lr * this; auto: 1 from scratch, 0.2 fine-tuning
    momentum: float = 0.9
    weight_decay: float = 5e-4
    scheduler: str = "cosine"  # "cosine", "step" or "constant"
    warmup_epochs: float | str = AUTO  # linear warm-up; auto: 1 from scratch, 0 fine-tuning
    min_lr_ratio: float = 0.0  # cosine ends at lr * this
    step_epochs: list[int] = field(default_factory=list)  # "step": epochs at which lr is multiplied by step_gamma
    step_gamma: float = 0.1


@dataclass
class StabilityConfig:
    clip_grad_norm: float = 5.0  # clip the global gradient norm (0: off)
    on_nonfinite: str = "stop"  # NaN/Inf loss or gradients: "stop" (keep the last good checkpoint) or "skip" the step
    max_skipped_steps: int = 20  # with "skip": stop after this many non-finite steps in a row
    deterministic: bool = True  # deterministic kernels (slower on GPU)


@dataclass
class ValidationConfig:
    every: int = 1  # identification on the held-out images every N epochs (0: only before and after)
    before: bool = True  # also measure before the first step (the starting point)
    strangers: str = ""  # folder of aligned crops of people NOT in DATA, for FPIR; default: leave-one-person-out
    lfw: str = ""  # LFW folder: 10-fold accuracy on pairs of people NOT in DATA
    lfw_pairs: str = ""  # default: pairs.txt next to the LFW folder
    lfw_every: int = 0  # LFW every N epochs (0: only before and after training)
    gallery_per_person: int = 0  # training images per person in the validation gallery (0: all)
    batch_size: int = 128
    select: str = "fnir"  # best.pt by "fnir" (FNIR @ FPIR 1 %), "rank1", "lfw" or "loss"


@dataclass
class CheckpointConfig:
    every_steps: int = 0  # also checkpoint every N steps inside an epoch (0: at the end of each epoch)


@dataclass
class ExportConfig:
    enabled: bool = True  # export OUT/export/<name>.onnx + .card.json at the end
    name: str = ""  # model name in the card (default: the OUT folder's name)
    checkpoint: str = "best"  # "best" or "last"
    opset: int = 17


@dataclass
class TrainConfig:
    epochs: int | str = AUTO  # auto: 3 fine-tuning, 30 from scratch
    batch_size: int = 64
    seed: int = 0
    device: str = AUTO  # "cpu", "cuda", "cuda:1"; auto: the first CUDA GPU, else the CPU
    amp: bool | str = AUTO  # mixed precision; auto: on CUDA only
    threads: int = 0  # CPU threads for PyTorch (0: its default)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "config") -> "TrainConfig":
        cfg = _build(cls, d, where)
        validate(cfg, where)
        return cfg

    @property
    def pretrained(self) -> bool:
        """Does the run start from trained weights (SFace or a checkpoint)?"""
        return self.model.init != "scratch"


#: Settings that change what is trained; everything else (validation, export,
#: checkpoint frequency, device, mixed precision, threads) may differ when a run is resumed.
TRAJECTORY_KEYS = ("batch_size", "seed", "data", "augment", "model", "loss", "optim", "stability")

def _fail(where: str, msg: str) -> TrainConfigError:
    return TrainConfigError(f"{where}: {msg}")


def _check_value(where: str, key: str, value: Any, default: Any, annotation: str) -> Any:
    """Type-check one setting against its annotation; ints are accepted for floats, and
    a string is accepted for a number or boolean setting only when it is ``"auto"``."""
    allowed = [t.strip() for t in annotation.split("|")]
    others = [t for t in allowed if t != "str"]
    words = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}
    described = " or ".join([words.get(t, t) for t in others] + ([repr(AUTO)] if "str" in allowed else [])) \
        if others else words.get(annotation, annotation)
    if isinstance(value, str):
        if "str" in allowed and (not others or value == AUTO):
            return value
    elif isinstance(value, bool):
        if "bool" in allowed:
            return value
    elif isinstance(value, (int, float)) and "float" in allowed:
        if not math.isfinite(float(value)):
            raise _fail(where, f"{key} must be a finite number, got {value}")
        return float(value)
    elif isinstance(value, int) and "int" in allowed:
        return value
    elif isinstance(value, dict) and annotation.startswith("dict"):
        return dict(value)
    elif isinstance(value, list) and annotation.startswith("list"):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise _fail(where, f"{key} must be a list of integers, got {value}")
        return list(value)
    raise _fail(where, f"{key} must be {described}, got {value!r} ({type(value).__name__})")


def _build(cls: type, d: dict[str, Any], where: str, section: str = "") -> Any:
    if not isinstance(d, dict):
        raise _fail(where, f"[{section}] must be a table")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(fields))
    if unknown:
        place = f"[{section}]" if section else "top level"
        raise _fail(where, f"unknown setting {', '.join(map(repr, unknown))} at {place}; known: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in d:
            continue
        value = d[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        key = f"{section}.{name}" if section else name
        if dataclasses.is_dataclass(default):
            kwargs[name] = _build(type(default), value, where, key)
        else:
            kwargs[name] = _check_value(where, key, value, default, str(f.type))
    return cls(**kwargs)


def validate(cfg: TrainConfig, where: str = "config") -> None:
    """Range checks that need more than a type (names are checked when used)."""
    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise _fail(where, msg)

    need(cfg.epochs == AUTO or cfg.epochs >= 1, f"epochs must be at least 1, got {cfg.epochs}")
    need(cfg.batch_size >= 2, f"batch_size must be at least 2 (batch norm needs 2 samples), got {cfg.batch_size}")
    need(cfg.threads >= 0, f"threads must be >= 0, got {cfg.threads}")
    need(cfg.device == AUTO or cfg.device == "cpu" or cfg.device.startswith("cuda"),
         f"device must be 'auto', 'cpu' or 'cuda[:N]', got {cfg.device!r}")
    need(0.0 <= cfg.data.val_fraction < 1.0, f"data.val_fraction must be in [0, 1), got {cfg.data.val_fraction}")
    need(cfg.data.min_images >= 1, f"data.min_images must be at least 1, got {cfg.data.min_images}")
    need(cfg.data.memory_limit_mb >= 0, "data.memory_limit_mb must be >= 0")
    a = cfg.augment
    need(0 <= a.shift <= 0.25 and 0 <= a.scale <= 0.5 and 0 <= a.rotate <= 45 and 0 <= a.color <= 1 and 0 <= a.gray <= 1,
         "augment: shift in [0, 0.25], scale in [0, 0.5], rotate in [0, 45], color and gray in [0, 1]")
    need(cfg.model.freeze == AUTO or cfg.model.freeze >= 0, f"model.freeze must be >= 0, got {cfg.model.freeze}")
    need(cfg.model.cache_views == AUTO or 0 <= cfg.model.cache_views <= 64,
         f"model.cache_views must be in [0, 64], got {cfg.model.cache_views}")
    need(cfg.model.cache_views in (0, AUTO) or cfg.model.freeze not in (0, AUTO),
         "model.cache_views caches the output of the frozen stages: set model.freeze >= 1 too")
    need(cfg.model.freeze_bn in (True, False, AUTO), f"model.freeze_bn must be true, false or 'auto', got {cfg.model.freeze_bn!r}")
    need(cfg.loss.head_init in (AUTO, "class_means", "random"),
         f"loss.head_init must be 'auto', 'class_means' or 'random', got {cfg.loss.head_init!r}")
    o = cfg.optim
    need(o.name in ("sgd", "adamw"), f"optim.name must be 'sgd' or 'adamw', got {o.name!r}")
    need(o.lr == AUTO or 0 < o.lr < 10, f"optim.lr must be 'auto' or in (0, 10), got {o.lr!r}")
    need(o.backbone_lr_mult == AUTO or 0 <= o.backbone_lr_mult <= 10,
         f"optim.backbone_lr_mult must be 'auto' or in [0, 10], got {o.backbone_lr_mult!r}")
    need(o.warmup_epochs == AUTO or 0 <= o.warmup_epochs <= (1e9 if cfg.epochs == AUTO else cfg.epochs),
         f"optim.warmup_epochs must be 'auto' or between 0 and epochs, got {o.warmup_epochs!r}")
    need(0 <= o.momentum < 1 and o.weight_decay >= 0, "optim: momentum in [0, 1) and weight_decay >= 0")
    need(o.scheduler in ("cosine", "step", "constant"), f"optim.scheduler must be cosine, step or constant, got {o.scheduler!r}")
    need(0 <= o.min_lr_ratio <= 1 and 0 < o.step_gamma <= 1, "optim: min_lr_ratio in [0, 1], step_gamma in (0, 1]")
    s = cfg.stability
    need(s.clip_grad_norm >= 0, f"stability.clip_grad_norm must be >= 0 (0: off), got {s.clip_grad_norm}")
    need(s.on_nonfinite in ("stop", "skip"), f"stability.on_nonfinite must be 'stop' or 'skip', got {s.on_nonfinite!r}")
    need(s.max_skipped_steps >= 1, "stability.max_skipped_steps must be at least 1")
    v = cfg.validation
    need(v.every >= 0 and v.lfw_every >= 0 and v.gallery_per_person >= 0 and v.batch_size >= 1,
         "validation: every, lfw_every, gallery_per_person >= 0 and batch_size >= 1")
    need(v.select in ("fnir", "rank1", "lfw", "loss"), f"validation.select must be fnir, rank1, lfw or loss, got {v.select!r}")
    need(cfg.checkpoint.every_steps >= 0, "checkpoint.every_steps must be >= 0")
    need(cfg.export.checkpoint in ("best", "last"), f"export.checkpoint must be 'best' or 'last', got {cfg.export.checkpoint!r}")
    need(cfg.export.opset >= 13, "export.opset must be at least 13")
    need(not cfg.export.name or all(c.isalnum() or c in "._-" for c in cfg.export.name),
         f"export.name may only hold letters, digits, '.', '_' and '-', got {cfg.export.name!r}")


def resolve(cfg: TrainConfig) -> TrainConfig:
    """A copy with every ``"auto"`` replaced by its value (see the field comments)."""
    from .backbones import get_backbone

    c = TrainConfig.from_dict(cfg.to_dict())
    spec = get_backbone(c.model.backbone)
    if c.model.init == AUTO:
        c.model.init = spec.pretrained[0] if spec.pretrained else "scratch"
    pre = c.pretrained
    if c.epochs == AUTO:
        c.epochs = 3 if pre else 30
    if c.model.freeze == AUTO:
        c.model.freeze = 23 if c.model.init == "sface" else 0
    if c.model.cache_views == AUTO:
        c.model.cache_views = 3 if c.model.freeze else 0
    if c.model.freeze_bn == AUTO:
        c.model.freeze_bn = pre
    if c.loss.head_init == AUTO:
        c.loss.head_init = "class_means" if pre else "random"
    if c.optim.lr == AUTO:
        c.optim.lr = (0.05 if pre else 0.1) if c.optim.name == "sgd" else (1e-4 if pre else 1e-3)
    if c.optim.backbone_lr_mult == AUTO:
        c.optim.backbone_lr_mult = 0.2 if pre else 1.0
    if c.optim.warmup_epochs == AUTO:
        c.optim.warmup_epochs = 0.0 if pre else min(1.0, float(c.epochs))
    if c.device == AUTO:
        import torch

        c.device = "cuda" if torch.cuda.is_available() else "cpu"
    if c.amp == AUTO:
        c.amp = c.device.startswith("cuda")
    return c


def load_config(path: str | Path | None) -> TrainConfig:
    """Read a TOML config file (``None``: the defaults)."""
    if path is None:
        return TrainConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TrainConfigError(f"{p}: no such config file") from None
    except OSError as err:
        raise TrainConfigError(f"{p}: cannot read ({err.strerror or err})") from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise TrainConfigError(f"{p}: not valid TOML ({err})") from err
    return TrainConfig.from_dict(data, str(p))


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], where: str = "command line") -> TrainConfig:
    """A copy with dotted keys (``"model.backbone"``) set; values are checked like the file's."""
    d = cfg.to_dict()
    for key, value in overrides.items():
        if value is None:
            continue
        node = d
        parts = key.split(".")
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return TrainConfig.from_dict(d, where)


def trajectory_differences(a: TrainConfig, b: TrainConfig) -> list[str]:
    """Settings that change what is trained and differ between two configs."""
    da, db = a.to_dict(), b.to_dict()
    out = []

    def walk(x: Any, y: Any, key: str) -> None:
        if isinstance(x, dict) and isinstance(y, dict) and key.split(".")[-1] != "args":
            for k in sorted(set(x) | set(y)):
                walk(x.get(k), y.get(k), f"{key}.{k}" if key else k)
        elif _norm(x) != _norm(y):
            out.append(f"{key}: {_norm(x)!r} → {_norm(y)!r}")

    for k in TRAJECTORY_KEYS:
        walk(da.get(k), db.get(k), k)
    return out


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v)) if isinstance(v, (dict, list, tuple)) else v


# --- TOML writing (tomllib only reads) --------------------------------------------------


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise TrainConfigError(f"cannot write {v} to TOML")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TrainConfigError(f"cannot write {type(v).__name__} to TOML")


def _toml_key(k: str) -> str:
    return k if k and all(c.isalnum() or c in "_-" for c in k) else json.dumps(k)


def to_toml(cfg: TrainConfig, header: str = "") -> str:
    d = cfg.to_dict()
    lines = [f"# {ln}" for ln in header.splitlines()]
    for k, v in d.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {_toml_value(v)}")
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"]
            lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items() if not isinstance(vv, dict)]
            for kk, vv in v.items():
                if isinstance(vv, dict):
                    lines += [f"[{k}.{kk}]"] + [f"{_toml_key(a)} = {_toml_value(b)}" for a, b in vv.items()]
    return "\n".join(lines) + "\n"
