"""Softmax cross-entropy on a linear classifier over the embeddings — the
baseline, and the first half of center loss's joint supervision.

    >>> loss = SoftmaxLoss(SoftmaxConfig(), num_classes=10, embedding_dim=128)
    >>> out = loss(torch.randn(4, 128), torch.tensor([0, 1, 2, 3]))
    >>> out.loss.backward()
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceLoss, LossOutput


@dataclass
class SoftmaxConfig:
    #: norm of the class weights after init_from_means, over the mean embedding norm:
    #: logits then start near ``init_scale`` x cosine similarity.
    init_scale: float = 16.0
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.init_scale <= 0:
            raise ValueError(f"init_scale must be positive, got {self.init_scale}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


class SoftmaxLoss(FaceLoss):
    def __init__(self, config: SoftmaxConfig, num_classes: int, embedding_dim: int):
        super().__init__()
        self.config = config
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.classifier = nn.Linear(embedding_dim, num_classes)
        nn.init.normal_(self.classifier.weight, 0, 0.01)
        nn.init.zeros_(self.classifier.bias)

    def init_from_means(self, means: torch.Tensor) -> None:
        with torch.no_grad():
            norm = means.norm(dim=1, keepdim=True).clamp_min(1e-12)
            scale = self.config.init_scale / float(norm.mean())
            self.classifier.weight.copy_(means / norm * scale)
            self.classifier.bias.zero_()

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logits = self.classifier(embeddings.float())
        loss = F.cross_entropy(logits, labels, label_smoothing=self.config.label_smoothing)
        return LossOutput(loss, logits, {"softmax": loss.detach()})
