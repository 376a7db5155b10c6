"""``GenerationJob``: everything the stored bytes depend on — one compiled SEM, one information solver,
the table, the modalities (standardisation, flow, certified applied map) and the settings that are part
of the arithmetic. It computes shards, certifies, builds the manifest, and can be rebuilt from an
existing store (``GenerationJob.from_store``) for checks made after the fact.

Determinism: sample i depends only on (seed, i). Latents come from counter-based RNG blocks
(``sampling``), standardisation and PMI are per-row reductions, and the velocity net always runs
on tiles of ``tile`` samples aligned to the global index (``flows.ode.Tiled``).
"""

from __future__ import annotations

import datetime as dt
import itertools
import time
from pathlib import Path

import numpy as np
import torch

from mi_datagen import __version__
from mi_datagen.api import solver_for, table_for
from mi_datagen.errors import StoreError, StructureError
from mi_datagen.flows.certify import certify, require_certified
from mi_datagen.flows.entropy import entropy_estimate, per_sample_logdets
from mi_datagen.flows.ode import flow_map
from mi_datagen.info.robustness import perturbed_mi
from mi_datagen.info.solver import InfoSolver
from mi_datagen.sampling import sample_latents
from mi_datagen.spec.models import GraphSpec
from mi_datagen.store import distributed as D
from mi_datagen.store import layout
from mi_datagen.store.config import GenerateConfig
from mi_datagen.store.manifest import (
    CertificateRecord,
    DatasetManifest,
    FlowRecord,
    ImageEntropyRecord,
    MIIntervalRecord,
    ModalityRecord,
    PMIRecord,
    RoundTripRecord,
    information_manifest,
)
from mi_datagen.store.modality import cert_record, modalities, roundtrip_record

__all__ = ["GenerationJob"]


def _pmi_pairs(table) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(r.a, r.b) for r in table.mutual_information if not r.given]


class GenerationJob:
    """One generation job; the same object on every rank and in every worker process."""

    def __init__(self, spec: GraphSpec, cfg: GenerateConfig, base_dir: str | Path = "."):
        self.spec, self.cfg, self.base_dir = spec, cfg, Path(base_dir)
        self.world = D.rank_world()[1]
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

    def certify(self) -> None:
        """Certify every map on the first n_check samples (refused unless ``force``) and keep their images."""
        w = self.check_inputs()
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

    def manifest(self, done: np.ndarray, intervals=(), roundtrips=None, entropies=()) -> DatasetManifest:
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
                name=m.name, array=layout.image(m.name), shape=list(self.shape), standardize=m.whitener is not None, flow=fr,
                solver=m.flow.solver.to_dict() if m.flow else None, certificate=self.certs.get(m.name),
                roundtrip=roundtrips.get(m.name)))
        return DatasetManifest(
            package_version=__version__, created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            command=cfg.command, n=cfg.n, seed=cfg.seed, dtype=cfg.dtype, shard_size=cfg.shard_size,
            chunk_size=cfg.chunk_size, tile=cfg.tile, cpu_threads=cfg.threads, device=self.device, world_size=self.world,
            theta_array=layout.THETA, latent_arrays={m.name: layout.latent(m.name) for m in self.mods} if cfg.latents else {},
            modalities=mods, pmi=[PMIRecord(a=list(a), b=list(b), array=layout.pmi(a, b)) for a, b in self.pairs],
            info=information_manifest(self.spec, self.table), mi_intervals=list(intervals),
            image_entropies=list(entropies), forced=any(c.forced for c in self.certs.values()),
            complete=bool(done.all()),
            shards_complete=[bool(x) for x in done], timings_s=dict(self.timings))

    def generation_key(self) -> dict:
        """What ``--resume`` compares (the manifest's ``generation_key`` of this job)."""
        return self.manifest(np.zeros(self.n_shards, dtype=bool)).generation_key()

    def compute_shard(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Every array's rows [lo, hi) of one shard."""
        names = [self.spec.target, *self.spec.modality_names]
        lat = sample_latents(self.model, self.cfg.seed, lo, hi, names)
        out = {layout.THETA: lat[self.spec.target]}
        for m in self.mods:
            out[layout.image(m.name)] = m.apply(m.inputs(lat[m.name]), self.cfg, self.device, self.shape).astype(self.cfg.dtype)
            if self.cfg.latents:
                out[layout.latent(m.name)] = lat[m.name].reshape(-1, *self.shape)
        for a, b in self.pairs:
            out[layout.pmi(a, b)] = self.solver.pmi(a, b, lat)
        return out

    def roundtrips(self, stored: dict[str, np.ndarray]) -> dict[str, RoundTripRecord]:
        """Exact inverse of the stored first n_check images of each modality vs their flow inputs."""
        w = self.check_inputs()
        rts = {}
        for m in self.mods:
            x, back = self._checked.get(m.name, (None, None))
            if x is not None and stored[m.name].dtype == x.dtype and np.array_equal(stored[m.name], x):
                # float32 bytes identical to the certified forward solve: its exact inverse is this round trip
                src = "exact inverse of the stored float32 values (bytes equal to the certified forward solve)"
            else:
                back, src = m.invert(stored[m.name], self.device), f"exact inverse of the stored {self.cfg.dtype} values"
            rts[m.name] = roundtrip_record(w[m.name], back, src)
        return rts

    def mi_intervals(self, rts: dict[str, RoundTripRecord]) -> list[MIIntervalRecord]:
        """Each MI of the table next to its value after input noise of the measured round-trip size."""
        deltas = {name: r.abs_rms_max for name, r in rts.items()}
        rows = [(r.a, r.b, r.given, r.nats) for r in self.table.mutual_information]
        perturbed = perturbed_mi(self.solver.sem, rows, deltas, {m.name: m.whitener is not None for m in self.mods})
        return [MIIntervalRecord(a=list(a), b=list(b), given=list(c), nats=nats, nats_perturbed=p,
                                 low=None if p is None else min(nats, p), high=None if p is None else max(nats, p))
                for (a, b, c, nats), p in zip(rows, perturbed)]

    @classmethod
    def from_store(cls, store, base_dir: str | Path = ".", device: str = "cpu", n_check: int = 8,
                   entropy_samples: int = 0) -> GenerationJob:
        """The job that wrote ``store`` (a ``Store``), for checks after the fact. ``base_dir``: where relative
        flow paths of the store's spec resolve. The flows must be the very files the store was written with."""
        man = store.manifest
        spec = GraphSpec.model_validate(man.info.spec)
        cfg = GenerateConfig(n=man.n, seed=man.seed, dtype=man.dtype, tile=man.tile, shard_size=man.shard_size,
                             chunk_size=man.chunk_size, threads=man.cpu_threads, latents=bool(man.latent_arrays),
                             pmi=bool(man.pmi), device=device, n_check=n_check, entropy_samples=entropy_samples,
                             progress=False)
        job = cls(spec, cfg, base_dir)
        recorded = {m.name: m.flow for m in man.modalities}
        for m in job.mods:
            rec = recorded.get(m.name)
            if m.flow is None or rec is None:
                continue
            if m.flow.sha256 != rec.sha256:
                raise StoreError(f"{store.path}: modality {m.name} was written with flow {rec.file} (sha256 "
                                 f"{rec.sha256[:12]}…), but {m.ref!r} now resolves to {m.flow.path.name} (sha256 "
                                 f"{m.flow.sha256[:12]}…); pass the base folder the store's spec was generated "
                                 "from, or restore that flow file")
        return job
