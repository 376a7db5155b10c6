"""Benchmark (flow issue, item 4): every step of a flow's applied map certified on many latents per class,
in and off distribution — the coverage the shipped grid must have (worst rate ≤ 0.8 on ≥ 1 024 latents per class).

    python benchmarks/certificate_coverage.py FLOW --n 256 --seed 1 --out benchmarks/results/certificate-coverage/NAME
        [--classes 0,1,…] [--dist in,off] [--batch 32] [--threads 1] [--summary]

One JSON per (class, distribution, n, seed) under --out, never redone (a rerun continues where it stopped), then a
summary per (class, distribution) over every seed there (`--summary` alone prints it): runs with several seeds add
up to the coverage, in pieces short enough to finish within a working session.
``in``: N(0, I), what standardised stores feed the flow; ``off``: the latents of unstandardised specs
(flows.grid.off_distribution_latents: variance 1 + 768 along a template). Every step n is inverted by fixed-point
iteration from the stored trajectory state (flows.certify.certify_samples): a sample's value is its
observed contraction rate, ∞ where it did not converge or did not return; ≥ 1 fails.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from mi_datagen.flows.certify import certify_samples
from mi_datagen.flows.grid import coverage_latents
from mi_datagen.flows.io import load_flow
from mi_datagen.flows.ode import flow_map
from mi_datagen.store.job import failure_bound

LIMIT = 0.8


def step_rates(net, z: torch.Tensor, label: int, solver) -> np.ndarray:
    """(n, steps): every sample's observed contraction rate at every step of ``solver`` (∞: did not converge)."""
    traj = flow_map(net, z, label, solver, trajectory=True)
    return np.stack([certify_samples(net, traj[s], traj[s + 1], label, solver, s, lipschitz=False).numpy()
                     for s in range(solver.steps)], axis=1)


def run_one(f, label: int, dist: str, n: int, batch: int, seed: int, bar) -> dict:
    generator_seed = seed * 1000 + 2 * label + (dist == "off")
    gen = torch.Generator().manual_seed(generator_seed)
    rates = np.zeros((n, f.solver.steps))
    t0 = time.perf_counter()
    for i in range(0, n, batch):
        m = min(batch, n - i)
        z = coverage_latents(dist, m, f.shape, gen)
        rates[i:i + m] = step_rates(f.net, z, label, f.solver)
        bar.update(m)
    worst = rates.max(1)
    failed = int((worst >= 1).sum())
    # the hardest latents, to be found again: position in the generator's stream (batches of `batch`) and step
    hardest = [dict(index=int(i), batch=batch, step=int(np.argmax(rates[i])), rate=float(worst[i]))
               for i in np.argsort(-worst, kind="stable")[:8]]
    return dict(label=label, cls=f.classes[label], dist=dist, n=n, seed=seed, wall_s=time.perf_counter() - t0,
                step_worst=rates.max(0).tolist(), step_p99=np.quantile(rates, 0.99, axis=0).tolist(),
                worst=float(worst.max()), over_limit=int((worst > LIMIT).sum()), failed=failed,
                failure_rate_bound_95=failure_bound(failed, n), generator_seed=generator_seed,
                hardest=hardest)


def _merged(recs: list[dict]) -> list[dict]:
    """One record per (class, distribution): the runs of every seed pooled."""
    groups: dict[tuple, list[dict]] = {}
    for r in recs:
        groups.setdefault((r["label"], r["dist"]), []).append(r)
    out = []
    for _, rs in sorted(groups.items()):
        n, failed = sum(r["n"] for r in rs), sum(r["failed"] for r in rs)
        common = {k: v for k, v in rs[0].items()
                  if k not in ("seed", "wall_s", "step_p99", "generator_seed", "hardest")}  # per-run only
        out.append(dict(common, n=n, failed=failed, worst=max(r["worst"] for r in rs),
                        over_limit=sum(r["over_limit"] for r in rs), failure_rate_bound_95=failure_bound(failed, n),
                        step_worst=np.max([r["step_worst"] for r in rs], axis=0).tolist(),
                        seeds=sorted({r["seed"] for r in rs})))
    return out


def summary(out: Path) -> str:
    recs = _merged([json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "flow.json"])
    lines = [f"{'class':>10} {'dist':>4} {'n':>5} {'worst':>6} {'> 0.8':>5} {'failed':>6} {'bound 95%':>9} "
             f"{'tightest step':>13}"]
    for r in recs:
        s = int(np.argmax(r["step_worst"]))
        lines.append(f"{r['cls']:>10} {r['dist']:>4} {r['n']:>5} {r['worst']:>6.3f} {r['over_limit']:>5} "
                     f"{r['failed']:>6} {r['failure_rate_bound_95']:>9.2e} {s:>13}")
    if recs:
        n = sum(r["n"] for r in recs)
        lines.append(f"coverage: {len(recs)} (class, distribution) sets, {n} latents, worst rate "
                     f"{max(r['worst'] for r in recs):.3f}, {sum(r['over_limit'] for r in recs)} over {LIMIT}, "
                     f"{sum(r['failed'] for r in recs)} failed")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("flow")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n", type=int, default=1024, help="latents per (class, distribution)")
    ap.add_argument("--classes", default="all")
    ap.add_argument("--dist", default="in,off")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--summary", action="store_true", help="only print the summary of what is there")
    args = ap.parse_args()
    if args.summary:
        print(summary(args.out))
        return
    torch.set_num_threads(args.threads)
    f = load_flow(args.flow)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "flow.json").write_text(json.dumps(dict(flow=args.flow, sha256=f.sha256, step=f.meta.get("step"),
                                                        solver=f.solver.to_dict()), indent=2))
    labels = range(len(f.classes)) if args.classes == "all" else [int(c) for c in args.classes.split(",")]
    def path(lab: int, d: str) -> Path:
        return args.out / f"{lab:02d}-{d}-n{args.n}-s{args.seed}.json"

    todo = [(lab, d) for lab in labels for d in args.dist.split(",") if not path(lab, d).is_file()]
    with tqdm(total=len(todo) * args.n, desc="certificate coverage", unit="latent") as bar:
        for lab, d in todo:
            rec = run_one(f, lab, d, args.n, args.batch, args.seed, bar)
            path(lab, d).write_text(json.dumps(rec, indent=2))
    print(summary(args.out))


if __name__ == "__main__":
    main()
