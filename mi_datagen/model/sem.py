"""A numeric linear SEM: nodes in topological order, edges with resolved coefficients and templates.

This is the common input of the structured model and the dense reference. It knows nothing of
YAML or pydantic; ``compile_spec`` builds it from a spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Edge:
    parent: str
    child: str
    coef: float
    template: int | None = None
    """Index into ``LinearSEM.templates`` (scalar→vector: the template T; vector→vector: a diagonal
    scaling diag(T); vector→scalar: the weights w), or None."""


@dataclass(frozen=True)
class LinearSEM:
    names: tuple[str, ...]
    """Node names in a topological order."""
    kinds: dict[str, str]
    noise: dict[str, float]
    edges: tuple[Edge, ...]
    templates: tuple[np.ndarray, ...]
    shape: tuple[int, ...]
    target: str
    modalities: tuple[str, ...]
    template_keys: tuple[str, ...] = ()
    parents: dict[str, tuple[Edge, ...]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        by_child: dict[str, list[Edge]] = {n: [] for n in self.names}
        for e in self.edges:
            by_child[e.child].append(e)
        object.__setattr__(self, "parents", {n: tuple(v) for n, v in by_child.items()})

    @property
    def d(self) -> int:
        return math.prod(self.shape)

    def dim(self, name: str) -> int:
        return self.d if self.kinds[name] == "vector" else 1

    def dims(self, names) -> int:
        return sum(self.dim(n) for n in names)
