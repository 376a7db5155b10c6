"""Flows: training loop, resume, the applied map's exact inverse, certification, log-det, checkpoints."""

import numpy as np
import pytest
import torch
from PIL import Image

from mi_datagen.errors import SpecError
from mi_datagen.flows.certify import CertificationError, certify, invert, invert_step, require_certified
from mi_datagen.flows.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mi_datagen.flows.images import load_images
from mi_datagen.flows.logdet import exact_logdet, flow_logdet, series_from_traces, step_jacobian
from mi_datagen.flows.ode import SolverConfig, flow_map, reverse_solve, step_map, time_grid
from mi_datagen.flows.train import TrainConfig, train
from mi_datagen.flows.unet import UNet, UNetConfig

torch.set_num_threads(1)
TINY = UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), emb_dim=16, groups=4, num_classes=2)
TINY4 = UNetConfig(image_size=4, base_channels=8, channel_mults=(1, 2), emb_dim=16, groups=4, num_classes=2)


class LinearField(torch.nn.Module):
    """v(x, t, c) = A x on flattened x: Euler steps are I + hA, so everything is known in closed form."""

    def __init__(self, A: torch.Tensor, shape):
        super().__init__()
        self.A, self.shape = A, shape
        self.cfg = UNetConfig(image_size=shape[-1], image_channels=shape[0])

    def forward(self, x, t, c):
        return (x.flatten(1) @ self.A.T).reshape(x.shape)


def perturbed(cfg, scale=0.05, seed=0, dtype=torch.float64):
    """A tiny UNet with random non-zero weights (its zero-initialised output layer would make v = 0)."""
    torch.manual_seed(seed)
    net = UNet(cfg).to(dtype).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn_like(p))
    return net


