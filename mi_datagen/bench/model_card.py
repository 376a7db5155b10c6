"""Figures for a flow's model card: the loss curve and a per-class sample grid.

    python -m mi_datagen.bench.model_card FLOW --out checkpoints/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mi_datagen.assets import DEFAULT_FLOW  # noqa: E402
from mi_datagen.flows.io import load_flow  # noqa: E402
from mi_datagen.flows.train import sample_grid  # noqa: E402


def loss_curve(losses, path: Path, title: str) -> None:
    steps, values = zip(*losses)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, values, lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("CFM loss (mean of 100 steps)")
    ax.set_yscale("log")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("flow", nargs="?", default=DEFAULT_FLOW)
    ap.add_argument("--out", type=Path, default=Path("flows"))
    ap.add_argument("--per-class", type=int, default=10)
    args = ap.parse_args()
    f = load_flow(args.flow)
    stem = f.path.stem
    args.out.mkdir(parents=True, exist_ok=True)
    loss_curve(f.meta["losses"], args.out / f"{stem}_loss.png", f"{f.path.name}: step {f.meta['step']}")
    sample_grid(f.net, len(f.classes), args.per_class, args.out / f"{stem}_samples.png", seed=0, solver=f.solver,
                class_names=list(f.classes))
    summary = {"file": f.path.name, "sha256": f.sha256, "step": f.meta["step"], "wall_s": f.meta["wall_s"],
               "final_loss": f.meta["losses"][-1][1], "train_config": f.meta["train_config"],
               "data": json.loads(f.meta["data"]), "solver": f.solver.to_dict(),
               "parameters": sum(p.numel() for p in f.net.parameters())}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
