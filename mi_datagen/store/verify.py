"""``verify``: check everything a store states about itself, and name what is wrong.

- the manifest: valid JSON, a valid manifest, equal to its own recorded sha256;
- the layout: every array the manifest names exists with n rows, the sample shape and dtype;
- completion: the ``done`` markers agree with the manifest's ``shards_complete``;
- the data: every shard marked done has a digest, and each array's rows in it hash to that digest
  (a flipped bit fails the chunk's crc32c, a missing or swapped shard file fails the digest);
  all digests together hash to the manifest's ``content_sha256``;
- the template files kept in the store match their recorded sha256.

Stores made before 0.2 carry no digests: for them only the manifest, layout and completion are checked,
and the report says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mi_datagen.errors import StoreError
from mi_datagen.store import layout
from mi_datagen.store import zarr_store as zs

__all__ = ["VerifyReport", "verify"]



@dataclass
class VerifyReport:
    path: str
    problems: list[str] = field(default_factory=list)
    shards_checked: int = 0
    arrays_checked: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        state = "OK" if self.ok else f"{len(self.problems)} problem(s)"
        return (f"verify {self.path}: {state}; {self.shards_checked} shard(s) × {self.arrays_checked} array(s) "
                "hashed" + ("; " + "; ".join(self.notes) if self.notes else ""))


def verify(path: str, progress: bool = False) -> VerifyReport:
    """Check the store at ``path``; every problem found is listed (nothing is changed)."""
    import zarr
    from tqdm import tqdm

    from mi_datagen.store.store import Store

    rep = VerifyReport(str(path))
    try:
        store = Store(path)
    except StoreError as e:
        rep.problems.append(str(e))
        return rep
    man = store.manifest
    try:
        g = zarr.open_group(store.path, mode="r")
    except zs.READ_ERRORS as e:  # an unreadable root group: nothing below can be checked
        rep.problems.append(f"the zarr group cannot be opened ({type(e).__name__}: {e})")
        return rep
    arrays: dict[str, zarr.Array] = {}
    for key in [layout.THETA, *(m.array for m in man.modalities), *man.latent_arrays.values(),
                *(r.array for r in man.pmi)]:
        node = g[key] if key in g else None
        if not isinstance(node, zarr.Array):
            rep.problems.append(f"array {key!r} named by the manifest is missing")
            continue
        a = arrays[key] = node
        if a.shape[0] != man.n:
            rep.problems.append(f"array {key!r} has {a.shape[0]} rows, the manifest says n = {man.n}")
        if key.startswith("x/"):
            want = tuple(next(m.shape for m in man.modalities if m.array == key))
            if tuple(a.shape[1:]) != want or str(a.dtype) != man.dtype:
                rep.problems.append(f"array {key!r} is {list(a.shape[1:])} {a.dtype}, the manifest says "
                                    f"{list(want)} {man.dtype}")
    n_shards = -(-man.n // man.shard_size)
    done = None
    if layout.DONE not in g:
        rep.problems.append("the done markers are missing")
    else:
        try:
            raw = np.asarray(zs.array(g, layout.DONE)[:])
        except zs.READ_ERRORS as e:
            rep.problems.append(f"the done markers cannot be read ({type(e).__name__}: {e})")
            return rep
        odd = np.flatnonzero(raw > 1)
        if odd.size:
            rep.problems.append(f"the done markers of shard(s) {odd.tolist()[:10]} hold {sorted(set(raw[odd].tolist()))}, "
                                "not 0 or 1: altered")
        done = raw.astype(bool)
        claimed = np.asarray(man.shards_complete, dtype=bool)
        if done.size != n_shards or claimed.size != n_shards:
            rep.problems.append(f"{done.size} done markers and {claimed.size} manifest entries for {n_shards} shards")
        else:
            lag = np.flatnonzero(claimed & ~done)
            if lag.size:
                rep.problems.append(f"the manifest says shard(s) {lag.tolist()[:10]} are complete, their done markers "
                                    "say not")
        if man.complete and not done.all():
            rep.problems.append(f"the manifest says complete, but {int((~done).sum())} shard(s) are not marked done")
    if not man.digest_arrays:
        rep.notes.append("no shard digests (a store made before 0.2): data not hashed")
    elif layout.DIGESTS not in g:
        rep.problems.append("the manifest lists digest arrays but the digests array is missing")
    elif done is not None:
        try:
            digests = np.asarray(zs.array(g, layout.DIGESTS)[:])
        except zs.READ_ERRORS as e:  # a digest chunk failing its own crc32c
            rep.problems.append(f"the shard digests cannot be read ({type(e).__name__}: {e})")
            return rep
        todo = np.flatnonzero(done)
        rep.arrays_checked = len(man.digest_arrays)
        for i in tqdm(todo, desc="verify", unit="shard", disable=not progress):
            lo, hi = store.shard_range(int(i))
            if not digests[i].any():
                rep.problems.append(f"shard {i} is marked done but has no digest: it was never written")
                continue
            rep.shards_checked += 1
            for j, key in enumerate(man.digest_arrays):
                arr = arrays.get(key)
                if arr is None:
                    continue
                try:
                    rows = np.asarray(arr[lo:hi])
                except zs.READ_ERRORS as e:  # a chunk failing its checksum or a damaged shard file
                    rep.problems.append(f"shard {i} of {key!r} cannot be read ({type(e).__name__}: {e})")
                    continue
                if not np.array_equal(zs.rows_sha256(rows, arr.dtype), digests[i, j]):
                    rep.problems.append(f"shard {i} of {key!r} (rows {lo}–{hi - 1}) does not match its digest: "
                                        "its file is missing, swapped or altered")
        if man.complete and man.content_sha256 is not None and zs.content_sha256(g) != man.content_sha256:
            rep.problems.append("the digests do not hash to the manifest's content_sha256")
    try:
        store.template_files()
    except StoreError as e:
        rep.problems.append(str(e))
    except zs.READ_ERRORS as e:
        rep.problems.append(f"the stored template files cannot be read ({type(e).__name__}: {e})")
    return rep
