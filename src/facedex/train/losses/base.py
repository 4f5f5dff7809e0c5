"""What every training loss looks like to the training loop."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass
class LossOutput:
    loss: torch.Tensor  # the scalar to minimise
    logits: torch.Tensor  # N x classes, for the training accuracy
    parts: dict[str, torch.Tensor] = field(default_factory=dict)  # named terms, for the logs


class FaceLoss(nn.Module):
    """A classification-style loss with its own parameters (class weights, centres).

    ``forward(embeddings, labels)`` returns a :class:`LossOutput`;
    ``init_from_means(means)`` starts the class weights (and centres) at the
    mean embedding of each class, which is what makes fine-tuning a
    pretrained network gentle; ``after_step(embeddings, labels)`` runs after
    each optimiser step (center loss moves its centres there).
    """

    num_classes: int
    embedding_dim: int

    def init_from_means(self, means: torch.Tensor) -> None:
        raise NotImplementedError

    def after_step(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        return None
