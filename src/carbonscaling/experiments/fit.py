"""The power law ``loss = k * CO^-alpha``, fitted by least squares in log space.

``log(loss) = log(k) - alpha * log(CO)`` is a straight line; :func:`fit_power_law`
returns ``k``, ``alpha`` and the coefficient of determination of that line (on the
logs). Carbon is in tCO2e, so ``k`` is the loss a 1-tCO2e run would reach on the line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..stats import loglog_fit


@dataclass(frozen=True)
class PowerLawFit:
    k: float
    alpha: float
    r2: float
    n: int
    co_min: float
    co_max: float

    def predict(self, co) -> np.ndarray:
        return self.k * np.asarray(co, dtype=float) ** (-self.alpha)

    def to_dict(self) -> dict[str, float]:
        return {"k": self.k, "alpha": self.alpha, "r2": self.r2, "n": self.n, "co_min": self.co_min,
                "co_max": self.co_max}


def fit_power_law(carbon: Sequence[float], loss: Sequence[float]) -> PowerLawFit:
    """Least-squares fit of ``loss = k * carbon^-alpha`` on ``log``s (:func:`carbonscaling.stats.loglog_fit`);
    needs two or more finite positive pairs with distinct carbon values."""
    x = np.asarray(carbon, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.shape != y.shape:
        raise InputError("carbon", f"carbon and loss differ in length ({x.size} vs {y.size})")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        raise InputError("carbon", f"need at least two distinct positive points to fit, got {int(ok.sum())}")
    line = loglog_fit(x[ok], y[ok])
    return PowerLawFit(k=math.exp(line.intercept), alpha=-line.slope, r2=line.r2, n=line.n,
                       co_min=float(x[ok].min()), co_max=float(x[ok].max()))
