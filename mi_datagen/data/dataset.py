"""``MIDataset``: a generated store as a torch Dataset (a dict per sample).

The zarr group is opened lazily in each process (DataLoader workers included) and never pickled.
Reads are batched: ``__getitems__`` (which DataLoader uses for a whole batch) reads each shard
it needs once and keeps decoded shards in a per-process LRU cache of ``cache_bytes``, so a
dataset that fits the cache is read from disk once and then served from memory; past the cache,
only the inner chunks holding the requested rows are read.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mi_datagen.errors import StoreError
from mi_datagen.store import layout
from mi_datagen.store.manifest import DatasetManifest
from mi_datagen.store.store import Store


class MIDataset(Dataset):
    """A dataset store as a torch Dataset: each sample is a dict keyed by the store's names.

    Keys: each modality by name (``"X1"``, the image as stored), ``"theta"``, ``"z/<m>"`` (latents, with
    ``with_latents``), ``"pmi/<a>__<b>"`` (float64 pointwise MI, with ``with_pmi``) and ``"index"``.
    ``path`` is a store path or an open ``Store``.
    """

    def __init__(self, path: str | Store, modalities: Sequence[str] | None = None, with_theta: bool = True,
                 with_latents: bool = False, with_pmi: bool = False, transform: Callable | None = None,
                 dtype: torch.dtype = torch.float32, allow_incomplete: bool = False, cache_bytes: int = 2 << 30):
        self.store = path if isinstance(path, Store) else Store(path)
        self.path = self.store.path
        self._arrays: dict = {}
        self._cache: OrderedDict = OrderedDict()
        self._cached = 0
        self.manifest: DatasetManifest = self.store.manifest
        m = self.manifest
        names = self.store.modalities
        self.modalities = list(modalities) if modalities is not None else names
        unknown = [x for x in self.modalities if x not in names]
        if unknown:
            raise StoreError(f"{self.path}: unknown modalities {unknown}; the store has {names}")
        if with_latents and not self.store.has_latents:
            raise StoreError(f"{self.path}: the store has no latents (generate it with --latents)")
        done = np.asarray(m.shards_complete, dtype=bool)
        if not m.complete:
            if not allow_incomplete:
                raise StoreError(f"{self.path}: incomplete store ({int(done.sum())}/{done.size} shards written); "
                                 "finish it with `mi-datagen generate ... --resume`, or pass allow_incomplete=True "
                                 "to read the finished shards only")
            done = self.store.shards_done()  # the manifest may lag behind the done markers
        self.indices = np.concatenate([np.arange(*self.store.shard_range(int(i))) for i in np.flatnonzero(done)]
                                      ) if done.any() else np.zeros(0, dtype=np.int64)
        self.keys = list(self.modalities)
        if with_theta:
            self.keys.append(layout.THETA)
        if with_latents:
            self.keys += [layout.latent(x) for x in self.modalities]
        if with_pmi:
            self.keys += [r.array for r in m.pmi]
        self.transform, self.dtype, self.cache_bytes = transform, dtype, cache_bytes

    # --- info -------------------------------------------------------------------------------
    def mi(self, a, b, given=()) -> float | None:
        """The exact I(a; b | given) in nats from the store's manifest."""
        return self.manifest.mi(a, b, given)

    def __len__(self) -> int:
        return int(self.indices.size)

    def __repr__(self) -> str:
        return (f"MIDataset({self.path!r}, n={len(self)}, modalities={self.modalities}, "
                f"spec={self.manifest.info.spec_name!r})")

    # --- process-local state ------------------------------------------------------------------
    def __getstate__(self):
        state = self.__dict__.copy()
        state["_arrays"], state["_cache"], state["_cached"] = {}, OrderedDict(), 0
        return state

    def _array(self, key: str):
        pid = os.getpid()
        arr = self._arrays.get((pid, key))
        if arr is None:  # opening an array is a metadata read: once per process
            arr = self._arrays[(pid, key)] = self.store.array(key)
        return arr

    def _tensor(self, key: str, data: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(data))
        return t if key.startswith("pmi/") else t.to(self.dtype)  # PMI stays float64

    def _shard(self, key: str, shard: int) -> tuple[torch.Tensor, ...] | None:
        """The rows of shard ``shard`` of ``key``, decoded, converted and cached; None if it would not fit."""
        hit = self._cache.get((key, shard))
        if hit is not None:
            self._cache.move_to_end((key, shard))
            return hit[0]
        arr = self._array(key)
        lo, hi = self.store.shard_range(shard)
        size = (hi - lo) * int(np.prod(arr.shape[1:])) * max(arr.dtype.itemsize, self.dtype.itemsize)
        if size > self.cache_bytes:
            return None
        with self.store.reading(key):
            raw = np.asarray(arr[lo:hi])
        self.store.check_shard(self.store.path_of(key), shard, raw)
        data = self._tensor(key, raw)
        rows = data.unbind(0)  # per-row views made once: a batch then costs one tuple lookup per row
        self._cache[(key, shard)] = (rows, data.nbytes)
        self._cached += data.nbytes
        while self._cached > self.cache_bytes:
            _, (_, nbytes) = self._cache.popitem(last=False)
            self._cached -= nbytes
        return rows

    def _rows(self, key: str, rows: np.ndarray) -> list[torch.Tensor]:
        """One tensor per row: views into cached shards, or rows read from their inner chunks."""
        size = self.manifest.shard_size
        out: list = [None] * rows.size
        data: torch.Tensor | tuple[torch.Tensor, ...]
        shards = rows // size
        for s in np.unique(shards).tolist():
            where = np.flatnonzero(shards == s).tolist()
            cached = self._shard(key, s)
            if cached is None:
                with self.store.reading(key):
                    picked = self._array(key).get_orthogonal_selection((rows[where],))
                data = self._tensor(key, picked)
                local = range(len(where))
            else:
                data, local = cached, (rows[where] - s * size).tolist()
            for j, r in zip(where, local):
                out[j] = data[r]
        return out

    # --- access -------------------------------------------------------------------------------
    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        idx = np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} samples")
        rows = self.indices[idx]
        cols = {key: self._rows(key, rows) for key in self.keys}
        if self.transform is not None:
            for key in self.modalities:
                cols[key] = [self.transform(v) for v in cols[key]]
        names = list(cols)
        return [{"index": i, **dict(zip(names, vals))} for i, vals in zip(rows.tolist(), zip(*cols.values()))]

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]
