"""Layers shared by the backbones.

Every backbone takes aligned 112x112 RGB crops as ``N x 3 x 112 x 112``
float pixel values in 0..255 and normalises them itself (:class:`InputNorm`),
as SFace does, so an exported model needs no mean/std outside the graph.
"""

from __future__ import annotations

import torch
from torch import nn


class InputNorm(nn.Module):
    """``(x - mean) * scale`` with fixed constants (SFace: 127.5 and 1/128)."""

    def __init__(self, mean: float = 127.5, scale: float = 0.0078125):
        super().__init__()
        self.mean = float(mean)
        self.scale = float(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) * self.scale

    def extra_repr(self) -> str:
        return f"mean={self.mean}, scale={self.scale}"


class ConvBNPReLU(nn.Sequential):
    """Convolution (no bias) → batch norm → PReLU (or no activation with ``act=False``)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, padding: int = 0,
                 groups: int = 1, eps: float = 1e-5, act: bool = True):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=eps),
        ]
        if act:
            layers.append(nn.PReLU(cout))
        super().__init__(*layers)


def init_weights(module: nn.Module) -> None:
    """Kaiming-normal convolutions and linear layers, unit batch norms (from-scratch training)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.weight is not None:
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.PReLU):
            nn.init.constant_(m.weight, 0.25)


def forward_from(net: nn.Module, x: torch.Tensor, start: int = 0) -> torch.Tensor:
    """Run ``net`` from stage ``start`` on: pixels when ``start == 0`` (the input
    normalisation included), else the output of stage ``start - 1``. For every
    backbone ``forward_from(net, x, 0)`` equals ``net(x)``."""
    if start == 0:
        x = net.norm(x)
    for stage in net.stages()[start:]:
        x = stage(x)
    return x


def forward_until(net: nn.Module, x: torch.Tensor, end: int) -> torch.Tensor:
    """Pixels through the input normalisation and stages ``[0, end)``."""
    x = net.norm(x)
    for stage in net.stages()[:end]:
        x = stage(x)
    return x
