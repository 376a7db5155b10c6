"""Target solving: the value of one free parameter that gives a quantity its target value."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy.optimize import brentq

from mi_datagen.errors import SolveError


def solve_monotone(f: Callable[[float], float], target: float, bracket: tuple[float, float] | None,
                   start: float, *, name: str = "parameter", what: str = "quantity",
                   xtol: float = 1e-12, rtol: float = 1e-12) -> float:
    """Solve f(x) = target for a function monotone on the bracket.

    Without a bracket one is grown geometrically from ``start`` (on the side of its sign; 1 if it
    is 0) until it holds the target. Raises :class:`SolveError` naming the reachable range when
    the target is out of reach.
    """

    def g(x: float) -> float:
        v = f(x)
        return 1e300 if v == math.inf else v - target

    if bracket is None:
        sign = -1.0 if start < 0 else 1.0
        lo, hi = 0.0, abs(start) or 1.0
        f_lo = f(lo)
        for _ in range(200):
            f_hi = f(sign * hi)
            if (f_lo - target) * (f_hi - target) <= 0 or f_hi == math.inf:
                break
            lo, f_lo, hi = hi, f_hi, hi * 2.0
        bracket = (sign * lo, sign * hi) if sign > 0 else (sign * hi, sign * lo)
    a, b = bracket
    fa, fb = g(a), g(b)
    if fa == 0.0:
        return a
    if fb == 0.0:
        return b
    if np.sign(fa) == np.sign(fb):
        lo_v, hi_v = sorted((f(a), f(b)))
        raise SolveError(
            f"{what} = {target} nats is out of reach for {name} in [{a:g}, {b:g}]: the {what} ranges "
            f"over [{lo_v:.6g}, {hi_v:.6g}] nats there; give a wider bracket or a reachable target"
        )
    return float(brentq(g, a, b, xtol=xtol, rtol=rtol, maxiter=500))
