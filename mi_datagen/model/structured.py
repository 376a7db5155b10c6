"""The structured form of a linear SEM (docs/information.md), never forming Σ.

Sources: K scalar noises ε_k and J vector noises ε_j ∈ R^d (one per node with non-zero noise std).
With scalar block coefficients every node is
    scalar node s:  z_s = a_sᵀ ε_sc                              a_s ∈ R^K
    vector node v:  z_v = Σ_j R_vj ε_j + T C_v ε_sc               R_v ∈ R^J, C_v ∈ R^{P×K}
where T ∈ R^{d×P} holds the P distinct templates. Then for a set S of vector nodes
    Σ_SS = (R_S R_Sᵀ) ⊗ I_d + W_S W_Sᵀ,   W_v = T C_v,
and every Gram matrix W_uᵀ W_v = C_uᵀ (TᵀT) C_v needs only the P×P template Gram G = TᵀT.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mi_datagen.model.sem import LinearSEM


@dataclass(frozen=True)
class StructuredModel:
    d: int
    scalar_rows: dict[str, int]
    vector_rows: dict[str, int]
    A: np.ndarray  # (n_scalar, K)
    R: np.ndarray  # (n_vector, J)
    C: np.ndarray  # (n_vector, P, K)
    T: np.ndarray  # (P, d) templates, row p is template p
    G: np.ndarray  # (P, P) = T Tᵀ
    scalar_sources: tuple[str, ...]
    vector_sources: tuple[str, ...]

    @property
    def K(self) -> int:
        return self.A.shape[1]

    @property
    def J(self) -> int:
        return self.R.shape[1]


def structure_of(sem: LinearSEM) -> tuple[StructuredModel | None, str | None]:
    """The structured model, or (None, reason) when the SEM leaves the structure."""
    for e in sem.edges:
        pk, ck = sem.kinds[e.parent], sem.kinds[e.child]
        if pk == "vector" and ck == "scalar":
            return None, (f"edge {e.parent} -> {e.child} maps a vector node to a scalar one "
                          "(the structured solver needs scalar nodes to depend on scalar noises only)")
        if pk == "vector" and ck == "vector" and e.template is not None:
            return None, (f"edge {e.parent} -> {e.child} scales a vector block by a template (diag(T)); "
                          "the structured solver needs scalar × I_d between vector nodes")
    scalar_src = tuple(n for n in sem.names if sem.kinds[n] == "scalar" and sem.noise[n] != 0.0)
    vector_src = tuple(n for n in sem.names if sem.kinds[n] == "vector" and sem.noise[n] != 0.0)
    K, J, P = len(scalar_src), len(vector_src), len(sem.templates)
    a: dict[str, np.ndarray] = {}
    r: dict[str, np.ndarray] = {}
    c: dict[str, np.ndarray] = {}
    for n in sem.names:
        if sem.kinds[n] == "scalar":
            v = np.zeros(K)
            if sem.noise[n] != 0.0:
                v[scalar_src.index(n)] = sem.noise[n]
            for e in sem.parents[n]:
                v += e.coef * a[e.parent]
            a[n] = v
        else:
            rv, cv = np.zeros(J), np.zeros((P, K))
            if sem.noise[n] != 0.0:
                rv[vector_src.index(n)] = sem.noise[n]
            for e in sem.parents[n]:
                if sem.kinds[e.parent] == "scalar":
                    cv[e.template] += e.coef * a[e.parent]
                else:
                    rv += e.coef * r[e.parent]
                    cv += e.coef * c[e.parent]
            r[n], c[n] = rv, cv
    scal = [n for n in sem.names if sem.kinds[n] == "scalar"]
    vec = [n for n in sem.names if sem.kinds[n] == "vector"]
    T = np.stack(sem.templates) if P else np.zeros((0, sem.d))
    model = StructuredModel(
        d=sem.d,
        scalar_rows={n: i for i, n in enumerate(scal)},
        vector_rows={n: i for i, n in enumerate(vec)},
        A=np.array([a[n] for n in scal]).reshape(len(scal), K),
        R=np.array([r[n] for n in vec]).reshape(len(vec), J),
        C=np.array([c[n] for n in vec]).reshape(len(vec), P, K),
        T=T,
        G=T @ T.T,
        scalar_sources=scalar_src,
        vector_sources=vector_src,
    )
    return model, None
