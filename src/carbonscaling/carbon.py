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
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np

from . import power as pw
from ._data import load_yaml
from .checks import check_number
from .errors import InfeasibleError, InputError
from .formats import canonical_precision
from .goodput import MIN_GOODPUT, check_goodput, goodput_terms
from .intensity import (  # noqa: F401 - re-exported: the carbon stage's public API
    country_intensity,
    grid_intensity,
    region_intensity,
    region_table,
    region_years,
    resolve_grid_intensity,
)
from .hardware import System, cpa_table, hbm_cpa, load_system, logic_cpa

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
    defaults,
    nodes_charged,
    resolve_accounting,
)


def power_split(tdp_w: float, mode: str = "default") -> tuple[float, float]:
    """Static and dynamic device power of the ``paper`` power model.

    Dynamic is 0.158 TDP (``power.yaml: dynamic_fraction_of_tdp``), static the rest;
    ``"low_static"`` swaps the shares (v1 Fig. 4).

    Parameters
    ----------
    tdp_w : float
        The device's thermal design power (W).
    mode : {'default', 'low_static'}, optional
        Which share is static (default ``'default'``).

    Returns
    -------
    p_static_w, p_dynamic_w : float
        Watts.

    References
    ----------
    Fernandez et al., "Hardware Scaling Trends and Diminishing Returns in Large-Scale
    Distributed Training", 2024 (dynamic share); Jiang and Chen, CarbonScaling v1, Fig. 4.
    """
    frac = float(load_yaml("power.yaml")["dynamic_fraction_of_tdp"])
    if _choice("power_split", mode, POWER_SPLITS) == "low_static":
        frac = 1.0 - frac
    p_dyn = frac * tdp_w
    return tdp_w - p_dyn, p_dyn


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


# ---- power per device ---------------------------------------------------------------
def power_terms_w(system: System, n_devices, util, acc: Accounting, state: str = "train") -> dict[str, Any]:
    """Power per device (W) of each operational term in ``state`` (train | wait | idle).

    ``util`` drives the accelerators: the busy share for ``measured`` (the step model's compute
    share), MFU for ``paper``; ``nameplate`` ignores it. ``wait`` and ``idle`` (checkpoint
    stalls, restarts) differ from ``train`` only in the ``measured`` model.

    Parameters
    ----------
    system : System
        Device TDP (W), node power beyond the accelerators (W), devices per node, network.
    n_devices : int or ndarray
        Accelerators in the job (sets the host share charged under the allocation rule).
    util : float or ndarray
        Busy share (``measured``) or MFU (``paper``), 0..1.
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).
    state : {'train', 'wait', 'idle'}, optional
        Job state (default ``'train'``).

    Returns
    -------
    dict of str to ndarray
        Watts per device slot by term: ``device`` (or ``device_static`` / ``device_dynamic``
        for ``paper``), ``host`` or ``node_other``, ``power_conversion``, ``cooling``, ``network``.

    References
    ----------
    Node power fitted on the metered MLPerf Training power rows (``power.yaml``; docs/carbon.md);
    the ``paper`` model is CarbonScaling v1's ``P_static + alpha P_dynamic MFU``.
    """
    dev, per_node = system.device, system.devices_per_node
    n = np.asarray(n_devices, dtype=float)
    host_per_device = nodes_charged(n, per_node, acc.allocation) * per_node / n
    if acc.power_model == "paper":
        p_static, p_dyn = power_split(dev.tdp_w, acc.power_split)
        return {"device_static": p_static + 0.0 * n, "device_dynamic": acc.alpha * p_dyn * np.asarray(util) + 0.0 * n,
                "node_other": system.node_other_power_w / per_node * host_per_device,
                "network": system.network_power_w_per_device + 0.0 * n}
    if acc.power_model == "nameplate":
        return {"device": dev.tdp_w + 0.0 * n, "node_other": system.node_other_power_w / per_node * host_per_device,
                "network": system.network_power_w_per_device + 0.0 * n}
    c = pw.measured_constants()
    if state == "idle":
        device = c["gpu_idle_fraction_of_tdp"] * dev.tdp_w + 0.0 * n
    else:
        device = pw.accelerator_power_w(dev.tdp_w, 0.0 if state == "wait" else util, c) + 0.0 * n
    host = pw.host_power_w(system.node_other_power_w, c) / per_node * host_per_device
    ac = (device + host) / c["psu_efficiency"]
    air = pw.effective_cooling(dev.kind, acc.cooling) == "air"
    cooling = ac * c["air_cooling_fraction_of_it"] if air else 0.0 * n
    return {"device": device, "host": host, "power_conversion": ac - device - host, "cooling": cooling,
            "network": pw.network_power_w_per_device(n, per_node, c)}


