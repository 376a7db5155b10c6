"""Invariances of the information maths, PMI, and latent sampling."""

import math

import numpy as np
import pytest

from mi_datagen.info.solver import InfoSolver
from mi_datagen.model.compile import compile_spec
from mi_datagen.sampling import BLOCK, sample_latents
from mi_datagen.spec.io import loads_spec

BASE = """
name: inv
shape: [2, 2, 3]
nodes:
  - {name: u, kind: scalar}
  - {name: theta, kind: scalar, noise_std: 0.3}
  - {name: X1, kind: vector}
  - {name: X2, kind: vector, noise_std: 0.7}
edges:
  - {parent: u, child: theta, coef: 1.2}
  - {parent: u, child: X1, coef: 0.4, template: {kind: random, seed: 3}}
  - {parent: u, child: X2, coef: -0.3, template: ones}
  - {parent: X1, child: X2, coef: 0.5}
target: theta
modalities: [{node: X1}, {node: X2}]
"""


def solver(extra_nodes="", extra_edges="", method="auto"):
    text = BASE.replace("edges:\n", "edges:\n" + extra_edges).replace("  - {name: X2,", extra_nodes + "  - {name: X2,")
    return InfoSolver(compile_spec(loads_spec(text)), method)


def mi_from_cov(S, ia, ib):
    def ld(idx):
        return np.linalg.slogdet(S[np.ix_(idx, idx)])[1]
    return 0.5 * (ld(ia) + ld(ib) - ld(ia + ib))


def test_invertible_block_map_leaves_mi_unchanged():
    """Y1 = M X1 for a random invertible M: I(Y1; X2) = I(X1; X2), I(Y1; θ) = I(X1; θ)."""
    s = solver(method="dense")
    A = s.dense()
    rows = np.concatenate([A["X1"], A["X2"], A["theta"]])
    S = rows @ rows.T
    d = s.sem.d
    M = np.random.default_rng(0).standard_normal((d, d)) + 3 * np.eye(d)
    B = np.eye(2 * d + 1)
    B[:d, :d] = M
    S2 = B @ S @ B.T
    i1, i2, it = list(range(d)), list(range(d, 2 * d)), [2 * d]
    assert mi_from_cov(S2, i1, i2) == pytest.approx(s.mi("X1", "X2"), rel=1e-9)
    assert mi_from_cov(S2, i1, it) == pytest.approx(s.mi("X1", "theta"), rel=1e-9)


def test_scaled_copy_node_keeps_mi_structured():
    """A node Y = 2.5 X1 (no own noise) is a bijection of X1: same MI with everything."""
    s = solver(extra_nodes="  - {name: Y, kind: vector, noise_std: 0.0}\n",
               extra_edges="  - {parent: X1, child: Y, coef: 2.5}\n")
    assert s.method == "structured"
    for other in ("X2", "theta"):
        assert s.mi("Y", other) == pytest.approx(s.mi("X1", other), rel=1e-10)
    assert s.mi("Y", "X1") == math.inf


def test_diagonal_scaling_copy_keeps_mi_dense():
    """Y = diag(t) X1 with t ≠ 0 (outside the structure → dense path): same MI."""
    s = solver(extra_nodes="  - {name: Y, kind: vector, noise_std: 0.0}\n",
               extra_edges="  - {parent: X1, child: Y, coef: 1.0, template: {kind: random, seed: 9, distribution: uniform}}\n")
    assert s.method == "dense" and "diag" in s.structure_note
    assert s.mi("Y", "X2") == pytest.approx(s.mi("X1", "X2"), rel=1e-9)


def test_independent_blocks_give_zero():
    text = """
name: indep
shape: [5]
nodes: [{name: t, kind: scalar}, {name: A, kind: vector}, {name: B, kind: vector, noise_std: 2.0}]
target: t
modalities: [{node: A}, {node: B}]
"""
    s = InfoSolver(compile_spec(loads_spec(text)))
    assert s.mi("A", "B") == 0.0
    assert s.mi("t", ["A", "B"]) == 0.0
    assert s.total_correlation([["A"], ["B"], ["t"]]) == 0.0
    # entropy of independent standard normals: n/2 log(2πe), times the std scaling
    assert s.entropy("B") == pytest.approx(5 * (0.5 * math.log(2 * math.pi * math.e) + math.log(2.0)), rel=1e-12)


