"""Manifest models (pydantic, at the edge): what a dataset or ``mi-datagen info --json`` states."""

from __future__ import annotations

import hashlib
import math

from pydantic import BaseModel, ConfigDict

from mi_datagen import __version__
from mi_datagen.info.table import InfoTable
from mi_datagen.spec.io import dump_spec
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


def spec_sha256(spec: GraphSpec) -> str:
    return hashlib.sha256(dump_spec(spec).encode()).hexdigest()


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
