"""Paired samples for an estimator from a store: any modality set against any other (θ included)."""

from __future__ import annotations

import numpy as np
import torch

from mi_datagen.errors import StoreError
from mi_datagen.store.store import Store


def _side(store: Store, names: list[str]) -> np.ndarray:
    parts = []
    for name in names:
        if name in store.modalities:
            parts.append(np.asarray(store.images(name), dtype=np.float32))
        elif name == store.target:
            parts.append(np.asarray(store.theta(), dtype=np.float32)[:, None])
        else:
            raise StoreError(f"{name!r} is not stored; the store has modalities {store.modalities} and target "
                             f"{store.target!r}")
    if len(parts) == 1:
        return parts[0]
    if all(p.ndim == 4 and p.shape[2:] == parts[0].shape[2:] for p in parts):
        return np.concatenate(parts, axis=1)  # images of one size: stacked along channels
    return np.concatenate([p.reshape(p.shape[0], -1) for p in parts], axis=1)


def load_pair(store: str | Store, a: list[str], b: list[str]) -> tuple[np.ndarray, np.ndarray, float | None]:
    """(x, y, exact I(a; b) in nats) from a complete store (a path or a ``Store``); any node sets, θ included (a
    quantity the manifest's table lacks is solved from the store's own spec)."""
    from mi_datagen.store.truth import Truth

    store = store if isinstance(store, Store) else Store(store)
    store.require_complete()
    # the manifest's table, else solved from the store's own spec (e.g. I(θ; X1..Xk) for an intermediate k)
    return _side(store, list(a)), _side(store, list(b)), Truth(store).mi(list(a), list(b))


def split_standardize(x: torch.Tensor, gen: torch.Generator, test_fraction: float, val_fraction: float):
    """Seeded test / validation / train row indices (in that order of the permutation) and x standardised
    per feature with the training rows' statistics. Returns (x, train, val, test, std)."""
    perm = torch.randperm(x.shape[0], generator=gen)
    n_test = int(round(x.shape[0] * test_fraction))
    n_val = int(round((x.shape[0] - n_test) * val_fraction))
    test, val, train = perm[:n_test], perm[n_test:n_test + n_val], perm[n_test + n_val:]
    mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-8)
    return (x - mean) / std, train, val, test, std