@pytest.fixture
def folder(tmp_path):
    """An ImageFolder of 8×8 PNGs: two classes with different colour statistics."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(["reds", "blues"]):
        (tmp_path / name).mkdir()
        for i in range(16):
            img = rng.integers(0, 80, (8, 8, 3))
            img[..., 0 if c == 0 else 2] += 150
            Image.fromarray(img.astype(np.uint8)).save(tmp_path / name / f"{i}.png")
    return tmp_path


def test_imagefolder_loader_and_cache(folder, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    d = load_images("imagefolder", folder, image_size=8, cache_dir=cache)
    assert d.images.shape == (32, 3, 8, 8) and d.images.dtype == np.uint8
    assert d.classes == ("blues", "reds") and set(d.labels.tolist()) == {0, 1}
    again = load_images("imagefolder", folder, image_size=8, cache_dir=cache)
    np.testing.assert_array_equal(d.images, again.images)
    assert len(list(cache.iterdir())) == 1


def test_training_reduces_loss_and_resume_is_exact(folder, tmp_path):
    data = load_images("imagefolder", folder, image_size=8)
    cfg = TrainConfig(steps=120, batch_size=16, lr=2e-3, warmup=10, checkpoint_every=60, sample_every=0, seed=3)
    ck = train(data, tmp_path / "a", TINY, cfg, quiet=True)
    state = load_checkpoint(ck)
    losses = [v for _, v in state["losses"]]
    assert state["step"] == 120 and losses[-1] < 0.8 * losses[0], losses
    # the same run, interrupted at step 60 and resumed, ends bit-identical
    train(data, tmp_path / "b", TINY, TrainConfig(**{**cfg.to_dict(), "steps": 60}), quiet=True)
    train(data, tmp_path / "b", TINY, cfg, quiet=True)
    other = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for k, v in state["model"].items():
        assert torch.equal(v, other["model"][k]), k
    assert "ImageFolder" in state["data"] and state["model_config"] == TINY.to_dict()


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
def test_steps_compose_to_the_applied_map(method):
    net = perturbed(TINY, dtype=torch.float32)
    cfg = SolverConfig(method=method, steps=5, t_end=0.9, grid="geometric")
    z = torch.randn(4, 3, 8, 8)
    x = z
    with torch.no_grad():
        for n in range(cfg.steps):
            x = step_map(net, x, 1, cfg, n)
    assert torch.equal(x, flow_map(net, z, 1, cfg))


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-11), (torch.float32, 1e-4)])
def test_exact_inverse_round_trip(dtype, tol):
    net = perturbed(TINY, dtype=dtype)
    cfg = SolverConfig(method="euler", steps=8, t_end=0.98)
    z = torch.randn(5, 3, 8, 8, dtype=dtype)
    cert, z_rec = certify(net, z, 0, cfg, tol=1e-13 if dtype == torch.float64 else 1e-6)
    assert cert.certified, cert.summary()
    assert cert.roundtrip_rel_rms_max < tol
    assert torch.allclose(invert(net, flow_map(net, z, 0, cfg), 0, cfg), z, atol=10 * tol)
    # the reverse-time solve is a different map: its error is the discretisation error, far larger
    back = reverse_solve(net, flow_map(net, z, 0, cfg), 0, cfg)
    assert (back - z).pow(2).mean().sqrt() / z.pow(2).mean().sqrt() > 10 * cert.roundtrip_rel_rms_max


def test_non_contractive_grid_is_detected_and_refused():
    d = 12
    A = -8.0 * torch.eye(d, dtype=torch.float64)  # step x ↦ (1 − 8h) x: fixed point iteration needs 8h < 1
    net = LinearField(A, (3, 2, 2))
    z = torch.randn(3, 3, 2, 2, dtype=torch.float64)
    coarse = SolverConfig(method="euler", steps=2, t_end=1.0)  # h = 0.5: 8h = 4 > 1
    cert, _ = certify(net, z, 0, coarse, lipschitz=True)
    assert not cert.certified and cert.failed_steps() == [0, 1]
    assert all(s.lipschitz == pytest.approx(4.0, rel=1e-6) for s in cert.steps)
    with pytest.raises(CertificationError, match=r"failed certification at steps \[0, 1\]"):
        require_certified(cert)
    require_certified(cert, force=True)  # forcing is the caller's explicit choice
    with pytest.raises(CertificationError, match="did not converge"):
        invert(net, flow_map(net, z, 0, coarse), 0, coarse)
    fine = SolverConfig(method="euler", steps=16, t_end=1.0)  # h = 1/16: 8h = 0.5
    cert, z_rec = certify(net, z, 0, fine)
    assert cert.certified and torch.allclose(z_rec, z, atol=1e-12)
    assert all(s.lipschitz == pytest.approx(0.5, rel=1e-6) for s in cert.steps)


class FloorNoiseField(LinearField):
    """LinearField plus an additive term on sample 1 that grows by 1e-13 per call: a stand-in for rounding noise,
    which makes that sample's fixed-point updates grow once they reach the float floor."""

    calls = 0

    def forward(self, x, t, c):
        self.calls += 1
        out = super().forward(x, t, c).clone()
        out[1] += 1e-13 * self.calls
        return out


def test_slow_sample_beside_a_sample_at_the_float_floor_converges():
    """Regression (staircase dataset 0, airplane, step 5): one sample contracting at rate 0.8 while another is at the
    float floor, where its updates grow a little, was declared diverging — the test was "some update grows" and
    "some update > 1e-3", true of two different samples. Divergence is one sample whose update is large and grows."""
    d = 2
    A = torch.diag(torch.tensor([-1.6, -0.1], dtype=torch.float64))  # h = 0.5: rates h|λ| = 0.8 and 0.05
    net = FloorNoiseField(A, (2, 1, 1))
    cfg = SolverConfig(method="euler", steps=2, t_end=1.0)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64).reshape(2, d, 1, 1)  # one sample per eigenvector
    y = step_map(net, z, 0, cfg, 0)
    x, iterations, converged, rate, _ = invert_step(net, y, 0, cfg, 0, tol=1e-6)
    assert converged and iterations > 30  # 0.8^k < 1e-6 needs k ≈ 62: far past the k > 8 divergence guard
    assert rate == pytest.approx(0.8, rel=1e-3)
    assert torch.allclose(x[0], z[0], atol=1e-5)
    # a truly diverging sample (rate 4) is still refused
    with pytest.raises(CertificationError, match="did not converge"):
        invert(LinearField(-8.0 * torch.eye(d, dtype=torch.float64), (2, 1, 1)), y, 0, cfg)


