"""The ``mi-datagen`` command line: a thin typer layer over the library."""

from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mi_datagen import __version__
from mi_datagen.errors import MIDatagenError
from mi_datagen.info.units import format_info, quantity_label, to_bits

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Realistic multimodal datasets with exactly known mutual information.")
out = Console(soft_wrap=True)
err = Console(stderr=True)


class SolverMethod(str, Enum):
    auto = "auto"
    structured = "structured"
    dense = "dense"


def _fail(e: Exception) -> None:
    err.print(f"[bold red]error:[/] {e}", markup=True, highlight=False)
    raise typer.Exit(code=2)


def _fmt(v: float | None) -> str:
    return format_info(v, 6)


def _bits(v: float | None) -> str:
    return format_info(to_bits(v), 6)


def _label(r) -> str:
    return quantity_label(r.a, r.b, r.given)


def _render(table, title: str) -> None:
    t = Table(title=title, title_justify="left")
    for col, just in (("quantity", "left"), ("kind", "left"), ("nats", "right"), ("bits", "right")):
        t.add_column(col, justify=just)
    for r in table.mutual_information:
        t.add_row(_label(r), r.kind, _fmt(r.nats), _bits(r.nats))
    for r in table.interaction_information:
        t.add_row(f"I({','.join(r.a)}; {','.join(r.b)}; {','.join(r.given)})", r.kind, _fmt(r.nats), _bits(r.nats))
    for r in table.total_correlation:
        t.add_row(f"TC({','.join(r.nodes)})", r.kind, _fmt(r.nats), _bits(r.nats))
    for r in table.entropies:
        t.add_row(f"h({','.join(r.nodes)})", "entropy", _fmt(r.nats), _bits(r.nats))
    out.print(t)
    notes = [f"{_label(r)}: {r.note}" for r in table.mutual_information if r.note]
    for n in notes:
        out.print(f"[yellow]note:[/] {n}", highlight=False)


@app.command()
def version() -> None:
    """Print the package version."""
    out.print(__version__)


@app.command()
def schema() -> None:
    """Print the JSON Schema of a spec file (for editor completion)."""
    from mi_datagen.spec.io import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def validate(spec: Path = typer.Argument(..., help="spec YAML file")) -> None:
    """Check a spec: schema, DAG, templates, and whether the exact structured solver applies."""
    from mi_datagen.api import expand, solver_for
    from mi_datagen.spec.io import load_spec

    try:
        members = expand(load_spec(spec), spec.parent)
        for g in members:
            s = solver_for(g, spec.parent)
            where = "structured (exact, no Σ formed)" if s.method == "structured" else f"dense ({s.structure_note})"
            out.print(f"[green]OK[/] {g.name}: {len(g.nodes)} nodes, {len(g.edges)} edges, "
                      f"{len(g.modalities)} modalities, d = {s.sem.d}; solver: {where}", highlight=False)
    except MIDatagenError as e:
        _fail(e)


