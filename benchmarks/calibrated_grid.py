"""Re-design a flow's grid from what its certificate coverage saw (flow issue, item 4: worst rate ≤ 0.8 everywhere).

    python benchmarks/calibrated_grid.py FLOW --coverage benchmarks/results/certificate-coverage/NAME
        [--hard LABEL:DIST:GENERATOR_SEED:BATCH:INDEX …] [--target 0.7] [--register NEW_NAME]

A designed grid (``mi-datagen design-grid``) is predicted from a pilot of a few hundred latents; a coverage run
(benchmarks/certificate_coverage.py) of thousands sees the tail the pilot missed — on `default-v2`'s 15-step grid
the worst observed rates were 1.3–1.8 × the predicted ones, and one latent failed. Here the pilot's stiffness is
scaled, step by step, by those observed/predicted ratios (``flows.grid.calibrate_stiffness``); each ``--hard`` latent
(a coverage record's ``hardest`` entry, or a failure found by hand) is re-drawn, its own stiffness measured on the
pilot grid and taken where it is higher. The grid designed from that profile at ``--target`` is printed and, with
``--register``, added to the shipped registry as the same pinned weights on the new grid (no new weights file).
The new grid is a prediction like any other: its coverage is measured again before it becomes the default.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from mi_datagen.assets import checkpoints_dir, register, registry
from mi_datagen.flows.grid import calibrate_stiffness, coverage_latents, design_from_pilot, pilot_stiffness
from mi_datagen.flows.io import load_flow
from mi_datagen.flows.ode import SolverConfig


def observed_worst(coverage: Path, flow) -> tuple[np.ndarray, int]:
    """Per step, the worst rate over every coverage record made with exactly this map; and how many latents."""
    made = json.loads((coverage / "flow.json").read_text())
    if made["sha256"] != flow.sha256 or SolverConfig(**made["solver"]) != flow.solver:
        raise SystemExit(f"{coverage}: its records were made with another map (sha256 {made['sha256'][:12]}…)")
    recs = [json.loads(p.read_text()) for p in sorted(coverage.glob("*.json")) if p.name != "flow.json"]
    if not recs:
        raise SystemExit(f"{coverage}: no coverage records")
    return np.max([r["step_worst"] for r in recs], axis=0), sum(r["n"] for r in recs)


def hard_latent(spec: str, shape) -> tuple[int, torch.Tensor]:
    """LABEL:DIST:GENERATOR_SEED:BATCH:INDEX → (label, the latent), drawn as certificate_coverage draws it."""
    label, dist, seed, batch, index = spec.split(":")
    gen, index, batch = torch.Generator().manual_seed(int(seed)), int(index), int(batch)
    for _ in range(index // batch + 1):
        z = coverage_latents(dist, batch, shape, gen)
    return int(label), z[index % batch: index % batch + 1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("flow")
    ap.add_argument("--coverage", type=Path, required=True)
    ap.add_argument("--hard", nargs="*", default=[], help="LABEL:DIST:GENERATOR_SEED:BATCH:INDEX")
    ap.add_argument("--target", type=float, default=0.7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--register", default=None, help="add the result to the shipped registry under this name")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    f = load_flow(args.flow)
    gd = f.meta.get("grid_design")
    if not gd or tuple(gd["times"]) != f.solver.times:
        raise SystemExit(f"{args.flow}: not a designed grid with its pilot record")
    obs, n_cov = observed_worst(args.coverage, f)
    pt = np.asarray(gd["pilot_times"])
    pilot = SolverConfig(method="euler", steps=len(pt) - 1, t_end=float(pt[-1]), grid="designed",
                         times=tuple(float(t) for t in pt))
    extra = []
    for spec in args.hard:
        label, z = hard_latent(spec, f.shape)
        extra.append(pilot_stiffness(f.net, {label: z}, pilot))
    cal = calibrate_stiffness(pt, gd["pilot_stiffness"], gd["times"], gd["predicted"], obs, extra)
    design = design_from_pilot(pt, cal, gd["pilot_samples"] + n_cov, target=args.target, t_end=float(pt[-1]),
                               max_step=gd["max_step"])
    solver = design.solver(f.solver)
    print(f"{args.flow}: coverage of {n_cov} latents, observed/predicted per step "
          f"{np.round(np.asarray(obs) / np.asarray(gd['predicted']), 2).tolist()}")
    print(f"calibrated design at target {args.target}: {solver.steps} Euler steps (was {f.solver.steps}), times "
          f"{np.round(design.times, 4).tolist()}")
    if args.register:
        entry = registry().get(args.flow)
        if entry is None:
            raise SystemExit("--register: the flow must be a registered one (its weights stay pinned)")
        calibration = dict(flow=args.flow, coverage=str(args.coverage), coverage_latents=n_cov,
                           observed_worst=[float(x) for x in obs], hard=list(args.hard), target=args.target)
        register(checkpoints_dir(), args.register, {"file": entry["file"], "sha256": entry["sha256"],
                                                    "step": entry.get("step"), "solver": solver.to_dict(),
                                                    "grid_design": design.to_dict(), "calibration": calibration})
        print(f"registered {args.register!r}: {entry['file']} on this grid")


if __name__ == "__main__":
    main()
