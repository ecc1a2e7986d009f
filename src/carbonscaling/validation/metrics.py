"""Error metrics for validation: fractions, not percents; NaN-robust.

Every metric takes paired ``reported`` and ``predicted`` sequences, drops pairs where
either side is missing (None / NaN / inf), and works on what is left. Percentage
errors also drop pairs whose reported value is 0; log-space R^2 drops non-positive
pairs. :func:`summarize` returns all of them with ``n``, the number of usable pairs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..stats import r_squared


def paired(reported: Sequence[float | None], predicted: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    """The pairs where both values are finite numbers, as two float arrays."""
    if len(reported) != len(predicted):
        raise ValueError(f"reported ({len(reported)}) and predicted ({len(predicted)}) differ in length")
    rep = np.array([np.nan if v is None else v for v in reported], dtype=float)
    pred = np.array([np.nan if v is None else v for v in predicted], dtype=float)
    keep = np.isfinite(rep) & np.isfinite(pred)
    return rep[keep], pred[keep]


def ape(reported: Sequence[float | None], predicted: Sequence[float | None]) -> np.ndarray:
    """Absolute percentage errors ``|pred - rep| / |rep|`` (as fractions) of the usable pairs."""
    rep, pred = paired(reported, predicted)
    keep = rep != 0
    return np.abs(pred[keep] - rep[keep]) / np.abs(rep[keep])


def mape(reported, predicted) -> float:
    """Mean absolute percentage error (fraction; NaN when no pair is usable)."""
    e = ape(reported, predicted)
    return float(e.mean()) if e.size else math.nan


def median_ape(reported, predicted) -> float:
    """Median absolute percentage error (fraction; NaN when no pair is usable)."""
    e = ape(reported, predicted)
    return float(np.median(e)) if e.size else math.nan


def r2(reported, predicted) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of predicted vs reported (linear)."""
    return r_squared(*paired(reported, predicted))


def r2_log(reported, predicted) -> float:
    """R^2 of ``log(predicted)`` against ``log(reported)`` (positive pairs only)."""
    rep, pred = paired(reported, predicted)
    keep = (rep > 0) & (pred > 0)
    return r_squared(np.log(rep[keep]), np.log(pred[keep]))


def summarize(reported, predicted) -> dict[str, float | int]:
    """``{"mape", "median_ape", "r2_log", "r2", "n"}`` for one method and quantity."""
    rep, _ = paired(reported, predicted)
    return {"mape": mape(reported, predicted), "median_ape": median_ape(reported, predicted),
            "r2_log": r2_log(reported, predicted), "r2": r2(reported, predicted), "n": int(rep.size)}
