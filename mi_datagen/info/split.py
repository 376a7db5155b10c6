"""Exact information of a structured SEM by splitting R^d along the span of the templates.

With templates T (d × P, rank r) and an orthonormal basis Q = [Q_T, Q_⊥] of R^d, the same
orthogonal map applied to every vector block (no information changes) separates each block
z_v = Σ_j R_vj ε_j + T C_v ε_sc into
    z_v^⊥ = Σ_j R_vj ε_j^⊥            (d − r coordinates, i.i.d., vector noise only)
    z_v^∥ = Σ_j R_vj ε_j^∥ + C̃_v ε_sc  (r coordinates, C̃_v = R_T C_v with T = Q_T R_T)
and the two parts are independent. So every log-det and every (conditional) MI is
    (d − r) · [the same quantity for the ⊥ problem: one row R_v per vector node]
      +        [the same quantity for the ∥ problem: scalar rows a_s, r rows per vector node],
two small Gaussian problems whatever d is — degenerate blocks included.

In each problem a quantity I(a; b | c) is computed on bases: rows of c that are linear functions of
earlier rows of c are dropped, then rows of a (and of b) that are linear functions of c and earlier
rows of a (they carry nothing more), after which every covariance but the joint one is regular. If
a or b has no row left it is a deterministic function of c and the MI is exactly 0; if the joint
one is singular the MI is ∞. These rank decisions are exact: a pivot of the float QR above 1e-8 of
its row's norm is non-zero beyond any rounding, and any smaller one is decided in rational
arithmetic on the spec's own numbers (floats are exact rationals), so ∞ and exact zeros mean a
relation that holds exactly. Values come from the QR of the factor rows (never from Σ or a Gram
matrix): log|F Fᵀ| = 2 Σ log|R_ii|, accurate where an SVD or Cholesky of Σ is not.
"""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction
from functools import cached_property

import numpy as np

from mi_datagen.info.rational import Echelon, det, exact_structure, ldl_templates, unit_lower_inverse
from mi_datagen.model.sem import LinearSEM
from mi_datagen.model.structured import StructuredModel

SAFE_PIVOT = 1e-8  # QR pivots above this fraction of the row norm are certainly non-zero
PRECISE_PIVOT = 1e-7  # below this fraction a float pivot may lose > 1e-9 in its log: the log-det is then exact
TOLERANCE_NOTE = ("rank decided exactly (float QR pivots above 1e-8 of their row's norm, rational arithmetic on "
                  "the spec's numbers below)")


def _qr_r(M: np.ndarray) -> np.ndarray:
    """The R factor of the QR decomposition of M."""
    return np.asarray(np.linalg.qr(M, mode="r"))


def _ordered(rows: dict[str, int]) -> list[str]:
    return sorted(rows, key=rows.__getitem__)


def _as_float(x, shape) -> np.ndarray:
    return np.array(x, dtype=np.float64).reshape(shape) if np.prod(shape) else np.zeros(shape)


