"""Peer libraries through the external-estimator protocol: torch-mist's estimators and latentmi's LMI.

    method: external
    callable: mi_datagen.estimators.peers:torch_mist      # settings: estimator (smile, infonce, nwj, js, mine, …)
    callable: mi_datagen.estimators.peers:latent_mi       # settings: N_dims, epochs, …

Both are optional and neither is a dependency: they pin numpy < 2 while zarr 3 needs numpy ≥ 2, and
torch-mist imports pandas without declaring it. Both run on numpy 2 as far as these adapters use them
(tested), so install them without their pins: ``make peers`` (``pip install --no-deps torch-mist latentmi``
plus ``scikit-learn pyro-ppl pandas``). Each adapter gets the harness's seeded train / held-out split and
returns the held-out estimate in nats.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
import torch

from mi_datagen.errors import DependencyError

__all__ = ["latent_mi", "torch_mist"]

INSTALL = "pip install --no-deps torch-mist latentmi && pip install scikit-learn pyro-ppl pandas  (or `make peers`)"


def _flat(*arrays) -> list[np.ndarray]:
    return [np.asarray(a, dtype=np.float32).reshape(len(a), -1) for a in arrays]


def _prepared(x_train, y_train, x_test, y_test) -> list[np.ndarray]:
    """Flattened float32 arrays, each side standardised per feature with its training statistics."""
    xa, ya, xb, yb = _flat(x_train, y_train, x_test, y_test)
    out = []
    for train, test in ((xa, xb), (ya, yb)):
        mean, std = train.mean(0), train.std(0)
        std[std == 0] = 1.0
        out += [(train - mean) / std, (test - mean) / std]
    return [out[0], out[2], out[1], out[3]]


def torch_mist(x_train, y_train, x_test, y_test, *, seed: int = 0, estimator: str = "smile",
               hidden_dims: tuple[int, ...] = (128, 64), max_iterations: int = 1000, batch_size: int = 128,
               early_stopping: bool = False, **params) -> dict:
    """torch-mist's ``estimate_mi`` (Federici et al.): trained on the training split for a fixed budget (the harness's
    protocol; its own early stopping, ``early_stopping=True``, stopped at 0.51 of 1.02 nats on a 2-d Gaussian pair),
    evaluated on the held-out split. ``estimator``: any name torch-mist knows; ``params`` go to it."""
    try:
        from torch_mist import estimate_mi
    except ImportError as err:
        raise DependencyError(f"torch-mist is not installed ({err}); {INSTALL}") from None
    xa, ya, xb, yb = _prepared(x_train, y_train, x_test, y_test)
    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        torch.manual_seed(seed)
        value = estimate_mi(data=(xa, ya), test_data=(xb, yb), estimator=estimator, hidden_dims=list(hidden_dims),
                            max_iterations=max_iterations, batch_size=batch_size, early_stopping=early_stopping,
                            verbose=False, **params)
    nats = value[0] if isinstance(value, tuple) else value
    return {"nats": float(nats), "library": "torch-mist", "estimator": estimator}


def latent_mi(x_train, y_train, x_test, y_test, *, seed: int = 0, N_dims: int = 8, epochs: int = 300,
              batch_size: int = 512, lr: float = 1e-4, patience: int = 30, k: int = 3, val_fraction: float = 0.2,
              **params) -> dict:
    """latentmi's LMI (Gowri et al.): paired autoencoders trained on the training split (``val_fraction`` of it for
    their early stopping), then KSG (latentmi's own, in nats) on the held-out split's embeddings."""
    try:
        from latentmi import ksg, lmi
    except ImportError as err:
        raise DependencyError(f"latentmi is not installed ({err}); {INSTALL}") from None
    xa, ya, xb, yb = _prepared(x_train, y_train, x_test, y_test)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(xa))
    n_val = max(1, int(round(len(xa) * val_fraction)))
    X = torch.from_numpy(np.concatenate([xa, xb])).float()
    Y = torch.from_numpy(np.concatenate([ya, yb])).float()
    train_idx, val_idx = perm[n_val:], perm[:n_val]
    state = np.random.get_state()
    try:
        np.random.seed(seed)  # latentmi draws from numpy's global generator
        with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
            torch.manual_seed(seed)
            zx, zy, _ = lmi.learn_representation(X, Y, train_idx, val_idx, N_dims=N_dims, epochs=epochs,
                                                 batch_size=batch_size, lr=lr, patience=patience, device="cpu",
                                                 **params)
            test = slice(len(xa), None)
            bits = ksg.mi(zx[test].numpy().astype(np.float64), zy[test].numpy().astype(np.float64), k=k, base=2)
    finally:
        np.random.set_state(state)
    return {"nats": float(np.asarray(bits).mean() * np.log(2.0)), "library": "latentmi", "N_dims": N_dims}
