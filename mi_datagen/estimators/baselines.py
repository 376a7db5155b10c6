"""Non-trained baselines: Gaussian (sample covariance) and KSG (k-nearest neighbours), in nats."""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree
from scipy.special import digamma

from mi_datagen.errors import EstimatorError


def _flat(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return a.reshape(a.shape[0], -1)


def wishart_logdet_bias(n: int, d: int) -> float:
    """E log|Σ̂| − log|Σ| for the unbiased sample covariance Σ̂ of n Gaussian samples in d < n dimensions:
    Σ_{i=1..d} ψ((n − i)/2) − d·log((n − 1)/2), whatever Σ is ((n − 1)Σ̂ is Wishart with n − 1 degrees of
    freedom). Subtracting it gives the unbiased Gaussian entropy (Ahmed & Gokhale, 1989) and MI."""
    if n <= d:
        raise EstimatorError(f"the sample covariance of n = {n} samples in d = {d} dimensions is singular: need n > d")
    i = np.arange(1, d + 1)
    return float(np.sum(digamma((n - i) / 2.0)) - d * np.log((n - 1) / 2.0))


def gaussian_mi(x, y, shrinkage: float = 0.0, unbiased: bool = False) -> float:
    """½(log|Σ_x| + log|Σ_y| − log|Σ_xy|) from sample covariances — exact for Gaussian data as n → ∞,
    biased upwards when the dimension is comparable to n (``shrinkage`` blends each Σ towards its diagonal).
    ``unbiased``: subtract each log-det's exact Gaussian sampling bias (``wishart_logdet_bias``), which
    leaves ½[Σ_{i≤dx} ψ((n−i)/2) − Σ_{dy<i≤dx+dy} ψ((n−i)/2)]: 705.5 nats at n = 10 000, dx = dy = 3072."""
    x, y = _flat(x), _flat(y)
    if x.shape[0] != y.shape[0]:
        raise EstimatorError(f"x and y need the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    xy = np.concatenate([x, y], axis=1)
    cov = np.cov(xy, rowvar=False)
    if shrinkage:
        cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
    dx = x.shape[1]

    def logdet(m):
        sign, v = np.linalg.slogdet(m)
        return v if sign > 0 else -np.inf

    lx, ly, lxy = logdet(cov[:dx, :dx]), logdet(cov[dx:, dx:]), logdet(cov)
    if not np.isfinite(lxy):
        raise EstimatorError(f"singular sample covariance (n = {x.shape[0]}, dims {dx} + {y.shape[1]}): "
                         "use more samples than dimensions or shrinkage > 0")
    if unbiased:
        if shrinkage:
            raise EstimatorError("unbiased applies to the plain sample covariance; use shrinkage = 0 with it")
        n, dy = x.shape[0], y.shape[1]
        lx, ly, lxy = (lx - wishart_logdet_bias(n, dx), ly - wishart_logdet_bias(n, dy),
                       lxy - wishart_logdet_bias(n, dx + dy))
    return float(0.5 * (lx + ly - lxy))


def ksg_mi(x, y, k: int = 3, max_dim: int = 64) -> float:
    """Kraskov–Stögbauer–Grassberger estimator (algorithm 1, max-norm). Low dimension only."""
    x, y = _flat(x), _flat(y)
    n = x.shape[0]
    if x.shape[1] + y.shape[1] > max_dim:
        raise EstimatorError(f"KSG in {x.shape[1] + y.shape[1]} dimensions is not meaningful (max_dim = {max_dim}); "
                         "use it on latents of small d or on embeddings")
    xy = np.concatenate([x, y], axis=1)
    # distance to the k-th neighbour in the joint space (max-norm), excluding the point itself
    eps = cKDTree(xy).query(xy, k=k + 1, p=np.inf)[0][:, -1]
    r = np.nextafter(eps, 0)  # strictly closer than the k-th neighbour
    nx = np.array([len(v) - 1 for v in cKDTree(x).query_ball_point(x, r, p=np.inf)])
    ny = np.array([len(v) - 1 for v in cKDTree(y).query_ball_point(y, r, p=np.inf)])
    return float(digamma(k) + digamma(n) - np.mean(digamma(nx + 1) + digamma(ny + 1)))
