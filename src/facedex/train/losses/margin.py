"""Additive angular and cosine margins in one loss, as insightface's
``CombinedMarginLoss``: for the true class the logit ``s * cos(theta)`` becomes

    s * (cos(m1 * theta + m2) - m3)

* ArcFace (Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face
  Recognition", CVPR 2019): m1 = 1, m2 = 0.5, m3 = 0;
* CosFace (Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face
  Recognition", CVPR 2018): m1 = 1, m2 = 0, m3 = 0.35;
* SphereFace-style m1 > 1 and combinations work through the general formula.

Class weights and embeddings are L2-normalised, so the logits are scaled
cosines; this is what a cosine-similarity gallery measures.

    >>> loss = CombinedMarginLoss(MarginConfig(m2=0.5), num_classes=10, embedding_dim=128)   # ArcFace
    >>> out = loss(emb, labels); out.loss.backward()

Numerics: cosines are clamped to [-1, 1] and square roots and arccosines are
kept away from their infinite slopes at +-1. For ArcFace, when theta + m2
would pass pi (where cos stops decreasing) the target logit falls back to
``cos(theta) - m2 * sin(m2)`` as in the paper's code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceLoss, LossOutput

_EPS = 1e-6


@dataclass
class MarginConfig:
    s: float = 64.0  # scale of the logits
    m1: float = 1.0  # multiplicative angular margin (SphereFace)
    m2: float = 0.0  # additive angular margin (ArcFace)
    m3: float = 0.0  # additive cosine margin (CosFace)
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.s <= 0:
            raise ValueError(f"scale s must be positive, got {self.s}")
        if self.m1 < 1.0 or not 0.0 <= self.m2 < math.pi / 2 or not 0.0 <= self.m3 < 1.0:
            raise ValueError(f"margins out of range: m1 >= 1, 0 <= m2 < pi/2, 0 <= m3 < 1 (got {self.m1}, "
                             f"{self.m2}, {self.m3})")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


class CombinedMarginLoss(FaceLoss):
    def __init__(self, config: MarginConfig, num_classes: int, embedding_dim: int):
        super().__init__()
        self.config = config
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.normal_(self.weight, 0, 0.01)

    def init_from_means(self, means: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight.copy_(F.normalize(means.float(), dim=1))

    def cosines(self, embeddings: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(embeddings.float(), dim=1), F.normalize(self.weight, dim=1)).clamp(-1.0, 1.0)

    def target_logit(self, cos_t: torch.Tensor) -> torch.Tensor:
        """cos(m1 * theta + m2) - m3 for the true-class cosines ``cos_t``."""
        c = self.config
        if c.m1 == 1.0 and c.m2 == 0.0:
            return cos_t - c.m3
        if c.m1 == 1.0:
            sin_t = torch.sqrt((1.0 - cos_t * cos_t).clamp_min(_EPS))
            out = cos_t * math.cos(c.m2) - sin_t * math.sin(c.m2)
            # beyond theta = pi - m2, cos(theta + m2) would increase again
            out = torch.where(cos_t > math.cos(math.pi - c.m2), out, cos_t - math.sin(math.pi - c.m2) * c.m2)
            return out - c.m3
        theta = torch.acos(cos_t.clamp(-1.0 + _EPS, 1.0 - _EPS))
        return torch.cos(c.m1 * theta + c.m2) - c.m3

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cos = self.cosines(embeddings)
        idx = torch.arange(cos.shape[0], device=cos.device)
        target = self.target_logit(cos[idx, labels])
        logits = cos.clone()
        logits[idx, labels] = target
        loss = F.cross_entropy(logits * self.config.s, labels, label_smoothing=self.config.label_smoothing)
        return LossOutput(loss, cos.detach(), {"margin": loss.detach()})
