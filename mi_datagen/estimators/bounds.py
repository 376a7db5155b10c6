"""Variational MI bounds from a critic score matrix (Poole et al. 2019; Song & Ermon 2020), in nats.

``scores[i, j] = f(x_i, y_j)`` for a batch of n joint pairs: the diagonal holds samples of the
joint, the off-diagonal n(n − 1) entries samples of the product of marginals.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _offdiag(scores: torch.Tensor) -> torch.Tensor:
    n = scores.shape[0]
    return scores.masked_select(~torch.eye(n, dtype=torch.bool, device=scores.device))


def logmeanexp_offdiag(scores: torch.Tensor) -> torch.Tensor:
    off = _offdiag(scores)
    return torch.logsumexp(off, 0) - math.log(off.numel())


def dv(scores: torch.Tensor) -> torch.Tensor:
    """Donsker–Varadhan: E_p[f] − log E_q[e^f]."""
    return scores.diag().mean() - logmeanexp_offdiag(scores)


def nwj(scores: torch.Tensor) -> torch.Tensor:
    """Nguyen–Wainwright–Jordan: E_p[f] − E_q[e^(f − 1)] (optimal f = 1 + log p/q)."""
    return scores.diag().mean() - torch.exp(logmeanexp_offdiag(scores) - 1.0)


def tuba(scores: torch.Tensor) -> torch.Tensor:
    """NWJ evaluated at f + 1: 1 + E_p[f] − E_q[e^f] (tight at f = log p/q, the JS-optimal critic)."""
    return 1.0 + scores.diag().mean() - torch.exp(logmeanexp_offdiag(scores))


def infonce(scores: torch.Tensor) -> torch.Tensor:
    """InfoNCE (van den Oord et al.): log n + E[f(x_i, y_i) − log Σ_j e^f(x_i, y_j)] ≤ log n."""
    n = scores.shape[0]
    return math.log(n) + (scores.diag() - torch.logsumexp(scores, 1)).mean()


def js_fgan(scores: torch.Tensor) -> torch.Tensor:
    """f-GAN Jensen–Shannon objective (Nowozin et al.): −E_p[softplus(−f)] − E_q[softplus(f)]."""
    return -F.softplus(-scores.diag()).mean() - F.softplus(_offdiag(scores)).mean()


def smile(scores: torch.Tensor, tau: float | None) -> torch.Tensor:
    """SMILE readout (Song & Ermon): DV with the partition term's scores clipped to [−τ, τ] (τ=None: DV)."""
    clipped = scores if tau is None else scores.clamp(-tau, tau)
    return scores.diag().mean() - logmeanexp_offdiag(clipped)


def mine_surrogate(scores: torch.Tensor, ema: torch.Tensor | None, momentum: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MINE's bias-corrected DV objective (Belghazi et al.): the gradient of log E_q[e^f] is taken as
    ∇E_q[e^f] / (moving average of E_q[e^f]). Returns (objective to maximise, updated moving average)."""
    partition = torch.exp(logmeanexp_offdiag(scores))
    with torch.no_grad():
        ema = partition.detach() if ema is None else momentum * ema + (1.0 - momentum) * partition.detach()
    return scores.diag().mean() - partition / ema.clamp_min(1e-6), ema
