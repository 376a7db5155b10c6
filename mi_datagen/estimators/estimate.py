"""One interface for every estimator: ``estimate(x, y, method=..., critic=..., **settings)``.

Protocol: a seeded train / held-out split; inputs standardised per feature with the
training split's statistics (an invertible affine map of each side, so the MI is unchanged);
a fixed number of Adam steps at a fixed batch size; the reported number is the bound evaluated on
the held-out split in batches of the training batch size. The literature's readout, the mean
training-batch estimate over the last 20 % of steps, is kept as ``train_average``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

import numpy as np
import torch

from mi_datagen.errors import EstimatorError
from mi_datagen.estimators import bounds as B
from mi_datagen.estimators.baselines import gaussian_mi, ksg_mi
from mi_datagen.estimators.critics import Critic, GaussianConditional

CRITIC_METHODS = ("dv", "mine", "nwj", "js", "infonce", "smile", "club")
METHODS = CRITIC_METHODS + ("gaussian", "ksg", "entropy-diff")


@dataclass(frozen=True)
class Settings:
    critic: Literal["separable", "joint"] = "separable"
    steps: int = 2000
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.0  # AdamW decoupled weight decay
    embed: int = 16
    hidden: int = 64
    conv_width: int = 16
    encoder: str = "auto"  # auto (conv for images, MLP otherwise) | mlp | conv | conv-flat | patch
    tau: float | None = None  # SMILE clip (None = ∞)
    momentum: float = 0.9  # MINE moving average
    test_fraction: float = 0.2
    select: str = "best-validation"  # or "last": which critic is evaluated on the held-out split
    val_fraction: float = 0.1  # of the training split, for select = best-validation
    evals: int = 20  # validation evaluations over the run
    bf16: bool = False
    device: str = "cpu"
    k: int = 3  # KSG neighbours
    shrinkage: float = 0.0  # Gaussian baseline
    unbiased: bool = False  # Gaussian baseline: remove the log-dets' exact Gaussian sampling bias
    entropy: str = "flow"  # entropy-diff: Ĥ(X) + Ĥ(Y) − Ĥ(X,Y) with this entropy estimator
    #                        (gaussian | gaussian-unbiased | kl | flow | flow-white)

    @classmethod
    def make(cls, **kw) -> Settings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kw) - known)
        if unknown:
            raise EstimatorError(f"unknown estimator settings {unknown}; known: {sorted(known)}")
        s = cls(**kw)
        if s.steps < 1 or s.batch_size < 2 or not 0 < s.test_fraction < 1 or s.lr <= 0:
            raise EstimatorError(f"need steps >= 1, batch_size >= 2, 0 < test_fraction < 1, lr > 0; got {s}")
        if s.select not in ("best-validation", "last"):
            raise EstimatorError(f"select must be 'best-validation' or 'last', got {s.select!r}")
        return s


@dataclass
class EstimateResult:
    method: str
    nats: float
    train_average: float | None
    curve: list[tuple[int, float]] = field(default_factory=list)
    time_s: float = 0.0
    settings: dict = field(default_factory=dict)
    seed: int = 0
    n_train: int = 0
    n_test: int = 0
    note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _split(n: int, test_fraction: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=gen)
    n_test = max(2, int(round(n * test_fraction)))
    return perm[n_test:], perm[:n_test]


def _standardize(a: torch.Tensor, train: torch.Tensor) -> torch.Tensor:
    mean, std = a[train].mean(0), a[train].std(0).clamp_min(1e-8)
    return (a - mean) / std


def _objective(method: str, s: Settings, scores, state) -> tuple[torch.Tensor, torch.Tensor]:
    """(training objective to maximise, readout) for a score matrix."""
    readout = {"dv": B.dv, "mine": B.dv, "nwj": B.nwj, "js": B.tuba, "infonce": B.infonce,
               "smile": lambda f: B.smile(f, s.tau)}[method]
    if method == "mine":
        obj, state["ema"] = B.mine_surrogate(scores, state.get("ema"), s.momentum)
    elif method in ("js", "smile"):
        obj = B.js_fgan(scores)
    else:
        obj = readout(scores)
    return obj, readout(scores)


def estimate(x, y, method: str, seed: int = 0, **settings) -> EstimateResult:
    """Estimate I(X; Y) in nats from paired samples x (n, ...) and y (n, ...)."""
    if method not in METHODS:
        raise EstimatorError(f"unknown method {method!r}; choose from {list(METHODS)}")
    s = Settings.make(**settings)
    x, y = torch.as_tensor(np.asarray(x), dtype=torch.float32), torch.as_tensor(np.asarray(y), dtype=torch.float32)
    if x.shape[0] != y.shape[0]:
        raise EstimatorError(f"x and y need the same number of samples, got {x.shape[0]} and {y.shape[0]}")
    if x.ndim == 1:
        x = x[:, None]
    if y.ndim == 1:
        y = y[:, None]
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    train, test = _split(x.shape[0], s.test_fraction, gen)
    if method in ("gaussian", "ksg"):
        nats = gaussian_mi(x, y, s.shrinkage, s.unbiased) if method == "gaussian" else ksg_mi(x, y, s.k)
        return EstimateResult(method, nats, None, [], time.perf_counter() - t0, asdict(s), seed, x.shape[0], 0,
                              "closed form on all samples (no training, no split)")
    if method == "entropy-diff":
        from mi_datagen.estimators.entropy import entropy_difference_mi

        extra = {"steps": s.steps, "test_fraction": s.test_fraction} if s.entropy.startswith("flow") else (
            {"k": s.k} if s.entropy == "kl" else {})
        nats, hx, hy, hxy = entropy_difference_mi(x.numpy(), y.numpy(), s.entropy, seed, **extra)
        return EstimateResult(method, nats, None, [], time.perf_counter() - t0, asdict(s), seed, x.shape[0], 0,
                              f"{s.entropy}: H(X) = {hx:.4f}, H(Y) = {hy:.4f}, H(X,Y) = {hxy:.4f} nats")
    if len(test) < s.batch_size:
        raise EstimatorError(f"the held-out split has {len(test)} samples, fewer than batch_size {s.batch_size}")
    x, y = _standardize(x, train).to(s.device), _standardize(y, train).to(s.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model: GaussianConditional | Critic = (
            GaussianConditional(x.shape[1:], y[0].numel(), s.embed, s.hidden, s.conv_width, s.encoder)
            if method == "club" else Critic(x.shape[1:], y.shape[1:], s.critic, s.embed, s.hidden, s.conv_width, s.encoder))
        model.to(s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    amp = (lambda: torch.autocast(x.device.type, dtype=torch.bfloat16)) if s.bf16 else contextlib.nullcontext
    state: dict = {}
    values, curve = [], []
    val = None
    if s.select == "best-validation":
        n_val = max(s.batch_size, int(round(len(train) * s.val_fraction)))
        train, val = train[n_val:], train[:n_val]
    best: tuple[float, Any, int] | None = (-math.inf, None, 0) if val is not None else None
    every = max(1, s.steps // s.evals)
    for step in range(1, s.steps + 1):
        model.train()
        idx = train[torch.randint(len(train), (s.batch_size,), generator=gen)]
        xb, yb = x[idx], y[idx]
        with amp():
            if isinstance(model, GaussianConditional):  # method == "club"
                obj, value = model.log_likelihood(xb, yb).mean(), model.club(xb, yb)
            else:
                obj, value = _objective(method, s, model(xb, yb).float(), state)
        if not torch.isfinite(obj):
            raise EstimatorError(f"{method}: the training objective became {float(obj.detach())} at step {step}")
        opt.zero_grad(set_to_none=True)
        (-obj).backward()
        opt.step()
        values.append(float(value.detach()))
        if step % max(1, s.steps // 50) == 0 or step == s.steps:
            curve.append((step, float(np.mean(values[-max(1, s.steps // 50):]))))
        if val is not None and (step % every == 0 or step == s.steps):
            v = float(np.mean(_evaluate(model, method, s, x, y, val, amp, select=True)))
            if best is not None and v > best[0]:
                best = (v, copy.deepcopy(model.state_dict()), step)
    if best is not None and best[1] is not None:
        model.load_state_dict(best[1])
    held = _evaluate(model, method, s, x, y, test, amp)
    tail = values[-max(1, s.steps // 5):]
    nats = float(np.mean(held))
    if not math.isfinite(nats):
        raise EstimatorError(f"{method}: the held-out estimate is {nats}")
    chosen = f"critic of step {best[2]} (best on validation)" if best else "critic of the last step"
    return EstimateResult(method, nats, float(np.mean(tail)), curve, time.perf_counter() - t0, asdict(s), seed,
                          len(train), len(test), f"held-out mean over {len(held)} batches of {s.batch_size}; {chosen}")


def _evaluate(model, method: str, s: Settings, x, y, rows: torch.Tensor, amp, select: bool = False) -> list[float]:
    """The readout on ``rows`` in consecutive batches of the training batch size (the last partial one dropped).
    ``select``: the model-selection criterion instead — the same lower bound, but for CLUB (an upper bound,
    whose maximum would be the loosest) the log-likelihood of q(y|x), its training objective."""
    model.eval()
    out = []
    with torch.no_grad(), amp():
        for i in range(0, len(rows) - s.batch_size + 1, s.batch_size):
            idx = rows[i:i + s.batch_size]
            if method == "club":
                q = model.log_likelihood(x[idx], y[idx]).mean() if select else model.club(x[idx], y[idx])
                out.append(float(q))
            else:
                out.append(float(_objective(method, s, model(x[idx], y[idx]).float(), {"ema": None})[1]))
    return out
