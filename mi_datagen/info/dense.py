"""Dense float64 reference: covariances from the dense A, log-dets by slogdet, MI by canonical correlations.

The canonical-correlation form I(a; b | c) = −½ Σ log(1 − ρ_i²) works on the ranges of the
(conditional) covariances, so it stays finite and correct when a block alone is degenerate.
"""

from __future__ import annotations

import numpy as np

EPS = np.finfo(np.float64).eps


def _rows(A: dict[str, np.ndarray], names) -> np.ndarray:
    return np.concatenate([A[n] for n in names], axis=0)


def dense_logdet(A: dict[str, np.ndarray], names) -> float:
    """log|Σ_names| for Σ = A Aᵀ formed densely: Cholesky, or -inf when Σ is singular.

    Singularity is decided on the eigenvalues (relative tolerance) when Cholesky fails or the
    factor's diagonal is tiny; the value is the textbook slogdet of the formed Σ.
    """
    names = list(names)
    if not names:
        return 0.0
    rows = _rows(A, names)
    S = rows @ rows.T
    n = S.shape[0]
    try:
        L = np.linalg.cholesky(S)
        diag = np.diagonal(L)
        if diag.min() > np.sqrt(n * EPS * 64) * np.sqrt(np.abs(np.diagonal(S)).max()):
            return float(2.0 * np.log(diag).sum())
    except np.linalg.LinAlgError:
        pass
    w = np.linalg.eigvalsh(S)
    if w.min() <= n * EPS * 64 * max(w.max(), 0.0) or w.max() <= 0.0:
        return -np.inf
    sign, val = np.linalg.slogdet(S)
    return float(val) if sign > 0 else -np.inf


def _range_whitener(S: np.ndarray, scale: float | None = None) -> np.ndarray:
    """Whitens the range of S. Eigenvalues below the rounding level of ``scale`` (the largest eigenvalue of the
    covariance *before* conditioning, default S's own) are zero: a residual of that size is rounding, not
    information, so a block that conditioning determines has no range (and the MI is 0)."""
    w, V = np.linalg.eigh(S)
    ref = max(w.max(initial=0.0), 0.0) if scale is None else scale
    keep = w > max(S.shape[0], 1) * EPS * ref * 64
    return V[:, keep] / np.sqrt(w[keep])


def dense_mi(A: dict[str, np.ndarray], a, b, given=()) -> float:
    """I(a; b | given) from canonical correlations of the conditional covariance."""
    a, b, c = list(a), list(b), list(given)
    Ra, Rb = _rows(A, a), _rows(A, b)
    scale_a = float(np.linalg.eigvalsh(Ra @ Ra.T).max(initial=0.0))
    scale_b = float(np.linalg.eigvalsh(Rb @ Rb.T).max(initial=0.0))
    if c:
        Rc = _rows(A, c)
        # residualise a and b on c in source space: project out the row space of Rc
        Q, sv, _ = np.linalg.svd(Rc.T, full_matrices=False)
        Q = Q[:, sv > max(Rc.shape) * EPS * sv.max(initial=0.0) * 8]
        Ra = Ra - (Ra @ Q) @ Q.T
        Rb = Rb - (Rb @ Q) @ Q.T
    Wa = _range_whitener(Ra @ Ra.T, scale_a)
    Wb = _range_whitener(Rb @ Rb.T, scale_b)
    if Wa.shape[1] == 0 or Wb.shape[1] == 0:
        return 0.0
    rho = np.linalg.svd(Wa.T @ (Ra @ Rb.T) @ Wb, compute_uv=False)
    if np.any(rho >= 1.0 - 1e-12):
        return np.inf
    return float(-0.5 * np.log1p(-np.minimum(rho, 1.0) ** 2).sum())


def dense_mahalanobis(A: dict[str, np.ndarray], names, z: np.ndarray) -> np.ndarray:
    """zᵀ Σ⁻¹ z per sample; z: (n, dims of names) in the order of ``names``."""
    rows = _rows(A, list(names))
    S = rows @ rows.T
    return np.einsum("ni,ni->n", z, np.linalg.solve(S, z.T).T)
