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
import hashlib
import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mi_datagen import __version__
from mi_datagen.api import solver_for, table_for
from mi_datagen.errors import StoreError, StructureError
from mi_datagen.flows.certify import certify, certify_samples, require_certified
from mi_datagen.flows.entropy import entropy_estimate, per_sample_logdets
from mi_datagen.flows.grid import tightest_steps
from mi_datagen.flows.io import registry
from mi_datagen.flows.ode import flow_map
from mi_datagen.info.robustness import perturbed_mi
from mi_datagen.info.solver import InfoSolver
from mi_datagen.sampling import sample_latents
from mi_datagen.spec.models import GraphSpec
from mi_datagen.spec.templates import file_templates, read_template_file, template_file_path
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
    SampleCertificationRecord,
    TemplateFileRecord,
    information_manifest,
    values_sha256,
)
from mi_datagen.store.modality import cert_record, modalities, roundtrip_record

__all__ = ["GenerationJob", "JobFiles"]


def selected(seed: int, index: np.ndarray, fraction: float) -> np.ndarray:
    """Whether each sample index is certified: a splitmix64 hash of (seed, index) below ``fraction`` — the same
    samples whatever the batches, workers or ranks."""
    if fraction <= 0.0:
        return np.zeros(index.shape, dtype=bool)
    with np.errstate(over="ignore"):
        z = index.astype(np.uint64) + np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0xC3A5C85C97CB3127)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / 2.0 ** 53 < fraction


def failure_bound(failures: int, n: int, level: float = 0.95) -> float | None:
    """One-sided upper confidence bound on a failure rate (exact, Clopper–Pearson); ≈ 3/n for 0 in n."""
    if n == 0:
        return None
    if failures >= n:
        return 1.0
    from scipy.stats import beta

    return float(beta.ppf(level, failures + 1, n - failures))


def _pmi_pairs(table) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    return [(r.a, r.b) for r in table.mutual_information if not r.given]


