"""The judge: a strong CIFAR-10 classifier that scores flows (class consistency, Fréchet distance,
precision / recall in its features).

The network and recipe follow Keller Jordan's airbench94 (github.com/KellerJordan/cifar10-airbench,
94 % in about 10 epochs): a frozen 2×2 patch-whitening stem, three conv groups (64, 256, 256
channels, each conv → max-pool → BN → GELU → conv → BN → GELU), label smoothing, Nesterov SGD with a
triangular schedule, lookahead averaging, flip + translate augmentation and flip test-time
augmentation. Every random draw comes from one seeded generator; training checkpoints after every
epoch and resumes. bf16 autocast is used where the CPU has native bf16 (``cpu_has_bf16``) or on a GPU.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from mi_datagen.flows.checkpoint import load_checkpoint, save_checkpoint
from mi_datagen.flows.images import ImageData

__all__ = ["Judge", "JudgeConfig", "train_judge", "cpu_has_bf16"]

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def cpu_has_bf16() -> bool:
    """Whether this CPU has native bf16 arithmetic (avx512_bf16 or AMX): bf16 autocast pays only there."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class _BN(nn.BatchNorm2d):
    def __init__(self, c: int, momentum: float = 0.6):
        # airbench's momentum is the weight of the running statistics; torch's is the weight of the batch
        super().__init__(c, momentum=1 - momentum, eps=1e-12)
        self.weight.requires_grad = False  # scale fixed at 1: only the shift is learned


