"""The full information table of a spec: what a user of the paper wants to know about a dataset."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from mi_datagen.info.solver import InfoSolver


@dataclass(frozen=True)
class MIRecord:
    a: tuple[str, ...]
    b: tuple[str, ...]
    given: tuple[str, ...]
    nats: float | None
    kind: str
    note: str | None = None


@dataclass(frozen=True)
class EntropyRecord:
    nodes: tuple[str, ...]
    nats: float
    kind: str = "entropy"
    note: str | None = None


@dataclass(frozen=True)
class InfoTable:
    target: str
    modalities: tuple[str, ...]
    d: int
    solver: str
    solver_note: str | None
    mutual_information: list[MIRecord] = field(default_factory=list)
    entropies: list[EntropyRecord] = field(default_factory=list)
    total_correlation: list[EntropyRecord] = field(default_factory=list)
    interaction_information: list[MIRecord] = field(default_factory=list)

    def get(self, a, b, given=()) -> float | None:
        key = (frozenset(a), frozenset(b), frozenset(given))
        for r in self.mutual_information:
            if (frozenset(r.a), frozenset(r.b), frozenset(r.given)) in (key, (key[1], key[0], key[2])):
                return r.nats
        raise KeyError(f"I({a}; {b} | {given}) is not in the table")


def info_table(solver: InfoSolver, target: str, modalities, extra=(), conditionals: bool = True) -> InfoTable:
    """Entropies, pairwise MI, θ–modality MI, θ–all MI, conditional and interaction terms, TC.

    ``extra``: further (a, b, given) triples (the spec's ``report``). ``conditionals`` adds, for
    every pair, I(Xi; Xj | θ) and I(θ; Xi | Xj) (what each modality tells about θ beyond the other).
    """
    mods = tuple(modalities)
    t = (target,)
    mi_recs: list[MIRecord] = []

    def add(a, b, given, kind):
        v = solver.mi(a, b, given)
        mi_recs.append(MIRecord(tuple(a), tuple(b), tuple(given), v, kind,
                                None if math.isfinite(v) else solver.explain(a, b, given)))

    for m in mods:
        add(t, (m,), (), "target-modality")
    if len(mods) > 1:
        add(t, mods, (), "target-all")
    for x, y in itertools.combinations(mods, 2):
        add((x,), (y,), (), "modality-pair")
    if conditionals:
        for x, y in itertools.combinations(mods, 2):
            add((x,), (y,), t, "modality-pair-given-target")
        for x, y in itertools.permutations(mods, 2):
            add(t, (x,), (y,), "target-modality-given-other")
    for a, b, given in extra:
        add(tuple(a), tuple(b), tuple(given), "report")

    ent_sets = [t, *((m,) for m in mods)]
    if len(mods) > 1:
        ent_sets += [mods, t + mods]
    ents = []
    for s in ent_sets:
        h = solver.entropy(s)
        ents.append(EntropyRecord(s, h, note=None if math.isfinite(h) else solver.explain(s)))
    tcs = []
    if len(mods) > 1:
        tc = solver.total_correlation([(m,) for m in mods])
        tcs.append(EntropyRecord(mods, tc, kind="total-correlation",
                                 note=None if math.isfinite(tc) else "a modality is a deterministic function of others"))
    inter = []
    if conditionals:
        for x, y in itertools.combinations(mods, 2):
            try:
                v, note = solver.interaction((x,), (y,), t), None
            except ValueError as err:
                v, note = None, str(err)
            inter.append(MIRecord((x,), (y,), t, v, "interaction", note))
    return InfoTable(target, mods, solver.sem.d, solver.method, solver.structure_note,
                     mi_recs, ents, tcs, inter)