class GenerationJob:
    """One generation job; the same object on every rank and in every worker process."""

    def __init__(self, spec: GraphSpec, cfg: GenerateConfig, base_dir: str | Path = ".",
                 files: JobFiles | None = None):
        """``base_dir``: where the spec's relative file paths resolve; ``files``: the files already resolved
        (a store's own template copies and flow paths, or those handed to worker processes)."""
        self.spec, self.cfg = spec, cfg
        self.files = files if files is not None else JobFiles.read(spec, base_dir)
        self.world = D.rank_world()[1]
        self.device = D.local_device(cfg.device)
        self.solver: InfoSolver = solver_for(spec, files=self.files.templates)
        if self.solver.structured is None:
            raise StructureError(f"generate samples latents from the structured model, which does not apply to "
                                 f"{spec.name!r}: {self.solver.structure_note}")
        self.model = self.solver.structured
        self.shape = tuple(spec.shape)
        self.mods = modalities(spec, self.model, base_dir, cfg.tile, self.device, self.files.flows)
        self.files = self.files.with_flows({m.map.ref: str(m.map.flow.path.resolve()) for m in self.mods
                                            if m.map is not None and m.map.ref not in registry()})
        self.table = table_for(spec, solver=self.solver)
        self.pairs = _pmi_pairs(self.table) if cfg.pmi else []
        # every data array, in the order of the digests' second axis
        self.cert_mods = [m for m in self.mods if m.map is not None] if cfg.certify_fraction > 0 else []
        self.data_arrays = [layout.THETA, *(layout.image(m.name) for m in self.mods),
                            *((layout.latent(m.name) for m in self.mods) if cfg.latents else ()),
                            *(layout.pmi(a, b) for a, b in self.pairs),
                            *(layout.cert(m.name) for m in self.cert_mods)]
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
            fm = m.map
            if fm is None:
                continue
            zt = torch.from_numpy(w[m.name].astype(np.float32).reshape(-1, *self.shape)).to(self.device)
            cert, back = certify(fm.net, zt, fm.index, fm.solver, lipschitz=self.cfg.lipschitz)
            require_certified(cert, self.cfg.force)
            x = flow_map(fm.net, zt, fm.index, fm.solver).cpu().numpy()  # what generation must store for these
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
            fm = m.map
            if fm is None:
                logdets[m.name] = np.zeros(k)
            else:
                w = torch.from_numpy(m.inputs(lat[m.name]).astype(np.float32).reshape(-1, *self.shape)).to(self.device)
                logdets[m.name] = per_sample_logdets(fm.net, w, fm.index, fm.solver,
                                                     terms=cfg.entropy_terms, probes=cfg.entropy_probes, seed=cfg.seed)
            std_ld[m.name] = -0.5 * self.solver.logdet([m.name]) if m.standardizer is not None else 0.0
        names = [m.name for m in self.mods]
        sets = [(n,) for n in names] + [tuple(p) for p in itertools.combinations(names, 2)]
        out = []
        for s in sets:
            h_lat, ld = self.solver.entropy(list(s)), sum(std_ld[x] for x in s)
            nats, se = entropy_estimate(h_lat, ld, [logdets[x] for x in s])
            out.append(ImageEntropyRecord(nodes=list(s), nats=nats, stderr=se, latent_nats=h_lat, standardize_logdet=ld,
                                          flow_logdet_mean=nats - h_lat - ld, n_samples=k, terms=cfg.entropy_terms,
                                          probes=cfg.entropy_probes))
        return out

    def manifest(self, done: np.ndarray, intervals=(), roundtrips=None, entropies=(), digests: bool = True,
                 content_sha256: str | None = None, sample_certs: dict | None = None) -> DatasetManifest:
        cfg, roundtrips = self.cfg, roundtrips or {}
        sample_certs = sample_certs or {m.name: self.sample_certification(m) for m in self.cert_mods}
        mods = []
        for m in self.mods:
            fr = None
            fm = m.map
            if fm is not None:
                fr = FlowRecord(checkpoint=fm.ref, file=fm.flow.path.name, sha256=fm.flow.sha256,
                                path=str(fm.flow.path.resolve()), step=fm.flow.meta.get("step"), label=fm.label,
                                class_index=fm.index, class_name=fm.flow.classes[fm.index])
            mods.append(ModalityRecord(
                name=m.name, array=layout.image(m.name), shape=list(self.shape), standardize=m.standardizer is not None, flow=fr,
                solver=fm.solver.to_dict() if fm else None, certificate=self.certs.get(m.name),
                roundtrip=roundtrips.get(m.name), sample_certification=sample_certs.get(m.name)))
        return DatasetManifest(
            package_version=__version__, created_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            command=cfg.command, n=cfg.n, seed=cfg.seed, dtype=cfg.dtype, shard_size=cfg.shard_size,
            chunk_size=cfg.chunk_size, tile=cfg.tile, cpu_threads=cfg.threads, device=self.device, world_size=self.world,
            theta_array=layout.THETA, latent_arrays={m.name: layout.latent(m.name) for m in self.mods} if cfg.latents else {},
            modalities=mods, pmi=[PMIRecord(a=list(a), b=list(b), array=layout.pmi(a, b)) for a, b in self.pairs],
            template_files=list(self.files.records),
            info=information_manifest(self.spec, self.table), mi_intervals=list(intervals),
            image_entropies=list(entropies), forced=any(c.forced for c in self.certs.values()),
            complete=bool(done.all()),
            shards_complete=[bool(x) for x in done], timings_s=dict(self.timings),
            digest_arrays=list(self.data_arrays) if digests else [], content_sha256=content_sha256)

    def generation_key(self) -> dict:
        """What ``--resume`` compares (the manifest's ``generation_key`` of this job)."""
        return self.manifest(np.zeros(self.n_shards, dtype=bool)).generation_key()

    def cert_steps(self, m) -> list[int]:
        """The steps certified per sample: the ``certify_steps`` tightest of the grid (flows.grid.tightest_steps)."""
        return tightest_steps(m.map.solver, m.map.flow.meta.get("grid_design"), self.cfg.certify_steps)

    def compute_shard(self, lo: int, hi: int) -> dict[str, np.ndarray]:
        """Every array's rows [lo, hi) of one shard."""
        names = [self.spec.target, *self.spec.modality_names]
        lat = sample_latents(self.model, self.cfg.seed, lo, hi, names)
        out = {layout.THETA: lat[self.spec.target]}
        keep = np.flatnonzero(selected(self.cfg.seed, np.arange(lo, hi), self.cfg.certify_fraction))
        for m in self.mods:
            if m in self.cert_mods:
                x, states = m.apply(m.inputs(lat[m.name]), self.cfg, self.device, self.shape, keep, self.cert_steps(m))
                out[layout.cert(m.name)] = self.certify_rows(m, hi - lo, keep, states)
            else:
                x = m.apply(m.inputs(lat[m.name]), self.cfg, self.device, self.shape)
            out[layout.image(m.name)] = x.astype(self.cfg.dtype)
            if self.cfg.latents:
                out[layout.latent(m.name)] = lat[m.name].reshape(-1, *self.shape)
        for a, b in self.pairs:
            out[layout.pmi(a, b)] = self.solver.pmi(a, b, lat)
        return out

    def certify_rows(self, m, rows: int, keep: np.ndarray, states: dict) -> np.ndarray:
        """The per-sample certificate values of one shard (NaN where not selected)."""
        out = np.full(rows, np.nan, dtype=np.float32)
        if keep.size:
            fm = m.map
            worst = torch.zeros(keep.size, dtype=torch.float64)
            for n, (before, after) in states.items():
                v = certify_samples(fm.net, before, after, fm.index, fm.solver, n, lipschitz=self.cfg.lipschitz)
                worst = torch.maximum(worst, v)
            out[keep] = worst.numpy().astype(np.float32)
        return out

    def sample_certification(self, m, values: np.ndarray | None = None) -> SampleCertificationRecord:
        """The manifest record of one modality's per-sample certificates (``values``: the whole cert array)."""
        rec = SampleCertificationRecord(array=layout.cert(m.name), fraction=self.cfg.certify_fraction,
                                        steps=self.cert_steps(m), lipschitz=self.cfg.lipschitz)
        if values is None:
            return rec
        checked = ~np.isnan(values)
        failed = np.flatnonzero(checked & (values >= 1.0))
        n = int(checked.sum())
        return rec.model_copy(update=dict(
            n_checked=n, n_failed=int(failed.size), failed_indices=failed[:1000].tolist(),
            worst=float(values[checked].max()) if n else None,
            failure_rate_bound_95=failure_bound(int(failed.size), n)))

    def roundtrips(self, stored: dict[str, np.ndarray]) -> dict[str, RoundTripRecord]:
        """Exact inverse of the stored first n_check images of each modality vs their flow inputs."""
        w = self.check_inputs()
        rts = {}
        for m in self.mods:
            checked = self._checked.get(m.name)
            if checked is not None and stored[m.name].dtype == checked[0].dtype and np.array_equal(stored[m.name], checked[0]):
                # float32 bytes identical to the certified forward solve: its exact inverse is this round trip
                back, src = checked[1], "exact inverse of the stored float32 values (bytes equal to the certified forward solve)"
            else:
                back, src = m.invert(stored[m.name], self.device), f"exact inverse of the stored {self.cfg.dtype} values"
            rts[m.name] = roundtrip_record(w[m.name], back, src)
        return rts

    def mi_intervals(self, rts: dict[str, RoundTripRecord]) -> list[MIIntervalRecord]:
        """Each MI of the table next to its value after input noise of the measured round-trip size."""
        deltas = {name: r.abs_rms_max for name, r in rts.items()}
        rows = [(r.a, r.b, r.given, r.nats) for r in self.table.mutual_information]
        perturbed = perturbed_mi(self.solver.sem, rows, deltas, {m.name: m.standardizer is not None for m in self.mods})
        return [MIIntervalRecord(a=list(a), b=list(b), given=list(c), nats=nats, nats_perturbed=p,
                                 low=None if p is None or nats is None else min(nats, p),
                                 high=None if p is None or nats is None else max(nats, p))
                for (a, b, c, nats), p in zip(rows, perturbed)]

    @classmethod
    def from_store(cls, store, device: str = "cpu", n_check: int = 8, entropy_samples: int = 0,
                   entropy_terms: int = GenerateConfig.entropy_terms,
                   entropy_probes: int = GenerateConfig.entropy_probes) -> GenerationJob:
        """The job that wrote ``store`` (a ``Store``), for checks after the fact. Needs no spec folder: file
        templates come from the store, flows from the registry or the file recorded in the manifest (the very
        file, by sha256)."""
        man = store.manifest
        spec = GraphSpec.model_validate(man.info.spec)
        cfg = GenerateConfig(n=man.n, seed=man.seed, dtype=man.dtype, tile=man.tile, shard_size=man.shard_size,
                             chunk_size=man.chunk_size, threads=man.cpu_threads, latents=bool(man.latent_arrays),
                             pmi=bool(man.pmi), device=device, n_check=n_check, entropy_samples=entropy_samples,
                             entropy_terms=entropy_terms, entropy_probes=entropy_probes, progress=False)
        flows = {m.flow.checkpoint: _recorded_flow(store.path, m.name, m.flow) for m in man.modalities
                 if m.flow is not None and m.flow.checkpoint not in registry()}
        job = cls(spec, cfg, files=JobFiles(store.template_files(), tuple(man.template_files), flows))
        recorded = {m.name: m.flow for m in man.modalities}
        for m in job.mods:
            rec, fm = recorded.get(m.name), m.map
            if fm is None or rec is None:
                continue
            if fm.flow.sha256 != rec.sha256:
                raise StoreError(f"{store.path}: modality {m.name} was written with flow {rec.file} (sha256 "
                                 f"{rec.sha256[:12]}…), but {fm.ref!r} now resolves to {fm.flow.path.name} (sha256 "
                                 f"{fm.flow.sha256[:12]}…); restore the flow file the store was made with")
        return job


