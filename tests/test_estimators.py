"""Estimators on Gaussians of known MI: bounds at the exact critic, trained estimators, baselines, errors."""

import math

import numpy as np
import pytest
import torch

from mi_datagen.estimators import bounds as B
from mi_datagen.estimators.baselines import gaussian_mi, ksg_mi
from mi_datagen.estimators.estimate import EstimatorError, estimate

torch.set_num_threads(1)


def correlated(d: int, mi: float, n: int, seed: int = 0):
    """x, y ∈ R^d with componentwise correlation ρ: I = −d/2 log(1 − ρ²) = mi."""
    rng = np.random.default_rng(seed)
    rho = math.sqrt(1 - math.exp(-2 * mi / d))
    x = rng.standard_normal((n, d))
    return x, rho * x + math.sqrt(1 - rho ** 2) * rng.standard_normal((n, d)), rho


def shared_direction(d: int, mi: float, n: int, seed: int = 0):
    """x, y ∈ R^d sharing one scalar along the normalised ones direction (how our datasets carry MI)."""
    rng = np.random.default_rng(seed)
    r = math.sqrt(1 - math.exp(-2 * mi))
    a = math.sqrt(r / (1 - r))  # along u: corr = a²/(a² + 1) = r
    c, u = rng.standard_normal((n, 1)), np.ones((1, d)) / math.sqrt(d)
    return a * c * u + rng.standard_normal((n, d)), a * c * u + rng.standard_normal((n, d))


def test_bounds_at_the_exact_critic():
    """With f = log p(x,y)/(p(x)p(y)) known in closed form, each readout recovers the MI (up to batch effects)."""
    truth, n = 0.5, 1500
    x, y, rho = correlated(1, truth, n, seed=3)
    x, y = torch.tensor(x[:, 0]), torch.tensor(y[:, 0])
    s2 = 1 - rho ** 2
    f = (-0.5 * math.log(s2) - (y[None, :] - rho * x[:, None]) ** 2 / (2 * s2) + y[None, :] ** 2 / 2)  # f[i, j]
    assert float(B.dv(f)) == pytest.approx(truth, abs=0.06)
    assert float(B.tuba(f)) == pytest.approx(truth, abs=0.06)
    assert float(B.nwj(f + 1)) == pytest.approx(float(B.tuba(f)), abs=1e-12)  # NWJ at f + 1 is the tuba form
    assert float(B.infonce(f)) == pytest.approx(truth, abs=0.06)  # log n = 7.3 ≫ I
    assert float(B.smile(f, None)) == pytest.approx(float(B.dv(f)), abs=1e-12)
    # the JS objective is maximised at the log density ratio: moving f away lowers it
    assert float(B.js_fgan(f)) > float(B.js_fgan(f + 0.5)) and float(B.js_fgan(f)) > float(B.js_fgan(0.5 * f))


LOWER = [("dv", {}), ("mine", {}), ("nwj", {}), ("js", {}), ("infonce", {}),
         ("smile", {"tau": 1.0}), ("smile", {"tau": 5.0}), ("smile", {})]


@pytest.mark.parametrize("method,kw", LOWER, ids=[f"{m}{kw.get('tau', '')}" for m, kw in LOWER])
def test_lower_bounds_on_low_dimensional_gaussians(method, kw):
    """d = 2, I = 0.5 nats, 4000 pairs, 600 steps: held-out estimate within 0.12 nats of the truth."""
    x, y, _ = correlated(2, 0.5, 4000)
    r = estimate(x, y, method, seed=0, steps=600, **kw)
    assert abs(r.nats - 0.5) < 0.12, r.nats
    assert r.n_test == 800 and len(r.curve) == 50 and r.train_average is not None


@pytest.mark.parametrize("method,kw", [("nwj", {}), ("infonce", {}), ("smile", {"tau": 1.0}), ("dv", {})])
def test_lower_bounds_in_64_dimensions(method, kw):
    """d = 64 with the MI (1 nat) along one direction, 6000 pairs, 800 steps: within [0.6, 1.1] nats."""
    x, y = shared_direction(64, 1.0, 6000)
    r = estimate(x, y, method, seed=0, steps=800, **kw)
    assert 0.6 < r.nats < 1.1, r.nats


