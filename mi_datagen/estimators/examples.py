"""A worked external estimator (docs/benchmark-your-estimator.md): the held-out Gaussian MI.

As a Python callable:  ``method: external`` with ``callable: mi_datagen.estimators.examples:heldout_gaussian``.
As a command:          ``command: python -m mi_datagen.estimators.examples`` (reads DIR/*.npy, prints nats).

It fits one joint Gaussian to the training pairs (with a little shrinkage) and averages
log p(x, y) − log p(x) − log p(y) over the held-out pairs: exact in expectation for Gaussian data,
and only a lower-quality guess for anything else — a baseline, not a recommendation.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

__all__ = ["heldout_gaussian"]


def _logpdf(z: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    chol = np.linalg.cholesky(cov)
    w = np.linalg.solve(chol, (z - mean).T)
    return -0.5 * (w * w).sum(0) - np.log(np.diag(chol)).sum() - 0.5 * z.shape[1] * np.log(2 * np.pi)


def heldout_gaussian(x_train, y_train, x_test, y_test, *, seed: int = 0, shrinkage: float = 1e-3) -> dict:
    """Held-out Gaussian MI in nats (``seed`` is unused: the fit is deterministic)."""
    a, b = np.asarray(x_train, np.float64).reshape(len(x_train), -1), np.asarray(y_train, np.float64).reshape(len(y_train), -1)
    ta, tb = np.asarray(x_test, np.float64).reshape(len(x_test), -1), np.asarray(y_test, np.float64).reshape(len(y_test), -1)
    joint = np.concatenate([a, b], axis=1)
    mean = joint.mean(0)
    cov = np.cov(joint, rowvar=False)
    cov = (1 - shrinkage) * cov + shrinkage * np.diag(np.diag(cov))
    dx = a.shape[1]
    test = np.concatenate([ta, tb], axis=1)
    pmi = (_logpdf(test, mean, cov) - _logpdf(ta, mean[:dx], cov[:dx, :dx]) - _logpdf(tb, mean[dx:], cov[dx:, dx:]))
    return {"nats": float(pmi.mean()), "stderr": float(pmi.std(ddof=1) / np.sqrt(len(pmi)))}


def main(argv: list[str]) -> None:
    folder = Path(argv[0])
    arrays = [np.load(folder / f"{k}.npy") for k in ("x_train", "y_train", "x_test", "y_test")]
    print(heldout_gaussian(*arrays, seed=int(argv[1]) if len(argv) > 1 else 0)["nats"])


if __name__ == "__main__":
    main(sys.argv[1:])
