"""Accounting modes and water: what a sustainability report needs next to the carbon figure.

* :func:`scope2`: location-based and market-based operational emissions side by side
  (GHG Protocol Scope 2 Guidance, 2015). Location-based uses the grid's average intensity
  (what :mod:`carbon` computes). Market-based uses the user's contractual instruments: a
  contract intensity covering all consumption (``contractual_ci``, e.g. a supplier-specific
  rate or PPA), or a share of consumption matched by certificates at 0 g/kWh
  (``renewable_share``), with the rest at the residual mix (``residual_ci``; the grid
  average when none is given, as the guidance allows with disclosure). ``renewable_share=
  "cfe"`` takes Google's hourly carbon-free-energy share of the region (regions.csv) as a
  proxy: it is Google's 24/7 CFE metric, not a certificate count. Embodied carbon is Scope 3
  (category 2, capital goods) and is the same under both.
* :func:`water_footprint`: on-site water (IT energy x WUE) and off-site water (facility
  energy x EWIF, the water consumed generating the electricity); defaults in ``water.yaml``.
"""

from __future__ import annotations

from typing import Any

from ._data import load_yaml
from .carbon import check_number, region_intensity
from .errors import InputError


def water_defaults() -> dict[str, Any]:
    w = load_yaml("water.yaml")
    return {**{k: float(v) for k, v in w["defaults"].items()}, "source": w["source"], "verified": bool(w["verified"])}


def scope2(carbon: Any, *, contractual_ci: float | None = None, renewable_share: Any = None,
           residual_ci: float | None = None, region: str | None = None) -> dict[str, Any]:
    """Location- and market-based operational tCO2e of a ``CarbonResult`` (see the module doc)."""
    b = carbon.breakdown
    energy = float(carbon.energy_kwh)
    loc_ci = float(b["ci_g_per_kwh"])
    notes = []
    if contractual_ci is not None and renewable_share is not None:
        raise InputError("contractual_ci", "give either a contract intensity or a renewable share, not both")
    if contractual_ci is not None:
        market_ci = check_number("contractual_ci", contractual_ci, 0, 2000)
        share, method = 1.0, "contract intensity for all consumption"
    elif renewable_share is not None:
        if renewable_share == "cfe":
            if region is None:
                raise InputError("renewable_share", "'cfe' needs a region (Google's CFE share is per region)")
            cfe = region_intensity(region)["cfe_fraction"]
            if cfe is None:
                raise InputError("renewable_share", f"region {region!r} has no Google CFE figure")
            share = float(cfe)
            notes.append(f"covered share = Google CFE of {region} ({share:.2f}): a 24/7 CFE proxy, not certificates")
        else:
            share = check_number("renewable_share", renewable_share, 0, 1)
        resid = loc_ci if residual_ci is None else check_number("residual_ci", residual_ci, 0, 2000)
        if residual_ci is None:
            notes.append("no residual mix given: uncovered consumption at the location-based grid average "
                         "(allowed by the Scope 2 Guidance when disclosed; it understates market-based emissions)")
        market_ci = (1.0 - share) * resid
        method = f"{share:.0%} covered by zero-emission certificates, rest at {resid:g} g/kWh"
    else:
        market_ci, share, method = loc_ci, 0.0, "no contractual instruments: market-based = location-based"
    return {"energy_kwh": energy, "location_ci_g_per_kwh": loc_ci, "location_tco2e": energy * loc_ci / 1e6,
            "market_ci_g_per_kwh": market_ci, "market_tco2e": energy * market_ci / 1e6,
            "covered_share": share, "market_method": method, "notes": notes,
            "embodied_tco2e_scope3": float(carbon.embodied_tco2e)}


def water_footprint(carbon: Any, *, wue_l_per_kwh: float | None = None,
                    ewif_l_per_kwh: float | None = None) -> dict[str, Any]:
    """On-site and off-site water consumption (litres) of a ``CarbonResult``."""
    d = water_defaults()
    wue = d["wue_l_per_kwh"] if wue_l_per_kwh is None else check_number("wue_l_per_kwh", wue_l_per_kwh, 0, 20)
    ewif = d["ewif_l_per_kwh"] if ewif_l_per_kwh is None else check_number("ewif_l_per_kwh", ewif_l_per_kwh, 0, 100)
    onsite = float(carbon.it_energy_kwh) * wue
    offsite = float(carbon.energy_kwh) * ewif
    src = []
    if wue_l_per_kwh is None or ewif_l_per_kwh is None:
        src.append(d["source"])
    return {"wue_l_per_kwh": wue, "ewif_l_per_kwh": ewif, "onsite_l": onsite, "offsite_l": offsite,
            "total_l": onsite + offsite, "total_m3": (onsite + offsite) / 1000.0,
            "defaults_used": {"wue": wue_l_per_kwh is None, "ewif": ewif_l_per_kwh is None},
            "source": "; ".join(src) or "user values", "verified": d["verified"] if src else True}
