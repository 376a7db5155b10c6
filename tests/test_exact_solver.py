"""The exact solver against closed forms and an independent 300-digit reference (tests/mp_reference.py): large
coefficients, MIs of 10⁵ nats, tiny noises that are not zero, deterministic conditioning, singular sets when d is
small, degenerate blocks at d = 3072."""

import math
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mi_datagen.info.solver import InfoSolver
from mi_datagen.model.compile import compile_spec
from mi_datagen.spec.io import loads_spec
from mi_datagen.testing import hostile_coefs, hostile_stds, structured_specs

from . import mp_reference as ref


def sem_of(text: str):
    return compile_spec(loads_spec(text))


def two(d: int, c: float, own: float = 1.0, x1_noise: float = 1.0, theta_noise: float = 0.0, rho: float = 1.0,
        template: str = "ones") -> str:
    """u → θ, u → X1 (template), X1 → X2 with coefficient c; X2's own noise ``own``."""
    return f"""
name: two
shape: [{d}]
nodes:
  - {{name: u, kind: scalar}}
  - {{name: theta, kind: scalar, noise_std: {theta_noise}}}
  - {{name: X1, kind: vector, noise_std: {x1_noise}}}
  - {{name: X2, kind: vector, noise_std: {own}}}
edges:
  - {{parent: u, child: theta, coef: 1.0}}
  - {{parent: u, child: X1, coef: {rho}, template: {template}}}
  - {{parent: X1, child: X2, coef: {c}}}
target: theta
modalities: [{{node: X1}}, {{node: X2}}]
"""


@pytest.mark.parametrize("d", [16, 3072])
@pytest.mark.parametrize("c", [1e3, 1e6, 1e8, 1e12])
def test_large_coefficients_keep_full_precision(d, c):
    """X2 = c·X1 + ε (X1 = ε1, no common cause): I(X1; X2) = d/2·log(1 + c²) exactly — 84 890 nats at d = 3072,
    c = 1e12. The SVD route lost 9e-3 at c = 1e7 and said ∞ from 1e8."""
    sem = sem_of(two(d, c, rho=0.0))
    got = InfoSolver(sem).mi("X1", "X2")
    assert got == pytest.approx(d / 2 * math.log1p(c * c), rel=1e-12)


@pytest.mark.parametrize("noise", [1.0, 1e-3, 1e-6])
def test_theta_mi_beyond_35_nats_is_finite_and_exact(noise):
    """θ = u, X1 = 1e12·1·u + noise·ε (d = 16): I(θ; X1) = ½ log(1 + d·1e24/noise²), up to 42.6 nats (was ∞)."""
    sem = sem_of(two(16, 1.0, x1_noise=noise, rho=1e12))
    got = InfoSolver(sem).mi("theta", "X1")
    assert math.isfinite(got)
    assert got == pytest.approx(0.5 * math.log1p(16 * 1e24 / noise ** 2), rel=1e-12)


def test_tiny_own_noise_is_not_a_deterministic_relation():
    """X1 = 1·u + 1e-15·ε1, X2 = X1 + ε2 (d = 8): finite in exact arithmetic, and equal to the reference."""
    sem = sem_of(two(8, 1.0, x1_noise=1e-15))
    s = InfoSolver(sem)
    for a, b, c in [("X1", "X2", ()), ("theta", "X1", ()), ("theta", "X2", ("X1",)), ("theta", "X1", ("X2",))]:
        want = ref.mi(sem, [a], [b], list(c))
        got = s.mi(a, b, c)
        assert math.isfinite(want) and got == pytest.approx(want, rel=1e-9, abs=1e-12), (a, b, c)


def test_deterministic_conditioning_is_exactly_zero_with_a_note():
    """X2 = X1 exactly (no own noise): I(θ; X1 | X2) = 0 exactly (was 3.46), with the reason in the note."""
    sem = sem_of(two(8, 1.0, own=0.0))
    s = InfoSolver(sem)
    assert s.mi("theta", "X1", ("X2",)) == 0.0
    assert "deterministic linear function of the conditioning set" in s.explain("theta", "X1", ("X2",))
    assert s.mi("X1", "X2") == math.inf and "rank decided exactly" in s.explain("X1", "X2")
    assert s.mi("theta", "X2") == pytest.approx(ref.mi(sem, ["theta"], ["X2"]), rel=1e-10)


def test_deterministic_conditioning_on_the_dense_route():
    """θ = 1ᵀX1 (a vector → scalar edge: the dense route): I(θ; X2 | X1) = 0 exactly (was 0.022)."""
    sem = sem_of("""
name: readout
shape: [6]
nodes:
  - {name: u, kind: scalar}
  - {name: X1, kind: vector}
  - {name: theta, kind: scalar, noise_std: 0.0}
  - {name: X2, kind: vector}
edges:
  - {parent: u, child: X1, coef: 0.7, template: ones}
  - {parent: X1, child: theta, coef: 1.0, template: ones}
  - {parent: u, child: X2, coef: 0.4, template: ones}
target: theta
modalities: [{node: X1}, {node: X2}]
""")
    s = InfoSolver(sem)
    assert s.method == "dense"
    assert s.mi("theta", "X2", ("X1",)) == 0.0
    assert s.mi("theta", "X1") == math.inf


