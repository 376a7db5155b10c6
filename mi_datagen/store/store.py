"""``Store``: the read model of a generated dataset store.

It reads the manifest once, owns every array path (``layout``), and hands out images, θ, PMI,
latents and shard completeness as numpy arrays. ``MIDataset``, ``load_pair``, ``inspect``, the
preview, the entropy check and the quantisation study read through it; it never writes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from mi_datagen.errors import StoreError
from mi_datagen.store import layout
from mi_datagen.store.manifest import DatasetManifest

__all__ = ["Store"]


class Store:
    """A dataset store opened for reading. ``Store(path)`` checks that a mi-datagen manifest is there."""

    def __init__(self, path: str | Path):
        from mi_datagen.store.zarr_store import read_manifest

        self.path = str(path)
        self.manifest: DatasetManifest = read_manifest(self.path)
        self._group = None
        self._pid: int | None = None
        self._digests: np.ndarray | None = None

    # --- what the store holds -----------------------------------------------------------------
    @property
    def n(self) -> int:
        return self.manifest.n

    @property
    def modalities(self) -> list[str]:
        return [m.name for m in self.manifest.modalities]

    @property
    def target(self) -> str:
        return self.manifest.info.target

    @property
    def complete(self) -> bool:
        return self.manifest.complete

    @property
    def has_latents(self) -> bool:
        return bool(self.manifest.latent_arrays)

    @property
    def pmi_pairs(self) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
        return [(tuple(r.a), tuple(r.b)) for r in self.manifest.pmi]

    def mi(self, a, b, given=()) -> float | None:
        """The exact I(a; b | given) in nats, from the manifest."""
        return self.manifest.mi(a, b, given)

    def shard_range(self, i: int) -> tuple[int, int]:
        m = self.manifest
        return i * m.shard_size, min(m.n, (i + 1) * m.shard_size)

    def shards_done(self) -> np.ndarray:
        """The ``done`` markers as written (they can be ahead of the manifest while a run is going on)."""
        with self.reading(layout.DONE):
            return np.asarray(self.group[layout.DONE][:], dtype=bool)

    def require_complete(self) -> None:
        if not self.complete:
            done = np.asarray(self.manifest.shards_complete, dtype=bool)
            raise StoreError(f"{self.path}: incomplete store ({int(done.sum())}/{done.size} shards written); "
                             "finish it with `mi-datagen generate ... --resume`")

    # --- arrays -----------------------------------------------------------------------------
    @property
    def group(self):
        if self._group is None or self._pid != os.getpid():  # a forked worker opens its own handles
            import zarr

            self._group, self._pid = zarr.open_group(self.path, mode="r"), os.getpid()
        return self._group

    def path_of(self, key: str) -> str:
        """The array path of a Dataset key: a modality name, ``theta``, ``z/<m>`` or ``pmi/<a>__<b>``."""
        if key in self.modalities:
            return layout.image(key)
        if key == layout.THETA:
            return layout.THETA
        if key.startswith("z/") and key[2:] in self.manifest.latent_arrays:
            return layout.latent(key[2:])
        if key in {r.array for r in self.manifest.pmi}:
            return key
        raise StoreError(f"{self.path}: no array for {key!r}; the store has {self.keys()}")

    def keys(self) -> list[str]:
        """Every Dataset key this store can serve."""
        return [*self.modalities, layout.THETA, *(layout.latent(m) for m in self.manifest.latent_arrays),
                *(r.array for r in self.manifest.pmi)]

    def array(self, key: str):
        """The zarr array behind a Dataset key."""
        return self.group[self.path_of(key)]

    @contextmanager
    def reading(self, key: str):
        """Decoding errors of ``key`` (a chunk failing its crc32c, a damaged shard file) as one StoreError."""
        from mi_datagen.store.zarr_store import READ_ERRORS

        try:
            yield
        except StoreError:
            raise
        except READ_ERRORS as e:
            raise StoreError(f"{self.path}: {key!r} cannot be read ({type(e).__name__}: {e}); the store is damaged: "
                             "run `mi-datagen verify` on it") from None

    def read(self, key: str, rows: slice | Sequence[int] | np.ndarray = slice(None)) -> np.ndarray:
        arr = self.array(key)
        with self.reading(key):
            if isinstance(rows, slice):
                return np.asarray(arr[rows])
            return np.asarray(arr.get_orthogonal_selection((np.asarray(rows, dtype=np.int64),)))

    def images(self, modality: str, rows=slice(None)) -> np.ndarray:
        if modality not in self.modalities:
            raise StoreError(f"{self.path}: unknown modality {modality!r}; the store has {self.modalities}")
        return self.read(modality, rows)

    def theta(self, rows=slice(None)) -> np.ndarray:
        return self.read(layout.THETA, rows)

    def latents(self, modality: str, rows=slice(None)) -> np.ndarray:
        if not self.has_latents:
            raise StoreError(f"{self.path}: the store has no latents (generate it with --latents)")
        return self.read(layout.latent(modality), rows)

    def pmi(self, a: Sequence[str], b: Sequence[str], rows=slice(None)) -> np.ndarray:
        key = layout.pmi(a, b)
        if key not in {r.array for r in self.manifest.pmi}:
            key = layout.pmi(b, a)
        return self.read(key, rows)

    def check_shard(self, path: str, shard: int, rows: np.ndarray) -> None:
        """Refuse the rows of a whole shard of array ``path`` unless they hash to the digest written with them
        (a missing, swapped or altered shard file; stores made before 0.2 have no digests to check)."""
        order = self.manifest.digest_arrays
        if path not in order:
            return
        from mi_datagen.store.zarr_store import array, rows_sha256

        if self._digests is None:
            with self.reading(layout.DIGESTS):
                self._digests = np.asarray(array(self.group, layout.DIGESTS)[:])
        want = self._digests[shard, order.index(path)]
        if not want.any() or not np.array_equal(rows_sha256(rows, rows.dtype), want):
            raise StoreError(f"{self.path}: shard {shard} of {path!r} does not match the digest written with it "
                             "(a missing, swapped or altered file); run `mi-datagen verify` on the store")

    def template_files(self) -> dict[str, np.ndarray]:
        """The spec's file templates as the store keeps them (path as written → raw float64 values), each
        checked against the sha256 of the file's values recorded at generation."""
        from mi_datagen.store.manifest import values_sha256

        out = {}
        for r in self.manifest.template_files:
            values = np.asarray(self.group[r.array][:], dtype=np.float64)
            if values_sha256(values) != r.values_sha256:
                raise StoreError(f"{self.path}: the stored values of template file {r.path!r} ({r.array}) do not "
                                 "match their recorded sha256; the store is corrupted: regenerate it")
            out[r.path] = values
        return out

    def __repr__(self) -> str:
        return (f"Store({self.path!r}, spec={self.manifest.info.spec_name!r}, n={self.n}, "
                f"modalities={self.modalities}, {'complete' if self.complete else 'incomplete'})")

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_group"], state["_pid"] = None, None
        return state
