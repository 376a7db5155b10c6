"""Differential entropy estimators (nats), for InfoMeter-style checks Ĥ(X) + Ĥ(Y) − Ĥ(X, Y).

* ``gaussian_entropy``: ½ log((2πe)^d |Σ̂|) from the sample covariance (exact for Gaussians as n → ∞);
  ``unbiased=True`` (estimator ``gaussian-unbiased``) removes log|Σ̂|'s exact Gaussian sampling bias.
* ``kl_entropy``: Kozachenko–Leonenko k-nearest-neighbour estimator (Euclidean balls).
* ``flow_entropy``: the held-out code length −E log p̂(x) of a density model learnt by maximum
  likelihood — a masked autoregressive flow from zuko (a maintained normalizing-flow library).
  Inputs are standardised with the training statistics (an affine map: its log-det is added back).
  ``whiten=True`` (estimator ``flow-white``) first decorrelates them with the Cholesky factor of a
  shrunk training covariance (shrinkage chosen on the validation split) and starts the flow at the
  identity, so the model starts as that Gaussian and the flow only has to learn what it misses.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln

from mi_datagen.errors import EstimatorError
from mi_datagen.estimators.baselines import wishart_logdet_bias

LOG_2PIE = math.log(2 * math.pi * math.e)


def _flat(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x.reshape(x.shape[0], -1)


def gaussian_entropy(x, unbiased: bool = False) -> float:
    """½ log((2πe)^d |Σ̂|); ``unbiased`` removes the exact sampling bias of log|Σ̂| for Gaussian data."""
    x = _flat(x)
    n, d = x.shape
    if n <= d:  # rank ≤ n − 1 < d: the log-det is −∞ (or rounding noise, whatever its sign)
        raise EstimatorError(f"singular sample covariance (n = {n}, d = {d}): need n > d")
    sign, logdet = np.linalg.slogdet(np.atleast_2d(np.cov(x, rowvar=False)))
    if sign <= 0:
        raise EstimatorError(f"singular sample covariance (n = {n}, d = {d}): need n > d and no collinear columns")
    return float(0.5 * (d * LOG_2PIE + logdet - (wishart_logdet_bias(n, d) if unbiased else 0.0)))


def _knn_distance(x: np.ndarray, k: int) -> np.ndarray:
    """Euclidean distance of each row to its k-th nearest other row: a k-d tree in low dimension, blocked
    matrix products (‖a‖² + ‖b‖² − 2ab) beyond, where trees degrade to brute force anyway."""
    if x.shape[1] <= 16:
        return cKDTree(x).query(x, k=k + 1)[0][:, -1]
    t = torch.from_numpy(x)
    sq = (t * t).sum(1)
    out = np.empty(x.shape[0])
    for i in range(0, x.shape[0], 1024):
        d2 = (sq[i:i + 1024, None] + sq[None, :] - 2.0 * t[i:i + 1024] @ t.T).clamp_min(0.0)
        out[i:i + 1024] = d2.kthvalue(k + 1, dim=1).values.sqrt().numpy()  # the smallest is the point itself
    return out


def kl_entropy(x, k: int = 3) -> float:
    """ψ(n) − ψ(k) + log V_d + (d/n) Σ_i log ε_i, ε_i the distance to the k-th neighbour of x_i."""
    x = _flat(x)
    n, d = x.shape
    eps = _knn_distance(x, k)
    if np.any(eps <= 0):
        raise EstimatorError("duplicate samples: the Kozachenko–Leonenko estimator needs distinct points")
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1)
    return float(digamma(n) - digamma(k) + log_vd + d * np.mean(np.log(eps)))


@dataclass
class EntropyResult:
    nats: float
    stderr: float
    bits_per_sample: float
    curve: list[tuple[int, float]] = field(default_factory=list)
    time_s: float = 0.0
    settings: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


SHRINKAGE = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9)


def _whiten(z: torch.Tensor, train, val) -> tuple[torch.Tensor, float, float]:
    """z ↦ L⁻¹z with L = chol((1−λ)Ĉ + λI), Ĉ the training covariance of the standardised z and λ the
    shrinkage of least held-out Gaussian code length on ``val``. Returns (L⁻¹z, log|det L|, λ)."""
    c = torch.cov(z[train].double().T)
    eye = torch.eye(c.shape[0], dtype=torch.float64)
    best: tuple[float, Any, Any, Any] = (math.inf, None, None, None)
    for lam in SHRINKAGE:
        chol, info = torch.linalg.cholesky_ex((1 - lam) * c + lam * eye)
        if int(info) != 0:  # not positive definite (e.g. n ≤ d without shrinkage)
            continue
        w = torch.linalg.solve_triangular(chol, z[val].double().T, upper=False)
        logdet = float(torch.log(torch.diagonal(chol)).sum())
        code = 0.5 * float((w * w).sum(0).mean()) + logdet + 0.5 * c.shape[0] * math.log(2 * math.pi)
        if code < best[0]:
            best = (code, chol, logdet, lam)
    _, chol, logdet, lam = best
    w = torch.linalg.solve_triangular(chol, z.double().T, upper=False).T
    return w.to(z.dtype), logdet, float(lam)


def flow_entropy(x, seed: int = 0, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3, transforms: int = 3,
                 hidden: tuple[int, ...] = (64, 64), test_fraction: float = 0.2, val_fraction: float = 0.1,
                 evals: int = 20, whiten: bool = False, progress: bool = False) -> EntropyResult:
    """Held-out −E log p̂(x) of a zuko MAF (the model chosen on a validation split), with its standard error.
    ``whiten``: the MAF models the data decorrelated by a shrunk Gaussian fit and starts at the identity (that
    Gaussian), which is also a candidate in the validation choice; ``steps=0`` then gives the Gaussian alone."""
    import zuko
    from tqdm import tqdm

    from mi_datagen.estimators.pairs import split_standardize

    if steps < (0 if whiten else 1):
        raise EstimatorError(f"flow_entropy: steps = {steps}; need at least 1 (0 only with whiten, for its Gaussian)")
    t0 = time.perf_counter()
    settings = dict(seed=seed, steps=steps, batch_size=batch_size, lr=lr, transforms=transforms, hidden=list(hidden),
                    test_fraction=test_fraction, whiten=whiten)
    x = torch.as_tensor(_flat(x), dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    z, train, val, test, std = split_standardize(x, gen, test_fraction, val_fraction)
    log_scale = float(torch.log(std).double().sum())  # h(x) = h(z) + Σ log std
    if whiten:
        z, log_chol, settings["shrinkage"] = _whiten(z, train, val)
        log_scale += log_chol  # h(z) = h(L⁻¹z) + log|det L|
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        flow = zuko.flows.MAF(features=z.shape[1], transforms=transforms, hidden_features=tuple(hidden))
    if whiten:  # zero output layers: shift 0, log-scale 0, so the flow starts as the identity
        for t in flow.transform.transforms:
            torch.nn.init.zeros_(t.hyper[-1].weight)
            torch.nn.init.zeros_(t.hyper[-1].bias)
    opt = torch.optim.Adam(flow.parameters(), lr=lr)

    def nll(rows) -> torch.Tensor:
        with torch.no_grad():
            return torch.cat([-flow().log_prob(z[rows[i:i + 4096]]) for i in range(0, len(rows), 4096)])

    best, curve = (math.inf, None), []
    if whiten:  # the starting Gaussian is a candidate too
        v = float(nll(val).double().mean()) + log_scale
        best, curve = (v, copy.deepcopy(flow.state_dict())), [(0, v)]
    for step in tqdm(range(1, steps + 1), desc=f"MAF on {z.shape[1]} dims", unit="step", leave=False,
                     disable=not progress):
        idx = train[torch.randint(len(train), (batch_size,), generator=gen)]
        loss = -flow().log_prob(z[idx]).mean()
        if not torch.isfinite(loss):
            raise EstimatorError(f"flow_entropy: the training loss became {float(loss.detach())} at step {step}")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, steps // evals) == 0 or step == steps:
            v = float(nll(val).mean()) + log_scale
            curve.append((step, v))
            if v < best[0]:
                best = (v, copy.deepcopy(flow.state_dict()))
    flow.load_state_dict(best[1])
    codes = nll(test).double() + log_scale
    nats = float(codes.mean())
    return EntropyResult(nats, float(codes.std() / math.sqrt(len(codes))), nats / math.log(2), curve,
                         time.perf_counter() - t0, settings)


def compressed_bits(u8: np.ndarray) -> float:
    """Bits per sample of the uint8 rows (n, ...) under LZMA (xz, preset 9): a compression code length."""
    import lzma

    u8 = np.ascontiguousarray(u8, dtype=np.uint8)
    return 8.0 * len(lzma.compress(u8.tobytes(), preset=9)) / u8.shape[0]


def entropy_of(x, estimator: str, seed: int = 0, **settings) -> float:
    """Ĥ(x) in nats by ``estimator`` (gaussian | gaussian-unbiased | kl | flow | flow-white)."""
    if estimator in ("gaussian", "gaussian-unbiased"):
        return gaussian_entropy(x, unbiased=estimator == "gaussian-unbiased")
    if estimator == "kl":
        return kl_entropy(x, **settings)
    if estimator in ("flow", "flow-white"):
        return flow_entropy(x, seed=seed, **{**settings, "whiten": estimator == "flow-white"}).nats
    raise EstimatorError(f"unknown entropy estimator {estimator!r}; choose gaussian, gaussian-unbiased, kl, flow or "
                     "flow-white")


def entropy_difference_mi(x, y, estimator: str, seed: int = 0, **settings) -> tuple[float, float, float, float]:
    """InfoMeter-style Î = Ĥ(X) + Ĥ(Y) − Ĥ(X, Y). Returns (Î, Ĥ(X), Ĥ(Y), Ĥ(X, Y))."""
    x, y = _flat(x), _flat(y)
    hx, hy = entropy_of(x, estimator, seed, **settings), entropy_of(y, estimator, seed, **settings)
    hxy = entropy_of(np.concatenate([x, y], axis=1), estimator, seed, **settings)
    return hx + hy - hxy, hx, hy, hxy
