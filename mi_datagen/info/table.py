"""The full information table of a spec: what a user of the paper wants to know about a dataset."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

from mi_datagen.errors import UnknownNameError
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
        raise UnknownNameError(f"I({a}; {b} | {given}) is not in the table")


def _plan(t, mods, extra, conditionals) -> list[tuple]:
    """Every (a, b, given) the table evaluates, so their log-dets can be batched up front."""
    plan = [(t, (m,), ()) for m in mods] + [(t, mods, ())]
    plan += [((x,), (y,), ()) for x, y in itertools.combinations(mods, 2)]
    plan += [(mods[:i], (mods[i],), ()) for i in range(1, len(mods))]  # TC chain rule
    if conditionals:
        plan += [((x,), (y,), t) for x, y in itertools.combinations(mods, 2)]
        plan += [(t, (x,), (y,)) for x, y in itertools.permutations(mods, 2)]
    return plan + [(tuple(a), tuple(b), tuple(g)) for a, b, g in extra]


def info_table(solver: InfoSolver, target: str, modalities, extra=(), conditionals: bool = True) -> InfoTable:
    """Entropies, pairwise MI, θ–modality MI, θ–all MI, conditional and interaction terms, TC.

    ``extra``: further (a, b, given) triples (the spec's ``report``). ``conditionals`` adds, for
    every pair, I(Xi; Xj | θ) and I(θ; Xi | Xj) (what each modality tells about θ beyond the other).
    """
    mods = tuple(modalities)
    t = (target,)
    mi_recs: list[MIRecord] = []
    plan = _plan(t, mods, extra, conditionals)
    values = dict(zip(plan, solver.mi_many(plan)))
    solver.prefetch([t, *((m,) for m in mods), mods, t + mods])

    def add(a, b, given, kind):
        a, b, given = tuple(a), tuple(b), tuple(given)
        v = values[(a, b, given)] if (a, b, given) in values else solver.mi(a, b, given)
        # a note exists only for ∞ or an exact 0 (explain recomputes the MI on the dense route: not for the rest)
        note = solver.explain(a, b, given) if not math.isfinite(v) or v == 0.0 else None
        mi_recs.append(MIRecord(a, b, given, v, kind, note))

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
        add(a, b, given, "report")

    ent_sets = [t, *((m,) for m in mods)]
    if len(mods) > 1:
        ent_sets += [mods, t + mods]
    ents = []
    for s in ent_sets:
        h = solver.entropy(s)
        ents.append(EntropyRecord(s, h, note=None if math.isfinite(h) else solver.explain(s)))
    tcs = []
    if len(mods) > 1:
        tc = sum(values[(mods[:i], (mods[i],), ())] for i in range(1, len(mods)))  # chain rule
        tcs.append(EntropyRecord(mods, tc, kind="total-correlation",
                                 note=None if math.isfinite(tc) else "a modality is a deterministic function of others"))
    inter = []
    if conditionals:  # I(x; y; θ) = I(x; y) − I(x; y | θ), both already in the table
        by_key = {(r.a, r.b, r.given): r.nats for r in mi_recs}
        for x, y in itertools.combinations(mods, 2):
            i1, i2 = by_key[((x,), (y,), ())], by_key[((x,), (y,), t)]
            if i1 is None or i2 is None:
                v, note = None, "undefined: I(x; y) or I(x; y | θ) is undefined"
            elif math.isinf(i1) and math.isinf(i2):
                v, note = None, "undefined: I(x; y) and I(x; y | θ) are both infinite"
            else:
                v, note = i1 - i2, None
            inter.append(MIRecord((x,), (y,), t, v, "interaction", note))
    return InfoTable(target, mods, solver.sem.d, solver.method, solver.structure_note,
                     mi_recs, ents, tcs, inter)
