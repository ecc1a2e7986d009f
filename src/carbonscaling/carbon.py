"""Stage 4: operational and embodied carbon of a training run (SPEC.md section 4).

Small pure functions of immutable specs; :func:`run_carbon` chains them into a frozen
:class:`CarbonResult` and :func:`ideal_carbon` gives the papers' "ideal" curve. Units
are in the names (W, kWh, gCO2e/kWh, tCO2e; kg where a name says ``_kg``). Constants
come from cited data files: ``power.yaml`` (power split, PUE/CI/lifetime defaults),
``cpa.csv`` (carbon per area / per GB), ``embodied.yaml`` (infrastructure share, vendor
per-device figures), ``regions.csv`` (Google Cloud grid intensity by region and year).
Formulas, defaults and the choices made where the papers are silent: docs/carbon.md.

    CO_dev   = N_dev DU PUE CI (P_static + alpha P_dyn U),  P_dyn = 0.158 TDP
    CO_other = N_nodes DU PUE CI P_node_other + N_dev DU PUE CI P_network
    CO_emb   = DU / lifetime x (N_dev device_kg + N_nodes host_kg) x (1 + infrastructure share)
"""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass, fields
from functools import lru_cache
from typing import Any, Mapping

from ._data import load_csv, load_yaml
from .errors import InputError, UnknownNameError
from .formats import canonical_precision
from .hardware import System, cpa_table, hbm_cpa, load_system, logic_cpa

HOURS_PER_YEAR = 365 * 24  # unit conversion; LLMCarbon amortises over 365-day years too
POWER_SPLITS = ("default", "low_static")
EMBODIED_MODES = ("paper", "vendor")
_COUNTRY = re.compile(r"^(?:country:\s*(?P<any>.+)|(?P<iso>[A-Z]{3}))$")


# ---- validation ------------------------------------------------------------------
def _fmt(x: float) -> str:
    return f"{x:,.0f}" if float(x).is_integer() and abs(x) < 1e9 else f"{x:g}"


def check_number(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                 integer: bool = False) -> float:
    """``value`` as a float if it is a finite number in ``[lo, hi]`` (``(lo, hi]``), else InputError."""
    kind = "an integer" if integer else "a finite number"
    rng = f"{'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}]"
    bad = isinstance(value, bool) or not isinstance(value, numbers.Real)
    if not bad:
        v = float(value)
        bad = (not math.isfinite(v) or v < lo or v > hi or (lo_open and v == lo)
               or (integer and not v.is_integer()))
    if bad:
        raise InputError(field, f"must be {kind} in {rng}, got {value!r}")
    return v


