"""The one straight-line fit and the one coefficient of determination of the package.

A power law ``y = exp(intercept) x^slope`` is a straight line in log-log space; the
validation baseline ``reg`` (device-hours against training FLOPs) and the papers' loss
against carbon fit (``loss = k CO^-alpha``) both use :func:`loglog_fit`, and every R^2
the reports print is :func:`r_squared`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def r_squared(y, yhat) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot`` of ``yhat`` against ``y``.

    Parameters
    ----------
    y : array_like
        Observed values.
    yhat : array_like
        Predicted (or fitted) values, same length.

    Returns
    -------
    float
        R^2 (at most 1, unbounded below); NaN with fewer than two points or when ``y`` is
        constant (``SS_tot = 0``: R^2 is undefined).
    """
    y = np.asarray(y, dtype=float)
    yhat = np.asarray(yhat, dtype=float)
    if y.size < 2:
        return math.nan
    ss_tot = float(((y - y.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return math.nan
    return 1.0 - float(((y - yhat) ** 2).sum()) / ss_tot


@dataclass(frozen=True)
class LineFit:
    """``y = intercept + slope x``, the least-squares line of ``n`` points, with its R^2."""

    slope: float
    intercept: float
    n: int
    r2: float


def line_fit(x, y) -> LineFit:
    """Ordinary least squares of ``y`` on ``x`` (closed form).

    Parameters
    ----------
    x, y : array_like
        Paired finite values, at least two, ``x`` not all equal.

    Returns
    -------
    LineFit
        ``slope = S_xy / S_xx``, ``intercept = mean(y) - slope mean(x)``, ``n`` and the
        fit's :func:`r_squared` on the points.

    Raises
    ------
    ValueError
        Different lengths, fewer than two points or constant ``x`` (callers name the field).
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y differ in length ({x.size} vs {y.size})")
    mx, my = (float(x.mean()), float(y.mean())) if x.size else (math.nan, math.nan)
    sxx = float(((x - mx) ** 2).sum())
    if x.size < 2 or sxx == 0.0:
        raise ValueError(f"need at least two distinct x values, got {x.size} points")
    slope = float(((x - mx) * (y - my)).sum()) / sxx
    intercept = my - slope * mx
    return LineFit(slope=slope, intercept=intercept, n=int(x.size), r2=r_squared(y, intercept + slope * x))


def loglog_fit(x, y) -> LineFit:
    """The power law ``y = exp(intercept) x^slope``: :func:`line_fit` of ``ln y`` on ``ln x``.

    Parameters
    ----------
    x, y : array_like
        Paired positive finite values (callers drop or reject the others).

    Returns
    -------
    LineFit
        Slope, intercept (natural logs), ``n`` and R^2 in log space.
    """
    return line_fit(np.log(np.asarray(x, dtype=float)), np.log(np.asarray(y, dtype=float)))
