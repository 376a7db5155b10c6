"""The library's front door: spec file → explicit specs → compiled model → information table."""

from __future__ import annotations

from pathlib import Path
from typing import Union

from mi_datagen.info.solver import InfoSolver, Method
from mi_datagen.info.table import InfoTable, info_table
from mi_datagen.info.target import solve_monotone
from mi_datagen.model.compile import compile_spec
from mi_datagen.model.sem import LinearSEM
from mi_datagen.spec.families import CanonicalFamily, DecayFamily
from mi_datagen.spec.io import load_spec
from mi_datagen.spec.models import GraphSpec, QuantitySpec

SpecLike = Union[GraphSpec, CanonicalFamily, DecayFamily]


def _solver(graph: GraphSpec, base_dir, cache: dict, method: Method = "auto") -> InfoSolver:
    return InfoSolver(compile_spec(graph, base_dir, cache), method=method)


def quantity_of(spec: SpecLike, q: QuantitySpec, base_dir: str | Path = ".", cache: dict | None = None) -> float:
    return _solver(spec.to_graph(), base_dir, {} if cache is None else cache).mi(q.a, q.b, q.given)


def solve_parameter(spec: SpecLike, parameter: str, q: QuantitySpec, nats: float,
                    bracket=None, base_dir: str | Path = ".", cache: dict | None = None) -> float:
    """The value of ``parameter`` for which I(q) = ``nats`` (monotone root finding)."""
    cache = {} if cache is None else cache
    base = spec.without_studies()
    return solve_monotone(
        lambda v: quantity_of(base.with_parameters(**{parameter: v}), q, base_dir, cache),
        nats, bracket, start=base.parameters[parameter], name=f"parameter {parameter!r}", what=q.label(),
    )


def expand(spec: SpecLike, base_dir: str | Path = ".") -> list[GraphSpec]:
    """Explicit, numeric specs: families expanded, ``solve`` solved, ``sweep`` unrolled (one per member)."""
    cache: dict = {}
    if spec.solve is not None:
        s = spec.solve
        v = solve_parameter(spec, s.parameter, s.quantity, s.nats, s.bracket, base_dir, cache)
        note = f"solved: {s.parameter} = {v:.12g} gives {s.quantity.label()} = {s.nats:g} nats"
        members = [(spec.without_studies().with_parameters(**{s.parameter: v}), note, spec.name)]
    elif spec.sweep is not None:
        sw = spec.sweep
        base = spec.without_studies()
        if sw.values is not None:
            vals = list(sw.values)
            notes = [f"sweep: {sw.parameter} = {v:g}" for v in vals]
        else:
            targets = sw.targets()
            vals = [solve_parameter(spec, sw.parameter, sw.quantity, t, sw.bracket, base_dir, cache) for t in targets]
            notes = [f"sweep: {sw.parameter} = {v:.12g} gives {sw.quantity.label()} = {t:g} nats"
                     for v, t in zip(vals, targets)]
        width = max(2, len(str(len(vals) - 1)))
        members = [(base.with_parameters(**{sw.parameter: v}), n, f"{spec.name}_{i:0{width}d}")
                   for i, (v, n) in enumerate(zip(vals, notes))]
    else:
        members = [(spec, None, spec.name)]
    out = []
    for s, note, name in members:
        g = s.to_graph().substituted()
        desc = "\n".join(x for x in (g.description, note) if x)
        out.append(g.model_copy(update={"name": name, "description": desc}))
    return out


def load_and_expand(path: str | Path) -> list[GraphSpec]:
    return expand(load_spec(path), Path(path).parent)


def compile_graph(graph: GraphSpec, base_dir: str | Path = ".") -> LinearSEM:
    return compile_spec(graph, base_dir)


def solver_for(graph: GraphSpec, base_dir: str | Path = ".", method: Method = "auto") -> InfoSolver:
    return InfoSolver(compile_spec(graph, base_dir), method=method)


def table_for(graph: GraphSpec, base_dir: str | Path = ".", method: Method = "auto",
              conditionals: bool = True) -> InfoTable:
    solver = solver_for(graph, base_dir, method)
    extra = [(q.a, q.b, q.given) for q in graph.report]
    return info_table(solver, graph.target, graph.modality_names, extra, conditionals=conditionals)
