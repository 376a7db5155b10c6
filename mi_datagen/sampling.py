"""Latent samples from counter-based seeds: sample i depends only on (seed, i).

Samples are drawn in RNG blocks of ``BLOCK`` consecutive indices; block b uses a Philox
generator keyed by (seed, b), so any range of indices, in any batch size or split across any
number of workers, gets the same numbers. Latents are built from the structured model
(z_v = Σ_j R_vj ε_j + T C_v ε_sc); the dense A is never formed.
"""

from __future__ import annotations

import numpy as np

from mi_datagen.errors import ConfigError, UnknownNameError
from mi_datagen.model.structured import StructuredModel

BLOCK = 256


def _block_noise(seed: int, block: int, K: int, J: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.Generator(np.random.Philox(key=np.array([seed, block], dtype=np.uint64)))
    eps_sc = gen.standard_normal((BLOCK, K))
    eps_vec = gen.standard_normal((BLOCK, J, d))
    return eps_sc, eps_vec


def source_noise(model: StructuredModel, seed: int, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The standard-normal sources of samples [start, stop): (n, K) scalar and (n, J, d) vector noises."""
    if not 0 <= start <= stop:
        raise ConfigError(f"need 0 <= start <= stop, got start={start}, stop={stop}")
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    parts_sc, parts_vec = [], []
    for b in range(start // BLOCK, (stop + BLOCK - 1) // BLOCK):
        lo, hi = max(start, b * BLOCK) - b * BLOCK, min(stop, (b + 1) * BLOCK) - b * BLOCK
        sc, vec = _block_noise(seed, b, model.K, model.J, model.d)
        parts_sc.append(sc[lo:hi])
        parts_vec.append(vec[lo:hi])
    if not parts_sc:
        return np.zeros((0, model.K)), np.zeros((0, model.J, model.d))
    return np.concatenate(parts_sc), np.concatenate(parts_vec)


def _combine(coefs: np.ndarray, parts: np.ndarray) -> np.ndarray:
    """Σ_k coefs[k] · parts[:, k] accumulated elementwise in a fixed order.

    BLAS matrix products may sum in a different order for different batch sizes; this does not,
    so a sample's bytes do not depend on which batch it was computed in.
    """
    out = np.zeros(parts.shape[:1] + parts.shape[2:])
    for k, c in enumerate(coefs):
        if c != 0.0:
            out += c * parts[:, k]
    return out


def sample_latents(model: StructuredModel, seed: int, start: int, stop: int,
                   names: list[str] | None = None) -> dict[str, np.ndarray]:
    """Latents of samples [start, stop) as float64: scalars (n,), vectors (n, d).

    Byte-identical for a given (seed, i) whatever the range it is computed in.
    """
    eps_sc, eps_vec = source_noise(model, seed, start, stop)
    out: dict[str, np.ndarray] = {}
    wanted = names if names is not None else [*model.scalar_rows, *model.vector_rows]
    for n in wanted:
        if n in model.scalar_rows:
            out[n] = _combine(model.A[model.scalar_rows[n]], eps_sc)
        elif n in model.vector_rows:
            i = model.vector_rows[n]
            z = _combine(model.R[i], eps_vec)
            for p in range(model.T.shape[0]):
                w = _combine(model.C[i, p], eps_sc)  # (n,) weight of template p
                if np.any(w):
                    z += w[:, None] * model.T[p]
            out[n] = z
        else:
            raise UnknownNameError(f"unknown node {n!r}")
    return out
