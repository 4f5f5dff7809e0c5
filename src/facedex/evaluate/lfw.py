"""The LFW "View 2" verification protocol.

``pairs.txt`` holds 10 folds of 300 matched and 300 mismatched pairs. Each
image is embedded once: the detected face nearest the image centre (LFW
images are centred on their subject); when no face is detected the protocol
still needs a score, so a fixed centre crop is aligned with the median LFW
landmark positions (counted and reported as ``fallbacks``). For each fold the
threshold is chosen on the other nine; the result is the mean and (population)
standard deviation of the ten fold accuracies, plus VAL at FAR = 0.1 %
(true accepts at the threshold that accepts 0.1 % of the training folds'
mismatched pairs).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConfigError, DatasetError, PairsError
from ..faces.detect import central_face
from ..media import load_image
from ..pipeline import FacePipeline, chunked
from ..types import Face

log = logging.getLogger(__name__)

# Median landmarks of the central face over LFW (deep-funneled, 250x250), as a
# fraction of the image size: the fallback when no face is detected.
LFW_MEDIAN_LANDMARKS = np.array(
    [[104.2, 112.7], [147.6, 111.8], [126.7, 136.6], [108.4, 155.9], [145.5, 155.6]]
) / 250.0


@dataclass(frozen=True)
class Pair:
    a: Path
    b: Path
    same: bool
    fold: int


def read_pairs(pairs_file: str | Path, data_dir: str | Path, *, check_files: bool = True) -> list[Pair]:
    """Parse an LFW pairs file (``N_FOLDS N_PER_FOLD`` header, then per fold
    ``N_PER_FOLD`` matched ``name i j`` lines and ``N_PER_FOLD`` mismatched
    ``name1 i name2 j`` lines)."""
    pairs_file, data_dir = Path(pairs_file), Path(data_dir)
    try:
        lines = pairs_file.read_text().splitlines()
    except OSError as err:
        raise PairsError(f"{pairs_file}: cannot read ({err.strerror or err})") from err
    if not lines:
        raise PairsError(f"{pairs_file}: empty file")
    head = lines[0].split()
    try:
        n_folds, per_fold = (int(x) for x in head) if len(head) == 2 else (1, None)
    except ValueError:
        raise PairsError(f"{pairs_file}:1: header must be 'FOLDS PAIRS_PER_FOLD', got {lines[0]!r}") from None
    body = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()][1 if len(head) == 2 else 0 :]
    if per_fold is not None and len(body) != n_folds * per_fold * 2:
        raise PairsError(f"{pairs_file}: header promises {n_folds}x{per_fold}x2 = {n_folds * per_fold * 2} "
                         f"pairs but the file has {len(body)} lines")
    block = (per_fold or len(body)) * 2

    def img(name: str, idx: str, lineno: int) -> Path:
        try:
            n = int(idx)
        except ValueError:
            raise PairsError(f"{pairs_file}:{lineno}: image number {idx!r} is not an integer") from None
        return data_dir / name / f"{name}_{n:04d}.jpg"

    pairs = []
    for k, (lineno, line) in enumerate(body):
        t = line.split()
        if len(t) == 3:
            pair = Pair(img(t[0], t[1], lineno), img(t[0], t[2], lineno), True, k // block)
        elif len(t) == 4:
            pair = Pair(img(t[0], t[1], lineno), img(t[2], t[3], lineno), False, k // block)
        else:
            raise PairsError(f"{pairs_file}:{lineno}: expected 'name i j' or 'name1 i name2 j', got {line!r}")
        pairs.append(pair)
    if check_files:
        for k, p in enumerate(pairs):
            for f in (p.a, p.b):
                if not f.is_file():
                    raise PairsError(f"{pairs_file}:{body[k][0]}: image {f} does not exist (is {data_dir} the "
                                     "lfw/ folder?)")
    return pairs


# Median box of the central face over LFW, as (x, y, w, h) fractions of the image.
LFW_MEDIAN_BOX = (0.313, 0.266, 0.374, 0.493)


def fallback_face(width: int, height: int) -> Face:
    """A centre crop placed where LFW faces usually are (score 0: not detected)."""
    lm = LFW_MEDIAN_LANDMARKS * [width, height]
    fx, fy, fw, fh = LFW_MEDIAN_BOX
    return Face((fx * width, fy * height, fw * width, fh * height),
                tuple((float(x), float(y)) for x, y in lm), 0.0)


@dataclass
class EmbeddedSet:
    paths: list[Path]
    vectors: np.ndarray
    fallbacks: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def embed_central_faces(paths: Sequence[Path], pipeline: FacePipeline, *, batch: int = 32,
                        progress: Callable[[int], None] | None = None) -> EmbeddedSet:
    """One embedding per image: the central face, or the fallback crop."""
    fallbacks: list[Path] = []
    vectors = np.zeros((len(paths), pipeline.embedder.dim), np.float32)
    t0 = time.perf_counter()
    for start_idx, chunk in zip(range(0, len(paths), batch), chunked(paths, batch)):
        images = [load_image(p) for p in chunk]
        detections = pipeline.detector.detect_batch(images)
        crops = []
        for p, im, faces in zip(chunk, images, detections):
            h, w = im.shape[:2]
            face = central_face(faces, w, h)
            if face is None:
                fallbacks.append(p)
                face = fallback_face(w, h)
            crops.append(pipeline.embedder.align(im, face))
        vectors[start_idx : start_idx + len(chunk)] = pipeline.embedder.embed_crops(crops)
        if progress:
            progress(len(chunk))
    return EmbeddedSet(list(paths), vectors, fallbacks, time.perf_counter() - t0)


def best_accuracy_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold maximising accuracy (``score >= t`` means same person)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], same[order].astype(np.int64)
    # accepting the top i pairs: correct = true accepts + true rejects
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(1 - y)])
    correct = tp + (len(y) - y.sum() - fp)
    # only cut between distinct scores
    valid = np.concatenate([[True], s[:-1] != s[1:], [True]]) if len(s) else np.array([True])
    i = int(np.argmax(np.where(valid, correct, -1)))
    if i == 0:
        return float(np.nextafter(s[0], np.inf)) if len(s) else 0.0
    if i == len(s):
        return float(s[-1])
    return float((s[i - 1] + s[i]) / 2)


def threshold_at_far(scores: np.ndarray, same: np.ndarray, far: float) -> float:
    """Smallest threshold accepting at most ``far`` of the mismatched pairs."""
    diff = np.sort(scores[~same])[::-1]
    allowed = int(math.floor(far * len(diff) + 1e-9))
    if allowed >= len(diff):
        return float(diff[-1])
    return float(np.nextafter(diff[allowed], np.inf))


@dataclass
class VerificationResult:
    accuracy_mean: float
    accuracy_std: float
    fold_accuracies: list[float]
    fold_thresholds: list[float]
    val_at_far: float
    val_at_far_std: float
    far_target: float
    far_achieved: float
    pairs: int
    images: int
    fallbacks: int
    fallback_images: list[str]
    seconds: float
    scores: np.ndarray
    same: np.ndarray
    embedder: str = ""

    @property
    def folds(self) -> int:
        return len(self.fold_accuracies)

    def to_dict(self) -> dict[str, Any]:
        return {
            "protocol": f"LFW View 2, {self.folds}-fold, threshold chosen on the other {self.folds - 1} folds",
            "embedder": self.embedder,
            "accuracy": round(self.accuracy_mean, 5),
            "accuracy_std": round(self.accuracy_std, 5),
            "fold_accuracies": [round(a, 5) for a in self.fold_accuracies],
            "fold_thresholds": [round(t, 5) for t in self.fold_thresholds],
            "val_at_far": round(self.val_at_far, 5),
            "val_at_far_std": round(self.val_at_far_std, 5),
            "far_target": self.far_target,
            "far_achieved": round(self.far_achieved, 6),
            "pairs": self.pairs,
            "images": self.images,
            "fallbacks": self.fallbacks,
            "fallback_images": self.fallback_images,
            "seconds": round(self.seconds, 2),
        }


def verification_metrics(scores: np.ndarray, same: np.ndarray, folds: np.ndarray,
                         far: float = 1e-3) -> dict[str, Any]:
    """10-fold accuracy and VAL@FAR from pair scores (pure arithmetic, no models)."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    folds = np.asarray(folds)
    fold_ids = np.unique(folds)
    if fold_ids.size < 2:
        raise ConfigError("10-fold evaluation needs at least 2 folds")
    accs, thrs, vals, fars = [], [], [], []
    for k in fold_ids:
        test, train = folds == k, folds != k
        t = best_accuracy_threshold(scores[train], same[train])
        accs.append(float(np.mean((scores[test] >= t) == same[test])))
        thrs.append(t)
        tf = threshold_at_far(scores[train], same[train], far)
        vals.append(float(np.mean(scores[test & same] >= tf)) if (test & same).any() else float("nan"))
        fars.append(float(np.mean(scores[test & ~same] >= tf)) if (test & ~same).any() else float("nan"))
    return {
        "accuracy_mean": float(np.mean(accs)), "accuracy_std": float(np.std(accs)),
        "fold_accuracies": accs, "fold_thresholds": thrs,
        "val_at_far": float(np.nanmean(vals)), "val_at_far_std": float(np.nanstd(vals)),
        "far_achieved": float(np.nanmean(fars)),
    }


