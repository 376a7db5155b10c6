"""Ground-truth entropies of flowed modalities: closed form for a linear flow, and the manifest records."""

import math

import numpy as np
import pytest
import torch

from mi_datagen.api import load_and_expand, solver_for
from mi_datagen.flows.entropy import entropy_estimate, per_sample_logdets
from mi_datagen.flows.ode import SolverConfig, time_grid
from mi_datagen.model.standardize import block_standardizer
from mi_datagen.store.generate import GenerateConfig, generate

from .test_flows import LinearField

torch.set_num_threads(1)

SPEC = """\
name: small
shape: [1, 2, 2]
nodes:
  - {name: c, kind: scalar, noise_std: 1.0}
  - {name: theta, kind: scalar, noise_std: 0.5}
  - {name: X1, kind: vector, noise_std: 0.8}
edges:
  - {parent: c, child: theta, coef: 1.0}
  - {parent: c, child: X1, coef: 0.7, template: {kind: onehot, index: 2}}
target: theta
modalities: [{node: X1, standardize: true}]
"""


def test_entropy_of_a_linear_flow_matches_the_dense_closed_form(tmp_path):
    """x = F(S z) with F = Π (I + h_n A) linear: h(X) = ½ log((2πe)^d |M Σ Mᵀ|), M = F S, from the dense Σ."""
    (tmp_path / "s.yaml").write_text(SPEC)
    spec = load_and_expand(tmp_path / "s.yaml")[0]
    solver = solver_for(spec)
    d = 4
    rng = np.random.default_rng(0)
    A = torch.tensor(rng.standard_normal((d, d)) * 0.4, dtype=torch.float64)
    cfg = SolverConfig(method="euler", steps=4, t_end=0.9)
    F = torch.eye(d, dtype=torch.float64)
    for h in torch.diff(time_grid(cfg, torch.float64)):
        F = (torch.eye(d, dtype=torch.float64) + h * A) @ F
    S = block_standardizer(solver.structured, "X1").standardize(np.eye(d))  # symmetric Σ^(-1/2)
    M = F.numpy() @ S
    Az = solver.dense()["X1"]
    sigma_x = M @ (Az @ Az.T) @ M.T
    exact = 0.5 * (d * math.log(2 * math.pi * math.e) + np.linalg.slogdet(sigma_x)[1])
    net = LinearField(A, (1, 2, 2))
    w = torch.randn(16, 1, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ld = per_sample_logdets(net, w, 0, cfg, terms=30, probes=64)
    nats, se = entropy_estimate(solver.entropy(["X1"]), -0.5 * solver.logdet(["X1"]), [ld])
    assert abs(nats - exact) < 5 * se + 1e-6, (nats, exact, se)
    assert se < 0.05


def test_generate_records_image_entropies(tiny_dir, tmp_path):
    spec = load_and_expand(tiny_dir / "tiny.yaml")[0]
    man = generate(spec, tmp_path / "e.zarr", GenerateConfig(n=16, shard_size=8, chunk_size=8, tile=8, progress=False,
                                                             entropy_samples=4, entropy_terms=4, entropy_probes=2),
                   tiny_dir)
    rec = {tuple(r.nodes): r for r in man.image_entropies}
    assert set(rec) == {("X1",), ("X2",), ("X1", "X2")}
    solver = solver_for(spec)
    for r in rec.values():
        assert r.latent_nats == pytest.approx(solver.entropy(list(r.nodes)), rel=1e-12)
        assert r.n_samples == 4 and math.isfinite(r.stderr) and r.nats == pytest.approx(
            r.latent_nats + r.standardize_logdet + r.flow_logdet_mean, rel=1e-12)
    pair, one, two = rec[("X1", "X2")], rec[("X1",)], rec[("X2",)]
    # block-diagonal Jacobian on the same samples: the pair's log-det terms are the sum of the singles'
    assert pair.flow_logdet_mean == pytest.approx(one.flow_logdet_mean + two.flow_logdet_mean, abs=1e-9)
    assert pair.standardize_logdet == pytest.approx(one.standardize_logdet + two.standardize_logdet, rel=1e-12)
    # and the MI the entropies imply is the exact one (the log-det terms cancel)
    implied = one.nats + two.nats - pair.nats
    assert implied == pytest.approx(man.mi("X1", "X2"), abs=1e-9)


def _gaussian(d: int, n: int, seed: int):
    rng = np.random.default_rng(seed)
    L = rng.standard_normal((d, d)) * 0.5 + np.eye(d)
    cov = L @ L.T
    return rng.multivariate_normal(np.zeros(d), cov, size=n), 0.5 * (d * math.log(2 * math.pi * math.e)
                                                                       + np.linalg.slogdet(cov)[1])


def test_entropy_estimators_low_dimension():
    from mi_datagen.estimators.entropy import flow_entropy, gaussian_entropy, kl_entropy

    x, truth = _gaussian(2, 5000, 2)
    assert gaussian_entropy(x) == pytest.approx(truth, abs=0.05)
    assert kl_entropy(x) == pytest.approx(truth, abs=0.08)
    f = flow_entropy(x, steps=600)
    assert abs(f.nats - truth) < 0.12 and f.stderr < 0.05 and f.bits_per_sample == pytest.approx(f.nats / math.log(2))


def test_entropy_estimators_moderate_dimension():
    """d = 16, correlated: Gaussian and the learnt flow within stated tolerances; KL's known upward bias
    in moderate dimension stays below 20 % of |h|."""
    from mi_datagen.estimators.entropy import flow_entropy, gaussian_entropy, kl_entropy

    x, truth = _gaussian(16, 5000, 16)
    assert gaussian_entropy(x) == pytest.approx(truth, abs=0.2)
    assert abs(flow_entropy(x, steps=600).nats - truth) < 1.0
    assert abs(kl_entropy(x) - truth) < 0.2 * abs(truth)
    with pytest.raises(ValueError, match="need n > d"):
        gaussian_entropy(x[:10])


def test_wishart_logdet_bias_matches_monte_carlo():
    """E log|Σ̂| − log|Σ| by simulation (4000 draws of n = 12 in d = 5, a non-identity Σ) equals the
    closed form to within 4 Monte Carlo standard errors; the closed form does not depend on Σ."""
    from mi_datagen.estimators.baselines import wishart_logdet_bias

    rng = np.random.default_rng(3)
    n, d = 12, 5
    a = rng.normal(size=(d, d))
    cov = a @ a.T + 0.5 * np.eye(d)
    chol = np.linalg.cholesky(cov)
    draws = np.array([np.linalg.slogdet(np.cov(rng.normal(size=(n, d)) @ chol.T, rowvar=False))[1]
                      for _ in range(4000)]) - np.linalg.slogdet(cov)[1]
    assert abs(draws.mean() - wishart_logdet_bias(n, d)) < 4 * draws.std() / math.sqrt(draws.size)
    assert wishart_logdet_bias(n, d) < -1.0  # a large bias at n ≈ 2d, so the test can tell
    with pytest.raises(ValueError, match="need n > d"):
        wishart_logdet_bias(5, 5)


def test_unbiased_gaussian_entropy_and_mi_remove_the_sampling_bias():
    """n = 30 samples in 2 × 8 dimensions, 1500 replicates: the plain estimates are biased by the closed
    form; the unbiased ones average to the truth within 4 standard errors."""
    from mi_datagen.estimators.baselines import gaussian_mi, wishart_logdet_bias
    from mi_datagen.estimators.entropy import gaussian_entropy

    rng = np.random.default_rng(4)
    n, d, r = 30, 8, 0.6  # X and Y: d pairs of coordinates with correlation r
    h_true = d * math.log(2 * math.pi * math.e) / 2
    mi_true = -0.5 * d * math.log(1 - r * r)
    plain_h, unb_h, plain_mi, unb_mi = [], [], [], []
    for _ in range(1500):
        x = rng.normal(size=(n, d))
        y = r * x + math.sqrt(1 - r * r) * rng.normal(size=(n, d))
        plain_h.append(gaussian_entropy(x)), unb_h.append(gaussian_entropy(x, unbiased=True))
        plain_mi.append(gaussian_mi(x, y)), unb_mi.append(gaussian_mi(x, y, unbiased=True))
    se = lambda v: np.std(v) / math.sqrt(len(v))  # noqa: E731
    assert abs(np.mean(unb_h) - h_true) < 4 * se(unb_h)
    assert abs(np.mean(plain_h) - h_true - 0.5 * wishart_logdet_bias(n, d)) < 4 * se(plain_h)
    assert abs(np.mean(unb_mi) - mi_true) < 4 * se(unb_mi)
    assert np.mean(plain_mi) - mi_true > 10 * se(plain_mi)  # the plain MI is clearly biased upwards here
    with pytest.raises(ValueError, match="shrinkage = 0"):
        gaussian_mi(x, y, shrinkage=0.1, unbiased=True)


def test_gaussian_entropy_refuses_fewer_samples_than_dimensions():
    """n ≤ d: the covariance is singular whatever sign rounding gives its log-det."""
    from mi_datagen.estimators.entropy import entropy_of, gaussian_entropy

    x = np.random.default_rng(5).normal(size=(40, 40))
    for est in ("gaussian", "gaussian-unbiased"):
        with pytest.raises(ValueError, match=r"n = 40, d = 40\): need n > d"):
            entropy_of(x, est)
    assert math.isfinite(gaussian_entropy(x[:, :39]))


def test_entropy_check_on_a_flowless_store(tmp_path):
    from mi_datagen.bench.entropy_check import entropy_check, to_uint8, write_check
    from mi_datagen.estimators.entropy import gaussian_entropy
    from mi_datagen.estimators.estimate import estimate

    from .test_dataset import PLAIN

    (tmp_path / "p.yaml").write_text(PLAIN)
    spec = load_and_expand(tmp_path / "p.yaml")[0]
    out = tmp_path / "p.zarr"
    generate(spec, out, GenerateConfig(n=6000, shard_size=1024, chunk_size=64, tile=8, progress=False), tmp_path)
    res = entropy_check(str(out), "X1", "X2", ("gaussian", "kl"), sizes=[1000, 6000])
    solver = solver_for(spec)
    # flow-less, unstandardised modalities: the exact entropies are the latent ones
    assert res["truth_entropies"] == pytest.approx(
        {"a": solver.entropy(["X1"]), "b": solver.entropy(["X2"]), "ab": solver.entropy(["X1", "X2"])}, rel=1e-12)
    for r in res["rows"]:
        assert r["mi"] == pytest.approx(r["h_a"] + r["h_b"] - r["h_ab"], abs=1e-9)
    g = next(r for r in res["rows"] if r["estimator"] == "gaussian" and r["n"] == 6000)
    assert g["mi"] == pytest.approx(res["truth_mi"], abs=0.05) and g["h_ab"] == pytest.approx(
        res["truth_entropies"]["ab"], abs=0.1)
    js, png = write_check(res, tmp_path / "check")
    assert js.exists() and png.stat().st_size > 1000
    q = entropy_check(str(out), "X1", "X2", sizes=[6000], uint8=True)
    assert q["rows"][0]["estimator"] == "lzma"
    # the export's exact entropies in the fine-quantisation limit: h + d·log 127.5 (d = 4 per block here)
    assert q["truth_entropies"] == pytest.approx({k: h + (8 if k == "ab" else 4) * math.log(127.5)
                                                  for k, h in res["truth_entropies"].items()}, rel=1e-12)
    assert 0 <= q["uint8_model_mi"] <= q["truth_mi"]
    assert to_uint8(np.array([-2.0, -1.0, 0.0, 1.0, 3.0])).tolist() == [0, 0, 128, 255, 255]
    # the entropy-difference estimator in the harness interface: with Gaussian entropies it is the Gaussian MI
    from mi_datagen.estimators.pairs import load_pair

    x, y, _ = load_pair(str(out), ["X1"], ["X2"])
    e = estimate(x, y, "entropy-diff", entropy="gaussian")
    assert e.nats == pytest.approx(estimate(x, y, "gaussian").nats, abs=1e-8)
    assert e.nats == pytest.approx(gaussian_entropy(x.reshape(6000, -1)) + gaussian_entropy(y.reshape(6000, -1))
                                   - gaussian_entropy(np.concatenate([x.reshape(6000, -1), y.reshape(6000, -1)], 1)),
                                   abs=1e-9)


def test_inspect_shows_image_entropies(tiny_dir, tmp_path):
    from typer.testing import CliRunner

    from mi_datagen.cli import app

    spec = load_and_expand(tiny_dir / "tiny.yaml")[0]
    generate(spec, tmp_path / "e.zarr", GenerateConfig(n=8, shard_size=8, chunk_size=8, tile=8, progress=False,
                                                       entropy_samples=2, entropy_terms=2, entropy_probes=2), tiny_dir)
    r = CliRunner().invoke(app, ["inspect", str(tmp_path / "e.zarr")])
    assert r.exit_code == 0, r.output
    assert "entropies of the stored modalities" in r.output and "X1,X2" in r.output


def test_whitened_flow_starts_as_the_shrunk_gaussian_and_recovers_a_gaussian_entropy():
    """flow-white with no training steps is the held-out code length of the Gaussian fit it whitens with
    (recomputed here with numpy on the same split); trained, it lands within 0.3 nats of the exact
    entropy of a correlated 16-d Gaussian (n = 5000), and never above its own starting Gaussian on validation."""
    from mi_datagen.estimators.entropy import entropy_of, flow_entropy
    from mi_datagen.estimators.pairs import split_standardize

    x, truth = _gaussian(16, 5000, 16)
    start = flow_entropy(x, steps=0, whiten=True, seed=3)
    xt = torch.as_tensor(x, dtype=torch.float32)
    z, train, val, test, std = split_standardize(xt, torch.Generator().manual_seed(3), 0.2, 0.1)
    lam = start.settings["shrinkage"]
    zt = z.double().numpy()
    cov = (1 - lam) * np.cov(zt[train.numpy()], rowvar=False) + lam * np.eye(16)
    w = np.linalg.solve(np.linalg.cholesky(cov), zt[test.numpy()].T)
    code = 0.5 * (w * w).sum(0) + 0.5 * np.linalg.slogdet(cov)[1] + 8 * math.log(2 * math.pi)
    assert start.nats == pytest.approx(code.mean() + np.log(std.double().numpy()).sum(), abs=1e-3)
    trained = flow_entropy(x, steps=300, whiten=True, seed=3)
    assert abs(trained.nats - truth) < 0.3
    assert min(v for _, v in trained.curve) <= trained.curve[0][1] and trained.curve[0][0] == 0
    assert entropy_of(x, "flow-white", seed=3, steps=0) == pytest.approx(start.nats, rel=1e-12)
