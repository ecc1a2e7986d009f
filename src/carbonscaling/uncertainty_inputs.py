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
    if "select_by" in params:
        _check_selection(name, params)
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


#: Tables of measured / predicted ratios, one CSV row each (``data/<name>.csv``, column
#: ``ratio_measured_over_predicted``); their other columns (``device``, ...) can select rows.
RESIDUAL_TABLES = ("step_time_residuals", "power_residuals")


@lru_cache(maxsize=None)
def residual_rows(table: str) -> tuple[dict[str, str], ...]:
    """The rows of one residual table (``data/<table>.csv``)."""
    if table not in RESIDUAL_TABLES:
        raise InputError("table", f"must be one of {', '.join(RESIDUAL_TABLES)}, got {table!r}")
    return load_csv(f"{table}.csv")


@lru_cache(maxsize=None)
def residuals(table: str, column: str | None = None, value: str | None = None) -> np.ndarray:
    """Measured / predicted ratios of a residual table: every row, or the rows whose ``column`` is ``value``.

    Parameters
    ----------
    table : str
        One of :data:`RESIDUAL_TABLES`.
    column, value : str, optional
        Keep only the rows with ``row[column] == value`` (``None``: every row).

    Returns
    -------
    numpy.ndarray
        The ratios (dimensionless), in file order.
    """
    return np.array([float(r["ratio_measured_over_predicted"]) for r in residual_rows(table)
                     if column is None or r.get(column) == value])


def step_time_residuals() -> np.ndarray:
    """Measured / predicted step time of every row of ``step_time_residuals.csv`` (the pooled distribution)."""
    return residuals("step_time_residuals")


def power_residuals() -> np.ndarray:
    """Measured / predicted node power per accelerator slot on the metered MLPerf rows (``power_residuals.csv``)."""
    return residuals("power_residuals")


def _table(spec: InputSpec) -> np.ndarray:
    name = spec.params.get("table")
    if name == "region_year_ratios":
        return region_year_ratios(float(spec.params.get("min_ci_g_per_kwh", 50.0)))
    if name in RESIDUAL_TABLES:
        return residuals(name, *spec.params.get("where", (None, None)))
    raise InputError(f"uncertainty.{spec.name}.table", f"unknown table {name!r}")


# ---- row selection (an empirical input drawn from the estimate's own rows) ----------------
def own_pool(counts: Mapping[str, int], value: str | None, min_rows: int) -> str | None:
    """The estimate's own group when the table has at least ``min_rows`` rows of it, else ``None`` (every row).

    Parameters
    ----------
    counts : mapping of str to int
        Rows per value of the selecting column.
    value : str or None
        The estimate's value of that column (``None``: the estimate does not say).
    min_rows : int
        Fewest rows a group's own distribution is drawn from.
    """
    return value if value is not None and counts.get(value, 0) >= min_rows else None


def _check_selection(name: str, p: Mapping[str, Any]) -> None:
    """``select_by`` / ``min_rows`` / ``aliases`` of an empirical input: a column of its table, an integer, names."""
    where = f"uncertainty.{name}"
    if p.get("table") not in RESIDUAL_TABLES:
        raise InputError(f"{where}.select_by", f"selects rows of a residual table ({', '.join(RESIDUAL_TABLES)}) only")
    rows = residual_rows(p["table"])
    if p["select_by"] not in (rows[0] if rows else {}):
        raise InputError(f"{where}.select_by", f"must be a column of {p['table']}.csv "
                         f"({', '.join(c for c in (rows[0] if rows else {}) if c != 'ratio_measured_over_predicted')}), "
                         f"got {p['select_by']!r}")
    n = p.get("min_rows", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000:
        raise InputError(f"{where}.min_rows", f"must be an integer in [1, 1,000,000], got {n!r}")
    aliases = p.get("aliases", {})
    if not isinstance(aliases, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise InputError(f"{where}.aliases", "must be a mapping of names to table values, e.g. {H100: H100-SXM}")


def select_rows(spec: InputSpec, labels: Mapping[str, Any]) -> InputSpec:
    """The input drawn from the estimate's own rows of its table, or from every row.

    With ``select_by: COLUMN`` the estimate's value of ``COLUMN`` (``labels``: the carbon
    breakdown's fields, e.g. ``device``; ``aliases`` maps catalog names that describe the same
    thing to the table's name) selects the table's rows of that value when there are at least
    ``min_rows`` of them (:func:`own_pool`); otherwise every row is drawn (the pooled
    distribution).

    Parameters
    ----------
    spec : InputSpec
        An input as declared (``select_by``, ``min_rows``, ``aliases`` among its parameters).
    labels : mapping of str to Any
        The point estimate's named fields (``base_point(...)["labels"]``: ``device``, ...).

    Returns
    -------
    InputSpec
        ``spec`` with ``where = (column, value)`` when its own rows are drawn (what :func:`draw`
        and :func:`quantile` read) and ``pool = {column, value, rows, line}`` (``value`` None:
        pooled) for the report; a spec without ``select_by`` is returned unchanged.
    """
    p = dict(spec.params)
    column = p.pop("select_by", None)
    if column is None:
        return spec
    min_rows, aliases = int(p.pop("min_rows", 1)), p.pop("aliases", {}) or {}
    if p.get("table") not in RESIDUAL_TABLES:  # the power model's replacement distribution: nothing to select
        return InputSpec(spec.name, spec.kind, spec.distribution, p, spec.source, spec.verified)
    raw = labels.get(column)
    value = None if raw is None else aliases.get(str(raw), str(raw))
    rows = residual_rows(p["table"])
    counts: dict[str, int] = {}
    for r in rows:
        counts[r[column]] = counts.get(r[column], 0) + 1
    own = own_pool(counts, value, min_rows)
    if own is not None:
        p["where"] = (column, own)
    named = None if raw is None else (f"{raw} (= {value})" if str(raw) != value else value)
    n_value = counts.get(value, 0) if value is not None else 0
    p["pool"] = {"column": column, "value": own, "rows": n_value if own is not None else len(rows),
                 "line": pool_line(p["table"], column, named, n_value, own, len(rows), min_rows)}
    return InputSpec(spec.name, spec.kind, spec.distribution, p, spec.source, spec.verified)


def pool_line(table: str, column: str, named: str | None, n_value: int, own: str | None, total: int,
              min_rows: int) -> str:
    """One line saying which rows of ``table`` an input was drawn from, how many, and why.

    ``named``: the estimate's value of ``column`` as shown (``None``: it has none); ``n_value``:
    the table's rows of it; ``own``: the selected value (``None``: every row, ``total`` of them).
    """
    if own is not None:
        return f"{n_value} {named} rows of {table}.csv (the estimate's own {column}; at least {min_rows})"
    why = f"the estimate has no {column}" if named is None else f"{named} has {n_value}, fewer than {min_rows}"
    return f"all {total} rows of {table}.csv, pooled ({column}: {why})"


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
