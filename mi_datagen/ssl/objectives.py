"""Contrastive objectives on N modalities' embeddings, all built from one symmetric InfoNCE (CLIP).

For a batch of n joint samples with L2-normalised embeddings a_k, b_k and scale s (an inverse
temperature), the scores are f(a_k, b_l) = s⟨a_k, b_l⟩ and the symmetric cross-entropy is
CE = ½[CE(rows) + CE(columns)]. Whatever the encoders and s, log n − E[CE] ≤ I(A; B) ≤ I(Xi; Xj)
(van den Oord et al.; Poole et al. 2019): the held-out value is a certified lower bound, capped at log n.

``pairs``: the mean of CE over all modality pairs (CLIP for two modalities).
``mean``: each modality against the normalised mean of the others' embeddings (a one-vs-rest view).
With two modalities both are the same objective.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F

from mi_datagen.errors import ConfigError

Objective = Literal["pairs", "mean"]
OBJECTIVES: tuple[str, ...] = ("pairs", "mean")


def symmetric_ce(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """½[CE(s·a bᵀ, diag) + CE(s·b aᵀ, diag)] for L2-normalised rows a, b of one batch."""
    logits = scale * a @ b.T
    labels = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def infonce_bound(a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """log n − symmetric CE: the InfoNCE lower bound on I(A; B) of one batch (nats, ≤ log n)."""
    return math.log(a.shape[0]) - symmetric_ce(a, b, scale)


def contrastive_loss(embeddings: list[torch.Tensor], scale: torch.Tensor, objective: Objective) -> torch.Tensor:
    """The training loss of ``objective`` on one batch of per-modality embeddings (raw encoder outputs)."""
    z = [F.normalize(e, dim=1) for e in embeddings]
    if len(z) < 2:
        raise ConfigError("a contrastive objective needs at least two modalities")
    if objective == "pairs":
        terms = [symmetric_ce(z[i], z[j], scale) for i, j in itertools.combinations(range(len(z)), 2)]
    elif objective == "mean":
        total = torch.stack(z).sum(0)
        terms = [symmetric_ce(z[i], F.normalize((total - z[i]) / (len(z) - 1), dim=1), scale)
                 for i in range(len(z))]
    else:
        raise ConfigError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    return torch.stack(terms).mean()
