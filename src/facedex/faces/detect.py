"""Face detection: YuNet (5 landmarks), batched, with onnxruntime or OpenCV DNN.

Images larger than ``max_side`` are detected at a reduced size and the boxes
and landmarks mapped back to the original pixels; images are padded to a
multiple of 32 and images of equal padded size are run as one batch.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from .. import models
from ..errors import ConfigError, UnknownNameError
from ..types import Face

log = logging.getLogger(__name__)

_STRIDES = (8, 16, 32)
_OUTPUTS = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in _STRIDES)


@dataclass(frozen=True)
class DetectorConfig:
    """Detection settings.

    ``min_score``: minimum detection score, the detector's confidence (0..1).
    ``nms_threshold``: IoU above which overlapping boxes are merged.
    ``min_face``: faces whose shorter box side is below this many pixels (in
    the original image) are ignored.
    ``max_side``: images whose longer side exceeds this are detected at a
    reduced size (the smallest detectable face then grows in proportion).
    ``batch_size``: images of equal padded size run together.
    """

    min_score: float = 0.6
    nms_threshold: float = 0.3
    min_face: float = 20.0
    max_side: int = 1280
    batch_size: int = 16

    def __post_init__(self) -> None:
        if not 0.0 < self.min_score < 1.0:
            raise ConfigError(f"min_score must be in (0, 1), got {self.min_score}")
        if not 0.0 < self.nms_threshold <= 1.0:
            raise ConfigError(f"nms_threshold must be in (0, 1], got {self.nms_threshold}")
        if self.min_face < 0:
            raise ConfigError(f"min_face must be >= 0, got {self.min_face}")
        if self.max_side < 64:
            raise ConfigError(f"max_side must be at least 64, got {self.max_side}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")


class YuNetDetector:
    """YuNet (2023mar) face detector. Inputs are RGB ``uint8`` arrays."""

    def __init__(
        self,
        card: str = models.DEFAULT_DETECTOR,
        config: DetectorConfig | None = None,
        runtime: str | None = None,
    ):
        self.card = models.get_card(card, "detector")
        self.config = config or DetectorConfig()
        self.runtime = runtime
        self._runner: Callable[[np.ndarray], list[np.ndarray]] | None = None

    def _run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self._runner is None:
            from .. import config as cfg

            self._runner = models.runner_for(self.card, self.runtime or cfg.runtime_name(), _OUTPUTS)
        return self._runner(batch)

    def _prepare(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        scale = min(1.0, self.config.max_side / max(h, w))
        bgr = image[:, :, ::-1]
        if scale < 1.0:
            nw, nh = max(1, int(round(w * scale))), max(1, int(round(h * scale)))
            bgr = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA)
        else:
            nw, nh = w, h
        ph, pw = -(-nh // 32) * 32, -(-nw // 32) * 32
        padded = np.zeros((ph, pw, 3), dtype=np.float32)
        padded[:nh, :nw] = bgr
        return padded.transpose(2, 0, 1), scale

    def _decode(self, outs: dict[str, np.ndarray], i: int, hw: tuple[int, int], scale: float) -> list[Face]:
        ph, pw = hw
        boxes, scores, kpss = [], [], []
        thr = self.config.min_score
        for s in _STRIDES:
            cols = pw // s
            cls = np.clip(outs[f"cls_{s}"][i, :, 0], 0, 1)
            obj = np.clip(outs[f"obj_{s}"][i, :, 0], 0, 1)
            score = np.sqrt(cls * obj)
            keep = np.nonzero(score >= thr)[0]
            if keep.size == 0:
                continue
            rows_i, cols_i = np.divmod(keep, cols)
            bb = outs[f"bbox_{s}"][i, keep]
            kp = outs[f"kps_{s}"][i, keep].reshape(-1, 5, 2)
            cx = (cols_i + bb[:, 0]) * s
            cy = (rows_i + bb[:, 1]) * s
            bw = np.exp(np.minimum(bb[:, 2], 20.0)) * s
            bh = np.exp(np.minimum(bb[:, 3], 20.0)) * s
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, bw, bh], axis=1))
            kpss.append((kp + np.stack([cols_i, rows_i], axis=1)[:, None, :]) * s)
            scores.append(score[keep])
        if not boxes:
            return []
        box = np.concatenate(boxes)
        kps = np.concatenate(kpss)
        sc = np.concatenate(scores)
        idx = cv2.dnn.NMSBoxes(box.tolist(), sc.tolist(), thr, self.config.nms_threshold, top_k=5000)
        idx = np.asarray(idx, dtype=int).reshape(-1)
        faces = []
        for j in idx:
            b = box[j] / scale
            if min(b[2], b[3]) < self.config.min_face:
                continue
            k = kps[j] / scale
            faces.append(
                Face(
                    box=tuple(float(v) for v in b),
                    landmarks=tuple((float(x), float(y)) for x, y in k),
                    score=float(sc[j]),
                )
            )
        faces.sort(key=lambda f: -f.score)
        return faces

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB image, highest score first."""
        return self.detect_batch([image])[0]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[Face]]:
        """All faces in each image; images of equal padded size run as one batch."""
        prepared = [self._prepare(im) for im in images]
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i, (blob, _) in enumerate(prepared):
            groups[blob.shape[1:]].append(i)
        results: list[list[Face]] = [[] for _ in images]
        bs = self.config.batch_size
        for hw, members in groups.items():
            for start in range(0, len(members), bs):
                chunk = members[start : start + bs]
                batch = np.stack([prepared[i][0] for i in chunk])
                outs = dict(zip(_OUTPUTS, self._run(batch)))
                for j, i in enumerate(chunk):
                    results[i] = self._decode(outs, j, hw, prepared[i][1])
        return results


DETECTORS: dict[str, Callable[..., YuNetDetector]] = {"yunet-2023mar": YuNetDetector}


def make_detector(name: str = models.DEFAULT_DETECTOR, **kwargs) -> YuNetDetector:
    if name not in DETECTORS:
        raise UnknownNameError("detector", name, list(DETECTORS))
    return DETECTORS[name](name, **kwargs)


def central_face(faces: Iterable[Face], width: int, height: int) -> Face | None:
    """The face whose box centre is nearest the image centre (ties: larger first)."""
    best, best_key = None, None
    for f in faces:
        cx, cy = f.box[0] + f.box[2] / 2, f.box[1] + f.box[3] / 2
        key = ((cx - width / 2) ** 2 + (cy - height / 2) ** 2, -f.area)
        if best_key is None or key < best_key:
            best, best_key = f, key
    return best
