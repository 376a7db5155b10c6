"""θ-regression: how well a shallow net predicts θ from a modality, next to the Bayes floor.

For jointly Gaussian (θ, Z) and any bijection X = f(Z), the best mean-squared error is
Var(θ | X) = Var(θ) · e^(−2 I(θ; X)), so the RMSE floor is σ_θ e^(−I).
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
import torch

from mi_datagen.estimators.critics import encoder
from mi_datagen.estimators.pairs import split_standardize


def rmse_floor(theta_std: float, mi: float) -> float:
    return theta_std * math.exp(-mi)


def regress(x, theta, seed: int = 0, steps: int = 1500, batch_size: int = 128, lr: float = 1e-3,
            test_fraction: float = 0.2, val_fraction: float = 0.1, hidden: int = 64, conv_width: int = 16,
            evals: int = 20) -> dict:
    """Train ``encoder(shape) → 1`` on MSE; the test RMSE (θ units) of the best-on-validation network."""
    t0 = time.perf_counter()
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    t = torch.as_tensor(np.asarray(theta), dtype=torch.float32).reshape(-1)
    gen = torch.Generator().manual_seed(seed)
    x, train, val, test, _ = split_standardize(x, gen, test_fraction, val_fraction)
    tm, ts = t[train].mean(), t[train].std()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = encoder(tuple(x.shape[1:]), 1, hidden, conv_width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def rmse(rows) -> float:
        net.eval()
        with torch.no_grad():
            pred = torch.cat([net(x[rows[i:i + 512]]).squeeze(1) for i in range(0, len(rows), 512)]) * ts + tm
        net.train()
        return float(((pred - t[rows]) ** 2).mean().sqrt())

    best: tuple[float, Any, int] = (math.inf, None, 0)
    curve = []
    for step in range(1, steps + 1):
        idx = train[torch.randint(len(train), (batch_size,), generator=gen)]
        loss = ((net(x[idx]).squeeze(1) - (t[idx] - tm) / ts) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if step % max(1, steps // evals) == 0 or step == steps:
            v = rmse(val)
            curve.append((step, v))
            if v < best[0]:
                best = (v, copy.deepcopy(net.state_dict()), step)
    net.load_state_dict(best[1])
    return {"test_rmse": rmse(test), "val_rmse": best[0], "best_step": best[2], "theta_std": float(t.std()),
            "curve": curve, "time_s": time.perf_counter() - t0, "n_train": len(train), "n_test": len(test)}
