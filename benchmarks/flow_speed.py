"""Benchmark (flow issue, item 5): the applied maps of several flows side by side, in the same run.

    python benchmarks/flow_speed.py --flow v1=default --flow v2=runs/v2-designed.pt [--threads 2] [--json OUT]

Per flow, with its own shipped solver: images/s of the map, GFLOP per evaluation of the velocity net (counted
by torch.utils.flop_counter) and per image, the share of this CPU's fp32 GEMM rate measured in the same run,
the certificate margin (1 − worst contraction rate over every step on a few latents of each class), the round
trip, and the per-sample certification cost in `generate` (seconds per certified sample of its
``certify_steps`` tightest steps, next to seconds per generated sample). Ratios are against the first flow.
Target: ≥ 50 images/s on 2 cores (≤ 2.4 GFLOP per image), certified, round trip ≤ 1e-4 relative.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_flows import throughput  # noqa: E402

from mi_datagen.flows.certify import certify, certify_samples  # noqa: E402
from mi_datagen.flows.grid import tightest_steps  # noqa: E402
from mi_datagen.flows.io import load_flow  # noqa: E402
from mi_datagen.flows.ode import STAGES, flow_map  # noqa: E402


def gemm_gflops(threads: int, size: int = 1024, reps: int = 20) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * size ** 3 * reps / (time.perf_counter() - t0) / 1e9


@torch.no_grad()
def gflop_per_eval(net, shape) -> float:
    x = torch.randn((1, *shape)).contiguous(memory_format=torch.channels_last)
    with FlopCounterMode(display=False) as fc:
        net(x, torch.zeros(1), torch.zeros(1, dtype=torch.long))
    return fc.get_total_flops() / 1e9


def measure(name: str, ref: str, args, peak: float) -> dict:
    f = load_flow(ref)
    s = f.solver
    evals = s.steps * STAGES[s.method]
    gf = gflop_per_eval(f.net, f.shape)
    ips = throughput(f.net, s, args.n, args.batch, False)
    gen = torch.Generator().manual_seed(1)
    worst, rt = 0.0, 0.0
    labels = range(0, len(f.classes), max(1, len(f.classes) // args.classes))
    for lab in labels:
        z = torch.randn((args.certify_n, *f.shape), generator=gen)
        cert, _ = certify(f.net, z, lab, s, lipschitz=False)
        worst, rt = max(worst, max(st.contraction_rate for st in cert.steps)), max(rt, cert.roundtrip_rel_rms_max)
    z = torch.randn((args.batch, *f.shape), generator=gen)
    traj = flow_map(f.net, z, 0, s, trajectory=True)
    t0 = time.perf_counter()
    for n in tightest_steps(s, f.meta.get("grid_design"), 1):
        certify_samples(f.net, traj[n], traj[n + 1], 0, s, n, lipschitz=False)
    cert_s = (time.perf_counter() - t0) / args.batch
    return dict(flow=name, ref=ref, step=f.meta.get("step"), sha256=f.sha256, method=s.method, steps=s.steps,
                grid=s.grid, t_end=s.t_end, gflop_per_eval=gf, gflop_per_image=gf * evals, images_per_s=ips,
                gemm_share=gf * evals * ips / peak, worst_rate=worst, margin=1 - worst, roundtrip_rel_rms_max=rt,
                certify_s_per_sample=cert_s, generate_s_per_sample=1 / ips, classes_checked=len(labels),
                latents_per_class=args.certify_n)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--flow", action="append", required=True, help="NAME=REF (a shipped name or a flow file)")
    ap.add_argument("--n", type=int, default=128, help="images per throughput measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--certify-n", type=int, default=4, help="latents per class for the certificate margin")
    ap.add_argument("--classes", type=int, default=10, help="classes certified (spread over the flow's classes)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    peak = gemm_gflops(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.machine()}, fp32 GEMM (1024²) {peak:.1f} GFLOP/s")
    rows = [measure(*spec.split("=", 1), args, peak) for spec in args.flow]
    print(f"{'flow':>6} {'step':>6} {'solver':>24} {'GF/eval':>7} {'GF/img':>6} {'img/s':>6} {'ratio':>5} {'GEMM %':>6} "
          f"{'worst rate':>10} {'margin':>6} {'rt rel':>8} {'cert s/sample':>13} {'gen s/sample':>12}")
    for r in rows:
        solver = f"{r['method']}×{r['steps']} {r['grid']}→{r['t_end']}"
        print(f"{r['flow']:>6} {str(r['step']):>6} {solver:>24} {r['gflop_per_eval']:>7.3f} {r['gflop_per_image']:>6.2f} "
              f"{r['images_per_s']:>6.1f} {r['images_per_s'] / rows[0]['images_per_s']:>5.2f} "
              f"{100 * r['gemm_share']:>6.1f} {r['worst_rate']:>10.3f} {r['margin']:>6.3f} "
              f"{r['roundtrip_rel_rms_max']:>8.1e} {r['certify_s_per_sample']:>13.3f} {r['generate_s_per_sample']:>12.4f}")
    if args.json:
        args.json.write_text(json.dumps(dict(gemm_gflops=peak, threads=args.threads, rows=rows), indent=2))


if __name__ == "__main__":
    main()
