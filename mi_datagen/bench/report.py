"""Aggregate a suite's runs: results.csv, report.md (bias, std, RMSE, correlation, time), plots."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

COLUMNS = ["id", "dataset", "a", "b", "estimator", "method", "seed", "truth", "estimate", "train_average",
           "time_s", "status", "error"]


def load_runs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((Path(out) / "runs").glob("*.json"))]


def summarise(runs: list[dict]) -> dict[str, dict]:
    """Per estimator: bias, std (over seeds, averaged over datasets), RMSE, Pearson r with the truth, time."""
    by_est: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        if r.get("kind", "estimate") == "estimate":
            by_est[r["estimator"]].append(r)
    out = {}
    for name, rs in by_est.items():
        ok = [r for r in rs if r["status"] == "ok" and r.get("truth") is not None and math.isfinite(r["truth"])]
        est = np.array([r["estimate"] for r in ok])
        tru = np.array([r["truth"] for r in ok])
        per_ds: dict[str, list[float]] = defaultdict(list)
        for r in ok:
            per_ds[r["dataset"] + str(r["a"]) + str(r["b"])].append(r["estimate"])
        stds = [np.std(v, ddof=1) for v in per_ds.values() if len(v) > 1]
        out[name] = {
            "method": rs[0].get("method"), "runs": len(rs), "failed": len(rs) - len(ok),
            "bias": float(np.mean(est - tru)) if ok else math.nan,
            "std": float(np.mean(stds)) if stds else math.nan,
            "rmse": float(np.sqrt(np.mean((est - tru) ** 2))) if ok else math.nan,
            "corr": (float(np.corrcoef(est, tru)[0, 1]) if len(ok) > 2 and np.std(est) > 0 and np.std(tru) > 0
                     else math.nan),  # r is undefined on one MI level (a suite run on one dataset so far)
            "time_s": float(np.mean([r.get("time_s", math.nan) for r in ok])) if ok else math.nan,
            **bootstrap_intervals(ok),
        }
    return out


def bootstrap_intervals(ok: list[dict], n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """95 % percentile intervals of RMSE and Pearson r, resampling whole datasets (a dataset's seeds and
    pairs move together: they share a store, so they are not independent draws)."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in ok:
        groups[r["dataset"]].append((r["estimate"], r["truth"]))
    keys = sorted(groups)
    nan = {"rmse_ci": (math.nan, math.nan), "corr_ci": (math.nan, math.nan)}
    if len(keys) < 2:
        return nan
    rng = np.random.default_rng(seed)
    rmses, corrs = [], []
    for _ in range(n_boot):
        pick = [groups[keys[i]] for i in rng.integers(len(keys), size=len(keys))]
        e, t = (np.array([p[j] for g in pick for p in g]) for j in (0, 1))
        rmses.append(float(np.sqrt(np.mean((e - t) ** 2))))
        if np.std(e) > 0 and np.std(t) > 0:
            corrs.append(float(np.corrcoef(e, t)[0, 1]))
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return {"rmse_ci": tuple(float(v) for v in np.percentile(rmses, q)),
            "corr_ci": tuple(float(v) for v in np.percentile(corrs, q)) if corrs else (math.nan, math.nan)}


def per_level(runs: list[dict]) -> list[dict]:
    """Per estimator and (dataset, pair): the truth, mean and std over seeds, bias, variance and MSE
    (MSE = bias² + variance, the variance over seeds with ddof = 0)."""
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in runs:
        if r["status"] == "ok" and r.get("kind", "estimate") == "estimate" and r.get("truth") is not None:
            cells[(r["estimator"], r["dataset"], "+".join(r["a"]), "+".join(r["b"]))].append(r)
    rows = []
    for (est, ds, a, b), rs in cells.items():
        e, t = np.array([r["estimate"] for r in rs]), rs[0]["truth"]
        rows.append({"estimator": est, "dataset": ds, "pair": f"{a}; {b}", "truth": t, "seeds": len(rs),
                     "mean": float(e.mean()), "std": float(e.std(ddof=1)) if len(e) > 1 else math.nan,
                     "bias": float(e.mean() - t), "variance": float(e.var()), "mse": float(np.mean((e - t) ** 2))})
    return sorted(rows, key=lambda r: (r["estimator"], r["pair"], r["truth"]))


