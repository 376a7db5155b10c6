"""Benchmark (flow issue, item 5): how few Euler steps can a designed flow's own field take and stay certified
with margin? The fewest-evaluation grid is the cheapest map that needs no new training.

    python benchmarks/few_step_grids.py default-v2 [--steps 6,7,8,10,15] [--t-end 0.97,0.99]
        [--certify 8] [--threads 1] [--json OUT]

For each step count N and end time: the N-step equal-rate grid designed from the pilot stored with the flow
(``grid_design``; no step cap, since a cap forbids few steps) and its predicted worst rate — the smallest common
rate N steps allow (flows.grid.design_times). The prediction assumes the long steps see the field the fine pilot
saw; ``--certify n`` measures it: every step of that grid certified on n latents per class (half N(0, I), half
off distribution, flows.grid.off_distribution_latents), worst observed rate per grid. GFLOP per image = N × the
net's GFLOP per evaluation (torch.utils.flop_counter). Targets: ≤ 2.4 GFLOP per image (item 5) with every step's
rate ≤ 0.8 (item 4).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
from certificate_coverage import step_rates  # noqa: E402
from flow_speed import gflop_per_eval  # noqa: E402

from mi_datagen.flows.grid import design_times, off_distribution_latents  # noqa: E402
from mi_datagen.flows.io import load_flow  # noqa: E402
from mi_datagen.flows.ode import SolverConfig  # noqa: E402

LIMIT, GFLOP_TARGET = 0.8, 2.4


def grid_with_steps(pilot_t, stiffness, steps: int, t_end: float) -> tuple[np.ndarray, np.ndarray]:
    """The equal-rate grid of exactly ``steps`` Euler steps to ``t_end`` (no step cap): bisect on the target rate
    until design_times needs ``steps`` steps (more where even a rate just under 1 does not reach t_end)."""
    lo, hi = 1e-4, 1.0 - 1e-9
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        times, pred = design_times(pilot_t, stiffness, mid, t_end, max_step=1.0)
        if len(times) - 1 == steps:  # design_times already evened the rates out for this step count
            return times, pred
        lo, hi = (lo, mid) if len(times) - 1 < steps else (mid, hi)
    return design_times(pilot_t, stiffness, hi, t_end, max_step=1.0)


def measured_worst(f, solver: SolverConfig, n: int, seed: int, bar) -> tuple[list[float], int]:
    """Worst observed rate per step over n latents per class (half in, half off distribution), and failures."""
    worst, failed = np.zeros(solver.steps), 0
    for label in range(len(f.classes)):
        gen = torch.Generator().manual_seed(seed * 1000 + label)
        z = torch.cat([torch.randn((n - n // 2, *f.shape), generator=gen),
                       off_distribution_latents(n // 2, f.shape, gen)])
        rates = step_rates(f.net, z, label, solver)
        worst = np.maximum(worst, rates.max(0))
        failed += int((rates.max(1) >= 1).sum())
        bar.update(1)
    return worst.tolist(), failed


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("flow", help="a designed flow (shipped name or file) whose grid_design holds its pilot")
    p.add_argument("--steps", default="6,7,8,10,15")
    p.add_argument("--t-end", default="0.97,0.99")
    p.add_argument("--certify", type=int, default=0, help="latents per class to certify each grid on (0: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    f = load_flow(args.flow)
    design = f.meta.get("grid_design")
    if not design:
        sys.exit(f"{args.flow}: no grid_design in the flow file; make one with `mi-datagen design-grid`")
    gf = gflop_per_eval(f.net, f.shape)
    combos = [(int(s), float(t)) for t in args.t_end.split(",") for s in args.steps.split(",")]
    rows: list[dict[str, Any]] = []
    bar = tqdm(total=len(combos) * len(f.classes) if args.certify else None, desc="certify", unit="class",
               disable=not args.certify)
    for steps, t_end in combos:
        times, pred = grid_with_steps(design["pilot_times"], design["pilot_stiffness"], steps, t_end)
        if len(times) - 1 > steps:  # even a rate just under 1 needs more steps: no contraction left to certify
            rows.append(dict(steps=steps, t_end=t_end, predicted_worst=None, gflop_per_image=gf * steps))
            continue
        row = dict(steps=len(times) - 1, t_end=t_end, times=times.tolist(), predicted=pred.tolist(),
                   predicted_worst=float(pred.max()), gflop_per_image=gf * (len(times) - 1))
        if args.certify and row["predicted_worst"] <= 1.0:
            solver = SolverConfig(method="euler", steps=len(times) - 1, t_end=t_end, grid="designed",
                                  times=tuple(times.tolist()))
            row["measured"], row["failed"] = measured_worst(f, solver, args.certify, args.seed, bar)
            row["measured_worst"], row["latents"] = max(row["measured"]), args.certify * len(f.classes)
        rows.append(row)
    bar.close()
    print(f"{args.flow}: {gf:.3f} GFLOP per evaluation; targets ≤ {GFLOP_TARGET} GFLOP/image, rate ≤ {LIMIT}")
    print(f"{'steps':>5} {'t_end':>5} {'GFLOP/img':>9} {'predicted':>9} {'measured':>9} {'failed':>6}  meets both")
    for r in rows:
        m = r.get("measured_worst")
        pw = r["predicted_worst"]
        rate = m if m is not None else pw
        ok = r["gflop_per_image"] <= GFLOP_TARGET and rate is not None and rate <= LIMIT
        print(f"{r['steps']:>5} {r['t_end']:>5} {r['gflop_per_image']:>9.2f} {'≥ 1' if pw is None else f'{pw:.3f}':>9} "
              f"{'–' if m is None else f'{m:.3f}':>9} {r.get('failed', '–'):>6}  {'yes' if ok else 'no'}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(dict(flow=args.flow, sha256=f.sha256, gflop_per_eval=gf,
                                             certify_per_class=args.certify, seed=args.seed, rows=rows), indent=2))


if __name__ == "__main__":
    main()
