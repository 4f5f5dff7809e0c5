"""SFace (Zhong et al., "SFace: Sigmoid-Constrained Hypersphere Loss for Robust
Face Recognition", IEEE TIP 2021) as a PyTorch module, with its pretrained
weights converted from the OpenCV-zoo ONNX file facedex already ships.

The network is a plain MobileNet-style chain — 27 convolution + batch-norm +
PReLU blocks (full 3x3, then alternating depthwise 3x3 and pointwise 1x1; five
stride-2 steps from 112 to 7 pixels), a batch norm, dropout, a fully connected
layer from the 7x7x1024 map to 128 values, and a final batch norm. Pixel
normalisation, ``(x - 127.5) / 128``, is the first layer, as in the ONNX graph.

    >>> from facedex.train.backbones.sface import pretrained_sface
    >>> net, report = pretrained_sface()        # converted and checked against onnxruntime
    >>> report["max_abs_diff"] < 1e-3
    True

:func:`convert_onnx` reads the graph with the ``onnx`` package and refuses
anything that is not exactly this chain, naming the node, so a different
ONNX file can never be loaded into the wrong layers silently.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ...errors import ConversionError
from .common import ConvBNPReLU, InputNorm, init_weights

log = logging.getLogger(__name__)

#: (in, out, kernel, stride, groups) of the 27 blocks of the 2021dec model.
SFACE_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 32, 3, 1, 1), (32, 32, 3, 1, 32), (32, 64, 1, 1, 1),
    (64, 64, 3, 2, 64), (64, 128, 1, 1, 1),
    (128, 128, 3, 1, 128), (128, 128, 1, 1, 1),
    (128, 128, 3, 2, 128), (128, 256, 1, 1, 1),
    (256, 256, 3, 1, 256), (256, 256, 1, 1, 1),
    (256, 256, 3, 2, 256), (256, 512, 1, 1, 1),
    (512, 512, 3, 1, 512), (512, 512, 1, 1, 1),
    (512, 512, 3, 1, 512), (512, 512, 1, 1, 1),
    (512, 512, 3, 1, 512), (512, 512, 1, 1, 1),
    (512, 512, 3, 1, 512), (512, 512, 1, 1, 1),
    (512, 512, 3, 1, 512), (512, 512, 1, 1, 1),
    (512, 512, 3, 2, 512), (512, 1024, 1, 1, 1),
    (1024, 1024, 3, 1, 1024), (1024, 1024, 1, 1, 1),
)

#: Tolerance of the conversion check: max |torch - onnxruntime| over the
#: embedding values, relative to the largest embedding value (at least 1).
CONVERSION_TOLERANCE = 1e-4


@dataclass
class SFaceConfig:
    """Architecture of :class:`SFaceNet` (the defaults are the pretrained model's)."""

    blocks: list[list[int]] = field(default_factory=lambda: [list(b) for b in SFACE_BLOCKS])
    embedding_dim: int = 128
    input_size: int = 112
    dropout: float = 0.4
    block_eps: float = 1e-3
    head_eps: float = 2e-5
    mean: float = 127.5
    scale: float = 0.0078125

    def __post_init__(self) -> None:
        self.blocks = [list(map(int, b)) for b in self.blocks]
        for i, b in enumerate(self.blocks):
            if len(b) != 5 or min(b) < 1:
                raise ValueError(f"sface block {i}: expected [in, out, kernel, stride, groups], got {b}")
            if i and b[0] != self.blocks[i - 1][1]:
                raise ValueError(f"sface block {i}: takes {b[0]} channels but block {i - 1} gives {self.blocks[i - 1][1]}")

    @property
    def feature_hw(self) -> int:
        hw = self.input_size
        for b in self.blocks:
            hw = (hw + 2 * (b[2] // 2) - b[2]) // b[3] + 1
        return hw


class SFaceHead(nn.Module):
    """Batch norm → dropout → fully connected (the whole 7x7 map) → batch norm."""

    def __init__(self, channels: int, hw: int, dim: int, dropout: float, eps: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(channels * hw * hw, dim)
        self.features = nn.BatchNorm1d(dim, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.bn1(x))
        return self.features(self.fc(torch.flatten(x, 1)))


class SFaceNet(nn.Module):
    """The SFace network; see the module documentation."""

    def __init__(self, config: SFaceConfig | None = None):
        super().__init__()
        self.config = cfg = config or SFaceConfig()
        self.norm = InputNorm(cfg.mean, cfg.scale)
        self.body = nn.Sequential(*[
            ConvBNPReLU(cin, cout, k, s, k // 2, groups=g, eps=cfg.block_eps) for cin, cout, k, s, g in cfg.blocks
        ])
        self.head = SFaceHead(cfg.blocks[-1][1], cfg.feature_hw, cfg.embedding_dim, cfg.dropout, cfg.head_eps)
        init_weights(self)

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def stages(self) -> list[nn.Module]:
        """Freezable units, input first: the 27 blocks, then the head."""
        return [*self.body, self.head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.norm(x)))


# --- conversion from ONNX ----------------------------------------------------------------


def _fail(path: Path, node: Any, what: str) -> ConversionError:
    where = f"node {node.name or node.output[0]!r} ({node.op_type})" if node is not None else "graph"
    return ConversionError(
        f"{path}: {where}: {what}; this is not the SFace graph facedex knows how to convert — "
        "use --init scratch, or report the model file"
    )


def convert_onnx(path: str | Path) -> tuple[SFaceConfig, dict[str, torch.Tensor]]:
    """Read the float32 SFace ONNX graph into an :class:`SFaceConfig` and a state dict."""
    import onnx
    from onnx import helper, numpy_helper

    path = Path(path)
    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, OSError, … on a bad file
        raise ConversionError(f"{path}: not a readable ONNX model ({err})") from err
    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    consts: dict[str, np.ndarray] = dict(inits)
    nodes = []
    for n in g.node:
        if n.op_type == "Constant":
            consts[n.output[0]] = numpy_helper.to_array(helper.get_attribute_value(n.attribute[0]))
        else:
            nodes.append(n)

    def attrs(n: Any) -> dict[str, Any]:
        return {a.name: helper.get_attribute_value(a) for a in n.attribute}

    def const(n: Any, i: int) -> np.ndarray:
        if len(n.input) <= i or n.input[i] not in consts:
            raise _fail(path, n, f"input {i} is not a constant")
        return consts[n.input[i]]

    def expect(k: int, op: str) -> Any:
        if k >= len(nodes) or nodes[k].op_type != op:
            got = nodes[k].op_type if k < len(nodes) else "the end of the graph"
            raise _fail(path, nodes[k] if k < len(nodes) else None, f"expected {op}, found {got}")
        return nodes[k]

    state: dict[str, torch.Tensor] = {}

    def bn(n: Any, prefix: str) -> float:
        for i, key in enumerate(("weight", "bias", "running_mean", "running_var"), start=1):
            state[f"{prefix}.{key}"] = torch.from_numpy(np.array(const(n, i), np.float32).reshape(-1))
        state[f"{prefix}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
        return float(attrs(n).get("epsilon", 1e-5))

    k = 0
    sub, mul = expect(0, "Sub"), expect(1, "Mul")
    mean, scale = float(const(sub, 1).reshape(-1)[0]), float(const(mul, 1).reshape(-1)[0])
    k = 2
    blocks, block_eps = [], set()
    while k < len(nodes) and nodes[k].op_type == "Conv":
        conv, bnode, act = nodes[k], expect(k + 1, "BatchNormalization"), expect(k + 2, "PRelu")
        w = np.array(const(conv, 1), np.float32)
        a = attrs(conv)
        if len(conv.input) > 2 and conv.input[2]:
            raise _fail(path, conv, "has a bias; SFace convolutions have none")
        kh, kw = w.shape[2:]
        stride = list(a.get("strides", [1, 1]))
        pads = list(a.get("pads", [0, 0, 0, 0]))
        groups = int(a.get("group", 1))
        if kh != kw or stride[0] != stride[1] or pads != [kh // 2] * 4 or list(a.get("dilations", [1, 1])) != [1, 1]:
            raise _fail(path, conv, f"unsupported geometry (kernel {kh}x{kw}, strides {stride}, pads {pads})")
        i = len(blocks)
        blocks.append([w.shape[1] * groups, w.shape[0], kh, stride[0], groups])
        state[f"body.{i}.0.weight"] = torch.from_numpy(w)
        block_eps.add(round(bn(bnode, f"body.{i}.1"), 8))
        slope = np.array(const(act, 1), np.float32).reshape(-1)
        if slope.size != w.shape[0]:
            raise _fail(path, act, f"{slope.size} slopes for {w.shape[0]} channels")
        state[f"body.{i}.2.weight"] = torch.from_numpy(slope)
        k += 3
    if not blocks:
        raise _fail(path, nodes[k] if k < len(nodes) else None, "no convolution blocks found")
    if len(block_eps) != 1:
        raise _fail(path, None, f"batch norms use different epsilons {sorted(block_eps)}")
    head_eps = bn(expect(k, "BatchNormalization"), "head.bn1")
    drop = expect(k + 1, "Dropout")
    ratio = float(const(drop, 1).reshape(-1)[0]) if len(drop.input) > 1 and drop.input[1] else 0.5
    expect(k + 2, "Flatten")
    gemm = expect(k + 3, "Gemm")
    ga = attrs(gemm)
    if ga.get("transA", 0) or not ga.get("transB", 0) or ga.get("alpha", 1.0) != 1.0 or ga.get("beta", 1.0) != 1.0:
        raise _fail(path, gemm, f"unsupported attributes {ga}")
    fc_w, fc_b = np.array(const(gemm, 1), np.float32), np.array(const(gemm, 2), np.float32).reshape(-1)
    state["head.fc.weight"], state["head.fc.bias"] = torch.from_numpy(fc_w), torch.from_numpy(fc_b)
    fc_eps = bn(expect(k + 4, "BatchNormalization"), "head.features")
    if k + 5 != len(nodes):
        raise _fail(path, nodes[k + 5], "unexpected layers after the embedding")
    if abs(fc_eps - head_eps) > 1e-9:
        raise _fail(path, None, f"head batch norms use different epsilons ({head_eps}, {fc_eps})")
    dims = g.input[0].type.tensor_type.shape.dim
    size = int(dims[3].dim_value or 112)
    cfg = SFaceConfig(blocks=blocks, embedding_dim=int(fc_w.shape[0]), input_size=size, dropout=ratio,
                      block_eps=block_eps.pop(), head_eps=head_eps, mean=mean, scale=scale)
    expected_in = blocks[-1][1] * cfg.feature_hw ** 2
    if fc_w.shape[1] != expected_in:
        raise _fail(path, gemm, f"takes {fc_w.shape[1]} inputs, the convolution map has {expected_in}")
    return cfg, state


def compare_with_onnx(net: nn.Module, onnx_path: str | Path, x: np.ndarray) -> dict[str, float]:
    """Run the module (eval mode) and onnxruntime on ``x``; return the differences."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    want = sess.run(None, {sess.get_inputs()[0].name: np.ascontiguousarray(x, np.float32)})[0]
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            got = net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()
    finally:
        net.train(was_training)
    diff = float(np.max(np.abs(got - want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    cos = np.sum(got * want, 1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(want, axis=1) + 1e-12)
    return {"max_abs_diff": diff, "relative_diff": diff / scale, "min_cosine": float(np.min(cos)),
            "tolerance": CONVERSION_TOLERANCE, "samples": int(x.shape[0])}


def probe_batch(n: int = 4, seed: int = 1234) -> np.ndarray:
    """Uniform random pixels in 0..255 (a fixed, reproducible probe)."""
    return np.random.default_rng(seed).uniform(0, 255, size=(n, 3, 112, 112)).astype(np.float32)


def pretrained_sface(check_inputs: np.ndarray | None = None) -> tuple[SFaceNet, dict[str, Any]]:
    """The pretrained SFace module, converted from facedex's prepared float32 ONNX
    file and checked against onnxruntime (random pixels plus ``check_inputs``,
    ``N x 3 x 112 x 112`` in 0..255) before it is returned."""
    from ... import models

    card = models.get_card("sface-2021dec")
    onnx_path = models.prepared_path(card)
    cfg, state = convert_onnx(onnx_path)
    net = SFaceNet(cfg)
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [m for m in missing if not m.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ConversionError(f"{onnx_path}: converted weights do not fit (missing {missing}, unexpected {unexpected})")
    x = probe_batch()
    if check_inputs is not None and len(check_inputs):
        x = np.concatenate([x, np.asarray(check_inputs, np.float32)])
    report = compare_with_onnx(net, onnx_path, x)
    report.update(source=str(onnx_path), card=card.id, config=asdict(cfg))
    if not (report["relative_diff"] <= CONVERSION_TOLERANCE and report["min_cosine"] >= 1 - 1e-6):
        raise ConversionError(
            f"{onnx_path}: the converted SFace module differs from onnxruntime by {report['max_abs_diff']:.3g} "
            f"(relative {report['relative_diff']:.3g}, tolerance {CONVERSION_TOLERANCE}); refusing to fine-tune "
            "it — please report this with your torch/onnxruntime versions"
        )
    log.info("SFace converted from %s: max |torch - onnxruntime| = %.2g on %d inputs",
             onnx_path, report["max_abs_diff"], report["samples"])
    return net, report
