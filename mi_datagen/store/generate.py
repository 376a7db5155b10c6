"""``generate``: spec → latents → (standardise) → certified flows → a sharded zarr store + manifest.

Determinism: sample i depends only on (seed, i). Latents come from counter-based RNG blocks
(``sampling``), standardisation and PMI are per-row reductions, and the velocity net always runs
on tiles of ``tile`` samples aligned to the global index (``flows.ode.Tiled``). Shards are the
unit of work and of completion, so any batch size, any number of ranks and any interruption
followed by ``resume`` give the same array bytes.
"""

from __future__ import annotations

import datetime as dt
import itertools
from concurrent.futures import ProcessPoolExecutor, as_completed
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mi_datagen import __version__
from mi_datagen.api import solver_for, table_for
from mi_datagen.errors import ConfigError, StructureError
from mi_datagen.flows.certify import certify, require_certified
from mi_datagen.flows.entropy import entropy_estimate, per_sample_logdets
from mi_datagen.flows.ode import flow_map
from mi_datagen.info.robustness import perturbed_mi
from mi_datagen.info.solver import InfoSolver
from mi_datagen.sampling import sample_latents
from mi_datagen.spec.models import GraphSpec
from mi_datagen.store import distributed as D
from mi_datagen.store import zarr_store as zs
from mi_datagen.store.manifest import (CertificateRecord, DatasetManifest, FlowRecord, ImageEntropyRecord,
                                       MIIntervalRecord, ModalityRecord, PMIRecord, information_manifest)
from mi_datagen.store.modality import cert_record, modalities, roundtrip_record

DTYPES = ("float32", "float16")


