"""Flow quality against training CPU-hours, for the model card: every flow-quality figure (per class and mean)
of each measured flow, with the flow issue's targets.

    python benchmarks/flow_trajectory.py checkpoints/default_quality_judge.json=3.2 \\
        checkpoints/v2-step16500_quality_judge.json=3.01 --out checkpoints/quality_trajectory.png

Each argument is a `flow-quality --json` record and the CPU-hours of training behind it (one core).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("records", nargs="+", help="RECORD.json=CPU_HOURS")
    ap.add_argument("--out", default="checkpoints/quality_trajectory.png")
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = []
    for item in a.records:
        path, _, hours = item.rpartition("=")
        rec = json.loads(Path(path).read_text())
        points.append((float(hours), Path(rec["flow"]).stem + f"@{rec['step']}", rec["classes"]))
    points.sort(key=lambda p: p[0])
    figures = [("consistency / real accuracy", lambda c: c["consistency"] / c["real_accuracy"], 0.85),
               ("FD / real floor", lambda c: c["fd_generated_vs_test"] / c["fd_train_vs_test"], 2.0),
               ("precision", lambda c: c["precision"], 0.5), ("recall", lambda c: c["recall"], 0.5)]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    families: dict[str, list] = {}
    for p in points:  # one line per model (v1, v2, …) through its measured checkpoints
        families.setdefault(p[1].split("-step")[0].split("@")[0], []).append(p)
    for ax, (name, fn, target) in zip(axes, figures):
        for i, (fam, pts) in enumerate(families.items()):
            hours = [p[0] for p in pts]
            per_class = np.array([[fn(c) for c in p[2]] for p in pts])  # (points, classes)
            for h, row in zip(hours, per_class):
                ax.scatter([h] * len(row), row, s=8, color=f"C{i}", alpha=0.4)
            ax.plot(hours, per_class.mean(1), "-o", color=f"C{i}", lw=2, label=f"{fam} (mean; dots: classes)")
        ax.axhline(target, color="red", ls="--", lw=1, label="target")
        ax.set(xlabel="training CPU-hours (one core)", title=name)
        ax.set_xlim(left=0)
        if name.startswith("FD"):
            ax.set_yscale("log")
    axes[-1].legend(fontsize=7)
    for h, name, _ in points:
        print(f"{name}: {h:.2f} CPU-h")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