def _fmt(v: float, spec: str = ".3f") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def write_report(out: Path, suite) -> Path:
    out = Path(out)
    runs = load_runs(out)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in runs:
            w.writerow({**r, "a": "+".join(r["a"]), "b": "+".join(r["b"])})
    summary = summarise(runs)
    ref = getattr(suite, "reference", {}) or {}
    k = len({r["dataset"] for r in runs})
    lines = [f"# Suite `{suite.name}`", "", suite.description, "",
             f"{len(runs)} runs on {k} dataset{'' if k == 1 else 's'} "
             f"({sum(r['status'] != 'ok' for r in runs)} failed). Estimates are held-out, in nats; "
             "bias and RMSE against the exact MI from each store's manifest; std over seeds, averaged over datasets; "
             "r = Pearson correlation of estimate with truth over all runs.", ""]
    if summary:
        lines += ["| estimator | method | runs | failed | bias | std | RMSE | r | s/run |"
                  + (" reference r / RMSE | met |" if ref else ""),
                  "|---|---|---|---|---|---|---|---|---|" + ("---|---|" if ref else "")]
        for name, s in summary.items():
            row = (f"| {name} | {s['method']} | {s['runs']} | {s['failed']} | {_fmt(s['bias'])} | {_fmt(s['std'])} | "
                   f"{_fmt(s['rmse'])} | {_fmt(s['corr'])} | {_fmt(s['time_s'], '.1f')} |")
            if ref:
                target = ref.get(name)
                met = "—" if target is None or math.isnan(s["corr"]) else (
                    "yes" if s["corr"] >= 0.99 and s["rmse"] <= target[1] else "no")
                row += f" {'—' if target is None else f'{target[0]:.3f} / {target[1]:.3f}'} | {met} |"
            lines.append(row)
        if any(not math.isnan(s["rmse_ci"][0]) for s in summary.values()):
            lines += ["", "95 % intervals (bootstrap over datasets, 1 000 resamples):", "",
                      "| estimator | RMSE | RMSE interval | r | r interval |", "|---|---|---|---|---|"]
            for name, s in summary.items():
                lines.append(f"| {name} | {_fmt(s['rmse'])} | {_fmt(s['rmse_ci'][0])} – {_fmt(s['rmse_ci'][1])} | "
                             f"{_fmt(s['corr'])} | {_fmt(s['corr_ci'][0])} – {_fmt(s['corr_ci'][1])} |")
    lines += _per_dataset(runs)
    levels = per_level(runs)
    if levels and max(r["seeds"] for r in levels) > 1:
        lines += ["", "## Per MI level: mean ± std over seeds, bias, variance, MSE (nats)", "",
                  "| estimator | dataset | pair | truth | mean ± std | bias | variance | MSE | seeds |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['estimator']} | {r['dataset']} | {r['pair']} | {r['truth']:.3f} | {r['mean']:.3f} ± "
                  f"{_fmt(r['std'])} | {r['bias']:+.3f} | {r['variance']:.2e} | {r['mse']:.2e} | {r['seeds']} |"
                  for r in levels]
    reg = [r for r in runs if r.get("kind") == "regression" and r["status"] == "ok"]
    if reg:
        lines += ["", "## θ-regression", "", "| dataset | I(θ; input) | test RMSE | Bayes floor σ_θ·e^(−I) | seeds |",
                  "|---|---|---|---|---|"]
        for ds, rs in sorted(_group(reg).items(), key=lambda kv: kv[1][0]["truth"]):
            lines.append(f"| {ds} | {rs[0]['truth']:.3f} | {np.mean([r['estimate'] for r in rs]):.3f} | "
                         f"{rs[0]['floor']:.3f} | {len(rs)} |")
    lines += _shortcuts(out)
    failed = [r for r in runs if r["status"] != "ok"]
    if failed:
        lines += ["", "## Failed runs", ""] + [f"- `{r['id']}`: {r['error']}" for r in failed]
    _plots(out, runs, reg)
    plots = [p for p in ("estimate_vs_truth.png", "training_curves.png", "regression.png") if (out / p).exists()]
    lines += ["", (f"Plots: {', '.join(f'`{p}`' for p in plots)}. " if plots else "")
              + "Per-run records: `runs/*.json`; all runs: `results.csv`.", ""]
    (out / "report.md").write_text("\n".join(lines))
    return out / "report.md"