def _recorded_flow(store_path: str, modality: str, rec: FlowRecord) -> str:
    """The file of a flow given by path in a store's spec: where the manifest says it was, or a registered
    flow with the same sha256."""
    if rec.path is not None and Path(rec.path).is_file():
        return rec.path
    for name, entry in registry().items():  # the file's own map: not an entry that applies it on another grid
        if entry.get("sha256") == rec.sha256 and "solver" not in entry:
            return name
    raise StoreError(f"{store_path}: modality {modality} was written with flow file {rec.path or rec.checkpoint!r} "
                     f"(sha256 {rec.sha256[:12]}…), which is no longer there and is not a registered flow; restore "
                     "it, or register it with `mi-datagen export-flow`")


@dataclass(frozen=True)
class JobFiles:
    """The files a spec names, resolved once: raw template arrays by the path written in the spec (with
    their records for the manifest) and flow files by checkpoint reference."""

    templates: dict[str, np.ndarray] = field(default_factory=dict)
    records: tuple[TemplateFileRecord, ...] = ()
    flows: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, spec: GraphSpec, base_dir: str | Path) -> JobFiles:
        arrays, records = {}, []
        for i, (where, t) in enumerate(file_templates(spec)):
            path = template_file_path(t, base_dir)
            arrays[t.path] = read_template_file(path, tuple(spec.shape), where)
            records.append(TemplateFileRecord(path=t.path, sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
                                              array=layout.template(i), values_sha256=values_sha256(arrays[t.path])))
        return cls(arrays, tuple(records))

    def with_flows(self, flows: dict[str, str]) -> JobFiles:
        return JobFiles(self.templates, self.records, {**self.flows, **flows})

    def store_arrays(self) -> dict[str, np.ndarray]:
        """What the store keeps of them: array path → values."""
        return {r.array: self.templates[r.path] for r in self.records}
