"""The SSL study runner: objectives, the exact references, the probe, determinism, the suite and its report."""

import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from mi_datagen.api import load_and_expand, solver_for
from mi_datagen.bench.report import load_runs
from mi_datagen.bench.ssl_suite import load_ssl_suite, run_ssl_suite
from mi_datagen.errors import ConfigError, SpecError
from mi_datagen.ssl import SSLSettings, Truth, contrastive_loss, evaluate, infonce_bound, train_encoders
from mi_datagen.ssl.metrics import ridge_probe
from mi_datagen.ssl.objectives import symmetric_ce
from mi_datagen.store.config import GenerateConfig
from mi_datagen.store.generate import generate
from mi_datagen.store.store import Store

torch.set_num_threads(1)

THREE = """\
name: three
shape: [2, 4, 4]
nodes:
  - {name: c, kind: scalar, noise_std: 1.0}
  - {name: theta, kind: scalar, noise_std: 0.5}
  - {name: X1, kind: vector, noise_std: 1.0}
  - {name: X2, kind: vector, noise_std: 1.0}
  - {name: X3, kind: vector, noise_std: 1.0}
edges:
  - {parent: c, child: theta, coef: 1.0}
  - {parent: c, child: X1, coef: 0.4, template: ones}
  - {parent: c, child: X2, coef: 0.3, template: {kind: random, seed: 1}}
  - {parent: c, child: X3, coef: 0.3, template: {kind: random, seed: 2}}
  - {parent: X1, child: X2, coef: 0.5}
target: theta
modalities: [{node: X1}, {node: X2}, {node: X3}]
"""

SUITE = """\
kind: ssl
name: ssl-tiny
description: runner test
datasets:
  - spec: three.yaml
    n: 2400
    generate: {shard_size: 512}
    probes: prefixes
    pairs: [[X1, X2], [X1, X3]]
  - spec: three.yaml
    n: 2400
    seed: 1
    generate: {shard_size: 512}
    modalities: [X1, X4]
objectives:
  - {name: all-pairs, objective: pairs}
  - {name: one-vs-mean, objective: mean, settings: {lr: 2.0e-3}}
settings: {steps: 40, encoder: mlp, embed: 8, hidden: 32, batch_size: 64}
seeds: [0, 1]
"""

FAST = SSLSettings(steps=40, encoder="mlp", embed=8, hidden=32, batch_size=64)


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    d = tmp_path_factory.mktemp("three")
    (d / "three.yaml").write_text(THREE)
    spec = load_and_expand(d / "three.yaml")[0]
    generate(spec, d / "three.zarr", GenerateConfig(n=4000, shard_size=512, progress=False), d)
    return spec, Store(d / "three.zarr")


def test_symmetric_ce_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    a = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    b = torch.nn.functional.normalize(torch.randn(6, 4, generator=g, dtype=torch.float64), dim=1)
    s = torch.tensor(3.0, dtype=torch.float64)
    f = (3.0 * a @ b.T).numpy()
    rows = np.mean([math.log(np.exp(f[i]).sum()) - f[i, i] for i in range(6)])
    cols = np.mean([math.log(np.exp(f[:, i]).sum()) - f[i, i] for i in range(6)])
    assert float(symmetric_ce(a, b, s)) == pytest.approx(0.5 * (rows + cols), rel=1e-12)
    assert float(infonce_bound(a, b, s)) == pytest.approx(math.log(6) - 0.5 * (rows + cols), rel=1e-12)


def test_infonce_bound_is_capped_at_log_n_and_reached_by_a_perfect_critic():
    e = torch.eye(8, dtype=torch.float64)
    assert float(infonce_bound(e, e, torch.tensor(1e3, dtype=torch.float64))) == pytest.approx(math.log(8), abs=1e-9)
    x = torch.randn(8, 5, dtype=torch.float64)
    assert float(infonce_bound(x, -x, torch.tensor(50.0, dtype=torch.float64))) <= math.log(8)