class _ConvGroup(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.c1, self.c2 = nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        for c in (self.c1, self.c2):  # identity on the first channels: the group starts close to a pass-through
            nn.init.dirac_(c.weight[: c.weight.size(1)])
        self.n1, self.n2 = _BN(cout), _BN(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.n1(F.max_pool2d(self.c1(x), 2)))
        return F.gelu(self.n2(self.c2(x)))


class Judge(nn.Module):
    """airbench94's network; ``features`` are the 256 pooled channels before the linear read-out."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, int, int] = (64, 256, 256)):
        super().__init__()
        self.whiten = nn.Conv2d(3, 24, 2, padding=0, bias=True)
        self.groups = nn.Sequential(_ConvGroup(24, widths[0]), _ConvGroup(widths[0], widths[1]),
                                    _ConvGroup(widths[1], widths[2]))
        self.head = nn.Linear(widths[2], num_classes, bias=False)
        self.register_buffer("mean", torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(CIFAR_STD).view(1, 3, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [-1, 1] (the flows' range) → CIFAR-normalised inputs."""
        mean, std = cast(torch.Tensor, self.mean), cast(torch.Tensor, self.std)
        return ((x + 1) / 2 - mean) / std

    def _features(self, z: torch.Tensor) -> torch.Tensor:
        h = self.groups(F.gelu(self.whiten(z)))
        return F.max_pool2d(h, 3).flatten(1)

    def _logits(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(z)) / 9.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for images in [-1, 1], averaged over the image and its mirror (test-time augmentation)."""
        z = self.normalise(x)
        return 0.5 * (self._logits(z) + self._logits(z.flip(-1)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        z = self.normalise(x)
        return 0.5 * (self._features(z) + self._features(z.flip(-1)))

    def init_whitening(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the stem to the ZCA-like whitening of 2×2 patches of ``x`` (images in [-1, 1]), ± each filter."""
        z = self.normalise(x)
        patches = z.unfold(2, 2, 1).unfold(3, 2, 1).transpose(1, 3).reshape(-1, 3, 2, 2).double()
        flat = patches.reshape(patches.shape[0], -1)
        cov = flat.T @ flat / flat.shape[0]
        evals, evecs = torch.linalg.eigh(cov)
        evals, evecs = evals.flip(0).view(-1, 1, 1, 1), evecs.T.reshape(12, 3, 2, 2).flip(0)
        scaled = (evecs / torch.sqrt(evals + eps)).float()
        with torch.no_grad():
            self.whiten.weight.copy_(torch.cat((scaled, -scaled)))


@dataclass(frozen=True)
class JudgeConfig:
    epochs: float = 10.0
    batch_size: int = 1024
    lr: float = 11.5
    momentum: float = 0.85
    weight_decay: float = 0.0153
    bias_scaler: float = 64.0
    label_smoothing: float = 0.2
    whiten_bias_epochs: int = 3
    translate: int = 2
    # Gaussian noise of a per-image std drawn from U(0, noise), in [-1, 1] units: flows stop at t_end < 1
    # and leave about 1 − t_end of noise, which a judge trained on clean images reads as texture
    # (0.889 → 0.731 test accuracy at σ = 0.03 without this)
    noise: float = 0.05
    seed: int = 0
    # channels of the three conv groups: airbench94's (64, 256, 256); smaller ones only for tests and trials
    widths: tuple[int, int, int] = (64, 256, 256)
    bf16: bool | None = None  # None: where the CPU has native bf16 (or on a GPU)
    device: str = "cpu"
    threads: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def _augment(x: torch.Tensor, gen: torch.Generator, translate: int, noise: float = 0.0) -> torch.Tensor:
    """Each image mirrored with probability 1/2, shifted by up to ``translate`` pixels (reflect padding),
    then given Gaussian noise of a std drawn from U(0, ``noise``)."""
    mirror = (torch.rand(x.shape[0], generator=gen) < 0.5).view(-1, 1, 1, 1)
    x = torch.where(mirror, x.flip(-1), x)
    if translate:
        n, p = x.shape[0], translate
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        dx, dy = torch.randint(0, 2 * p + 1, (2, n), generator=gen)
        rows = (torch.arange(32)[None, :] + dy[:, None])  # (n, 32)
        cols = (torch.arange(32)[None, :] + dx[:, None])
        x = padded[torch.arange(n)[:, None, None, None], torch.arange(3)[None, :, None, None],
                   rows[:, None, :, None], cols[:, None, None, :]]
    if noise > 0:
        sigma = noise * torch.rand(x.shape[0], generator=gen).view(-1, 1, 1, 1)
        x = x + sigma * torch.randn(x.shape, generator=gen)
    return x


def _to_float(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).float().div_(127.5).sub_(1.0)


def evaluate(net: Judge, data: ImageData, batch_size: int = 1000, bf16: bool = False) -> float:
    """Accuracy with flip test-time augmentation."""
    net.eval()
    right = 0
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(0, len(data.labels), batch_size):
            x = _to_float(data.images[i:i + batch_size])
            right += int((net(x).argmax(1).numpy() == data.labels[i:i + batch_size]).sum())
    return right / len(data.labels)


def train_judge(train: ImageData, run_dir: str | Path, cfg: JudgeConfig = JudgeConfig(),
                test: ImageData | None = None, progress: bool = True,
                stop_after_epochs: int | None = None) -> tuple[Judge, dict]:
    """Train (or resume from ``run_dir/checkpoint.pt``) and return the lookahead-averaged net and its record.
    ``stop_after_epochs``: checkpoint and return after this many epochs in all (a later call resumes)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    bf16 = cpu_has_bf16() if cfg.bf16 is None else cfg.bf16
    n, bs = len(train.labels), cfg.batch_size
    steps_per_epoch = math.ceil(n / bs)
    total = int(cfg.epochs * steps_per_epoch)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    net = Judge(len(train.classes), cfg.widths)
    net.init_whitening(_to_float(train.images[torch.randperm(n, generator=gen)[:5000].numpy()]))
    net.whiten.weight.requires_grad = False  # the whitening stays fixed; its bias learns for a few epochs
    kilostep = 1024 * (1 + 1 / (1 - cfg.momentum))
    lr, wd = cfg.lr / kilostep, cfg.weight_decay * bs / kilostep
    biases = [p for name, p in net.named_parameters() if "n1.bias" in name or "n2.bias" in name]
    others = [p for name, p in net.named_parameters() if p.requires_grad and all(p is not b for b in biases)]
    opt = torch.optim.SGD([{"params": biases, "lr": lr * cfg.bias_scaler, "weight_decay": wd / cfg.bias_scaler},
                           {"params": others, "lr": lr, "weight_decay": wd}], momentum=cfg.momentum, nesterov=True)
    base_lrs = [g["lr"] for g in opt.param_groups]
    schedule = np.interp(np.arange(total + 1), [0, int(0.23 * total), total], [0.2, 1.0, 0.07])
    alpha = 0.95 ** 5 * (np.arange(total + 1) / total) ** 3
    ahead = copy.deepcopy(net.state_dict())
    record: dict = {"config": cfg.to_dict(), "bf16": bf16, "epochs_done": 0, "step": 0, "wall_s": 0.0, "history": []}
    ck = run_dir / "checkpoint.pt"
    if ck.is_file():
        state = load_checkpoint(ck)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ahead, record = state["lookahead"], state["record"]
        gen.set_state(state["generator"])
    step = record["step"]
    bar = tqdm(total=total, initial=step, desc="train-judge", unit="step", disable=not progress)
    t0 = time.perf_counter() - record["wall_s"]
    while step < total and (stop_after_epochs is None or step < stop_after_epochs * steps_per_epoch):
        epoch = step // steps_per_epoch
        cast(torch.Tensor, net.whiten.bias).requires_grad = epoch < cfg.whiten_bias_epochs
        perm = torch.randperm(n, generator=gen).numpy()
        net.train()
        losses = []
        for i in range(steps_per_epoch):
            if step >= total:
                break
            idx = perm[i * bs:(i + 1) * bs]
            x = _augment(_to_float(train.images[idx]), gen, cfg.translate, cfg.noise)
            y = torch.from_numpy(train.labels[idx].astype(np.int64))
            with torch.autocast(cfg.device, dtype=torch.bfloat16, enabled=bf16):
                logits = net._logits(net.normalise(x))
            loss = F.cross_entropy(logits.float(), y, label_smoothing=cfg.label_smoothing, reduction="none").sum()
            for g, base in zip(opt.param_groups, base_lrs):
                g["lr"] = base * float(schedule[step])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(float(loss.detach()) / len(idx))
            if step % 5 == 0:  # lookahead: the kept weights move toward the fast ones, which restart from them
                decay = 1.0 if step == total else float(alpha[step])
                cur = net.state_dict()
                for k, v in cur.items():
                    if v.dtype.is_floating_point:
                        ahead[k].lerp_(v, 1 - decay)
                        v.copy_(ahead[k])
            bar.update(1)
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        entry = {"epoch": epoch + 1, "step": step, "loss": float(np.mean(losses)) if losses else None,
                 "wall_s": time.perf_counter() - t0}
        if test is not None:
            entry["test_accuracy"] = evaluate(net, test, bf16=bf16)
        record["history"].append(entry)
        record.update(step=step, epochs_done=epoch + 1, wall_s=time.perf_counter() - t0)
        save_checkpoint({"model": net.state_dict(), "optimizer": opt.state_dict(), "lookahead": ahead,
                         "record": record, "generator": gen.get_state()}, ck)
        if progress:
            tqdm.write(f"train-judge: epoch {epoch + 1}, loss {entry['loss']}, "
                       f"test accuracy {entry.get('test_accuracy')}, {entry['wall_s'] / 60:.1f} min")
    bar.close()
    net.load_state_dict(ahead)
    return net.eval(), record


def load_judge(path: str | Path, num_classes: int = 10) -> nn.Module:
    """A judge file (``train-judge``), or a classifier file of the earlier ``train-classifier`` (SmallCNN),
    loaded after its sha256 check, in eval mode."""
    from mi_datagen.errors import CheckpointError
    from mi_datagen.flows.quality import SmallCNN

    ck = load_checkpoint(path)
    fmt = ck.get("format")
    net: nn.Module
    if fmt == "mi-datagen-judge/1":  # the widths are those the file was trained with
        sd = ck["model"]
        w0, w1, w2 = (int(sd[f"groups.{i}.c1.weight"].shape[0]) for i in range(3))
        net = Judge(num_classes, (w0, w1, w2))
    elif fmt == "mi-datagen-classifier/1":
        net = SmallCNN(num_classes)
    else:
        raise CheckpointError(f"{path}: not a judge or classifier file (format {fmt!r}); make one with "
                              "`mi-datagen train-judge`")
    net.load_state_dict(ck["model"])
    return net.eval()