def _per_dataset(runs: list[dict]) -> list[str]:
    """Held-out estimate per dataset (rows, by truth) and estimator (columns), mean over seeds."""
    ok = [r for r in runs if r["status"] == "ok" and r.get("kind", "estimate") == "estimate"]
    names = list(dict.fromkeys(r["estimator"] for r in ok))
    if not names:
        return []
    cells: dict[tuple, list[float]] = defaultdict(list)
    truth: dict[tuple, float] = {}
    for r in ok:
        row = (r["dataset"], "+".join(r["a"]), "+".join(r["b"]))
        cells[row + (r["estimator"],)].append(r["estimate"])
        truth[row] = r["truth"]
    lines = ["", "## Estimates per dataset (held-out, nats; mean over seeds)", "",
             "| dataset | pair | truth | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for row in sorted(truth, key=lambda k: (k[1], k[2], round(truth[k], 9), k[0])):  # equal truths: by dataset
        vals = [_fmt(float(np.mean(cells[row + (n,)]))) if cells.get(row + (n,)) else "—" for n in names]
        lines.append(f"| {row[0]} | {row[1]}; {row[2]} | {truth[row]:.3f} | " + " | ".join(vals) + " |")
    return lines


def _shortcuts(out: Path) -> list[str]:
    """The shortcut check per (dataset, pair): the MI a trivial statistic carries, next to the exact MI."""
    recs = [json.loads(p.read_text()) for p in sorted((Path(out) / "shortcuts").glob("*.json"))]
    if not recs:
        return []
    lines = ["", "## Shortcut check: MI carried by trivial statistics (nats)", "",
             "Per-image channel means and the lowest spatial frequencies, KSG and Gaussian estimates "
             "(`mi_datagen.bench.shortcut`); share = the largest of them / the exact MI. Above null = the largest "
             "of (estimate − the same estimator on shuffled, independent pairs): the estimates less their "
             "finite-sample bias (— where the record predates it).", "",
             "| dataset | pair | exact MI | best shortcut | share | above null | share above null | n |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(recs, key=lambda r: (r["a"], r["b"], r["truth"] if r["truth"] is not None else 0)):
        lines.append(f"| {r['dataset']} | {'+'.join(r['a'])}; {'+'.join(r['b'])} | {_fmt(r['truth'])} | "
                     f"{_fmt(r['max_nats'])} | {_fmt(r['share'], '.0%')} | {_fmt(r.get('above_null'))} | "
                     f"{_fmt(r.get('share_above_null'), '.0%')} | {r['n']} |")
    return lines


def _group(runs: list[dict]) -> dict[str, list[dict]]:
    g: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        g[r["dataset"]].append(r)
    return g


def _save(fig, axes, used: int, path: Path) -> None:
    import matplotlib.pyplot as plt

    for ax in list(axes.flat)[used:]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _axis_scale(truths: list[float]) -> str:
    """'symlog' when the exact MIs span more than two decades (the multimodal suite: 0.39 … 1 590 nats), where a linear
    axis puts every small level on top of each other; symlog keeps estimates ≤ 0 plottable. Otherwise 'linear'."""
    pos = [t for t in truths if t > 0]
    return "symlog" if pos and max(pos) > 100 * min(pos) else "linear"


def _plots(out: Path, runs: list[dict], reg: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in runs if r["status"] == "ok" and r.get("kind", "estimate") == "estimate"
          and r.get("truth") is not None and math.isfinite(r["truth"])]
    names = list(dict.fromkeys(r["estimator"] for r in ok))
    for stale, keep in (("estimate_vs_truth.png", names), ("training_curves.png", names), ("regression.png", reg)):
        if not keep:  # no runs for it (any more): no plot, rather than an old one
            (out / stale).unlink(missing_ok=True)
    if names:
        cols = min(4, len(names))
        rows = -(-len(names) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
        hi = max(max(r["truth"] for r in ok), max(r["estimate"] for r in ok)) * 1.05
        lo = min(0.0, min(r["estimate"] for r in ok))
        scale = _axis_scale([r["truth"] for r in ok])
        for ax, name in zip(axes.flat, names):
            rs = [r for r in ok if r["estimator"] == name]
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8, label="y = x")
            ax.scatter([r["truth"] for r in rs], [r["estimate"] for r in rs], s=12)
            if scale == "symlog":
                ax.set_xscale("symlog", linthresh=0.1)
                ax.set_yscale("symlog", linthresh=0.1)
            ax.set_title(name, fontsize=9)
            ax.set_xlabel("exact MI (nats)", fontsize=8)
            ax.set_ylabel("held-out estimate (nats)", fontsize=8)
        _save(fig, axes, len(names), out / "estimate_vs_truth.png")
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
        cmap = plt.get_cmap("viridis")
        tmax = max(r["truth"] for r in ok) or 1.0
        for ax, name in zip(axes.flat, names):
            for r in (r for r in ok if r["estimator"] == name and r.get("curve")):
                steps, vals = zip(*r["curve"])
                c = cmap(r["truth"] / tmax)
                ax.plot(steps, vals, color=c, lw=0.8)
                ax.axhline(r["truth"], color=c, lw=0.5, ls=":")
            ax.set_title(f"{name} (training batches)", fontsize=9)
            ax.set_xlabel("step", fontsize=8)
        _save(fig, axes, len(names), out / "training_curves.png")
    if reg:
        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        g = sorted(_group(reg).values(), key=lambda rs: rs[0]["truth"])
        mi = [rs[0]["truth"] for rs in g]
        ax.plot(mi, [np.mean([r["estimate"] for r in rs]) for rs in g], "o-", label="shallow conv net (test)")
        ax.plot(mi, [rs[0]["floor"] for rs in g], "k--", label="Bayes floor σ_θ e^(−I)")
        ax.set_xlabel("I(θ; input) (nats)")
        ax.set_ylabel("RMSE of θ")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "regression.png", dpi=110)
        plt.close(fig)