def test_club_upper_bounds_the_mi_on_average():
    """CLUB with the Gaussian q(y|x) converges to E_p log p(y|x) − E_pxpy log p(y|x) = d ρ²/(1 − ρ²) ≥ I."""
    d, truth = 2, 0.5
    vals = []
    for seed in (0, 1):
        x, y, rho = correlated(d, truth, 4000, seed=seed)
        vals.append(estimate(x, y, "club", seed=seed, steps=600).nats)
    assert np.mean(vals) >= truth - 0.05
    assert np.mean(vals) == pytest.approx(d * rho ** 2 / (1 - rho ** 2), rel=0.15)


def test_infonce_respects_log_batch():
    x, y, _ = correlated(2, 6.0, 3000)
    r = estimate(x, y, "infonce", seed=0, steps=300, batch_size=16)
    assert math.log(16) - 0.6 < r.nats <= math.log(16) + 1e-6


def test_baselines():
    x, y, _ = correlated(3, 0.8, 20000)
    assert gaussian_mi(x, y) == pytest.approx(0.8, abs=0.03)
    assert ksg_mi(x[:4000], y[:4000]) == pytest.approx(0.8, abs=0.08)
    assert estimate(x, y, "gaussian").nats == pytest.approx(gaussian_mi(x, y), abs=1e-6)
    with pytest.raises(ValueError, match="KSG in 200 dimensions is not meaningful"):
        ksg_mi(np.zeros((10, 100)), np.zeros((10, 100)))
    with pytest.raises(ValueError, match="singular sample covariance"):
        gaussian_mi(np.zeros((5, 10)), np.zeros((5, 10)))


def test_same_seed_same_estimate_and_errors():
    x, y, _ = correlated(2, 0.5, 1000)
    a, b = (estimate(x, y, "nwj", seed=4, steps=50) for _ in range(2))
    assert a.nats == b.nats and a.curve == b.curve
    with pytest.raises(EstimatorError, match="unknown method 'mutual'"):
        estimate(x, y, "mutual")
    with pytest.raises(EstimatorError, match=r"unknown estimator settings \['stepz'\]"):
        estimate(x, y, "dv", stepz=3)
    with pytest.raises(EstimatorError, match="same number of samples"):
        estimate(x, y[:10], "dv")
    with pytest.raises(EstimatorError, match="fewer than batch_size 512"):
        estimate(x, y, "dv", batch_size=512)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(EstimatorError, match="training objective became nan"):
        estimate(bad, y, "dv", steps=5)


def test_image_shaped_inputs_use_conv_critics():
    rng = np.random.default_rng(0)
    c = rng.standard_normal((1200, 1, 1, 1))
    x = 0.8 * c + rng.standard_normal((1200, 3, 8, 8))
    y = 0.8 * c + rng.standard_normal((1200, 3, 8, 8))
    r = estimate(x, y, "infonce", steps=100, critic="joint")
    assert math.isfinite(r.nats) and r.settings["critic"] == "joint"
    assert math.isfinite(estimate(x, y, "nwj", steps=50, encoder="patch").nats)
    with pytest.raises(ValueError, match="encoder must be auto, mlp, conv, conv-flat or patch"):
        estimate(x[:, :, 0, 0], y[:, :, 0, 0], "nwj", steps=5, encoder="conv")


def test_conv_flat_encoder_keeps_the_final_map():
    """`conv-flat` ends in a linear layer over the whole final map (2×2 cells for 32×32, any H, W), where `conv`
    averages it away."""
    import torch

    from mi_datagen.estimators.critics import encoder

    pooled, flat = encoder((3, 32, 32), 8, 16, 4, "conv"), encoder((3, 32, 32), 8, 16, 4, "conv-flat")
    assert isinstance(pooled.net[-3], torch.nn.AdaptiveAvgPool2d)
    assert not any(isinstance(m, torch.nn.AdaptiveAvgPool2d) for m in flat.net)
    assert flat.net[-1].in_features == (4 * 4) * 4  # 4·width channels at each of the 2×2 cells
    assert encoder((3, 32, 64), 8, 16, 4, "conv-flat").net[-1].in_features == (4 * 4) * 8
    assert flat(torch.zeros(5, 3, 32, 32)).shape == (5, 8)
