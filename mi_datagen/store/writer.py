"""``StoreWriter``: writes one ``GenerationJob`` into a store — the plan (fresh / resume / complete /
replace), the shards, the local worker pool, the torch.distributed ranks and the finish step.

Shards are the unit of work and of completion, so any batch size, any number of ranks or workers
and any interruption followed by ``resume`` give the same array bytes.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm import tqdm

from mi_datagen.errors import StoreError
from mi_datagen.store import distributed as D
from mi_datagen.store import layout
from mi_datagen.store import zarr_store as zs
from mi_datagen.store.config import GenerateConfig
from mi_datagen.store.job import GenerationJob
from mi_datagen.store.manifest import DatasetManifest

if TYPE_CHECKING:
    import zarr

__all__ = ["Plan", "plan", "StoreWriter", "write_store"]


class Plan(str, Enum):
    FRESH = "fresh"        # nothing there yet: create the store
    RESUME = "resume"      # the same job, some shards missing: write those
    COMPLETE = "complete"  # the same job, every shard written: only the finish step
    REPLACE = "replace"    # --overwrite of an existing store (or a half-created one of ours)


def plan(out: str, key: dict, resume: bool, overwrite: bool, replace_other_jobs: bool = False) -> Plan:
    """What writing the job with generation key ``key`` to ``out`` means; refuses anything ambiguous.
    ``replace_other_jobs``: a store of ours made by another job is replaced instead of refused (the bench
    harness's policy for its own stores folder)."""
    if not zs.exists(out):
        return Plan.FRESH
    if not zs.is_dir(out):
        raise StoreError(f"{out} exists and is not a folder; choose another --out")
    foreign = zs.foreign_entries(out)
    if foreign:
        shown = ", ".join(foreign[:5]) + (" …" if len(foreign) > 5 else "")
        raise StoreError(f"{out} holds files that are not part of a mi-datagen store ({shown}); nothing was touched: "
                         "choose another --out, or move those files away")
    if not zs.has_manifest(out):
        if zs.is_ours(out) and (resume or overwrite):
            return Plan.REPLACE  # ours, killed while being created: no shard can be marked done yet
        raise StoreError(f"{out} exists and is not a mi-datagen store (no manifest, no mi-datagen marker); nothing "
                         "was touched: choose another --out")
    if overwrite:
        return Plan.REPLACE
    if not resume:
        raise StoreError(f"{out} exists; pass --resume to finish it or --overwrite to replace it")
    old = zs.read_manifest(out)
    old_key = old.generation_key()
    diff = [k for k, v in key.items() if old_key.get(k) != v]
    if diff and replace_other_jobs:
        return Plan.REPLACE
    if diff:
        raise StoreError(f"{out} was generated with different settings ({', '.join(diff)}); "
                         "--resume continues only the same job (use --overwrite to replace it)"
                         + (_flow_hint(old) if "flows" in diff else ""))
    return Plan.COMPLETE if old.complete else Plan.RESUME


def _flow_hint(old: DatasetManifest) -> str:
    """Which flows the store was made with, and how to name them: a spec that names no checkpoint follows
    DEFAULT_FLOW, which moved from ``default`` (v1) to ``default-v2`` and then to ``default-v2.1``."""
    from mi_datagen.assets import DEFAULT_FLOW

    was = ", ".join(f"{m.name} → {m.flow.checkpoint!r} (sha256 {m.flow.sha256[:12]}…)" for m in old.modalities if m.flow)
    return (f". The store's flows: {was}; a spec that names no checkpoint gets {DEFAULT_FLOW!r}: to continue this "
            "store, name its flow in the spec (flow: {checkpoint: …, label: …}, or `checkpoint:` in a family)")


class StoreWriter:
    """Writes ``job`` to ``out``. ``run()`` returns the final manifest on rank 0 (None on other ranks)."""

    def __init__(self, job: GenerationJob, out: str, replace_other_jobs: bool = False):
        self.job, self.out, self.cfg = job, str(out), job.cfg
        self.replace_other_jobs = replace_other_jobs
        self.rank, self.world = D.rank_world()
        self._group: zarr.Group | None = None

    def prepare(self) -> Plan:
        """Rank 0: certify, then create the store (or check that ``resume`` continues the same job)."""
        job = self.job
        job.certify()
        fresh = job.manifest(np.zeros(job.n_shards, dtype=bool))
        p = plan(self.out, fresh.generation_key(), self.cfg.resume, self.cfg.overwrite, self.replace_other_jobs)
        if p in (Plan.FRESH, Plan.REPLACE):
            g = zs.create_arrays(self.out, n=self.cfg.n, shape=job.shape, modalities=[m.name for m in job.mods],
                                 dtype=self.cfg.dtype, shard_size=self.cfg.shard_size, chunk_size=self.cfg.chunk_size,
                                 latents=[m.name for m in job.mods] if self.cfg.latents else [],
                                 pmi_arrays=[layout.pmi(a, b) for a, b in job.pairs], overwrite=p is Plan.REPLACE,
                                 templates=job.files.store_arrays(), digest_arrays=len(job.data_arrays),
                                 cert_arrays=[layout.cert(m.name) for m in job.cert_mods])
            zs.write_manifest(self.out, fresh, g)
        return p

    def write_shard(self, i: int) -> int:
        """Compute and write shard i, then mark it done (only after every array of it is written)."""
        import zarr

        if self._group is None:
            self._group = zarr.open_group(self.out, mode="r+")
        g = self._group
        lo, hi = zs.shard_range(i, self.cfg.n, self.cfg.shard_size)
        rows = self.job.compute_shard(lo, hi)
        digests = []
        for key in self.job.data_arrays:
            a = zs.array(g, key)
            a[lo:hi] = rows[key]
            digests.append(zs.rows_sha256(rows[key], a.dtype))
        if layout.DIGESTS in g:  # stores made before 0.2 have no digests
            zs.array(g, layout.DIGESTS)[i] = np.stack(digests)
        zs.array(g, layout.DONE)[i] = 1
        return hi - lo

    def work(self) -> None:
        import zarr

        cfg, job = self.cfg, self.job
        done = zs.shards_done(zarr.open_group(self.out, mode="r"))
        mine = [i for i in range(job.n_shards) if i % self.world == self.rank and not done[i]]
        total = sum(hi - lo for lo, hi in (zs.shard_range(i, cfg.n, cfg.shard_size) for i in mine))
        t0 = time.perf_counter()
        with tqdm(total=int(total), unit="sample", desc=f"generate[{self.rank}]", disable=not cfg.progress,
                  mininterval=2) as bar:
            k = min(cfg.workers, len(mine))
            if k > 1:  # local worker processes, one shard per task; bytes do not depend on who does which
                ctx = torch.multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(k, mp_context=ctx, initializer=_init_worker,
                                         initargs=(job.spec, self.out, cfg, job.files, os.getpid())) as pool:
                    for count in as_completed([pool.submit(_write_shard, i) for i in mine]):
                        bar.update(count.result())
            else:
                for i in mine:
                    bar.update(self.write_shard(i))
        job.timings["generate"] = time.perf_counter() - t0
        job.timings["generated_samples"] = float(total)

    def finish(self) -> DatasetManifest:
        """Rank 0: measure the round trip on the stored values, derive the MI interval, final manifest."""
        import zarr

        job = self.job
        t0 = time.perf_counter()
        g = zarr.open_group(self.out, mode="r+")
        k = min(self.cfg.n_check, self.cfg.n)
        rts = job.roundtrips({m.name: np.asarray(zs.array(g, layout.image(m.name))[:k]) for m in job.mods})
        intervals = job.mi_intervals(rts)
        job.timings["roundtrip"] = time.perf_counter() - t0
        entropies = []
        if self.cfg.entropy_samples > 0:
            t1 = time.perf_counter()
            entropies = job.image_entropies_estimate()
            job.timings["entropy"] = time.perf_counter() - t1
        done = zs.shards_done(g)
        has_digests = layout.DIGESTS in g
        content = zs.content_sha256(g) if has_digests and done.all() else None
        certs = {m.name: job.sample_certification(m, np.asarray(zs.array(g, layout.cert(m.name))[:]))
                 for m in job.cert_mods}
        man = job.manifest(done, intervals, rts, entropies, digests=has_digests, content_sha256=content,
                           sample_certs=certs).sealed()
        zs.write_manifest(self.out, man, g)
        return man

    def run(self) -> DatasetManifest | None:
        threads = torch.get_num_threads()
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    def _run(self) -> DatasetManifest | None:
        t0 = time.perf_counter()
        numerics(self.cfg)
        error = None
        if self.rank == 0:
            try:
                self.prepare()
            except Exception as e:  # every rank must hear about it, not wait at a barrier forever
                error = e
        error = D.broadcast(error)
        if error is not None:
            raise error
        self.work()
        D.barrier()
        if self.rank != 0:
            return None
        self.job.timings["total"] = time.perf_counter() - t0
        return self.finish()


def numerics(cfg: GenerateConfig) -> None:
    """Settings that are part of the arithmetic: CPU intra-op threads change reduction orders."""
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


_WORKER: StoreWriter | None = None


def _exit_with_parent(parent: int, interval: float = 1.0) -> threading.Thread:
    """Leave when the process ``parent`` is gone. A parent killed by a signal runs no pool shutdown, and its
    workers would go on computing shards nobody collects (on the cores a resumed run needs); a shard they leave
    half-written is not marked done, so the resume redoes it."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    t = threading.Thread(target=watch, daemon=True, name="exit-with-parent")
    t.start()
    return t


def _init_worker(spec, out, cfg, files, parent: int) -> None:
    global _WORKER
    _exit_with_parent(parent)
    numerics(cfg)
    _WORKER = StoreWriter(GenerationJob(spec, cfg, files=files), out)


def _write_shard(i: int) -> int:
    if _WORKER is None:  # pragma: no cover - the pool initializer always runs first
        raise RuntimeError("worker process used before its initializer ran")
    return _WORKER.write_shard(i)


def write_store(spec, out, cfg: GenerateConfig, base_dir=".") -> DatasetManifest | None:
    """Generate one explicit spec into the store ``out`` (every rank calls this under torchrun)."""
    return StoreWriter(GenerationJob(spec, cfg, base_dir), str(out)).run()
