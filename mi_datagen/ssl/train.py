"""Train one contrastive encoder per modality on a store, through ``MIDataset`` and a DataLoader.

Protocol (fixed budget, seeded): the store's samples are split by a seeded permutation into test,
validation and training rows; each modality is standardised per feature with the training rows'
statistics (an affine bijection: the MI is unchanged); ``steps`` Adam steps on batches drawn with
replacement from the training rows by a seeded sampler (so the batches, and therefore the result, are
the same whatever the number of DataLoader workers); the encoders of the step with the best
validation InfoNCE bound are kept.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, RandomSampler, Subset
from tqdm import tqdm

from mi_datagen.errors import ConfigError
from mi_datagen.estimators.critics import encoder
from mi_datagen.ssl.objectives import OBJECTIVES, contrastive_loss, infonce_bound


@dataclass(frozen=True)
class SSLSettings:
    objective: str = "pairs"  # pairs | mean (see objectives)
    steps: int = 1000
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    embed: int = 32  # representation size per modality
    hidden: int = 256  # MLP encoders
    conv_width: int = 16  # conv encoders
    encoder: str = "auto"  # auto | mlp | conv | conv-flat | patch (estimators.critics.encoder)
    temperature: float = 0.1  # initial τ; the scale 1/τ is learnt (CLIP) unless learn_temperature is false
    learn_temperature: bool = True
    test_fraction: float = 0.2
    val_fraction: float = 0.1  # of the rows left after the test split
    evals: int = 10  # validation evaluations over the run (model selection and the curve)
    workers: int = 0  # DataLoader workers
    bf16: bool = False  # autocast (worth it on CPUs with avx512_bf16/AMX and on GPUs)
    device: str = "cpu"

    @classmethod
    def make(cls, **kw: Any) -> SSLSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise ConfigError(f"ssl settings: unknown keys {unknown}; valid keys: {sorted(known)}")
        s = cls(**kw)
        checks = [("objective", s.objective in OBJECTIVES, f"one of {list(OBJECTIVES)}"),
                  ("steps", s.steps >= 1, ">= 1"), ("batch_size", s.batch_size >= 2, ">= 2"),
                  ("lr", s.lr > 0, "> 0"), ("embed", s.embed >= 1, ">= 1"),
                  ("temperature", s.temperature > 0, "> 0"), ("test_fraction", 0 < s.test_fraction < 1, "in (0, 1)"),
                  ("val_fraction", 0 < s.val_fraction < 1, "in (0, 1)"), ("evals", s.evals >= 1, ">= 1"),
                  ("workers", s.workers >= 0, ">= 0")]
        for name, ok, need in checks:
            if not ok:
                raise ConfigError(f"ssl settings: {name} = {getattr(s, name)!r} is invalid; it must be {need}")
        return s


def split_rows(n: int, test_fraction: float, val_fraction: float, seed: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, val, test) row indices of a seeded permutation of range(n) (test first, then validation)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    n_test = int(round(n * test_fraction))
    n_val = int(round((n - n_test) * val_fraction))
    return perm[n_test + n_val:], perm[n_test:n_test + n_val], perm[:n_test]


class Encoders(nn.Module):
    """One encoder per modality behind a per-feature standardisation, and the learnt InfoNCE scale.
    Holds the dataset and the row split it was trained on, for evaluation."""

    def __init__(self, dataset, modalities: Sequence[str], settings: SSLSettings, seed: int,
                 rows: tuple[np.ndarray, np.ndarray, np.ndarray]):
        super().__init__()
        self.dataset, self.modalities, self.settings, self.seed = dataset, list(modalities), settings, seed
        self.train_rows, self.val_rows, self.test_rows = rows
        s = settings
        shape = tuple(dataset[0][self.modalities[0]].shape)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.nets = nn.ModuleDict({m: encoder(shape, s.embed, s.hidden, s.conv_width, s.encoder)
                                       for m in self.modalities})
        self.log_scale = nn.Parameter(torch.tensor(-math.log(s.temperature)), requires_grad=s.learn_temperature)
        for m in self.modalities:
            self.register_buffer(f"mean_{m}", torch.zeros(shape))
            self.register_buffer(f"std_{m}", torch.ones(shape))
        self.record: dict[str, Any] = {}

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()  # CLIP's cap on 1/τ

    def forward(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        dev = self.log_scale.device
        return [self.nets[m]((batch[m].to(dev) - getattr(self, f"mean_{m}")) / getattr(self, f"std_{m}"))
                for m in self.modalities]

    def loader(self, rows: np.ndarray, batch_size: int, sampler=None) -> DataLoader:
        s = self.settings
        return DataLoader(Subset(self.dataset, rows.tolist()), batch_size=batch_size, sampler=sampler,
                          shuffle=False, drop_last=sampler is not None, num_workers=s.workers)

    def fit_standardisation(self) -> None:
        """Per-feature mean and std of each modality over the training rows (float64 sums)."""
        acc: dict[str, list] = {m: [0.0, 0.0, 0] for m in self.modalities}
        for batch in self.loader(self.train_rows, 512):
            for m in self.modalities:
                x = batch[m].double()
                acc[m][0] += x.sum(0)
                acc[m][1] += (x * x).sum(0)
                acc[m][2] += x.shape[0]
        for m, (s1, s2, n) in acc.items():
            mean = s1 / n
            std = ((s2 - n * mean * mean) / max(n - 1, 1)).clamp_min(0).sqrt().clamp_min(1e-8)
            getattr(self, f"mean_{m}").copy_(mean.float())
            getattr(self, f"std_{m}").copy_(std.float())

    @torch.no_grad()
    def embed(self, rows: np.ndarray, batch_size: int = 512) -> dict[str, np.ndarray]:
        """Each modality's representation (the encoder output, before normalisation) of ``rows``, in order."""
        self.eval()
        parts: dict[str, list] = {m: [] for m in self.modalities}
        with self.autocast():
            for batch in self.loader(rows, batch_size):
                for m, e in zip(self.modalities, self(batch)):
                    parts[m].append(e.float().cpu().numpy().astype(np.float64))
        return {m: np.concatenate(v) if v else np.zeros((0, self.settings.embed)) for m, v in parts.items()}

    def autocast(self):
        dev = self.log_scale.device.type
        return torch.autocast(dev, dtype=torch.bfloat16) if self.settings.bf16 else contextlib.nullcontext()

    def bound(self, emb: dict[str, np.ndarray], a: str, b: str, batch_size: int) -> float:
        """The held-out InfoNCE bound on I(a; b): the mean over consecutive batches of ``batch_size`` rows."""
        za = torch.nn.functional.normalize(torch.from_numpy(emb[a]), dim=1)
        zb = torch.nn.functional.normalize(torch.from_numpy(emb[b]), dim=1)
        scale = self.scale.detach().double().cpu()
        vals = [float(infonce_bound(za[i:i + batch_size], zb[i:i + batch_size], scale))
                for i in range(0, za.shape[0] - batch_size + 1, batch_size)]
        return float(np.mean(vals)) if vals else math.nan

    def mean_bound(self, emb: dict[str, np.ndarray]) -> float:
        m = self.modalities
        return float(np.mean([self.bound(emb, m[i], m[j], self.settings.batch_size)
                              for i in range(len(m)) for j in range(i + 1, len(m))]))