@dataclass(frozen=True)
class GenerateConfig:
    n: int
    seed: int = 0
    dtype: str = "float32"
    batch_size: int = 64
    tile: int = 32  # 32-sample tiles ran ~10 % faster than 8 on this CPU (1-thread A/B, issue #3 note)
    shard_size: int = 1024
    chunk_size: int = 16
    latents: bool = False
    pmi: bool = True
    device: str = "cpu"
    threads: int = 1
    workers: int = 1
    n_check: int = 8
    entropy_samples: int = 0  # > 0: estimate h(X_i), h(X_i, X_j) from flow log-dets on this many samples
    entropy_terms: int = 10
    entropy_probes: int = 4
    lipschitz: bool = False
    force: bool = False
    resume: bool = False
    overwrite: bool = False
    progress: bool = True
    command: str | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.n >= 1, f"n must be >= 1, got {self.n}"),
            (self.seed >= 0, f"seed must be >= 0, got {self.seed}"),
            (self.dtype in DTYPES, f"dtype must be one of {DTYPES}, got {self.dtype!r}"),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.tile >= 1, f"tile must be >= 1, got {self.tile}"),
            (self.chunk_size >= 1 and self.shard_size % self.chunk_size == 0,
             f"shard_size ({self.shard_size}) must be a positive multiple of chunk_size ({self.chunk_size})"),
            (self.shard_size % self.tile == 0,
             f"shard_size ({self.shard_size}) must be a multiple of tile ({self.tile}) so tiles align to sample indices"),
            (self.threads >= 1, f"threads must be >= 1, got {self.threads}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (self.n_check >= 1, f"n_check must be >= 1, got {self.n_check}"),
            (self.entropy_samples == 0 or self.entropy_samples >= 2,
             f"entropy_samples must be 0 (off) or >= 2, got {self.entropy_samples}"),
            (not (self.resume and self.overwrite), "resume and overwrite exclude each other; pick one"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)

    @property
    def flow_batch(self) -> int:
        """Samples per solver call: the batch size rounded up to whole tiles (bytes never depend on it)."""
        return -(-self.batch_size // self.tile) * self.tile


def _pmi_pairs(table) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(r.a, r.b) for r in table.mutual_information if not r.given]


def _pmi_name(a, b) -> str:
    return f"{'+'.join(a)}__{'+'.join(b)}"


class Generator:
    """One generation job (on every rank). ``run()`` returns the final manifest on rank 0."""

    def __init__(self, spec: GraphSpec, out: str, cfg: GenerateConfig, base_dir: str | Path = "."):
        self.spec, self.out, self.cfg, self.base_dir = spec, str(out), cfg, Path(base_dir)
        self.rank, self.world = D.rank_world()
        self.device = D.local_device(cfg.device)
        self.solver: InfoSolver = solver_for(spec, base_dir)
        if self.solver.structured is None:
            raise StructureError(f"generate samples latents from the structured model, which does not apply to "
                                 f"{spec.name!r}: {self.solver.structure_note}")
        self.model = self.solver.structured
        self.shape = tuple(spec.shape)
        self.mods = modalities(spec, self.model, self.base_dir, cfg.tile, self.device)
        self.table = table_for(spec, base_dir)
        self.pairs = _pmi_pairs(self.table) if cfg.pmi else []
        self.n_shards = -(-cfg.n // cfg.shard_size)
        self.timings: dict[str, float] = {}
        self._group = None
        self._checked: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._w_check: dict[str, np.ndarray] | None = None
        self.certs: dict[str, CertificateRecord] = {}

    # --- pieces ---------------------------------------------------------------------------
    def check_inputs(self) -> dict[str, np.ndarray]:
        """Flow inputs of the first n_check samples (certification and round trip), computed once per job."""
        if self._w_check is None:
            lat = sample_latents(self.model, self.cfg.seed, 0, min(self.cfg.n_check, self.cfg.n),
                                 self.spec.modality_names)
            self._w_check = {m.name: m.inputs(lat[m.name]) for m in self.mods}
        return self._w_check

    def _certify(self, w: dict[str, np.ndarray]) -> None:
        t0 = time.perf_counter()
        for m in self.mods:
            if m.flow is None:
                continue
            zt = torch.from_numpy(w[m.name].astype(np.float32).reshape(-1, *self.shape)).to(self.device)
            label = m.flow.label_index(m.label)
            cert, back = certify(m.net, zt, label, m.flow.solver, lipschitz=self.cfg.lipschitz)
            require_certified(cert, self.cfg.force)
            x = flow_map(m.net, zt, label, m.flow.solver).cpu().numpy()  # what generation must store for these
            self._checked[m.name] = (x, back.cpu().double().numpy().reshape(x.shape[0], -1))
            self.certs[m.name] = cert_record(cert, self.cfg.force, self.cfg.lipschitz)
        self.timings["certify"] = time.perf_counter() - t0

    def image_entropies_estimate(self) -> list[ImageEntropyRecord]:
        """h(X_i) and h(X_i, X_j) from the exact latent entropies and per-sample flow log-dets (rank 0)."""
        cfg = self.cfg
        k = min(cfg.entropy_samples, cfg.n)
        lat = sample_latents(self.model, cfg.seed, 0, k, self.spec.modality_names)
        logdets, std_ld = {}, {}
        for m in self.mods:
            if m.flow is None:
                logdets[m.name] = np.zeros(k)
            else:
                w = torch.from_numpy(m.inputs(lat[m.name]).astype(np.float32).reshape(-1, *self.shape)).to(self.device)
                logdets[m.name] = per_sample_logdets(m.net, w, m.flow.label_index(m.label), m.flow.solver,
                                                     terms=cfg.entropy_terms, probes=cfg.entropy_probes, seed=cfg.seed)
            std_ld[m.name] = -0.5 * self.solver.logdet([m.name]) if m.whitener is not None else 0.0
        names = [m.name for m in self.mods]
        sets = [(n,) for n in names] + [tuple(p) for p in itertools.combinations(names, 2)]
        out = []
        for s in sets:
            h_lat, ld = self.solver.entropy(list(s)), sum(std_ld[x] for x in s)
            nats, se = entropy_estimate(h_lat, ld, [logdets[x] for x in s])
            out.append(ImageEntropyRecord(nodes=list(s), nats=nats, stderr=se, latent_nats=h_lat, standardise_logdet=ld,
                                          flow_logdet_mean=nats - h_lat - ld, n_samples=k, terms=cfg.entropy_terms,
                                          probes=cfg.entropy_probes))
        return out

    def _manifest(self, done: np.ndarray, intervals=(), roundtrips=None, entropies=()) -> DatasetManifest:
        cfg, roundtrips = self.cfg, roundtrips or {}
        mods = []
        for m in self.mods:
            fr = None
            if m.flow is not None:
                li = m.flow.label_index(m.label)
                fr = FlowRecord(checkpoint=m.ref, file=m.flow.path.name, sha256=m.flow.sha256,
                                step=m.flow.meta.get("step"), label=m.label, class_index=li,
                                class_name=m.flow.classes[li])
            mods.append(ModalityRecord(
                name=m.name, array=f"x/{m.name}", shape=list(self.shape), standardize=m.whitener is not None, flow=fr,
                solver=m.flow.solver.to_dict() if m.flow else None, certificate=self.certs.get(m.name),
                roundtrip=roundtrips.get(m.name)))
        return DatasetManifest(
            package_version=__version__, created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            command=cfg.command, n=cfg.n, seed=cfg.seed, dtype=cfg.dtype, shard_size=cfg.shard_size,
            chunk_size=cfg.chunk_size, tile=cfg.tile, cpu_threads=cfg.threads, device=self.device, world_size=self.world,
            theta_array="theta", latent_arrays={m.name: f"z/{m.name}" for m in self.mods} if cfg.latents else {},
            modalities=mods, pmi=[PMIRecord(a=list(a), b=list(b), array=f"pmi/{_pmi_name(a, b)}") for a, b in self.pairs],
            info=information_manifest(self.spec, self.table), mi_intervals=list(intervals),
            image_entropies=list(entropies), forced=any(c.forced for c in self.certs.values()),
            complete=bool(done.all()),
            shards_complete=[bool(x) for x in done], timings_s=dict(self.timings))

    def generation_key(self) -> dict:
        """What ``--resume`` compares (the manifest's ``generation_key`` of this job)."""
        return self._manifest(np.zeros(self.n_shards, dtype=bool)).generation_key()

    def _prepare(self) -> None:
        """Rank 0: certify, then create the store (or check that ``resume`` continues the same job)."""
        w = self.check_inputs()
        self._certify(w)
        fresh = self._manifest(np.zeros(self.n_shards, dtype=bool))
        overwrite = self.cfg.overwrite
        if zs.exists(self.out) and not overwrite:
            if not self.cfg.resume:
                raise zs.StoreError(f"{self.out} exists; pass --resume to finish it or --overwrite to replace it")
            if not zs.has_manifest(self.out):
                if not zs.is_zarr(self.out):
                    raise zs.StoreError(f"{self.out} exists and is not a mi-datagen store; choose another --out")
                overwrite = True  # killed while being created: no shard can be marked done yet
        if zs.exists(self.out) and not overwrite:
            old = zs.read_manifest(self.out)
            diff = [k for k, v in fresh.generation_key().items() if old.generation_key()[k] != v]
            if diff:
                raise zs.StoreError(f"{self.out} was generated with different settings ({', '.join(diff)}); "
                                    "--resume continues only the same job (use --overwrite to replace it)")
            return
        g = zs.create_arrays(self.out, n=self.cfg.n, shape=self.shape, modalities=[m.name for m in self.mods],
                             dtype=self.cfg.dtype, shard_size=self.cfg.shard_size, chunk_size=self.cfg.chunk_size,
                             latents=[m.name for m in self.mods] if self.cfg.latents else [],
                             pmi_names=[_pmi_name(a, b) for a, b in self.pairs], overwrite=overwrite)
        zs.write_manifest(self.out, fresh, g)

    def compute_shard(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Every array's rows [lo, hi) of one shard."""
        names = [self.spec.target, *self.spec.modality_names]
        lat = sample_latents(self.model, self.cfg.seed, lo, hi, names)
        out = {"theta": lat[self.spec.target]}
        for m in self.mods:
            out[f"x/{m.name}"] = m.apply(m.inputs(lat[m.name]), self.cfg, self.device, self.shape).astype(self.cfg.dtype)
            if self.cfg.latents:
                out[f"z/{m.name}"] = lat[m.name].reshape(-1, *self.shape)
        for a, b in self.pairs:
            out[f"pmi/{_pmi_name(a, b)}"] = self.solver.pmi(a, b, lat)
        return out

    def write_shard(self, i: int) -> int:
        """Compute and write shard i, then mark it done (only after every array of it is written)."""
        import zarr

        if self._group is None:
            self._group = zarr.open_group(self.out, mode="r+")
        lo, hi = zs.shard_range(i, self.cfg.n, self.cfg.shard_size)
        for key, arr in self.compute_shard(lo, hi).items():
            self._group[key][lo:hi] = arr
        self._group["done"][i] = 1
        return hi - lo

    def _work(self) -> None:
        import zarr

        done = zs.shards_done(zarr.open_group(self.out, mode="r"))
        mine = [i for i in range(self.n_shards) if i % self.world == self.rank and not done[i]]
        total = sum(hi - lo for lo, hi in (zs.shard_range(i, self.cfg.n, self.cfg.shard_size) for i in mine))
        t0 = time.perf_counter()
        with tqdm(total=int(total), unit="sample", desc=f"generate[{self.rank}]", disable=not self.cfg.progress,
                  mininterval=2) as bar:
            k = min(self.cfg.workers, len(mine))
            if k > 1:  # local worker processes, one shard per task; bytes do not depend on who does which
                ctx = torch.multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(k, mp_context=ctx, initializer=_init_worker,
                                         initargs=(self.spec, self.out, self.cfg, self.base_dir)) as pool:
                    for count in as_completed([pool.submit(_write_shard, i) for i in mine]):
                        bar.update(count.result())
            else:
                for i in mine:
                    bar.update(self.write_shard(i))
        self.timings["generate"] = time.perf_counter() - t0
        self.timings["generated_samples"] = float(total)

    def _finish(self) -> DatasetManifest:
        """Rank 0: measure the round trip on the stored values, derive the MI interval, final manifest."""
        import zarr

        t0 = time.perf_counter()
        g = zarr.open_group(self.out, mode="r+")
        k = min(self.cfg.n_check, self.cfg.n)
        w = self.check_inputs()
        rts, deltas = {}, {}
        for m in self.mods:
            stored = np.asarray(g[f"x/{m.name}"][:k])
            x, back = self._checked.get(m.name, (None, None))
            if x is not None and stored.dtype == x.dtype and np.array_equal(stored, x):
                # float32 bytes identical to the certified forward solve: its exact inverse is this round trip
                src = "exact inverse of the stored float32 values (bytes equal to the certified forward solve)"
            else:
                back, src = m.invert(stored, self.device), f"exact inverse of the stored {self.cfg.dtype} values"
            rts[m.name] = roundtrip_record(w[m.name], back, src)
            deltas[m.name] = rts[m.name].abs_rms_max
        rows = [(r.a, r.b, r.given, r.nats) for r in self.table.mutual_information]
        perturbed = perturbed_mi(self.solver.sem, rows, deltas, {m.name: m.whitener is not None for m in self.mods})
        intervals = [MIIntervalRecord(a=list(a), b=list(b), given=list(c), nats=nats, nats_perturbed=p,
                                      low=None if p is None else min(nats, p), high=None if p is None else max(nats, p))
                     for (a, b, c, nats), p in zip(rows, perturbed)]
        self.timings["roundtrip"] = time.perf_counter() - t0
        entropies = []
        if self.cfg.entropy_samples > 0:
            t1 = time.perf_counter()
            entropies = self.image_entropies_estimate()
            self.timings["entropy"] = time.perf_counter() - t1
        man = self._manifest(zs.shards_done(g), intervals, rts, entropies)
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
        _numerics(self.cfg)
        error = None
        if self.rank == 0:
            try:
                self._prepare()
            except Exception as e:  # every rank must hear about it, not wait at a barrier forever
                error = e
        error = D.broadcast(error)
        if error is not None:
            raise error
        self._work()
        D.barrier()
        if self.rank != 0:
            return None
        self.timings["total"] = time.perf_counter() - t0
        return self._finish()


def _numerics(cfg: GenerateConfig) -> None:
    """Settings that are part of the arithmetic: CPU intra-op threads change reduction orders."""
    torch.set_num_threads(cfg.threads)
    if cfg.device.startswith("cuda"):
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False


_WORKER: Generator | None = None


def _init_worker(spec, out, cfg, base_dir) -> None:
    global _WORKER
    _numerics(cfg)
    _WORKER = Generator(spec, out, cfg, base_dir)


def _write_shard(i: int) -> int:
    return _WORKER.write_shard(i)


def generate(spec: GraphSpec, out: str | Path, cfg: GenerateConfig, base_dir: str | Path = ".") -> DatasetManifest | None:
    return Generator(spec, str(out), cfg, base_dir).run()

