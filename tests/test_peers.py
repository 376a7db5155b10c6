"""Peer estimators through the external protocol (torch-mist, latentmi; installed by `make peers`, which
`make test` runs): they run on numpy 2, return held-out nats near the truth on Gaussian pairs, and sit in a
suite's report beside ours."""

import math

import numpy as np
import torch

from mi_datagen.bench.report import load_runs
from mi_datagen.bench.suite import run_suite
from mi_datagen.estimators.peers import latent_mi, torch_mist

torch.set_num_threads(1)


def gaussian_pair(n=1500, d=2, rho=0.8, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    y = rho * x + math.sqrt(1 - rho ** 2) * rng.standard_normal((n, d))
    return x, y, -0.5 * d * math.log(1 - rho ** 2)  # 1.02 nats


def test_torch_mist_estimates_are_held_out_and_near_the_truth():
    x, y, truth = gaussian_pair()
    r = torch_mist(x[:1200], y[:1200], x[1200:], y[1200:], seed=0, estimator="smile", max_iterations=400)
    assert r["library"] == "torch-mist" and abs(r["nats"] - truth) < 0.35, (r, truth)
    a = torch_mist(x[:1200], y[:1200], x[1200:], y[1200:], seed=3, estimator="infonce", max_iterations=100)
    b = torch_mist(x[:1200], y[:1200], x[1200:], y[1200:], seed=3, estimator="infonce", max_iterations=100)
    assert a["nats"] == b["nats"]  # seeded


def test_latent_mi_runs_on_numpy_2():
    x, y, truth = gaussian_pair()
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    r = latent_mi(x[:1200], y[:1200], x[1200:], y[1200:], seed=0, N_dims=2, epochs=8, batch_size=256, lr=1e-3)
    assert r["library"] == "latentmi" and 0.3 < r["nats"] < truth + 0.3, (r, truth)
    assert np.array_equal(np.random.get_state()[1], before)  # latentmi's use of numpy's global generator is undone


def test_peers_sit_beside_ours_in_a_suite(tmp_path):
    from .test_dataset import PLAIN

    (tmp_path / "plain.yaml").write_text(PLAIN)
    (tmp_path / "s.yaml").write_text("""\
name: peers
datasets:
  - {spec: plain.yaml, n: 1000, images: false, pairs: [[[X1], [X2]]], generate: {shard_size: 256}}
estimators:
  - {name: Gaussian, method: gaussian}
  - {name: torch-mist SMILE, method: external, callable: "mi_datagen.estimators.peers:torch_mist",
     settings: {estimator: smile, max_iterations: 200}}
seeds: [0]
""")
    out = run_suite(tmp_path / "s.yaml", tmp_path / "out", progress=False)
    runs = {r["estimator"]: r for r in load_runs(out)}
    assert runs["torch-mist SMILE"]["status"] == "ok" and math.isfinite(runs["torch-mist SMILE"]["estimate"])
    assert "| torch-mist SMILE | external |" in (out / "report.md").read_text()
