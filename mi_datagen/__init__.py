"""mi-datagen: realistic multimodal datasets whose mutual information is known exactly.

The front door (``import mi_datagen as mdg``)::

    specs = mdg.load_and_expand("two_modalities")        # a spec file, or a shipped example by name
    table = mdg.table_for(specs[0])                       # the exact information table (nats)
    mdg.generate("two_modalities", "out/pairs.zarr", n=1000)
    store = mdg.Store("out/pairs.zarr")                    # the read model: manifest, images, θ, PMI
    ds = mdg.MIDataset(store, with_pmi=True)               # a torch Dataset
    x, y, truth = mdg.load_pair(store, ["X1"], ["X2"])
    mdg.estimate(x, y, "infonce").nats, truth

Names resolve lazily: importing the package does not import torch; the image side (``generate``,
``MIDataset``, ``estimate``, ``load_flow``) needs the ``torch`` extra.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

_EXPORTS = {
    # specs
    "load_spec": "mi_datagen.spec.io",
    "load_specs": "mi_datagen.spec.io",
    "loads_spec": "mi_datagen.spec.io",
    "GraphSpec": "mi_datagen.spec.models",
    "expand": "mi_datagen.api",
    "load_and_expand": "mi_datagen.api",
    "select_member": "mi_datagen.api",
    # the exact information
    "InfoSolver": "mi_datagen.info.solver",
    "solver_for": "mi_datagen.api",
    "table_for": "mi_datagen.api",
    # generation and the store
    "generate": "mi_datagen.api",
    "GenerateConfig": "mi_datagen.store.config",
    "Store": "mi_datagen.store.store",
    "MIDataset": "mi_datagen.data.dataset",
    # flows
    "load_flow": "mi_datagen.flows.io",
    # estimators
    "load_pair": "mi_datagen.estimators.pairs",
    "estimate": "mi_datagen.estimators.estimate",
    # errors
    "MIDatagenError": "mi_datagen.errors",
}

__all__ = ["__version__", "errors", *_EXPORTS]

if TYPE_CHECKING:  # pragma: no cover
    from mi_datagen import errors
    from mi_datagen.api import expand, generate, load_and_expand, select_member, solver_for, table_for
    from mi_datagen.data.dataset import MIDataset
    from mi_datagen.errors import MIDatagenError
    from mi_datagen.estimators.estimate import estimate
    from mi_datagen.estimators.pairs import load_pair
    from mi_datagen.flows.io import load_flow
    from mi_datagen.info.solver import InfoSolver
    from mi_datagen.spec.io import load_spec, load_specs, loads_spec
    from mi_datagen.spec.models import GraphSpec
    from mi_datagen.store.config import GenerateConfig
    from mi_datagen.store.store import Store


def __getattr__(name: str) -> Any:
    if name == "errors":
        return importlib.import_module("mi_datagen.errors")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mi_datagen' has no attribute {name!r}")
    if module in ("mi_datagen.data.dataset", "mi_datagen.estimators.estimate", "mi_datagen.flows.io",
                  "mi_datagen.estimators.pairs"):
        from mi_datagen.errors import require

        require("torch")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
