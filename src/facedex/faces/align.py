"""Five-point similarity alignment onto a template (ArcFace 112x112 by default)."""

from __future__ import annotations

import cv2
import numpy as np

from ..models import ARCFACE_112

TEMPLATE_112 = np.asarray(ARCFACE_112, dtype=np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) mapping
    ``src`` points onto ``dst`` points — Umeyama (1991), without reflection.

    Returns the 2x3 matrix ``M`` with ``dst ~= M @ [x, y, 1]``.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rot = u @ sign @ vt
    scale = (sig * np.diag(sign)).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def align_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    size: tuple[int, int] = (112, 112),
    template: np.ndarray | None = None,
) -> np.ndarray:
    """Warp the face with these five landmarks onto the template.

    ``image`` is ``HxWx3``; the result is ``size[1] x size[0] x 3`` of the same
    dtype. When the face is much larger than the output, the image region is
    first reduced with area interpolation so the warp does not alias.
    """
    tpl = TEMPLATE_112 if template is None else np.asarray(template, dtype=np.float64)
    if size != (112, 112) and template is None:
        tpl = tpl * np.array([size[0] / 112.0, size[1] / 112.0])
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    m = similarity_transform(pts, tpl)
    scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
    if scale < 0.5:
        # Pre-shrink a generous crop around the face so the remaining scale is ~0.5.
        factor = scale * 2.0
        h, w = image.shape[:2]
        span = (pts.max(0) - pts.min(0)).max() * 3.0 + 8
        x0, y0 = np.floor(np.maximum(pts.min(0) - span, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(pts.max(0) + span, [w, h])).astype(int)
        crop = image[y0:y1, x0:x1]
        new_w, new_h = max(1, int(round(crop.shape[1] * factor))), max(1, int(round(crop.shape[0] * factor)))
        small = cv2.resize(crop, (new_w, new_h), interpolation=cv2.INTER_AREA)
        fx, fy = new_w / crop.shape[1], new_h / crop.shape[0]
        pts = (pts - [x0, y0]) * [fx, fy]
        image = small
        m = similarity_transform(pts, tpl)
    return cv2.warpAffine(
        image, m, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )
