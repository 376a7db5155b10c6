"""Flow commands: train, export, certify, sample, and the quality judge."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from mi_datagen.assets import DEFAULT_FLOW
from mi_datagen.cli._common import app, out, say


def _parse_data(data: str) -> tuple[str, str]:
    kind, _, root = data.partition(":")
    if kind not in ("cifar10", "imagefolder") or not root:
        raise typer.BadParameter(f"--data must be 'cifar10:ROOT' or 'imagefolder:PATH', got {data!r}")
    return kind, root


@app.command("train-flow")
def train_flow(
    data: str = typer.Option(..., help="cifar10:ROOT (torchvision) or imagefolder:PATH"),
    run_dir: Path = typer.Option(Path("runs/flow"), help="checkpoints, samples and logs go here"),
    preset: str = typer.Option("cpu-small", help="model size: tiny, cpu-small, cpu-v2, cpu-medium, gpu-large"),
    steps: int = typer.Option(20_000, help="total optimisation steps (a resumed run continues to this)"),
    batch_size: int = typer.Option(64),
    lr: float = typer.Option(2e-4),
    ema_decay: float = typer.Option(0.999),
    sigma_min: float = typer.Option(0.0, help="CFM σ_min (> 0 softens the field near t = 1)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu", help="cpu or cuda"),
    bf16: bool = typer.Option(False, help="bf16 autocast (fast only where the CPU has AMX, or on GPUs)"),
    threads: int = typer.Option(0, help="torch CPU threads (0 = default)"),
    ot: bool = typer.Option(False, "--ot/--no-ot", help="minibatch optimal-transport coupling (straighter paths)"),
    checkpoint_every: int = typer.Option(500),
    sample_every: int = typer.Option(2000),
    max_minutes: Optional[float] = typer.Option(None, help="stop (with a checkpoint) after this long"),
    download: bool = typer.Option(False, help="download CIFAR-10 through torchvision"),
    cache_dir: Path = typer.Option(Path("data/cache"), help="where decoded ImageFolder arrays are cached"),
    fresh: bool = typer.Option(False, help="ignore an existing checkpoint in run-dir"),
) -> None:
    """Train a class-conditional flow-matching velocity field (resumes from run-dir/checkpoint.pt)."""
    from mi_datagen.flows.images import load_images
    from mi_datagen.flows.train import TrainConfig, train
    from mi_datagen.flows.unet import PRESETS

    if preset not in PRESETS:
        raise typer.BadParameter(f"--preset must be one of {sorted(PRESETS)}, got {preset!r}")
    kind, root = _parse_data(data)
    images = load_images(kind, root, cache_dir=cache_dir, download=download)
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, ema_decay=ema_decay, sigma_min=sigma_min,
                      seed=seed, device=device, bf16=bf16, threads=threads, ot_coupling=ot,
                      checkpoint_every=checkpoint_every, sample_every=sample_every)
    model_cfg = PRESETS[preset]
    if model_cfg.num_classes != len(images.classes):
        model_cfg = type(model_cfg)(**{**model_cfg.to_dict(), "num_classes": len(images.classes)})
    train(images, run_dir, model_cfg, cfg, resume=not fresh,
          max_seconds=None if max_minutes is None else 60 * max_minutes)


def _solver_opts(**settings):
    from mi_datagen.flows.ode import SolverConfig

    if settings.get("grid") != "designed":
        settings.pop("times", None)
    try:
        return SolverConfig(**settings)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None


@app.command("export-flow")
def export_flow_cmd(
    checkpoint: Path = typer.Argument(..., help="a training checkpoint (run-dir/checkpoint.pt)"),
    out: Path = typer.Option(..., help="the flow file to write (an existing file is kept unless --overwrite)"),
    name: Optional[str] = typer.Option(None, help="register under this name in out's folder registry.json"),
    method: str = typer.Option("euler"), steps: int = typer.Option(16), t_end: float = typer.Option(0.97),
    grid: str = typer.Option("uniform", help="uniform, geometric or hybrid (uniform to t = 0.75, then geometric); "
                                             "`design-grid` makes a designed one from the exported flow"),
    overwrite: bool = typer.Option(False, help="replace an existing flow file at --out"),
) -> None:
    """Export the EMA weights of a training checkpoint as a flow file with its solver settings."""
    from mi_datagen.errors import ConfigError
    from mi_datagen.flows.io import export_flow

    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: the file exists (a pinned flow, perhaps); choose another path or pass "
                          "--overwrite")

    digest = export_flow(checkpoint, out, _solver_opts(method=method, steps=steps, t_end=t_end, grid=grid), name)
    out_msg = f"exported {out} (sha256 {digest[:16]}…)" + (f", registered as {name!r}" if name else "")
    say(out_msg)


@app.command("certify-flow")
def certify_flow_cmd(
    flow: str = typer.Argument(DEFAULT_FLOW, help="a shipped flow name or a flow file"),
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

    f = load_flow(flow)
    over = {k: v for k, v in dict(method=method, steps=steps, t_end=t_end, grid=grid).items() if v is not None}
    cfg = _solver_opts(**{**f.solver.to_dict(), **over}) if over else f.solver
    labels = [label] if label is not None else list(f.classes)
    gen = torch.Generator().manual_seed(seed)
    results, ok = {}, True
    for lab in labels:
        lab_v = int(lab) if isinstance(lab, str) and lab.isdigit() else lab
        z = torch.randn((n, *f.shape), generator=gen)
        cert, _ = certify(f.net, z, f.label_index(lab_v), cfg, lipschitz=lipschitz)
        say(f"{lab}: {cert.summary()}")
        results[str(lab)] = cert.to_dict()
        ok &= cert.certified
    if json_out:
        json_out.write_text(json.dumps(results, indent=2))
    say(f"certify-flow: {'all certified' if ok else 'NOT all certified'} ({len(labels)} class(es), "
                  f"{cfg.method} x {cfg.steps}, t_end {cfg.t_end}, {cfg.grid})")
    if not ok:
        raise typer.Exit(code=1)


@app.command("design-grid")
def design_grid_cmd(
    flow: str = typer.Argument(DEFAULT_FLOW, help="a shipped flow name or a flow file"),
    out: Path = typer.Option(..., help="the flow file to write: the same weights with the designed grid"),
    n: int = typer.Option(16, help="pilot latents per class: half N(0, I), half off-distribution"),
    target: float = typer.Option(0.65, help="the contraction rate every designed step is aimed at"),
    t_end: float = typer.Option(0.99), pilot_steps: int = typer.Option(48, help="steps of the fine pilot grid"),
    max_step: float = typer.Option(0.1, help="no step longer than this: a long Euler step leaves the pilot's "
                                              "trajectory where the field is soft, and meets a stiffer one"),
    seed: int = typer.Option(0), threads: int = typer.Option(0),
    name: Optional[str] = typer.Option(None, help="register under this name in out's folder registry.json"),
    overwrite: bool = typer.Option(False, help="replace an existing flow file at --out"),
) -> None:
    """Design an equal-rate Euler grid from a pilot certificate on every class, and write the flow with it."""
    import torch
    from tqdm import tqdm

    from mi_datagen.assets import register
    from mi_datagen.errors import ConfigError
    from mi_datagen.flows.grid import design_grid, off_distribution_latents
    from mi_datagen.flows.io import load_flow, save_flow

    if out.exists() and not overwrite:
        raise ConfigError(f"--out {out}: the file exists; choose another path or pass --overwrite")
    if n < 2:
        raise ConfigError(f"--n: the pilot needs at least 2 latents per class (one in, one off distribution), got {n}")
    if threads:
        torch.set_num_threads(threads)
    f = load_flow(flow)
    gen = torch.Generator().manual_seed(seed)
    latents = {i: torch.cat([torch.randn((n - n // 2, *f.shape), generator=gen),
                             off_distribution_latents(n // 2, f.shape, gen)]) for i in range(len(f.classes))}
    with tqdm(total=len(latents) * pilot_steps, desc="pilot certificate", unit="step") as bar:
        design = design_grid(f.net, latents, target=target, t_end=t_end, pilot_steps=pilot_steps,
                             max_step=max_step, progress=bar.update)
    solver = design.solver(f.solver)
    digest = save_flow(f.net, f.classes, solver, out, **{**f.meta, "grid_design": design.to_dict()})
    if name is not None:
        register(out.parent, name, {"file": out.name, "sha256": digest, "step": f.meta.get("step")})
    say(f"design-grid: {solver.steps} Euler steps to t = {t_end}, predicted rate ≤ {max(design.predicted):.3f} "
        f"(pilot: {pilot_steps} steps, {design.pilot_samples} latents, worst stiffness "
        f"{max(design.pilot_stiffness):.1f}); wrote {out} (sha256 {digest[:16]}…)")


@app.command("sample-flow")
def sample_flow_cmd(
    flow: str = typer.Argument(DEFAULT_FLOW), out: Path = typer.Option(Path("out/flow_samples.png")),
    per_class: int = typer.Option(8), seed: int = typer.Option(0),
) -> None:
    """A grid of samples, one row per class (a clamped uint8 preview)."""
    from mi_datagen.flows.io import load_flow
    from mi_datagen.flows.train import sample_grid

    f = load_flow(flow)
    sample_grid(f.net, len(f.classes), per_class, out, seed=seed, solver=f.solver, class_names=list(f.classes))
    say(f"wrote {out}")


@app.command("train-classifier")
def train_classifier_cmd(
    data: str = typer.Option(..., help="training images: cifar10:ROOT or imagefolder:PATH"),
    test_data: str = typer.Option(..., help="held-out images, same forms"),
    out: Path = typer.Option(Path("checkpoints/classifier.pt")), epochs: int = typer.Option(8),
    threads: int = typer.Option(0), seed: int = typer.Option(0), download: bool = typer.Option(False),
    cache_dir: Path = typer.Option(Path("data/cache")),
) -> None:
    """Train the small CIFAR classifier that scores flows (class consistency, Fréchet distance)."""
    import torch

    from mi_datagen.flows.checkpoint import save_checkpoint
    from mi_datagen.flows.images import load_images
    from mi_datagen.flows.quality import accuracy, train_classifier

    if threads:
        torch.set_num_threads(threads)
    train = load_images(*_parse_data(data), cache_dir=cache_dir, download=download)
    test = load_images(*_parse_data(test_data), train=False, cache_dir=cache_dir, download=download)
    net, info = train_classifier(train, epochs=epochs, seed=seed)
    info.update(train_accuracy=accuracy(net, train), test_accuracy=accuracy(net, test),
                classes=list(train.classes), data=json.dumps(train.description), test=json.dumps(test.description))
    save_checkpoint({"format": "mi-datagen-classifier/1", "model": net.state_dict(), "info": json.dumps(info)}, out)
    say(f"train-classifier: test accuracy {info['test_accuracy']:.4f} (train {info['train_accuracy']:.4f}), "
                  f"{info['wall_s'] / 60:.1f} min; wrote {out}")


@app.command("train-judge")
def train_judge_cmd(
    data: str = typer.Option(..., help="training images: cifar10:ROOT or imagefolder:PATH"),
    test_data: str = typer.Option(..., help="held-out images, same forms"),
    run_dir: Path = typer.Option(Path("runs/judge"), help="checkpoints after every epoch; a rerun resumes"),
    out: Path = typer.Option(Path("checkpoints/judge.pt"), help="the judge file to write (weights + record)"),
    epochs: float = typer.Option(10.0), batch_size: int = typer.Option(1024), seed: int = typer.Option(0),
    bf16: Optional[bool] = typer.Option(None, "--bf16/--no-bf16", help="default: where the CPU has native bf16"),
    threads: int = typer.Option(0), download: bool = typer.Option(False),
    cache_dir: Path = typer.Option(Path("data/cache")),
) -> None:
    """Train the judge (airbench94-style CIFAR-10 classifier) that scores flows; resumable."""
    from mi_datagen.flows.checkpoint import save_checkpoint
    from mi_datagen.flows.images import load_images
    from mi_datagen.flows.judge import JudgeConfig, evaluate, train_judge

    train = load_images(*_parse_data(data), cache_dir=cache_dir, download=download)
    test = load_images(*_parse_data(test_data), train=False, cache_dir=cache_dir, download=download)
    cfg = JudgeConfig(epochs=epochs, batch_size=batch_size, seed=seed, bf16=bf16, threads=threads)
    net, record = train_judge(train, run_dir, cfg, test=test)
    record.update(test_accuracy=evaluate(net, test), classes=list(train.classes),
                  data=train.description, test=test.description)
    save_checkpoint({"format": "mi-datagen-judge/1", "model": net.state_dict(), "record": json.dumps(record)}, out)
    say(f"train-judge: test accuracy {record['test_accuracy']:.4f} after {record['epochs_done']} epochs, "
        f"{record['wall_s'] / 60:.1f} min; wrote {out}")


@app.command("flow-quality")
def flow_quality_cmd(
    flow: str = typer.Argument(DEFAULT_FLOW),
    judge: Path = typer.Option(Path("checkpoints/judge.pt"), help="the judge (train-judge) or an older classifier file"),
    data: str = typer.Option(..., help="real train images"), test_data: str = typer.Option(..., help="real test images"),
    n: int = typer.Option(500, help="generated images per class"), json_out: Optional[Path] = typer.Option(None, "--json"),
    cache_dir: Path = typer.Option(Path("data/cache")), threads: int = typer.Option(0),
) -> None:
    """Per class: consistency (next to the judge's real accuracy), Fréchet distance next to the real floor,
    precision and recall, all in the judge's features; the flow issue's targets marked."""
    import torch

    from mi_datagen.flows.images import load_images
    from mi_datagen.flows.io import load_flow
    from mi_datagen.flows.judge import load_judge
    from mi_datagen.flows.quality import evaluate_flow

    if threads:
        torch.set_num_threads(threads)
    f = load_flow(flow)
    train = load_images(*_parse_data(data), cache_dir=cache_dir)
    test = load_images(*_parse_data(test_data), train=False, cache_dir=cache_dir)
    rows = evaluate_flow(f, load_judge(judge, len(train.classes)), train, test, n_per_class=n)
    t = Table(title=f"{flow} ({f.path.name}, step {f.meta.get('step')}, {f.solver.steps} {f.solver.method} steps), "
                    f"{n} generated images per class, judge {judge.name}")
    for col in ("class", "consistency", "real acc.", "FD gen vs test", "FD floor", "precision", "recall", "targets met"):
        t.add_column(col, justify="right")
    for r in rows:
        met = r.targets_met()
        t.add_row(r.label, f"{r.consistency:.3f}", f"{r.real_accuracy:.3f}", f"{r.fd_generated_vs_test:.2f}",
                  f"{r.fd_train_vs_test:.2f}", f"{r.precision:.3f}", f"{r.recall:.3f}",
                  f"{sum(bool(v) for v in met.values())}/{len(met)}")
    out.print(t)
    if json_out:
        from dataclasses import asdict

        json_out.write_text(json.dumps({"flow": flow, "map": f.map_id, "solver_steps": f.solver.steps,
                                        "flow_sha256": f.sha256, "step": f.meta.get("step"),
                                        "judge": str(judge), "n_per_class": n,
                                        "classes": [{**asdict(r), "targets_met": r.targets_met()} for r in rows]},
                                       indent=2))
