import os
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one torch thread each
    import torch

    torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SPECS = ROOT / "dag_specs"


@pytest.fixture
def specs_dir() -> Path:
    return SPECS


TINY_SPEC = """\
family: canonical
name: tiny_two
shape: [3, 8, 8]
parameters: {{rho: 0.3}}
eta: [1.0]
rho_tilde: [[rho], [rho]]
rho_hat: [[1.0, 0.0], [0.0, 1.0]]
labels: [a, b]
checkpoint: {checkpoint}
standardize: {standardize}
"""


def make_tiny_flow(path, scale=0.05, steps=8, t_end=0.98, seed=0, classes=("a", "b")):
    """A tiny 8×8 class-conditional UNet with random non-zero weights, written as a flow file."""
    import torch

    from mi_datagen.flows.io import save_flow
    from mi_datagen.flows.ode import SolverConfig
    from mi_datagen.flows.unet import UNet, UNetConfig

    cfg = UNetConfig(image_size=8, base_channels=8, channel_mults=(1, 2), emb_dim=16, groups=4,
                     num_classes=len(classes))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = UNet(cfg).eval()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(scale * torch.randn_like(p))
    return save_flow(net, list(classes), SolverConfig(steps=steps, t_end=t_end), path)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """tiny.pt (a certified tiny flow) and spec files using it: tiny.yaml (standardised) and raw.yaml."""
    d = tmp_path_factory.mktemp("tiny")
    make_tiny_flow(d / "tiny.pt")
    (d / "tiny.yaml").write_text(TINY_SPEC.format(checkpoint="tiny.pt", standardize="true"))
    (d / "raw.yaml").write_text(TINY_SPEC.format(checkpoint="tiny.pt", standardize="false"))
    return d
