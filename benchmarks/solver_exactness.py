"""The exact solver against the 300-digit reference on random hostile specs: how many quantities agree.

    python benchmarks/solver_exactness.py --specs 500 --seed 1

Specs: ``mi_datagen.testing.structured_specs`` with coefficients from 1e-12 to 1e12 and noise stds from
1e-15 (or 0) to 1e6 (``hostile_coefs``, ``hostile_stds``), d ≤ 6; four random I(a; b | c) per spec. Agreement:
both ∞, or within 1e-8 relative + 1e-8 nats. Prints the counts and the slowest solver call.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    import mp_reference as ref
    from hypothesis import HealthCheck, Phase, given, seed, settings

    from mi_datagen.info.solver import InfoSolver
    from mi_datagen.model.compile import compile_spec
    from mi_datagen.testing import hostile_coefs, hostile_stds, structured_specs

    ap = argparse.ArgumentParser()
    ap.add_argument("--specs", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    counts = {"specs": 0, "quantities": 0, "agree": 0, "disagree": 0, "errors": 0, "infinite": 0, "exact zeros": 0}
    worst = [0.0]
    examples: list = []
    rng = random.Random(a.seed)

    @seed(a.seed)
    @settings(max_examples=a.specs, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(spec=structured_specs(max_d=6, coefs=hostile_coefs, stds=hostile_stds))
    def run(spec):
        counts["specs"] += 1
        sem = compile_spec(spec)
        names = list(sem.names)
        for _ in range(4):
            pool = names[:]
            rng.shuffle(pool)
            if len(pool) < 2:
                return
            na = rng.randint(1, len(pool) - 1)
            nb = rng.randint(1, len(pool) - na)
            nc = rng.randint(0, len(pool) - na - nb)
            qa, qb, qc = pool[:na], pool[na:na + nb], pool[na + nb:na + nb + nc]
            counts["quantities"] += 1
            want = ref.mi(sem, qa, qb, qc)
            t0 = time.perf_counter()
            try:
                got = InfoSolver(sem).mi(qa, qb, qc)
            except Exception as e:  # noqa: BLE001 — counted
                counts["errors"] += 1
                examples.append((spec.model_dump_json(), qa, qb, qc, want, repr(e)))
                continue
            worst[0] = max(worst[0], time.perf_counter() - t0)
            if math.isinf(want) or math.isinf(got):
                ok = want == got
            else:
                ok = abs(got - want) <= 1e-8 * abs(want) + 1e-8
            counts["agree" if ok else "disagree"] += 1
            counts["infinite"] += math.isinf(want)
            counts["exact zeros"] += want == 0.0
            if not ok:
                examples.append((spec.model_dump_json(), qa, qb, qc, want, got))

    run()
    print(", ".join(f"{k} {v}" for k, v in counts.items()) + f"; slowest solver call {worst[0]:.3f} s")
    for ex in examples[:3]:
        print(ex)


if __name__ == "__main__":
    main()
