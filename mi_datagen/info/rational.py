"""Exact rational arithmetic for the solver's rank decisions and ill-conditioned log-dets.

Every float is an exact rational, so the spec's numbers define the model exactly: the structured factors
(A, R, C) are rebuilt here in ``Fraction`` arithmetic, template Gram matrices with integers, and ranks and
determinants are exact. Used only where floats leave doubt (``mi_datagen.info.split``).
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

from mi_datagen.model.sem import LinearSEM
from mi_datagen.model.structured import StructuredModel

__all__ = ["Echelon", "det", "exact_structure", "gram", "ldl_templates", "unit_lower_inverse"]


def gram(T: np.ndarray) -> list[list[Fraction]]:
    """T Tᵀ of the (P, d) float templates in exact rational arithmetic (integers with a common exponent)."""
    rows = []
    for t in np.asarray(T, dtype=np.float64):
        m, e = np.frexp(t)
        ints = (m * 2.0 ** 53).astype(np.int64)
        nz = ints != 0
        if not nz.any():
            rows.append((np.zeros(t.size, dtype=object), 0))
            continue
        exps = e.astype(np.int64) - 53
        emin = int(exps[nz].min())
        big = np.array([int(i) << int(s - emin) if i else 0 for i, s in zip(ints.tolist(), exps.tolist())],
                       dtype=object)
        rows.append((big, emin))
    P = len(rows)
    G = [[Fraction(0)] * P for _ in range(P)]
    for p in range(P):
        for q in range(p, P):
            v = int(np.dot(rows[p][0], rows[q][0])) if T.shape[1] else 0
            G[p][q] = G[q][p] = Fraction(v) * Fraction(2) ** (rows[p][1] + rows[q][1])
    return G


def det(M: list[list[Fraction]]) -> Fraction:
    """The exact determinant of a rational matrix (fraction-free Bareiss elimination on integers)."""
    n = len(M)
    if n == 0:
        return Fraction(1)
    scale = Fraction(1)
    rows = []
    for row in M:
        den = 1
        for x in row:
            den = den * x.denominator // math.gcd(den, x.denominator)
        rows.append([int(x * den) for x in row])
        scale /= den
    sign, prev = 1, 1
    for k in range(n - 1):
        if rows[k][k] == 0:
            swap = next((i for i in range(k + 1, n) if rows[i][k] != 0), None)
            if swap is None:
                return Fraction(0)
            rows[k], rows[swap] = rows[swap], rows[k]
            sign = -sign
        pk = rows[k][k]
        for i in range(k + 1, n):
            ri, rk = rows[i], rows[k]
            rik = ri[k]
            for j in range(k + 1, n):
                ri[j] = (ri[j] * pk - rik * rk[j]) // prev
        prev = pk
    return sign * rows[n - 1][n - 1] * scale


class Echelon:
    """An exact row-echelon basis (rational arithmetic) that tells whether a row adds a dimension."""

    def __init__(self) -> None:
        self.rows: dict[int, list[Fraction]] = {}  # pivot column -> row with 1 at the pivot

    def reduce(self, row: list[Fraction]) -> list[Fraction]:
        r = list(row)
        for col, b in self.rows.items():
            f = r[col]
            if f:
                r = [x - f * y for x, y in zip(r, b)]
        return r

    def add(self, row: list[Fraction]) -> bool:
        """Add ``row``; False (and nothing added) when it is a linear combination of the basis."""
        r = self.reduce(row)
        col = next((i for i, x in enumerate(r) if x), None)
        if col is None:
            return False
        piv = r[col]
        r = [x / piv for x in r]
        for c, b in self.rows.items():  # keep the basis reduced, so reduce() is one pass
            f = b[col]
            if f:
                self.rows[c] = [x - f * y for x, y in zip(b, r)]
        self.rows[col] = r
        return True


def exact_structure(sem: LinearSEM, m: StructuredModel) -> tuple[dict, dict, dict]:
    """A (scalar rows), R, C of the structured model in rational arithmetic (mirrors structure_of)."""
    K, J, P = m.K, m.J, m.T.shape[0]
    a: dict[str, list[Fraction]] = {}
    rr: dict[str, list[Fraction]] = {}
    cc: dict[str, list[list[Fraction]]] = {}
    for n in sem.names:
        noise = Fraction(sem.noise[n])
        if sem.kinds[n] == "scalar":
            v = [Fraction(0)] * K
            if noise:
                v[m.scalar_sources.index(n)] = noise
            for e in sem.parents[n]:
                f = Fraction(e.coef)
                v = [x + f * y for x, y in zip(v, a[e.parent])]
            a[n] = v
        else:
            rv = [Fraction(0)] * J
            cv = [[Fraction(0)] * K for _ in range(P)]
            if noise:
                rv[m.vector_sources.index(n)] = noise
            for e in sem.parents[n]:
                f = Fraction(e.coef)
                if sem.kinds[e.parent] == "scalar":
                    if e.template is None:
                        raise ValueError(f"edge {e.parent} -> {n}: a scalar → vector edge needs a template")
                    cv[e.template] = [x + f * y for x, y in zip(cv[e.template], a[e.parent])]
                else:
                    rv = [x + f * y for x, y in zip(rv, rr[e.parent])]
                    cv = [[x + f * y for x, y in zip(row, prow)] for row, prow in zip(cv, cc[e.parent])]
            rr[n], cc[n] = rv, cv
    return a, rr, cc


def ldl_templates(T: np.ndarray) -> tuple[list[int], list[list[Fraction]], list[list[Fraction]], list[Fraction]]:
    """(independent templates, E with T = T_ind E, unit lower L and D with G_ind = L D Lᵀ), exact."""
    G = gram(T)
    P = len(G)
    ind: list[int] = []
    L: list[list[Fraction]] = []  # rows of L for the independent templates, over ind
    D: list[Fraction] = []
    E_cols: list[list[Fraction]] = []
    for p in range(P):
        # LDLᵀ step: l_j = (G[p][ind_j] − Σ_{i<j} l_i L[j][i] D_i) / D_j, pivot = G[p][p] − Σ l_j² D_j
        lrow: list[Fraction] = []
        for j, q in enumerate(ind):
            s = G[p][q] - sum((lrow[i] * L[j][i] * D[i] for i in range(j)), Fraction(0))
            lrow.append(s / D[j])
        piv = G[p][p] - sum((lrow[j] ** 2 * D[j] for j in range(len(ind))), Fraction(0))
        if piv > 0:
            ind.append(p)
            L.append(lrow + [Fraction(1)])
            for row in L[:-1]:
                row.append(Fraction(0))
            D.append(piv)
            E_cols.append([Fraction(0)] * (len(ind) - 1) + [Fraction(1)])
        else:  # T_p = T_ind e with G_ind e = G[ind, p]: back-substitute L D Lᵀ e = L D l
            e = _back_substitute(L, lrow)
            E_cols.append(e)
    r = len(ind)
    E = [[(col[i] if i < len(col) else Fraction(0)) for col in E_cols] for i in range(r)]
    return ind, E, L, D


def _back_substitute(L: list[list[Fraction]], lrow: list[Fraction]) -> list[Fraction]:
    """Solve Lᵀ e = l (L unit lower triangular over the independent templates)."""
    r = len(L)
    e = [Fraction(0)] * r
    for i in reversed(range(r)):
        e[i] = lrow[i] - sum((L[j][i] * e[j] for j in range(i + 1, r)), Fraction(0))
    return e


def unit_lower_inverse(L: list[list[Fraction]]) -> list[list[Fraction]]:
    """L⁻¹ (L unit lower triangular from G_ind = L D Lᵀ), exact."""
    r = len(L)
    Linv = [[Fraction(int(i == j)) for j in range(r)] for i in range(r)]
    for i in range(r):  # forward substitution
        for j in range(i):
            f = L[i][j]
            if f:
                Linv[i] = [x - f * y for x, y in zip(Linv[i], Linv[j])]
    return Linv
