"""Compile a validated, fully numeric spec into a :class:`LinearSEM`."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import networkx as nx
import numpy as np

from mi_datagen.model.sem import Edge, LinearSEM
from mi_datagen.spec.models import GraphSpec
from mi_datagen.spec.templates import resolve_template


def compile_spec(spec: GraphSpec, base_dir: str | Path = ".", template_cache: dict | None = None,
                 files: Mapping[str, np.ndarray] | None = None) -> LinearSEM:
    """Parameters substituted, templates resolved (and shared between edges that name the same one).

    ``template_cache`` (key → array) lets repeated compiles (root finding, sweeps) skip file reads;
    ``files`` (path as written → raw array) replaces reading file templates (a store's own copies).
    """
    g = nx.DiGraph()
    g.add_nodes_from(n.name for n in spec.nodes)
    g.add_edges_from((e.parent, e.child) for e in spec.edges)
    order = tuple(nx.lexicographical_topological_sort(g))
    cache = template_cache if template_cache is not None else {}
    keys: list[str] = []
    arrays: list[np.ndarray] = []
    edges = []
    for i, e in enumerate(spec.edges):
        t_index = None
        if e.template is not None:
            key = e.template if isinstance(e.template, str) else e.template.model_dump_json()
            if key not in cache:
                cache[key] = resolve_template(e.template, spec.shape, named=spec.templates, base_dir=base_dir, files=files,
                                              where=f"edges[{i}].template")
            if key not in keys:
                keys.append(key)
                arrays.append(cache[key])
            t_index = keys.index(key)
        edges.append(Edge(e.parent, e.child, spec.resolve(e.coef), t_index))
    return LinearSEM(
        names=order,
        kinds={n.name: n.kind for n in spec.nodes},
        noise={n.name: spec.resolve(n.noise_std) for n in spec.nodes},
        edges=tuple(edges),
        templates=tuple(arrays),
        shape=tuple(spec.shape),
        target=spec.target,
        modalities=tuple(spec.modality_names),
        template_keys=tuple(keys),
    )
