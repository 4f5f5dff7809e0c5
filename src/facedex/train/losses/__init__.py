"""Training losses by name.

    >>> from facedex.train.losses import create_loss, list_losses
    >>> loss, args = create_loss("arcface", {"s": 32.0}, num_classes=158, embedding_dim=128)
    >>> sorted(list_losses())
    ['arcface', 'center', 'combined', 'cosface', 'softmax']

* ``center``: softmax + center loss (Wen et al., ECCV 2016), :mod:`.center`;
* ``arcface``, ``cosface``, ``combined``: one combined-margin implementation
  (insightface's CombinedMarginLoss), :mod:`.margin`, with the presets below;
* ``softmax``: plain cross-entropy, :mod:`.softmax`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ...errors import TrainConfigError, UnknownNameError
from .base import FaceLoss, LossOutput
from .center import CenterConfig, CenterLoss, SoftmaxCenterLoss
from .margin import CombinedMarginLoss, MarginConfig
from .softmax import SoftmaxConfig, SoftmaxLoss


@dataclass(frozen=True)
class LossSpec:
    name: str
    loss: type[FaceLoss]
    config: type
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""


LOSSES: dict[str, LossSpec] = {}


def register_loss(spec: LossSpec) -> LossSpec:
    LOSSES[spec.name] = spec
    return spec


register_loss(LossSpec("center", SoftmaxCenterLoss, CenterConfig,
                       summary="softmax + center loss (Wen et al., ECCV 2016)"))
register_loss(LossSpec("arcface", CombinedMarginLoss, MarginConfig, {"s": 64.0, "m2": 0.5},
                       summary="additive angular margin (Deng et al., CVPR 2019)"))
register_loss(LossSpec("cosface", CombinedMarginLoss, MarginConfig, {"s": 64.0, "m3": 0.35},
                       summary="additive cosine margin (Wang et al., CVPR 2018)"))
register_loss(LossSpec("combined", CombinedMarginLoss, MarginConfig, {"s": 64.0, "m2": 0.3, "m3": 0.2},
                       summary="cos(m1*theta + m2) - m3, set m1, m2, m3 yourself"))
register_loss(LossSpec("softmax", SoftmaxLoss, SoftmaxConfig, summary="plain softmax cross-entropy"))


def get_loss(name: str) -> LossSpec:
    if name not in LOSSES:
        raise UnknownNameError("loss", name, list(LOSSES))
    return LOSSES[name]


def list_losses() -> list[str]:
    return sorted(LOSSES)


def loss_config(name: str, args: dict[str, Any] | None = None) -> Any:
    spec = get_loss(name)
    known = [f.name for f in dataclasses.fields(spec.config)]
    kwargs = {**spec.defaults, **(args or {})}
    unknown = sorted(set(kwargs) - set(known))
    if unknown:
        raise TrainConfigError(f"loss {name!r} has no setting {', '.join(map(repr, unknown))}; "
                               f"its settings are: {', '.join(known)}")
    try:
        return spec.config(**kwargs)
    except (TypeError, ValueError) as err:
        raise TrainConfigError(f"loss {name!r}: {err}") from err


def create_loss(name: str, args: dict[str, Any] | None, *, num_classes: int,
                embedding_dim: int) -> tuple[FaceLoss, dict[str, Any]]:
    cfg = loss_config(name, args)
    return get_loss(name).loss(cfg, num_classes, embedding_dim), dataclasses.asdict(cfg)


__all__ = ["LOSSES", "LossSpec", "FaceLoss", "LossOutput", "create_loss", "get_loss", "list_losses", "loss_config",
           "register_loss", "CenterLoss", "SoftmaxCenterLoss", "CenterConfig", "CombinedMarginLoss", "MarginConfig",
           "SoftmaxLoss", "SoftmaxConfig"]
