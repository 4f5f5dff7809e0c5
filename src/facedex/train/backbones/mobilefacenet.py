"""MobileFaceNet (Chen et al., "MobileFaceNets: Efficient CNNs for Accurate
Real-Time Face Verification on Mobile Devices", CCBR 2018): about one million
parameters, inverted-residual bottlenecks, and a global depthwise convolution
(GDC) instead of global pooling, so the embedding keeps where on the face
each feature is.

    >>> from facedex.train.backbones.mobilefacenet import MobileFaceNet, MobileFaceNetConfig
    >>> net = MobileFaceNet(MobileFaceNetConfig(embedding_dim=128))
    >>> net(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 128])

The small backbone: trainable from scratch on CPU, and the one to pick for a
few thousand identities (see docs/train.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import ConvBNPReLU, InputNorm, init_weights


@dataclass
class MobileFaceNetConfig:
    """Architecture of :class:`MobileFaceNet` (defaults: the paper's)."""

    embedding_dim: int = 128
    width: int = 64  # channels of the first stages (the paper: 64)
    blocks: tuple[int, int, int] = (4, 6, 2)  # residual bottlenecks at 28, 14 and 7 pixels
    expansion: int = 2
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.blocks = tuple(int(b) for b in self.blocks)
        if len(self.blocks) != 3 or min(self.blocks) < 0:
            raise ValueError(f"mobilefacenet blocks must be three counts >= 0, got {self.blocks}")
        if self.width < 8 or self.expansion < 1 or self.embedding_dim < 2:
            raise ValueError("mobilefacenet: width >= 8, expansion >= 1 and embedding_dim >= 2 are required")


class Bottleneck(nn.Module):
    """1x1 expand → 3x3 depthwise (stride) → 1x1 linear projection, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, expansion: int):
        super().__init__()
        hidden = cin * expansion
        self.residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            ConvBNPReLU(cin, hidden, 1),
            ConvBNPReLU(hidden, hidden, 3, stride, 1, groups=hidden),
            ConvBNPReLU(hidden, cout, 1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class MobileFaceNet(nn.Module):
    def __init__(self, config: MobileFaceNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or MobileFaceNetConfig()
        w, e = cfg.width, cfg.expansion
        self.norm = InputNorm()
        self.stem = nn.Sequential(ConvBNPReLU(3, w, 3, 2, 1), ConvBNPReLU(w, w, 3, 1, 1, groups=w))  # 56
        self.stage1 = nn.Sequential(Bottleneck(w, w, 2, e), *[Bottleneck(w, w, 1, e) for _ in range(cfg.blocks[0])])  # 28
        self.stage2 = nn.Sequential(Bottleneck(w, 2 * w, 2, 2 * e),
                                    *[Bottleneck(2 * w, 2 * w, 1, e) for _ in range(cfg.blocks[1])])  # 14
        self.stage3 = nn.Sequential(Bottleneck(2 * w, 2 * w, 2, 4 * e),
                                    *[Bottleneck(2 * w, 2 * w, 1, e) for _ in range(cfg.blocks[2])])  # 7
        self.head = nn.Sequential(
            ConvBNPReLU(2 * w, 8 * w, 1),
            ConvBNPReLU(8 * w, 8 * w, 7, 1, 0, groups=8 * w, act=False),  # global depthwise conv
            nn.Flatten(),
            nn.Dropout(cfg.dropout),
            nn.Linear(8 * w, cfg.embedding_dim, bias=False),
            nn.BatchNorm1d(cfg.embedding_dim),
        )
        init_weights(self)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def stages(self) -> list[nn.Module]:
        return [self.stem, self.stage1, self.stage2, self.stage3, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for stage in self.stages():
            x = stage(x)
        return x
