"""Per-image features of all 13,233 LFW images for the accuracy-at-scale study.

    python bench/lfw_features.py            # writes bench/results/lfw_sface_features.npz (~3 min)

For every image, the central face (as ``facedex eval lfw`` picks it): its SFace
embedding, the embedding of its mirror image (the aligned crop flipped left to
right), the detector's score, the face size (shorter box side, pixels), the
sharpness of the aligned crop (Laplacian variance) and the pose (yaw, pitch)
from the landmarks; ``fallback`` marks images where no face was found (the
median LFW crop is used, as the LFW protocol does).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import RESULTS, lfw_dir  # noqa: E402

OUT = RESULTS / "lfw_sface_features.npz"


def main() -> None:
    from facedex.evaluate.lfw import central_face, fallback_face
    from facedex.faces.quality import pose, sharpness
    from facedex.media import load_image
    from facedex.pipeline import FacePipeline

    lfw = lfw_dir()
    paths = sorted(lfw.glob("*/*.jpg"))
    people = sorted({p.parent.name for p in paths})
    index = {p: i for i, p in enumerate(people)}
    pipe = FacePipeline()
    n = len(paths)
    vec = np.zeros((n, pipe.embedder.dim), np.float32)
    flip = np.zeros_like(vec)
    score, size, sharp, yaw, pitch = (np.zeros(n, np.float32) for _ in range(5))
    fallback = np.zeros(n, bool)
    t0 = time.perf_counter()
    batch = 32
    for start in range(0, n, batch):
        chunk = paths[start:start + batch]
        images = [load_image(p) for p in chunk]
        crops = []
        for j, (im, faces) in enumerate(zip(images, pipe.detector.detect_batch(images))):
            h, w = im.shape[:2]
            face = central_face(faces, w, h)
            if face is None:
                fallback[start + j] = True
                face = fallback_face(w, h)
            crop = pipe.embedder.align(im, face)
            crops.append(crop)
            score[start + j], size[start + j] = face.score, face.size
            sharp[start + j] = sharpness(crop)
            yaw[start + j], pitch[start + j], _ = pose(face.landmarks_array())
        e = pipe.embedder.embed_crops(crops + [np.ascontiguousarray(c[:, ::-1]) for c in crops])
        vec[start:start + len(chunk)] = e[:len(chunk)]
        flip[start:start + len(chunk)] = e[len(chunk):]
        if start % 1600 == 0:
            print(f"{start}/{n} {time.perf_counter() - t0:.0f} s", flush=True)
    np.savez(OUT, vectors=vec, flipped=flip, labels=np.array([index[p.parent.name] for p in paths], np.int32),
             people=np.array(people), paths=np.array([f"{p.parent.name}/{p.name}" for p in paths]),
             score=score, size=size, sharpness=sharp, yaw=yaw, pitch=pitch, fallback=fallback,
             embedder=np.array(pipe.embedder_id), seconds=np.float64(time.perf_counter() - t0))
    print(f"written {OUT} in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
