"""Embodied carbon of a training run: devices (die, HBM), host items, infrastructure share.

Life-cycle kgCO2e per device and per node (``embodied.yaml``, ``cpa.csv``), amortised over the
hardware lifetime (:func:`carbonscaling.carbon_settings.amortisation`) and charged by whole nodes
or device slots; a low/high band from the published spreads. Formulas: docs/carbon.md.
"""

from __future__ import annotations

from typing import Any

from ._data import load_yaml
from .carbon_settings import Accounting, amortisation, nodes_charged, resolve_accounting
from .hardware import System, cpa_table, hbm_cpa, logic_cpa


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
