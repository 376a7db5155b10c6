"""Bounds on every input, checked before any allocation. Each can be raised with an environment
variable, which the refusal names (e.g. ``MI_DATAGEN_MAX_D=50000000 mi-datagen generate ...``)."""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["Limit", "LIMITS", "limit"]


@dataclass(frozen=True)
class Limit:
    name: str
    default: int
    what: str

    @property
    def env(self) -> str:
        return f"MI_DATAGEN_MAX_{self.name.upper()}"

    @property
    def value(self) -> int:
        raw = os.environ.get(self.env)
        try:
            return int(raw) if raw else self.default
        except ValueError:
            return self.default

    def refusal(self, got: int | str) -> str:
        """The end of a one-line error: the value, the limit and how to raise it."""
        return f"{got} exceeds the limit of {self.value} {self.what} (set {self.env} to raise it)"


LIMITS = {lim.name: lim for lim in (
    Limit("spec_bytes", 1_000_000, "bytes of spec text"),
    Limit("yaml_nodes", 1_000_000, "YAML values after alias expansion"),
    Limit("yaml_depth", 64, "levels of YAML nesting"),
    Limit("scalar_chars", 10_000, "characters in one YAML value"),
    Limit("d", 1 << 24, "entries per vector node (d = prod(shape))"),
    Limit("nodes", 10_000, "nodes"),
    Limit("modalities", 1_000, "modalities"),
    Limit("members", 10_000, "sweep members"),
    Limit("template_bytes", 1 << 30, "bytes in a template file"),
    Limit("solver_steps", 10_000, "ODE steps"),
    Limit("model_params", 500_000_000, "network parameters in a checkpoint's model config"),
)}


def limit(name: str) -> Limit:
    return LIMITS[name]
