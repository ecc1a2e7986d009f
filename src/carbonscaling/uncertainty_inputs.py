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
def cell_residuals(table: str, where: tuple[tuple[str, str], ...] = ()) -> np.ndarray:
    """Measured / predicted ratios of the rows of a residual table in one cell (every row for ``where = ()``).

    Parameters
    ----------
    table : str
        One of :data:`RESIDUAL_TABLES`.
    where : tuple of (column, value) pairs
        Keep only the rows with ``row[column] == value`` for every pair.

    Returns
    -------
    numpy.ndarray
        The ratios (dimensionless), in file order.
    """
    return np.array([float(r["ratio_measured_over_predicted"]) for r in residual_rows(table)
                     if all(r.get(c) == v for c, v in where)])


def residuals(table: str, column: str | None = None, value: str | None = None) -> np.ndarray:
    """Measured / predicted ratios of a residual table: every row, or the rows whose ``column`` is ``value``
    (:func:`cell_residuals` with one pair)."""
    return cell_residuals(table, () if column is None else ((column, value),))


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
        return cell_residuals(name, tuple(spec.params.get("where", ())))
    raise InputError(f"uncertainty.{spec.name}.table", f"unknown table {name!r}")


# ---- row selection (an empirical input drawn from the estimate's own rows) ----------------
def model_kind(model: Any) -> str:
    """``hybrid`` (a Mamba/attention pattern), ``moe`` (routed experts) or ``dense``: the residual tables' ``model_kind``."""
    return "hybrid" if model.is_hybrid else "moe" if model.is_moe else "dense"


def own_pool(counts: Mapping[Any, int], value: Any, min_rows: int) -> Any:
    """The estimate's own group when the table has at least ``min_rows`` rows of it, else ``None`` (every row).

    Parameters
    ----------
    counts : mapping
        Rows per value of the selecting column (or per tuple of values of several columns).
    value : str, tuple or None
        The estimate's value of that column (``None``: the estimate does not say).
    min_rows : int
        Fewest rows a group's own distribution is drawn from.
    """
    return value if value is not None and counts.get(value, 0) >= min_rows else None


def selection_columns(select_by: Any) -> tuple[str, ...]:
    """``select_by`` as a tuple of columns, most specific cell first (``device`` -> ``("device",)``)."""
    return (select_by,) if isinstance(select_by, str) else tuple(select_by)


