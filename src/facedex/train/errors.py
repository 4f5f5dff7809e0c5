"""Errors raised by ``facedex train``. Every message names the item, what was
wrong with it and what to do next."""

from __future__ import annotations

from ..errors import ConfigError, FacedexError


class TrainError(FacedexError):
    """Training cannot start or continue as asked."""


class TrainConfigError(ConfigError):
    """The training configuration (file or options) has an unusable value."""


class MissingDependencyError(TrainError):
    """PyTorch (the optional extra ``facedex[train]``) is not installed."""


class DataError(TrainError):
    """The training data folder cannot be used (too few people or images, bad files)."""


class NonFiniteError(TrainError):
    """The loss or the gradients became NaN or infinite and the run was stopped."""

    def __init__(self, message: str, checkpoint: str | None = None):
        self.checkpoint = checkpoint
        super().__init__(message)


class CheckpointError(TrainError):
    """A checkpoint is missing, damaged, or does not belong to this run."""


class ExportError(TrainError):
    """The model could not be exported, or the exported file disagrees with PyTorch."""


class ConversionError(TrainError):
    """The pretrained ONNX model could not be converted into a PyTorch module."""
