"""Conditional flow matching (straight path from N(0, I) to data), with EMA, checkpoints and resume.

    x_t = (1 − (1 − σ_min) t) x_0 + t x_1,   u_t = x_1 − (1 − σ_min) x_0,   loss = ‖v(x_t, t, c) − u_t‖²

Every random draw (batch indices, noise, t, flips) comes from one torch.Generator seeded from the
config, and its state is checkpointed: a resumed run continues the same sequence.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mi_datagen.errors import ConfigError
from mi_datagen.flows.checkpoint import load_checkpoint, save_checkpoint
from mi_datagen.flows.images import ImageData
from mi_datagen.flows.ode import SolverConfig, flow_map
from mi_datagen.flows.unet import UNet, UNetConfig


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20_000
    batch_size: int = 64
    lr: float = 2e-4
    warmup: int = 500
    weight_decay: float = 0.0
    ema_decay: float = 0.999
    sigma_min: float = 0.0
    hflip: bool = True
    seed: int = 0
    grad_clip: float = 1.0
    bf16: bool = False
    # minibatch optimal-transport coupling of noise and images (Tong et al. 2023): straighter paths
    ot_coupling: bool = False
    checkpoint_every: int = 500
    sample_every: int = 2000
    device: str = "cpu"
    threads: int = 0  # 0: torch default

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainState:
    step: int = 0
    wall_s: float = 0.0
    losses: list = field(default_factory=list)  # (step, mean loss over the last interval)


def _lr(cfg: TrainConfig, step: int) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(cfg.warmup, 1))


def ot_pair(x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
    """Permute the noise ``x0`` so that (x0[i], x1[i]) is the exact squared-Euclidean optimal
    assignment within the batch (a deterministic Hungarian solve; the noise marginal is unchanged)."""
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x0.flatten(1).double().cpu(), x1.flatten(1).double().cpu()).pow(2).numpy()
    rows, cols = linear_sum_assignment(cost)
    perm = torch.empty(len(cols), dtype=torch.long)
    perm[torch.from_numpy(cols)] = torch.from_numpy(rows)
    return x0[perm.to(x0.device)]


def cfm_loss(net, x1: torch.Tensor, labels: torch.Tensor, gen: torch.Generator, sigma_min: float,
             bf16: bool = False, ot_coupling: bool = False) -> torch.Tensor:
    # drawn from the CPU generator and moved: the same numbers on every device
    x0 = torch.randn(x1.shape, generator=gen).to(x1.device)
    if ot_coupling:
        x0 = ot_pair(x0, x1)
    t = torch.rand(x1.shape[0], generator=gen).to(x1.device)
    tb = t[:, None, None, None]
    xt = (1 - (1 - sigma_min) * tb) * x0 + tb * x1
    target = x1 - (1 - sigma_min) * x0
    with torch.autocast(x1.device.type, dtype=torch.bfloat16, enabled=bf16):
        v = net(xt, t, labels)
    return (v.float() - target).pow(2).mean()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for pe, p in zip(ema.parameters(), net.parameters()):
        pe.mul_(decay).add_(p.detach(), alpha=1 - decay)


def sample_grid(net, n_classes: int, per_class: int, path: Path, seed: int = 0,
                solver: SolverConfig | None = None, class_names=None) -> None:
    """One row per class; clamped uint8 preview (labelled as such)."""
    from PIL import Image, ImageDraw

    solver = solver or SolverConfig()
    gen = torch.Generator().manual_seed(seed)
    dev = next(net.parameters()).device
    rows = []
    for c in range(n_classes):
        z = torch.randn((per_class, *_img_shape(net)), generator=gen).to(dev)
        x = flow_map(net, z, c, solver).cpu()
        rows.append(torch.cat(list(x), dim=2))
    grid = torch.cat(rows, dim=1)
    arr = ((grid.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    im = Image.fromarray(arr).resize((arr.shape[1] * 2, arr.shape[0] * 2), Image.Resampling.NEAREST)
    canvas = Image.new("RGB", (im.width + 90, im.height + 14), "white")
    canvas.paste(im, (90, 14))
    d = ImageDraw.Draw(canvas)
    d.text((2, 1), "clamped uint8 preview", fill="black")
    for c in range(n_classes):
        name = class_names[c] if class_names else str(c)
        d.text((2, 14 + c * im.height // n_classes + im.height // n_classes // 2 - 5), name[:12], fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)


def _img_shape(net) -> tuple[int, int, int]:
    c = net.cfg
    return (c.image_channels, c.image_size, c.image_size)


def train(data: ImageData, run_dir: str | Path, model_cfg: UNetConfig, cfg: TrainConfig,
          resume: bool = True, max_seconds: float | None = None, quiet: bool = False) -> Path:
    """Train (or resume) in ``run_dir``; returns the latest checkpoint path."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = torch.device(cfg.device)
    ckpt_path = run_dir / "checkpoint.pt"
    with torch.random.fork_rng(devices=[]):  # weight init from the config's seed, global RNG untouched
        torch.manual_seed(cfg.seed)
        net = UNet(model_cfg).to(dev)
    ema = copy.deepcopy(net).eval()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = TrainState()
    if resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path, map_location=dev)
        if ck["model_config"] != model_cfg.to_dict():
            raise ConfigError(f"{ckpt_path}: model config differs from the requested one; use another run dir")
        net.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["rng"])
        state = TrainState(step=ck["step"], wall_s=ck["wall_s"], losses=[tuple(x) for x in ck["losses"]])
    x_all, y_all = data.images, data.labels
    n = len(y_all)

    def save() -> None:
        save_checkpoint({
            "format": "mi-datagen-flow-train/1", "model_config": model_cfg.to_dict(), "train_config": cfg.to_dict(),
            "data": json.dumps(data.description), "step": state.step, "wall_s": state.wall_s,
            "losses": [list(x) for x in state.losses], "model": net.state_dict(), "ema": ema.state_dict(),
            "optimizer": opt.state_dict(), "rng": gen.get_state(),
        }, ckpt_path)

    stop = {"now": False}

    def _on_signal(signum, frame):  # checkpoint, then stop (so `kill` never loses more than a step)
        stop["now"] = True

    import signal

    old_handlers = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGINT)} \
        if threading.current_thread() is threading.main_thread() else {}
    start = run_start = time.time()
    bar = tqdm(total=cfg.steps, initial=state.step, desc="train-flow", unit="step", disable=quiet, mininterval=5)
    acc, acc_n = 0.0, 0
    net.train()
    while state.step < cfg.steps:
        idx = torch.randint(0, n, (cfg.batch_size,), generator=gen).numpy()
        x1 = torch.from_numpy(x_all[idx].astype(np.float32) / 127.5 - 1.0)
        if cfg.hflip:
            flip = torch.rand(cfg.batch_size, generator=gen) < 0.5
            x1 = torch.where(flip[:, None, None, None], x1.flip(-1), x1)
        labels = torch.from_numpy(y_all[idx]).to(dev)
        loss = cfm_loss(net, x1.to(dev), labels, gen, cfg.sigma_min, cfg.bf16, cfg.ot_coupling)
        if not math.isfinite(loss.item()):
            raise FloatingPointError(f"step {state.step}: loss is {loss.item()}; lower the learning rate")
        for g in opt.param_groups:
            g["lr"] = _lr(cfg, state.step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.grad_clip)
        opt.step()
        ema_update(ema, net, cfg.ema_decay if state.step >= cfg.warmup else 0.0)
        state.step += 1
        acc += loss.item()
        acc_n += 1
        bar.update(1)
        if state.step % 100 == 0 or state.step == cfg.steps:
            state.losses.append((state.step, acc / acc_n))
            bar.set_postfix(loss=f"{acc / acc_n:.4f}")
            acc, acc_n = 0.0, 0
        out_of_time = (max_seconds is not None and time.time() - run_start >= max_seconds) or stop["now"]
        if state.step % cfg.checkpoint_every == 0 or state.step == cfg.steps or out_of_time:
            state.wall_s += time.time() - start
            start = time.time()
            save()
        if cfg.sample_every and state.step % cfg.sample_every == 0:
            sample_grid(ema, model_cfg.num_classes, 8, run_dir / f"samples_{state.step:07d}.png",
                        class_names=list(data.classes))
        if out_of_time:
            break
    bar.close()
    for sig, h in old_handlers.items():
        signal.signal(sig, h)
    if not quiet:
        last = state.losses[-1][1] if state.losses else float("nan")
        print(f"train-flow: step {state.step}/{cfg.steps}, loss {last:.4f}, {state.wall_s / 60:.1f} min in total, "
              f"checkpoint {ckpt_path}")
    return ckpt_path
