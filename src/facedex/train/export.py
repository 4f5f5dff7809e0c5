"""Export a trained network as an ONNX embedder with its model card.

``OUT/export/<name>.onnx`` takes ``N x 3 x 112 x 112`` float RGB pixels in
0..255 (aligned with the ArcFace 5-point template, like SFace; any batch
size) and returns ``N x D`` embeddings; ``<name>.card.json`` beside it says
so, with the file's sha256, so that

    facedex enroll my.gallery people/ --embedder OUT/export/<name>.onnx

works unchanged, and a gallery built with it refuses vectors from any other
embedder (the card id is ``name@sha256[:16]``).

Before anything is written the ONNX file is run with onnxruntime on random
pixels and real crops and compared with PyTorch: the largest difference of an
embedding value must be within :data:`TOLERANCE` of the largest value (at
least 1) and every embedding's cosine similarity to PyTorch's at least
:data:`MIN_COSINE`; otherwise nothing is written and :class:`ExportError` says
by how much they differ.

The card's ``default_threshold`` is the similarity that let 1 % of stranger
searches through in the validation (against the training gallery);
``extra["clean"]`` holds the similarity statistics `facedex clean` needs;
``extra["train"]`` how the model was made.
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import __version__, models
from ..errors import ExportError
from ..files import atomic_write_bytes
from .backbones.sface import probe_batch
from .checkpoint import build_model, load_checkpoint

log = logging.getLogger(__name__)

TOLERANCE = 1e-4
MIN_COSINE = 0.99999


@dataclass
class ExportResult:
    onnx: Path
    card: Path
    card_id: str
    max_abs_diff: float
    min_cosine: float
    default_threshold: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"onnx": str(self.onnx), "card": str(self.card), "card_id": self.card_id,
                "max_abs_diff": self.max_abs_diff, "min_cosine": self.min_cosine,
                "default_threshold": self.default_threshold, **self.details}


def _onnx_bytes(net: torch.nn.Module, opset: int) -> bytes:
    x = torch.zeros(2, 3, 112, 112)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
        try:
            torch.onnx.export(net, (x,), buf, dynamo=False, input_names=["data"], output_names=["embedding"],
                              dynamic_axes={"data": {0: "N"}, "embedding": {0: "N"}}, opset_version=opset,
                              do_constant_folding=True)
        except (TypeError, RuntimeError, ValueError) as err:
            raise ExportError(f"PyTorch could not export the network to ONNX ({err})") from err
    return buf.getvalue()


def _compare(data: bytes, net: torch.nn.Module, x: np.ndarray) -> tuple[float, float]:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {"data": np.ascontiguousarray(x, np.float32)})[0]
    with torch.no_grad():
        want = net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
    diff = float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))
    cos = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12)
    return diff, float(np.min(cos))


def card_for(name: str, sha256: str, dim: int, ckpt: dict[str, Any]) -> models.ModelCard:
    cfg = ckpt["config"]
    info = ckpt.get("export_info") or {}
    thr = info.get("threshold", {}).get("value")
    init = cfg["model"]["init"]
    derived = "fine-tuned from SFace (Apache-2.0, OpenCV Zoo)" if init == "sface" else (
        "trained from scratch" if init == "scratch" else f"fine-tuned from {Path(init).name}")
    hist = [h for h in ckpt.get("history", []) if h.get("epoch")]
    last = hist[-1] if hist else {}
    first = next((h for h in ckpt.get("history", []) if h.get("epoch") == 0), {})
    summary = {k: last.get(k) for k in ("val_rank1", "val_fnir_at_fpir_0.01", "lfw_accuracy") if last.get(k) is not None}
    before = {k: first.get(k) for k in ("val_rank1", "val_fnir_at_fpir_0.01", "lfw_accuracy") if first.get(k) is not None}
    return models.ModelCard(
        name=name, task="embedder", source=f"{name}.onnx", sha256=sha256, input_size=(112, 112),
        color_order="RGB", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), embedding_dim=dim,
        alignment="similarity-5pt", template=models.ARCFACE_112,
        default_threshold=round(float(thr), 3) if thr is not None else None,
        license="the license of its training data and starting weights; " + derived,
        reference=f"facedex {__version__} train: {cfg['model']['backbone']} + {cfg['loss']['name']} loss, {derived}",
        prepare="none", backend="onnx",
        extra={
            **({"clean": {k: v for k, v in info["clean"].items()}} if info.get("clean") else {}),
            "train": {
                "backbone": cfg["model"]["backbone"], "loss": cfg["loss"]["name"], "init": init,
                "epochs": ckpt.get("epoch"), "global_step": ckpt.get("global_step"),
                "people": len(ckpt.get("classes", [])), "data": ckpt.get("data"),
                "data_fingerprint": ckpt.get("data_fingerprint"),
                "threshold": info.get("threshold"), "validation": summary, "validation_before": before,
            },
        },
    )


def export_checkpoint(checkpoint: str | Path | dict[str, Any], out_dir: str | Path, name: str, *,
                      check_pixels: np.ndarray | None = None, opset: int = 17,
                      source_path: str | Path | None = None) -> ExportResult:
    """Export a checkpoint (path or loaded dict) to ``out_dir/<name>.onnx`` + ``<name>.card.json``."""
    ckpt = load_checkpoint(checkpoint) if not isinstance(checkpoint, dict) else checkpoint
    if not name or not all(c.isalnum() or c in "._-" for c in name):
        raise ExportError(f"model name {name!r}: use letters, digits, '.', '_' and '-' only")
    net = build_model(ckpt).float()
    data = _onnx_bytes(net, opset)
    try:
        import onnx

        onnx.checker.check_model(onnx.load_from_string(data))
    except Exception as err:  # onnx raises ValidationError and others
        raise ExportError(f"the exported ONNX graph does not pass onnx.checker ({err})") from err
    x = probe_batch(4)
    if check_pixels is not None and len(check_pixels):
        real = np.asarray(check_pixels[:64], np.float32).transpose(0, 3, 1, 2)
        x = np.concatenate([x, real])
    diff, cos = _compare(data, net, x)
    if not (diff <= TOLERANCE and cos >= MIN_COSINE):
        raise ExportError(f"the ONNX export differs from PyTorch: relative max difference {diff:.3g} (tolerance "
                          f"{TOLERANCE}), lowest cosine {cos:.7f} (needs {MIN_COSINE}); nothing was written — "
                          "please report this with your torch and onnxruntime versions")
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    card = card_for(name, sha, net.embedding_dim, ckpt)
    card.extra["export_check"] = {"relative_max_abs_diff": diff, "min_cosine": cos, "tolerance": TOLERANCE,
                                  "min_cosine_required": MIN_COSINE, "inputs": int(len(x)), "opset": opset,
                                  "checkpoint": str(source_path) if source_path else None}
    out_dir = Path(out_dir)
    onnx_path, card_path = out_dir / f"{name}.onnx", out_dir / f"{name}.card.json"
    atomic_write_bytes(onnx_path, data)
    d = card.to_dict()
    d["source"] = onnx_path.name  # relative: the folder can be moved
    atomic_write_bytes(card_path, json.dumps(d, indent=2, ensure_ascii=False).encode())
    if card.default_threshold is None:
        log.warning("no validation threshold in this checkpoint; galleries will use 0.5 until `facedex calibrate`")
    log.info("exported %s (%s): relative max |onnx - torch| = %.2g", onnx_path, card.id, diff)
    return ExportResult(onnx_path, card_path, card.id, diff, cos, card.default_threshold,
                        {"checkpoint": str(source_path) if source_path else None})
