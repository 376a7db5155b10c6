"""Mahalanobis distances (for the PMI) of node sets from the structured model (docs/information.md), never forming Σ.
(Log-dets and MIs go through ``mi_datagen.info.split``, which also covers degenerate blocks exactly.)

For vector nodes S and scalar nodes σ (K scalar sources, C_S = R_S R_Sᵀ, P templates, G = TᵀT):
    M       = W_Sᵀ (C_S⁻¹ ⊗ I_d) W_S = Σ_uv (C_S⁻¹)_uv C_uᵀ G C_v                  (K × K)
    Σ_SS⁻¹  = C_S⁻¹ ⊗ I_d − (C_S⁻¹ ⊗ I_d) W_S (I_K + M)⁻¹ W_Sᵀ (C_S⁻¹ ⊗ I_d)   (Woodbury)
and the scalar part by one Schur complement. Cost O(|S|³ + |S|²P²K + K³) per set, linear in d per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mi_datagen.errors import SpecError
from mi_datagen.model.structured import StructuredModel

EPS = np.finfo(np.float64).eps


class NeedsDense(Exception):
    """C_S is singular but d ≤ K, so the low-rank part may still make Σ_SS regular: use the dense path."""


def _rank_tol(sv: np.ndarray, shape: tuple[int, int]) -> float:
    return max(shape) * EPS * sv.max(initial=0.0) * 8


@dataclass
class _Parts:
    """Intermediate pieces for a vector set S (shared by log-det and Mahalanobis)."""

    logdet_C: float
    Cinv: np.ndarray  # (s, s)
    chol: np.ndarray  # lower Cholesky factor of I + M, (K, K)
    logdet_IM: float


class StructuredSolver:
    def __init__(self, model: StructuredModel):
        self.m = model

    def parts(self, vectors: tuple[str, ...]) -> _Parts | None:
        """None when Σ_SS is singular (a block is a deterministic function of the others)."""
        m = self.m
        K = m.K
        if not vectors:
            return _Parts(0.0, np.zeros((0, 0)), np.eye(K), 0.0)
        idx = [m.vector_rows[v] for v in vectors]
        R = m.R[idx]
        s = len(idx)
        if R.shape[1] < s:
            sv = np.zeros(1)
        else:
            U, sv, _ = np.linalg.svd(R, full_matrices=False)
        if sv.size < s or sv.min() <= _rank_tol(sv, R.shape) or sv.max() == 0.0:
            if m.d > K:
                return None  # rank(Σ_SS) ≤ d·rank(C_S) + K < s·d
            raise NeedsDense(vectors)
        Cinv = (U / sv**2) @ U.T
        Cv = m.C[idx]  # (s, P, K)
        GC = np.einsum("pq,vqk->vpk", m.G, Cv)
        M = np.einsum("uv,upk,vpl->kl", Cinv, Cv, GC)
        L = np.linalg.cholesky(np.eye(K) + 0.5 * (M + M.T))
        return _Parts(2.0 * np.log(sv).sum(), Cinv, L, 2.0 * np.log(np.diag(L)).sum())

    def mahalanobis(self, scalars: tuple[str, ...], vectors: tuple[str, ...],
                    zs: np.ndarray | None, zv: np.ndarray | None) -> np.ndarray:
        """zᵀ Σ⁻¹ z per sample; zs: (n, |σ|), zv: (n, |S|, d). Requires a regular Σ."""
        m = self.m
        p = self.parts(vectors)
        if p is None:
            raise SpecError("singular covariance: the Mahalanobis distance is infinite")
        first = zs if zs is not None else zv
        if first is None:
            raise SpecError("mahalanobis needs the scalar or the vector part of z")
        n = first.shape[0]
        out = np.zeros(n)
        y = np.zeros((n, m.K))
        if vectors:
            if zv is None:
                raise SpecError(f"mahalanobis: vector nodes {list(vectors)} given without their values")
            idx = [m.vector_rows[v] for v in vectors]
            Pz = np.einsum("uv,nvd->nud", p.Cinv, zv)
            out += np.einsum("nud,nud->n", zv, Pz)
            Tz = np.einsum("pd,nud->nup", m.T, Pz)
            y = np.einsum("upk,nup->nk", m.C[idx], Tz)
            w = np.linalg.solve(p.chol, y.T)  # L⁻¹ y
            out -= np.einsum("kn,kn->n", w, w)
        if scalars:
            A = m.A[[m.scalar_rows[x] for x in scalars]]
            # E[z_σ | z_S] = A (I+M)⁻¹ y ;  Var = A (I+M)⁻¹ Aᵀ
            L = p.chol
            mean = (A @ np.linalg.solve(L.T, np.linalg.solve(L, y.T))).T
            B = np.linalg.solve(L, A.T)
            S = B.T @ B
            r = zs - mean
            out += np.einsum("ni,ni->n", r, np.linalg.solve(S, r.T).T)
        return out
