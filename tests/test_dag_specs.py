"""The shipped examples: they validate, their README tables match the code, and they show what they claim."""

import math
import shutil

import pytest

from mi_datagen.api import load_and_expand, solver_for, table_for
from mi_datagen.bench.spec_tables import update_readme
from tests.conftest import SPECS

ALL = sorted(SPECS.glob("*.yaml"))


def test_expected_examples_shipped():
    names = {p.stem for p in ALL}
    for must in ("two_modalities", "black_hole_mass", "black_hole_atmosphere", "multimodal_decay",
                 "ablation_templates", "chain", "collider", "confounder"):
        assert must in names


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.stem)
def test_spec_solves_without_nan(path):
    for g in load_and_expand(path):
        t = table_for(g, path.parent)
        for r in t.mutual_information + t.interaction_information:
            assert r.nats is None or not math.isnan(r.nats)


def test_readme_tables_match_code(tmp_path):
    copy = tmp_path / "dag_specs"
    shutil.copytree(SPECS, copy)
    changed = update_readme(copy / "README.md")
    assert not changed, "dag_specs/README.md is stale: run `python -m mi_datagen.bench.spec_tables dag_specs/README.md`"


def one(name):
    g = load_and_expand(SPECS / f"{name}.yaml")[0]
    return g, solver_for(g, SPECS)


def test_chain_data_processing():
    _, s = one("chain")
    assert s.mi("theta", "X2") < s.mi("theta", "X1")
    assert s.mi("theta", "X2", "X1") == pytest.approx(0.0, abs=1e-9)


def test_collider_explaining_away():
    _, s = one("collider")
    assert s.mi("theta", "X1") == 0.0
    assert s.mi("theta", "X1", "X2") > 0.1


def test_confounder_blocks_when_conditioned():
    _, s = one("confounder")
    assert s.mi("theta", "X2") > 0.1
    assert s.mi("theta", "X2", "c") == pytest.approx(0.0, abs=1e-9)  # θ ⟂ X2 | c: c is the only path


def test_ablation_templates_same_information():
    """rms-normalised templates with ρ̂ = I: MI depends on a template only through its norm."""
    g, s = one("ablation_templates")
    mods = g.modality_names
    ref = s.mi("theta", mods[0])
    for m in mods[1:]:
        assert s.mi("theta", m) == pytest.approx(ref, rel=1e-10)
    # the four blocks share one cause and have private noise: every pair has the same MI too
    ref_pair = s.mi(mods[0], mods[1])
    for i in range(4):
        for j in range(i + 1, 4):
            assert s.mi(mods[i], mods[j]) == pytest.approx(ref_pair, rel=1e-10)


def test_multimodal_decay_monotone():
    g, s = one("multimodal_decay")
    mods = g.modality_names
    with_first = [s.mi(mods[0], m) for m in mods[1:]]
    assert all(a > b for a, b in zip(with_first, with_first[1:])), with_first  # α > 1
    with_theta = [s.mi("theta", m) for m in mods]
    assert all(a > b for a, b in zip(with_theta[1:], with_theta[2:])), with_theta  # β > 1 (edges aside)


def test_black_hole_targets():
    _, mass = one("black_hole_mass")
    _, atm = one("black_hole_atmosphere")
    # telescope 2 sees no atmosphere: with θ = atmosphere it carries no information about θ
    assert atm.mi("theta", "telescope2") == pytest.approx(0.0, abs=1e-12)
    assert mass.mi("theta", "telescope2") > 0.05
    assert atm.mi("theta", "telescope1") > 0.05


def test_dense_example_uses_dense_path():
    _, s = one("readout_dense")
    assert s.method == "dense" and "vector node to a scalar" in s.structure_note


@pytest.mark.parametrize("name", ["two_modalities_paper_grid", "two_modalities_paper_grid_unstandardised"])
def test_paper_grid_is_the_closed_form_at_the_figures_the_issue_quotes(name):
    """docs/examples.md (1) with ρ̂ = 1 and s = d ρ̃²: I(θ; X1) = ½ log(1 + s), I(X1; X2) = −½ log(1 − (s / (1 + s))²)
    (DESIGN §2, special case); the grid's ends are the paper's 0.0284 / 1.39 nats and 0.134 / 1.73 (estimator issue)."""
    members = load_and_expand(SPECS / f"{name}.yaml")
    assert [m.parameters["rho"] for m in members] == pytest.approx([0.01 * k for k in range(1, 11)], rel=1e-12)
    pair, target = [], []
    for g in members:
        s = 3072 * g.parameters["rho"] ** 2
        sol = solver_for(g, SPECS)
        assert sol.mi("theta", "X1") == pytest.approx(0.5 * math.log1p(s), rel=1e-10)
        assert sol.mi("X1", "X2") == pytest.approx(-0.5 * math.log1p(-(s / (1 + s)) ** 2), rel=1e-10)
        pair.append(sol.mi("X1", "X2"))
        target.append(sol.mi("theta", "X1"))
    assert (round(pair[0], 4), round(pair[-1], 2), round(target[0], 3), round(target[-1], 2)) == (0.0284, 1.39, 0.134, 1.73)
    assert all(a < b for a, b in zip(pair, pair[1:]))
