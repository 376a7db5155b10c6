"""The library's front door: spec file → explicit specs → compiled model → information table."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Union

import numpy as np

from mi_datagen.errors import SpecError
from mi_datagen.info.solver import InfoSolver, Method
from mi_datagen.info.table import InfoTable, info_table
from mi_datagen.info.target import solve_monotone
from mi_datagen.model.compile import compile_spec
from mi_datagen.model.sem import LinearSEM
from mi_datagen.spec.families import CanonicalFamily, DecayFamily
from mi_datagen.spec.io import load_specs
from mi_datagen.spec.models import GraphSpec, QuantitySpec

SpecLike = Union[GraphSpec, CanonicalFamily, DecayFamily]


def _solver(graph: GraphSpec, base_dir, cache: dict, method: Method = "auto") -> InfoSolver:
    return InfoSolver(compile_spec(graph, base_dir, cache), method=method)


def quantity_of(spec: SpecLike, q: QuantitySpec, base_dir: str | Path = ".", cache: dict | None = None) -> float:
    return _solver(spec.to_graph(), base_dir, {} if cache is None else cache).mi(q.a, q.b, q.given)


def solve_parameter(spec: SpecLike, parameter: str, q: QuantitySpec, nats: float,
                    bracket=None, base_dir: str | Path = ".", cache: dict | None = None) -> float:
    """The value of ``parameter`` for which I(q) = ``nats`` (monotone root finding)."""
    cache = {} if cache is None else cache
    base = spec.without_studies()
    return solve_monotone(
        lambda v: quantity_of(base.with_parameters(**{parameter: v}), q, base_dir, cache),
        nats, bracket, start=base.parameters[parameter], name=f"parameter {parameter!r}", what=q.label(),
    )


def _explicit(spec: SpecLike) -> GraphSpec:
    """The explicit, substituted graph of a spec or family; what its generator gets wrong is a SpecError."""
    from pydantic import ValidationError

    from mi_datagen.spec.io import format_validation_error

    try:
        return spec.to_graph().substituted()
    except SpecError as err:
        raise SpecError(f"{spec.name}: {err}") from None
    except ValidationError as err:  # a family whose generated graph breaks a rule (e.g. a name collision)
        raise SpecError(format_validation_error(err, f"{spec.name} (as expanded)").replace("\n", ";")) from None
    except (OverflowError, ZeroDivisionError) as err:  # e.g. α^i underflowing or overflowing in a decay family
        raise SpecError(f"{spec.name}: the family's coefficients cannot be computed ({err}); use smaller "
                        "exponents or fewer modalities") from None


def expand(spec: SpecLike, base_dir: str | Path = ".") -> list[GraphSpec]:
    """Explicit, numeric specs: families expanded, ``solve`` solved, ``sweep`` unrolled (one per member)."""
    cache: dict = {}
    members: list[tuple[SpecLike, str | None, str]]
    if spec.solve is not None:
        s = spec.solve
        v = solve_parameter(spec, s.parameter, s.quantity, s.nats, s.bracket, base_dir, cache)
        note = f"solved: {s.parameter} = {v:.12g} gives {s.quantity.label()} = {s.nats:g} nats"
        members = [(spec.without_studies().with_parameters(**{s.parameter: v}), note, spec.name)]
    elif spec.sweep is not None:
        sw = spec.sweep
        base = spec.without_studies()
        if sw.values is not None:
            vals = list(sw.values)
            notes = [f"sweep: {sw.parameter} = {v:g}" for v in vals]
        else:
            q = sw.quantity
            if q is None:  # SweepSpec.values_or_quantity refuses this at validation
                raise SpecError(f"sweep of {spec.name!r}: needs `values` or `quantity` with `nats`")
            targets = sw.targets()
            vals = [solve_parameter(spec, sw.parameter, q, t, sw.bracket, base_dir, cache) for t in targets]
            notes = [f"sweep: {sw.parameter} = {v:.12g} gives {q.label()} = {t:g} nats"
                     for v, t in zip(vals, targets)]
        width = max(2, len(str(len(vals) - 1)))
        members = [(base.with_parameters(**{sw.parameter: v}), n, f"{spec.name}_{i:0{width}d}")
                   for i, (v, n) in enumerate(zip(vals, notes))]
    else:
        members = [(spec, None, spec.name)]
    out = []
    for member, member_note, name in members:
        g = _explicit(member)
        desc = "\n".join(x for x in (g.description, member_note) if x)
        out.append(g.model_copy(update={"name": name, "description": desc}))
    return out


def load_and_expand(path: str | Path) -> list[GraphSpec]:
    """The explicit specs of a spec file (every YAML document of it, each expanded), in order.

    ``path`` may also name a shipped example (``two_modalities``; see ``mi_datagen.assets``)."""
    path = resolve_spec_path(path)
    members = [g for s in load_specs(path) for g in expand(s, path.parent)]
    names = [g.name for g in members]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SpecError(f"{path}: spec names {dup} appear more than once; every member of a file needs its own name")
    return members


def select_member(members: list[GraphSpec], member: str | int | None) -> list[GraphSpec]:
    """All members, or the one named ``member`` (a name, a name suffix such as ``05``, or a 0-based index)."""
    if member is None:
        return members
    names = [g.name for g in members]
    if isinstance(member, int) or (isinstance(member, str) and member.isdigit() and member not in names
                                   and not any(n.endswith(f"_{member}") for n in names)):
        i = int(member)
        if not 0 <= i < len(members):
            raise SpecError(f"member {i}: out of range; the file has {len(members)} member(s), 0..{len(members) - 1}")
        return [members[i]]
    hits = [g for g in members if g.name == member] or [g for g in members if g.name.endswith(f"_{member}")]
    if len(hits) != 1:
        raise SpecError(f"member {member!r}: {'ambiguous' if hits else 'no such member'}; members: {names}")
    return hits


def resolve_spec_path(path: str | Path) -> Path:
    """``path`` itself if it is a file, else the shipped example of that name (``two_modalities``)."""
    p = Path(path)
    if p.is_file():
        return p
    from mi_datagen.assets import example_spec

    found = example_spec(str(path))
    if found is None:
        from mi_datagen.assets import example_names

        raise SpecError(f"{p}: spec file not found, and no shipped example has that name (examples: "
                        f"{', '.join(example_names())})")
    return found


def compile_graph(graph: GraphSpec, base_dir: str | Path = ".") -> LinearSEM:
    return compile_spec(graph, base_dir)


def solver_for(graph: GraphSpec, base_dir: str | Path = ".", method: Method = "auto",
               files: Mapping[str, np.ndarray] | None = None) -> InfoSolver:
    """The exact information solver of an explicit spec (``base_dir``: where its template files resolve;
    ``files``: raw template arrays by the path written in the spec, read instead of the files)."""
    return InfoSolver(compile_spec(graph, base_dir, files=files), method=method)


def table_for(graph: GraphSpec, base_dir: str | Path = ".", method: Method = "auto",
              conditionals: bool = True, solver: InfoSolver | None = None) -> InfoTable:
    """The exact information table of an explicit spec: every MI, CMI, entropy and total correlation (nats).
    ``solver``: the spec's solver when it is already built (the spec is then not compiled again)."""
    solver = solver if solver is not None else solver_for(graph, base_dir, method)
    extra = [(q.a, q.b, q.given) for q in graph.report]
    try:
        return info_table(solver, graph.target, graph.modality_names, extra, conditionals=conditionals)
    except np.linalg.LinAlgError as err:
        from mi_datagen.errors import SolveError

        raise SolveError(f"{graph.name}: the exact solver failed numerically ({err}); the spec's coefficients "
                         "span too many orders of magnitude for float64 — rescale them") from None


