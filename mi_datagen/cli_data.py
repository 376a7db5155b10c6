"""``generate`` and ``inspect``: the dataset commands (registered on the main typer app)."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mi_datagen.cli import _fail, _fmt, app, err, out
from mi_datagen.errors import MIDatagenError


def _members_out(out_path: str, names: list[str]) -> list[str]:
    if len(names) == 1:
        return [out_path]
    return [f"{out_path.rstrip('/')}/{n}.zarr" for n in names]


@app.command()
def generate(
    spec: Path = typer.Argument(..., help="spec YAML file (a sweep writes one store per member under --out)"),
    n: int = typer.Option(..., "--n", "-n", help="number of samples"),
    out_path: str = typer.Option(..., "--out", help="store path or fsspec URL"),
    seed: int = typer.Option(0, help="sample i depends only on (seed, i)"),
    device: str = typer.Option("cpu", help="cpu | cuda (under torchrun: cuda:<LOCAL_RANK>)"),
    batch_size: int = typer.Option(64, help="samples per solver call (memory/speed only; never changes the bytes)"),
    tile: int = typer.Option(32, help="samples per velocity-net call; part of the numerics, recorded"),
    dtype: str = typer.Option("float32", help="float32 | float16 (storage precision, recorded and measured)"),
    shard_size: int = typer.Option(1024, help="samples per shard (unit of work, writing and resume)"),
    chunk_size: int = typer.Option(16, help="samples per compressed chunk inside a shard"),
    latents: bool = typer.Option(False, "--latents", help="also store the float64 latents z"),
    pmi: bool = typer.Option(True, help="store per-sample PMI for every pair in the manifest"),
    n_check: int = typer.Option(8, help="samples used to certify the maps and measure the round trip"),
    lipschitz: bool = typer.Option(False, help="also estimate each step's local Lipschitz constant (slower)"),
    entropy_samples: int = typer.Option(0, help="> 0: record h(X_i), h(X_i,X_j) from flow log-dets on this many "
                                        "samples (slow: ~terms × probes × steps JVPs)"),
    force: bool = typer.Option(False, help="write even if a map fails certification (the manifest says so)"),
    resume: bool = typer.Option(False, help="finish an interrupted store (only unfinished shards are redone)"),
    overwrite: bool = typer.Option(False, help="replace an existing store"),
    threads: int = typer.Option(1, help="torch CPU threads per process; part of the arithmetic, recorded"),
    workers: int = typer.Option(0, help="local worker processes (0: one per core on CPU, 1 under torchrun or on GPU); "
                                "never changes the bytes"),
    preview: bool = typer.Option(True, help="write preview.png next to the store (local paths)"),
) -> None:
    """Generate a dataset store: latents → certified flows → zarr v3 (+ manifest with the exact MI)."""
    from mi_datagen.api import load_and_expand
    from mi_datagen.store import distributed as D
    from mi_datagen.store.generate import GenerateConfig, generate as run

    try:
        rank, world = D.init_from_env(device)
        if workers == 0:
            workers = max(1, (os.cpu_count() or 1) // threads) if world == 1 and device == "cpu" else 1
        members = load_and_expand(spec)
        outs = _members_out(out_path, [g.name for g in members])
        for g, path in zip(members, outs):
            cfg = GenerateConfig(n=n, seed=seed, dtype=dtype, batch_size=batch_size, tile=tile, shard_size=shard_size,
                                 chunk_size=chunk_size, latents=latents, pmi=pmi, device=device, n_check=n_check,
                                 lipschitz=lipschitz, force=force, resume=resume, overwrite=overwrite,
                                 threads=threads, workers=workers, entropy_samples=entropy_samples,
                                 progress=rank == 0, command=shlex.join(["mi-datagen", *sys.argv[1:]]))
            man = run(g, path, cfg, spec.parent)
            if man is None:
                continue
            if preview and "://" not in path:
                _preview(path)
            rt = max((m.roundtrip.rel_rms_max for m in man.modalities if m.roundtrip), default=0.0)
            cert = "certified" if all(m.certificate is None or m.certificate.certified for m in man.modalities) \
                else "NOT CERTIFIED (forced)"
            pair = next((r for r in man.info.mutual_information if r.kind == "modality-pair"), None)
            mi = f"; I({pair.a[0]};{pair.b[0]}) = {_fmt(pair.nats)} nats" if pair else ""
            gen = man.timings_s.get("generate", 0.0)
            rate = man.timings_s.get("generated_samples", 0.0) * len(man.modalities) / gen if gen else 0.0
            out.print(f"{path}: {man.n} samples × {len(man.modalities)} modalities ({man.dtype}), "
                      f"{'complete' if man.complete else 'INCOMPLETE'}, maps {cert}, round trip ≤ {rt:.1e} rel"
                      f"{mi}; {man.timings_s['total']:.1f} s, {rate:.1f} images/s on {world} rank(s) × {workers} worker(s)",
                      highlight=False)
    except MIDatagenError as e:
        _fail(e)
    finally:
        D.shutdown()


def _preview(path: str, rows: int = 6) -> Path:
    import numpy as np
    import zarr

    from mi_datagen.bench.preview import preview_grid
    from mi_datagen.store.zarr_store import read_manifest

    man = read_manifest(path)
    g = zarr.open_group(path, mode="r")
    k = min(rows, man.n)
    images = {m.name: np.asarray(g[m.array][:k]) for m in man.modalities}
    target = Path(path.rstrip("/") + ".preview.png")
    return preview_grid(images, np.asarray(g[man.theta_array][:k]), target, f"{man.info.spec_name}: {path}")


@app.command()
def inspect(path: str = typer.Argument(..., help="a dataset store"),
            preview: Optional[Path] = typer.Option(None, help="write the preview grid here "
                                                   "(default: <store>.preview.png for local stores)")) -> None:
    """A store's manifest as tables: modalities, maps, exact MI (with the interval), shards."""
    from mi_datagen.store.zarr_store import read_manifest

    try:
        man = read_manifest(path)
    except MIDatagenError as e:
        _fail(e)
    done = sum(man.shards_complete)
    out.print(f"[bold]{path}[/]: spec {man.info.spec_name} (sha256 {man.info.spec_sha256[:12]}…), n = {man.n}, "
              f"seed {man.seed}, {man.dtype}, tile {man.tile}, {man.world_size} rank(s) on {man.device}; "
              f"shards {done}/{len(man.shards_complete)} {'complete' if man.complete else 'INCOMPLETE'}; "
              f"mi-datagen {man.package_version}")
    t = Table(title="modalities", title_justify="left")
    for c in ("name", "flow (class)", "solver", "certified", "worst rate", "round trip rel (max)"):
        t.add_column(c)
    for m in man.modalities:
        flow = f"{m.flow.checkpoint} ({m.flow.class_name}) {m.flow.sha256[:10]}…" if m.flow else "identity"
        solver = f"{m.solver['method']}×{m.solver['steps']} → {m.solver['t_end']}" if m.solver else "-"
        cert = m.certificate
        t.add_row(m.name, flow, solver, "-" if cert is None else ("yes" if cert.certified else "NO (forced)"),
                  "-" if cert is None else f"{cert.worst_contraction_rate:.3f}",
                  "-" if m.roundtrip is None else f"{m.roundtrip.rel_rms_max:.1e}")
    out.print(t)
    t = Table(title="exact information (nats) and the interval implied by round-trip error", title_justify="left")
    for c in ("quantity", "kind", "nats", "low end", "exact − low end"):
        t.add_column(c, justify="left" if c in ("quantity", "kind") else "right")
    from mi_datagen.info.units import quantity_label

    lows = {(tuple(r.a), tuple(r.b), tuple(r.given)): r.nats_perturbed for r in man.mi_intervals}
    for r in man.info.mutual_information:
        low = lows.get((tuple(r.a), tuple(r.b), tuple(r.given)))
        gap = "-" if low is None or r.nats is None else f"{r.nats - low:.1e}"
        t.add_row(quantity_label(r.a, r.b, r.given), r.kind, _fmt(r.nats), _fmt(low), gap)
    out.print(t)
    if man.image_entropies:
        t = Table(title="entropies of the stored modalities (nats): exact latent part + flow log-det estimate",
                  title_justify="left")
        for c in ("set", "h(X)", "± SE", "h(Z)", "log|det S|", "E log|det ∂F|", "samples"):
            t.add_column(c, justify="left" if c == "set" else "right")
        for r in man.image_entropies:
            t.add_row(",".join(r.nodes), f"{r.nats:.2f}", f"{r.stderr:.2f}", f"{r.latent_nats:.2f}",
                      f"{r.standardise_logdet:.2f}", f"{r.flow_logdet_mean:.2f}", str(r.n_samples))
        out.print(t)
    try:
        if preview is not None or "://" not in path:
            img = _preview(path) if preview is None else _preview_to(path, preview)
            out.print(f"preview grid (clamped 8-bit): {img}", highlight=False)
    except Exception as e:  # a preview is a convenience; the manifest above is the result
        err.print(f"no preview: {e}")


