"""Benchmark: images/s of the applied map for solver × grid × steps × precision, each with its
certificate (exact per-step inverse round trip) — ratios against euler×16 fp32 in the same run.

    python benchmarks/bench_flows.py [--flow default] [--n 64] [--threads 2] [--lipschitz]

Baseline: euler × 16 to t_end 0.97 (the default flow's solver), channels-last (NHWC) as ``load_flow``
gives it; one row repeats it in NCHW.
Target: ≥ 100 images/s with every step certified and round trip ≤ 1e-4 relative.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from mi_datagen.flows.certify import certify
from mi_datagen.flows.io import load_flow
from mi_datagen.flows.ode import ClassField, SolverConfig, _labels, _solve, time_grid

CONFIGS = [  # (method, steps, grid, t_end, precision, memory layout of the velocity net)
    ("euler", 16, "uniform", 0.97, "fp32", "nhwc"),  # baseline: the default flow's certified solver, as loaded
    ("euler", 16, "uniform", 0.97, "fp32", "nchw"),
    ("euler", 16, "uniform", 0.98, "fp32", "nhwc"),
    ("euler", 20, "uniform", 0.98, "fp32", "nhwc"),
    ("euler", 8, "uniform", 0.97, "fp32", "nhwc"),
    ("euler", 8, "geometric", 0.97, "fp32", "nhwc"),
    ("euler", 32, "uniform", 0.97, "fp32", "nhwc"),
    ("midpoint", 8, "uniform", 0.97, "fp32", "nhwc"),
    ("rk4", 4, "uniform", 0.97, "fp32", "nhwc"),
    ("euler", 16, "uniform", 1.0, "fp32", "nhwc"),
    ("euler", 16, "uniform", 0.97, "bf16", "nhwc"),
]


@torch.no_grad()
def throughput(net, cfg: SolverConfig, n: int, batch: int, bf16: bool, label: int = 0) -> float:
    shape = (net.cfg.image_channels, net.cfg.image_size, net.cfg.image_size)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn((batch, *shape), generator=gen)
    field = ClassField(net, _labels(label, batch, z.device), autocast=bf16)
    _solve(field, z, time_grid(cfg), cfg)  # warm-up
    t0 = time.perf_counter()
    done = 0
    while done < n:
        _solve(field, z, time_grid(cfg), cfg)
        done += batch
    return done / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", default="default")
    ap.add_argument("--n", type=int, default=128, help="images per throughput measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--certify-n", type=int, default=4, help="latents per certificate")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--lipschitz", action="store_true", help="also power-iteration Lipschitz estimates (slow)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    f = load_flow(args.flow)
    print(f"flow {f.path.name} (step {f.meta.get('step')}, sha256 {f.sha256[:12]}), torch {torch.__version__}, "
          f"{args.threads} threads, {platform.machine()}; {args.n} images per figure, batch {args.batch}")
    print(f"{'method':>8} {'steps':>5} {'grid':>9} {'t_end':>5} {'prec':>4} {'mem':>4} {'img/s':>7} {'ratio':>6} "
          f"{'certified':>9} {'worst rate':>10} {'rt rel RMS':>10} {'rt max abs':>10}")
    base = None
    gen = torch.Generator().manual_seed(1)
    z = torch.randn((args.certify_n, *f.shape), generator=gen)
    for method, steps, grid, t_end, prec, mem in CONFIGS:
        cfg = SolverConfig(method=method, steps=steps, grid=grid, t_end=t_end)
        f.net.to(memory_format=torch.channels_last if mem == "nhwc" else torch.contiguous_format)
        ips = throughput(f.net, cfg, args.n, args.batch, prec == "bf16")
        base = base or ips
        if prec == "bf16":
            # the certificate is for the fp32 map; bf16 autocast changes the map itself: report its
            # round trip through the fp32 inverse as the measured discrepancy
            from mi_datagen.flows.certify import invert
            from mi_datagen.flows.ode import flow_map

            x = flow_map(f.net, z, 0, cfg, autocast=True)
            try:
                zr = invert(f.net, x, 0, cfg)
                rel = float(((zr - z).flatten(1).norm(dim=1) / z.flatten(1).norm(dim=1)).max())
                mx = float((zr - z).abs().max())
            except RuntimeError:
                rel = mx = float("nan")
            print(f"{method:>8} {steps:>5} {grid:>9} {t_end:>5} {prec:>4} {mem:>4} {ips:>7.1f} {ips / base:>6.2f} "
                  f"{'n/a':>9} {'':>10} {rel:>10.2e} {mx:>10.2e}   (bf16 map through the fp32 inverse)")
            continue
        cert, _ = certify(f.net, z, 0, cfg, lipschitz=args.lipschitz)
        worst = max(s.contraction_rate for s in cert.steps)
        print(f"{method:>8} {steps:>5} {grid:>9} {t_end:>5} {prec:>4} {mem:>4} {ips:>7.1f} {ips / base:>6.2f} "
              f"{str(cert.certified):>9} {worst:>10.3f} {cert.roundtrip_rel_rms_max:>10.2e} {cert.roundtrip_max_abs:>10.2e}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
