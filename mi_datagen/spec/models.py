"""The explicit spec: a causal DAG of scalar and vector nodes with linear structural equations.

Each node is  z_node = Σ_parents coef · (edge map) · z_parent + noise_std · ε_node,  ε ~ N(0, I).
Edge maps: scalar→scalar: the coefficient; scalar→vector: coefficient × template T ∈ R^d;
vector→vector: coefficient × I_d (or × diag(T) when a template is given, which leaves the
structured solver for the dense one); vector→scalar: coefficient × Tᵀ (dense solver only).

A coefficient or noise std may be the name of an entry of ``parameters`` (used by families,
``solve`` and ``sweep``). Every rule is one named validator whose message names the field, the
bad value and the fix.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal, Union

import networkx as nx
from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationInfo, field_validator, model_validator

from mi_datagen.assets import DEFAULT_FLOW
from mi_datagen.errors import UnknownNameError
from mi_datagen.limits import limit
from mi_datagen.spec.templates_spec import BUILTIN_TEMPLATES, FiniteFloat, TemplateSpec

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
# coefficients, noise stds and parameters: the exact solver's accuracy is stated up to this magnitude
MAX_COEF = 1e12
Coefficient = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_COEF, le=MAX_COEF)]
Coef = Union[Coefficient, Name]
"""A number (|x| ≤ 1e12), or the name of a parameter."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NodeSpec(_Frozen):
    name: Name
    kind: Literal["scalar", "vector"]
    noise_std: Coef = 1.0

    @field_validator("noise_std")
    @classmethod
    def noise_std_non_negative(cls, v: Coef) -> Coef:
        if isinstance(v, float) and v < 0:
            raise ValueError(f"noise_std must be >= 0, got {v}; use a non-negative std (0 = no own noise)")
        return v


class EdgeSpec(_Frozen):
    parent: Name
    child: Name
    coef: Coef = 1.0
    template: Union[Name, TemplateSpec, None] = None


class FlowRef(_Frozen):
    """Which bijection turns this modality's latent block into an image (used from the flows on)."""

    checkpoint: str = DEFAULT_FLOW
    label: Union[str, int]


class ModalitySpec(_Frozen):
    node: Name
    flow: FlowRef | None = None
    standardize: bool = False


class QuantitySpec(_Frozen):
    """I(a; b | given) between sets of node names."""

    a: list[Name] = Field(min_length=1)
    b: list[Name] = Field(min_length=1)
    given: list[Name] = []

    @model_validator(mode="after")
    def sets_disjoint(self) -> QuantitySpec:
        a, b, c = set(self.a), set(self.b), set(self.given)
        overlap = (a & b) | (a & c) | (b & c)
        if overlap:
            raise ValueError(f"a, b and given must be disjoint; {sorted(overlap)} appear twice: list each node once")
        return self

    def label(self) -> str:
        g = f" | {','.join(self.given)}" if self.given else ""
        return f"I({','.join(self.a)}; {','.join(self.b)}{g})"


class Linspace(_Frozen):
    start: FiniteFloat
    stop: FiniteFloat
    num: PositiveInt


class SolveSpec(_Frozen):
    """Find the value of ``parameter`` that makes ``quantity`` equal ``nats`` (monotone root finding)."""

    parameter: Name
    quantity: QuantitySpec
    nats: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    bracket: tuple[FiniteFloat, FiniteFloat] | None = None


