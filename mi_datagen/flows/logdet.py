"""log|det ∂F/∂z| of the applied map, summed over its residual steps.

For a step S(x) = x + g(x) with ‖J_g‖ < 1 (the condition certification checks):
    log|det(I + J_g)| = Σ_{k≥1} (−1)^{k+1} tr(J_g^k) / k,
with tr(J_g^k) estimated by Hutchinson probes vᵀ J_g^k v (k Jacobian-vector products per probe).
``exact_logdet`` forms the full Jacobian of F with autograd (small d only) for reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.func import jvp
from torch.nn.attention import SDPBackend, sdpa_kernel

from mi_datagen.flows.ode import SolverConfig, flow_map, step_map


@dataclass
class LogDetEstimate:
    value: torch.Tensor  # (B,) per-sample estimate
    stderr: torch.Tensor  # (B,) Hutchinson standard error (0 for exact traces)
    terms: int
    probes: int


def series_from_traces(traces: torch.Tensor) -> torch.Tensor:
    """Σ_k (−1)^{k+1} tr_k / k for traces[..., k-1] = tr(J^k)."""
    k = torch.arange(1, traces.shape[-1] + 1, dtype=traces.dtype, device=traces.device)
    return (traces * ((-1.0) ** (k + 1)) / k).sum(-1)


def step_logdet(net, x: torch.Tensor, label, cfg: SolverConfig, n: int, *, terms: int = 10, probes: int = 4,
                seed: int = 0) -> LogDetEstimate:
    """Hutchinson power-series estimate of log|det ∂S_n/∂x| at x, per sample.

    The step acts on each sample alone (its Jacobian is block diagonal over the batch), so all
    probes ride in the batch dimension: one JVP per series term for every probe at once.
    """
    B = x.shape[0]
    xs = x.unsqueeze(0).expand(probes, *x.shape).reshape(probes * B, *x.shape[1:])
    lab = label.repeat(probes) if isinstance(label, torch.Tensor) else label

    def g(u):
        return step_map(net, u, lab, cfg, n) - u

    gen = torch.Generator().manual_seed(seed + 7919 * n)
    v = (torch.randint(0, 2, xs.shape, generator=gen) * 2 - 1).to(x)
    w, traces = v, []
    # forward-mode AD through attention needs the math kernel (CPU flash attention, which torch picks for
    # channels-last inputs, has no JVP); it computes the same function, so the Jacobian is the applied map's
    with sdpa_kernel(SDPBackend.MATH):
        for _ in range(terms):
            w = jvp(g, (xs,), (w,))[1]
            w = w.detach()
            traces.append((v * w).flatten(1).sum(1))
    est = series_from_traces(torch.stack(traces, -1)).reshape(probes, B)
    se = est.std(0, unbiased=True) / probes**0.5 if probes > 1 else torch.zeros(B, dtype=est.dtype)
    return LogDetEstimate(est.mean(0).detach(), se.detach(), terms, probes)


def flow_logdet(net, z: torch.Tensor, label, cfg: SolverConfig, *, terms: int = 10, probes: int = 4,
                seed: int = 0) -> LogDetEstimate:
    """log|det ∂F/∂z| per sample: the sum of the step estimates along the trajectory (SEs add in quadrature)."""
    traj = flow_map(net, z, label, cfg, trajectory=True)
    total = torch.zeros(z.shape[0], dtype=torch.float64)
    var = torch.zeros(z.shape[0], dtype=torch.float64)
    for n in range(cfg.steps):
        e = step_logdet(net, traj[n], label, cfg, n, terms=terms, probes=probes, seed=seed)
        total += e.value.double().cpu()
        var += e.stderr.double().cpu() ** 2
    return LogDetEstimate(total, var.sqrt(), terms, probes)


def exact_logdet(net, z: torch.Tensor, label, cfg: SolverConfig) -> torch.Tensor:
    """log|det ∂F/∂z| per sample from the full autograd Jacobian of the applied map (small d only)."""
    out = []
    for i in range(z.shape[0]):
        lab = label[i:i + 1] if isinstance(label, torch.Tensor) else label

        def f(u, lab=lab):
            x = u.reshape(1, *z.shape[1:])
            for n in range(cfg.steps):
                x = step_map(net, x, lab, cfg, n)
            return x.reshape(-1)

        J = torch.autograd.functional.jacobian(f, z[i].reshape(-1))
        out.append(torch.linalg.slogdet(J.double())[1])
    return torch.stack(out)


def step_jacobian(net, x: torch.Tensor, label, cfg: SolverConfig, n: int) -> torch.Tensor:
    """Full Jacobian of g_n = S_n − id at one sample x (1, ...) (small d only)."""

    def g(u):
        xx = u.reshape(1, *x.shape[1:])
        return (step_map(net, xx, label, cfg, n) - xx).reshape(-1)

    return torch.autograd.functional.jacobian(g, x.reshape(-1))