@app.command("expand")
def expand_cmd(spec: Path = typer.Argument(..., help="spec YAML file"),
               output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of stdout")) -> None:
    """Print the explicit node/edge spec(s): families expanded, solve solved, sweeps unrolled."""
    from mi_datagen.api import expand
    from mi_datagen.spec.io import dump_spec, load_spec

    try:
        text = "---\n".join(dump_spec(g) for g in expand(load_spec(spec), spec.parent))
    except MIDatagenError as e:
        _fail(e)
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


@app.command()
def info(spec: Path = typer.Argument(..., help="spec YAML file"),
         as_json: bool = typer.Option(False, "--json", help="print the information manifest as JSON"),
         method: SolverMethod = typer.Option(SolverMethod.auto, help="auto: structured when it applies"),
         conditionals: bool = typer.Option(True, help="include I(Xi;Xj|θ), I(θ;Xi|Xj) and interactions")) -> None:
    """The exact information table of a spec (nats and bits)."""
    from mi_datagen.api import expand, table_for
    from mi_datagen.spec.io import load_spec
    from mi_datagen.store.manifest import information_manifest

    try:
        t0 = time.perf_counter()
        members = expand(load_spec(spec), spec.parent)
        tables = [table_for(g, spec.parent, method.value, conditionals) for g in members]
        elapsed = time.perf_counter() - t0
    except MIDatagenError as e:
        _fail(e)
    if as_json:
        docs = [information_manifest(g, t).model_dump(mode="json") for g, t in zip(members, tables)]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
        return
    for g, t in zip(members, tables):
        _render(t, f"{g.name} (d = {t.d}, solver: {t.solver})")
    n = sum(len(t.mutual_information) for t in tables)
    out.print(f"{len(members)} spec(s), {n} MI terms, solver {tables[0].solver}, {elapsed * 1e3:.1f} ms", highlight=False)


def _parse_data(data: str) -> tuple[str, str]:
    kind, _, root = data.partition(":")
    if kind not in ("cifar10", "imagefolder") or not root:
        raise typer.BadParameter(f"--data must be 'cifar10:ROOT' or 'imagefolder:PATH', got {data!r}")
    return kind, root


@app.command("train-flow")
def train_flow(
    data: str = typer.Option(..., help="cifar10:ROOT (torchvision) or imagefolder:PATH"),
    run_dir: Path = typer.Option(Path("runs/flow"), help="checkpoints, samples and logs go here"),
    preset: str = typer.Option("cpu-small", help="model size: tiny, cpu-small, cpu-medium, gpu-large"),
    steps: int = typer.Option(20_000, help="total optimisation steps (a resumed run continues to this)"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-4),
    ema_decay: float = typer.Option(0.999),
    sigma_min: float = typer.Option(0.0, help="CFM σ_min (> 0 softens the field near t = 1)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    bf16: bool = typer.Option(False, help="bf16 autocast (fast only where the CPU has AMX, or on GPUs)"),
    threads: int = typer.Option(0, help="torch CPU threads (0 = default)"),
    checkpoint_every: int = typer.Option(500),
    sample_every: int = typer.Option(2000),
    max_minutes: Optional[float] = typer.Option(None, help="stop (with a checkpoint) after this long"),
    download: bool = typer.Option(False, help="download CIFAR-10 through torchvision"),
    cache_dir: Path = typer.Option(Path("data/cache"), help="where decoded ImageFolder arrays are cached"),
    fresh: bool = typer.Option(False, help="ignore an existing checkpoint in run-dir"),
) -> None:
    """Train a class-conditional flow-matching velocity field (resumes from run-dir/checkpoint.pt)."""
    from mi_datagen.flows.data import load_images
    from mi_datagen.flows.train import TrainConfig, train
    from mi_datagen.flows.unet import PRESETS

    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset must be one of {sorted(PRESETS)}, got {preset!r}")
    try:
        kind, root = _parse_data(data)
        images = load_images(kind, root, cache_dir=cache_dir, download=download)
        cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, sigma_min=sigma_min,
                          seed=seed, device=device, bf16=bf16, threads=threads,
                          checkpoint_every=checkpoint_every, sample_every=sample_every)
        model_cfg = PRESETS[preset]
        if model_cfg.num_classes != len(images.classes):
            model_cfg = type(model_cfg)(**{**model_cfg.to_dict(), "num_classes": len(images.classes)})
        train(images, run_dir, model_cfg, cfg, resume=not fresh,
              max_seconds=None if max_minutes is None else 60 * max_minutes)
    except MIDatagenError as e:
        _fail(e)


def _solver_opts(method: str, steps: int, t_end: float, grid: str):
    from mi_datagen.flows.ode import SolverConfig

    try:
        return SolverConfig(method=method, steps=steps, t_end=t_end, grid=grid)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command("export-flow")
def export_flow_cmd(
    checkpoint: Path = typer.Argument(..., help="a training checkpoint (run-dir/checkpoint.pt)"),
    out: Path = typer.Option(Path("flows/default.pt"), help="the flow file to write"),
    name: Optional[str] = typer.Option(None, help="register under this name in out's folder registry.json"),
    method: str = typer.Option("euler"), steps: int = typer.Option(16), t_end: float = typer.Option(0.98),
    grid: str = typer.Option("uniform", help="uniform or geometric"),
) -> None:
    """Export the EMA weights of a training checkpoint as a flow file with its solver settings."""
    from mi_datagen.flows.io import export_flow

    try:
        digest = export_flow(checkpoint, out, _solver_opts(method, steps, t_end, grid), name)
    except MIDatagenError as e:
        _fail(e)
    out_msg = f"exported {out} (sha256 {digest[:16]}…)" + (f", registered as {name!r}" if name else "")
    console_print(out_msg)


@app.command("certify-flow")
def certify_flow_cmd(
    flow: str = typer.Argument("default", help="a shipped flow name or a flow file"),
    label: Optional[str] = typer.Option(None, help="class name or index (default: every class)"),
    n: int = typer.Option(16, help="latents per class"),
    method: Optional[str] = typer.Option(None), steps: Optional[int] = typer.Option(None),
    t_end: Optional[float] = typer.Option(None), grid: Optional[str] = typer.Option(None),
    seed: int = typer.Option(0), json_out: Optional[Path] = typer.Option(None, "--json", help="write the certificates"),
    lipschitz: bool = typer.Option(True, help="power-iteration estimates of each step's local Lipschitz constant"),
) -> None:
    """Certify the applied map step by step on N(0, I) latents and round-trip them exactly."""
    import torch

    from mi_datagen.flows.certify import certify
    from mi_datagen.flows.io import load_flow

    try:
        f = load_flow(flow)
    except MIDatagenError as e:
        _fail(e)
    base = f.solver.to_dict()
    cfg = _solver_opts(method or base["method"], steps or base["steps"], t_end or base["t_end"], grid or base["grid"])
    labels = [label] if label is not None else list(f.classes)
    gen = torch.Generator().manual_seed(seed)
    results, ok = {}, True
    for lab in labels:
        lab_v = int(lab) if isinstance(lab, str) and lab.isdigit() else lab
        z = torch.randn((n, *f.shape), generator=gen)
        cert, _ = certify(f.net, z, f.label_index(lab_v), cfg, lipschitz=lipschitz)
        console_print(f"{lab}: {cert.summary()}")
        results[str(lab)] = cert.to_dict()
        ok &= cert.certified
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
    console_print(f"certify-flow: {'all certified' if ok else 'NOT all certified'} ({len(labels)} class(es), "
                  f"{cfg.method} x {cfg.steps}, t_end {cfg.t_end}, {cfg.grid})")
    if not ok:
        raise typer.Exit(code=1)


@app.command("sample-flow")
def sample_flow_cmd(
    flow: str = typer.Argument("default"), out: Path = typer.Option(Path("out/flow_samples.png")),
    per_class: int = typer.Option(8), seed: int = typer.Option(0),
) -> None:
    """A grid of samples, one row per class (a clamped uint8 preview)."""
    from mi_datagen.flows.io import load_flow
    from mi_datagen.flows.train import sample_grid

    try:
        f = load_flow(flow)
    except MIDatagenError as e:
        _fail(e)
    sample_grid(f.net, len(f.classes), per_class, out, seed=seed, solver=f.solver, class_names=list(f.classes))
    console_print(f"wrote {out}")


@app.command("train-classifier")
def train_classifier_cmd(
    data: str = typer.Option(..., help="training images: cifar10:ROOT or imagefolder:PATH"),
    test_data: str = typer.Option(..., help="held-out images, same forms"),
    out: Path = typer.Option(Path("flows/classifier.pt")), epochs: int = typer.Option(8),
    threads: int = typer.Option(0), seed: int = typer.Option(0), download: bool = typer.Option(False),
    cache_dir: Path = typer.Option(Path("data/cache")),
) -> None:
    """Train the small CIFAR classifier that scores flows (class consistency, Fréchet distance)."""
    import torch

    from mi_datagen.flows.checkpoint import save_checkpoint
    from mi_datagen.flows.data import load_images
    from mi_datagen.flows.quality import accuracy, train_classifier

    if threads:
        torch.set_num_threads(threads)
    try:
        train = load_images(*_parse_data(data), cache_dir=cache_dir, download=download)
        test = load_images(*_parse_data(test_data), train=False, cache_dir=cache_dir, download=download)
    except MIDatagenError as e:
        _fail(e)
    net, info = train_classifier(train, epochs=epochs, seed=seed)
    info.update(train_accuracy=accuracy(net, train), test_accuracy=accuracy(net, test),
                classes=list(train.classes), data=json.dumps(train.description), test=json.dumps(test.description))
    save_checkpoint({"format": "mi-datagen-classifier/1", "model": net.state_dict(), "info": json.dumps(info)}, out)
    console_print(f"train-classifier: test accuracy {info['test_accuracy']:.4f} (train {info['train_accuracy']:.4f}), "
                  f"{info['wall_s'] / 60:.1f} min; wrote {out}")


@app.command("flow-quality")
def flow_quality_cmd(
    flow: str = typer.Argument("default"), classifier: Path = typer.Option(Path("flows/classifier.pt")),
    data: str = typer.Option(..., help="real train images"), test_data: str = typer.Option(..., help="real test images"),
    n: int = typer.Option(500, help="generated images per class"), json_out: Optional[Path] = typer.Option(None, "--json"),
    cache_dir: Path = typer.Option(Path("data/cache")), threads: int = typer.Option(0),
) -> None:
    """Class consistency and Fréchet distance (classifier features) of a flow, per class."""
    import torch

    from mi_datagen.flows.checkpoint import load_checkpoint
    from mi_datagen.flows.data import load_images
    from mi_datagen.flows.io import load_flow
    from mi_datagen.flows.quality import SmallCNN, evaluate_flow

    if threads:
        torch.set_num_threads(threads)
    try:
        f = load_flow(flow)
        ck = load_checkpoint(classifier)
        train = load_images(*_parse_data(data), cache_dir=cache_dir)
        test = load_images(*_parse_data(test_data), train=False, cache_dir=cache_dir)
    except MIDatagenError as e:
        _fail(e)
    clf = SmallCNN(len(train.classes))
    clf.load_state_dict(ck["model"])
    rows = evaluate_flow(f, clf.eval(), train, test, n_per_class=n)
    t = Table(title=f"{f.path.name} (step {f.meta.get('step')}), {n} generated images per class")
    for col in ("class", "consistency", "FD gen vs test", "FD train vs test"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(r.label, f"{r.consistency:.3f}", f"{r.fd_generated_vs_test:.2f}", f"{r.fd_train_vs_test:.2f}")
    out.print(t)
    if json_out:
        from dataclasses import asdict

        json_out.write_text(json.dumps({"flow": str(f.path), "flow_sha256": f.sha256, "step": f.meta.get("step"),
                                        "n_per_class": n, "classes": [asdict(r) for r in rows]}, indent=2))


def console_print(msg: str) -> None:
    out.print(msg, highlight=False, markup=False)


from mi_datagen import cli_data  # noqa: E402,F401  (registers generate/inspect)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
