"""Critic settings on one two-modality store: held-out InfoNCE and NWJ per configuration (RESULTS.md).

    python benchmarks/critic_study.py runs/bench/table1-stores/two_modalities_sweep_09-n10000-s0.zarr

One thread, seed 0, batch 128, separable critic; prints one JSON line per run.
"""

import argparse
import json

import torch

from mi_datagen.estimators.estimate import estimate
from mi_datagen.estimators.pairs import load_pair

CONFIGS = [
    ("width 4, lr 1e-3, 1000 steps (the suites)", dict(steps=1000, lr=1e-3, conv_width=4)),
    ("width 4, lr 1e-3, 3000 steps", dict(steps=3000, lr=1e-3, conv_width=4)),
    ("width 4, lr 3e-3, 1000 steps", dict(steps=1000, lr=3e-3, conv_width=4)),
    ("width 8, lr 1e-3, 2000 steps", dict(steps=2000, lr=1e-3, conv_width=8)),
]

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("store")
    ap.add_argument("--methods", default="infonce,nwj")
    args = ap.parse_args()
    torch.set_num_threads(1)
    x, y, truth = load_pair(args.store, ["X1"], ["X2"])
    for name, cfg in CONFIGS:
        for m in args.methods.split(","):
            r = estimate(x, y, m, seed=0, batch_size=128, critic="separable", **cfg)
            print(json.dumps({"store": args.store, "truth": truth, "config": name, "method": m, "estimate": r.nats,
                              "train_average": r.train_average, "note": r.note, "time_s": round(r.time_s, 1)}),
                  flush=True)
