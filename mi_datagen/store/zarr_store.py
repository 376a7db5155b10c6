"""The zarr v3 layout of a dataset store, and its manifest file. Paths may be local or fsspec URLs.

    <store>/manifest.json        the DatasetManifest (also in the root group's attributes)
    <store>/x/<modality>         (N, C, H, W) float32 or float16; inner chunks of ``chunk_size``
                                 samples in shards of ``shard_size`` samples (one file per shard)
    <store>/theta                (N,) float64, the target θ
    <store>/z/<modality>         (N, C, H, W) float64 latents (optional)
    <store>/pmi/<a>__<b>         (N,) float64 pointwise MI of the latents
    <store>/done                 (n_shards,) uint8, one chunk per shard: 1 once the shard is written
    <store>/templates/<i>        (d,) float64, the spec's file templates (written once, at creation)

A shard is the unit of work, of writing and of completion: each shard of every array is its own
object, so ranks writing different shards never touch the same object.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import fsspec
import numpy as np
import zarr
from fsspec.implementations.local import LocalFileSystem
from pydantic import ValidationError
from zarr.codecs import BloscCodec, Crc32cCodec

from mi_datagen.errors import StoreError
from mi_datagen.store import layout
from mi_datagen.store.manifest import STORE_FORMAT, DatasetManifest

MANIFEST = layout.MANIFEST
# top-level entries a store of ours may hold: anything else is someone else's and is never deleted
OWN_ENTRIES = frozenset({"zarr.json", MANIFEST, "x", "z", "pmi", layout.CERT, layout.THETA, layout.DONE,
                         layout.TEMPLATES, layout.DIGESTS})


def _fs(path: str):
    fs, root = fsspec.core.url_to_fs(str(path))
    return fs, root.rstrip("/")


def exists(path: str) -> bool:
    fs, root = _fs(path)
    return fs.exists(root) and bool(fs.ls(root))


def foreign_entries(path: str) -> list[str]:
    """Top-level entries of ``path`` that a store of ours never writes (temporary manifest files aside)."""
    fs, root = _fs(path)
    names = [str(p).rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
    return sorted(n for n in names if n not in OWN_ENTRIES and not n.startswith(f"{MANIFEST}.tmp-"))


def is_dir(path: str) -> bool:
    fs, root = _fs(path)
    return fs.isdir(root)


def has_manifest(path: str) -> bool:
    fs, root = _fs(path)
    return fs.exists(f"{root}/{MANIFEST}")


def is_zarr(path: str) -> bool:
    fs, root = _fs(path)
    return fs.exists(f"{root}/zarr.json")


# what decoding a damaged chunk raises (zarr: checksum mismatch, truncated buffers, bad shard indexes)
READ_ERRORS = (ValueError, OSError, RuntimeError, IndexError, KeyError, TypeError)

MARKER = "mi_datagen_store"  # a root-group attribute set when the store is created, before any array


def is_ours(path: str) -> bool:
    """A zarr group that mi-datagen created (the marker attribute), even if it was stopped before its manifest."""
    fs, root = _fs(path)
    try:
        meta = json.loads(fs.cat_file(f"{root}/zarr.json"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and MARKER in (meta.get("attributes") or {})


def write_manifest(path: str, manifest: DatasetManifest, group: zarr.Group | None = None) -> None:
    """manifest.json (atomically on local disk, sealed with its own sha256) and the root group's attributes."""
    text = manifest.sealed().model_dump_json(indent=2)
    fs, root = _fs(path)
    target = f"{root}/{MANIFEST}"
    if isinstance(fs, LocalFileSystem):
        tmp = f"{target}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, target)
    else:
        fs.pipe_file(target, text.encode())
    g = group if group is not None else zarr.open_group(str(path), mode="r+")
    g.attrs["mi_datagen"] = json.loads(text)


