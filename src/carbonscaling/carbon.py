"""Stage 4: operational and embodied carbon of a training run (CarbonScaling v1/v2, extended).

Small functions of immutable inputs; :func:`run_carbon` chains them into a frozen
:class:`CarbonResult`, :func:`carbon_scorer` prices many layouts at once with the same
formulas (the search's carbon objective), and :func:`ideal_carbon` gives the papers'
"ideal" curve. Units are in the names (W, kWh, gCO2e/kWh, tCO2e; kg where a name says
``_kg``). Constants come from cited data files: ``power.yaml`` (power models, allocation,
lifetime policy, PUE/CI/lifetime defaults), ``goodput.yaml`` (interruptions, restarts,
checkpoints), ``cpa.csv`` and ``embodied.yaml`` (embodied), ``regions.csv`` (grid).
Formulas, defaults and choices: docs/carbon.md.

    expected wall clock = steady-state wall clock / goodput            (goodput.py)
    E_term   = N x wall x (train share P_train + wait share P_wait + idle share P_idle)
    CO_op    = sum(E_term) x PUE x CI
    CO_emb   = amortisation x (N device_kg + nodes host_kg) x (1 + infrastructure share)

Power models (power.py): ``measured`` (default; metered MLPerf node power, accelerators driven
by their busy share), ``nameplate`` (TDP + system maximum: an upper bound) and ``paper``
(static + alpha x dynamic x MFU, the CarbonScaling papers).

Code: power, goodput shares and kWh in :mod:`carbonscaling.carbon_operational`, embodied
carbon in :mod:`carbonscaling.carbon_embodied`, the result type in
:mod:`carbonscaling.carbon_result`, settings in :mod:`carbonscaling.carbon_settings`; every
name is importable from this module.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import Any, Mapping

import numpy as np

from . import power as pw  # noqa: F401 - the name carbon.pw, as before the split
from ._data import load_yaml
from .checks import check_number
from .errors import InfeasibleError, InputError
from .formats import canonical_precision
from .goodput import MIN_GOODPUT, check_goodput, goodput_terms  # noqa: F401
from .intensity import (  # noqa: F401 - re-exported: the carbon stage's public API
    country_intensity,
    grid_intensity,
    region_intensity,
    region_table,
    region_years,
    resolve_grid_intensity,
)
from .hardware import System, cpa_table, hbm_cpa, load_system, logic_cpa  # noqa: F401

from .carbon_settings import (  # noqa: F401 - re-exported: the carbon stage's public API
    ALLOCATIONS,
    COOLING_MODES,
    EMBODIED_MODES,
    HOURS_PER_YEAR,
    MIN_LIFETIME_YEARS,
    LIFETIME_POLICIES,
    PAPER_ACCOUNTING,
    POWER_MODELS,
    POWER_SPLITS,
    Accounting,
    _choice,
    amortisation,
    check_lifetime,
    defaults,
    lifetime_note,
    nodes_charged,
    resolve_accounting,
)
from .carbon_embodied import _embodied, embodied_kg, embodied_terms  # noqa: F401 - re-exported
from .carbon_operational import goodput_shares, operational_kwh, power_split, power_terms_w  # noqa: F401
from .carbon_result import CarbonResult, FrozenDict  # noqa: F401 - re-exported


def n_nodes(system: System, n_devices: int) -> int:
    """Whole nodes needed for ``n_devices`` accelerators.

    Parameters
    ----------
    system : System
        ``devices_per_node``.
    n_devices : int
        Accelerators.

    Returns
    -------
    int
        ``ceil(n_devices / devices_per_node)``.
    """
    return math.ceil(n_devices / system.devices_per_node)


# ---- many layouts at once ---------------------------------------------------------------
def carbon_scorer(system: System, acc: Accounting):
    """A function pricing many layouts at once with the formulas of :func:`run_carbon`.

    Allocation, goodput, lifetime and embodied as in :func:`run_carbon`; ``inf`` where the
    run would be refused (goodput below the minimum, or longer than the hardware's life
    under ``refuse``).

    Parameters
    ----------
    system : System
        The system.
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).

    Returns
    -------
    callable
        ``score(devices, steady_s, util) -> ndarray`` of tCO2e (steady-state seconds in).
    """
    kg = embodied_kg(system, acc)
    infra = load_yaml("embodied.yaml")["infrastructure"]
    f_mid = float(infra["fraction_of_manufacturing"]) if acc.infrastructure else 0.0
    host_kg = sum(kg["host_kg"].values())

    def score(devices, steady_s, util):
        op = operational_kwh(system, devices, np.asarray(steady_s, dtype=float) / 3600.0, util, acc)
        oper = sum(op["kwh"].values()) * acc.pue * acc.ci_g_per_kwh / 1e6
        emb = 0.0
        if acc.include_embodied:
            nodes = nodes_charged(devices, system.devices_per_node, acc.allocation)
            emb = (np.asarray(devices) * kg["device_kg"] + nodes * host_kg) * amortisation(op["wall_h"], acc) \
                / 1000.0 * (1.0 + f_mid)
        bad = ~(op["goodput"]["goodput"] >= MIN_GOODPUT)
        if acc.lifetime_policy == "refuse":
            bad |= op["wall_h"] > acc.lifetime_years * HOURS_PER_YEAR * (1 + 1e-12)
        return np.where(bad, np.inf, oper + emb)

    return score


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


_TERM_NAMES = {"device": "device", "device_static": "device (static)", "device_dynamic": "device (dynamic)",
               "host": "host", "node_other": "node beyond devices (nameplate)", "power_conversion": "power supplies",
               "cooling": "server fans", "network": "network switches"}


def scope_text(acc: Accounting, kwh: Mapping[str, float], goodput: float) -> str:
    """One line naming every term counted (and not counted) in a result.

    Parameters
    ----------
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).
    kwh : mapping of str to float
        kWh by operational term (terms with 0 are not named).
    goodput : float
        The goodput used (1 = steady state).

    Returns
    -------
    str
        For example ``operational: device, host, ...; measured node power (busy share); ...``.
    """
    terms = [_TERM_NAMES[k] for k, v in kwh.items() if v > 0]
    model = {"measured": "measured node power (busy share)", "nameplate": "nameplate maxima (upper bound)",
             "paper": "papers' static + dynamic x MFU"}[acc.power_model]
    emb = "no embodied" if not acc.include_embodied else (
        f"embodied {acc.embodied_mode} (accelerators, host CPU/DRAM/SSD"
        f"{', infrastructure' if acc.infrastructure else ''}; lifetime {acc.lifetime_years:g} y, {acc.lifetime_policy})")
    gp = "steady state (goodput 1)" if goodput >= 1.0 else f"goodput {goodput:.3f} (interruptions, restarts, checkpoints)"
    return (f"operational: {', '.join(terms) or 'none'}; {model}; allocation {acc.allocation}; PUE {acc.pue:g}; "
            f"{gp}; {emb}")


def run_carbon(model: Any, system: Any, *, n_devices: int, duration_h: float | None = None,
               device_hours: float | None = None, utilization: float, **settings: Any) -> CarbonResult:
    """Operational + embodied carbon of a run on ``n_devices`` devices of ``system``.

    ``CO_op = sum(kWh by term) x PUE x CI``; ``CO_emb = amortisation x (N device_kg +
    nodes host_kg) x (1 + infrastructure share)``; the wall clock is the steady-state one
    over goodput. Bad input raises :class:`InputError` naming the field; a run the lifetime
    policy ``refuse`` or the goodput model rejects raises :class:`InfeasibleError`.

    Parameters
    ----------
    model : ModelSpec, str, path or None
        Only reported (a ModelSpec, catalog name or YAML path).
    system : System or str
        Anything :func:`hardware.load_system` accepts.
    n_devices : int
        Accelerators, 1 .. 1e12.
    duration_h : float, optional
        Steady-state wall clock (hours). Give exactly one of this and ``device_hours``.
    device_hours : float, optional
        ``n_devices x duration_h`` (device-hours).
    utilization : float
        Drives the accelerators' power, in (0, 1]: their busy share under ``power_model``
        ``measured`` (default), MFU under ``paper``.
    **settings
        Those of :func:`resolve_accounting`: pue, ci (gCO2e/kWh, region or country), year,
        lifetime_years, alpha, power_split, power_model, allocation, lifetime_policy,
        cooling, embodied_mode, infrastructure, include_embodied, vendor_kg_per_device,
        goodput, interruptions_per_device_day, restart_minutes, checkpoint_minutes,
        evaluation_fraction, development_overhead.

    Returns
    -------
    CarbonResult
        Energies (kWh), operational, embodied and total carbon (tCO2e) with the embodied
        band, sources, the scope line and every intermediate in ``breakdown``.

    References
    ----------
    Jiang and Chen, CarbonScaling v1 and v2 (operational and embodied formulas);
    docs/carbon.md (power model, goodput, allocation, lifetime policy).
    """
    n = int(check_number("n_devices", n_devices, 1, 1e12, integer=True))
    steady = _duration(n, duration_h, device_hours)
    u = check_number("utilization", utilization, 0, 1, lo_open=True)
    unknown = sorted(set(settings) - set(resolve_accounting.__kwdefaults__))
    if unknown:
        raise InputError(unknown[0], "unknown carbon setting")
    acc = resolve_accounting(**settings)
    sys_ = load_system(system)
    model_name = None
    if model is not None:
        from .scaling import resolve_model
        model_name = resolve_model(model).name

    op = operational_kwh(sys_, n, steady, u, acc)
    g = {k: float(v) for k, v in op["goodput"].items()}
    check_goodput(g["goodput"], n, g["mttf_h"])
    wall = float(op["wall_h"])
    check_lifetime(wall, acc)
    kwh = {k: float(v) for k, v in op["kwh"].items()}
    emb = _counted_embodied(sys_, n, wall, acc)
    factor = acc.pue * acc.ci_g_per_kwh / 1e6
    device_kwh = sum(v for k, v in kwh.items() if k.startswith("device"))
    it_kwh = sum(kwh.values())
    operational = it_kwh * factor
    power = {k: float(v) for k, v in op["power_w"].items()}
    total = operational + emb["embodied_tco2e"]
    inputs = _run_inputs(model_name, sys_, n, steady, wall, u, acc, g["goodput"], power)
    derived = _run_derived(sys_, n, wall, acc, g, power, kwh, factor, total)
    top = ("embodied_tco2e", "embodied_low_tco2e", "embodied_high_tco2e", "embodied_source")
    breakdown = {**inputs, **derived, **{k: v for k, v in emb.items() if k not in top}}
    return CarbonResult(
        energy_kwh=it_kwh * acc.pue, it_energy_kwh=it_kwh, device_energy_kwh=device_kwh,
        other_energy_kwh=it_kwh - device_kwh, operational_tco2e=operational,
        embodied_tco2e=emb["embodied_tco2e"], total_tco2e=total,
        embodied_low_tco2e=emb["embodied_low_tco2e"], embodied_high_tco2e=emb["embodied_high_tco2e"],
        embodied_mode=acc.embodied_mode if acc.include_embodied else "none", embodied_source=emb["embodied_source"],
        ci_source=acc.ci_source, breakdown=breakdown, scope=scope_text(acc, kwh, g["goodput"]))


def _counted_embodied(sys_: System, n: int, wall_h: float, acc: Accounting) -> dict:
    """:func:`_embodied` with the tCO2e terms zeroed when ``include_embodied`` is off."""
    emb = _embodied(sys_, n, wall_h, acc)
    if not acc.include_embodied:
        emb = {k: (0.0 if k.startswith("embodied_") and k.endswith("_tco2e") else v) for k, v in emb.items()}
        emb["embodied_source"] = "excluded (include_embodied=False)"
    return emb


def _run_inputs(model_name, sys_: System, n: int, steady_h: float, wall_h: float, u: float, acc: Accounting,
                goodput: float, power: dict) -> dict:
    """The breakdown's inputs: the request, the settings and the system's power facts."""
    return {"model": model_name, "device": sys_.device.name, "n_devices": n, "duration_h": steady_h,
            "device_hours": n * steady_h, "steady_device_hours": n * steady_h, "expected_duration_h": wall_h,
            "expected_device_hours": n * wall_h, "utilization": u, **{k: v for k, v in asdict(acc).items()},
            "goodput": goodput, "goodput_setting": acc.goodput,
            "tdp_w": sys_.device.tdp_w, "devices_per_node": sys_.devices_per_node,
            "node_other_power_w": sys_.node_other_power_w,
            "network_power_w_per_device": power.get("network", sys_.network_power_w_per_device)}


def _run_derived(sys_: System, n: int, wall_h: float, acc: Accounting, g: dict, power: dict, kwh: dict,
                 factor: float, total: float) -> dict:
    """The breakdown's derived terms: power per slot, goodput terms, lifetime, development, energy and
    tCO2e by term (``factor``: tCO2e per IT kWh)."""
    slot_w = sum(v for k, v in power.items() if k != "network")
    derived = {"n_nodes": n_nodes(sys_, n), "w_per_device_slot": slot_w,
               "node_kwh_per_device_hour": (slot_w + power.get("network", 0.0)) / 1000.0,
               "facility_kwh_per_device_hour": (slot_w + power.get("network", 0.0)) / 1000.0 * acc.pue,
               "device_power_w": sum(v for k, v in power.items() if k.startswith("device")),
               **{f"goodput_{k}": (v if math.isfinite(v) else None) for k, v in g.items()},
               "lifetime_note": lifetime_note(wall_h, acc),
               "development_device_hours": acc.development_overhead * n * wall_h,
               "development_tco2e": acc.development_overhead * total}
    if acc.power_model == "paper":
        derived["p_static_w"], derived["p_dynamic_w"] = power_split(sys_.device.tdp_w, acc.power_split)
    for k, v in kwh.items():
        derived[f"{k}_energy_kwh"], derived[f"{k}_tco2e"] = v, v * factor
    return derived


def ideal_carbon(train_flops: float, system: Any, *, deadline_days: float = 90, pue: float | None = None,
                 ci: Any = None, year: int | None = None, precision: str = "bf16") -> CarbonResult:
    """The papers' "ideal" carbon (v1/v2 Fig. 4): every device at peak throughput and TDP.

    Devices ``N = ceil(C / (T peak))`` for the deadline ``T``; the run takes
    ``C / (N peak)`` seconds and draws ``C / peak x TDP`` of device energy, times PUE. No
    node-other or network power, no embodied carbon.

    Parameters
    ----------
    train_flops : float
        Training FLOPs (C).
    system : System or str
        Anything :func:`hardware.load_system` accepts.
    deadline_days : float, optional
        Deadline T in days (default 90, the papers').
    pue : float, optional
        Power usage effectiveness, 1..3 (default: ``power.yaml``).
    ci : float or str, optional
        Grid intensity (gCO2e/kWh), region or country (default: ``power.yaml``).
    year : int, optional
        Year of the region's intensity.
    precision : str, optional
        Number format whose peak is used (default ``'bf16'``).

    Returns
    -------
    CarbonResult
        Operational carbon only (tCO2e); ``breakdown`` has ``n_devices``, ``duration_h``,
        ``device_hours`` and the peak FLOP/s.

    References
    ----------
    Jiang and Chen, CarbonScaling v1, Fig. 4 ("ideal" curve).
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
        ci_source=ci_src, breakdown=breakdown,
        scope=f"operational: device at TDP only (the papers' ideal); PUE {pue_v:g}; no host, network or embodied")