#: Folds of the LFW View-2 protocol.
LFW_FOLDS = 10


def check_options(*, far: float = 1e-3, limit_folds: int | None = None) -> None:
    """Raise :class:`ConfigError` for option values :func:`evaluate_lfw` cannot use
    (called before any image is read, so that a bad value fails at once)."""
    if not (isinstance(far, (int, float)) and 0.0 < far <= 1.0):
        raise ConfigError(f"far must be a rate in (0, 1], e.g. 0.001 for 0.1 %; got {far!r}")
    if limit_folds is not None and not (isinstance(limit_folds, int) and 2 <= limit_folds <= LFW_FOLDS):
        raise ConfigError(f"folds must be an integer from 2 to {LFW_FOLDS} (the threshold of each fold is "
                          f"chosen on the others, so one fold is not enough); got {limit_folds!r}")


def evaluate_lfw(data_dir: str | Path, pairs_file: str | Path, pipeline: FacePipeline | None = None, *,
                 far: float = 1e-3, limit_folds: int | None = None,
                 progress: Callable[[int], None] | None = None,
                 on_total: Callable[[int], None] | None = None) -> VerificationResult:
    """The View-2 protocol on the first ``limit_folds`` folds of ``pairs_file`` (all by
    default). Options, the folder and the pairs file are checked before any image is embedded."""
    check_options(far=far, limit_folds=limit_folds)
    if not Path(data_dir).is_dir():
        raise DatasetError(f"{data_dir}: no such folder; give the lfw/ folder (<DIR>/<Name>/<Name>_0001.jpg)")
    pairs = read_pairs(pairs_file, data_dir)
    n_folds = len({p.fold for p in pairs})
    if limit_folds is not None:
        if limit_folds > n_folds:
            raise ConfigError(f"folds = {limit_folds}, but {pairs_file} has {n_folds} fold(s)")
        pairs = [p for p in pairs if p.fold < limit_folds]
    elif n_folds < 2:
        raise PairsError(f"{pairs_file}: has {n_folds} fold(s); the protocol needs at least 2")
    pipeline = pipeline or FacePipeline()
    paths = sorted({p.a for p in pairs} | {p.b for p in pairs})
    if on_total:
        on_total(len(paths))
    emb = embed_central_faces(paths, pipeline, progress=progress)
    index = {p: i for i, p in enumerate(emb.paths)}
    scores = np.array([float(emb.vectors[index[p.a]] @ emb.vectors[index[p.b]]) for p in pairs])
    same = np.array([p.same for p in pairs])
    folds = np.array([p.fold for p in pairs])
    m = verification_metrics(scores, same, folds, far)
    return VerificationResult(
        accuracy_mean=m["accuracy_mean"], accuracy_std=m["accuracy_std"],
        fold_accuracies=m["fold_accuracies"], fold_thresholds=m["fold_thresholds"],
        val_at_far=m["val_at_far"], val_at_far_std=m["val_at_far_std"],
        far_target=far, far_achieved=m["far_achieved"],
        pairs=len(pairs), images=len(paths), fallbacks=len(emb.fallbacks),
        fallback_images=[str(p) for p in emb.fallbacks], seconds=emb.seconds,
        scores=scores, same=same, embedder=pipeline.embedder_id,
    )
