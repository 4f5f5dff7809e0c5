"""`facedex train`: fine-tune SFace or train a face-embedding network on `facedex clean`
output, and export it as an ONNX embedder the rest of facedex uses.

    >>> from facedex.train import train, TrainConfig, load_config
    >>> result = train("clean/", "runs/ft1", load_config("train.toml"))
    >>> result.export.onnx                    # use with --embedder
    PosixPath('runs/ft1/export/ft1.onnx')

Needs PyTorch (``pip install 'facedex[train]'``). Only :mod:`facedex.cli`
imports this package; nothing is loaded until a name below is used.
See docs/train.md.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "train": "facedex.train.loop",
    "Trainer": "facedex.train.loop",
    "TrainResult": "facedex.train.loop",
    "TrainEvent": "facedex.train.loop",
    "TrainConfig": "facedex.train.config",
    "load_config": "facedex.train.config",
    "to_toml": "facedex.train.config",
    "export_checkpoint": "facedex.train.export",
    "ExportResult": "facedex.train.export",
    "load_checkpoint": "facedex.train.checkpoint",
    "scan_dataset": "facedex.train.data",
    "create_backbone": "facedex.train.backbones",
    "list_backbones": "facedex.train.backbones",
    "create_loss": "facedex.train.losses",
    "list_losses": "facedex.train.losses",
}

__all__ = sorted(_EXPORTS)


def require_torch() -> None:
    """Raise a helpful error when PyTorch is missing."""
    try:
        import torch  # noqa: F401
    except ImportError:
        from ..errors import MissingDependencyError

        raise MissingDependencyError("torch", "train", "facedex train (a CPU build: pip install torch==2.13.0)") from None


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'facedex.train' has no attribute {name!r}")
    if module != "facedex.train.config":
        require_torch()
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
