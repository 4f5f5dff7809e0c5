"""IResNet (Duta et al., "Improved Residual Networks", ICPR 2020), as
insightface's ``arcface_torch`` uses it for ArcFace (Deng et al., CVPR 2019):
pre-activation basic blocks with PReLU, a stride-1 stem for 112x112 faces,
and a batch-norm → dropout → fully connected → batch-norm embedding head.

    >>> from facedex.train.backbones.iresnet import IResNet, IResNetConfig
    >>> net = IResNet(IResNetConfig(layers=(2, 2, 2, 2), embedding_dim=512))   # iresnet18
    >>> net(torch.zeros(2, 3, 112, 112)).shape
    torch.Size([2, 512])

The large backbones: ``iresnet18`` (24 M parameters), ``iresnet34`` and
``iresnet50`` (43 M). They need tens of thousands of identities and a GPU to
pay off (see docs/train.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .common import InputNorm, init_weights


@dataclass
class IResNetConfig:
    layers: tuple[int, int, int, int] = (2, 2, 2, 2)
    embedding_dim: int = 512
    width: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.layers = tuple(int(n) for n in self.layers)
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise ValueError(f"iresnet layers must be four block counts >= 1, got {self.layers}")
        if self.width < 8 or self.embedding_dim < 2:
            raise ValueError("iresnet: width >= 8 and embedding_dim >= 2 are required")


class IBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin, eps=1e-5),
            nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-5),
            nn.PReLU(cout),
            nn.Conv2d(cout, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-5),
        )
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout, eps=1e-5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.body(x) + identity


class IResNet(nn.Module):
    def __init__(self, config: IResNetConfig | None = None):
        super().__init__()
        self.config = cfg = config or IResNetConfig()
        w = cfg.width
        self.norm = InputNorm()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w, eps=1e-5), nn.PReLU(w))
        stages, cin = [], w
        for i, n in enumerate(cfg.layers):
            cout = w * 2 ** i
            blocks = [IBasicBlock(cin, cout, 2)] + [IBasicBlock(cout, cout, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.head = nn.Sequential(
            nn.BatchNorm2d(cin, eps=1e-5),
            nn.Dropout(cfg.dropout),
            nn.Flatten(),
            nn.Linear(cin * 7 * 7, cfg.embedding_dim),
            nn.BatchNorm1d(cfg.embedding_dim, eps=1e-5),
        )
        init_weights(self)
        # zero-init the last batch norm of each residual branch: every block starts as the identity
        for m in self.modules():
            if isinstance(m, IBasicBlock):
                nn.init.zeros_(m.body[-1].weight)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def stages(self) -> list[nn.Module]:
        return [self.stem, self.layer1, self.layer2, self.layer3, self.layer4, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(x)
        for stage in self.stages():
            x = stage(x)
        return x
