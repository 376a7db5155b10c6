"""The map x = F(z): a fixed-grid torchdiffeq solve of dx/dt = v(x, t, c) from t = 0 to t_end.

The *applied* map is ``flow_map`` (one ``odeint`` call over the whole grid). ``step_map`` is the
same solver on one interval [t_n, t_{n+1}] — torchdiffeq's fixed-grid solvers take exactly one
step per interval of the grid they are given — so F = S_N ∘ … ∘ S_1 holds for the very function
that is applied, and certifying each S_n certifies F (docs/model.md §3).
An adaptive ``dopri5`` solve is available as a reference only: it has no fixed grid to certify.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import torch
from torch import nn
from torchdiffeq import odeint

from mi_datagen.errors import ConfigError
from mi_datagen.limits import limit

FIXED = ("euler", "midpoint", "rk4")
STAGES = {"euler": 1, "midpoint": 2, "rk4": 4}
GRIDS = ("uniform", "geometric", "hybrid", "designed")


@dataclass(frozen=True)
class SolverConfig:
    method: Literal["euler", "midpoint", "rk4", "dopri5"] = "euler"
    steps: int = 16
    t_end: float = 0.98
    grid: Literal["uniform", "geometric", "hybrid", "designed"] = "uniform"
    rtol: float = 1e-5
    atol: float = 1e-5
    times: tuple[float, ...] | None = None  # the grid itself, for grid="designed" (flows.grid.design_times)

    def __post_init__(self):
        if self.method not in (*FIXED, "dopri5"):
            raise ConfigError(f"method must be one of {FIXED + ('dopri5',)}, got {self.method!r}")
        if not 0.0 < self.t_end <= 1.0:
            raise ConfigError(f"t_end must be in (0, 1], got {self.t_end}")
        if self.grid not in GRIDS:
            raise ConfigError(f"grid must be one of {', '.join(GRIDS)}, got {self.grid!r}")
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.steps > limit("solver_steps").value:
            raise ConfigError(f"steps: {limit('solver_steps').refusal(self.steps)}")
        self._check_times()

    def _check_times(self) -> None:
        if (self.grid == "designed") != (self.times is not None):
            raise ConfigError("times: a designed grid needs its times and only a designed grid takes them "
                              f"(grid {self.grid!r}, times {'given' if self.times is not None else 'None'}); "
                              "make one with `mi-datagen design-grid`")
        if self.times is None:
            return
        t = tuple(float(x) for x in self.times)
        object.__setattr__(self, "times", t)
        if len(t) != self.steps + 1:
            raise ConfigError(f"times: {len(t)} times for {self.steps} steps; a grid of N steps has N + 1 times")
        if t[0] != 0.0 or t[-1] != self.t_end or any(b <= a for a, b in zip(t, t[1:])):
            raise ConfigError(f"times must rise strictly from 0 to t_end = {self.t_end}, got {t[0]} … {t[-1]}")

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.times is None:
            del d["times"]  # the records of flows without a designed grid stay as they were
        else:
            d["times"] = list(self.times)
        return d


HYBRID_KNEE = 0.75


def time_grid(cfg: SolverConfig, dtype=torch.float32) -> torch.Tensor:
    """uniform: t_n = n·t_end/N. geometric: 1 − t_n shrinks geometrically from 1 to 1 − t_end, so
    h_n/(1 − t_n) is constant — matched to a field whose Lipschitz constant grows like 1/(1 − t).
    hybrid: round(2N/3) uniform steps to t = 0.75, then geometric ones to t_end — the trained fields are stiff
    both near t ≈ 0.1–0.4 and near t → 1 (benchmarks/RESULTS.md). (geometric and hybrid need t_end < 1.)
    designed: the config's own ``times``, equal-rate times made from a pilot certificate (flows.grid)."""
    n = torch.arange(cfg.steps + 1, dtype=torch.float64)
    if cfg.grid == "designed" and cfg.method != "dopri5":
        t = torch.tensor(cfg.times, dtype=torch.float64)
    elif cfg.grid == "uniform" or cfg.method == "dopri5":
        t = n / cfg.steps * cfg.t_end
    else:
        if cfg.t_end >= 1.0:
            raise ConfigError(f"a {cfg.grid} grid needs t_end < 1")
        if cfg.grid == "geometric":
            t = 1.0 - (1.0 - cfg.t_end) ** (n / cfg.steps)
        else:
            if cfg.steps < 2 or cfg.t_end <= HYBRID_KNEE:
                raise ConfigError(f"a hybrid grid needs steps >= 2 and t_end > {HYBRID_KNEE}")
            nu = min(cfg.steps - 1, max(1, round(2 * cfg.steps / 3)))
            ng = cfg.steps - nu
            head = torch.arange(nu, dtype=torch.float64) / nu * HYBRID_KNEE
            tail = 1.0 - (1.0 - HYBRID_KNEE) * ((1.0 - cfg.t_end) / (1.0 - HYBRID_KNEE)) ** (
                torch.arange(ng + 1, dtype=torch.float64) / ng)
            t = torch.cat([head, tail])
    if cfg.method == "dopri5":
        t = torch.tensor([0.0, cfg.t_end], dtype=torch.float64)
    return t.to(dtype)


