"""Benchmark commands: bench (estimator suites), entropy-check."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mi_datagen.cli._common import app, err, fmt, out, share


@app.command()
def bench(suite: Path = typer.Argument(..., help="suite YAML (benchmarks/suites/*.yaml)"),
          out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the suite's `out`)"),
          threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)"),
          stores: Optional[Path] = typer.Option(None, help="folder for the generated stores (default: the suite's "
                                                           "`stores`, else <out>/stores)"),
          generate_only: bool = typer.Option(False, "--generate-only", help="only make (or finish) the stores"),
          existing_only: bool = typer.Option(False, "--existing-only",
                                             help="run only on datasets whose store is already complete"),
          datasets: Optional[str] = typer.Option(None, help="comma list: only these datasets, in this order (full "
                                                            "names or suffixes such as 00,09,05)"),
          estimator: Optional[list[str]] = typer.Option(
              None, "--estimator", help="your estimator, beside the suite's: package.module:name (a Python callable) "
                                        "or 'cmd:COMMAND' (reads DIR/*.npy, prints nats); repeatable"),
          ) -> None:
    """Run estimators × datasets × seeds against the exact MI; report.md, results.csv and plots."""
    import torch

    from mi_datagen.bench.report import load_runs, summarise
    from mi_datagen.bench.suite import run_suite

    if threads:
        torch.set_num_threads(threads)
    folder = run_suite(suite, out_dir, stores_dir=stores, generate_only=generate_only,
                       existing_only=existing_only, estimators=estimator or [],
                       datasets=[d.strip() for d in datasets.split(",") if d.strip()] if datasets else None)
    if generate_only:
        from mi_datagen.bench.suite import load_suite

        out.print(f"stores ready for {load_suite(suite).name}", highlight=False)
        return
    summary = summarise(load_runs(folder))
    t = Table(title=f"{suite.name}: held-out estimates vs exact MI", title_justify="left")
    for c in ("estimator", "runs", "failed", "bias", "RMSE", "r", "s/run"):
        t.add_column(c, justify="left" if c == "estimator" else "right")
    for name, s in summary.items():
        t.add_row(name, str(s["runs"]), str(s["failed"]), f"{s['bias']:.3f}", f"{s['rmse']:.3f}", f"{s['corr']:.3f}",
                  f"{s['time_s']:.1f}")
    out.print(t)
    out.print(f"report: {folder / 'report.md'}", highlight=False)


@app.command("entropy-check")
def entropy_check_cmd(
    store: str = typer.Argument(..., help="a dataset store"),
    a: str = typer.Option("X1", "--a"), b: str = typer.Option("X2", "--b"),
    estimators: str = typer.Option("gaussian,gaussian-unbiased,kl",
                                   help="comma list of gaussian, gaussian-unbiased, kl, flow, flow-white"),
    sizes: Optional[str] = typer.Option(None, help="comma list of sample sizes (default n/8, n/4, n/2, n)"),
    uint8: bool = typer.Option(False, "--uint8", help="check the clamped 8-bit export with LZMA code lengths"),
    out_dir: Path = typer.Option(Path("out/entropy"), "--out"),
    seed: int = typer.Option(0),
    n_check: int = typer.Option(8, help="uint8: samples inverted exactly to measure the latent perturbation"),
    truth_samples: int = typer.Option(0, help="a store made without --entropy-samples: compute the exact-entropy "
                                              "estimates now from flow log-dets on this many samples"),
    threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)"),
) -> None:
    """InfoMeter-style check: Ĥ(Xa) + Ĥ(Xb) − Ĥ(Xa,Xb) per estimator and sample size, next to the exact MI."""
    import torch

    from mi_datagen.bench.entropy_check import entropy_check, write_check

    if threads:
        torch.set_num_threads(threads)

    res = entropy_check(store, a, b, [e.strip() for e in estimators.split(",") if e.strip()],
                        [int(s) for s in sizes.split(",")] if sizes else None, seed, uint8,
                        n_check=n_check, truth_samples=truth_samples, progress=True)
    truth = res["truth_entropies"] or {}
    t = Table(title=f"{store}: entropies and implied I({a}; {b}) in nats (exact MI {fmt(res['truth_mi'])})",
              title_justify="left")
    for c in ("estimator", "n", f"H({a})", f"H({b})", "H(joint)", "implied MI", "s"):
        t.add_column(c, justify="left" if c == "estimator" else "right")
    if truth:
        se = res.get("truth_entropies_stderr") or {}
        cell = {k: fmt(truth.get(k)) + (f" ± {se[k]:.0f}" if se.get(k) is not None else "") for k in ("a", "b", "ab")}
        t.add_row("exact" + (" (fine-quantisation limit)" if uint8 else "") + (" (h ± SE)" if se else ""), "",
                  cell["a"], cell["b"], cell["ab"], fmt(res["truth_mi"]), "")
    if uint8:
        t.add_row("8-bit model", "", "", "", "", fmt(res["uint8_model_mi"]), "")
    for r in res["rows"]:
        if "error" in r:
            t.add_row(r["estimator"], str(r["n"]), "failed", "", "", "", "")
            err.print(f"{r['estimator']} at n = {r['n']}: {r['error']}")
        else:
            t.add_row(r["estimator"], str(r["n"]), fmt(r["h_a"]), fmt(r["h_b"]), fmt(r["h_ab"]), fmt(r["mi"]),
                      f"{r['time_s']:.1f}")
    out.print(t)
    for name, q in (res.get("quantisation") or {}).get("modalities", {}).items():
        out.print(f"{name}: {q['clamped_fraction']:.2%} of values clamped; latent round trip (rel. RMS, max over "
                  f"{res['quantisation']['n_check']}) uint8 {q['uint8_roundtrip']['rel_rms_max']:.2e} vs stored "
                  f"{q['float_roundtrip']['rel_rms_max']:.2e}", highlight=False)
    js, png = write_check(res, out_dir)
    out.print(f"wrote {js} and {png}", highlight=False)


@app.command()
def shortcut(store: str = typer.Argument(..., help="a dataset store"),
             a: str = typer.Option("X1", "--a"), b: str = typer.Option("X2", "--b"),
             n: int = typer.Option(2000, help="samples used"),
             json_out: Optional[Path] = typer.Option(None, "--json")) -> None:
    """How much of I(a; b) trivial statistics (channel means, lowest spatial frequencies) already carry."""
    import json

    from mi_datagen.bench.shortcut import shortcut_check
    from mi_datagen.estimators.pairs import load_pair

    x, y, truth = load_pair(store, [a], [b])
    res = shortcut_check(x, y, truth, n=n)
    t = Table(title=f"{store}: I({a}; {b}) = {fmt(truth)} nats exact; from trivial statistics ({res['n']} samples)",
              title_justify="left")
    t.add_column("estimate")
    t.add_column("nats", justify="right")
    t.add_column("shuffled pairs (its bias)", justify="right")
    for k, v in res["estimates"].items():
        null = res["null"][k]
        t.add_row(k, fmt(v) if isinstance(v, float) else str(v), fmt(null) if isinstance(null, float) else "—")
    out.print(t)
    out.print(f"shortcut: at most {fmt(res['max_nats'])} of {fmt(truth)} nats ({share(res['share'])}) from trivial "
              f"statistics, {fmt(res['above_null'])} ({share(res['share_above_null'])}) above the shuffled-pair null",
              highlight=False)
    if json_out:
        json_out.write_text(json.dumps(res, indent=1, default=float))


@app.command()
def ssl(suite: Path = typer.Argument(..., help="SSL suite YAML (benchmarks/suites/ssl-*.yaml)"),
        out_dir: Optional[Path] = typer.Option(None, "--out", help="output folder (default: the suite's `out`)"),
        stores: Optional[Path] = typer.Option(None, help="folder for the generated stores (default: the suite's "
                                                         "`stores`, else <out>/stores)"),
        datasets: Optional[str] = typer.Option(None, help="comma list: only these datasets (full names or "
                                                          "suffixes such as 00,09)"),
        threads: int = typer.Option(0, help="torch CPU threads (0: torch's default)")) -> None:
    """Train contrastive encoders on stores; θ probes vs the Bayes floor, InfoNCE and representation MI vs exact."""
    import json

    import torch

    from mi_datagen.bench.report import load_runs
    from mi_datagen.bench.ssl_suite import run_ssl_suite

    if threads:
        torch.set_num_threads(threads)
    folder = run_ssl_suite(suite, out_dir, stores_dir=stores,
                           datasets=[d.strip() for d in datasets.split(",") if d.strip()] if datasets else None)
    runs = load_runs(folder)
    ok = [r for r in runs if r["status"] == "ok"]
    ratios = [p["ratio"] for r in ok for p in r["probes"]]
    flags = sum(len(r["flags"]) for r in ok)
    out.print(f"{len(ok)}/{len(runs)} runs ok; probe RMSE / Bayes floor {min(ratios, default=float('nan')):.3f}–"
              f"{max(ratios, default=float('nan')):.3f}; {flags} flag(s); report: {folder / 'report.md'}",
              highlight=False)
    for r in runs:
        if r["status"] != "ok":
            err.print(f"{r['id']}: {json.dumps(r['error'])}")
