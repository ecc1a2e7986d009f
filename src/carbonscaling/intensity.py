"""Grid carbon intensity: Google Cloud regions by year (``regions.csv``), countries through the
optional ``codecarbon`` package, or a number (SPEC.md section 4)."""

from __future__ import annotations

import numbers
import re
from functools import lru_cache
from typing import Any

from ._data import load_csv, load_yaml
from .errors import InputError, UnknownNameError
from .checks import check_number

_COUNTRY = re.compile(r"^(?:country:\s*(?P<any>.+)|(?P<iso>[A-Z]{3}))$")


def _default_ci() -> float:
    return float(load_yaml("power.yaml")["defaults"]["ci_g_per_kwh"])


@lru_cache(maxsize=None)
def _region_rows() -> dict[tuple[str, int], dict[str, Any]]:
    out = {}
    for r in load_csv("regions.csv"):
        cfe = r["cfe_fraction"].strip()
        out[(r["region"].strip().lower(), int(r["year"]))] = {
            "region": r["region"].strip(), "location": r["location"], "year": int(r["year"]),
            "cfe_fraction": float(cfe) if cfe else None, "ci_g_per_kwh": float(r["ci_g_per_kwh"]),
            "source": r["source"]}
    return out


def region_years() -> list[int]:
    return sorted({y for _, y in _region_rows()})


def _year(year: int | None) -> int:
    years = region_years()
    if year is None:
        return years[-1]
    if isinstance(year, bool) or not isinstance(year, numbers.Integral) or int(year) not in years:
        raise InputError("year", f"must be one of {', '.join(map(str, years))}, got {year!r}")
    return int(year)


def region_table(year: int | None = None) -> list[dict[str, Any]]:
    """Rows of ``regions.csv`` for one year (default: the latest), sorted by region."""
    y = _year(year)
    return sorted((dict(r) for (_, ry), r in _region_rows().items() if ry == y), key=lambda r: r["region"])


def region_intensity(region: str, year: int | None = None) -> dict[str, Any]:
    """The ``regions.csv`` row of a Google Cloud region (case-insensitive) in ``year``."""
    y = _year(year)
    rows = _region_rows()
    key = region.strip().lower()
    if (key, y) in rows:
        return dict(rows[(key, y)])
    other = sorted(ry for rk, ry in rows if rk == key)
    if other:
        raise InputError("year", f"region {region!r} has no {y} figure; available years: "
                                 f"{', '.join(map(str, other))}")
    raise UnknownNameError("region", region, [r["region"] for r in region_table(y)])


def country_intensity(country: str) -> tuple[float, str]:
    """Country grid intensity from the optional ``codecarbon`` package (ISO3 code or name)."""
    try:
        from codecarbon.input import DataSource
    except ImportError:
        raise InputError("ci", f"country lookups ({country!r}) need the optional codecarbon package: "
                               "pip install carbonscaling[countries]") from None
    mix = DataSource().get_global_energy_mix_data()
    key = country.strip().upper()
    if key not in mix:
        by_name = {str(v.get("country_name", "")).lower(): k for k, v in mix.items()}
        key = by_name.get(country.strip().lower(), key)
    if key not in mix:
        raise UnknownNameError("country", country, mix)
    rec = mix[key]
    ci = check_number("ci", float(rec["carbon_intensity"]), 0, 2000)
    return ci, f"codecarbon global energy mix: {rec.get('country_name', key)} ({key}) {rec.get('year', '')}".strip()


def _region_or_hint(text: str, year: int | None) -> dict[str, Any]:
    """:func:`region_intensity`, with the error saying what else ``text`` could have meant:
    a number with a unit ('57g') or a lower-case country code ('fra')."""
    try:
        return region_intensity(text, year)
    except UnknownNameError as e:
        t = text.strip()
        if t and (t[0].isdigit() or t[0] in ".+-"):
            raise InputError("ci", f"must be a number of g/kWh in [0, 2000] (no unit), a region or an ISO3 "
                                   f"country, got {text!r}") from None
        if len(t) == 3 and t.isalpha() and not e.message.count("did you mean"):
            raise InputError(e.field, f"unknown region {text!r}; a country is given by its upper-case ISO3 code "
                                      f"({t.upper()!r}; needs pip install carbonscaling[countries])") from None
        raise


def resolve_grid_intensity(ci: Any = None, year: int | None = None) -> tuple[float, str]:
    """``(ci_g_per_kwh, source)`` from a number, a numeric string, a region or a country.

    Numbers must be finite and in [0, 2000] g/kWh. Strings name a Google Cloud region
    (``us-east5``; ``year`` picks the column, default the latest) or, through the optional
    ``codecarbon`` package, a country: an upper-case ISO3 code (``FRA``) or ``country:NAME``.
    ``None`` gives the default of ``power.yaml``.
    """
    explicit = ci is not None
    if ci is None:
        ci = _default_ci()
    if isinstance(ci, str):
        try:
            if not ci.isascii():  # float() would read '５７' as 57: numbers are ASCII
                raise ValueError(ci)
            ci = float(ci)
        except ValueError:
            if m := _COUNTRY.match(ci.strip()):
                return country_intensity(m.group("any") or m.group("iso"))
            row = _region_or_hint(ci, year)
            return row["ci_g_per_kwh"], f"{row['region']} ({row['location']}) {row['year']}: {row['source']}"
    if year is not None:  # a year with the default intensity would be silently ignored
        raise InputError("year", "applies to a region name, not to a grid intensity given as a number"
                         if explicit else "applies to a region name (region or ci): the default grid intensity "
                         "has no year")
    value = check_number("ci", ci, 0, 2000)
    return value, ("given as a number" if explicit else f"default of data/power.yaml ({value:g} g/kWh)")


def grid_intensity(region_or_value: Any, year: int | None = None) -> float:
    """Grid carbon intensity in gCO2e/kWh (see :func:`resolve_grid_intensity`)."""
    return resolve_grid_intensity(region_or_value, year)[0]