class SweepSpec(_Frozen):
    """A family of explicit specs: either ``values`` of the parameter, or values of ``quantity`` in
    nats (each solved for the parameter)."""

    parameter: Name
    values: list[Coefficient] | None = None
    quantity: QuantitySpec | None = None
    nats: Union[Linspace, list[Annotated[float, Field(gt=0, allow_inf_nan=False)]], None] = None
    bracket: tuple[FiniteFloat, FiniteFloat] | None = None

    @model_validator(mode="after")
    def values_or_quantity(self) -> SweepSpec:
        by_values = self.values is not None
        by_nats = self.quantity is not None and self.nats is not None
        if by_values == by_nats:
            raise ValueError(
                "sweep needs exactly one of: `values` (parameter values), or `quantity` with `nats` "
                "(target information values); got "
                f"values={self.values!r}, quantity={'set' if self.quantity else None}, nats={self.nats!r}"
            )
        return self

    @model_validator(mode="after")
    def members_within_limit(self) -> SweepSpec:
        n = self.nats.num if isinstance(self.nats, Linspace) else len(self.values or self.nats or [])
        lim = limit("members")
        if n > lim.value:
            raise ValueError(f"sweep: {lim.refusal(n)}")
        return self

    def targets(self) -> list[float]:
        if isinstance(self.nats, Linspace):
            n = self.nats.num
            step = (self.nats.stop - self.nats.start) / max(n - 1, 1)
            return [self.nats.start + i * step for i in range(n)]
        return list(self.nats or [])