def train_encoders(store, modalities: Sequence[str], settings: SSLSettings | None = None, seed: int = 0,
                   progress: bool = False) -> Encoders:
    """Train ``settings.objective`` on ``modalities`` of ``store`` (a path or a ``Store``); see the module."""
    from mi_datagen.data.dataset import MIDataset

    s = settings or SSLSettings()
    if len(modalities) < 2:
        raise ConfigError(f"ssl: modalities {list(modalities)}: a contrastive objective needs at least two")
    t0 = time.perf_counter()
    ds = MIDataset(store, modalities=list(modalities), with_theta=False)
    tr, va, te = split_rows(len(ds), s.test_fraction, s.val_fraction, seed)
    rows = (tr, va, te)
    if min(len(rows[0]), len(rows[1])) < s.batch_size:
        raise ConfigError(f"ssl: {len(ds)} samples leave {len(rows[0])} training and {len(rows[1])} validation "
                          f"rows, fewer than batch_size {s.batch_size}; use a larger store or a smaller batch")
    enc = Encoders(ds, modalities, s, seed, rows).to(s.device)
    enc.fit_standardisation()
    params = [p for p in enc.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    sampler = RandomSampler(range(len(enc.train_rows)), replacement=True, num_samples=s.steps * s.batch_size,
                            generator=torch.Generator().manual_seed(seed + 1))
    every = max(1, s.steps // s.evals)
    best: tuple[float, Any, int] = (-math.inf, None, 0)
    curve, losses = [], []
    bar = tqdm(enc.loader(enc.train_rows, s.batch_size, sampler), total=s.steps, desc=f"ssl {s.objective} s{seed}",
               unit="step", disable=not progress, leave=False)
    for step, batch in enumerate(bar, start=1):
        enc.train()
        with enc.autocast():
            loss = contrastive_loss([e.float() for e in enc(batch)], enc.scale, s.objective)  # type: ignore[arg-type]
        if not torch.isfinite(loss):
            raise ConfigError(f"ssl: the loss became {float(loss)} at step {step}; lower lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if step % every == 0 or step == s.steps:
            val = enc.mean_bound(enc.embed(enc.val_rows))
            curve.append({"step": step, "train_bound": math.log(s.batch_size) - float(np.mean(losses[-every:])),
                          "val_bound": val, "scale": float(enc.scale.detach())})
            bar.set_postfix(val_bound=f"{val:.3f}")
            if val > best[0]:
                best = (val, copy.deepcopy(enc.state_dict()), step)
    if best[1] is not None:
        enc.load_state_dict(best[1])
    enc.record = {"settings": asdict(s), "seed": seed, "modalities": list(modalities), "curve": curve,
                  "best_step": best[2], "best_val_bound": best[0], "train_time_s": time.perf_counter() - t0,
                  "n_train": len(enc.train_rows), "n_val": len(enc.val_rows), "n_test": len(enc.test_rows)}
    return enc