class ClassStiffness(torch.nn.Module):
    """v = −k[c]·x: an Euler step of length h contracts every sample of class c by exactly h·k[c]."""

    def __init__(self, k):
        super().__init__()
        self.k = torch.tensor(k, dtype=torch.float64)

    def forward(self, x, t, c):
        return -self.k[c].view(-1, 1, 1, 1).to(x) * x


def test_per_sample_certificate_is_each_samples_closed_form_rate():
    """certify_samples on a batch mixing a fast (rate 0.05) and a slow (rate 0.8) class, labels per sample: every
    sample's value is its own h·k[c], not the batch's worst."""
    from mi_datagen.flows.certify import certify_samples

    net = ClassStiffness([0.1, 1.6])  # h = 0.5: rates 0.05 and 0.8
    cfg = SolverConfig(method="euler", steps=2, t_end=1.0)
    labels = torch.tensor([0, 1, 0, 0, 0, 0, 0, 1])
    z = torch.randn((8, 2, 1, 1), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    y = step_map(net, z, labels, cfg, 0)
    v = certify_samples(net, z, y, labels, cfg, 0, lipschitz=False)
    assert torch.allclose(v, 0.5 * net.k[labels], rtol=1e-3)


def test_logdet_linear_field_closed_form():
    """Euler steps of v = A x: log|det ∂F/∂z| = Σ_n log|det(I + h_n A)| exactly."""
    d = 12
    rng = np.random.default_rng(1)
    A = torch.tensor(rng.standard_normal((d, d)) * 0.3, dtype=torch.float64)
    net = LinearField(A, (3, 2, 2))
    cfg = SolverConfig(method="euler", steps=6, t_end=0.9, grid="geometric")
    h = torch.diff(time_grid(cfg, torch.float64))
    truth = sum(torch.linalg.slogdet(torch.eye(d, dtype=torch.float64) + hn * A)[1] for hn in h)
    z = torch.randn(2, 3, 2, 2, dtype=torch.float64)
    assert torch.allclose(exact_logdet(net, z, 0, cfg), truth.expand(2), atol=1e-10)
    est = flow_logdet(net, z, 0, cfg, terms=25, probes=256, seed=0)
    assert (est.value - truth).abs().max() < 5 * est.stderr.max() + 1e-6


def test_logdet_unet_small_d_against_autograd():
    """d = 48: the power series with exact traces equals slogdet; Hutchinson lands within 5 SE."""
    net = perturbed(TINY4)
    cfg = SolverConfig(method="midpoint", steps=3, t_end=0.95)
    z = torch.randn(2, 3, 4, 4, dtype=torch.float64)
    J = step_jacobian(net, z[:1], 1, cfg, 0)
    assert torch.linalg.matrix_norm(J, 2) < 0.5
    traces = torch.stack([torch.trace(torch.linalg.matrix_power(J, k)) for k in range(1, 40)])
    exact_step = torch.linalg.slogdet(torch.eye(48, dtype=torch.float64) + J)[1]
    assert series_from_traces(traces) == pytest.approx(exact_step.item(), abs=1e-10)
    exact = exact_logdet(net, z, 1, cfg)
    est = flow_logdet(net, z, 1, cfg, terms=12, probes=64, seed=1)
    assert ((est.value - exact).abs() < 5 * est.stderr + 1e-6).all(), (est.value, exact, est.stderr)


def test_same_latent_same_image_in_any_batch():
    net = perturbed(TINY, dtype=torch.float32)
    cfg = SolverConfig(method="rk4", steps=4, t_end=0.98)
    z = torch.randn(7, 3, 8, 8)
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 0])
    batch = flow_map(net, z, labels, cfg)
    for i in (0, 3, 6):
        alone = flow_map(net, z[i:i + 1], labels[i:i + 1], cfg)
        assert torch.allclose(alone, batch[i:i + 1], atol=1e-5, rtol=0)