class SpecCommon(_Frozen):
    """Fields shared by explicit specs and families."""

    version: Literal[1] = 1
    name: Name
    description: str = ""
    shape: tuple[PositiveInt, ...] = (3, 32, 32)
    parameters: dict[Name, Coefficient] = {}
    templates: dict[Name, TemplateSpec] = {}
    report: list[QuantitySpec] = []
    solve: SolveSpec | None = None
    sweep: SweepSpec | None = None

    @field_validator("shape")
    @classmethod
    def shape_rank(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not 1 <= len(v) <= 3:
            raise ValueError(f"shape must have 1 to 3 dimensions (e.g. [3, 32, 32]), got {list(v)}")
        return v

    @field_validator("shape")
    @classmethod
    def shape_within_limit(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        d, lim = math.prod(v), limit("d")
        if d > lim.value:
            raise ValueError(f"shape {list(v)}: d = {lim.refusal(d)}")
        return v

    @field_validator("templates")
    @classmethod
    def template_names_not_builtin(cls, v: dict) -> dict:
        clash = sorted(set(v) & set(BUILTIN_TEMPLATES))
        if clash:
            raise ValueError(f"template names {clash} are built in; rename your templates (e.g. 'my_{clash[0]}')")
        return v

    def with_parameters(self, **values: float):
        """A re-validated copy with some parameter values replaced."""
        unknown = sorted(set(values) - set(self.parameters))
        if unknown:
            raise UnknownNameError(f"unknown parameters {unknown}; known: {sorted(self.parameters)}")
        data = self.model_dump(mode="python", round_trip=True)
        data["parameters"] = {**self.parameters, **{k: float(v) for k, v in values.items()}}
        return type(self).model_validate(data)

    def without_studies(self):
        """A copy with ``solve`` and ``sweep`` removed (what they expand to)."""
        return self.model_copy(update={"solve": None, "sweep": None})

    @model_validator(mode="after")
    def solve_and_sweep_exclusive(self):
        if self.solve is not None and self.sweep is not None:
            raise ValueError("solve and sweep cannot both be set: a sweep already solves each member")
        return self

    @model_validator(mode="after")
    def solve_sweep_parameter_exists(self):
        for field, item in (("solve", self.solve), ("sweep", self.sweep)):
            if item is not None and item.parameter not in self.parameters:
                raise ValueError(
                    f"{field}.parameter: {item.parameter!r} is not in parameters "
                    f"{sorted(self.parameters)}; declare it under parameters with a starting value"
                )
        return self


class GraphSpec(SpecCommon):
    """An explicit spec: nodes, edges, the target θ and the observed modalities."""

    nodes: list[NodeSpec] = Field(min_length=1)
    edges: list[EdgeSpec] = []
    target: Name
    modalities: list[ModalitySpec] = Field(min_length=1)

    # --- one validator per rule -------------------------------------------------------------
    @field_validator("nodes", "modalities")
    @classmethod
    def counts_within_limits(cls, v: list, info: ValidationInfo) -> list:
        lim = limit(str(info.field_name))
        if len(v) > lim.value:
            raise ValueError(f"{len(v)} {info.field_name}: {lim.refusal(len(v))}")
        return v

    @model_validator(mode="after")
    def node_names_unique(self) -> GraphSpec:
        seen: set[str] = set()
        for i, n in enumerate(self.nodes):
            if n.name in seen:
                raise ValueError(f"nodes[{i}].name: duplicate node name {n.name!r}; give every node a unique name")
            seen.add(n.name)
        return self

    @model_validator(mode="after")
    def edges_reference_nodes(self) -> GraphSpec:
        names = {n.name for n in self.nodes}
        for i, e in enumerate(self.edges):
            for end in ("parent", "child"):
                if getattr(e, end) not in names:
                    raise ValueError(
                        f"edges[{i}].{end}: unknown node {getattr(e, end)!r}; known nodes: {sorted(names)}"
                    )
        return self

    @model_validator(mode="after")
    def edges_unique(self) -> GraphSpec:
        seen: set[tuple[str, str]] = set()
        for i, e in enumerate(self.edges):
            if (e.parent, e.child) in seen:
                raise ValueError(
                    f"edges[{i}]: duplicate edge {e.parent} -> {e.child}; merge the two into one coefficient"
                )
            seen.add((e.parent, e.child))
        return self

    @model_validator(mode="after")
    def graph_acyclic(self) -> GraphSpec:
        g = nx.DiGraph((e.parent, e.child) for e in self.edges)
        if nx.is_directed_acyclic_graph(g):
            return self
        cycle = nx.find_cycle(g)
        loop = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise ValueError(f"edges: the graph has a cycle {loop}; a structural causal model must be a DAG")

    @model_validator(mode="after")
    def edge_templates_fit_kinds(self) -> GraphSpec:
        kinds = {n.name: n.kind for n in self.nodes}
        for i, e in enumerate(self.edges):
            pk, ck = kinds[e.parent], kinds[e.child]
            if pk == "scalar" and ck == "scalar" and e.template is not None:
                raise ValueError(
                    f"edges[{i}].template: {e.parent} -> {e.child} joins two scalar nodes, which takes no "
                    "template; remove it"
                )
            if pk == "vector" and ck == "scalar" and e.template is None:
                raise ValueError(
                    f"edges[{i}].template: {e.parent} -> {e.child} maps a vector to a scalar and needs the "
                    "weights w (z_child += coef · wᵀ z_parent); add e.g. `template: ones` for the sum"
                )
            if pk == "scalar" and ck == "vector" and e.template is None:
                raise ValueError(
                    f"edges[{i}].template: {e.parent} -> {e.child} spreads a scalar over a vector and needs the "
                    "template T (z_child += coef · T · z_parent); add e.g. `template: ones`"
                )
        return self

    @model_validator(mode="after")
    def template_names_declared(self) -> GraphSpec:
        known = set(self.templates) | set(BUILTIN_TEMPLATES)
        for i, e in enumerate(self.edges):
            if isinstance(e.template, str) and e.template not in known:
                raise ValueError(
                    f"edges[{i}].template: unknown template {e.template!r}; declare it under templates "
                    f"or use one of {sorted(known)}"
                )
        return self

    @model_validator(mode="after")
    def parameters_declared(self) -> GraphSpec:
        fields = [(f"nodes[{i}].noise_std", n.noise_std) for i, n in enumerate(self.nodes)]
        fields += [(f"edges[{i}].coef", e.coef) for i, e in enumerate(self.edges)]
        for where, v in fields:
            if isinstance(v, str) and v not in self.parameters:
                raise ValueError(
                    f"{where}: {v!r} is neither a number nor a declared parameter; "
                    f"declare it under parameters (known: {sorted(self.parameters)})"
                )
        return self

    @model_validator(mode="after")
    def parameter_noise_non_negative(self) -> GraphSpec:
        for i, n in enumerate(self.nodes):
            if isinstance(n.noise_std, str) and self.parameters[n.noise_std] < 0:
                raise ValueError(
                    f"nodes[{i}].noise_std: parameter {n.noise_std!r} = {self.parameters[n.noise_std]} "
                    "is negative; a std must be >= 0"
                )
        return self

    @model_validator(mode="after")
    def target_is_scalar_node(self) -> GraphSpec:
        kinds = {n.name: n.kind for n in self.nodes}
        if self.target not in kinds:
            raise ValueError(f"target: unknown node {self.target!r}; name the scalar node that is θ")
        if kinds[self.target] != "scalar":
            raise ValueError(f"target: node {self.target!r} is a vector node; θ must be a scalar node")
        return self

    @model_validator(mode="after")
    def modalities_are_vector_nodes(self) -> GraphSpec:
        kinds = {n.name: n.kind for n in self.nodes}
        seen: set[str] = set()
        for i, m in enumerate(self.modalities):
            if m.node not in kinds:
                raise ValueError(f"modalities[{i}].node: unknown node {m.node!r}; known nodes: {sorted(kinds)}")
            if kinds[m.node] != "vector":
                raise ValueError(
                    f"modalities[{i}].node: {m.node!r} is a scalar node; a modality must be a vector node"
                )
            if m.node in seen:
                raise ValueError(f"modalities[{i}].node: {m.node!r} is listed twice; list each modality once")
            seen.add(m.node)
        return self

    @model_validator(mode="after")
    def names_fit_store_layout(self) -> GraphSpec:
        from mi_datagen.store.layout import PAIR_SEP, RESERVED_NAMES

        for i, m in enumerate(self.modalities):
            if m.node in RESERVED_NAMES:
                raise ValueError(f"modalities[{i}].node: {m.node!r} is reserved by the store layout "
                                 f"({sorted(RESERVED_NAMES)}); rename the node")
        for name in [self.target, *self.modality_names]:
            if PAIR_SEP in name:
                raise ValueError(f"node {name!r}: names of the target and the modalities may not contain "
                                 f"{PAIR_SEP!r}, which the store uses to name PMI arrays; rename the node")
        return self

    @model_validator(mode="after")
    def quantities_reference_nodes(self) -> GraphSpec:
        names = {n.name for n in self.nodes}
        items = [(f"report[{i}]", q) for i, q in enumerate(self.report)]
        if self.solve is not None:
            items.append(("solve.quantity", self.solve.quantity))
        if self.sweep is not None and self.sweep.quantity is not None:
            items.append(("sweep.quantity", self.sweep.quantity))
        for where, q in items:
            for field in ("a", "b", "given"):
                for n in getattr(q, field):
                    if n not in names:
                        raise ValueError(f"{where}.{field}: unknown node {n!r}; known nodes: {sorted(names)}")
        return self

    # --- helpers ---------------------------------------------------------------------------
    @property
    def modality_names(self) -> list[str]:
        return [m.node for m in self.modalities]

    def resolve(self, value: Coef) -> float:
        """A coefficient or noise std as a number (parameters substituted)."""
        return float(self.parameters[value]) if isinstance(value, str) else float(value)

    def to_graph(self) -> GraphSpec:
        return self

    def substituted(self) -> GraphSpec:
        """Every coefficient and noise std as a number (parameters kept as a record)."""
        nodes = [n.model_copy(update={"noise_std": self.resolve(n.noise_std)}) if isinstance(n.noise_std, str) else n
                 for n in self.nodes]
        edges = [e.model_copy(update={"coef": self.resolve(e.coef)}) if isinstance(e.coef, str) else e
                 for e in self.edges]
        return self.model_copy(update={"nodes": nodes, "edges": edges})
