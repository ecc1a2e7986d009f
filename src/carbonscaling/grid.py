"""Time-varying grid intensity: integrate a run over its calendar window, suggest a start.

A :class:`Profile` is a step function of grid intensity (gCO2e/kWh) in time: hourly,
monthly or yearly values, each holding from its timestamp to the next. Sources:

* :func:`region_profile`: the shipped table (``regions.csv``, Google Cloud region-carbon-info
  2021-2024, Apache-2.0) as a yearly step function per region. It is the only time series
  shipped: no maintained PyPI package ships sub-annual grid data offline (checked:
  codecarbon, gridemissions, sitefootprint, carbontracker fetch from APIs or ship annual
  country means), so sub-annual shape comes from the user's file.
* :func:`read_profile_csv`: a user's hourly (or any step) CSV in the layout grid-data
  services export: Electricity Maps (``Datetime (UTC)`` + ``Carbon Intensity gCO₂eq/kWh
  (LCA)`` or ``(direct)``), WattTime (``point_time`` + ``value`` in lbs/MWh, a *marginal*
  rate), or plain ``datetime,ci_g_per_kwh`` / ``month,ci_g_per_kwh`` (``YYYY-MM``).

:func:`window_intensity` averages the profile over ``[start, start + duration)`` hour by
hour (constant power: a training run draws flat power). Outside the profile's span, a
yearly profile holds its first/last year; an hourly or monthly profile covering at least a
whole year is repeated year by year (a "typical year"); anything else is an error naming
the span. :func:`suggest_start` ranks start months (and regions) by the run's operational
carbon.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from .carbon import check_number, region_intensity, region_table
from .errors import InputError

LB_PER_MWH_TO_G_PER_KWH = 453.59237 / 1000.0   # 1 lb = 453.59237 g (exact); 1 MWh = 1000 kWh
HOUR = np.timedelta64(1, "h")
MAX_HOURS = 100 * 8784
EM_TIME = "Datetime (UTC)"
EM_CI = {"lca": ("Carbon Intensity gCO₂eq/kWh (LCA)", "Carbon intensity gCO₂eq/kWh (Life cycle)"),
         "direct": ("Carbon Intensity gCO₂eq/kWh (direct)", "Carbon intensity gCO₂eq/kWh (Direct)")}


@dataclass(frozen=True)
class Profile:
    """Grid intensity as a step function: ``ci[i]`` holds from ``times[i]`` to ``times[i + 1]``."""

    name: str
    times: np.ndarray          # datetime64[h], strictly increasing
    ci: np.ndarray             # gCO2e/kWh
    step: str                  # "hour", "month", "year" (the finest spacing, for reporting)
    source: str
    end: np.datetime64         # end of the last step (exclusive)

    @property
    def span_hours(self) -> int:
        return int((self.end - self.times[0]) / HOUR)

    def mean(self) -> float:
        """Time-weighted mean intensity over the profile's own span."""
        edges = np.append(self.times, self.end)
        w = np.diff(edges).astype("timedelta64[h]").astype(float)
        return float(np.sum(w * self.ci) / np.sum(w))


