"""The solver against docs/information.md's closed forms and against dense float64 slogdet."""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mi_datagen.info.dense import dense_logdet
from mi_datagen.info.solver import InfoSolver
from mi_datagen.model.compile import compile_spec
from mi_datagen.spec.families import CanonicalFamily
from mi_datagen.testing import structured_specs

TOL = 1e-9  # relative (or absolute below 1 nat)


def close(x, y, tol=TOL):
    if math.isinf(x) or math.isinf(y):
        return x == y
    return abs(x - y) <= tol * max(1.0, abs(x), abs(y))


def canonical(d, eta, rt, rh):
    spec = CanonicalFamily(family="canonical", name="cf", shape=(d,), eta=list(eta),
                           rho_tilde=[list(r) for r in rt], rho_hat=[list(r) for r in rh]).to_graph()
    return compile_spec(spec)


def closed_forms(d, eta, rt, rh):
    eta, rt, rh = map(np.asarray, (eta, rt, rh))
    a = eta @ eta
    r1, r2 = rt[0] @ eta, rt[1] @ eta
    o, q, p = rt[0] @ rt[0], rt[1] @ rt[1], rt[0] @ rt[1]
    b, c, f = o + rh[0] @ rh[0], q + rh[1] @ rh[1], p + rh[0] @ rh[1]
    B, Cc = b + (d - 1) * o, c + (d - 1) * q
    i_t1 = -0.5 * math.log(1 - d * r1**2 / (a * B))
    i_t2 = -0.5 * math.log(1 - d * r2**2 / (a * Cc))
    i_12 = 0.5 * math.log(B * Cc / (B * Cc - (f + (d - 1) * p) ** 2))
    if d > 1:
        i_12 += (d - 1) / 2 * math.log((b - o) * (c - q) / ((b - o) * (c - q) - (f - p) ** 2))
    logdet_11 = (d - 1) * math.log(b - o) + math.log(B)
    return i_t1, i_t2, i_12, logdet_11


coef = st.floats(-1.5, 1.5).filter(lambda x: abs(x) > 0.05)


@settings(max_examples=60, deadline=None)
@given(d=st.integers(1, 64), k=st.integers(1, 3), j=st.integers(2, 3), data=st.data())
def test_canonical_closed_forms(d, k, j, data):
    eta = [data.draw(coef) for _ in range(k)]
    rt = [[data.draw(coef) for _ in range(k)] for _ in range(2)]
    rh = [[data.draw(coef) for _ in range(j)] for _ in range(2)]
    # regular Kronecker part (otherwise the MI is infinite: tested below)
    assume(np.linalg.svd(np.asarray(rh), compute_uv=False).min() > 0.05)
    sem = canonical(d, eta, rt, rh)
    fast, dense = InfoSolver(sem, "structured"), InfoSolver(sem, "dense")
    i_t1, i_t2, i_12, ld11 = closed_forms(d, eta, rt, rh)
    for solver in (fast, dense):
        assert close(solver.mi("theta", "X1"), i_t1)
        assert close(solver.mi("theta", "X2"), i_t2)
        assert close(solver.mi("X1", "X2"), i_12)
        assert close(solver.logdet("X1"), ld11)


@pytest.mark.parametrize("d", [1, 2, 7, 64, 3072])
def test_example1_special_case(d):
    """docs/information.md special case: K = 1, ρ̂ diagonal."""
    rt1, rt2, rh1, rh2 = 0.07, 0.11, 1.3, 0.8
    sem = canonical(d, [1.0], [[rt1], [rt2]], [[rh1, 0.0], [0.0, rh2]])
    s = InfoSolver(sem)
    assert close(s.mi("theta", "X1"), -0.5 * math.log(1 - d * rt1**2 / (rh1**2 + d * rt1**2)))
    expect = -0.5 * math.log(1 - d**2 * rt1**2 * rt2**2 / ((rh1**2 + d * rt1**2) * (rh2**2 + d * rt2**2)))
    assert close(s.mi("X1", "X2"), expect)


