"""The exact information of a store's data: the manifest's table, else the solver of the store's own spec."""

from __future__ import annotations

import math
from collections.abc import Sequence

from mi_datagen.errors import UnknownNameError
from mi_datagen.store.store import Store


class Truth:
    """Exact I(a; b | given) and σ_θ for the data in ``store``. Quantities the manifest's table holds are read
    from it; any other (e.g. I(θ; X1..Xk)) is solved from the spec and template arrays the store carries,
    by the same exact solver (the stored modalities are block-wise bijections of the latents, so their MI
    is the latents' MI)."""

    def __init__(self, store: Store):
        self.store = store
        self._solver = None
        self._cache: dict[tuple, float] = {}

    @property
    def solver(self):
        if self._solver is None:
            from mi_datagen.api import solver_for
            from mi_datagen.spec.models import GraphSpec

            spec = GraphSpec.model_validate(self.store.manifest.info.spec)
            self._solver = solver_for(spec, files=self.store.template_files())
        return self._solver

    def mi(self, a: Sequence[str], b: Sequence[str], given: Sequence[str] = ()) -> float:
        key = (frozenset(a), frozenset(b), frozenset(given))
        if key not in self._cache:
            try:
                value = self.store.mi(list(a), list(b), list(given))
            except UnknownNameError:
                value = None
            self._cache[key] = float(self.solver.mi(list(a), list(b), list(given)) if value is None else value)
        return self._cache[key]

    @property
    def theta_std(self) -> float:
        """σ_θ from the exact entropy h(θ) = ½ log(2πe σ²)."""
        h = self.solver.entropy([self.store.target])
        return math.sqrt(math.exp(2.0 * h) / (2.0 * math.pi * math.e))

    def rmse_floor(self, inputs: Sequence[str]) -> float:
        """The Bayes floor of the RMSE for θ from ``inputs``: σ_θ·e^(−I(θ; inputs)) (jointly Gaussian θ, latents)."""
        return self.theta_std * math.exp(-self.mi([self.store.target], inputs))