def test_checkpoint_hash_is_verified(tmp_path):
    p = tmp_path / "c.pt"
    digest = save_checkpoint({"w": torch.ones(3), "step": 1}, p)
    assert load_checkpoint(p)["step"] == 1 and load_checkpoint(p, expected_sha256=digest)["step"] == 1
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(p, expected_sha256="0" * 64)
    p.write_bytes(p.read_bytes() + b"tampered")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_checkpoint(p)
    (tmp_path / "c.pt.sha256").unlink()
    with pytest.raises(CheckpointError, match="no sha256 recorded"):
        load_checkpoint(p)


def test_checkpoint_refuses_pickled_objects(tmp_path):
    """weights_only=True: arbitrary python objects in a checkpoint are refused even with a valid hash."""
    p = tmp_path / "evil.pt"
    torch.save({"cfg": SolverConfig()}, p)  # a pickled dataclass: not a weights-only payload
    from mi_datagen.flows.checkpoint import sha256_file

    with pytest.raises(Exception, match="Weights only load failed|weights_only"):
        load_checkpoint(p, expected_sha256=sha256_file(p))


def test_export_load_registry_and_cli(folder, tmp_path, monkeypatch):
    import json

    from typer.testing import CliRunner

    from mi_datagen.cli import app
    from mi_datagen.flows.io import export_flow, load_flow

    data = load_images("imagefolder", folder, image_size=8)
    ck = train(data, tmp_path / "run", TINY, TrainConfig(steps=20, batch_size=8, warmup=5, checkpoint_every=20,
                                                         sample_every=0), quiet=True)
    flows = tmp_path / "flows"
    monkeypatch.setenv("MI_DATAGEN_FLOWS", str(flows))
    solver = SolverConfig(method="euler", steps=6, t_end=0.95)
    export_flow(ck, flows / "tiny.pt", solver, name="tiny")
    f = load_flow("tiny")
    assert f.classes == ("blues", "reds") and f.solver == solver and f.label_index("reds") == 1
    with pytest.raises(SpecError, match="class 'greens' is not in tiny.pt"):
        f.label_index("greens")
    z = torch.randn(2, *f.shape)
    assert torch.equal(f.map(z, "reds"), flow_map(f.net, z, 1, solver))
    # loaded flows run channels-last (NHWC): same map up to float rounding, NCHW output
    from mi_datagen.flows.unet import is_channels_last

    assert is_channels_last(f.net) and f.map(z, "reds").is_contiguous()
    nchw = UNet(f.net.cfg)
    nchw.load_state_dict(f.net.state_dict())
    assert not is_channels_last(nchw)
    assert torch.allclose(flow_map(nchw, z, 1, solver), f.map(z, "reds"), atol=1e-5, rtol=0)
    # the registry pins the hash: a replaced file is refused even with a matching sidecar
    save_checkpoint(torch.load(flows / "tiny.pt", weights_only=True) | {"step": 999}, flows / "tiny.pt")
    with pytest.raises(CheckpointError, match="sha256 mismatch"):
        load_flow("tiny")
    export_flow(ck, flows / "tiny.pt", solver, name="tiny")
    runner = CliRunner()
    r = runner.invoke(app, ["certify-flow", "tiny", "--n", "2", "--json", str(tmp_path / "c.json"), "--no-lipschitz"])
    assert r.exit_code == 0, r.output
    assert "all certified" in r.output and set(json.loads((tmp_path / "c.json").read_text())) == {"blues", "reds"}
    r = runner.invoke(app, ["sample-flow", "tiny", "--out", str(tmp_path / "g.png"), "--per-class", "2"])
    assert r.exit_code == 0 and (tmp_path / "g.png").is_file()
    r = runner.invoke(app, ["certify-flow", "nope"])
    assert r.exit_code == 2 and "neither a shipped flow" in r.output