@settings(max_examples=80, deadline=None)
@given(spec=structured_specs(), data=st.data())
def test_structured_matches_dense_on_random_specs(spec, data):
    sem = compile_spec(spec)
    fast, dense = InfoSolver(sem, "structured"), InfoSolver(sem, "dense")
    A = dense.dense()
    names = list(sem.names)
    for _ in range(4):
        subset = data.draw(st.lists(st.sampled_from(names), min_size=1, unique=True))
        assert close(fast.logdet(subset), dense_logdet(A, [n for n in sem.names if n in subset]))
    a = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=2, unique=True))
    rest = [n for n in names if n not in a]
    if rest:
        b = data.draw(st.lists(st.sampled_from(rest), min_size=1, max_size=2, unique=True))
        c = [n for n in rest if n not in b][:1]
        assert close(fast.mi(a, b, c), dense.mi(a, b, c))


def test_dense_canonical_correlation_matches_logdet_formula():
    """Two routes to the same MI in the dense path: log-dets and canonical correlations."""
    from mi_datagen.info.dense import dense_mi

    sem = canonical(5, [1.0, 0.5], [[0.3, -0.2], [0.1, 0.4]], [[1.0, 0.2], [0.3, 0.9]])
    s = InfoSolver(sem, "dense")
    A = s.dense()
    for a, b, c in [("X1", "X2", ()), ("theta", "X1", ("X2",)), ("X1", "X2", ("theta",))]:
        via_logdet = s.mi(a, b, c)
        assert close(via_logdet, dense_mi(A, [a], [b], list(c)), 1e-9)


@pytest.mark.parametrize("method", ["structured", "dense"])
def test_shared_noise_gives_infinite_mi_not_nan(method):
    """Z2 = Z1 exactly (same cause, same noise): I = +inf with a reason, never NaN."""
    sem = canonical(6, [1.0], [[0.3], [0.3]], [[1.0], [1.0]])
    s = InfoSolver(sem, method)
    assert s.mi("X1", "X2") == math.inf
    assert "deterministic" in s.explain("X1", "X2")
    assert s.logdet(["X1", "X2"]) == -math.inf
    assert s.entropy(["X1", "X2"]) == -math.inf
    assert math.isfinite(s.mi("theta", "X1"))


def test_degenerate_block_uses_canonical_correlations():
    """X1 = ũ·1_d has no own noise (rank-1 covariance): I(θ; X1) = ∞ but I(X1; X2) is finite."""
    sem = canonical(4, [1.0], [[0.5], [0.5]], [[0.0, 0.0], [0.0, 1.0]])
    s = InfoSolver(sem)
    assert s.mi("theta", "X1") == math.inf
    # X1 determines ũ, so I(X1; X2) = I(θ; X2) (θ = ũ here)
    assert close(s.mi("X1", "X2"), s.mi("theta", "X2"))


@settings(max_examples=40, deadline=None)
@given(spec=structured_specs(), data=st.data())
def test_batched_logdets_equal_single(spec, data):
    """prefetch() (stacked, by signature) gives the same log-dets as one-at-a-time logdet()."""
    sem = compile_spec(spec)
    names = list(sem.names)
    sets = [tuple(data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True)))
            for _ in range(8)]
    batched, single = InfoSolver(sem, "structured"), InfoSolver(sem, "structured")
    batched.prefetch(sets)
    for s in sets:
        assert close(batched.logdet(s), single._logdet(tuple(n for n in sem.names if n in s)))


@pytest.mark.parametrize("eps", [1e-1, 1e-3, 1e-5])
def test_ill_conditioned_sets_take_exact_route(eps):
    """X2 = X1 + eps·noise: C_{X1,X2} is nearly singular (SVD route); batched and single agree with dense."""
    from mi_datagen.spec.io import loads_spec

    spec = loads_spec(f"""
name: near
shape: [16]
nodes: [{{name: t, kind: scalar}}, {{name: X1, kind: vector}}, {{name: X2, kind: vector, noise_std: {eps}}}]
edges: [{{parent: t, child: X1, coef: 0.3, template: ones}}, {{parent: X1, child: X2, coef: 1.0}}]
target: t
modalities: [{{node: X1}}, {{node: X2}}]
""")
    sem = compile_spec(spec)
    fast, dense = InfoSolver(sem, "structured"), InfoSolver(sem, "dense")
    fast.prefetch([("X1", "X2"), ("t", "X1", "X2")])
    expected = 16 * -math.log(eps) / 1.0  # ≈ d·log(1/eps) (+ O(1))
    assert close(fast.mi("X1", "X2"), dense.mi("X1", "X2"), 1e-7)
    assert fast.mi("X1", "X2") == pytest.approx(expected, rel=0.1)