def _preview_to(path: str, target: Path) -> Path:
    p = _preview(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(p.read_bytes())
    return target


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
                                                            "names or suffixes such as 00,09,05)")
          ) -> None:
    """Run estimators × datasets × seeds against the exact MI; report.md, results.csv and plots."""
    import torch

    from mi_datagen.bench.report import summarise, load_runs
    from mi_datagen.bench.suite import run_suite

    if threads:
        torch.set_num_threads(threads)
    try:
        folder = run_suite(suite, out_dir, stores_dir=stores, generate_only=generate_only,
                           existing_only=existing_only,
                           datasets=[d.strip() for d in datasets.split(",") if d.strip()] if datasets else None)
        if generate_only:
            from mi_datagen.bench.suite import load_suite

            out.print(f"stores ready for {load_suite(suite).name}", highlight=False)
            return
    except MIDatagenError as e:
        _fail(e)
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
    base_dir: Path = typer.Option(Path("."), help="uint8: where the spec's relative flow paths resolve"),
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

    try:
        res = entropy_check(store, a, b, [e.strip() for e in estimators.split(",") if e.strip()],
                            [int(s) for s in sizes.split(",")] if sizes else None, seed, uint8,
                            base_dir=base_dir, n_check=n_check, truth_samples=truth_samples, progress=True)
    except MIDatagenError as e:
        _fail(e)
    truth = res["truth_entropies"] or {}
    t = Table(title=f"{store}: entropies and implied I({a}; {b}) in nats (exact MI {_fmt(res['truth_mi'])})",
              title_justify="left")
    for c in ("estimator", "n", f"H({a})", f"H({b})", "H(joint)", "implied MI", "s"):
        t.add_column(c, justify="left" if c == "estimator" else "right")
    if truth:
        se = res.get("truth_entropies_stderr") or {}
        cell = {k: _fmt(truth.get(k)) + (f" ± {se[k]:.0f}" if se.get(k) is not None else "") for k in ("a", "b", "ab")}
        t.add_row("exact" + (" (fine-quantisation limit)" if uint8 else "") + (" (h ± SE)" if se else ""), "",
                  cell["a"], cell["b"], cell["ab"], _fmt(res["truth_mi"]), "")
    if uint8:
        t.add_row("8-bit model", "", "", "", "", _fmt(res["uint8_model_mi"]), "")
    for r in res["rows"]:
        if "error" in r:
            t.add_row(r["estimator"], str(r["n"]), "failed", "", "", "", "")
            err.print(f"{r['estimator']} at n = {r['n']}: {r['error']}")
        else:
            t.add_row(r["estimator"], str(r["n"]), _fmt(r["h_a"]), _fmt(r["h_b"]), _fmt(r["h_ab"]), _fmt(r["mi"]),
                      f"{r['time_s']:.1f}")
    out.print(t)
    for name, q in (res.get("quantisation") or {}).get("modalities", {}).items():
        out.print(f"{name}: {q['clamped_fraction']:.2%} of values clamped; latent round trip (rel. RMS, max over "
                  f"{res['quantisation']['n_check']}) uint8 {q['uint8_roundtrip']['rel_rms_max']:.2e} vs stored "
                  f"{q['float_roundtrip']['rel_rms_max']:.2e}", highlight=False)
    js, png = write_check(res, out_dir)
    out.print(f"wrote {js} and {png}", highlight=False)
