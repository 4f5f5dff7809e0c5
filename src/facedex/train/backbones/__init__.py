"""Backbones by name: the networks that turn an aligned 112x112 face into an embedding.

    >>> from facedex.train.backbones import create_backbone, list_backbones
    >>> net, args = create_backbone("mobilefacenet", {"embedding_dim": 256})
    >>> [b.name for b in list_backbones()]
    ['iresnet18', 'iresnet34', 'iresnet50', 'mobilefacenet', 'sface']

Each entry pairs a module class with its config dataclass (one model per
file). ``args`` is the full config as a plain dict: checkpoints store it, so
a checkpoint rebuilds its network without the config file. Every backbone
has ``stages()`` (freezable units, input first) and ``embedding_dim``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from ...errors import TrainConfigError, UnknownNameError
from .iresnet import IResNet, IResNetConfig
from .mobilefacenet import MobileFaceNet, MobileFaceNetConfig
from .sface import SFaceConfig, SFaceNet


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    model: type[nn.Module]
    config: type
    defaults: dict[str, Any] = field(default_factory=dict)
    size: str = "small"  # "small" | "large"
    pretrained: tuple[str, ...] = ()  # --init names with weights for this architecture
    summary: str = ""


BACKBONES: dict[str, BackboneSpec] = {}


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES[spec.name] = spec
    return spec


register_backbone(BackboneSpec(
    "sface", SFaceNet, SFaceConfig, size="small", pretrained=("sface",),
    summary="SFace's MobileNet-style chain, 9.6 M parameters (6.4 M in the last layer); "
            "the pretrained weights facedex ships — fine-tune it"))
register_backbone(BackboneSpec(
    "mobilefacenet", MobileFaceNet, MobileFaceNetConfig, size="small",
    summary="MobileFaceNet, 1.0 M parameters; trains from scratch on a CPU"))
register_backbone(BackboneSpec(
    "iresnet18", IResNet, IResNetConfig, {"layers": (2, 2, 2, 2)}, size="large",
    summary="IResNet-18, 24 M parameters; large datasets, GPU"))
register_backbone(BackboneSpec(
    "iresnet34", IResNet, IResNetConfig, {"layers": (3, 4, 6, 3)}, size="large",
    summary="IResNet-34, 34 M parameters; large datasets, GPU"))
register_backbone(BackboneSpec(
    "iresnet50", IResNet, IResNetConfig, {"layers": (3, 4, 14, 3)}, size="large",
    summary="IResNet-50, 43 M parameters; the largest datasets, GPU"))


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise UnknownNameError("backbone", name, list(BACKBONES))
    return BACKBONES[name]


def list_backbones() -> list[BackboneSpec]:
    return [BACKBONES[n] for n in sorted(BACKBONES)]


def backbone_config(name: str, args: dict[str, Any] | None = None) -> Any:
    """The config dataclass of backbone ``name`` with ``args`` over its defaults."""
    spec = get_backbone(name)
    known = [f.name for f in dataclasses.fields(spec.config)]
    kwargs = {**spec.defaults, **(args or {})}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TrainConfigError(f"backbone {name!r} has no setting {', '.join(map(repr, unknown))}; "
                               f"its settings are: {', '.join(known)}")
    try:
        return spec.config(**kwargs)
    except (TypeError, ValueError) as err:
        raise TrainConfigError(f"backbone {name!r}: {err}") from err


def create_backbone(name: str, args: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Build backbone ``name``; returns the module and its full arguments (for checkpoints)."""
    cfg = backbone_config(name, args)
    return get_backbone(name).model(cfg), dataclasses.asdict(cfg)


__all__ = ["BACKBONES", "BackboneSpec", "create_backbone", "get_backbone", "list_backbones", "register_backbone",
           "backbone_config"]
