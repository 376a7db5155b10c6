"""Manifest models (pydantic, at the edge): what a dataset or ``mi-datagen info --json`` states."""

from __future__ import annotations

import hashlib
import json
import math

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from mi_datagen import __version__
from mi_datagen.errors import UnknownNameError
from mi_datagen.info.table import InfoTable
from mi_datagen.spec.models import GraphSpec

LN2 = math.log(2.0)


class _Out(BaseModel):
    # ±inf is legitimate here (infinite MI, degenerate entropy): JSON carries it as Infinity/-Infinity
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="constants")


class MIRecordModel(_Out):
    a: list[str]
    b: list[str]
    given: list[str]
    nats: float | None
    kind: str
    note: str | None = None


class EntropyRecordModel(_Out):
    nodes: list[str]
    nats: float
    kind: str
    note: str | None = None


class InformationManifest(_Out):
    """The ground-truth information of one explicit spec (the ``info`` part of a dataset manifest)."""

    package_version: str
    spec_name: str
    spec_sha256: str
    spec: dict
    units: str = "nats"
    target: str
    modalities: list[str]
    d: int
    solver: str
    solver_note: str | None
    mutual_information: list[MIRecordModel]
    entropies: list[EntropyRecordModel]
    total_correlation: list[EntropyRecordModel]
    interaction_information: list[MIRecordModel]


def values_sha256(values) -> str:
    """sha256 of an array's values as little-endian float64 bytes."""
    import numpy as np

    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f8").tobytes()).hexdigest()


def canonical_json(data) -> str:
    """Key-sorted, compact JSON: the same text for the same data whatever the YAML or pydantic version."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_sha256(spec: GraphSpec | dict) -> str:
    """sha256 of the canonical JSON of an explicit spec (a GraphSpec or its ``model_dump(mode="json")``)."""
    data = spec.model_dump(mode="json") if isinstance(spec, GraphSpec) else spec
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def information_manifest(spec: GraphSpec, table: InfoTable) -> InformationManifest:
    def mi(r):
        return MIRecordModel(a=list(r.a), b=list(r.b), given=list(r.given), nats=r.nats, kind=r.kind, note=r.note)

    def ent(r):
        return EntropyRecordModel(nodes=list(r.nodes), nats=r.nats, kind=r.kind, note=r.note)

    return InformationManifest(
        package_version=__version__, spec_name=spec.name, spec_sha256=spec_sha256(spec),
        spec=spec.model_dump(mode="json"), target=table.target, modalities=list(table.modalities), d=table.d,
        solver=table.solver, solver_note=table.solver_note,
        mutual_information=[mi(r) for r in table.mutual_information],
        entropies=[ent(r) for r in table.entropies],
        total_correlation=[ent(r) for r in table.total_correlation],
        interaction_information=[mi(r) for r in table.interaction_information],
    )


# --- dataset stores ----------------------------------------------------------------------------
STORE_FORMAT = "mi-datagen-store/1"

MI_INTERVAL_METHOD = (
    "Upper end: the exact MI of the latents (the stored data are a deterministic function of them, so by "
    "data processing they carry no more). Lower end: the exact MI after adding independent Gaussian noise of "
    "RMS delta per component to each modality's flow input, delta being the largest per-sample RMS round-trip "
    "error measured by exactly inverting the *stored* values (inverse tolerance, float arithmetic and storage "
    "precision together); computed by the same solver on the SEM extended with those noisy copies. A model of "
    "the loss, not a bound."
)


class FlowRecord(_Out):
    checkpoint: str
    file: str
    sha256: str
    # the file it was read from when generated (a registered flow is found again by its name)
    path: str | None = None
    step: int | None
    label: str | int
    class_index: int
    class_name: str


class CertificateRecord(_Out):
    certified: bool
    forced: bool
    n_samples: int
    worst_contraction_rate: float
    max_iterations: int
    failed_steps: list[int]
    lipschitz_checked: bool
    summary: str
    steps: list[dict]


class RoundTripRecord(_Out):
    """Exact inverse of the stored values vs the flow inputs, per sample (relative = / RMS of the input)."""

    n_samples: int
    source: str
    rel_rms_max: float
    rel_rms_mean: float
    abs_rms_max: float
    max_abs: float


class TemplateFileRecord(_Out):
    """A file template of the spec: its content hash and the store array holding its values, so the
    store reopens without the spec's folder."""

    path: str  # as written in the spec
    sha256: str  # of the file's bytes
    array: str
    values_sha256: str  # of the stored float64 values (little-endian bytes): what reopening checks


ADDED_LATER = ("sample_certification",)  # ModalityRecord fields newer than format 1's first stores