def test_chain_rule_and_tc():
    s = solver()
    # I(θ; X1,X2) = I(θ; X1) + I(θ; X2 | X1)
    assert s.mi("theta", ["X1", "X2"]) == pytest.approx(s.mi("theta", "X1") + s.mi("theta", "X2", "X1"), rel=1e-10)
    tc = s.total_correlation([["theta"], ["X1"], ["X2"]])
    via_h = s.entropy("theta") + s.entropy("X1") + s.entropy("X2") - s.entropy(["theta", "X1", "X2"])
    assert tc == pytest.approx(via_h, rel=1e-10)


@pytest.mark.parametrize("method", ["structured", "dense"])
def test_pmi_mean_converges_to_mi(method):
    s = solver(method=method)
    fast = InfoSolver(s.sem, "structured")
    z = sample_latents(fast.structured, seed=1, start=0, stop=20_000)
    for a, b in [("X1", "X2"), ("theta", "X1"), ("theta", ["X1", "X2"])]:
        p = s.pmi(a, b, z)
        se = p.std() / math.sqrt(p.size)
        assert abs(p.mean() - s.mi(a, b)) < 4 * se, (a, b, p.mean(), s.mi(a, b), se)


def test_pmi_structured_equals_dense_pointwise():
    s, dn = solver(), solver(method="dense")
    z = sample_latents(s.structured, seed=5, start=0, stop=50)
    for a, b in [("X1", "X2"), ("theta", "X2"), (["theta", "X1"], "X2")]:
        np.testing.assert_allclose(s.pmi(a, b, z), dn.pmi(a, b, z), rtol=1e-9, atol=1e-9)


def test_pmi_mean_at_cifar_size():
    """d = 3072: the mean PMI of 4000 samples matches the MI of the basic example."""
    from mi_datagen.api import load_and_expand
    from tests.conftest import SPECS

    g = load_and_expand(SPECS / "two_modalities.yaml")[0]
    s = InfoSolver(compile_spec(g))
    z = sample_latents(s.structured, seed=0, start=0, stop=4000, names=["theta", "X1", "X2"])
    p = s.pmi("X1", "X2", z)
    assert abs(p.mean() - s.mi("X1", "X2")) < 4 * p.std() / math.sqrt(p.size)


def test_sample_covariance_matches_sigma():
    s = solver()
    z = sample_latents(s.structured, seed=2, start=0, stop=40_000)
    A = InfoSolver(s.sem, "dense").dense()
    rows = np.concatenate([A[n] for n in ("theta", "X1", "X2")])
    S = rows @ rows.T
    X = np.concatenate([z["theta"][:, None], z["X1"], z["X2"]], axis=1)
    emp = X.T @ X / X.shape[0]
    # each entry's standard error is ≤ sqrt((S_ii S_jj + S_ij²)/n): allow 5 of them
    se = np.sqrt((np.outer(np.diag(S), np.diag(S)) + S**2) / X.shape[0])
    assert np.all(np.abs(emp - S) < 5 * se)


def test_sampling_is_counter_based():
    """Sample i depends only on (seed, i): any split gives the same numbers; seeds differ."""
    s = solver()
    n = BLOCK * 2 + 37
    whole = sample_latents(s.structured, seed=11, start=0, stop=n)
    cuts = [0, 1, 7, BLOCK - 1, BLOCK + 64, n]
    parts = [sample_latents(s.structured, seed=11, start=a, stop=b) for a, b in zip(cuts, cuts[1:])]
    for k in whole:
        np.testing.assert_array_equal(whole[k], np.concatenate([p[k] for p in parts]))
    other = sample_latents(s.structured, seed=12, start=0, stop=5)
    assert not np.allclose(other["X1"], whole["X1"][:5])