def cells(columns: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The cells tried in order: every column, then dropping columns from the end (``[a, b]`` -> ``(a, b), (a,)``)."""
    return [columns[:k] for k in range(len(columns), 0, -1)]


def _check_selection(name: str, p: Mapping[str, Any]) -> None:
    """``select_by`` / ``min_rows`` / ``aliases`` of an empirical input: columns of its table, an integer, names."""
    where = f"uncertainty.{name}"
    if p.get("table") not in RESIDUAL_TABLES:
        raise InputError(f"{where}.select_by", f"selects rows of a residual table ({', '.join(RESIDUAL_TABLES)}) only")
    rows = residual_rows(p["table"])
    known = [c for c in (rows[0] if rows else {}) if c != "ratio_measured_over_predicted"]
    by = p["select_by"]
    cols = [by] if isinstance(by, str) else by if isinstance(by, list) else None
    if not cols or len(set(map(str, cols))) != len(cols) or any(c not in known for c in cols):
        raise InputError(f"{where}.select_by", f"must be a column of {p['table']}.csv or a list of distinct ones, most "
                         f"specific first ({', '.join(known)}), got {by!r}")
    n = p.get("min_rows", 1)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 1_000_000:
        raise InputError(f"{where}.min_rows", f"must be an integer in [1, 1,000,000], got {n!r}")
    aliases = p.get("aliases", {})
    if not isinstance(aliases, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in aliases.items()):
        raise InputError(f"{where}.aliases", "must be a mapping of names to table values, e.g. {H100: H100-SXM}")


def select_rows(spec: InputSpec, labels: Mapping[str, Any]) -> InputSpec:
    """The input drawn from the estimate's own cell of its table, a coarser cell, or every row.

    With ``select_by: [C1, C2, ...]`` (or one column, ``select_by: C1``) the estimate's values
    of those columns (``labels``: the carbon breakdown's fields, e.g. ``device``, and the
    model's ``model_kind``; ``aliases`` maps catalog names that describe the same thing to the
    table's name) select the table's rows of the most specific cell, ``(C1, C2, ...)``, that has
    at least ``min_rows`` rows, dropping columns from the end (:func:`cells`, :func:`own_pool`);
    when no cell has enough rows every row is drawn (the pooled distribution).

    Parameters
    ----------
    spec : InputSpec
        An input as declared (``select_by``, ``min_rows``, ``aliases`` among its parameters).
    labels : mapping of str to Any
        The point estimate's named fields (``base_point(...)["labels"]``: ``device``, ``model_kind``, ...).

    Returns
    -------
    InputSpec
        ``spec`` with ``where = ((column, value), ...)`` when a cell's rows are drawn (what
        :func:`draw` and :func:`quantile` read) and ``pool = {by, rows, line}`` (``by``: the cell's
        column -> value, empty when pooled) for the report; a spec without ``select_by`` is
        returned unchanged.
    """
    p = dict(spec.params)
    by = p.pop("select_by", None)
    if by is None:
        return spec
    min_rows, aliases = int(p.pop("min_rows", 1)), p.pop("aliases", {}) or {}
    if p.get("table") not in RESIDUAL_TABLES:  # the power model's replacement distribution: nothing to select
        return InputSpec(spec.name, spec.kind, spec.distribution, p, spec.source, spec.verified)
    columns = selection_columns(by)
    raw = {c: labels.get(c) for c in columns}
    value = {c: None if v is None else aliases.get(str(v), str(v)) for c, v in raw.items()}
    named = {c: None if v is None else (f"{v} (= {value[c]})" if str(v) != value[c] else value[c]) for c, v in raw.items()}
    rows = residual_rows(p["table"])
    tried, own = [], None
    for cell in cells(columns):
        vals = tuple(value[c] for c in cell)
        counts: dict[tuple[str, ...], int] = {}
        for r in rows:
            key = tuple(r[c] for c in cell)
            counts[key] = counts.get(key, 0) + 1
        missing = next((c for c in cell if value[c] is None), None)
        n = 0 if missing else counts.get(vals, 0)
        tried.append((cell, missing, " ".join(named[c] for c in cell) if not missing else None, n))
        own = own_pool(counts, None if missing else vals, min_rows)
        if own is not None:
            p["where"] = tuple(zip(cell, own))
            break
    p["pool"] = {"by": dict(p.get("where", ())), "rows": tried[-1][3] if own is not None else len(rows),
                 "line": pool_line(p["table"], tried, own is not None, len(rows), min_rows)}
    return InputSpec(spec.name, spec.kind, spec.distribution, p, spec.source, spec.verified)


def pool_line(table: str, tried: list[tuple[tuple[str, ...], str | None, str | None, int]], found: bool, total: int,
              min_rows: int) -> str:
    """One line saying which rows of ``table`` an input was drawn from, how many, and why.

    ``tried``: the cells in the order tried, each ``(columns, missing, named, n)``: the first
    column the estimate has no value for (else ``None``), the cell's values as shown and its
    rows; ``found``: the last cell tried was drawn (else every row, ``total`` of them).
    """
    def why(cols: tuple[str, ...], missing: str | None, named: str | None, n: int) -> str:
        return f"{' x '.join(cols)}: " + (f"the estimate has no {missing}" if missing
                                          else f"{named} has {n}, fewer than {min_rows}")

    if found:
        cols, _, named, n = tried[-1]
        finer = "".join(f"; {why(*t)}" for t in tried[:-1])
        return f"{n} {named} rows of {table}.csv (the estimate's own {' and '.join(cols)}; at least {min_rows}{finer})"
    return f"all {total} rows of {table}.csv, pooled ({'; '.join(why(*t) for t in tried)})"


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