def goodput_shares(n_devices, acc: Accounting) -> dict[str, Any]:
    """Shares of expected wall clock spent in each state.

    Parameters
    ----------
    n_devices : int or ndarray
        Accelerators (interruptions grow with them).
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).

    Returns
    -------
    dict of str to ndarray
        Fractions of expected wall clock: ``goodput``, ``train`` (goodput + rework +
        evaluation, drawn at training power), ``wait`` (checkpoint stalls), ``idle``
        (restarts), their parts, and ``mttf_h`` / ``checkpoint_interval_h`` (hours).

    References
    ----------
    Llama Team, "The Llama 3 Herd of Models", arXiv 2407.21783, 2024, Sec. 3.3.4
    (interruption rate; ``goodput.yaml``).
    """
    if acc.goodput is not None:
        zero = 0.0 * np.asarray(n_devices, dtype=float)
        return {"goodput": acc.goodput + zero, "train": acc.goodput + zero, "wait": 1.0 - acc.goodput + zero,
                "idle": zero, "restart": zero, "rework": zero, "checkpoint": zero, "evaluation": zero,
                "mttf_h": zero + np.inf, "checkpoint_interval_h": zero + np.inf}
    g = goodput_terms(n_devices, interruptions_per_device_day=acc.interruptions_per_device_day,
                      restart_minutes=acc.restart_minutes, checkpoint_minutes=acc.checkpoint_minutes,
                      evaluation_fraction=acc.evaluation_fraction)
    return {**g, "train": g["goodput"] + g["rework"] + g["evaluation"], "wait": g["checkpoint"], "idle": g["restart"]}


# ---- embodied carbon ---------------------------------------------------------------
def embodied_kg(system: System, acc: Accounting) -> dict[str, Any]:
    """Life-cycle kg of one device and of one node's host items (``embodied.yaml``, ``cpa.csv``).

    Parameters
    ----------
    system : System
        Device die area (mm2), HBM (GB) and process node; host CPUs, DRAM and SSD per node.
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).

    Returns
    -------
    dict
        ``device_kg``, ``die_kg``, ``hbm_kg`` (kgCO2e per device), ``host_kg`` (per node, by
        item), the CPA factors used (kg/cm2, kg/GB), ``source`` and ``vendor_range_kg``.

    References
    ----------
    Jiang and Chen, CarbonScaling v1, Tables 3-4 (carbon per area, CPA); NVIDIA HGX H100
    Product Carbon Footprint, 2024 (``vendor`` mode).
    """
    dev = system.device
    vend = load_yaml("embodied.yaml")["vendor_anchored"]
    logic, hbm, cpa = logic_cpa(dev), hbm_cpa(dev), cpa_table()
    die_kg, hbm_kg = dev.die_area_mm2 / 100.0 * logic, dev.hbm_gb * hbm
    if acc.embodied_mode == "paper":
        device_kg = die_kg + hbm_kg
        source = (f"paper: die {dev.die_area_mm2:g} mm2 x {logic:g} kg/cm2 ({dev.process_node}) + "
                  f"{dev.hbm_gb:g} GB x {hbm:g} kg/GB ({dev.hbm_type}); cpa.csv (CarbonScaling v1 Tables 3-4)")
    else:
        device_kg = float(acc.vendor_kg_per_device or vend["per_device_kg"]["default"])
        source = f"vendor: {device_kg:g} kg per device; {vend['source']}"
    host = {"cpu": system.cpus_per_node * system.cpu_die_area_mm2 / 100.0 * logic,
            "dram": system.dram_gb_per_node * cpa[("memory", "DRAM")],
            "ssd": system.ssd_gb_per_node * cpa[("memory", "SSD")]}
    return {"device_kg": device_kg, "die_kg": die_kg, "hbm_kg": hbm_kg, "host_kg": host, "source": source,
            "cpa_logic_kg_per_cm2": logic, "cpa_hbm_kg_per_gb": hbm, "cpa_dram_kg_per_gb": cpa[("memory", "DRAM")],
            "cpa_ssd_kg_per_gb": cpa[("memory", "SSD")], "vendor_range_kg": vend["per_device_kg"]["range"]}


