"""The dense reference: A with z = A ε for every node, built by propagating the SEM in topological order.

Used as the reference the structured solver is tested against, and as the fallback for SEMs
outside the structure. Memory grows as (n_nodes·d) × (n_sources·d): it refuses past a limit.
"""

from __future__ import annotations

import numpy as np

from mi_datagen.errors import ResourceError, SpecError
from mi_datagen.model.sem import LinearSEM

DEFAULT_MAX_BYTES = 2 * 1024**3


def dense_size(sem: LinearSEM) -> tuple[int, int]:
    rows = sum(sem.dim(n) for n in sem.names)
    cols = sum(sem.dim(n) for n in sem.names if sem.noise[n] != 0.0)
    return rows, cols


def dense_A(sem: LinearSEM, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, np.ndarray]:
    """Row block of A for every node: z_node = A[node] @ ε, ε the stacked standard-normal sources."""
    rows, cols = dense_size(sem)
    need = rows * cols * 8
    if need > max_bytes:
        raise ResourceError(
            f"the dense path would need {need / 2**30:.1f} GiB for A ({rows} x {cols}) at d = {sem.d}; "
            f"the limit is {max_bytes / 2**30:.1f} GiB. Use a spec inside the structure (scalar block "
            "coefficients) or a smaller shape"
        )
    offsets, off = {}, 0
    for n in sem.names:
        if sem.noise[n] != 0.0:
            offsets[n] = off
            off += sem.dim(n)
    out: dict[str, np.ndarray] = {}
    for n in sem.names:
        block = np.zeros((sem.dim(n), cols))
        if sem.noise[n] != 0.0:
            o = offsets[n]
            block[:, o:o + sem.dim(n)] += sem.noise[n] * np.eye(sem.dim(n))
        for e in sem.parents[n]:
            p = out[e.parent]
            pk, ck = sem.kinds[e.parent], sem.kinds[n]
            t = sem.templates[e.template] if e.template is not None else None
            if pk == "scalar" and ck == "scalar":
                block += e.coef * p
            elif pk == "scalar":  # scalar → vector: template column (the spec requires one)
                if t is None:
                    raise SpecError(f"edge {e.parent} -> {n}: a scalar → vector edge needs a template")
                block += e.coef * np.outer(t, p[0])
            elif ck == "scalar":  # vector → scalar: weights row
                block += e.coef * (t @ p)[None, :]
            else:  # vector → vector: c·I or c·diag(t)
                block += e.coef * (p if t is None else t[:, None] * p)
        out[n] = block
    return out


def dense_cov(A: dict[str, np.ndarray], names) -> np.ndarray:
    rows = np.concatenate([A[n] for n in names], axis=0)
    return rows @ rows.T
