"""Target solving and sweeps."""

import math

import pytest

from mi_datagen.api import expand, load_and_expand, solve_parameter, solver_for
from mi_datagen.errors import SolveError
from mi_datagen.spec.io import load_spec
from mi_datagen.spec.models import QuantitySpec
from tests.conftest import SPECS


def test_solve_hits_target():
    g = load_and_expand(SPECS / "two_modalities_target.yaml")[0]
    assert solver_for(g).mi("X1", "X2") == pytest.approx(0.5, rel=1e-10)
    # closed form (docs/information.md special case, ρ̂ = 1): I = −½ log(1 − x²), x = dρ²/(1 + dρ²)
    rho, d = g.parameters["rho"], 3072
    x = d * rho**2 / (1 + d * rho**2)
    assert -0.5 * math.log(1 - x * x) == pytest.approx(0.5, rel=1e-10)
    assert "solved: rho" in g.description


def test_sweep_evenly_spaced():
    members = load_and_expand(SPECS / "two_modalities_sweep.yaml")
    assert len(members) == 10
    values = [solver_for(g).mi("X1", "X2") for g in members]
    expected = [0.03 + i * (1.4 - 0.03) / 9 for i in range(10)]
    assert values == pytest.approx(expected, rel=1e-9)
    assert [g.name for g in members][:2] == ["two_modalities_sweep_00", "two_modalities_sweep_01"]


def test_sweep_by_values():
    spec = load_spec(SPECS / "two_modalities.yaml")
    spec = type(spec).model_validate({**spec.model_dump(), "sweep": {"parameter": "rho", "values": [0.0, 0.02]}})
    members = expand(spec)
    assert [g.parameters["rho"] for g in members] == [0.0, 0.02]
    assert solver_for(members[0]).mi("X1", "X2") == 0.0


def test_unreachable_target_reports_range():
    spec = load_spec(SPECS / "two_modalities.yaml")
    q = QuantitySpec(a=["X1"], b=["X2"])
    with pytest.raises(SolveError, match=r"out of reach for parameter 'rho' in \[0, 0.01\]: the I\(X1; X2\) ranges"):
        solve_parameter(spec, "rho", q, 1.4, bracket=(0.0, 0.01))


def test_target_unreachable_when_quantity_ignores_parameter():
    """I(θ; X2) does not depend on X1's noise scale s: no value of s reaches 2 nats."""
    text = (SPECS / "two_modalities.yaml").read_text().replace("rho_hat: [[1.0, 0.0], [0.0, 1.0]]",
                                                                 "rho_hat: [[s, 0.0], [0.0, 1.0]]")
    text = text.replace("parameters: {rho: 0.05}", "parameters: {rho: 0.02, s: 1.0}")
    from mi_datagen.spec.io import loads_spec

    spec = loads_spec(text)
    with pytest.raises(SolveError, match="out of reach"):
        solve_parameter(spec, "s", QuantitySpec(a=["theta"], b=["X2"]), 2.0, bracket=(0.1, 10.0))