def embodied_terms(system: System, n_devices: int, duration_h: float, *, lifetime_years: float,
                   mode: str = "paper", infrastructure: bool = True, vendor_kg_per_device: float | None = None,
                   allocation: str = "node", lifetime_policy: str = "replace") -> dict[str, Any]:
    """Embodied tCO2e of each item for ``n_devices`` over ``duration_h`` wall-clock hours.

    With a low/high band (the per-device figure's published spread and the infrastructure
    share's range; host items are point values).

    Parameters
    ----------
    system : System
        The system (device and host items).
    n_devices : int
        Accelerators.
    duration_h : float
        Wall-clock hours charged.
    lifetime_years : float
        Hardware lifetime (years) the manufacturing carbon is amortised over.
    mode : {'paper', 'vendor'}, optional
        Die + HBM from CPA (default) or a vendor per-device figure.
    infrastructure : bool, optional
        Add the data-centre infrastructure share (default True).
    vendor_kg_per_device : float, optional
        kgCO2e per device under ``vendor`` (default: ``embodied.yaml``).
    allocation : str, optional
        How hosts are charged (``'node'``: whole nodes; default).
    lifetime_policy : str, optional
        A run longer than the lifetime: ``'replace'``, ``'whole_run'`` or ``'refuse'``.

    Returns
    -------
    dict
        tCO2e by item (``embodied_accelerator_tco2e``, ``embodied_cpu_tco2e``, ...,
        ``embodied_tco2e`` and its low/high band), the amortisation fraction and the factors used.
    """
    acc = resolve_accounting(lifetime_years=lifetime_years, embodied_mode=mode, infrastructure=infrastructure,
                             vendor_kg_per_device=vendor_kg_per_device, allocation=allocation,
                             lifetime_policy=lifetime_policy, ci=0)
    return _embodied(system, n_devices, duration_h, acc)


def _embodied(system: System, n: int, wall_h: float, acc: Accounting) -> dict[str, Any]:
    kg = embodied_kg(system, acc)
    infra = load_yaml("embodied.yaml")["infrastructure"]
    f_mid = float(infra["fraction_of_manufacturing"]) if acc.infrastructure else 0.0
    f_lo, f_hi = (float(x) for x in infra["fraction_range"]) if acc.infrastructure else (0.0, 0.0)
    v_lo, v_hi = (float(x) for x in kg["vendor_range_kg"])
    amort = float(amortisation(wall_h, acc))
    t = amort / 1000.0  # kg over the whole life -> tCO2e for this run
    nodes = float(nodes_charged(n, system.devices_per_node, acc.allocation))
    host_t = {k: nodes * v * t for k, v in kg["host_kg"].items()}
    accel_t = n * kg["device_kg"] * t
    manuf = accel_t + sum(host_t.values())
    paper = acc.embodied_mode == "paper"
    return {
        "amortisation_fraction": amort, "nodes_charged": nodes,
        **{k: kg[k] for k in ("cpa_logic_kg_per_cm2", "cpa_hbm_kg_per_gb", "cpa_dram_kg_per_gb", "cpa_ssd_kg_per_gb")},
        "device_embodied_kg": kg["device_kg"], "host_embodied_kg_per_node": sum(kg["host_kg"].values()),
        "infrastructure_fraction": f_mid, "embodied_accelerator_tco2e": accel_t,
        "embodied_die_tco2e": n * kg["die_kg"] * t if paper else 0.0,
        "embodied_hbm_tco2e": n * kg["hbm_kg"] * t if paper else 0.0,
        **{f"embodied_{k}_tco2e": v for k, v in host_t.items()},
        "embodied_manufacturing_tco2e": manuf, "embodied_infrastructure_tco2e": f_mid * manuf,
        "embodied_tco2e": (1.0 + f_mid) * manuf,
        "embodied_low_tco2e": (n * min(kg["device_kg"], v_lo) * t + sum(host_t.values())) * (1.0 + f_lo),
        "embodied_high_tco2e": (n * max(kg["device_kg"], v_hi) * t + sum(host_t.values())) * (1.0 + f_hi),
        "embodied_source": kg["source"],
    }


