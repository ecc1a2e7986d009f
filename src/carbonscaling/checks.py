"""Range checks shared by the carbon stages: one line naming the field and the allowed range."""

from __future__ import annotations

import math
import numbers
from typing import Any

from .errors import InputError


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) < 1e9 else f"{x:g}"


def check_number(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                 integer: bool = False) -> float:
    """``value`` as a float if it is a finite number in ``[lo, hi]`` (``(lo, hi]``), else InputError."""
    kind = "an integer" if integer else "a finite number"
    rng = f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}]"
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if not bad:
        v = float(value)
        bad = (not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo)
               or (integer and not v.is_integer()))
    if bad:
        raise InputError(field, f"must be {kind} in {rng}, got {value!r}")
    return v


def check_choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


