"""The MI tables of the shipped dag_specs, rendered as markdown for dag_specs/README.md.

``python -m mi_datagen.bench.spec_tables dag_specs/README.md`` rewrites the part between the
markers; a test checks that the README and the code agree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mi_datagen.api import load_and_expand, table_for
from mi_datagen.info.units import format_info, quantity_label, to_bits

BEGIN = "<!-- BEGIN GENERATED TABLES (python -m mi_datagen.bench.spec_tables dag_specs/README.md) -->"
END = "<!-- END GENERATED TABLES -->"


def _num(v: float | None) -> str:
    return format_info(v, 4)


def _bits(v: float | None) -> str:
    return format_info(to_bits(v), 4)


def _label(a, b, given) -> str:
    return quantity_label(a, b, given, bar="\\|")  # a pipe inside a markdown table cell


def render_spec(path: Path, max_rows: int = 40) -> str:
    out = []
    for g in load_and_expand(path):
        t = table_for(g, path.parent)
        out.append(f"### {g.name} (`{path.name}`)\n")
        if g.description:
            out.append(" ".join(g.description.split()) + "\n")
        out.append(f"d = {t.d}, solver: {t.solver}{' (' + t.solver_note + ')' if t.solver_note else ''}\n")
        out.append("| quantity | nats | bits |\n|---|---:|---:|")
        rows = [(_label(r.a, r.b, r.given), r.nats) for r in t.mutual_information]
        rows += [(f"TC({','.join(r.nodes)})", r.nats) for r in t.total_correlation]
        for label, v in rows[:max_rows]:
            out.append(f"| {label} | {_num(v)} | {_bits(v)} |")
        if len(rows) > max_rows:
            out.append(f"| … {len(rows) - max_rows} more (`mi-datagen info {path.name}`) | | |")
        out.append("")
    return "\n".join(out)


def _is_sweep(path: Path) -> bool:
    import yaml

    docs = list(yaml.safe_load_all(path.read_text()))  # a file of several documents is tabled like a sweep
    return len(docs) > 1 or (isinstance(docs[0], dict) and "sweep" in docs[0])


def render_all(spec_dir: Path) -> str:
    files = sorted(spec_dir.glob("*.yaml"))
    parts = [render_spec(p) for p in files if not _is_sweep(p)]
    sweeps = [render_sweep(p) for p in files if _is_sweep(p)]
    return "\n".join(parts + sweeps)


def render_sweep(path: Path) -> str:
    members = load_and_expand(path)
    out = [f"### {path.stem} (`{path.name}`): {len(members)} members\n",
           "| member | parameters | I(X1; X2) nats | I(θ; X1) nats | I(θ; X1,X2) nats |", "|---|---|---:|---:|---:|"]
    for g in members:
        t = table_for(g, path.parent, conditionals=False)
        mods = t.modalities
        params = ", ".join(f"{k} = {v:.6g}" for k, v in g.parameters.items())
        out.append(f"| {g.name} | {params} | {_num(t.get(mods[:1], mods[1:2]))} | "
                   f"{_num(t.get((t.target,), mods[:1]))} | {_num(t.get((t.target,), mods))} |")
    return "\n".join(out) + "\n"


def update_readme(readme: Path) -> bool:
    """Rewrite the generated part; True when the file changed."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise ValueError(f"{readme}: markers not found; add the lines\n{BEGIN}\n{END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{BEGIN}\n\n{render_all(readme.parent)}\n{END}{tail}"
    if new != text:
        readme.write_text(new)
    return new != text


if __name__ == "__main__":  # pragma: no cover
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "dag_specs/README.md")
    print(f"{target}: {'updated' if update_readme(target) else 'already up to date'}")
