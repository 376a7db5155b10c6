"""Parametric families that expand to explicit :class:`GraphSpec` node/edge form.

``canonical``: the paper's form (docs/model.md §1) with explicit η, ρ̃, ρ̂ and templates T_ik:
    z_θ = Σ_k η_k ũ_k,   z_i = Σ_k ρ̃_ik ũ_k T_ik + Σ_j ρ̂_ij û_j.
``decay``: docs/examples.md (3, 4), N modalities with two decay knobs:
    z_θ = η ũ_1,   z_i = β^{-i} ρ̃ ũ_1 T_i + Σ_j α^{-|i-j|} ρ̂ û_j.
"""

from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator

from mi_datagen.assets import DEFAULT_FLOW
from mi_datagen.errors import SpecError
from mi_datagen.limits import limit
from mi_datagen.spec.models import Coef, EdgeSpec, FlowRef, GraphSpec, ModalitySpec, Name, NodeSpec, SpecCommon
from mi_datagen.spec.templates_spec import TemplateSpec

TemplateRef = Union[Name, TemplateSpec]
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


# Edges are built with model_construct: every value comes from this family's validated fields, and
# GraphSpec's own validators still check the assembled graph (names, DAG, templates, parameters).


def _is_zero(c: Coef) -> bool:
    return not isinstance(c, str) and float(c) == 0.0


class _FamilyCommon(SpecCommon):
    modality_names: list[Name] | None = None
    labels: list[Union[str, int]] | None = None
    checkpoint: str = DEFAULT_FLOW
    standardize: bool = False
    target_name: Name = "theta"

    def _modalities(self, n: int) -> tuple[list[str], list[ModalitySpec]]:
        names = list(self.modality_names or [f"X{i + 1}" for i in range(n)])
        if len(names) != n:
            raise SpecError(f"modality_names: expected {n} names, got {len(names)}: {names}")
        labels = list(self.labels) if self.labels is not None else [CIFAR10_CLASSES[i % 10] for i in range(n)]
        if len(labels) != n:
            raise SpecError(f"labels: expected {n} flow labels (one per modality), got {len(labels)}")
        mods = [
            ModalitySpec(node=m, flow=FlowRef(checkpoint=self.checkpoint, label=lab), standardize=self.standardize)
            for m, lab in zip(names, labels)
        ]
        return names, mods

    def _common(self) -> dict:
        keep = ("version", "name", "description", "shape", "parameters", "templates", "report", "solve", "sweep")
        return {k: getattr(self, k) for k in keep}


class CanonicalFamily(_FamilyCommon):
    family: Literal["canonical"]
    eta: list[Coef] = Field(min_length=1)
    rho_tilde: list[list[Coef]] = Field(min_length=1)
    rho_hat: list[list[Coef]]
    template: list[list[TemplateRef]] | None = None

    @model_validator(mode="after")
    def matrix_shapes(self) -> CanonicalFamily:
        k, n = len(self.eta), len(self.rho_tilde)
        for i, row in enumerate(self.rho_tilde):
            if len(row) != k:
                raise ValueError(f"rho_tilde[{i}]: expected {k} entries (one per common cause, len(eta)), got {len(row)}")
        if len(self.rho_hat) != n:
            raise ValueError(f"rho_hat: expected {n} rows (one per modality), got {len(self.rho_hat)}")
        widths = {len(r) for r in self.rho_hat}
        if len(widths) != 1 or 0 in widths:
            raise ValueError(f"rho_hat: rows must all have the same non-zero length (J), got lengths {sorted(widths)}")
        if self.template is not None:
            if len(self.template) != n or any(len(r) != k for r in self.template):
                raise ValueError(f"template: expected an {n} x {k} list (modality x common cause)")
        return self

    def to_graph(self) -> GraphSpec:
        k, n, j = len(self.eta), len(self.rho_tilde), len(self.rho_hat[0])
        names, mods = self._modalities(n)
        u = [f"u{i + 1}" for i in range(k)]
        e = [f"e{i + 1}" for i in range(j)]
        nodes = [NodeSpec(name=x, kind="scalar") for x in u]
        nodes.append(NodeSpec(name=self.target_name, kind="scalar", noise_std=0.0))
        nodes += [NodeSpec(name=x, kind="vector") for x in e]
        nodes += [NodeSpec(name=x, kind="vector", noise_std=0.0) for x in names]
        edges = [EdgeSpec(parent=u[a], child=self.target_name, coef=c) for a, c in enumerate(self.eta) if not _is_zero(c)]
        for i in range(n):
            for a in range(k):
                c = self.rho_tilde[i][a]
                if not _is_zero(c):
                    t = self.template[i][a] if self.template else "ones"
                    edges.append(EdgeSpec.model_construct(parent=u[a], child=names[i], coef=c, template=t))
            for b in range(j):
                c = self.rho_hat[i][b]
                if not _is_zero(c):
                    edges.append(EdgeSpec.model_construct(parent=e[b], child=names[i], coef=c, template=None))
        return GraphSpec(**self._common(), nodes=nodes, edges=edges, target=self.target_name, modalities=mods)