def _choice(field: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise InputError(field, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def defaults() -> dict[str, float]:
    """Default PUE, CI (g/kWh), lifetime (years) and alpha, from ``power.yaml``."""
    p = load_yaml("power.yaml")
    return {**{k: float(v) for k, v in p["defaults"].items()}, "alpha": float(p["alpha"])}


# ---- grid intensity ----------------------------------------------------------------
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


def resolve_grid_intensity(ci: Any = None, year: int | None = None) -> tuple[float, str]:
    """``(ci_g_per_kwh, source)`` from a number, a numeric string, a region or a country.

    Numbers must be finite and in [0, 2000] g/kWh. Strings name a Google Cloud region
    (``us-east5``; ``year`` picks the column, default the latest) or, through the optional
    ``codecarbon`` package, a country: an upper-case ISO3 code (``FRA``) or ``country:NAME``.
    ``None`` gives the default of ``power.yaml``.
    """
    explicit = ci is not None
    if ci is None:
        ci = defaults()["ci_g_per_kwh"]
    if isinstance(ci, str):
        try:
            ci = float(ci)
        except ValueError:
            if m := _COUNTRY.match(ci.strip()):
                return country_intensity(m.group("any") or m.group("iso"))
            row = region_intensity(ci, year)
            return row["ci_g_per_kwh"], f"{row['region']} ({row['location']}) {row['year']}: {row['source']}"
    if year is not None and explicit:
        raise InputError("year", "applies to a region name, not to a grid intensity given as a number")
    return check_number("ci", ci, 0, 2000), "value"


def grid_intensity(region_or_value: Any, year: int | None = None) -> float:
    """Grid carbon intensity in gCO2e/kWh (see :func:`resolve_grid_intensity`)."""
    return resolve_grid_intensity(region_or_value, year)[0]


# ---- power and operational carbon ----------------------------------------------------
def power_split(tdp_w: float, mode: str = "default") -> tuple[float, float]:
    """``(p_static_w, p_dynamic_w)``: dynamic is 0.158 TDP (Fernandez et al. 2024), static the
    rest; ``"low_static"`` swaps the shares (v1 Fig. 4)."""
    frac = float(load_yaml("power.yaml")["dynamic_fraction_of_tdp"])
    if _choice("power_split", mode, POWER_SPLITS) == "low_static":
        frac = 1.0 - frac
    p_dyn = frac * tdp_w
    return tdp_w - p_dyn, p_dyn


def n_nodes(system: System, n_devices: int) -> int:
    """Whole nodes needed for ``n_devices`` accelerators."""
    return math.ceil(n_devices / system.devices_per_node)


def operational_terms(system: System, n_devices: int, duration_h: float, *, utilization: float,
                      pue: float, ci_g_per_kwh: float, alpha: float, split: str = "default") -> dict[str, float]:
    """Energy (kWh, IT side before PUE) and carbon (tCO2e, with PUE) of each operational term."""
    p_static, p_dyn = power_split(system.device.tdp_w, split)
    nodes = n_nodes(system, n_devices)
    kwh = {
        "device_static": n_devices * duration_h * p_static / 1000.0,
        "device_dynamic": n_devices * duration_h * alpha * p_dyn * utilization / 1000.0,
        "node_other": nodes * duration_h * system.node_other_power_w / 1000.0,
        "network": n_devices * duration_h * system.network_power_w_per_device / 1000.0,
    }
    out: dict[str, float] = {"p_static_w": p_static, "p_dynamic_w": p_dyn,
                             "device_power_w": p_static + alpha * p_dyn * utilization, "n_nodes": nodes}
    for k, v in kwh.items():
        out[f"{k}_energy_kwh"] = v
        out[f"{k}_tco2e"] = v * pue * ci_g_per_kwh / 1e6
    return out


# ---- embodied carbon ---------------------------------------------------------------
def embodied_terms(system: System, n_devices: int, duration_h: float, *, lifetime_years: float,
                   mode: str = "paper", infrastructure: bool = True,
                   vendor_kg_per_device: float | None = None) -> dict[str, Any]:
    """Embodied tCO2e of each item for a run of ``duration_h`` hours, with a low/high band.

    The band spans the per-device figure's published spread (``embodied.yaml``: vendor range,
    widened to include the central value) and the infrastructure share's range; host items
    (CPU, DRAM, SSD) have point values.
    """
    dev = system.device
    emb = load_yaml("embodied.yaml")
    vend = emb["vendor_anchored"]
    v_lo, v_hi = (float(x) for x in vend["per_device_kg"]["range"])
    logic, hbm = logic_cpa(dev), hbm_cpa(dev)
    cpa = cpa_table()
    die_kg = dev.die_area_mm2 / 100.0 * logic
    hbm_kg = dev.hbm_gb * hbm
    if _choice("embodied_mode", mode, EMBODIED_MODES) == "paper":
        device_kg = die_kg + hbm_kg
        source = (f"paper: die {dev.die_area_mm2:g} mm2 x {logic:g} kg/cm2 ({dev.process_node}) + "
                  f"{dev.hbm_gb:g} GB x {hbm:g} kg/GB ({dev.hbm_type}); cpa.csv (CarbonScaling v1 Tables 3-4)")
    else:
        device_kg = float(vendor_kg_per_device or vend["per_device_kg"]["default"])
        source = f"vendor: {device_kg:g} kg per device; {vend['source']}"
    host = {"cpu": system.cpus_per_node * system.cpu_die_area_mm2 / 100.0 * logic,
            "dram": system.dram_gb_per_node * cpa[("memory", "DRAM")],
            "ssd": system.ssd_gb_per_node * cpa[("memory", "SSD")]}
    nodes = n_nodes(system, n_devices)
    amort = duration_h / (lifetime_years * HOURS_PER_YEAR)
    t = amort / 1000.0  # kg over the whole life -> tCO2e for this run
    infra = emb["infrastructure"]
    f_mid = float(infra["fraction_of_manufacturing"]) if infrastructure else 0.0
    f_lo, f_hi = (float(x) for x in infra["fraction_range"]) if infrastructure else (0.0, 0.0)
    host_t = {k: nodes * v * t for k, v in host.items()}
    accel_t = n_devices * device_kg * t
    manuf = accel_t + sum(host_t.values())
    paper = mode == "paper"
    return {
        "amortisation_fraction": amort, "cpa_logic_kg_per_cm2": logic, "cpa_hbm_kg_per_gb": hbm,
        "cpa_dram_kg_per_gb": cpa[("memory", "DRAM")], "cpa_ssd_kg_per_gb": cpa[("memory", "SSD")],
        "device_embodied_kg": device_kg, "host_embodied_kg_per_node": sum(host.values()),
        "infrastructure_fraction": f_mid,
        "embodied_accelerator_tco2e": accel_t,
        "embodied_die_tco2e": n_devices * die_kg * t if paper else 0.0,
        "embodied_hbm_tco2e": n_devices * hbm_kg * t if paper else 0.0,
        **{f"embodied_{k}_tco2e": v for k, v in host_t.items()},
        "embodied_manufacturing_tco2e": manuf,
        "embodied_infrastructure_tco2e": f_mid * manuf,
        "embodied_tco2e": (1.0 + f_mid) * manuf,
        "embodied_low_tco2e": (n_devices * min(device_kg, v_lo) * t + sum(host_t.values())) * (1.0 + f_lo),
        "embodied_high_tco2e": (n_devices * max(device_kg, v_hi) * t + sum(host_t.values())) * (1.0 + f_hi),
        "embodied_source": source,
    }


# ---- result ----------------------------------------------------------------------
class FrozenDict(dict):
    """A read-only dict: JSON-, pickle- and ``dataclasses.asdict``-friendly, unlike mappingproxy."""

    def _read_only(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("CarbonResult.breakdown is read-only")

    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self):
        return (FrozenDict, (dict(self),))


@dataclass(frozen=True)
class CarbonResult:
    """Carbon of one run. Energies in kWh: ``energy_kwh`` is facility energy (IT x PUE);
    ``device_energy_kwh`` / ``other_energy_kwh`` (node-other + network) and their sum
    ``it_energy_kwh`` are IT-side, before PUE. Carbon in tCO2e. ``breakdown`` holds every
    intermediate and the inputs used (flat, JSON-safe)."""

    energy_kwh: float
    it_energy_kwh: float
    device_energy_kwh: float
    other_energy_kwh: float
    operational_tco2e: float
    embodied_tco2e: float
    total_tco2e: float
    embodied_low_tco2e: float
    embodied_high_tco2e: float
    embodied_mode: str
    embodied_source: str
    ci_source: str
    breakdown: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "breakdown", FrozenDict(self.breakdown))

    @property
    def total_low_tco2e(self) -> float:
        return self.operational_tco2e + self.embodied_low_tco2e

    @property
    def total_high_tco2e(self) -> float:
        return self.operational_tco2e + self.embodied_high_tco2e

    def _top(self) -> dict[str, Any]:
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "breakdown"}
        return {**top, "total_low_tco2e": self.total_low_tco2e, "total_high_tco2e": self.total_high_tco2e}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the totals at top level and ``breakdown`` as a nested dict."""
        return {**self._top(), "breakdown": dict(self.breakdown)}

    def to_row(self) -> dict[str, Any]:
        """One flat dict (totals then breakdown), e.g. for a pandas row."""
        return {**self.breakdown, **self._top()}


# ---- entry points ------------------------------------------------------------------
def _duration(n_devices: float, duration_h: Any, device_hours: Any) -> float:
    if (duration_h is None) == (device_hours is None):
        got = "neither" if duration_h is None else "both"
        raise InputError("duration_h", f"give exactly one of duration_h and device_hours, got {got}")
    if duration_h is not None:
        return check_number("duration_h", duration_h, 0, 1e9, lo_open=True)
    dh = check_number("device_hours", device_hours, 0, 1e14, lo_open=True)
    if dh / n_devices > 1e9:
        raise InputError("device_hours", f"device_hours / n_devices must be <= 1,000,000,000 h, got {dh / n_devices:g}")
    return dh / n_devices


def run_carbon(model: Any, system: Any, *, n_devices: int, duration_h: float | None = None,
               device_hours: float | None = None, utilization: float, pue: float | None = None,
               ci: Any = None, year: int | None = None, lifetime_years: float | None = None,
               alpha: float | None = None, power_split: str = "default", embodied_mode: str = "paper",
               infrastructure: bool = True, include_embodied: bool = True,
               vendor_kg_per_device: float | None = None) -> CarbonResult:
    """Operational + embodied carbon of a run on ``n_devices`` devices of ``system``.

    ``model`` is optional (a ModelSpec, catalog name or YAML path; only reported).
    ``system`` is anything :func:`hardware.load_system` accepts. Give exactly one of
    ``duration_h`` (wall clock) and ``device_hours`` (= n_devices x duration_h). ``ci`` is
    g/kWh or a region/country (see :func:`resolve_grid_intensity`). ``None`` for pue, ci,
    lifetime_years and alpha takes ``power.yaml``'s defaults (1.1, 323.05 g/kWh = us-east5
    2024, 6 years, 1.0). Bad input raises :class:`InputError` naming the field.
    """
    d = defaults()
    n = int(check_number("n_devices", n_devices, 1, 1e12, integer=True))
    dur = _duration(n, duration_h, device_hours)
    u = check_number("utilization", utilization, 0, 1, lo_open=True)
    pue_v = check_number("pue", d["pue"] if pue is None else pue, 1, 3)
    ci_v, ci_src = resolve_grid_intensity(ci, year)
    life = check_number("lifetime_years", d["lifetime_years"] if lifetime_years is None else lifetime_years,
                        0, 50, lo_open=True)
    a = check_number("alpha", d["alpha"] if alpha is None else alpha, 0, 10)
    _choice("power_split", power_split, POWER_SPLITS)
    _choice("embodied_mode", embodied_mode, EMBODIED_MODES)
    if vendor_kg_per_device is not None:
        check_number("vendor_kg_per_device", vendor_kg_per_device, 0, 1e5, lo_open=True)
        if embodied_mode != "vendor":
            raise InputError("vendor_kg_per_device", "applies only with embodied_mode 'vendor'")
    for name, flag in (("infrastructure", infrastructure), ("include_embodied", include_embodied)):
        if not isinstance(flag, bool):
            raise InputError(name, f"must be true or false, got {flag!r}")
    sys_ = load_system(system)
    model_name = None
    if model is not None:
        from .scaling import resolve_model
        model_name = resolve_model(model).name

    op = operational_terms(sys_, n, dur, utilization=u, pue=pue_v, ci_g_per_kwh=ci_v, alpha=a, split=power_split)
    emb = embodied_terms(sys_, n, dur, lifetime_years=life, mode=embodied_mode, infrastructure=infrastructure,
                         vendor_kg_per_device=vendor_kg_per_device)
    if not include_embodied:
        emb = {k: (0.0 if k.startswith("embodied_") and k.endswith("_tco2e") else v) for k, v in emb.items()}
        emb["embodied_source"] = "excluded (include_embodied=False)"
    device_kwh = op["device_static_energy_kwh"] + op["device_dynamic_energy_kwh"]
    other_kwh = op["node_other_energy_kwh"] + op["network_energy_kwh"]
    operational = sum(op[f"{k}_tco2e"] for k in ("device_static", "device_dynamic", "node_other", "network"))
    inputs = {"model": model_name, "device": sys_.device.name, "n_devices": n, "duration_h": dur,
              "device_hours": n * dur, "utilization": u, "pue": pue_v, "ci_g_per_kwh": ci_v,
              "lifetime_years": life, "alpha": a, "power_split": power_split, "infrastructure": infrastructure,
              "include_embodied": include_embodied, "tdp_w": sys_.device.tdp_w,
              "devices_per_node": sys_.devices_per_node, "node_other_power_w": sys_.node_other_power_w,
              "network_power_w_per_device": sys_.network_power_w_per_device}
    top = ("embodied_tco2e", "embodied_low_tco2e", "embodied_high_tco2e", "embodied_source")
    breakdown = {**inputs, **op, **{k: v for k, v in emb.items() if k not in top}}
    return CarbonResult(
        energy_kwh=(device_kwh + other_kwh) * pue_v, it_energy_kwh=device_kwh + other_kwh,
        device_energy_kwh=device_kwh, other_energy_kwh=other_kwh, operational_tco2e=operational,
        embodied_tco2e=emb["embodied_tco2e"], total_tco2e=operational + emb["embodied_tco2e"],
        embodied_low_tco2e=emb["embodied_low_tco2e"], embodied_high_tco2e=emb["embodied_high_tco2e"],
        embodied_mode=embodied_mode if include_embodied else "none", embodied_source=emb["embodied_source"],
        ci_source=ci_src, breakdown=breakdown)


def ideal_carbon(train_flops: float, system: Any, *, deadline_days: float = 90, pue: float | None = None,
                 ci: Any = None, year: int | None = None, precision: str = "bf16") -> CarbonResult:
    """The papers' "ideal" carbon (v1/v2 Fig. 4): every device at peak throughput and TDP.

    Devices ``N = ceil(C / (T peak))`` for the deadline ``T`` (SPEC section 3 default: 90 days);
    the run takes ``C / (N peak)`` seconds and draws ``C / peak x TDP`` of device energy,
    times PUE. No node-other or network power, no embodied carbon.
    """
    d = defaults()
    c = check_number("train_flops", train_flops, 0, 1e45, lo_open=True)
    days = check_number("deadline_days", deadline_days, 0, 36500, lo_open=True)
    pue_v = check_number("pue", d["pue"] if pue is None else pue, 1, 3)
    ci_v, ci_src = resolve_grid_intensity(ci, year)
    precision = canonical_precision(precision)
    sys_ = load_system(system)
    peak = sys_.device.peak_flops(precision)
    device_s = c / peak
    n = max(1, math.ceil(device_s / (days * 86400.0) - 1e-9))
    it_kwh = device_s * sys_.device.tdp_w / 3.6e6
    op = it_kwh * pue_v * ci_v / 1e6
    breakdown = {"device": sys_.device.name, "train_flops": c, "deadline_days": days, "precision": precision,
                 "peak_flops": peak, "tdp_w": sys_.device.tdp_w, "n_devices": n, "duration_h": device_s / n / 3600.0,
                 "device_hours": device_s / 3600.0, "pue": pue_v, "ci_g_per_kwh": ci_v, "utilization": 1.0}
    return CarbonResult(
        energy_kwh=it_kwh * pue_v, it_energy_kwh=it_kwh, device_energy_kwh=it_kwh, other_energy_kwh=0.0,
        operational_tco2e=op, embodied_tco2e=0.0, total_tco2e=op, embodied_low_tco2e=0.0,
        embodied_high_tco2e=0.0, embodied_mode="none", embodied_source="none (ideal: no embodied carbon)",
        ci_source=ci_src, breakdown=breakdown)