def members_out(out: str | Path, names: list[str], single: bool) -> list[str]:
    """Store paths for the members: ``out`` itself for one store, ``out/<member>.zarr`` for several."""
    if single:
        return [str(out)]
    return [f"{str(out).rstrip('/')}/{n}.zarr" for n in names]


def generate(spec: str | Path | SpecLike, out: str | Path, n: int, *, member: str | int | None = None,
             base_dir: str | Path | None = None, workers: int = 0, on_store=None, **options):
    """Generate datasets: a spec file, a shipped example name, or a spec object (one spec, a family, a sweep)
    into ``out`` — one store, or one per sweep member under ``out/`` (``member`` picks one of them).

    ``options`` are ``GenerateConfig`` fields (seed, dtype, batch_size, tile, shard_size, chunk_size,
    latents, pmi, device, threads, n_check, entropy_samples, lipschitz, force, resume, overwrite,
    progress, command). ``workers`` = 0 picks one worker process per core on CPU (1 under torchrun or
    on a GPU). ``on_store(path, manifest)`` is called after each store. Returns [(path, manifest)] on
    rank 0 (an empty list on the other ranks of a torchrun job).
    """
    from mi_datagen.errors import require

    require("torch")
    require("zarr")
    import os

    from mi_datagen.store import distributed as D
    from mi_datagen.store.config import GenerateConfig
    from mi_datagen.store.writer import write_store

    device = options.get("device", "cpu")
    check_device(device)
    if isinstance(spec, (str, Path)):
        path = resolve_spec_path(spec)
        members, base = load_and_expand(path), Path(path).parent
    else:
        members, base = expand(spec, base_dir or "."), Path(base_dir or ".")
    base = Path(base_dir) if base_dir is not None else base
    chosen = select_member(members, member)
    outs = members_out(out, [g.name for g in chosen], single=len(chosen) == 1)
    rank, world = D.init_from_env(device)
    threads = options.get("threads", 1)
    if workers == 0:
        workers = max(1, (os.cpu_count() or 1) // threads) if world == 1 and device == "cpu" else 1
    options.setdefault("progress", rank == 0)
    results = []
    try:
        for g, p in zip(chosen, outs):
            man = write_store(g, p, GenerateConfig(n=n, workers=workers, **options), base)
            if man is not None:
                results.append((p, man))
                if on_store is not None:
                    on_store(p, man)
    finally:
        D.shutdown()
    return results


def check_device(device: str) -> None:
    """Refuse a device this machine does not have, in one line (before any work)."""
    from mi_datagen.errors import DeviceError

    if device == "cpu":
        return
    if not (device == "cuda" or device.startswith("cuda:")):
        raise DeviceError(f"device: {device!r} is not supported; use 'cpu' or 'cuda' (or 'cuda:N')")
    import torch

    if not torch.cuda.is_available():
        raise DeviceError(f"device: {device!r} was asked for, but torch finds no CUDA GPU on this machine "
                          f"(torch {torch.__version__}); use --device cpu")


def check_flows(graph: GraphSpec, base_dir: str | Path = ".") -> str:
    """Check that every modality's flow resolves (a registered name or a file) and has the modality's class.

    Raises SpecError naming the field; returns a one-line note (which flows, or why they were not checked)."""
    refs = [(i, m.flow) for i, m in enumerate(graph.modalities) if m.flow is not None]
    if not refs:
        return "no flows (identity maps)"
    try:
        import torch  # noqa: F401
    except ImportError:
        return "flows not checked: torch is not installed (pip install 'mi-datagen[torch]')"
    from mi_datagen.errors import CheckpointError
    from mi_datagen.store.modality import resolve_flow

    loaded: dict = {}
    for i, fr in refs:
        ref = fr.checkpoint
        if ref not in loaded:
            try:
                loaded[ref] = resolve_flow(ref, Path(base_dir), "cpu")
            except CheckpointError as e:
                raise SpecError(f"modalities[{i}].flow.checkpoint: {e}") from None
        flow = loaded[ref]
        try:
            flow.label_index(fr.label)
        except SpecError as e:
            raise SpecError(f"modalities[{i}].flow.label: {e}") from None
        if flow.shape != tuple(graph.shape):
            raise SpecError(f"modalities[{i}].flow: {ref!r} maps images of shape {list(flow.shape)}, but the spec's "
                            f"shape is {list(graph.shape)}; use a flow trained at that size")
    return "flows: " + ", ".join(f"{r} ({loaded[r].path.name}, sha256 {loaded[r].sha256[:10]}…)" for r in loaded)
