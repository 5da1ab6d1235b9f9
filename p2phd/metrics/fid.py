"""FID and KID from Inception pool3 features, computed as pytorch-fid (FID) and the KID paper do.

- Statistics in float64: ``mu`` = mean over images, ``sigma`` = ``np.cov(features,
  rowvar=False)`` (unbiased, N - 1).
- FID = |mu1 - mu2|^2 + tr(s1) + tr(s2) - 2 tr(sqrtm(s1 s2)), with ``scipy.linalg.sqrtm``
  (scipy is a dependency: scikit-learn needs it and p2phd pins it). As pytorch-fid: when the
  square root is not finite (a singular product), retry with ``eps`` (1e-6) added to both
  diagonals; a complex result whose diagonal has imaginary parts above 1e-3 is an error, below
  that the real part is kept.
- KID (Binkowski et al. 2018): the unbiased MMD^2 with the polynomial kernel
  k(x, y) = (x.y / d + 1)^3, averaged over ``subsets`` random subsets of ``subset_size`` images
  drawn without replacement from each set (seeded); mean and standard deviation over subsets.
"""

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from p2phd.core.cli import log


@dataclass
class Stats:
    mu: np.ndarray  # (d,) float64
    sigma: np.ndarray  # (d, d) float64


def statistics(features: np.ndarray) -> Stats:
    """Mean and covariance of (N, d) features, in float64; N >= 2."""
    act = np.asarray(features, np.float64)
    if act.ndim != 2 or len(act) < 2:
        raise ValueError(f"need at least 2 feature vectors, got shape {act.shape}")
    return Stats(mu=act.mean(axis=0), sigma=np.cov(act, rowvar=False))


def frechet_distance(a: Stats, b: Stats, eps: float = 1e-6) -> float:
    """The Fréchet distance between two Gaussians (pytorch-fid's calculate_frechet_distance)."""
    mu1, mu2 = np.atleast_1d(a.mu), np.atleast_1d(b.mu)
    s1, s2 = np.atleast_2d(a.sigma), np.atleast_2d(b.sigma)
    if mu1.shape != mu2.shape or s1.shape != s2.shape:
        raise ValueError(f"statistics of different dimensions: {mu1.shape} and {mu2.shape}")
    diff = mu1 - mu2
    covmean, _ = linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        log(f"fid: singular product of covariances; adding {eps} to their diagonals")
        offset = np.eye(s1.shape[0]) * eps
        covmean = linalg.sqrtm((s1 + offset).dot(s2 + offset))
    if np.iscomplexobj(covmean):
        # Round-off gives small imaginary parts; large ones mean the result is meaningless.
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            raise ValueError(f"imaginary component {np.max(np.abs(covmean.imag)):.3g} in sqrtm")
        covmean = covmean.real
    return float(diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    m = len(x)
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    off = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(off - 2 * kxy.mean())


def kid(
    feat1: np.ndarray, feat2: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """(mean, std) of the unbiased polynomial-kernel MMD^2 over random subsets (float64).

    The subset size is min(subset_size, len(feat1), len(feat2)) and must be at least 2."""
    x, y = np.asarray(feat1, np.float64), np.asarray(feat2, np.float64)
    m = min(subset_size, len(x), len(y))
    if m < 2:
        raise ValueError(f"KID needs at least 2 images per set, got {len(x)} and {len(y)}")
    rng = np.random.default_rng(seed)
    values = np.array(
        [
            _mmd2_unbiased(
                x[rng.choice(len(x), m, replace=False)], y[rng.choice(len(y), m, replace=False)]
            )
            for _ in range(subsets)
        ]
    )
    return float(values.mean()), float(values.std())
