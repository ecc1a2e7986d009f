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
    """Least-squares fit of ``loss = k * carbon^-alpha`` on ``log``s; needs two or more
    finite positive pairs with distinct carbon values."""
    x = np.asarray(carbon, dtype=float)
    y = np.asarray(loss, dtype=float)
    if x.shape != y.shape:
        raise InputError("carbon", f"carbon and loss differ in length ({x.size} vs {y.size})")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    lx, ly = np.log(x[ok]), np.log(y[ok])
    if lx.size < 2 or np.ptp(lx) == 0:
        raise InputError("carbon", f"need at least two distinct positive points to fit, got {lx.size}")
    slope, intercept = np.polyfit(lx, ly, 1)
    pred = intercept + slope * lx
    ss_res = float(np.sum((ly - pred) ** 2))
    ss_tot = float(np.sum((ly - ly.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    return PowerLawFit(k=math.exp(intercept), alpha=-float(slope), r2=r2, n=int(lx.size),
                       co_min=float(np.exp(lx.min())), co_max=float(np.exp(lx.max())))
