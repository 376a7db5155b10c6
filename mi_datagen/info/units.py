"""Units and display of information values (nats ↔ bits, ±∞, undefined)."""

from __future__ import annotations

import math

LN2 = math.log(2.0)


def to_bits(nats: float | None) -> float | None:
    return None if nats is None else nats / LN2


def format_info(v: float | None, digits: int = 6) -> str:
    if v is None:
        return "undefined"
    if math.isinf(v):
        return "∞" if v > 0 else "−∞"
    return f"{v:.{digits}f}"


def quantity_label(a, b, given=(), bar: str = "|") -> str:
    g = f" {bar} {','.join(given)}" if given else ""
    return f"I({','.join(a)}; {','.join(b)}{g})"