class DecayFamily(_FamilyCommon):
    family: Literal["decay"]
    n_modalities: PositiveInt
    alpha: PositiveFloat = 1.0
    beta: PositiveFloat = 1.0
    eta: Coef = 1.0
    rho_tilde: Coef = 1.0
    rho_hat: Coef = 1.0
    template: Union[TemplateRef, list[TemplateRef]] = "ones"
    min_coef: Annotated[float, Field(ge=0)] = 0.0

    @field_validator("n_modalities")
    @classmethod
    def modalities_within_limit(cls, v: int) -> int:
        lim = limit("modalities")
        if v > lim.value:
            raise ValueError(f"{v} modalities: {lim.refusal(v)}")
        return v

    @model_validator(mode="after")
    def template_count(self) -> DecayFamily:
        if isinstance(self.template, list) and len(self.template) != self.n_modalities:
            raise ValueError(
                f"template: a list must give one template per modality ({self.n_modalities}), got {len(self.template)}"
            )
        return self

    def _scaled(self, base: Coef, factor: float) -> float:
        """Family coefficients are numbers: a parameter name is resolved first (sweeps re-expand)."""
        b = float(self.parameters[base]) if isinstance(base, str) else float(base)
        return b * factor

    def to_graph(self) -> GraphSpec:
        n = self.n_modalities
        names, mods = self._modalities(n)
        e = [f"e{i + 1}" for i in range(n)]
        nodes = [NodeSpec(name="u1", kind="scalar"), NodeSpec(name=self.target_name, kind="scalar", noise_std=0.0)]
        nodes += [NodeSpec(name=x, kind="vector") for x in e]
        nodes += [NodeSpec(name=x, kind="vector", noise_std=0.0) for x in names]
        edges = [EdgeSpec(parent="u1", child=self.target_name, coef=self.eta)]
        for i in range(1, n + 1):
            t = self.template[i - 1] if isinstance(self.template, list) else self.template
            c = self._scaled(self.rho_tilde, self.beta ** (-i))
            if c != 0.0:
                edges.append(EdgeSpec.model_construct(parent="u1", child=names[i - 1], coef=c, template=t))
            for jj in range(1, n + 1):
                c = self._scaled(self.rho_hat, self.alpha ** (-abs(i - jj)))
                if abs(c) > self.min_coef:
                    edges.append(EdgeSpec.model_construct(parent=e[jj - 1], child=names[i - 1], coef=c, template=None))
        return GraphSpec(**self._common(), nodes=nodes, edges=edges, target=self.target_name, modalities=mods)


FamilySpec = Annotated[Union[CanonicalFamily, DecayFamily], Field(discriminator="family")]
