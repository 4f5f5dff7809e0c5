"""Center loss with softmax, the joint supervision of Wen et al., "A
Discriminative Feature Learning Approach for Deep Face Recognition", ECCV 2016.

Softmax separates the people; the center term pulls every embedding towards
its person's centre:

    L = L_softmax + weight * L_C,   L_C = 1/(2m) * sum_i ||x_i - c_{y_i}||^2

over a batch of m embeddings x_i (L2-normalised first when ``normalize``, the
default: the gallery compares directions, and a bounded term cannot blow up).
The gradient of L_C with respect to x_i is (x_i - c_{y_i}) / m. The centres
are not trained by the optimiser: after each step they move by the paper's
rule (its Eq. 4), with their own learning rate ``center_lr`` (alpha):

    delta_c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j),   c_j <- c_j - alpha * delta_c_j

    >>> loss = SoftmaxCenterLoss(CenterConfig(weight=0.5, center_lr=0.5), num_classes=10, embedding_dim=128)
    >>> out = loss(emb, labels); out.loss.backward(); optimiser.step()
    >>> loss.after_step(emb.detach(), labels)      # move the centres

Stability: the paper's weight 0.003 was for raw features whose squared
distances run into the hundreds; on unit vectors the squared distance is at
most 4, so the default weight is larger (0.5), and alpha must stay in (0, 1]
(above 1 a centre overshoots its class mean and oscillates).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .base import FaceLoss, LossOutput
from .softmax import SoftmaxConfig, SoftmaxLoss


@dataclass
class CenterConfig:
    weight: float = 0.5  # lambda, the weight of the center term
    center_lr: float = 0.5  # alpha, the centres' own learning rate
    normalize: bool = True  # center term on L2-normalised embeddings
    init_scale: float = 16.0  # see SoftmaxConfig
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.weight < 0:
            raise ValueError(f"center loss weight must be >= 0, got {self.weight}")
        if not 0.0 < self.center_lr <= 1.0:
            raise ValueError(f"center_lr (alpha) must be in (0, 1], got {self.center_lr}")


class CenterLoss(nn.Module):
    """The center term alone: per-class centres and the paper's update rule."""

    def __init__(self, num_classes: int, embedding_dim: int, center_lr: float = 0.5, normalize: bool = True):
        super().__init__()
        self.center_lr = center_lr
        self.normalize = normalize
        self.register_buffer("centers", torch.zeros(num_classes, embedding_dim))

    def features(self, embeddings: torch.Tensor) -> torch.Tensor:
        x = embeddings.float()
        return F.normalize(x, dim=1) if self.normalize else x

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = self.features(embeddings)
        return 0.5 * (x - self.centers[labels]).pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        x = self.features(embeddings.detach())
        diff = self.centers[labels] - x
        delta = torch.zeros_like(self.centers).index_add_(0, labels, diff)
        counts = torch.bincount(labels, minlength=self.centers.shape[0]).to(delta.dtype)
        self.centers.sub_(self.center_lr * delta / (1.0 + counts)[:, None])


class SoftmaxCenterLoss(FaceLoss):
    def __init__(self, config: CenterConfig, num_classes: int, embedding_dim: int):
        super().__init__()
        self.config = config
        self.num_classes, self.embedding_dim = num_classes, embedding_dim
        self.softmax = SoftmaxLoss(SoftmaxConfig(config.init_scale, config.label_smoothing), num_classes, embedding_dim)
        self.center = CenterLoss(num_classes, embedding_dim, config.center_lr, config.normalize)

    def init_from_means(self, means: torch.Tensor) -> None:
        self.softmax.init_from_means(means)
        with torch.no_grad():
            self.center.centers.copy_(self.center.features(means))

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        soft = self.softmax(embeddings, labels)
        center = self.center(embeddings, labels)
        loss = soft.loss + self.config.weight * center
        return LossOutput(loss, soft.logits, {"softmax": soft.loss.detach(), "center": center.detach()})

    def after_step(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        self.center.update(embeddings, labels)
