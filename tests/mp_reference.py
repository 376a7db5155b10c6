"""An independent high-precision reference for the exact solver (mpmath, 300 digits).

It builds z = A ε densely from the SEM (coefficients, noise stds and templates taken as the exact
rationals their floats are), and computes I(a; b | c) by modified Gram–Schmidt on the rows of A in
300-digit arithmetic: rows whose residual is below 1e-150 of their norm are dependent (a dependent row
leaves ~1e-300 times the condition number, an independent one of these specs far more), and the MI is
½(L(a'c') + L(b'c') − L(c') − L(a'b'c')) on the kept rows with L(rows) = Σ log(residual²).
Nothing is shared with the library's solver but the SEM it is given.
"""

from __future__ import annotations

import mpmath as mp

DPS = 300
REL = mp.mpf("1e-150")


def dense_rows(sem) -> dict[str, list[list]]:
    """Rows of A per node (scalar: 1 row; vector: d rows), sources in node order."""
    mp.mp.dps = DPS
    d = sem.d
    offsets, off = {}, 0
    for n in sem.names:
        if sem.noise[n] != 0.0:
            offsets[n] = off
            off += sem.dim(n)
    cols = off
    rows: dict[str, list[list]] = {}
    for n in sem.names:
        k = sem.dim(n)
        block = [[mp.mpf(0)] * cols for _ in range(k)]
        if sem.noise[n] != 0.0:
            for i in range(k):
                block[i][offsets[n] + i] = mp.mpf(sem.noise[n])
        for e in sem.parents[n]:
            p = rows[e.parent]
            c = mp.mpf(e.coef)
            pk, ck = sem.kinds[e.parent], sem.kinds[n]
            t = [mp.mpf(float(x)) for x in sem.templates[e.template]] if e.template is not None else None
            for i in range(k):
                if pk == "scalar" and ck == "scalar":
                    src = p[0]
                    w = c
                elif pk == "scalar":
                    src, w = p[0], c * t[i]
                elif ck == "scalar":
                    src = [mp.fsum(t[j] * p[j][col] for j in range(d)) for col in range(cols)]
                    w = c
                else:
                    src, w = p[i], c * (t[i] if t is not None else 1)
                block[i] = [x + w * y for x, y in zip(block[i], src)]
        rows[n] = block
    return rows


def _gs(rows, basis):
    """Modified Gram–Schmidt of ``rows`` against the orthonormal ``basis`` (extended in place); returns the
    log residual² of each kept row and the indices kept."""
    kept, logs = [], []
    for i, r in enumerate(rows):
        v = list(r)
        for q in basis:
            for _ in range(2):  # re-orthogonalise
                dot = mp.fsum(x * y for x, y in zip(v, q))
                v = [x - dot * y for x, y in zip(v, q)]
        norm = mp.sqrt(mp.fsum(x * x for x in v))
        ref = mp.sqrt(mp.fsum(x * x for x in r))
        if ref == 0 or norm <= REL * ref:
            continue
        basis.append([x / norm for x in v])
        kept.append(i)
        logs.append(2 * mp.log(norm))
    return kept, logs


def mi(sem, a, b, c=()) -> float:
    mp.mp.dps = DPS
    R = dense_rows(sem)

    def rows(names):
        return [r for n in names for r in R[n]]

    basis: list = []
    kc, lc = _gs(rows(c), basis)
    ba = list(basis)
    ka, la = _gs(rows(a), ba)
    bb = list(basis)
    kb, lb = _gs(rows(b), bb)
    if not ka or not kb:
        return 0.0
    bab = list(ba)
    kab, lab = _gs([rows(b)[i] for i in kb], bab)
    if len(kab) < len(kb):
        return float("inf")
    # L(c'a') = Σlc + Σla, L(c'b') = Σlc + Σlb, L(c') = Σlc, L(c'a'b') = Σlc + Σla + Σlab
    return float(max(mp.mpf(0), (mp.fsum(lb) - mp.fsum(lab)) / 2))
