"""Checkpoints: everything needed to rebuild the model and continue the run exactly.

A checkpoint is a ``torch.save`` dictionary (read back with
``weights_only=True``: loading one never runs code) holding

* ``model``: backbone name, its full arguments and weights — enough to
  rebuild the network without the config file (as nanoGPT's ``model_args``);
* ``loss``: loss name, arguments and state (class weights, centres);
* ``config``: the resolved training config; ``classes``: the people, in label
  order; ``data_fingerprint``: which images and split were used;
* ``optimizer`` (and the mixed-precision ``scaler``), ``epoch``,
  ``step_in_epoch``, ``global_step``, the running sums of an unfinished epoch;
* ``rng``: the states of Python's, NumPy's and PyTorch's generators (CPU and
  CUDA) and of the augmentation generator;
* ``history`` (metrics per epoch), ``best``, and ``export_info`` (threshold
  and similarity statistics measured at this point, for the model card).

Files are written to a temporary name, flushed and renamed, so a crash or a
full disk never leaves a half-written ``last.pt``.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..files import atomic_path

FORMAT = "facedex-train-checkpoint"
VERSION = 1


def capture_rng(augment: torch.Generator) -> dict[str, Any]:
    kind, key, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": kind, "key": torch.from_numpy(key.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "torch": torch.get_rng_state(),
        "augment": augment.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], augment: torch.Generator) -> None:
    random.setstate(_tupled(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    augment.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tupled(x: Any) -> Any:
    return tuple(_tupled(v) for v in x) if isinstance(x, (list, tuple)) else x


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` atomically (:func:`facedex.files.atomic_path`: a temporary
    file, fsync, rename); a full disk raises :class:`CheckpointError` and leaves the
    previous checkpoint as it was."""
    path = Path(path)
    data = {"format": FORMAT, "version": VERSION, **payload}
    try:
        with atomic_path(path) as tmp:
            torch.save(data, tmp)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path} ({err.strerror or err}); "
                              "free some disk space or choose another OUT folder") from err
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (tensors on the CPU)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError… on a bad file
        first = (str(err).strip().splitlines() or [""])[0][:300]
        raise CheckpointError(f"{path}: not a readable facedex checkpoint ({type(err).__name__}: {first}); "
                              "it may be truncated or not from facedex — use another checkpoint "
                              "(checkpoints/last.pt or best.pt)") from err
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a facedex training checkpoint")
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(f"{path}: checkpoint format {data.get('version')} is newer than this facedex "
                              f"reads ({VERSION}); upgrade facedex")
    return data


def build_model(ckpt: dict[str, Any]) -> torch.nn.Module:
    """The network stored in a checkpoint, weights loaded, in eval mode on the CPU."""
    from .backbones import create_backbone

    m = ckpt["model"]
    net, _ = create_backbone(m["backbone"], m["args"])
    try:
        net.load_state_dict(m["state_dict"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint weights do not fit backbone {m['backbone']!r}: {err}") from err
    return net.eval()