class ClassField(nn.Module):
    """v(t, x) for torchdiffeq: the velocity net at a fixed class label per sample."""

    def __init__(self, net: nn.Module, labels: torch.Tensor, autocast: bool = False):
        super().__init__()
        self.net, self.labels, self.autocast = net, labels, autocast

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.to(x.dtype).expand(x.shape[0])
        if self.autocast:
            with torch.autocast(x.device.type, dtype=torch.bfloat16):
                return self.net(x, tt, self.labels).to(x.dtype)
        return self.net(x, tt, self.labels)


class Tiled(nn.Module):
    """The velocity net evaluated on fixed tiles of ``tile`` samples (the last one zero-padded).

    A conv net's floating-point result for one sample can depend on the batch *shape* it runs in
    (kernels are chosen per shape), never on the other samples' values. Evaluating the net always
    on tiles of the same size, aligned to the global sample index by the caller, makes a sample's
    output independent of the batch size the user picks. The solver's own arithmetic is elementwise.
    """

    def __init__(self, net: nn.Module, tile: int):
        super().__init__()
        if tile < 1:
            raise ConfigError(f"tile must be >= 1, got {tile}")
        self.net, self.tile, self.cfg = net, tile, getattr(net, "cfg", None)

    def forward(self, x: torch.Tensor, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        n, T = x.shape[0], self.tile
        pad = (-n) % T
        if pad:
            x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
            t = torch.cat([t, t[-1:].expand(pad)])
            c = torch.cat([c, c[-1:].expand(pad)])
        out = torch.cat([self.net(x[i:i + T], t[i:i + T], c[i:i + T]) for i in range(0, n + pad, T)])
        return out[:n]


def _labels(label, n: int, device) -> torch.Tensor:
    if isinstance(label, torch.Tensor):
        return label.to(device)
    return torch.full((n,), int(label), dtype=torch.long, device=device)


def _solve(field: nn.Module, x: torch.Tensor, t: torch.Tensor, cfg: SolverConfig) -> torch.Tensor:
    if cfg.method == "dopri5":
        return odeint(field, x, t.to(x.device), method="dopri5", rtol=cfg.rtol, atol=cfg.atol)
    return odeint(field, x, t.to(x.device), method=cfg.method)


@torch.no_grad()
def flow_map(net: nn.Module, z: torch.Tensor, label, cfg: SolverConfig, *, autocast: bool = False,
             trajectory: bool = False) -> torch.Tensor:
    """x = F(z) (or every grid state with ``trajectory=True``)."""
    field = ClassField(net, _labels(label, z.shape[0], z.device), autocast)
    xs = _solve(field, z, time_grid(cfg, z.dtype), cfg)
    return xs if trajectory else xs[-1]


def step_map(net: nn.Module, x: torch.Tensor, label, cfg: SolverConfig, n: int, *, autocast: bool = False) -> torch.Tensor:
    """S_n(x): the solver's single step on [t_n, t_{n+1}] (differentiable: used for Jacobians)."""
    if cfg.method not in FIXED:
        raise ConfigError(f"step_map needs a fixed-grid method {FIXED}, got {cfg.method!r}")
    field = ClassField(net, _labels(label, x.shape[0], x.device), autocast)
    t = time_grid(cfg, x.dtype)[n:n + 2]
    return odeint(field, x, t.to(x.device), method=cfg.method)[-1]


@torch.no_grad()
def reverse_solve(net: nn.Module, x: torch.Tensor, label, cfg: SolverConfig) -> torch.Tensor:
    """Integrate the ODE backwards (t_end → 0). NOT the inverse of the applied map: it only
    measures discretisation error. The exact inverse is ``certify.invert``."""
    field = ClassField(net, _labels(label, x.shape[0], x.device))
    return _solve(field, x, time_grid(cfg, x.dtype).flip(0), cfg)[-1]
