"""Synthetic galleries shaped like real face embeddings, for sizing search at scale.

Random unit vectors in identity clusters with a fixed spread (what
``bench/search.py`` used before) mislead: on real SFace embeddings the
neighbours of a face are spread over most of the 128 dimensions (105 of them
hold 90 % of the variance) and approximate indexes lose far more than on such
vectors. :class:`FaceGenerator` is fitted to real embeddings with their
identity labels (LFW) and draws new identities and faces from the fit:

* **identity centres** from a Gaussian with the mean and the *between-person*
  covariance of the real identities (the covariance of the per-person means,
  less the share of it that the within-person noise of a mean of ``n`` faces
  explains);
* **faces** around their centre with the pooled *within-person* covariance,
  scaled per identity by a log-normal factor fitted to how much the real
  people's spreads differ (some people vary far more than others), and per
  face by another, fitted to how much more the distance of a real face to its
  person's other faces varies than the first two parts explain (hard faces:
  profile, blur, age);
* **faces per identity** drawn from the real distribution;
* every vector normalised to unit length, as the embedder outputs.

>>> gen = FaceGenerator.fit(vectors, labels)            # real embeddings, person labels
>>> data = gen.sample_gallery(1_000_000, probes=2000, strangers=2000, seed=0)
>>> data.gallery.shape, data.genuine.shape, data.strangers.shape

``bench/search.py`` shows the fit reproduces the recall of approximate
indexes measured on the real LFW embeddings before it is used at 1 M faces.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SyntheticSet:
    """A gallery with its identities, and probes: genuine (new faces of gallery
    identities, ``genuine_labels``) and strangers (identities not in the gallery)."""

    gallery: np.ndarray  # float32 (n, dim), unit rows
    labels: np.ndarray  # int64 (n,)
    genuine: np.ndarray  # float32 (g, dim)
    genuine_labels: np.ndarray  # int64 (g,)
    strangers: np.ndarray  # float32 (s, dim)


def _log_loo_spread(x: np.ndarray, inv: np.ndarray, counts: np.ndarray, min_faces: int = 5) -> float:
    """Variance of log(distance of a face to the mean of its person's other faces),
    over people with at least ``min_faces`` faces."""
    sums = np.zeros((len(counts), x.shape[1]))
    np.add.at(sums, inv, x)
    rows = counts[inv] >= min_faces
    loo = (sums[inv][rows] - x[rows]) / (counts[inv][rows] - 1)[:, None]
    return float(np.var(np.log(np.linalg.norm(x[rows] - loo, axis=1))))


def _sqrt_psd(cov: np.ndarray) -> np.ndarray:
    """A matrix ``A`` with ``A @ A.T == cov`` (negative eigenvalues clipped to 0)."""
    w, v = np.linalg.eigh((cov + cov.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))).astype(np.float64)


@dataclass
class FaceGenerator:
    """Identity centres and within-person spread fitted to real embeddings (see the module doc)."""

    mean: np.ndarray  # (dim,)
    between: np.ndarray  # (dim, dim): centre = mean + between @ z
    within: np.ndarray  # (dim, dim): face = centre + scale * within @ z
    scale_sigma: float  # log-normal spread of the per-identity scale
    face_sigma: float  # log-normal spread of the per-face scale
    faces_per_identity: np.ndarray  # int64: the real counts, sampled with replacement

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    # -- fitting -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, vectors: np.ndarray, labels: np.ndarray) -> "FaceGenerator":
        x = np.asarray(vectors, dtype=np.float64)
        labels = np.asarray(labels).reshape(-1)
        if x.ndim != 2 or x.shape[0] != labels.shape[0]:
            raise ConfigError(f"vectors {x.shape} and labels {labels.shape} do not match")
        uniq, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if (counts >= 2).sum() < 10:
            raise ConfigError("fitting needs at least 10 identities with two or more faces")
        dim = x.shape[1]
        sums = np.zeros((len(uniq), dim))
        np.add.at(sums, inv, x)
        means = sums / counts[:, None]
        resid = x - means[inv]
        multi = counts[inv] >= 2
        # pooled within-person covariance, unbiased (each person loses one degree of freedom)
        dof = float((counts[counts >= 2] - 1).sum())
        within_cov = resid[multi].T @ resid[multi] / dof
        # covariance of the per-person means = between + within / n (averaged over people)
        centre = means.mean(axis=0)
        dm = means - centre
        means_cov = dm.T @ dm / (len(uniq) - 1)
        between_cov = means_cov - within_cov * float(np.mean(1.0 / counts))
        # per-person spread: mean squared residual, for people with >= 5 faces
        rows = counts >= 5
        if rows.sum() >= 10:
            ss = np.zeros(len(uniq))
            np.add.at(ss, inv, (resid ** 2).sum(axis=1))
            spread = ss[rows] / (counts[rows] - 1)
            # the sampling noise of a chi-square estimate of d*(n-1) degrees of freedom
            noise = np.mean(2.0 / (dim * (counts[rows] - 1)))
            var_log = max(0.0, float(np.var(np.log(spread))) - noise)
            # the scale multiplies a standard deviation: half the log-variance's root
            scale_sigma = float(np.sqrt(var_log) / 2)
        else:
            scale_sigma = 0.0
        gen = cls(mean=centre, between=_sqrt_psd(between_cov), within=_sqrt_psd(within_cov),
                  scale_sigma=scale_sigma, face_sigma=0.0, faces_per_identity=counts.astype(np.int64))
        # per-face scale: the real spread of log(distance to the person's other faces)
        # beyond what the model without it gives (measured by simulating the same people)
        real = _log_loo_spread(x, inv, counts)
        rng = np.random.default_rng(12345)
        c, s = gen.identities(len(counts), rng)
        model = _log_loo_spread(gen.faces(c, s, inv, rng).astype(np.float64), inv, counts)
        gen.face_sigma = float(np.sqrt(max(0.0, real - model)))
        return gen

    # -- persistence -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean, between=self.between, within=self.within,
                 scale_sigma=np.float64(self.scale_sigma), face_sigma=np.float64(self.face_sigma),
                 faces_per_identity=self.faces_per_identity)

    @classmethod
    def load(cls, path: str | Path) -> "FaceGenerator":
        with np.load(path) as d:
            return cls(mean=d["mean"], between=d["between"], within=d["within"],
                       scale_sigma=float(d["scale_sigma"]), face_sigma=float(d["face_sigma"]),
                       faces_per_identity=d["faces_per_identity"])

    # -- sampling ---------------------------------------------------------------------------------
    def identities(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``n`` identity centres and their spread scales."""
        z = rng.standard_normal((n, self.dim))
        centres = (self.mean + z @ self.between.T).astype(np.float32)
        scales = np.exp(self.scale_sigma * rng.standard_normal(n)).astype(np.float32)
        return centres, scales

    def faces(self, centres: np.ndarray, scales: np.ndarray, which: np.ndarray, rng: np.random.Generator,
              chunk: int = 200_000) -> np.ndarray:
        """One unit vector per entry of ``which`` (an index into ``centres``)."""
        out = np.empty((len(which), self.dim), np.float32)
        w = self.within.T.astype(np.float32)
        for start in range(0, len(which), chunk):
            ids = which[start:start + chunk]
            z = rng.standard_normal((len(ids), self.dim), dtype=np.float32)
            s = scales[ids, None]
            if self.face_sigma:
                s = s * np.exp(self.face_sigma * rng.standard_normal((len(ids), 1), dtype=np.float32))
            v = centres[ids] + s * (z @ w)
            v /= np.linalg.norm(v, axis=1, keepdims=True)
            out[start:start + len(ids)] = v
        return out

    def sample_gallery(self, n: int, *, probes: int = 1000, strangers: int = 1000, seed: int = 0,
                       faces_per_identity: int | None = None) -> SyntheticSet:
        """A gallery of ``n`` faces, ``probes`` genuine probes (new faces of gallery
        identities, drawn uniformly over identities) and ``strangers`` probes of
        identities not in the gallery. Faces per identity follow the fitted
        distribution unless ``faces_per_identity`` fixes it."""
        if n < 1:
            raise ConfigError(f"n must be at least 1, got {n}")
        rng = np.random.default_rng(seed)
        if faces_per_identity:
            counts = np.full(-(-n // faces_per_identity), faces_per_identity, np.int64)
        else:
            mean = float(self.faces_per_identity.mean())
            counts = rng.choice(self.faces_per_identity, size=int(n / mean * 1.1) + 16)
            while counts.sum() < n:
                counts = np.concatenate([counts, rng.choice(self.faces_per_identity, size=len(counts) // 4 + 16)])
        cum = np.cumsum(counts)
        ids = int(np.searchsorted(cum, n) + 1)
        counts = counts[:ids]
        counts[-1] -= int(cum[ids - 1] - n)
        labels = np.repeat(np.arange(ids, dtype=np.int64), counts)
        centres, scales = self.identities(ids + strangers, rng)
        gallery = self.faces(centres, scales, labels, rng)
        g_labels = rng.integers(0, ids, probes).astype(np.int64)
        genuine = self.faces(centres, scales, g_labels, rng)
        stranger = self.faces(centres, scales, np.arange(ids, ids + strangers), rng)
        return SyntheticSet(gallery, labels, genuine, g_labels, stranger)


__all__ = ["FaceGenerator", "SyntheticSet"]