SMALL_D = """
name: small
shape: [2]
nodes:
  - {{name: u1, kind: scalar}}
  - {{name: u2, kind: scalar}}
  - {{name: u3, kind: scalar}}
  - {{name: theta, kind: scalar, noise_std: 0.0}}
  - {{name: X1, kind: vector, noise_std: 0.0}}
  - {{name: X2, kind: vector}}
edges:
  - {{parent: u1, child: theta, coef: 1.0}}
  - {{parent: {second}, child: theta, coef: 0.5}}
  - {{parent: u1, child: X1, coef: 1.0, template: {{kind: onehot, index: [0]}}}}
  - {{parent: u2, child: X1, coef: 1.0, template: {{kind: onehot, index: [1]}}}}
  - {{parent: u3, child: X2, coef: 1.0, template: ones}}
target: theta
modalities: [{{node: X1}}, {{node: X2}}]
"""


def test_singular_sets_when_d_is_at_most_the_number_of_causes():
    """d = 2, X1 = (u1, u2) without noise: θ = u1 + ½u2 is a function of X1 (∞; was 17.6 nats), θ = u1 + ½u3 is
    not (½ log(1.25 / 0.25))."""
    s = InfoSolver(sem_of(SMALL_D.format(second="u2")))
    assert s.mi("theta", "X1") == math.inf
    sem = sem_of(SMALL_D.format(second="u3"))
    s = InfoSolver(sem)
    assert s.mi("theta", "X1") == pytest.approx(0.5 * math.log(1.25 / 0.25), rel=1e-12)
    assert s.mi("theta", "X1") == pytest.approx(ref.mi(sem, ["theta"], ["X1"]), rel=1e-12)


def test_degenerate_blocks_at_full_size_answer_fast():
    """X1 = 1·u without noise (rank 1 of 3072), X2 = X1 + ε: I(X1; X2) = ½ log(1 + d), in well under a second
    (the dense route took 130–320 s)."""
    sem = sem_of(two(3072, 1.0, x1_noise=0.0).replace("shape: [3072]", "shape: [3, 32, 32]"))
    t0 = time.perf_counter()
    s = InfoSolver(sem)
    got = s.mi("X1", "X2")
    assert got == pytest.approx(0.5 * math.log1p(3072), rel=1e-12)
    assert s.mi("theta", "X1") == math.inf and s.mi("theta", "X2") == pytest.approx(got, rel=1e-12)
    assert time.perf_counter() - t0 < 5


def test_ten_modality_spec_without_target_noise_is_answered():
    """The shipped decay example with η = 0 (θ has no variance): answered inside the structure (was refused)."""
    from mi_datagen.api import load_and_expand, table_for

    spec = load_and_expand("multimodal_decay")[0]
    spec = spec.model_copy(update={"nodes": [n.model_copy(update={"noise_std": 0.0}) if n.name == "u_tilde_1"
                                             else n for n in spec.nodes]})
    t0 = time.perf_counter()
    table = table_for(spec)
    assert time.perf_counter() - t0 < 10
    assert all(r.nats is not None and not math.isnan(r.nats) for r in table.mutual_information)


def _agree(spec, data):
    sem = compile_spec(spec)
    names = list(sem.names)
    s = InfoSolver(sem, "structured")
    for _ in range(4):
        pool = data.draw(st.permutations(names))
        k = len(pool)
        na = data.draw(st.integers(1, max(1, k - 1)))
        nb = data.draw(st.integers(1, max(1, k - na)))
        a, b = pool[:na], pool[na:na + nb]
        if not b:
            continue
        c = pool[na + nb:na + nb + data.draw(st.integers(0, k - na - nb))]
        want, got = ref.mi(sem, a, b, c), s.mi(a, b, c)
        if math.isinf(want) or math.isinf(got):
            assert want == got, (a, b, c, want, got)
        else:
            assert got == pytest.approx(want, rel=1e-8, abs=1e-8), (a, b, c, want, got)


@settings(max_examples=25, deadline=None)
@given(spec=structured_specs(max_d=6), data=st.data())
def test_random_specs_agree_with_the_reference(spec, data):
    """Random DAGs (scalar and vector nodes, noiseless ones included): every I(a; b | c) the solver gives equals
    the reference within 1e-8 relative + 1e-8 nats, and both say ∞ (or exactly 0) together."""
    _agree(spec, data)


@settings(max_examples=25, deadline=None)
@given(spec=structured_specs(max_d=6, coefs=hostile_coefs, stds=hostile_stds), data=st.data())
def test_hostile_specs_agree_with_the_reference(spec, data):
    """The same with coefficients from 1e-12 to 1e12 and noise stds from 1e-15 (or 0) to 1e6."""
    _agree(spec, data)
