"""Exact log-determinants of node-set covariances from the structured model (docs/information.md), never forming Σ.

For vector nodes S and scalar nodes σ (K scalar sources, C_S = R_S R_Sᵀ, P templates, G = TᵀT):
    M       = W_Sᵀ (C_S⁻¹ ⊗ I_d) W_S = Σ_uv (C_S⁻¹)_uv C_uᵀ G C_v                  (K × K)
    log|Σ_SS|     = d·log|C_S| + log|I_K + M|                  (matrix determinant lemma)
    log|Σ_σ∪S|    = log|Σ_SS| + log|A_σ (I_K + M)⁻¹ A_σᵀ|       (Schur complement + Woodbury)
Cost O(|S|³ + |S|²P²K + K³), independent of d once G is known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mi_datagen.errors import SpecError
from mi_datagen.model.structured import StructuredModel

EPS = np.finfo(np.float64).eps


class NeedsDense(Exception):
    """C_S is singular but d ≤ K, so the low-rank part may still make Σ_SS regular: use the dense path."""


def _rank_tol(sv: np.ndarray, shape: tuple[int, int], scale: float | None = None) -> float:
    ref = sv.max(initial=0.0) if scale is None else scale
    return max(shape) * EPS * ref * 8


@dataclass
class _Parts:
    """Intermediate pieces for a vector set S (shared by log-det and Mahalanobis)."""

    logdet_C: float
    Cinv: np.ndarray  # (s, s)
    chol: np.ndarray  # lower Cholesky factor of I + M, (K, K)
    logdet_IM: float


class StructuredSolver:
    # Cholesky of the Gram C_S = R_S R_Sᵀ squares R_S's condition number, and d·log|C_S| multiplies
    # the error by d: sets whose squared pivot ratio is below this go through the SVD of R_S instead.
    GRAM_PIVOT_RATIO = 1e-4

    def __init__(self, model: StructuredModel):
        self.m = model
        self.gram = model.R @ model.R.T  # C for every vector-node pair, computed once

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

    def _scalar_schur(self, scalars: tuple[str, ...], p: _Parts) -> np.ndarray:
        """B with A_σ (I+M)⁻¹ A_σᵀ = BᵀB, B = L⁻¹ A_σᵀ."""
        A = self.m.A[[self.m.scalar_rows[x] for x in scalars]]
        if self.m.K == 0:
            return np.zeros((0, len(scalars)))
        return np.linalg.solve(p.chol, A.T)

    def logdet(self, scalars: tuple[str, ...], vectors: tuple[str, ...]) -> float:
        p = self.parts(vectors)
        if p is None:
            return -np.inf
        out = self.m.d * p.logdet_C + p.logdet_IM
        if scalars:
            B = self._scalar_schur(scalars, p)
            if B.shape[0] < B.shape[1]:
                return -np.inf
            sv = np.linalg.svd(B, compute_uv=False)
            A = self.m.A[[self.m.scalar_rows[x] for x in scalars]]
            scale = float(np.linalg.norm(A, 2)) if A.size else 0.0
            if sv.min() <= _rank_tol(sv, B.shape, scale) or sv.min() == 0.0:
                return -np.inf
            out += 2.0 * np.log(sv).sum()
        return float(out)

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

    def logdet_many(self, scalars: list[tuple[str, ...]], vectors: list[tuple[str, ...]]) -> np.ndarray:
        """Batched :meth:`logdet` for sets of one signature (same |σ| and |S| for every set).

        Stacked SVD / Cholesky / einsum, so the Python overhead is per signature, not per set.
        Raises :class:`NeedsDense` if any set needs the dense path (callers fall back per set).
        """
        m = self.m
        B, ns, nv, K = len(vectors), len(scalars[0]), len(vectors[0]), m.K
        out = np.zeros(B)
        chol = np.broadcast_to(np.eye(K), (B, K, K))
        if nv:
            idx = np.array([[m.vector_rows[v] for v in vs] for vs in vectors])
            logdet_C, Cinv, sing = self._kron_parts(idx)
            if sing.any() and m.d <= K:
                raise NeedsDense(vectors)
            Cv = m.C[idx]  # (B, nv, P, K)
            GC = np.einsum("pq,bvqk->bvpk", m.G, Cv)
            M = np.einsum("buv,bupk,bvpl->bkl", Cinv, Cv, GC)
            chol = np.linalg.cholesky(np.eye(K) + 0.5 * (M + np.swapaxes(M, 1, 2)))
            out += m.d * logdet_C
            out += 2.0 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
            out[sing] = -np.inf
        if ns:
            A = m.A[np.array([[m.scalar_rows[x] for x in ss] for ss in scalars])]  # (B, ns, K)
            if K < ns:
                return np.full(B, -np.inf)
            Bm = np.linalg.solve(chol, np.swapaxes(A, 1, 2))  # (B, K, ns)
            sv = np.linalg.svd(Bm, compute_uv=False)
            scale = np.linalg.norm(A, 2, axis=(1, 2))
            sing = (sv.min(axis=1) <= max(K, ns) * EPS * 8 * scale) | (sv.min(axis=1) == 0.0)
            out += 2.0 * np.log(np.where(sing[:, None], 1.0, sv)).sum(axis=1)
            out[sing] = -np.inf
        return out

    def _kron_parts(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """log|C_S|, C_S⁻¹ and the singular mask for a batch of vector sets (rows of ``idx``).

        Well-conditioned sets: batched Cholesky of the precomputed Gram. The rest (and any set
        whose Gram is not numerically PD): SVD of R_S, which decides singularity exactly.
        """
        B, nv = idx.shape
        C = self.gram[idx[:, :, None], idx[:, None, :]]
        logdet = np.zeros(B)
        Cinv = np.broadcast_to(np.eye(nv), (B, nv, nv)).copy()
        slow = np.ones(B, bool)
        try:
            L = np.linalg.cholesky(C)
            piv = np.diagonal(L, axis1=1, axis2=2) ** 2
            slow = piv.min(axis=1) <= self.GRAM_PIVOT_RATIO * np.diagonal(C, axis1=1, axis2=2).max(axis=1)
            fast = ~slow
            logdet[fast] = np.log(piv[fast]).sum(axis=1)
            Cinv[fast] = np.linalg.inv(C[fast])
        except np.linalg.LinAlgError:
            pass
        sing = np.zeros(B, bool)
        if slow.any():
            R = self.m.R[idx[slow]]
            if R.shape[2] < nv:
                sing[slow] = True
            else:
                U, sv, _ = np.linalg.svd(R, full_matrices=False)
                tol = max(R.shape[1:]) * EPS * 8 * sv.max(axis=1)
                s_sing = (sv.min(axis=1) <= tol) | (sv.max(axis=1) == 0.0)
                sv = np.where(s_sing[:, None], 1.0, sv)
                logdet[slow] = 2.0 * np.log(sv).sum(axis=1)
                Cinv[slow] = np.einsum("bus,bs,bvs->buv", U, 1.0 / sv**2, U)
                sing[slow] = s_sing
        return logdet, Cinv, sing
