"""How much MI survives a perturbation of the size the stored data can be inverted to.

The stored images determine the flow inputs w_i only up to the measured round-trip error
(exact-inverse tolerance, float arithmetic, storage precision). We model that as independent
isotropic Gaussian noise of RMS δ_i per component on each flow input: w̃_i = w_i + δ_i ε_i. In z
coordinates that is z̃_i = z_i + δ_i ε_i (no standardisation) or z̃_i = z_i + δ_i z'_i, with z'_i an
independent copy of z_i (standardisation: w = Σ_ii^(-1/2) z, so the noise covariance is δ_i² Σ_ii).
Both are linear SEMs again — a noisy child node, plus a copy of the block's ancestry — so the
perturbed MI is computed exactly by the same solver. This is a model of the loss, not a bound.
(The exact value is an upper bound for the stored data by data processing.)
"""

from __future__ import annotations

from mi_datagen.model.sem import Edge, LinearSEM


def _ancestors(sem: LinearSEM, node: str) -> list[str]:
    seen, todo = {node}, [node]
    while todo:
        for e in sem.parents[todo.pop()]:
            if e.parent not in seen:
                seen.add(e.parent)
                todo.append(e.parent)
    return [n for n in sem.names if n in seen]


def perturbed_sem(sem: LinearSEM, deltas: dict[str, float], standardized: dict[str, bool]) -> tuple[LinearSEM, dict]:
    """The SEM with a noisy copy ``<m>~`` of each modality m (δ_m > 0). Returns (sem, {m: noisy name})."""
    names, kinds, noise, edges = list(sem.names), dict(sem.kinds), dict(sem.noise), list(sem.edges)
    rename: dict[str, str] = {}
    for m, delta in deltas.items():
        if delta <= 0.0:
            continue
        noisy = f"{m}~"
        if standardized.get(m, False):
            copy = {a: f"{a}~copy~{m}" for a in _ancestors(sem, m)}
            for a, c in copy.items():
                names.append(c)
                kinds[c], noise[c] = sem.kinds[a], sem.noise[a]
                edges += [Edge(copy[e.parent], c, e.coef, e.template) for e in sem.parents[a]]
            names.append(noisy)
            kinds[noisy], noise[noisy] = "vector", 0.0
            edges += [Edge(m, noisy, 1.0), Edge(copy[m], noisy, float(delta))]
        else:
            names.append(noisy)
            kinds[noisy], noise[noisy] = "vector", float(delta)
            edges.append(Edge(m, noisy, 1.0))
        rename[m] = noisy
    new = LinearSEM(tuple(names), kinds, noise, tuple(edges), sem.templates, sem.shape, sem.target,
                    tuple(rename.get(m, m) for m in sem.modalities), sem.template_keys)
    return new, rename


def perturbed_mi(sem: LinearSEM, rows, deltas: dict[str, float], standardized: dict[str, bool]) -> list[float | None]:
    """For each (a, b, given, exact nats) in ``rows``: the MI once every modality m carries input noise of RMS
    δ_m (``perturbed_sem``). A non-finite δ_m means m could not be inverted at all: MI involving it is 0 (nothing
    is shown to survive). Rows whose exact value is missing or infinite give None."""
    import math

    from mi_datagen.info.solver import InfoSolver

    lost = {m for m, d in deltas.items() if not math.isfinite(d)}
    noisy_sem, rename = perturbed_sem(sem, {m: d for m, d in deltas.items() if m not in lost}, standardized)
    noisy = InfoSolver(noisy_sem)
    out: list[float | None] = []
    for a, b, given, nats in rows:
        if nats is None or not math.isfinite(nats):
            out.append(None)
        elif lost & set(a) | lost & set(b):
            out.append(0.0)
        else:
            out.append(noisy.mi(*[tuple(rename.get(x, x) for x in s) for s in (a, b, given)]))
    return out
