"""One uncertain input of :mod:`carbonscaling.uncertainty`: its declaration, tables and draws.

An input is declared in ``data/uncertainty.yaml`` (:class:`InputSpec`: kind, distribution,
parameters, source); :func:`draw` samples it (triangular, uniform, log-uniform, or resampled
from an empirical table: year-on-year grid-intensity ratios, step-time and node-power
residuals of the validation) and :func:`quantile` gives the percentiles of the one-at-a-time
swing; :func:`widen` stretches its range (the sensitivity of the bands to a declared range).
:mod:`carbonscaling.uncertainty` loads the declarations, pushes the draws through the carbon
response and re-exports every name here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from ._data import load_csv
from .errors import InputError

DISTRIBUTIONS = ("triangular", "uniform", "loguniform", "empirical")


# ---- input declarations --------------------------------------------------------------
@dataclass(frozen=True)
class InputSpec:
    """One uncertain input as declared in ``uncertainty.yaml``."""

    name: str
    kind: str                      # "factor" or "value"
    distribution: str
    params: Mapping[str, Any]
    source: str = ""
    verified: bool = False


def _check_spec(name: str, raw: Any) -> InputSpec:
    if not isinstance(raw, Mapping):
        raise InputError(f"uncertainty.{name}", "must be a mapping of kind/distribution/parameters")
    kind, dist = raw.get("kind"), raw.get("distribution")
    if kind not in ("factor", "value"):
        raise InputError(f"uncertainty.{name}.kind", f"must be 'factor' or 'value', got {kind!r}")
    if dist not in DISTRIBUTIONS:
        raise InputError(f"uncertainty.{name}.distribution", f"must be one of {', '.join(DISTRIBUTIONS)}, got {dist!r}")
    params = {k: v for k, v in raw.items() if k not in ("kind", "distribution", "source", "verified")}
    return InputSpec(name, kind, dist, params, str(raw.get("source", "")), bool(raw.get("verified", False)))


def widen(specs: Mapping[str, InputSpec], name: str, scale: float) -> dict[str, InputSpec]:
    """A copy of ``specs`` with input ``name``'s range stretched by ``scale`` about its mode."""
    if name not in specs:
        raise InputError("input", f"unknown input {name!r}; known: {', '.join(specs)}")
    s = specs[name]
    p = dict(s.params)
    if s.distribution == "empirical":
        p["scale"] = float(p.get("scale", 1.0)) * scale
    else:
        for lo, hi in (("low", "high"), ("low_offset", "high_offset")):
            if lo in p and hi in p:
                mid = 0.0 if lo == "low_offset" else float(p.get("mode", 1.0) if isinstance(p.get("mode"), (int, float))
                                                            else (p[lo] + p[hi]) / 2)
                if s.distribution == "loguniform":
                    g = math.sqrt(p[lo] * p[hi])
                    p[lo], p[hi] = g * (p[lo] / g) ** scale, g * (p[hi] / g) ** scale
                else:
                    p[lo], p[hi] = mid + (p[lo] - mid) * scale, mid + (p[hi] - mid) * scale
    return {**specs, name: InputSpec(s.name, s.kind, s.distribution, p, s.source, s.verified)}


# ---- empirical tables -------------------------------------------------------------------
@lru_cache(maxsize=None)
def region_year_ratios(min_ci: float = 50.0) -> np.ndarray:
    """ci(y+1) / ci(y) for every region and consecutive pair of years in ``regions.csv``."""
    by_region: dict[str, dict[int, float]] = {}
    for r in load_csv("regions.csv"):
        by_region.setdefault(r["region"].strip().lower(), {})[int(r["year"])] = float(r["ci_g_per_kwh"])
    out = [ys[y + 1] / ys[y] for ys in by_region.values() for y in ys
           if y + 1 in ys and ys[y] >= min_ci and ys[y + 1] >= min_ci]
    return np.array(sorted(out))


@lru_cache(maxsize=None)
def step_time_residuals() -> np.ndarray:
    """Measured / predicted step time of the published runs (``step_time_residuals.csv``)."""
    return np.array([float(r["ratio_measured_over_predicted"]) for r in load_csv("step_time_residuals.csv")])


@lru_cache(maxsize=None)
def power_residuals() -> np.ndarray:
    """Measured / predicted node power per accelerator slot on the metered MLPerf rows (``power_residuals.csv``)."""
    return np.array([float(r["ratio_measured_over_predicted"]) for r in load_csv("power_residuals.csv")])


def _table(spec: InputSpec) -> np.ndarray:
    name = spec.params.get("table")
    if name == "region_year_ratios":
        return region_year_ratios(float(spec.params.get("min_ci_g_per_kwh", 50.0)))
    if name == "step_time_residuals":
        return step_time_residuals()
    if name == "power_residuals":
        return power_residuals()
    raise InputError(f"uncertainty.{spec.name}.table", f"unknown table {name!r}")


# ---- sampling ---------------------------------------------------------------------------
def _bounds(spec: InputSpec, point: float) -> tuple[float, float, float]:
    """(low, mode, high) in the units the sample is drawn in."""
    p = spec.params
    if "low_offset" in p:
        lo, hi = point + float(p["low_offset"]), point + float(p["high_offset"])
        mode = point
    else:
        lo, hi = float(p["low"]), float(p["high"])
        m = p.get("mode", "point" if spec.kind == "value" else 1.0)
        mode = point if m == "point" else float(m)
    if p.get("widen_to_point") or "low_offset" in p:
        lo, hi = min(lo, point), max(hi, point)
    if "floor" in p:
        lo = max(lo, float(p["floor"]))
    mode = min(max(mode, lo), hi)
    return lo, mode, hi


def draw(spec: InputSpec, point: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of one input (values, or factors for ``kind: factor``)."""
    if spec.distribution == "empirical":
        tab = _table(spec)
        x = rng.choice(tab, size=n)
        scale = float(spec.params.get("scale", 1.0))
        if scale != 1.0:  # stretch about the table's median, in log space
            med = float(np.median(tab))
            x = med * (x / med) ** scale
        return x
    lo, mode, hi = _bounds(spec, point)
    if hi <= lo:
        return np.full(n, mode)
    if spec.distribution == "uniform":
        return rng.uniform(lo, hi, n)
    if spec.distribution == "loguniform":
        return np.exp(rng.uniform(math.log(lo), math.log(hi), n))
    return rng.triangular(lo, mode, hi, n)


def quantile(spec: InputSpec, point: float, q: float) -> float:
    """The ``q`` quantile (0..1) of one input, for the one-at-a-time swing."""
    if spec.distribution == "empirical":
        tab = _table(spec)
        scale = float(spec.params.get("scale", 1.0))
        med = float(np.median(tab))
        return float(med * (np.quantile(tab, q, method="inverted_cdf") / med) ** scale)
    lo, mode, hi = _bounds(spec, point)
    if hi <= lo:
        return mode
    if spec.distribution == "uniform":
        return lo + q * (hi - lo)
    if spec.distribution == "loguniform":
        return math.exp(math.log(lo) + q * (math.log(hi) - math.log(lo)))
    c = (mode - lo) / (hi - lo)  # triangular inverse CDF
    return lo + math.sqrt(q * (hi - lo) * (mode - lo)) if q < c else hi - math.sqrt((1 - q) * (hi - lo) * (hi - mode))
