"""Per-block standardisation w = Σ_ii^(-1/2) z_i (symmetric square root, docs/model.md §1), without forming Σ_ii.

In the structured model Σ_ii = r² I_d + W Wᵀ with r² = ‖R_i‖² and W = Tᵀ C_i (d × K, low rank).
With the thin SVD W = U S Vᵀ:
    Σ^(-1/2) = I/r + U diag((r² + s²)^(-1/2) − 1/r) Uᵀ,   Σ^(1/2) = r I + U diag((r² + s²)^(1/2) − r) Uᵀ.
Both are bijections of z_i alone, so they change no MI. Row products are reduced per row
(``np.sum(..., axis=1)``), never by a BLAS matrix product, so a sample's bytes do not depend on the
batch it is computed in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mi_datagen.errors import StructureError, UnknownNameError
from mi_datagen.model.structured import StructuredModel


@dataclass(frozen=True)
class BlockStandardizer:
    r: float
    U: np.ndarray  # (k, d): rows are the left singular vectors of W
    s2: np.ndarray  # (k,) squared singular values

    def _apply(self, z: np.ndarray, scale: float, gains: np.ndarray) -> np.ndarray:
        out = scale * z
        for u, g in zip(self.U, gains):
            if g != 0.0:
                out += np.sum(z * u, axis=1)[:, None] * (g * u)
        return out

    def standardize(self, z: np.ndarray) -> np.ndarray:
        """w = Σ^(-1/2) z for rows z (n, d)."""
        return self._apply(z, 1.0 / self.r, 1.0 / np.sqrt(self.r ** 2 + self.s2) - 1.0 / self.r)

    def unstandardize(self, w: np.ndarray) -> np.ndarray:
        """z = Σ^(1/2) w."""
        return self._apply(w, self.r, np.sqrt(self.r ** 2 + self.s2) - self.r)


def block_standardizer(model: StructuredModel, node: str) -> BlockStandardizer:
    i = model.vector_rows.get(node)
    if i is None:
        raise UnknownNameError(f"{node!r} is not a vector node")
    r = float(np.sqrt(np.sum(model.R[i] ** 2)))
    if r == 0.0:
        raise StructureError(
            f"modality {node!r} cannot be standardised: it has no vector noise of its own, so Σ_{node},{node} "
            "is singular (rank ≤ number of templates). Give it a noise_std > 0 or set standardize: false"
        )
    W = model.T.T @ model.C[i]  # (d, K): the block's low-rank part
    if W.size == 0 or not np.any(W):
        return BlockStandardizer(r, np.zeros((0, model.d)), np.zeros(0))
    U, s, _ = np.linalg.svd(W, full_matrices=False)
    keep = s > s.max() * 1e-12
    return BlockStandardizer(r, U[:, keep].T.copy(), s[keep] ** 2)
