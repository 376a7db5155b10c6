"""Information quantities of a linear-Gaussian SEM, in nats (docs/information.md).

``InfoSolver`` uses the structured log-dets when the SEM has the structure and the dense
reference otherwise (or on request). Infinite MI (a deterministic linear relation) is +inf and
singular entropies are -inf, each with a reason from :meth:`InfoSolver.explain`; never NaN.
"""

from __future__ import annotations

import math
from typing import Iterable, Literal, cast

import numpy as np

from mi_datagen.errors import SpecError, StructureError, UnknownNameError
from mi_datagen.info import dense as dn
from mi_datagen.info.split import TOLERANCE_NOTE, SplitSolver
from mi_datagen.info.structured import NeedsDense, StructuredSolver
from mi_datagen.model.dense import DEFAULT_MAX_BYTES, dense_A
from mi_datagen.model.sem import LinearSEM
from mi_datagen.model.structured import structure_of

Method = Literal["auto", "structured", "dense"]
LOG_2PIE = math.log(2.0 * math.pi * math.e)


def _names(x: Iterable[str] | str) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


class InfoSolver:
    """Exact Gaussian information of a compiled linear SEM: MI, CMI, entropies and PMI as log-determinants.

    ``method="structured"`` uses the Kronecker + low-rank structure and never forms Σ; ``"dense"`` is the
    float64 reference path (used in tests against the structured one); ``"auto"`` picks structured when
    it applies."""

    def __init__(self, sem: LinearSEM, method: Method = "auto", max_dense_bytes: int = DEFAULT_MAX_BYTES):
        self.sem = sem
        self.max_dense_bytes = max_dense_bytes
        self._dense: dict[str, np.ndarray] | None = None
        self._cache: dict[frozenset, float] = {}
        self._pos = {n: i for i, n in enumerate(sem.names)}
        self.structured, self.structure_note = (None, "dense path requested") if method == "dense" \
            else structure_of(sem)
        if method == "structured" and self.structured is None:
            raise StructureError(f"the structured solver does not apply: {self.structure_note}")
        self._fast = StructuredSolver(self.structured) if self.structured is not None else None  # PMI
        self._split = SplitSolver(sem, self.structured) if self.structured is not None else None
        self._notes: dict[tuple, str] = {}
        self._mi_cache: dict[tuple, tuple[float, str | None]] = {}

    @property
    def method(self) -> str:
        return "structured" if self._fast is not None else "dense"

    # --- building blocks --------------------------------------------------------------------
    def dense(self) -> dict[str, np.ndarray]:
        if self._dense is None:
            self._dense = dense_A(self.sem, self.max_dense_bytes)
        return self._dense

    def _check(self, names: tuple[str, ...]) -> None:
        unknown = [n for n in names if n not in self.sem.kinds]
        if unknown:
            raise UnknownNameError(f"unknown node(s) {unknown}; known: {sorted(self.sem.kinds)}")

    def logdet(self, names: Iterable[str] | str) -> float:
        """log|Σ_names|; -inf when singular."""
        key = frozenset(_names(names))
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        self._check(tuple(key))
        order = tuple(sorted(key, key=self._pos.__getitem__))
        self._cache[key] = value = self._logdet(order)
        return value

    def prefetch(self, sets: Iterable[Iterable[str]]) -> None:
        """Compute the log-dets of many sets at once (their shared factorisations are cached)."""
        for x in sets:
            self.logdet(tuple(x))

    def _logdet(self, order: tuple[str, ...]) -> float:
        if self._split is not None:
            return self._split.logdet(order)
        return dn.dense_logdet(self.dense(), order)

    # --- quantities -------------------------------------------------------------------------
    def entropy(self, names: Iterable[str] | str) -> float:
        """h(Z_names) = ½(n log 2πe + log|Σ|); -inf for a singular (degenerate) Gaussian."""
        names = _names(names)
        return 0.5 * (self.sem.dims(names) * LOG_2PIE + self.logdet(names))

    def mi(self, a, b, given=()) -> float:
        """I(a; b | given) = ½(L(a∪c) + L(b∪c) − L(c) − L(a∪b∪c)), on bases of each side (exactly 0 when a side is
        a deterministic function of the conditioning set, ∞ for a deterministic relation between the sides)."""
        a, b, c = _names(a), _names(b), _names(given)
        if len(set(a + b + c)) != len(a) + len(b) + len(c):
            raise SpecError(f"a={a}, b={b}, given={c} must be disjoint (and without repeats)")
        self._check(a + b + c)
        if self._split is not None:
            key = (frozenset(a), frozenset(b), frozenset(c))
            hit = self._mi_cache.get(key)
            if hit is None:
                hit = self._mi_cache[key] = self._split.mi(a, b, c)
                if hit[1] is not None:
                    self._notes[key] = hit[1]
            return hit[0]
        lac, lbc, lc, labc = (self.logdet(a + c), self.logdet(b + c), self.logdet(c), self.logdet(a + b + c))
        if all(map(math.isfinite, (lac, lbc, lc))):
            if labc == -math.inf:
                return math.inf
            return max(0.5 * (lac + lbc - lc - labc), 0.0)
        # a block is degenerate on its own: the log-det formula is ∞ − ∞, use canonical correlations
        self._ensure_dense_fits(a + b + c)
        return dn.dense_mi(self.dense(), a, b, c)

    def mi_many(self, quantities: list[tuple]) -> list[float]:
        """mi(a, b, given) for many triples of name tuples (log-dets shared through the caches)."""
        return [self.mi(a, b, c) for a, b, c in quantities]

    def total_correlation(self, groups: Iterable[Iterable[str] | str]) -> float:
        """TC = Σ_i h(Z_i) − h(Z_1..Z_n) = Σ_i I(Z_1..Z_{i-1}; Z_i) (chain rule, finite-safe)."""
        total, seen = 0.0, cast(tuple[str, ...], ())
        for g in (tuple(_names(x)) for x in groups):
            if seen:
                total += self.mi(seen, g)
            seen = seen + g
        return total

    def interaction(self, a, b, c) -> float:
        """Interaction information I(a; b; c) = I(a; b) − I(a; b | c) (McGill's sign convention)."""
        i1, i2 = self.mi(a, b), self.mi(a, b, c)
        if math.isinf(i1) and math.isinf(i2):
            raise SpecError(f"I({a}; {b}; {c}) is undefined: I(a;b) and I(a;b|c) are both infinite")
        return i1 - i2

    def explain(self, a, b=(), given=()) -> str | None:
        """Why a quantity is infinite (or None if it is finite)."""
        a, b, c = _names(a), _names(b), _names(given)
        exact = f"; {TOLERANCE_NOTE}" if self._split is not None else ""
        if not b:
            if math.isfinite(self.logdet(a)):
                return None
            return f"Σ of {{{', '.join(a)}}} is singular: some linear combination of these nodes has no noise{exact}"
        if math.isfinite(self.mi(a, b, c)):
            note = self._notes.get((frozenset(a), frozenset(b), frozenset(c)))
            return note + exact if note else None
        cond = f" given {{{', '.join(c)}}}" if c else ""
        return (f"{{{', '.join(a)}}} and {{{', '.join(b)}}} are linked by a deterministic linear relation{cond} "
                f"(the joint covariance is singular while each side is not): the MI is infinite{exact}")

    def _ensure_dense_fits(self, names) -> None:
        try:
            self.dense()
        except Exception as err:
            raise StructureError(
                f"a block among {list(names)} is degenerate on its own (its covariance is singular), so the "
                f"MI needs the dense canonical-correlation path, which does not fit: {err}"
            ) from None

    # --- pointwise --------------------------------------------------------------------------
    def mahalanobis(self, names, samples: dict[str, np.ndarray]) -> np.ndarray:
        order = tuple(n for n in self.sem.names if n in set(_names(names)))
        n = next(iter(samples.values())).shape[0]
        if not order:
            return np.zeros(n)
        sc = tuple(x for x in order if self.sem.kinds[x] == "scalar")
        vc = tuple(x for x in order if self.sem.kinds[x] == "vector")
        if self._fast is not None:
            try:
                zs = np.stack([samples[x].reshape(n) for x in sc], axis=1) if sc else None
                zv = np.stack([samples[x].reshape(n, -1) for x in vc], axis=1) if vc else None
                return self._fast.mahalanobis(sc, vc, zs, zv)
            except NeedsDense:
                pass
        z = np.concatenate([samples[x].reshape(n, -1) for x in order], axis=1)
        return dn.dense_mahalanobis(self.dense(), order, z)

    def pmi(self, a, b, samples: dict[str, np.ndarray]) -> np.ndarray:
        """PMI(z_a; z_b) = I(a; b) + ½(m_a + m_b − m_ab) per sample (docs/information.md); its mean is the MI."""
        a, b = _names(a), _names(b)
        mi = self.mi(a, b)
        n = next(iter(samples.values())).shape[0]
        if math.isinf(mi):
            return np.full(n, math.inf)
        ma, mb, mab = (self.mahalanobis(x, samples) for x in (a, b, a + b))
        return mi + 0.5 * (ma + mb - mab)