class _Problem:
    """z = F ε with rows grouped by node; ``exact()`` gives the same rows up to non-zero row and column scalings
    (which keep every rank) in rational arithmetic."""

    def __init__(self, F: np.ndarray, groups: dict[str, list[int]], exact, gram_det, multiplicity: int):
        self.F, self.groups, self._exact_fn, self._gram_det, self.mult = F, groups, exact, gram_det, multiplicity
        self.norms = np.linalg.norm(F, axis=1)
        self._logdets: dict[tuple[int, ...], float] = {}

    @cached_property
    def exact(self) -> list[list[Fraction]]:
        return self._exact_fn()

    def _exact_logdet(self, rows: list[int]) -> float:
        """log|F_rows F_rowsᵀ| from the exact rational determinant of the rows' Gram matrix (``gram``)."""
        value, offset = self._gram_det(rows)
        if value <= 0:
            return -math.inf
        return math.log(value.numerator) - math.log(value.denominator) + offset

    def rows(self, nodes) -> list[int]:
        return [i for n in nodes for i in self.groups.get(n, [])]

    def reduce(self, base: list[int], cand: list[int]) -> list[int]:
        """The rows of ``cand`` (in order) that are not linear functions of ``base`` (independent) and the rows
        kept before them."""
        cand = list(cand)
        while cand:
            rows = base + cand
            piv = np.zeros(len(rows))
            if self.F.shape[1]:
                R = _qr_r(self.F[rows].T)
                k = min(R.shape)
                piv[:k] = np.abs(np.diagonal(R)[:k])
            # once a row's pivot is at the rounding level, the float span of the rows so far is not reliable:
            # every later row is decided exactly
            dropped = False
            in_doubt = bool(np.any(piv[:len(base)] <= SAFE_PIVOT * self.norms[base])) if base else False
            ech: Echelon | None = None
            for i in range(len(base), len(rows)):
                r = rows[i]
                if not in_doubt and piv[i] > SAFE_PIVOT * self.norms[r]:
                    continue
                in_doubt = True
                if ech is None:
                    ech = Echelon()
                    for q in rows[:i]:
                        ech.add(self.exact[q])
                if ech.add(self.exact[r]):
                    continue
                cand.remove(r)
                dropped = True
                break
            if not dropped:
                break
        return cand

    def logdet_rows(self, rows: list[int]) -> float:
        """log|F_rows F_rowsᵀ| for rows known to be independent."""
        key = tuple(rows)
        hit = self._logdets.get(key)
        if hit is None:
            if not rows:
                hit = 0.0
            else:
                piv = np.zeros(len(rows))
                if self.F.shape[1]:
                    R = _qr_r(self.F[rows].T)
                    piv[:min(R.shape)] = np.abs(np.diagonal(R))
                if np.all(piv > PRECISE_PIVOT * self.norms[rows]):
                    hit = float(2.0 * np.log(piv).sum())
                else:  # a pivot near the rounding level of its row: its float log is not accurate
                    hit = self._exact_logdet(rows)
            self._logdets[key] = hit
        return hit

    def logdet(self, nodes) -> float:
        rows = self.rows(nodes)
        return self.logdet_rows(rows) if len(self.reduce([], rows)) == len(rows) else -math.inf

    def mi(self, a, b, c) -> tuple[float, str | None]:
        A, B, C = self.rows(a), self.rows(b), self.rows(c)
        if not A or not B:
            return 0.0, None
        c_ = self.reduce([], C)
        a_, b_ = self.reduce(c_, A), self.reduce(c_, B)
        if not a_ or not b_:
            side = "{" + ", ".join(a if not a_ else b) + "}"
            return 0.0, f"{side} is a deterministic linear function of the conditioning set: exactly 0"
        if len(self.reduce(c_ + a_, b_)) < len(b_):
            return math.inf, None
        L = self.logdet_rows
        return max(0.5 * (L(c_ + a_) + L(c_ + b_) - L(c_) - L(c_ + a_ + b_)), 0.0), None


