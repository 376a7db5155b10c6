"""Equal-rate time grids for the applied map, designed from a pilot certificate.

For an Euler step S_n(x) = x + h_n v(x, t_n), the map g_n = S_n − id has Jacobian h_n ∂v/∂x (x, t_n)
*exactly*, so a step's contraction rate is h_n times the field's local stiffness at t_n. A pilot
certificate on a fine grid (small steps, rates ≪ 1) measures that stiffness, λ(t_k) = rate_k / h_k,
the worst over every sample and class checked. The designed grid then takes the longest steps
whose predicted rate h·λ(t_n) stays at one common value — as few steps as the target
rate allows, every one of them equally far from 1 — instead of a fixed shape (uniform, geometric)
that over-resolves one region of t and under-resolves another (benchmarks/RESULTS.md).

The design is a prediction: the grid is certified like any other (``certify``, and per stored
sample in ``generate``), and the pilot's rates travel with the flow file to say which steps are the
tightest. Higher-order solvers have no such exact relation, so only Euler grids are designed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch

from mi_datagen.errors import ConfigError
from mi_datagen.flows.ode import SolverConfig, flow_map, time_grid

__all__ = ["GridDesign", "design_times", "design_from_pilot", "off_distribution_latents", "pilot_stiffness",
           "design_grid", "tightest_steps", "calibrate_stiffness", "coverage_latents"]

_FINE = 20_000  # points of the fine t-mesh the design walks on


@dataclass(frozen=True)
class GridDesign:
    """A designed grid and the pilot it came from (stored with the flow as ``grid_design``)."""
    times: tuple[float, ...]
    target: float  # the rate the design aimed at
    predicted: tuple[float, ...]  # per designed step, h_n · λ(t_n)
    pilot_times: tuple[float, ...]
    pilot_stiffness: tuple[float, ...]  # per pilot step, worst rate / h
    pilot_samples: int
    max_step: float = 1.0

    def solver(self, base: SolverConfig | None = None) -> SolverConfig:
        base = base or SolverConfig()
        return SolverConfig(method="euler", steps=len(self.times) - 1, t_end=self.times[-1], grid="designed",
                            rtol=base.rtol, atol=base.atol, times=self.times)

    def worst_steps(self, k: int) -> list[int]:
        """The k steps with the highest predicted rate, in grid order."""
        return tightest_steps(self.solver(), self.to_dict(), k)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def tightest_steps(solver: SolverConfig, design: dict | None, k: int) -> list[int]:
    """The k steps of ``solver`` where the contraction rate is expected highest, in grid order: for a designed grid
    with its pilot record (a flow's ``grid_design``), those with the highest predicted rate; else the last k (where a
    uniform grid's rate is highest)."""
    k = min(k, solver.steps)
    if solver.grid == "designed" and design and tuple(design["times"]) == solver.times:
        order = np.argsort(-np.asarray(design["predicted"]), kind="stable")[:k]
        return sorted(int(i) for i in order)
    return list(range(solver.steps - k, solver.steps))


def _stiffness_at(pilot_t: np.ndarray, stiff: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """λ on the mesh: log-linear between the pilot's step starts t_k (where its Euler steps saw the field), flat
    beyond the last one."""
    return np.exp(np.interp(mesh, pilot_t[:-1], np.log(stiff)))


def _walk(lam: np.ndarray, mesh: np.ndarray, target: float, max_step: float) -> list[int]:
    """Greedy: from each grid point i, the farthest mesh point j with (t_j − t_i) · λ(t_i) ≤ target and
    t_j − t_i ≤ max_step."""
    idx, i, last = [0], 0, len(mesh) - 1
    while i < last:
        j = int(np.searchsorted(mesh, mesh[i] + min(target / lam[i], max_step), side="right")) - 1
        idx.append(min(max(j, i + 1), last))
        i = idx[-1]
    return idx


def design_times(pilot_t, stiffness, target: float = 0.65, t_end: float | None = None,
                 max_step: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Times 0 = t_0 < … < t_N = t_end with every Euler step's predicted rate h_n · λ(t_n) ≤ ``target`` (λ read
    off the pilot), N as small as that allows, then evened out: the smallest common rate that still needs only N
    steps, so every step sits at the same predicted rate.

    Returns (times, predicted rate per step). ``pilot_t``: the pilot grid (K + 1 times from 0), ``stiffness``:
    K per-step stiffnesses (worst rate / step length, finite and > 0). ``max_step`` caps every step: where the
    field is soft, a long Euler step leaves the fine pilot's trajectory and meets a stiffer field than predicted.
    The rates are evened out only among the steps the target (not the cap) limits."""
    pilot_t, stiff = np.asarray(pilot_t, dtype=np.float64), np.asarray(stiffness, dtype=np.float64)
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target: the designed rate must be in (0, 1), got {target}")
    if pilot_t.ndim != 1 or len(pilot_t) != len(stiff) + 1 or pilot_t[0] != 0.0 or np.any(np.diff(pilot_t) <= 0):
        raise ConfigError("pilot: K steps need K + 1 strictly rising times from 0")
    if not np.all(np.isfinite(stiff)) or np.any(stiff <= 0):
        raise ConfigError("pilot: a step of the pilot did not converge (infinite rate); use a finer pilot grid")
    t_end = float(pilot_t[-1] if t_end is None else t_end)
    if not 0.0 < t_end <= pilot_t[-1]:
        raise ConfigError(f"t_end: {t_end} is outside the pilot's range (0, {pilot_t[-1]}]")
    if not max_step > 0.0:
        raise ConfigError(f"max_step: a step cap must be > 0, got {max_step}")
    mesh = np.linspace(0.0, t_end, _FINE + 1)
    lam = _stiffness_at(pilot_t, stiff, mesh)
    n = len(_walk(lam, mesh, target, max_step)) - 1
    lo, hi = 0.0, target  # the smallest rate that still reaches t_end in n steps
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if len(_walk(lam, mesh, mid, max_step)) - 1 <= n else (mid, hi)
    idx = np.asarray(_walk(lam, mesh, hi, max_step))
    times = mesh[idx]
    times[-1] = t_end
    return times, np.diff(times) * lam[idx[:-1]]


def off_distribution_latents(n: int, shape: tuple[int, ...], generator: torch.Generator,
                             spread: float = 768.0) -> torch.Tensor:
    """Latents of unstandardised specs: N(0, I) plus a common cause of variance ``spread`` (ρ²d; 768 is ρ = 0.5 at
    d = 3072) along a unit template — half along the flat ``ones`` direction (brightness), half along a fixed
    random one."""
    z = torch.randn((n, *shape), generator=generator)
    d = int(np.prod(shape))
    ones = torch.full(shape, d ** -0.5)
    rand = torch.randn(shape, generator=generator)
    rand = rand / rand.norm()
    amp = torch.randn(n, generator=generator) * spread ** 0.5
    dirs = torch.stack([ones if i % 2 == 0 else rand for i in range(n)])
    return z + amp.view(-1, *([1] * len(shape))) * dirs


def coverage_latents(dist: str, n: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """The next ``n`` latents a certificate coverage draws: ``in`` N(0, I), ``off`` off_distribution_latents."""
    return torch.randn((n, *shape), generator=generator) if dist == "in" else off_distribution_latents(n, shape, generator)


def pilot_stiffness(net, latents: dict, cfg: SolverConfig, progress=None) -> np.ndarray:
    """Per step of the (fine) pilot grid ``cfg``: the worst observed contraction rate / step length over all
    latents, ``latents``: label index → (n, C, H, W) tensor. ∞ where a step did not converge."""
    from mi_datagen.flows.certify import certify_samples

    if cfg.method != "euler":
        raise ConfigError(f"method: only Euler grids are designed (rate = h · stiffness exactly), got {cfg.method!r}")
    h = torch.diff(time_grid(cfg, torch.float64)).numpy()
    worst = np.zeros(cfg.steps)
    for label, z in latents.items():
        traj = flow_map(net, z, label, cfg, trajectory=True)
        for n in range(cfg.steps):
            v = certify_samples(net, traj[n], traj[n + 1], label, cfg, n, lipschitz=False)
            worst[n] = max(worst[n], float(v.max()))
            if progress is not None:
                progress()
    return worst / h


def design_from_pilot(pilot_t, stiffness, pilot_samples: int, *, target: float = 0.65, t_end: float | None = None,
                      max_step: float = 0.1) -> GridDesign:
    """A design from a pilot already measured (e.g. the one stored with a designed flow, to try another target)."""
    times, pred = design_times(pilot_t, stiffness, target, t_end, max_step)
    return GridDesign(tuple(times.tolist()), target, tuple(pred.tolist()), tuple(float(t) for t in pilot_t),
                      tuple(float(s) for s in stiffness), pilot_samples, max_step)


def calibrate_stiffness(pilot_t, stiffness, grid_times, predicted, observed, extra=()) -> np.ndarray:
    """The pilot's stiffness scaled to what a coverage run of a designed grid saw (a pilot of a few hundred latents
    misses the tail of thousands). Per pilot step: × the ratio observed worst rate / predicted rate of the designed
    step (``grid_times``, ``predicted``) its start lies in; a step that failed somewhere (observed ∞, rate ≥ 1) takes
    the larger of 1 / predicted and the largest finite ratio. Then the maximum with every ``extra`` profile (per
    pilot step: e.g. the stiffness of a latent that failed, measured on the pilot grid)."""
    pilot_t, stiff = np.asarray(pilot_t, dtype=np.float64), np.asarray(stiffness, dtype=np.float64)
    gt, pred, obs = (np.asarray(a, dtype=np.float64) for a in (grid_times, predicted, observed))
    if len(gt) != len(pred) + 1 or len(obs) != len(pred):
        raise ConfigError(f"calibration: a grid of {len(gt) - 1} steps needs {len(gt) - 1} predicted and observed "
                          f"rates, got {len(pred)} and {len(obs)}")
    ratio = obs / pred
    finite = np.isfinite(ratio)
    if not finite.any():
        raise ConfigError("calibration: every step failed; measure the coverage on a finer grid first")
    ratio = np.where(finite, ratio, np.maximum(ratio[finite].max(), 1.0 / pred))
    step = np.clip(np.searchsorted(gt, pilot_t[:-1], side="right") - 1, 0, len(pred) - 1)
    out = stiff * ratio[step]
    for e in extra:
        e = np.asarray(e, dtype=np.float64)
        if e.shape != stiff.shape:
            raise ConfigError(f"calibration: an extra profile needs {len(stiff)} pilot steps, got {e.shape}")
        out = np.maximum(out, e)
    return out


def design_grid(net, latents: dict, *, target: float = 0.65, t_end: float = 0.99, pilot_steps: int = 48,
                max_step: float = 0.1, progress=None) -> GridDesign:
    """Pilot on a fine hybrid grid to ``t_end`` (uniform to t = 0.75, geometric beyond), then design."""
    pilot = SolverConfig(method="euler", steps=pilot_steps, t_end=t_end, grid="hybrid")
    stiff = pilot_stiffness(net, latents, pilot, progress)
    pt = time_grid(pilot, torch.float64).numpy()
    return design_from_pilot(pt, stiff, sum(int(z.shape[0]) for z in latents.values()), target=target, t_end=t_end,
                             max_step=max_step)