def test_objectives_agree_for_two_modalities_and_differ_for_three():
    g = torch.Generator().manual_seed(1)
    z = [torch.randn(16, 4, generator=g) for _ in range(3)]
    s = torch.tensor(5.0)
    assert float(contrastive_loss(z[:2], s, "pairs")) == pytest.approx(float(contrastive_loss(z[:2], s, "mean")),
                                                                          rel=1e-6)
    assert float(contrastive_loss(z, s, "pairs")) != pytest.approx(float(contrastive_loss(z, s, "mean")), rel=1e-3)
    with pytest.raises(ConfigError, match="objective must be one of"):
        contrastive_loss(z, s, "triplet")  # type: ignore[arg-type]


def test_ridge_probe_reaches_the_noise_level_of_a_linear_model():
    """y = w·x + ε, ε ~ N(0, 0.3²): the probe's test RMSE is 0.3 within sampling error (independent of the code)."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=5)

    def draw(n):
        x = rng.normal(size=(n, 5)) * [1, 2, 3, 4, 5]
        return x, x @ w + 0.3 * rng.normal(size=n)

    res = ridge_probe(draw(4000), draw(1000), draw(4000))
    assert res["test_rmse"] == pytest.approx(0.3, rel=0.05)


def test_truth_matches_the_dense_solver_for_sets_outside_the_manifest(three):
    spec, store = three
    truth, dense = Truth(store), solver_for(spec, method="dense")
    for names in (["X1"], ["X1", "X2"], ["X1", "X2", "X3"]):
        assert truth.mi(["theta"], names) == pytest.approx(dense.mi(["theta"], names), rel=1e-9)
    assert truth.mi(["X1"], ["X2"]) == pytest.approx(store.mi("X1", "X2"), rel=1e-12)
    from mi_datagen.estimators.pairs import load_pair

    assert load_pair(store, ["theta"], ["X1", "X2"])[2] == pytest.approx(dense.mi(["theta"], ["X1", "X2"]), rel=1e-9)
    theta_var = float(np.sum(dense.dense()["theta"] ** 2))  # Σ_θθ = A_θ A_θᵀ
    assert truth.theta_std == pytest.approx(math.sqrt(theta_var), rel=1e-9)


def test_raw_probe_meets_the_bayes_floor_on_gaussian_data(three):
    """On jointly Gaussian (θ, X) the linear predictor is Bayes-optimal: the raw-input probe's RMSE equals the floor
    σ_θ e^(−I(θ; X)) within three standard errors — an independent check of the floor and of the probe."""
    _, store = three
    enc = train_encoders(store, ["X1", "X2", "X3"], FAST, seed=0)
    ev = evaluate(enc, probes=[["X1"], ["X1", "X2", "X3"]])
    for p in ev.probes:
        assert abs(p["raw_test_rmse"] - p["floor"]) < 3 * p["rmse_se"] + 0.01 * p["floor"], p
        assert p["test_rmse"] > p["floor"] - 3 * p["rmse_se"]  # learnt features cannot beat the floor
    for b in ev.bounds:
        assert b["bound"] <= min(b["exact"], b["cap"]) + 0.05  # a lower bound on the exact MI (sampling noise)
    assert not [f for f in ev.flags if "probe" in f]


def test_training_is_deterministic_whatever_the_workers(three):
    _, store = three
    a = train_encoders(store, ["X1", "X2"], FAST, seed=3)
    b = train_encoders(store, ["X1", "X2"], SSLSettings(**{**FAST.__dict__, "workers": 2}), seed=3)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    c = train_encoders(store, ["X1", "X2"], FAST, seed=4)
    assert not all(torch.equal(va, vc) for va, vc in zip(a.state_dict().values(), c.state_dict().values()))


def test_flags_fire_when_a_figure_breaks_its_bound(three, monkeypatch):
    _, store = three
    enc = train_encoders(store, ["X1", "X2"], FAST, seed=0)
    truth = Truth(store)
    monkeypatch.setattr(truth, "mi", lambda a, b, given=(): 1e-3)  # pretend the modalities were independent
    ev = evaluate(enc, truth, probes=[["X1"]])
    assert any("exceeds the exact I(X1; X2)" in f for f in ev.flags)
    assert any("below the Bayes floor" in f for f in ev.flags)  # floor σ_θ e^(−0.001) is above any real RMSE


def test_settings_and_split_errors_are_one_line(three):
    _, store = three
    with pytest.raises(ConfigError, match="unknown keys \\['stepz'\\]"):
        SSLSettings.make(stepz=3)
    with pytest.raises(ConfigError, match="lr = -1.0 is invalid; it must be > 0"):
        SSLSettings.make(lr=-1.0)
    with pytest.raises(ConfigError, match="needs at least two"):
        train_encoders(store, ["X1"], FAST)
    with pytest.raises(ConfigError, match="fewer than batch_size 4096"):
        train_encoders(store, ["X1", "X2"], SSLSettings(batch_size=4096))


@pytest.fixture
def suite_dir(tmp_path):
    (tmp_path / "three.yaml").write_text(THREE)
    (tmp_path / "ssl.yaml").write_text(SUITE)
    return tmp_path


def test_suite_runs_records_failures_reports_and_never_redoes(suite_dir):
    out = run_ssl_suite(suite_dir / "ssl.yaml", suite_dir / "out", progress=False)
    runs = load_runs(out)
    assert len(runs) == 2 * 2 * 2  # datasets × objectives × seeds
    failed = [r for r in runs if r["status"] != "ok"]
    assert len(failed) == 4 and all("X4" in r["error"] for r in failed)  # the second dataset names no X4
    ok = [r for r in runs if r["status"] == "ok"]
    assert {tuple(p["inputs"]) for p in ok[0]["probes"]} == {("X1",), ("X1", "X2"), ("X1", "X2", "X3")}
    assert [(b["a"], b["b"]) for b in ok[0]["bounds"]] == [("X1", "X2"), ("X1", "X3")]
    assert {r["train"]["settings"]["lr"] for r in ok if r["objective"] == "one-vs-mean"} == {2e-3}
    report = (out / "report.md").read_text()
    assert {r["dataset"] for r in runs} == {"three-n2400-s0", "three-n2400-s1"}  # one spec, two datasets
    assert "| three-n2400-s0 | all-pairs | X1+X2 |" in report and "## Failed runs" in report
    for png in ("probe.png", "bounds.png", "representation_mi.png"):
        assert (out / png).stat().st_size > 1000
    stamp = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    run_ssl_suite(suite_dir / "ssl.yaml", suite_dir / "out", progress=False)
    again = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}
    done = {f"{r['id']}.json" for r in ok}
    assert all(again[k] == stamp[k] for k in done)  # finished runs are not redone


@pytest.mark.parametrize("edit, message", [
    ("settings: {stepz: 3}", "settings: unknown settings ['stepz']"),
    ("objectives: [{name: a, objective: pairs}, {name: a, objective: mean}]", "names ['a'] are used twice"),
    ("objectives: [{name: a, objective: triplet}]", "objective"),
])
def test_suite_validation_errors(suite_dir, edit, message):
    text = SUITE.split("objectives:")[0] + edit + "\n"
    if not edit.startswith("objectives"):
        text += "objectives: [{name: a, objective: pairs}]\n"
    (suite_dir / "bad.yaml").write_text(text)
    with pytest.raises(SpecError) as e:
        load_ssl_suite(suite_dir / "bad.yaml")
    assert message in str(e.value)


def test_cli_ssl_summary_and_one_line_error(suite_dir):
    from mi_datagen.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["ssl", str(suite_dir / "ssl.yaml"), "--out", str(suite_dir / "cli"), "--datasets", "three"])
    assert res.exit_code == 0, res.output
    assert "4/8 runs ok; probe RMSE / Bayes floor" in res.output  # the second dataset's runs fail (no X4)
    (suite_dir / "bad.yaml").write_text("name: x\ndatasets: []\nobjectives: []\n")
    res = runner.invoke(app, ["ssl", str(suite_dir / "bad.yaml")])
    assert res.exit_code == 2 and "not an SSL suite (it needs `kind: ssl`)" in res.output
    (suite_dir / "bad.yaml").write_text("kind: ssl\nname: x\ndatasets: []\nobjectives: []\n")
    res = runner.invoke(app, ["ssl", str(suite_dir / "bad.yaml")])
    assert res.exit_code == 2 and "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