class SampleCertificationRecord(_Out):
    """The applied map certified on stored samples (``generate --certify-fraction``): which, how, and the result."""

    array: str
    fraction: float
    steps: list[int]
    lipschitz: bool
    n_checked: int = 0
    n_failed: int = 0
    failed_indices: list[int] = []  # the first 1 000
    worst: float | None = None  # the largest per-sample value (rate / local spectral norm); ≥ 1 fails
    failure_rate_bound_95: float | None = None  # one-sided 95 % upper bound on the per-sample failure rate
    note: str = ("each selected sample's stored trajectory: the last `steps` steps inverted by fixed-point "
                 "iteration (contraction rate) and, with `lipschitz`, the local spectral norm of J_g estimated by "
                 "power iteration; a value >= 1 or an iteration that does not converge back is a failure. "
                 "Samples are selected by a hash of (seed, index), independent of batches, workers and ranks.")

    def settings(self) -> tuple:
        return (self.array, self.fraction, tuple(self.steps), self.lipschitz)


class ModalityRecord(_Out):
    name: str
    array: str
    shape: list[int]
    standardize: bool
    flow: FlowRecord | None
    solver: dict | None
    certificate: CertificateRecord | None
    roundtrip: RoundTripRecord | None
    sample_certification: SampleCertificationRecord | None = None


class MIIntervalRecord(_Out):
    a: list[str]
    b: list[str]
    given: list[str]
    nats: float | None
    nats_perturbed: float | None
    low: float | None
    high: float | None


class ImageEntropyRecord(_Out):
    """h(X_nodes) of the stored modalities: exact latent entropy + standardisation log-det (exact) + the
    mean flow log-det over ``n_samples`` samples (Hutchinson power series): an estimate of an exact quantity."""

    nodes: list[str]
    nats: float
    stderr: float
    latent_nats: float
    # stores written before 0.2 spell it standardise_logdet
    standardize_logdet: float = Field(validation_alias=AliasChoices("standardize_logdet", "standardise_logdet"))
    flow_logdet_mean: float
    n_samples: int
    terms: int
    probes: int
    kind: str = "estimate (flow log-det) of an exactly defined entropy"


class PMIRecord(_Out):
    a: list[str]
    b: list[str]
    array: str


class DatasetManifest(_Out):
    """Everything a dataset store states about itself (manifest.json and the root group's attributes)."""

    format: str = STORE_FORMAT
    package_version: str
    created_utc: str
    command: str | None = None
    n: int
    seed: int
    dtype: str
    shard_size: int
    chunk_size: int
    tile: int
    cpu_threads: int
    device: str
    world_size: int
    theta_array: str
    latent_arrays: dict[str, str]
    modalities: list[ModalityRecord]
    pmi: list[PMIRecord]
    template_files: list[TemplateFileRecord] = []
    info: InformationManifest
    mi_intervals: list[MIIntervalRecord]
    mi_interval_method: str = MI_INTERVAL_METHOD
    image_entropies: list[ImageEntropyRecord] = []
    forced: bool
    complete: bool
    shards_complete: list[bool]
    timings_s: dict[str, float]
    # integrity (stores made before 0.2 have none): the arrays whose per-shard sha256 sit in `digests`,
    # the sha256 of all those digests once complete, and the manifest's own sha256 (canonical JSON
    # of everything else)
    digest_arrays: list[str] = []
    content_sha256: str | None = None
    manifest_sha256: str | None = None

    def own_sha256(self) -> str:
        """sha256 of the canonical JSON of this manifest without its ``manifest_sha256``."""
        data = self.model_dump(mode="json", exclude={"manifest_sha256"})
        for m in data.get("modalities", []):  # fields added later hash as absent when unset: older stores keep
            for key in ADDED_LATER:           # their digests
                if m.get(key) is None:
                    m.pop(key, None)
        return hashlib.sha256(canonical_json(data).encode()).hexdigest()

    def sealed(self) -> DatasetManifest:
        """This manifest with its own digest filled in (what is written)."""
        return self.model_copy(update={"manifest_sha256": self.own_sha256()})

    def mi(self, a, b, given=()) -> float | None:
        key = (frozenset(_as_list(a)), frozenset(_as_list(b)), frozenset(_as_list(given)))
        for r in self.info.mutual_information:
            k = (frozenset(r.a), frozenset(r.b), frozenset(r.given))
            if k == key or (k[1], k[0], k[2]) == key:
                return r.nats
        raise UnknownNameError(f"I({a}; {b} | {given}) is not in the manifest's information table")

    def generation_key(self) -> dict:
        """What must match for ``--resume`` to continue this store."""
        return {"spec_sha256": spec_sha256(self.info.spec), "n": self.n, "seed": self.seed, "dtype": self.dtype,
                "shard_size": self.shard_size, "chunk_size": self.chunk_size, "tile": self.tile,
                "cpu_threads": self.cpu_threads,
                "latents": sorted(self.latent_arrays),
                "pmi": sorted(r.array for r in self.pmi),
                "template_files": [(t.path, t.sha256) for t in self.template_files],
                "flows": [(m.name, m.flow.sha256 if m.flow else None, m.solver) for m in self.modalities],
                "certify": [m.sample_certification.settings() if m.sample_certification else None
                            for m in self.modalities]}


def _as_list(x) -> list[str]:
    return [x] if isinstance(x, str) else list(x)