# ---- a run, and many layouts at once ------------------------------------------------------
def operational_kwh(system: System, n_devices, steady_h, util, acc: Accounting) -> dict[str, Any]:
    """Expected wall clock and kWh of each operational term (IT side, before PUE).

    Works on arrays (one entry per layout) as well as scalars.

    Parameters
    ----------
    system : System
        The system.
    n_devices : int or ndarray
        Accelerators.
    steady_h : float or ndarray
        Steady-state wall clock (hours), before goodput.
    util : float or ndarray
        Busy share or MFU (see :func:`power_terms_w`).
    acc : Accounting
        Validated carbon settings (:func:`resolve_accounting`).

    Returns
    -------
    dict
        ``wall_h`` (expected hours, steady / goodput), ``goodput`` (:func:`goodput_shares`),
        ``power_w`` (training W per device by term) and ``kwh`` (kWh by term).
    """
    g = goodput_shares(n_devices, acc)
    with np.errstate(divide="ignore", invalid="ignore"):
        wall = np.asarray(steady_h, dtype=float) / g["goodput"]
    train, wait, idle = (power_terms_w(system, n_devices, util, acc, s) for s in ("train", "wait", "idle"))
    n = np.asarray(n_devices, dtype=float)
    kwh = {k: n * wall * (g["train"] * train[k] + g["wait"] * wait[k] + g["idle"] * idle[k]) / 1000.0
           for k in train}
    return {"wall_h": wall, "goodput": g, "power_w": train, "kwh": kwh}


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
    intermediate and the inputs used (flat, JSON-safe); ``scope`` names the terms counted."""

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
    scope: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "breakdown", FrozenDict(self.breakdown))

    @property
    def total_low_tco2e(self) -> float:
        """Operational plus the embodied low bound (tCO2e)."""
        return self.operational_tco2e + self.embodied_low_tco2e

    @property
    def total_high_tco2e(self) -> float:
        """Operational plus the embodied high bound (tCO2e)."""
        return self.operational_tco2e + self.embodied_high_tco2e

    def _top(self) -> dict[str, Any]:
        top = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "breakdown"}
        return {**top, "total_low_tco2e": self.total_low_tco2e, "total_high_tco2e": self.total_high_tco2e}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict: the totals at top level and ``breakdown`` as a nested dict.

        Returns
        -------
        dict
            Energies in kWh, carbon in tCO2e, sources and scope.
        """
        return {**self._top(), "breakdown": dict(self.breakdown)}

    def to_row(self) -> dict[str, Any]:
        """One flat dict (totals then breakdown), e.g. for a pandas row.

        Returns
        -------
        dict
            Breakdown keys and the top-level totals in one level.
        """
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
    life_h = acc.lifetime_years * HOURS_PER_YEAR
    if wall > life_h * (1 + 1e-12) and acc.lifetime_policy == "refuse":
        raise InfeasibleError(
            f"the run takes {wall / HOURS_PER_YEAR:.2f} years, longer than the hardware's {acc.lifetime_years:g}-year "
            "lifetime: choose lifetime_policy 'whole_run' (charge the hardware once over the whole run) or "
            "'replace' (charge replacements), or a shorter run", "lifetime",
            {"duration_years": wall / HOURS_PER_YEAR, "lifetime_years": acc.lifetime_years})
    kwh = {k: float(v) for k, v in op["kwh"].items()}
    emb = _embodied(sys_, n, wall, acc)
    if not acc.include_embodied:
        emb = {k: (0.0 if k.startswith("embodied_") and k.endswith("_tco2e") else v) for k, v in emb.items()}
        emb["embodied_source"] = "excluded (include_embodied=False)"
    factor = acc.pue * acc.ci_g_per_kwh / 1e6
    device_kwh = sum(v for k, v in kwh.items() if k.startswith("device"))
    it_kwh = sum(kwh.values())
    operational = it_kwh * factor
    power = {k: float(v) for k, v in op["power_w"].items()}
    slot_w = sum(v for k, v in power.items() if k != "network")
    lifetime_note = ("" if wall <= life_h else
                     f"run ({wall / HOURS_PER_YEAR:.2f} y) outlasts the {acc.lifetime_years:g}-year lifetime: " +
                     ("hardware charged once, over the whole run" if acc.lifetime_policy == "whole_run"
                      else f"charged {wall / life_h:.2f} hardware lifetimes (replacements)"))
    total = operational + emb["embodied_tco2e"]
    inputs = {"model": model_name, "device": sys_.device.name, "n_devices": n, "duration_h": steady,
              "device_hours": n * steady, "steady_device_hours": n * steady, "expected_duration_h": wall,
              "expected_device_hours": n * wall, "utilization": u, **{k: v for k, v in asdict(acc).items()},
              "goodput": g["goodput"], "goodput_setting": acc.goodput,
              "tdp_w": sys_.device.tdp_w, "devices_per_node": sys_.devices_per_node,
              "node_other_power_w": sys_.node_other_power_w,
              "network_power_w_per_device": power.get("network", sys_.network_power_w_per_device)}
    derived = {"n_nodes": n_nodes(sys_, n), "w_per_device_slot": slot_w,
               "node_kwh_per_device_hour": (slot_w + power.get("network", 0.0)) / 1000.0,
               "facility_kwh_per_device_hour": (slot_w + power.get("network", 0.0)) / 1000.0 * acc.pue,
               "device_power_w": sum(v for k, v in power.items() if k.startswith("device")),
               **{f"goodput_{k}": (v if math.isfinite(v) else None) for k, v in g.items()}, "lifetime_note": lifetime_note,
               "development_device_hours": acc.development_overhead * n * wall,
               "development_tco2e": acc.development_overhead * total}
    if acc.power_model == "paper":
        derived["p_static_w"], derived["p_dynamic_w"] = power_split(sys_.device.tdp_w, acc.power_split)
    for k, v in kwh.items():
        derived[f"{k}_energy_kwh"], derived[f"{k}_tco2e"] = v, v * factor
    top = ("embodied_tco2e", "embodied_low_tco2e", "embodied_high_tco2e", "embodied_source")
    breakdown = {**inputs, **derived, **{k: v for k, v in emb.items() if k not in top}}
    return CarbonResult(
        energy_kwh=it_kwh * acc.pue, it_energy_kwh=it_kwh, device_energy_kwh=device_kwh,
        other_energy_kwh=it_kwh - device_kwh, operational_tco2e=operational,
        embodied_tco2e=emb["embodied_tco2e"], total_tco2e=total,
        embodied_low_tco2e=emb["embodied_low_tco2e"], embodied_high_tco2e=emb["embodied_high_tco2e"],
        embodied_mode=acc.embodied_mode if acc.include_embodied else "none", embodied_source=emb["embodied_source"],
        ci_source=acc.ci_source, breakdown=breakdown, scope=scope_text(acc, kwh, g["goodput"]))


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
