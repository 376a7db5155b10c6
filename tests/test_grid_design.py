"""Equal-rate grids designed from a pilot certificate (flow issue, item 4).

The independent reference is a linear field v(x, t) = −k(t)·x: an Euler step's map g = −h·k(t_n)·x contracts
by exactly h·k(t_n), so the pilot must measure k and a designed grid's certified rates are known in closed form."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from mi_datagen.cli import app
from mi_datagen.errors import ConfigError
from mi_datagen.flows.certify import certify
from mi_datagen.flows.grid import design_grid, design_times, off_distribution_latents, pilot_stiffness
from mi_datagen.flows.io import load_flow
from mi_datagen.flows.ode import SolverConfig, time_grid

from .conftest import TINY_SPEC

torch.set_num_threads(1)


def k(t):
    return 1.0 + 4.0 * t + 0.6 / (1.0 - t)


class Linear(nn.Module):
    def forward(self, x, t, c):
        return -k(t).view(-1, 1, 1, 1) * x


def test_constant_stiffness_gives_a_uniform_grid():
    pilot = np.linspace(0, 0.9, 31)
    times, pred = design_times(pilot, np.full(30, 7.0), target=0.65)
    n = int(np.ceil(7.0 * 0.9 / 0.65))  # the fewest steps with h·7 ≤ 0.65
    assert len(times) == n + 1 and times[0] == 0 and times[-1] == 0.9
    assert np.allclose(np.diff(times), 0.9 / n, atol=2 * 0.9 / 20_000)  # the design's t-mesh
    assert np.allclose(pred, 7.0 * 0.9 / n, rtol=1e-3) and pred.max() <= 0.65


def test_stiff_end_gets_short_steps_at_one_rate():
    pilot = time_grid(SolverConfig(steps=96, t_end=0.99, grid="hybrid"), torch.float64).numpy()
    lam = k(torch.from_numpy(pilot[:-1])).numpy()
    times, pred = design_times(pilot, lam, target=0.6)
    h = np.diff(times)
    assert pred.max() <= 0.6 and pred.min() > 0.55  # every step at (nearly) the same rate
    assert h[-1] < h[0] / 5  # the 1/(1 − t) end is resolved, the start is not over-resolved
    assert np.allclose(pred, h * k(torch.from_numpy(times[:-1])).numpy(), rtol=5e-3)  # λ read off the pilot
    t, fewest = 0.0, 0
    while t < 0.99:  # k rises, so the longest admissible step each time gives the fewest steps (exact k here)
        t, fewest = t + 0.6 / float(k(torch.tensor(t, dtype=torch.float64))), fewest + 1
    assert len(h) == fewest


def test_pilot_measures_the_stiffness_and_the_design_is_certified_at_its_rate():
    # float64 latents: the rates are then read without float32 rounding, so they match the closed form closely
    net, z = Linear(), torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    pilot = SolverConfig(method="euler", steps=48, t_end=0.99, grid="hybrid")
    stiff = pilot_stiffness(net, {0: z}, pilot)
    t = time_grid(pilot, torch.float64)[:-1]
    assert np.allclose(stiff, k(t).numpy(), rtol=1e-6)
    design = design_grid(net, {0: z}, target=0.7, t_end=0.99, pilot_steps=48, max_step=1.0)
    cfg = design.solver()
    assert cfg.grid == "designed" and cfg.times == design.times and cfg.steps == len(design.times) - 1
    cert, back = certify(net, z, 0, cfg, lipschitz=False)
    assert cert.certified and torch.allclose(back, z, rtol=1e-4, atol=1e-5)
    grid = time_grid(cfg, torch.float64)
    exact = (torch.diff(grid) * k(grid[:-1])).numpy()  # the closed-form rate of each Euler step
    rates = np.array([s.contraction_rate for s in cert.steps])
    assert np.allclose(rates, exact, rtol=1e-6)
    assert np.allclose(exact, design.predicted, rtol=0.02)  # the trajectory is another, the field's k(t) is not
    assert exact.max() <= 0.7 * 1.02 and exact.min() > 0.6
    assert design.worst_steps(2) == sorted(np.argsort(-np.asarray(design.predicted), kind="stable")[:2].tolist())


def test_step_cap_splits_the_soft_middle_only():
    pilot = time_grid(SolverConfig(steps=96, t_end=0.99, grid="hybrid"), torch.float64).numpy()
    lam = k(torch.from_numpy(pilot[:-1])).numpy()
    free, _ = design_times(pilot, lam, target=0.6)
    capped, pred = design_times(pilot, lam, target=0.6, max_step=0.08)
    assert np.diff(free).max() > 0.08 >= np.diff(capped).max() - 1e-9
    assert len(capped) > len(free) and pred.max() <= 0.6
    limited = np.diff(capped) < 0.08 - 1e-3  # steps the rate, not the cap, limits: one common rate
    assert limited[-3:].all() and np.ptp(pred[limited]) < 0.01 * pred.max()


def test_designed_solver_config_rules():
    times = (0.0, 0.5, 0.9)
    cfg = SolverConfig(steps=2, t_end=0.9, grid="designed", times=times)
    assert torch.equal(time_grid(cfg, torch.float64), torch.tensor(times, dtype=torch.float64))
    assert SolverConfig(**cfg.to_dict()) == cfg
    for bad, msg in ((dict(grid="designed"), "a designed grid needs its times"),
                     (dict(times=times), "only a designed grid takes them"),
                     (dict(grid="designed", times=(0.0, 0.5)), "2 times for 2 steps"),
                     (dict(grid="designed", times=(0.0, 0.95, 0.9)), "must rise strictly from 0 to t_end = 0.9"),
                     (dict(grid="designed", times=(0.1, 0.5, 0.9)), "must rise strictly")):
        with pytest.raises(ConfigError, match=msg):
            SolverConfig(**{"steps": 2, "t_end": 0.9, **bad})
    # the record of every other grid is what it was before designed grids existed (stores keep their sha256)
    assert SolverConfig().to_dict() == dict(method="euler", steps=16, t_end=0.98, grid="uniform", rtol=1e-5, atol=1e-5)
    for bad, msg in ((dict(target=1.2), "target: the designed rate must be in"),
                     (dict(stiffness=[1.0, np.inf]), "did not converge"),
                     (dict(t_end=0.95), "outside the pilot's range"),
                     (dict(max_step=0.0), "max_step: a step cap must be > 0")):
        args = dict(pilot_t=[0.0, 0.5, 0.9], stiffness=[1.0, 2.0], target=0.6) | bad
        with pytest.raises(ConfigError, match=msg):
            design_times(**args)
    with pytest.raises(ConfigError, match="only Euler grids"):
        pilot_stiffness(Linear(), {0: torch.zeros(1, 1, 2, 2)}, SolverConfig(method="rk4", steps=2))


def test_off_distribution_latents_spread_along_two_directions():
    z = off_distribution_latents(400, (3, 8, 8), torch.Generator().manual_seed(1), spread=100.0)
    on_ones = z.flatten(1).mean(1) * 192 ** 0.5  # projection on the unit `ones` direction
    assert abs(float(on_ones[0::2].var()) - 101.0) < 101.0 * 0.3  # N(0, 1 + spread); 200 draws: sd of var ≈ 10 %
    assert float(on_ones[1::2].var()) < 5.0  # the other half spreads along a random direction instead
    total = float(z[1::2].flatten(1).var(0).sum())
    assert abs(total - 292.0) < 292.0 * 0.3  # d + spread


def test_design_grid_cli_writes_a_certified_flow_used_by_generate(tiny_dir, tmp_path):
    from mi_datagen.api import load_and_expand
    from mi_datagen.store.generate import GenerateConfig, generate

    out = tmp_path / "designed.pt"
    runner = CliRunner()
    r = runner.invoke(app, ["design-grid", str(tiny_dir / "tiny.pt"), "--out", str(out), "--n", "2",
                            "--pilot-steps", "24", "--target", "0.5", "--t-end", "0.98"])
    assert r.exit_code == 0, r.output
    f = load_flow(out)
    design = f.meta["grid_design"]
    assert f.solver.grid == "designed" and tuple(design["times"]) == f.solver.times
    assert max(design["predicted"]) <= 0.5 and design["pilot_samples"] == 4
    r = runner.invoke(app, ["certify-flow", str(out), "--n", "2", "--no-lipschitz", "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0 and "all certified" in r.output, r.output
    rates = [s["contraction_rate"] for s in json.loads((tmp_path / "c.json").read_text())["a"]["steps"]]
    assert max(rates) <= 0.5 * 1.5  # a prediction from 4 pilot latents, checked on 2 others
    r = runner.invoke(app, ["design-grid", str(tiny_dir / "tiny.pt"), "--out", str(out)])
    assert r.exit_code == 2 and "the file exists" in r.output and len(r.output.strip().splitlines()) == 1
    # generate certifies per sample the steps the design predicts to be the tightest
    (tmp_path / "d.yaml").write_text(TINY_SPEC.format(checkpoint=str(out), standardize="true"))
    spec = load_and_expand(tmp_path / "d.yaml")[0]
    man = generate(spec, tmp_path / "s.zarr", GenerateConfig(n=16, shard_size=16, chunk_size=8, tile=8, progress=False,
                                                             certify_fraction=1.0, certify_steps=2), tmp_path)
    rec = man.modalities[0].sample_certification
    order = np.argsort(-np.asarray(design["predicted"]), kind="stable")[:2]
    assert rec.steps == sorted(order.tolist()) and rec.n_checked == 16 and rec.n_failed == 0


def test_calibration_scales_each_pilot_step_by_the_observed_over_predicted_ratio_of_its_designed_step():
    from mi_datagen.flows.grid import calibrate_stiffness

    pilot_t, stiff = [0.0, 0.25, 0.5, 0.75, 1.0], [1.0, 2.0, 3.0, 4.0]
    # two designed steps [0, 0.5), [0.5, 1]: observed 1.5× and 2× the predicted rate
    out = calibrate_stiffness(pilot_t, stiff, [0.0, 0.5, 1.0], [0.5, 0.5], [0.75, 1.0])
    np.testing.assert_allclose(out, [1.5, 3.0, 6.0, 8.0])
    # a failed step (∞): rate ≥ 1, so at least 1 / predicted (2.5 here, more than the finite 1.5)
    out = calibrate_stiffness(pilot_t, stiff, [0.0, 0.5, 1.0], [0.5, 0.4], [0.75, float("inf")])
    np.testing.assert_allclose(out, [1.5, 3.0, 7.5, 10.0])
    # … or the largest finite ratio when that is larger
    out = calibrate_stiffness(pilot_t, stiff, [0.0, 0.5, 1.0], [0.5, 0.9], [1.5, float("inf")])
    np.testing.assert_allclose(out, [3.0, 6.0, 9.0, 12.0])
    # an extra profile (a hard latent's own stiffness) wins where it is higher
    out = calibrate_stiffness(pilot_t, stiff, [0.0, 0.5, 1.0], [0.5, 0.5], [0.5, 0.5], extra=[[0, 5.0, 0, 0]])
    np.testing.assert_allclose(out, [1.0, 5.0, 3.0, 4.0])


def test_calibration_errors_name_the_problem():
    from mi_datagen.flows.grid import calibrate_stiffness

    with pytest.raises(ConfigError, match="a grid of 2 steps needs 2 predicted and observed rates, got 2 and 1"):
        calibrate_stiffness([0.0, 0.5, 1.0], [1.0, 1.0], [0.0, 0.5, 1.0], [0.5, 0.5], [0.5])
    with pytest.raises(ConfigError, match="every step failed"):
        calibrate_stiffness([0.0, 0.5, 1.0], [1.0, 1.0], [0.0, 0.5, 1.0], [0.5, 0.5], [np.inf, np.inf])
    with pytest.raises(ConfigError, match="an extra profile needs 2 pilot steps"):
        calibrate_stiffness([0.0, 0.5, 1.0], [1.0, 1.0], [0.0, 0.5, 1.0], [0.5, 0.5], [0.5, 0.5], extra=[[1.0]])


def test_a_registered_grid_applies_the_pinned_weights_on_its_own_solver(tmp_path, monkeypatch):
    from mi_datagen.errors import CheckpointError
    from mi_datagen.flows.ode import flow_map

    from .conftest import make_tiny_flow

    sha = make_tiny_flow(tmp_path / "w.pt", steps=8, t_end=0.98)
    times = [0.0, 0.3, 0.6, 0.9]
    fine = {"method": "euler", "steps": 3, "t_end": 0.9, "grid": "designed", "times": times}
    reg = {"w": {"file": "w.pt", "sha256": sha},
           "w-fine": {"file": "w.pt", "sha256": sha, "solver": fine, "grid_design": {"times": times}},
           "w-bad": {"file": "w.pt", "sha256": sha, "solver": {**fine, "times": [0.0, 0.5]}}}
    (tmp_path / "registry.json").write_text(json.dumps(reg))
    monkeypatch.setenv("MI_DATAGEN_CHECKPOINTS", str(tmp_path))
    a, b = load_flow("w"), load_flow("w-fine")
    assert a.sha256 == b.sha256 == sha and a.path == b.path
    assert a.solver == SolverConfig(steps=8, t_end=0.98) and "grid_design" not in a.meta
    assert b.solver == SolverConfig(**fine) and b.meta["grid_design"] == {"times": times}
    # one file, two maps: what names the map (run records, reports) tells them apart
    assert a.map_id == sha and b.map_id.startswith(sha + "+solver:") and b.map_id != a.map_id
    z = torch.randn((2, 3, 8, 8), generator=torch.Generator().manual_seed(0))
    # the same weights on the registered grid: exactly the file's net run on that solver, not on the file's own
    assert torch.equal(b.map(z, "a"), flow_map(a.net, z, 0, SolverConfig(**fine)))
    assert not torch.allclose(b.map(z, "a"), a.map(z, "a"))
    with pytest.raises(CheckpointError, match=r"registry entry 'w-bad': invalid model_config or solver \(times: 2 "
                                              r"times for 3 steps"):
        load_flow("w-bad")
    # a swapped weights file is refused under every name that pins it
    (tmp_path / "w.pt").write_bytes((tmp_path / "w.pt").read_bytes() + b"\0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_flow("w-fine")