def _utc_hour(text: str, field: str) -> np.datetime64:
    t = text.strip().replace("Z", "+00:00")
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        try:
            dt = datetime.strptime(t, "%Y-%m")
        except ValueError:
            raise InputError(field, f"is not an ISO date/time (YYYY-MM-DD[THH:MM[+HH:MM]] or YYYY-MM): {text!r}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return np.datetime64(dt.replace(minute=0, second=0, microsecond=0), "h")


def _next_step(t: np.datetime64, step: str) -> np.datetime64:
    if step == "year":
        return (t.astype("datetime64[Y]") + 1).astype("datetime64[h]")
    if step == "month":
        return (t.astype("datetime64[M]") + 1).astype("datetime64[h]")
    return t + HOUR


def make_profile(name: str, times: Iterable[np.datetime64], ci: Iterable[float], step: str, source: str) -> Profile:
    """A validated :class:`Profile` (sorted; duplicates and non-finite values rejected)."""
    t = np.array(list(times), dtype="datetime64[h]")
    v = np.array(list(ci), dtype=float)
    if len(t) == 0:
        raise InputError("profile", f"{name}: no rows")
    order = np.argsort(t, kind="stable")
    t, v = t[order], v[order]
    if np.any(np.diff(t) == np.timedelta64(0, "h")):
        raise InputError("profile", f"{name}: duplicate timestamp {t[np.flatnonzero(np.diff(t) == 0)[0]]}")
    bad = ~np.isfinite(v) | (v < 0) | (v > 2000)
    if bad.any():
        raise InputError("profile", f"{name}: intensity must be in [0, 2000] g/kWh, got {v[bad][0]!r} at {t[bad][0]}")
    return Profile(name, t, v, step, source, _next_step(t[-1], step))


def region_profile(region: str) -> Profile:
    """Yearly profile of a Google Cloud region from ``regions.csv`` (every year it has)."""
    region_intensity(region)  # unknown names get the did-you-mean error
    rows = [r for y in _years() for r in region_table(y) if r["region"].lower() == region.strip().lower()]
    times = [np.datetime64(f"{r['year']}-01-01T00", "h") for r in rows]
    return make_profile(rows[0]["region"], times, [r["ci_g_per_kwh"] for r in rows], "year",
                        "Google Cloud region-carbon-info (yearly, location-based), Apache-2.0: data/regions.csv")


def _years() -> list[int]:
    from .carbon import region_years
    return region_years()


def read_profile_csv(path: str | Path, *, basis: str = "lca", name: str | None = None) -> Profile:
    """A user's intensity CSV (Electricity Maps, WattTime or plain layout; see the module doc)."""
    p = Path(path)
    if not p.is_file():
        raise InputError("profile", f"no such file: {str(p)!r}")
    if basis not in EM_CI:
        raise InputError("basis", f"must be one of {', '.join(EM_CI)}, got {basis!r}")
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            rows = list(csv.DictReader(fh))
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError("profile", f"{p.name} is not a readable CSV ({err})") from None
    if not rows:
        raise InputError("profile", f"{p.name}: no data rows")
    cols = set(rows[0])
    if EM_TIME in cols:
        ci_col = next((c for c in EM_CI[basis] if c in cols), None)
        if ci_col is None:
            raise InputError("profile", f"{p.name}: Electricity Maps layout without a {basis} intensity column")
        tcol, factor, src = EM_TIME, 1.0, f"Electricity Maps export ({basis})"
    elif {"point_time", "value"} <= cols:
        tcol, ci_col, factor, src = "point_time", "value", LB_PER_MWH_TO_G_PER_KWH, "WattTime export (marginal, lbs/MWh)"
    elif "ci_g_per_kwh" in cols and ({"datetime", "timestamp", "month"} & cols):
        tcol = next(c for c in ("datetime", "timestamp", "month") if c in cols)
        ci_col, factor, src = "ci_g_per_kwh", 1.0, "user CSV"
    else:
        raise InputError("profile", f"{p.name}: unrecognised columns {sorted(cols)[:6]}; expected Electricity Maps "
                                    f"('{EM_TIME}', intensity), WattTime (point_time, value) or datetime/month,ci_g_per_kwh")
    times, vals = [], []
    for i, r in enumerate(rows, start=2):
        raw = (r.get(ci_col) or "").strip()
        if raw == "":
            continue  # gaps are held by the previous value
        times.append(_utc_hour(r[tcol], f"profile line {i}"))
        try:
            vals.append(float(raw) * factor)
        except ValueError:
            raise InputError(f"profile line {i}", f"intensity is not a number: {raw!r}") from None
    step = "month" if tcol == "month" else "hour"
    return make_profile(name or p.stem, times, vals, step, f"{src}: {p.name}")


def _lookup(profile: Profile, hours: np.ndarray) -> np.ndarray:
    """Profile value at each hour, wrapping or clamping outside its span (see the module doc)."""
    t0, t1 = profile.times[0], profile.end
    h = hours.copy()
    outside = (h < t0) | (h >= t1)
    if outside.any():
        if profile.step == "year":
            h = np.clip(h, t0, t1 - HOUR)
        elif profile.span_hours >= 8760:
            for _ in range(2 * MAX_HOURS // 8760 + 2):  # whole-year shifts until every hour is inside
                lo, hi = h < t0, h >= t1
                if not (lo.any() or hi.any()):
                    break
                h = _shift_years(h, lo.astype(np.int64) - hi.astype(np.int64))
            h = np.clip(h, t0, t1 - HOUR)  # a leap day at the very edge of the span
        else:
            span = f"{profile.times[0]} .. {profile.end}"
            raise InputError("start", f"the run's window leaves the profile {profile.name!r} ({span}); a profile "
                                      "shorter than a year cannot be repeated")
    idx = np.searchsorted(profile.times, h, side="right") - 1
    return profile.ci[np.clip(idx, 0, len(profile.ci) - 1)]


def _shift_years(h: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """Move each hour by ``dy`` calendar years (Feb 29 lands on Mar 1 in a common year)."""
    months = h.astype("datetime64[M]")
    offset = h - months.astype("datetime64[h]")
    return (months + 12 * dy.astype("timedelta64[M]")).astype("datetime64[h]") + offset


def window_hours(start: Any, duration_h: float) -> np.ndarray:
    """Hour stamps covering ``[start, start + duration_h)`` (the last one partial)."""
    s = start if isinstance(start, np.datetime64) else _utc_hour(str(start), "start")
    dur = check_number("duration_h", duration_h, 0, MAX_HOURS, lo_open=True)
    return np.arange(s, s + int(math.ceil(dur)), dtype="datetime64[h]").astype("datetime64[h]")


def window_intensity(profile: Profile, start: Any, duration_h: float) -> dict[str, Any]:
    """Mean intensity over the run's window, and the share of hours in each calendar month."""
    hours = window_hours(start, duration_h)
    w = np.ones(len(hours))
    w[-1] = duration_h - (len(hours) - 1)  # the last, partial hour
    ci = _lookup(profile, hours)
    mean = float(np.sum(w * ci) / np.sum(w))
    months = hours.astype("datetime64[M]")
    by_month = {}
    for m in np.unique(months):
        sel = months == m
        by_month[str(m)] = {"hours": float(w[sel].sum()), "ci_g_per_kwh": float(np.sum(w[sel] * ci[sel]) / w[sel].sum())}
    return {"profile": profile.name, "start": str(hours[0]), "end": str(hours[0] + int(math.ceil(duration_h))),
            "duration_h": float(duration_h), "ci_g_per_kwh": mean, "months": by_month, "source": profile.source}


def on_grid(carbon: Any, profile: Profile, start: Any) -> dict[str, Any]:
    """A :class:`~carbonscaling.carbon.CarbonResult` re-priced over its calendar window.

    Operational carbon is linear in the intensity, so it scales by window mean / point CI;
    embodied carbon does not depend on the grid.
    """
    b = carbon.breakdown
    # the calendar window is the expected wall clock (with goodput losses) where the model has one
    win = window_intensity(profile, start, float(b.get("expected_duration_h") or b["duration_h"]))
    ci0 = float(b["ci_g_per_kwh"])
    op = carbon.energy_kwh * win["ci_g_per_kwh"] / 1e6
    return {**win, "energy_kwh": carbon.energy_kwh, "operational_tco2e": op, "embodied_tco2e": carbon.embodied_tco2e,
            "total_tco2e": op + carbon.embodied_tco2e, "point_ci_g_per_kwh": ci0,
            "point_operational_tco2e": carbon.operational_tco2e}


def month_starts(first: str, last: str) -> list[np.datetime64]:
    """First hour of every month from ``first`` to ``last`` (``YYYY-MM``), inclusive."""
    a, b = _utc_hour(first, "from").astype("datetime64[M]"), _utc_hour(last, "to").astype("datetime64[M]")
    if b < a:
        raise InputError("to", f"must not be before 'from' ({first}), got {last}")
    return [m.astype("datetime64[h]") for m in np.arange(a, b + 1)]


def suggest_start(carbon: Any, profiles: Mapping[str, Profile], starts: Iterable[np.datetime64]) -> dict[str, Any]:
    """Every (region/profile, start) ranked by the run's total carbon; the best first."""
    rows = []
    for name, prof in profiles.items():
        for s in starts:
            r = on_grid(carbon, prof, s)
            rows.append({"profile": name, "start": r["start"], "end": r["end"], "ci_g_per_kwh": r["ci_g_per_kwh"],
                         "operational_tco2e": r["operational_tco2e"], "total_tco2e": r["total_tco2e"]})
    if not rows:
        raise InputError("starts", "give at least one start date and one profile")
    rows.sort(key=lambda r: (r["total_tco2e"], r["start"]))
    worst = max(r["total_tco2e"] for r in rows)
    return {"best": rows[0], "rows": rows, "saving_vs_worst_tco2e": worst - rows[0]["total_tco2e"]}
