"""Ground-truth differential entropy of flowed modalities (docs/dataset.md).

For x = F(w), w = S z (S = Σ^(-1/2) when the block is standardised, else I), with F injective:
    h(X) = h(Z) + log|det S| + E_z[log|det ∂F/∂w|].
h(Z) and log|det S| = −½ log|Σ_zz| are exact (the information solver); the expectation is
estimated on K samples from the per-sample Hutchinson power-series log-dets (``flow_logdet``):
an estimate, with a standard error, of an exactly defined quantity. For a set of modalities the
Jacobian is block diagonal, so h(X_a, X_b) = h(Z_a, Z_b) + Σ_i [log|det S_i| + E log|det ∂F_i|].
The series is truncated at ``terms``; its truncation bias is not in the standard error.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from mi_datagen.flows.logdet import flow_logdet

if TYPE_CHECKING:
    import torch


def per_sample_logdets(net, w: torch.Tensor, label, cfg, *, terms: int = 10, probes: int = 4,
                       seed: int = 0) -> np.ndarray:
    """log|det ∂F/∂w| for each sample of w (float64 numpy)."""
    return flow_logdet(net, w, label, cfg, terms=terms, probes=probes, seed=seed).value.double().numpy()


def entropy_estimate(h_latent: float, log_det_standardize: float, logdets: list[np.ndarray]) -> tuple[float, float]:
    """(nats, standard error) of h(X_set) from the exact latent entropy, the standardisation log-dets
    (summed over the set) and the per-sample flow log-dets of each block (same samples, summed per sample)."""
    total = np.sum(logdets, axis=0) if logdets else np.zeros(1)
    se = float(total.std(ddof=1) / math.sqrt(total.size)) if total.size > 1 else math.nan
    return h_latent + log_det_standardize + float(total.mean()), se

