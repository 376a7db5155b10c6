"""What a translation-invariant critic can read of a grating-shaped shared cause: the staircase's ceiling for
conv critics that pool globally.

A cause with a grating template enters each (standardised) block as a·g, with g the unit grating and a ~ N(0, 1).
Shifting the image by half a period maps g to −g, so a critic that is invariant to translations (convolutions,
then global pooling) cannot see the sign of a; of the grating's frequency it sees at most the power
a² + s², where s is the block's own (independent, unit-variance) component along the quadrature grating. With
K causes of equal share, I(X1;X2) = K·I(a; b), and such a critic reads at most K·I(a² + s1²; b² + s2²). This
script estimates that ceiling by Monte Carlo (KSG on the log-powers; one seeded generator) and, for comparison,
K·I(|a|; |b|), what a sign-blind critic that could phase-align would read. Both are sums of K Monte Carlo
estimates, so their error grows with K: the ``noise`` column is K times KSG's estimate on shuffled pairs.

    python benchmarks/invariant_ceiling.py --k 8 --nats 1 2 4 6 8 10
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from mi_datagen.estimators.baselines import ksg_mi


def ceiling(total_nats: float, k: int, n: int = 100000, seed: int = 0) -> dict:
    """Per-cause correlation and the MI left to a translation-invariant critic, for K equal causes."""
    rng = np.random.default_rng(seed)
    per = total_nats / k
    rho = float(np.sqrt(1.0 - np.exp(-2.0 * per)))
    a = rng.standard_normal(n)
    b = rho * a + np.sqrt(1.0 - rho * rho) * rng.standard_normal(n)
    p1, p2 = a**2 + rng.standard_normal(n) ** 2, b**2 + rng.standard_normal(n) ** 2
    power = max(0.0, ksg_mi(np.log(p1)[:, None], np.log(p2)[:, None]))
    absolute = max(0.0, ksg_mi(np.abs(a)[:, None], np.abs(b)[:, None]))
    null = abs(ksg_mi(np.log(p1)[:, None], np.log(rng.permutation(p2))[:, None]))  # KSG's own noise at 0
    return {"nats": total_nats, "k": k, "rho": rho, "per_cause": per, "power_ceiling": k * power,
            "abs_ceiling": k * absolute, "noise": k * null}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, nargs="+", default=[8], help="number of equal shared causes")
    ap.add_argument("--nats", type=float, nargs="+", default=[1, 2, 4, 6, 8, 10], help="I(X1;X2) in nats")
    ap.add_argument("--n", type=int, default=100000, help="Monte Carlo samples")
    ap.add_argument("--json", default=None, help="write the rows here")
    args = ap.parse_args(argv)
    rows = [ceiling(v, k, args.n) for k in args.k for v in args.nats]
    print("| K | I(X1;X2) | ρ per cause | power ceiling (conv + global pool) | |a| ceiling | noise (K × KSG at 0) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cols = [f"{r['nats']:.2f}", f"{r['rho']:.3f}"] + [f"{r[c]:.3f}" for c in ("power_ceiling", "abs_ceiling", "noise")]
        print(f"| {r['k']} | " + " | ".join(cols) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