def read_manifest(path: str) -> DatasetManifest:
    fs, root = _fs(path)
    target = f"{root}/{MANIFEST}"
    if not fs.exists(root):
        raise StoreError(f"{path}: no such dataset store")
    if not fs.exists(target):
        raise StoreError(f"{path}: not a mi-datagen store (no {MANIFEST}); generate it with `mi-datagen generate`")
    try:
        raw = json.loads(fs.cat_file(target))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise StoreError(f"{path}: {MANIFEST} is not valid JSON ({err}); the store is damaged: regenerate it") from None
    if not isinstance(raw, dict):
        raise StoreError(f"{path}: {MANIFEST} holds a {type(raw).__name__}, not a manifest; regenerate the store")
    if raw.get("format") != STORE_FORMAT:
        raise StoreError(f"{path}: store format {raw.get('format')!r}, this version ({STORE_FORMAT}) cannot read it; "
                         "regenerate it or use the mi-datagen version that wrote it "
                         f"({raw.get('package_version')})")
    try:
        man = DatasetManifest.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise StoreError(f"{path}: {MANIFEST} is not a valid manifest ({where}: {first['msg']}); "
                         "regenerate the store") from None
    if man.manifest_sha256 is not None and man.manifest_sha256 != man.own_sha256():
        raise StoreError(f"{path}: {MANIFEST} does not match its recorded sha256: it was edited or damaged after it "
                         "was written; regenerate the store (or `mi-datagen verify` it to see more)")
    return man


def compressor() -> tuple[BloscCodec, Crc32cCodec]:
    """blosc lz4 + bit-shuffle: float32 flow images compress ~1.2× (as with zstd level 3) but decode ~1.5×
    faster (benchmarks/RESULTS.md); float mantissas are noise, so no codec gains much more. Then a crc32c
    checksum on every chunk: a flipped bit is an error when the chunk is read, never silently other data."""
    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle"), Crc32cCodec()


def create_arrays(path: str, *, n: int, shape: tuple[int, ...], modalities: list[str], dtype: str,
                  shard_size: int, chunk_size: int, latents: list[str], pmi_arrays: list[str],
                  overwrite: bool, templates: dict[str, np.ndarray] | None = None,
                  digest_arrays: int = 0, cert_arrays: list[str] | None = None) -> zarr.Group:
    g = zarr.open_group(str(path), mode="w" if overwrite else "w-", attributes={MARKER: STORE_FORMAT})
    n_shards = max(1, -(-n // shard_size))
    img: dict[str, Any] = dict(shape=(n, *shape), chunks=(chunk_size, *shape), shards=(shard_size, *shape),
               compressors=compressor(), fill_value=0.0)
    for m in modalities:
        g.create_array(layout.image(m), dtype=dtype, **img)
    for m in latents:
        g.create_array(layout.latent(m), dtype="float64", **img)
    vec: dict[str, Any] = dict(shape=(n,), chunks=(shard_size,), dtype="float64", compressors=compressor(), fill_value=0.0)
    g.create_array(layout.THETA, **vec)
    for path in pmi_arrays:
        g.create_array(path, **vec)
    for path in cert_arrays or []:
        g.create_array(path, **{**vec, "dtype": "float32", "fill_value": float("nan")})
    for path, values in (templates or {}).items():
        g.create_array(path, shape=values.shape, dtype="float64", compressors=compressor(), fill_value=0.0)[:] = values
    g.create_array(layout.DONE, shape=(n_shards,), chunks=(1,), dtype="uint8", fill_value=0, compressors=Crc32cCodec())
    if digest_arrays:
        g.create_array(layout.DIGESTS, shape=(n_shards, digest_arrays, 32), chunks=(1, digest_arrays, 32),
                       dtype="uint8", fill_value=0, compressors=Crc32cCodec())
    return g


def array(group: zarr.Group, path: str) -> zarr.Array:
    """The array at ``path`` of a store's group (an error, not a group, if the layout was tampered with)."""
    node = group[path]
    if not isinstance(node, zarr.Array):
        raise StoreError(f"{group.store}: {path!r} is not an array; the store is damaged: regenerate it")
    return node


def rows_sha256(rows: np.ndarray, dtype) -> np.ndarray:
    """sha256 (32 uint8) of a block of rows as stored (C order, the array's dtype)."""
    data = np.ascontiguousarray(rows, dtype=dtype)
    return np.frombuffer(hashlib.sha256(data.tobytes()).digest(), dtype=np.uint8)


def content_sha256(group: zarr.Group) -> str:
    """sha256 of every shard digest of a store: one hash of all its data."""
    return hashlib.sha256(np.ascontiguousarray(array(group, layout.DIGESTS)[:]).tobytes()).hexdigest()


def shards_done(group: zarr.Group) -> np.ndarray:
    return np.asarray(array(group, layout.DONE)[:], dtype=bool)


def shard_range(i: int, n: int, shard_size: int) -> tuple[int, int]:
    return i * shard_size, min(n, (i + 1) * shard_size)