class SplitSolver:
    """Log-dets and (conditional) MI of a structured SEM from its ⊥ and ∥ problems (see the module)."""

    def __init__(self, sem: LinearSEM, model: StructuredModel):
        self.sem = sem
        self.m = model
        a, rr, cc = self._exact_model  # the float factors, correctly rounded from the exact ones (no cancellation)
        m = self.m = replace(model, A=_as_float([a[n] for n in _ordered(model.scalar_rows)], model.A.shape),
                             R=_as_float([rr[n] for n in _ordered(model.vector_rows)], model.R.shape),
                             C=_as_float([cc[n] for n in _ordered(model.vector_rows)], model.C.shape))
        K, J = m.K, m.J
        T = m.T  # (P, d)
        self._ind, self._E = self._template_basis()
        r = len(self._ind)
        self.r = r
        # ∥ coordinates: y with z^∥ = T_ind y (template coefficients). Then y_v = E C_v ε_sc + Σ_j R_vj W ξ_j with
        # W Wᵀ = G_ind⁻¹ (W = Rt⁻¹ for T_indᵀ = Q Rt) and ξ_j ~ N(0, I_r); log|Σ^∥| = log|Σ_y| + |S|·log|G_ind|.
        if r and not self._templates_in_doubt:
            Rt = np.linalg.qr(T[self._ind].T, mode="r")  # (r, r)
            W = np.linalg.solve(Rt, np.eye(r))
            self.log_g = float(2.0 * np.log(np.abs(np.diagonal(Rt))).sum())
            Ct = np.einsum("qp,vpk->vqk", self._E, m.C)  # (n_vec, r, K): E C_v
        elif r:  # templates nearly dependent in floats: W = L⁻ᵀ D^(−1/2) and log|G_ind| from the exact LDLᵀ
            _, _, _, D = self._exact_templates
            Linv = np.array([[float(x) for x in row] for row in self._exact_linv])
            W = Linv.T / np.sqrt(np.array([float(x) for x in D]))[None, :]
            self.log_g = float(sum(math.log(x.numerator) - math.log(x.denominator) for x in D))
            Ct = np.einsum("qp,vpk->vqk", self._E, m.C)
        else:
            W, self.log_g = np.zeros((0, 0)), 0.0
            Ct = np.zeros((len(m.vector_rows), 0, K))
        n_sc, n_vec = len(m.scalar_rows), len(m.vector_rows)
        F = np.zeros((n_sc + n_vec * r, K + J * r))
        groups: dict[str, list[int]] = {}
        for s, i in m.scalar_rows.items():
            F[i, :K] = m.A[i]
            groups[s] = [i]
        for v, i in m.vector_rows.items():
            rows = [n_sc + i * r + k for k in range(r)]
            for k, row in enumerate(rows):
                F[row, :K] = Ct[i, k]
                F[row, K:] = np.kron(m.R[i], W[k])  # column K + j·r + k': ξ_j's coordinate k'
            groups[v] = rows
        self.par = _Problem(F, groups, self._exact_par, self._par_gram_det, 1)
        self.perp = _Problem(m.R.copy(), {v: [i] for v, i in m.vector_rows.items()}, self._exact_perp,
                             self._perp_gram_det, m.d - r)

    # --- exact (rational) versions of the factors, built only when a rank is in doubt ---------------
    @cached_property
    def _exact_model(self) -> tuple[dict, dict, dict]:
        """A (scalar rows), R, C of the structured model in rational arithmetic."""
        return exact_structure(self.sem, self.m)

    @cached_property
    def _exact_templates(self) -> tuple[list[int], list[list[Fraction]], list[list[Fraction]], list[Fraction]]:
        """(independent templates, E with T = T_ind E, unit lower L and D with G_ind = L D Lᵀ), exact."""
        return ldl_templates(self.m.T)

    def _template_basis(self) -> tuple[list[int], np.ndarray]:
        """Independent templates and E (float); exact arithmetic only when the float QR leaves doubt."""
        T = self.m.T
        P = T.shape[0]
        self._templates_in_doubt = False
        if P == 0:
            return [], np.zeros((0, 0))
        R = np.linalg.qr(T.T, mode="r")
        piv = np.abs(np.diagonal(R))
        self._templates_in_doubt = not (piv.size == P and np.all(piv > SAFE_PIVOT * np.linalg.norm(T, axis=1)))
        if not self._templates_in_doubt:
            return list(range(P)), np.eye(P)
        ind, E, _, _ = self._exact_templates
        return ind, np.array([[float(x) for x in row] for row in E]).reshape(len(ind), P)

    def _exact_perp(self) -> list[list[Fraction]]:
        _, rr, _ = self._exact_model
        return [rr[v] for v in sorted(self.m.vector_rows, key=self.m.vector_rows.__getitem__)]

    def _exact_par(self) -> list[list[Fraction]]:
        """∥ rows up to column scalings: scalar [a_s, 0]; vector v, coordinate k: [(E C_v)_k, R_vj (L⁻ᵀ)_k,k'] — the
        float rows with W = L⁻ᵀ D^(−1/2) (an orthogonal change of ξ_j from Rt⁻¹) and the columns times D^(1/2)."""
        a, rr, cc = self._exact_model
        m, r = self.m, self.r
        K, J = m.K, m.J
        rows = [[Fraction(0)] * (K + J * r) for _ in range(len(m.scalar_rows) + len(m.vector_rows) * r)]
        for s, i in m.scalar_rows.items():
            rows[i][:K] = a[s]
        if not r:
            return rows
        _, E, _, _ = self._exact_templates
        Linv = self._exact_linv
        n_sc = len(m.scalar_rows)
        for v, i in m.vector_rows.items():
            EC = self._ec(E, cc[v])
            for k in range(r):
                row = rows[n_sc + i * r + k]
                row[:K] = EC[k]
                for j in range(J):
                    for k2 in range(r):
                        row[K + j * r + k2] = rr[v][j] * Linv[k2][k]
        return rows

    def _ec(self, E, cv) -> list[list[Fraction]]:
        K = self.m.K
        return [[sum((E[q][p] * cv[p][k] for p in range(len(cv))), Fraction(0)) for k in range(K)]
                for q in range(self.r)]

    def _perp_gram_det(self, rows: list[int]) -> tuple[Fraction, float]:
        R = self.perp.exact
        return det([[sum((x * y for x, y in zip(R[i], R[j])), Fraction(0)) for j in rows] for i in rows]), 0.0

    def _par_gram_det(self, rows: list[int]) -> tuple[Fraction, float]:
        """The ∥ covariance in template coordinates y (z^∥ = T_ind y on range(T)), where it is rational:
        Cov(y_v,k, y_w,k') = (R_v·R_w)(G_ind⁻¹)_kk' + (E C_v)_k·(E C_w)_k', Cov(s, y_w,k') = a_s·(E C_w)_k',
        Cov(s, s') = a_s·a_s'. Then |Σ^∥| = |Σ_y|·|G_ind|^(number of vector nodes)."""
        a, rr, cc = self._exact_model
        m, r = self.m, self.r
        n_sc = len(m.scalar_rows)
        names = _ordered(m.scalar_rows)
        vnames = _ordered(m.vector_rows)
        EC: dict = {}
        if r:
            _, E, _, _ = self._exact_templates
            Ginv = self._exact_ginv
            EC = {v: self._ec(E, cc[v]) for v in {vnames[(i - n_sc) // r] for i in rows if i >= n_sc}}

        def var(i: int):  # (kind, name, coordinate)
            if i < n_sc:
                return names[i], None
            return vnames[(i - n_sc) // r], (i - n_sc) % r

        def dot(x, y):
            return sum((p * q for p, q in zip(x, y)), Fraction(0))

        def cov(i: int, j: int) -> Fraction:
            (u, k), (w, k2) = var(i), var(j)
            su = a[u] if k is None else EC[u][k]
            sw = a[w] if k2 is None else EC[w][k2]
            out = dot(su, sw)
            if k is not None and k2 is not None:
                out += dot(rr[u], rr[w]) * Ginv[k][k2]
            return out

        return det([[cov(i, j) for j in rows] for i in rows]), 0.0

    @cached_property
    def _exact_linv(self) -> list[list[Fraction]]:
        return unit_lower_inverse(self._exact_templates[2])

    @cached_property
    def _exact_ginv(self) -> list[list[Fraction]]:
        """G_ind⁻¹ = L⁻ᵀ D⁻¹ L⁻¹, exact."""
        _, _, _, D = self._exact_templates
        r = len(D)
        Linv = self._exact_linv
        return [[sum((Linv[k][i] * Linv[k][j] / D[k] for k in range(r)), Fraction(0)) for j in range(r)]
                for i in range(r)]

    # --- quantities ------------------------------------------------------------------------------
    def _parts(self):
        return [p for p in (self.perp, self.par) if p.mult > 0]

    def logdet(self, names) -> float:
        out = 0.0
        for p in self._parts():
            v = p.logdet(names)
            if v == -math.inf:
                return -math.inf
            out += p.mult * v
        return out + sum(1 for n in names if n in self.m.vector_rows) * self.log_g

    def mi(self, a, b, c) -> tuple[float, str | None]:
        total, note = 0.0, None
        for p in self._parts():
            v, n = p.mi(a, b, c)
            if math.isinf(v):
                return math.inf, None
            total += p.mult * v
            note = note or n
        if note is not None and total != 0.0:
            note = None  # only the part of one problem was deterministic
        return total, note
