"""Spec commands: schema, validate, expand, info."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer

from mi_datagen.cli._common import SolverMethod, app, err, out, render_table


@app.command()
def schema() -> None:
    """Print the JSON Schema of a spec file (for editor completion)."""
    from mi_datagen.spec.io import json_schema

    print(json.dumps(json_schema(), indent=2))


@app.command()
def validate(spec: str = typer.Argument(..., help="spec YAML file or shipped example name")) -> None:
    """Check a spec: schema, DAG, templates, flows and class labels, and whether the exact structured solver
    applies."""
    from mi_datagen.api import check_flows, load_and_expand, resolve_spec_path, solver_for

    path = resolve_spec_path(spec)
    members = load_and_expand(path)
    for g in members:
        s = solver_for(g, path.parent)
        where = "structured (exact, no Σ formed)" if s.method == "structured" else f"dense ({s.structure_note})"
        flows = check_flows(g, path.parent)
        out.print(f"[green]OK[/] {g.name}: {len(g.nodes)} nodes, {len(g.edges)} edges, "
                  f"{len(g.modalities)} modalities, d = {s.sem.d}; solver: {where}; {flows}", highlight=False)


@app.command("expand")
def expand_cmd(spec: str = typer.Argument(..., help="spec YAML file or shipped example name"),
               output: Optional[Path] = typer.Option(None, "--output", "-o", help="write here instead of stdout")) -> None:
    """Print the explicit node/edge spec(s): families expanded, solve solved, sweeps unrolled."""
    from mi_datagen.api import load_and_expand
    from mi_datagen.spec.io import dump_spec

    text = "---\n".join(dump_spec(g) for g in load_and_expand(spec))
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


@app.command()
def info(spec: str = typer.Argument(..., help="spec YAML file or shipped example name"),
         as_json: bool = typer.Option(False, "--json", help="print the information manifest as JSON"),
         method: SolverMethod = typer.Option(SolverMethod.auto, help="auto: structured when it applies"),
         conditionals: bool = typer.Option(True, help="include I(Xi;Xj|θ), I(θ;Xi|Xj) and interactions")) -> None:
    """The exact information table of a spec (nats and bits)."""
    from mi_datagen.api import load_and_expand, resolve_spec_path, table_for
    from mi_datagen.store.manifest import information_manifest

    t0 = time.perf_counter()
    path = resolve_spec_path(spec)
    members = load_and_expand(path)
    tables = [table_for(g, path.parent, method.value, conditionals) for g in members]
    elapsed = time.perf_counter() - t0
    if as_json:
        docs = [information_manifest(g, t).model_dump(mode="json") for g, t in zip(members, tables)]
        print(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
        return
    for g, t in zip(members, tables):
        render_table(t, f"{g.name} (d = {t.d}, solver: {t.solver})")
    n = sum(len(t.mutual_information) for t in tables)
    out.print(f"{len(members)} spec(s), {n} MI terms, solver {tables[0].solver}, {elapsed * 1e3:.1f} ms", highlight=False)
