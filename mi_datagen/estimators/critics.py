"""Critics f(x, y) → an (n, n) score matrix, and the Gaussian q(y|x) of CLUB.

Each modality has its own encoder: an MLP on flattened vectors, or a small conv net for images
(C, H, W). ``separable``: f(x, y) = ⟨g(x), h(y)⟩. ``joint``: an MLP on the concatenation
[g(x), h(y)] for every pair; its first layer is applied to each side once and broadcast-added
(W[a; b] = W_a a + W_b b), which is the same function at n instead of n² first-layer cost.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from mi_datagen.errors import EstimatorError

Kind = Literal["separable", "joint"]


def mlp(d_in: int, hidden: int, d_out: int, layers: int = 2) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers):
        mods += [nn.Linear(d, hidden), nn.ReLU()]
        d = hidden
    mods.append(nn.Linear(d, d_out))
    return nn.Sequential(*mods)


class ConvEncoder(nn.Module):
    """A small conv net for (C, H, W) images, cheap enough to train on a CPU: a 4×4 patchify conv
    (stride 4), two stride-2 3×3 convs, global average pool, linear (~20 ms per 256-image step on
    one core at 3×32×32, ~3× less than a DCGAN-style stack of the same width)."""

    def __init__(self, channels: int, d_out: int, width: int = 16, pool: bool = True,
                 hw: tuple[int, int] = (32, 32)):
        super().__init__()
        w = width
        body = [nn.Conv2d(channels, 2 * w, 4, 4), nn.ReLU(), nn.Conv2d(2 * w, 4 * w, 3, 2, 1), nn.ReLU(),
                nn.Conv2d(4 * w, 4 * w, 3, 2, 1), nn.ReLU()]
        if pool:
            head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, d_out)]
        else:  # keep the final map (2×2 for 32×32): where each feature sits
            with torch.no_grad():
                cells = nn.Sequential(*body)(torch.zeros(1, channels, *hw)).numel()
            head = [nn.Flatten(), nn.Linear(cells, d_out)]
        self.net = nn.Sequential(*body, *head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PatchEncoder(nn.Module):
    """Bag of patches: a 4×4 patchify conv, a 1×1 conv, global average pool, linear. No spatial mixing
    beyond 4×4, so far less prone to memorising noise images than ``ConvEncoder`` (at 3×32×32 latents
    with I = 0.33 nats: held-out 0.25 vs 0.06; at I = 1.4: 0.92 vs 1.24 — it underfits there)."""

    def __init__(self, channels: int, d_out: int, width: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(channels, 2 * width, 4, 4), nn.ReLU(), nn.Conv2d(2 * width, 2 * width, 1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def encoder(shape: tuple[int, ...], d_out: int, hidden: int, conv_width: int = 16, kind: str = "auto") -> nn.Module:
    """``auto``: a conv encoder for image-shaped inputs (C, H, W) with H, W ≥ 8, an MLP on the flattened
    input otherwise; ``mlp`` / ``conv`` / ``patch`` force one."""
    image = len(shape) == 3 and shape[1] >= 8 and shape[2] >= 8
    if kind not in ("auto", "mlp", "conv", "conv-flat", "patch") or (kind in ("conv", "conv-flat", "patch")
                                                                     and not image):
        raise EstimatorError(f"encoder must be auto, mlp, conv, conv-flat or patch (the image encoders need (C, H, W) "
                             f"with H, W >= 8); got {kind!r} for shape {shape}")
    if kind == "conv-flat":  # no global pooling: where a feature sits is kept (localised, zero-mean patterns)
        return ConvEncoder(shape[0], d_out, conv_width, pool=False, hw=(shape[1], shape[2]))
    if kind == "patch":
        return PatchEncoder(shape[0], d_out, conv_width)
    if kind == "conv" or (kind == "auto" and image):
        return ConvEncoder(shape[0], d_out, conv_width)
    return nn.Sequential(nn.Flatten(), mlp(math.prod(shape), hidden, d_out))


class Critic(nn.Module):
    def __init__(self, x_shape, y_shape, kind: Kind = "separable", embed: int = 64, hidden: int = 256,
                 conv_width: int = 16, encoder_kind: str = "auto"):
        super().__init__()
        if kind not in ("separable", "joint"):
            raise EstimatorError(f"critic must be 'separable' or 'joint', got {kind!r}")
        self.kind = kind
        self.gx = encoder(tuple(x_shape), embed, hidden, conv_width, encoder_kind)
        self.gy = encoder(tuple(y_shape), embed, hidden, conv_width, encoder_kind)
        if kind == "joint":
            self.first_x, self.first_y = nn.Linear(embed, hidden), nn.Linear(embed, hidden, bias=False)
            self.head = nn.Sequential(nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        a, b = self.gx(x), self.gy(y)
        if self.kind == "separable":
            return a @ b.T
        h = self.first_x(a)[:, None, :] + self.first_y(b)[None, :, :]  # (n, n, hidden) = W[a_i; b_j]
        return self.head(h).squeeze(-1)


class GaussianConditional(nn.Module):
    """q(y | x) = N(μ(x), diag exp(logvar(x))) on flattened y, for CLUB."""

    def __init__(self, x_shape, y_dim: int, embed: int = 64, hidden: int = 256, conv_width: int = 16,
                 encoder_kind: str = "auto"):
        super().__init__()
        self.g = encoder(tuple(x_shape), embed, hidden, conv_width, encoder_kind)
        self.mu = nn.Sequential(nn.ReLU(), nn.Linear(embed, y_dim))
        self.logvar = nn.Sequential(nn.ReLU(), nn.Linear(embed, y_dim), nn.Tanh())  # bounded for stability

    def params(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.g(x)
        return self.mu(h), 4.0 * self.logvar(h)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        mu, logvar = self.params(x)
        y = y.flatten(1)
        return (-0.5 * ((y - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(1)

    def club(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """CLUB (Cheng et al.): E_p[log q(y|x)] − E_x E_y[log q(y|x)]; the constants cancel."""
        mu, logvar = self.params(x)
        y = y.flatten(1)
        inv = (-logvar).exp()
        positive = (-0.5 * (y - mu) ** 2 * inv).sum(1)
        # mean over j of −½ Σ_k (y_jk − μ_ik)² / σ²_ik, expanded so no (n, n, d) tensor is formed
        m1, m2 = y.mean(0), (y ** 2).mean(0)
        negative = (-0.5 * (m2 - 2 * mu * m1 + mu ** 2) * inv).sum(1)
        return (positive - negative).mean()
