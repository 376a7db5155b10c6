"""Dataset commands: generate, inspect."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mi_datagen.cli._common import app, err, fmt, out, share
from mi_datagen.errors import MIDatagenError
from mi_datagen.info.units import quantity_label


@app.command()
def generate(
    spec: str = typer.Argument(..., help="spec YAML file or shipped example name (a sweep, or a file of several "
                                         "documents, writes one store per member under --out)"),
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
    certify_fraction: float = typer.Option(0.0, help="certify the map on this share of the stored samples (their "
                                                     "own trajectories; 1 = every sample); recorded in the manifest"),
    certify_steps: int = typer.Option(1, help="per-sample certification: how many of the last steps"),
    entropy_samples: int = typer.Option(0, help="> 0: record h(X_i), h(X_i,X_j) from flow log-dets on this many "
                                        "samples (slow: ~terms × probes × steps JVPs)"),
    force: bool = typer.Option(False, help="write even if a map fails certification (the manifest says so)"),
    resume: bool = typer.Option(False, help="finish an interrupted store (only unfinished shards are redone)"),
    overwrite: bool = typer.Option(False, help="replace an existing store"),
    threads: int = typer.Option(1, help="torch CPU threads per process; part of the arithmetic, recorded"),
    workers: int = typer.Option(0, help="local worker processes (0: one per core on CPU, 1 under torchrun or on GPU); "
                                "never changes the bytes"),
    preview: bool = typer.Option(True, help="write preview.png next to the store (local paths)"),
    member: Optional[str] = typer.Option(None, help="generate only this member of a sweep: its name, its suffix "
                                                    "(05) or its 0-based index"),
) -> None:
    """Generate a dataset store: latents → certified flows → zarr v3 (+ manifest with the exact MI)."""
    from mi_datagen.api import generate as run
    from mi_datagen.store import distributed as D

    def summary(path: str, man) -> None:
        if preview and "://" not in path:
            _preview(path)
        rt = max((m.roundtrip.rel_rms_max for m in man.modalities if m.roundtrip), default=0.0)
        cert = "certified" if all(m.certificate is None or m.certificate.certified for m in man.modalities) \
            else "NOT CERTIFIED (forced)"
        pair = next((r for r in man.info.mutual_information if r.kind == "modality-pair"), None)
        mi = f"; I({pair.a[0]};{pair.b[0]}) = {fmt(pair.nats)} nats" if pair else ""
        gen = man.timings_s.get("generate", 0.0)
        rate = man.timings_s.get("generated_samples", 0.0) * len(man.modalities) / gen if gen else 0.0
        out.print(f"{path}: {man.n} samples × {len(man.modalities)} modalities ({man.dtype}), "
                  f"{'complete' if man.complete else 'INCOMPLETE'}, maps {cert}, round trip ≤ {rt:.1e} rel"
                  f"{mi}; {man.timings_s['total']:.1f} s, {rate:.1f} images/s on {D.rank_world()[1]} rank(s)",
                  highlight=False)
        for m in man.modalities:
            sc = m.sample_certification
            if sc is None:
                continue
            bound = "-" if sc.failure_rate_bound_95 is None else f"{sc.failure_rate_bound_95:.2g}"
            line = (f"{m.name}: {sc.n_checked} stored samples certified at steps {sc.steps}, {sc.n_failed} failed "
                    f"(failure rate < {bound} at 95 %; worst {sc.worst if sc.worst is None else round(sc.worst, 3)})")
            (err if sc.n_failed else out).print(line + (f"; failed samples {sc.failed_indices[:10]}…"
                                                        if sc.n_failed else ""), highlight=False)

    run(spec, out_path, n, member=member, workers=workers, on_store=summary, seed=seed, dtype=dtype,
        batch_size=batch_size, tile=tile, shard_size=shard_size, chunk_size=chunk_size, latents=latents, pmi=pmi,
        device=device, n_check=n_check, lipschitz=lipschitz, certify_fraction=certify_fraction,
        certify_steps=certify_steps, force=force, resume=resume, overwrite=overwrite,
        threads=threads, entropy_samples=entropy_samples, command=shlex.join(["mi-datagen", *sys.argv[1:]]))


def _preview(path: str, rows: int = 6) -> Path:
    from mi_datagen.bench.preview import preview_grid
    from mi_datagen.store.store import Store

    store = Store(path)
    k = min(rows, store.n)
    images = {m: store.images(m, slice(0, k)) for m in store.modalities}
    target = Path(path.rstrip("/") + ".preview.png")
    return preview_grid(images, store.theta(slice(0, k)), target, f"{store.manifest.info.spec_name}: {path}")


@app.command()
def inspect(path: str = typer.Argument(..., help="a dataset store"),
            preview: Optional[Path] = typer.Option(None, help="write the preview grid here "
                                                   "(default: <store>.preview.png for local stores)"),
            shortcut: bool = typer.Option(False, "--shortcut", help="also run the shortcut check (MI carried by "
                                          "channel means and the lowest spatial frequencies, 2 000 samples) on "
                                          "θ; X1 and X1; Xj")) -> None:
    """A store's manifest as tables: modalities, maps, exact MI (with the interval), shards; with --shortcut, how
    much of the MI trivial statistics carry."""
    from mi_datagen.store.store import Store

    man = Store(path).manifest
    done = sum(man.shards_complete)
    out.print(f"[bold]{path}[/]: spec {man.info.spec_name} (sha256 {man.info.spec_sha256[:12]}…), n = {man.n}, "
              f"seed {man.seed}, {man.dtype}, tile {man.tile}, {man.world_size} rank(s) on {man.device}; "
              f"shards {done}/{len(man.shards_complete)} {'complete' if man.complete else 'INCOMPLETE'}; "
              f"mi-datagen {man.package_version}")
    t = Table(title="modalities", title_justify="left")
    for c in ("name", "flow (class)", "solver", "certified", "worst rate", "round trip rel (max)", "per sample"):
        t.add_column(c)
    for m in man.modalities:
        flow = f"{m.flow.checkpoint} ({m.flow.class_name}) {m.flow.sha256[:10]}…" if m.flow else "identity"
        solver = f"{m.solver['method']}×{m.solver['steps']} → {m.solver['t_end']}" if m.solver else "-"
        cert = m.certificate
        t.add_row(m.name, flow, solver, "-" if cert is None else ("yes" if cert.certified else "NO (forced)"),
                  "-" if cert is None else f"{cert.worst_contraction_rate:.3f}",
                  "-" if m.roundtrip is None else f"{m.roundtrip.rel_rms_max:.1e}",
                  "-" if m.sample_certification is None else
                  f"{m.sample_certification.n_checked - m.sample_certification.n_failed}/"
                  f"{m.sample_certification.n_checked} ok")
    out.print(t)
    t = Table(title="exact information (nats) and the interval implied by round-trip error", title_justify="left")
    for c in ("quantity", "kind", "nats", "low end", "exact − low end"):
        t.add_column(c, justify="left" if c in ("quantity", "kind") else "right")

    lows = {(tuple(r.a), tuple(r.b), tuple(r.given)): r.nats_perturbed for r in man.mi_intervals}
    for r in man.info.mutual_information:
        low = lows.get((tuple(r.a), tuple(r.b), tuple(r.given)))
        gap = "-" if low is None or r.nats is None else f"{r.nats - low:.1e}"
        t.add_row(quantity_label(r.a, r.b, r.given), r.kind, fmt(r.nats), fmt(low), gap)
    out.print(t)
    if man.image_entropies:
        t = Table(title="entropies of the stored modalities (nats): exact latent part + flow log-det estimate",
                  title_justify="left")
        for c in ("set", "h(X)", "± SE", "h(Z)", "log|det S|", "E log|det ∂F|", "samples"):
            t.add_column(c, justify="left" if c == "set" else "right")
        for e in man.image_entropies:
            t.add_row(",".join(e.nodes), f"{e.nats:.2f}", f"{e.stderr:.2f}", f"{e.latent_nats:.2f}",
                      f"{e.standardize_logdet:.2f}", f"{e.flow_logdet_mean:.2f}", str(e.n_samples))
        out.print(t)
    if shortcut:
        _print_shortcuts(path)
    try:
        if preview is not None or "://" not in path:
            img = _preview(path) if preview is None else _preview_to(path, preview)
            out.print(f"preview grid (clamped 8-bit): {img}", highlight=False)
    except (MIDatagenError, OSError, ValueError) as e:  # a preview is a convenience; the manifest is the result
        err.print(f"no preview: {' '.join(str(e).split())}")


def _print_shortcuts(path: str) -> None:
    from mi_datagen.bench.shortcut import store_shortcuts

    t = Table(title="shortcut check (nats): MI from channel means and the lowest spatial frequencies, KSG and "
                    "Gaussian; above null = less each estimate's figure on shuffled pairs", title_justify="left")
    for c in ("pair", "exact", "best shortcut", "share", "above null", "share above null", "samples"):
        t.add_column(c, justify="left" if c == "pair" else "right")
    for r in store_shortcuts(path):
        t.add_row(quantity_label(r["a"], r["b"], []), fmt(r["truth"]), fmt(r["max_nats"]),
                  share(r["share"]), fmt(r["above_null"]), share(r["share_above_null"]), str(r["n"]))
    out.print(t)


def _preview_to(path: str, target: Path) -> Path:
    p = _preview(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(p.read_bytes())
    return target



@app.command("add-entropies")
def add_entropies(store: str = typer.Argument(..., help="a complete dataset store made without --entropy-samples"),
                  samples: int = typer.Option(256, help="samples whose flow log-dets estimate h(X_i), h(X_i, X_j)"),
                  terms: int = typer.Option(10, help="terms of the log-det series per sample (as generation)"),
                  probes: int = typer.Option(4, help="Hutchinson probes per term (as generation)")) -> None:
    """Record the image entropies in a store's manifest after the fact (the one command that edits a manifest
    of a finished store; checks such as entropy-check only read)."""
    from mi_datagen.bench.entropy_check import image_entropy_records
    from mi_datagen.store.store import Store
    from mi_datagen.store.zarr_store import write_manifest

    st = Store(store)
    records = image_entropy_records(st, samples, terms, probes)
    write_manifest(st.path, st.manifest.model_copy(update={"image_entropies": records}))
    out.print(f"{store}: recorded {len(records)} entropy estimates from {samples} samples each", highlight=False)


@app.command()
def verify(store: str = typer.Argument(..., help="a dataset store")) -> None:
    """Check a store end to end (manifest digest, layout, completion, every shard's data against its digest,
    template files) and name every problem; exit status 1 if any."""
    from mi_datagen.store.verify import verify as check

    rep = check(store, progress=True)
    for p in rep.problems:
        err.print(f"[bold red]problem:[/] {p}", markup=True, highlight=False, soft_wrap=True)
    out.print(rep.summary(), highlight=False, markup=False)
    if not rep.ok:
        raise typer.Exit(1)
