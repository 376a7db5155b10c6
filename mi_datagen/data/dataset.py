"""``MIDataset``: a generated store as a torch Dataset (a dict per sample).

The zarr group is opened lazily in each process (DataLoader workers included) and never pickled.
Reads are batched: ``__getitems__`` (which DataLoader uses for a whole batch) reads each shard
it needs once and keeps decoded shards in a per-process LRU cache of ``cache_bytes``, so a
dataset that fits the cache is read from disk once and then served from memory; past the cache,
only the inner chunks holding the requested rows are read.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from mi_datagen.store import zarr_store as zs
from mi_datagen.store.manifest import DatasetManifest


class MIDataset(Dataset):
    def __init__(self, path: str, modalities: Sequence[str] | None = None, with_theta: bool = True,
                 with_latents: bool = False, with_pmi: bool = False, transform: Callable | None = None,
                 dtype: torch.dtype = torch.float32, allow_incomplete: bool = False, cache_bytes: int = 2 << 30):
        self.path = str(path)
        self._group = None
        self._cache: OrderedDict = OrderedDict()
        self._cached = 0
        self.manifest: DatasetManifest = zs.read_manifest(self.path)
        m = self.manifest
        names = [r.name for r in m.modalities]
        self.modalities = list(modalities) if modalities is not None else names
        unknown = [x for x in self.modalities if x not in names]
        if unknown:
            raise zs.StoreError(f"{self.path}: unknown modalities {unknown}; the store has {names}")
        if with_latents and not m.latent_arrays:
            raise zs.StoreError(f"{self.path}: the store has no latents (generate it with --latents)")
        done = np.asarray(m.shards_complete, dtype=bool)
        if not m.complete:
            if not allow_incomplete:
                raise zs.StoreError(f"{self.path}: incomplete store ({int(done.sum())}/{done.size} shards written); "
                                    "finish it with `mi-datagen generate ... --resume`, or pass allow_incomplete=True "
                                    "to read the finished shards only")
            done = zs.shards_done(self._open())  # the manifest may lag behind the done markers
        self.indices = np.concatenate([np.arange(*zs.shard_range(i, m.n, m.shard_size)) for i in np.flatnonzero(done)]
                                      ) if done.any() else np.zeros(0, dtype=np.int64)
        self.keys = {x: f"x/{x}" for x in self.modalities}
        if with_theta:
            self.keys["theta"] = m.theta_array
        if with_latents:
            self.keys.update({f"latents/{x}": m.latent_arrays[x] for x in self.modalities})
        if with_pmi:
            self.keys.update({f"pmi/{'+'.join(r.a)};{'+'.join(r.b)}": r.array for r in m.pmi})
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
        state["_group"], state["_cache"], state["_cached"] = None, OrderedDict(), 0
        return state

    def _open(self):
        if self._group is None:
            import zarr

            self._group = zarr.open_group(self.path, mode="r")
        return self._group

    def _shard(self, key: str, shard: int) -> np.ndarray | None:
        hit = self._cache.get((key, shard))
        if hit is not None:
            self._cache.move_to_end((key, shard))
            return hit
        arr = self._open()[self.keys[key]]
        lo, hi = zs.shard_range(shard, self.manifest.n, self.manifest.shard_size)
        size = (hi - lo) * int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
        if size > self.cache_bytes:
            return None
        data = np.asarray(arr[lo:hi])
        self._cache[(key, shard)] = data
        self._cached += size
        while self._cached > self.cache_bytes:
            _, old = self._cache.popitem(last=False)
            self._cached -= old.nbytes
        return data

    def _rows(self, key: str, rows: np.ndarray) -> np.ndarray:
        shard_size = self.manifest.shard_size
        arr = self._open()[self.keys[key]]
        out = np.empty((rows.size, *arr.shape[1:]), dtype=arr.dtype)
        shards = rows // shard_size
        for s in np.unique(shards):
            sel = shards == s
            data = self._shard(key, int(s))
            if data is not None:
                out[sel] = data[rows[sel] - s * shard_size]
            else:
                out[sel] = arr.get_orthogonal_selection((rows[sel],))
        return out

    # --- access -------------------------------------------------------------------------------
    def __getitems__(self, idx: Sequence[int]) -> list[dict]:
        idx = np.asarray(idx, dtype=np.int64)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f"index out of range for {len(self)} samples")
        rows = self.indices[idx]
        cols = {}
        for key in self.keys:
            a = torch.from_numpy(self._rows(key, rows))
            cols[key] = a.to(self.dtype) if key in self.modalities or key.startswith("latents/") or key == "theta" else a
        out = []
        for j, i in enumerate(rows):
            s = {"index": int(i)}
            for key, col in cols.items():
                v = col[j]
                if self.transform is not None and key in self.modalities:
                    v = self.transform(v)
                s[key] = v
            out.append(s)
        return out

    def __getitem__(self, i: int) -> dict:
        return self.__getitems__([i])[0]
