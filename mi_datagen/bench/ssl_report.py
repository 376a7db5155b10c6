"""An SSL suite's report: probes against the Bayes floor, InfoNCE bounds and representation MI against the
exact MI, flags; report.md, results.csv and plots (probe.png, bounds.png, representation_mi.png)."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from mi_datagen.bench.report import load_runs


def _ms(values: list[float]) -> str:
    v = np.asarray(values, dtype=float)
    if not v.size:
        return "–"
    return f"{v.mean():.3f}" + (f" ± {v.std(ddof=1):.3f}" if v.size > 1 else "")


def _grouped(ok: list[dict], part: str, key) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in ok:
        for item in r[part]:
            groups[(r["dataset"], r["objective"], key(item))].append(item)
    return groups


def write_ssl_report(out: Path, suite) -> Path:
    runs = load_runs(out)
    ok = [r for r in runs if r["status"] == "ok"]
    failed = [r for r in runs if r["status"] != "ok"]
    lines = [f"# {suite.name}", "", suite.description.strip(), "",
             f"{len(ok)} runs ({len(failed)} failed); seeds {suite.seeds}; objectives "
             f"{', '.join(f'{o.name} ({o.objective})' for o in suite.objectives)}; settings {suite.settings}.", "",
             "## Linear probes for θ", "",
             "Test RMSE of a ridge probe on the frozen representations (mean ± std over seeds) against the Bayes "
             "floor σ_θ·e^(−I(θ; inputs)); *ratio* = RMSE / floor (1 is the best any predictor can do); *raw*: the "
             "same probe on the standardised inputs, where they are small enough.", "",
             "| dataset | objective | inputs | I(θ; inputs) | floor | RMSE | ratio | raw ratio |",
             "|---|---|---|---|---|---|---|---|"]
    for (ds, obj, inputs), items in sorted(_grouped(ok, "probes", lambda p: "+".join(p["inputs"])).items()):
        raw = [p["raw_ratio"] for p in items if "raw_ratio" in p]
        lines.append(f"| {ds} | {obj} | {inputs} | {items[0]['mi_theta']:.3f} | {items[0]['floor']:.3f} | "
                     f"{_ms([p['test_rmse'] for p in items])} | {_ms([p['ratio'] for p in items])} | {_ms(raw)} |")
    lines += ["", "## InfoNCE bound reached (test rows) and MI between the representations", "",
              "The bound log B − CE is a lower bound on I(Xi; Xj) whatever the encoders, capped at log B. The MI "
              "between the learned representations cannot exceed I(Xi; Xj) (data processing): Gaussian (sampling "
              "bias removed) and KSG estimates on the test rows.", "",
              "| dataset | objective | pair | exact I | log B | InfoNCE bound | I(g_i; g_j) Gaussian | I(g_i; g_j) KSG |",
              "|---|---|---|---|---|---|---|---|"]
    reps = _grouped(ok, "representation_mi", lambda p: f"{p['a']}; {p['b']}")
    for (ds, obj, pair), items in sorted(_grouped(ok, "bounds", lambda p: f"{p['a']}; {p['b']}").items()):
        rm = reps.get((ds, obj, pair), [])
        lines.append(f"| {ds} | {obj} | {pair} | {items[0]['exact']:.3f} | {items[0]['cap']:.2f} | "
                     f"{_ms([p['bound'] for p in items])} | {_ms([p['gaussian'] for p in rm])} | "
                     f"{_ms([p['ksg'] for p in rm])} |")
    flagged = [(r["id"], f) for r in ok for f in r["flags"]]
    lines += ["", "## Flags", ""] + ([f"- {rid}: {f}" for rid, f in flagged] or ["None: no probe below its floor "
                                                                                   "and no representation MI above the "
                                                                                   "exact MI beyond the tolerance."])
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- {r['id']}: {r['error']}" for r in failed]
    times = [r["time_s"] for r in ok]
    if times:
        lines += ["", f"Wall time per run {min(times):.0f}–{max(times):.0f} s (total {sum(times) / 60:.1f} min)."]
    lines += ["", "Plots: probe.png (RMSE / σ_θ against I(θ; inputs), with the floor e^(−I)), bounds.png, "
                  "representation_mi.png."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    _csv(out, ok)
    if ok:
        _plots(out, ok)
    return out / "report.md"


def _csv(out: Path, ok: list[dict]) -> None:
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "dataset", "objective", "seed", "quantity", "inputs", "exact", "value", "floor_or_cap"])
        for r in ok:
            for p in r["probes"]:
                w.writerow([r["id"], r["dataset"], r["objective"], r["seed"], "probe_rmse", "+".join(p["inputs"]),
                            p["mi_theta"], p["test_rmse"], p["floor"]])
            for b in r["bounds"]:
                w.writerow([r["id"], r["dataset"], r["objective"], r["seed"], "infonce_bound", f"{b['a']}+{b['b']}",
                            b["exact"], b["bound"], b["cap"]])
            for m in r["representation_mi"]:
                for est in ("gaussian", "ksg"):
                    w.writerow([r["id"], r["dataset"], r["objective"], r["seed"], f"representation_mi_{est}",
                                f"{m['a']}+{m['b']}", m["exact"], m[est], ""])


def _plots(out: Path, ok: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objectives = sorted({r["objective"] for r in ok})
    colours = {o: f"C{i}" for i, o in enumerate(objectives)}
    fig, ax = plt.subplots(figsize=(5.5, 4))
    top = max(p["mi_theta"] for r in ok for p in r["probes"])
    grid = np.linspace(0, top * 1.05, 100)
    ax.plot(grid, np.exp(-grid), "k-", lw=1, label="Bayes floor e^(−I)")
    for o in objectives:
        pts = [(p["mi_theta"], p["test_rmse"] / p["theta_std"]) for r in ok if r["objective"] == o for p in r["probes"]]
        xs, ys = zip(*pts)
        ax.scatter(xs, ys, s=14, color=colours[o], label=o, alpha=0.8)
    raw = [(p["mi_theta"], p["raw_test_rmse"] / p["theta_std"]) for r in ok for p in r["probes"] if "raw_test_rmse" in p]
    if raw:
        xs, ys = zip(*raw)
        ax.scatter(xs, ys, s=14, marker="x", color="grey", label="raw inputs")
    ax.set(xlabel="exact I(θ; inputs) [nats]", ylabel="probe RMSE / σ_θ", title="Linear probes for θ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "probe.png", dpi=120)
    plt.close(fig)
    for part, fname, title in (("bounds", "bounds.png", "InfoNCE bound (test) vs exact I(Xi; Xj)"),
                               ("representation_mi", "representation_mi.png", "I(g_i(X_i); g_j(X_j)) vs exact")):
        fig, ax = plt.subplots(figsize=(5.5, 4))
        exact = [b["exact"] for r in ok for b in r[part]]
        lo, hi = 0.0, max(exact) * 1.05 if exact and math.isfinite(max(exact)) else 1.0
        ax.plot([lo, hi], [lo, hi], "k-", lw=1, label="y = x (exact)")
        keys = ["bound"] if part == "bounds" else ["gaussian", "ksg"]
        for o in objectives:
            for k, marker in zip(keys, "o^"):
                pts = [(b["exact"], b[k]) for r in ok if r["objective"] == o for b in r[part]]
                xs, ys = zip(*pts)
                ax.scatter(xs, ys, s=14, marker=marker, color=colours[o], alpha=0.8,
                           label=o if len(keys) == 1 else f"{o} ({k})")
        if part == "bounds":
            cap = ok[0]["bounds"][0]["cap"] if ok[0]["bounds"] else None
            if cap is not None:
                ax.axhline(cap, color="grey", ls="--", lw=1, label="log B")
        ax.set(xlabel="exact I(Xi; Xj) [nats]", ylabel="nats", title=title)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / fname, dpi=120)
        plt.close(fig)