def test_quality_metrics_on_tiny_data(folder):
    from mi_datagen.flows.quality import accuracy, frechet_distance, train_classifier

    data = load_images("imagefolder", folder, image_size=8)
    clf, info = train_classifier(data, epochs=15, batch_size=8, lr=5e-3, quiet=True)
    assert accuracy(clf, data) == 1.0  # red vs blue images are separable
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4000, 3)), rng.standard_normal((4000, 3))
    assert frechet_distance(a, b) < 0.02
    # shifted mean by 2 in one coordinate and doubled std in another: FD = 4 + (2 − 1)² = 5
    c = b * np.array([1.0, 2.0, 1.0]) + np.array([2.0, 0.0, 0.0])
    assert frechet_distance(a, c) == pytest.approx(5.0, rel=0.05)


def test_dopri5_reference_agrees_with_fine_fixed_grid():
    net = perturbed(TINY)
    z = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    ref = flow_map(net, z, 1, SolverConfig(method="dopri5", t_end=0.98, rtol=1e-9, atol=1e-9))
    err = [(flow_map(net, z, 1, SolverConfig(method="rk4", steps=s, t_end=0.98)) - ref).abs().max().item()
           for s in (32, 64)]
    assert err[1] < 1e-5 and err[1] < err[0] / 8, err  # 4th-order convergence to the reference
    with pytest.raises(ValueError, match="only fixed-grid solves can be certified"):
        certify(net, z, 1, SolverConfig(method="dopri5"))


def test_training_on_a_single_class_folder(folder, tmp_path):
    """Per-class checkpoints: a one-class ImageFolder trains a one-class flow that exports and loads."""
    import shutil

    from mi_datagen.flows.io import export_flow, load_flow

    one = tmp_path / "one"
    shutil.copytree(folder / "reds", one / "reds")
    data = load_images("imagefolder", one, image_size=8)
    cfg = TrainConfig(steps=10, batch_size=8, lr=1e-3, warmup=2, checkpoint_every=10, sample_every=0, seed=0)
    single = UNetConfig(**{**TINY.to_dict(), "num_classes": 1})
    ck = train(data, tmp_path / "run", single, cfg, quiet=True)
    export_flow(ck, tmp_path / "reds.pt", SolverConfig(steps=4, t_end=0.98))
    f = load_flow(tmp_path / "reds.pt")
    assert f.classes == ("reds",) and f.map(torch.zeros(2, 3, 8, 8), "reds").shape == (2, 3, 8, 8)


def test_hybrid_grid_is_uniform_then_geometric():
    import torch

    from mi_datagen.errors import ConfigError
    from mi_datagen.flows.ode import HYBRID_KNEE, SolverConfig, time_grid

    t = time_grid(SolverConfig(steps=12, t_end=0.99, grid="hybrid"), torch.float64)
    assert t[0] == 0 and abs(float(t[-1]) - 0.99) < 1e-12 and bool((t[1:] > t[:-1]).all())
    assert abs(float(t[8]) - HYBRID_KNEE) < 1e-12  # 8 uniform steps of 0.09375, then 4 geometric ones
    head = t[1:9] - t[:8]
    assert torch.allclose(head, torch.full_like(head, HYBRID_KNEE / 8))
    gap = 1 - t[8:]
    ratio = gap[1:] / gap[:-1]
    assert torch.allclose(ratio, torch.full_like(ratio, (0.01 / 0.25) ** 0.25))
    for bad in (dict(steps=12, t_end=1.0), dict(steps=1, t_end=0.99), dict(steps=12, t_end=0.7)):
        with pytest.raises(ConfigError, match="hybrid grid needs"):
            time_grid(SolverConfig(grid="hybrid", **bad))
    with pytest.raises(ConfigError, match="grid must be one of uniform, geometric, hybrid, designed"):
        SolverConfig(grid="cosine")  # type: ignore[arg-type]
