"""Shared pieces of the command line: the app, its consoles, and one place where errors become one line."""

from __future__ import annotations

from enum import Enum

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from mi_datagen import __version__
from mi_datagen.errors import MIDatagenError
from mi_datagen.info.units import format_info, quantity_label, to_bits

out = Console(soft_wrap=True)
err = Console(stderr=True)


def fail(e: Exception) -> None:
    """Print a user error as one line and exit with status 2."""
    msg = " ".join(str(e).split()) or type(e).__name__
    err.print(f"[bold red]error:[/] {msg}", markup=True, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


class _Group(TyperGroup):
    """Every MIDatagenError raised by any command ends as one line and exit code 2; anything else is a bug
    and keeps its traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MIDatagenError as e:
            fail(e)


app = typer.Typer(cls=_Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Realistic multimodal datasets with exactly known mutual information.")


def _version(value: bool) -> None:
    if value:
        out.print(f"mi-datagen {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """Realistic multimodal datasets with exactly known mutual information."""


@app.command()
def version() -> None:
    """Print the package version."""
    out.print(__version__)


class SolverMethod(str, Enum):
    auto = "auto"
    structured = "structured"
    dense = "dense"


def fmt(v: float | None) -> str:
    return format_info(v, 6)


def share(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def bits(v: float | None) -> str:
    return format_info(to_bits(v), 6)


def label(r) -> str:
    return quantity_label(r.a, r.b, r.given)


def say(msg: str) -> None:
    out.print(msg, highlight=False, markup=False)


def render_table(table, title: str) -> None:
    t = Table(title=title, title_justify="left")
    for col in ("quantity", "kind", "nats", "bits"):
        t.add_column(col, justify="right" if col in ("nats", "bits") else "left")
    for r in table.mutual_information:
        t.add_row(label(r), r.kind, fmt(r.nats), bits(r.nats))
    for r in table.interaction_information:
        t.add_row(f"I({','.join(r.a)}; {','.join(r.b)}; {','.join(r.given)})", r.kind, fmt(r.nats), bits(r.nats))
    for r in table.total_correlation:
        t.add_row(f"TC({','.join(r.nodes)})", r.kind, fmt(r.nats), bits(r.nats))
    mods = set(getattr(table, "modalities", ()))
    for r in table.entropies:
        names = [f"Z_{n}" if n in mods else n for n in r.nodes]
        kind = "latent entropy" if mods.intersection(r.nodes) else "entropy"
        t.add_row(f"h({','.join(names)})", kind, fmt(r.nats), bits(r.nats))
    out.print(t)
    if any(mods.intersection(r.nodes) for r in table.entropies):
        out.print("h(Z_X): differential entropy of modality X's latent block, before standardisation and the flow "
                  "(the image's own entropy needs the flow's log-det: generate --entropy-samples)", highlight=False)
    notes = [f"{label(r)}: {r.note}" for r in table.mutual_information if r.note]
    for n in notes:
        out.print(f"[yellow]note:[/] {n}", highlight=False)
