"""Carbon-accounting settings (issue 10): the validated :class:`Accounting` a run is charged
under (power model, allocation, lifetime policy, cooling, goodput, PUE, grid, embodied), its
defaults from ``power.yaml`` / ``goodput.yaml``, and the small rules every stage shares:
which nodes a run is charged for, which share of the hardware's life it carries, and how a run
longer than that life is refused or charged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import power as pw
from ._data import load_yaml
from .checks import check_choice, check_number
from .errors import InfeasibleError, InputError
from .goodput import goodput_defaults
from .intensity import resolve_grid_intensity

MIN_LIFETIME_YEARS = 0.01  # 3.7 days: shorter lifetimes only overflow the amortization (1e-320 -> inf)
HOURS_PER_YEAR = 365 * 24  # unit conversion; LLMCarbon amortises over 365-day years too
POWER_SPLITS = ("default", "low_static")
EMBODIED_MODES = ("paper", "vendor")
POWER_MODELS = pw.POWER_MODELS
COOLING_MODES = pw.COOLING_MODES
ALLOCATIONS = ("share", "node")
LIFETIME_POLICIES = ("refuse", "whole_run", "replace")
#: The CarbonScaling papers' accounting; the `paper` scenarios select it.
PAPER_ACCOUNTING: dict[str, Any] = {"power_model": "paper", "allocation": "node", "lifetime_policy": "replace",
                                    "goodput": 1.0}
_choice = check_choice


def defaults() -> dict[str, Any]:
    """Default PUE, CI (g/kWh), lifetime (years), alpha, power model, allocation, lifetime
    policy and cooling, from ``power.yaml``."""
    p = load_yaml("power.yaml")
    return {**{k: float(v) for k, v in p["defaults"].items()}, "alpha": float(p["alpha"]),
            "power_model": "measured", "allocation": p["allocation_default"],
            "lifetime_policy": p["lifetime_policy_default"], "cooling": p["cooling_default"]}


def nodes_charged(n_devices, devices_per_node: int, allocation: str):
    """Nodes a run is charged for: its share ``N / per_node`` or whole nodes ``ceil``."""
    n = np.asarray(n_devices, dtype=float)
    return n / devices_per_node if allocation == "share" else np.ceil(n / devices_per_node - 1e-9)


# ---- settings ----------------------------------------------------------------------
@dataclass(frozen=True)
class Accounting:
    """Validated carbon-accounting settings (see :func:`resolve_accounting`)."""

    pue: float
    ci_g_per_kwh: float
    ci_source: str
    lifetime_years: float
    alpha: float
    power_split: str
    power_model: str
    allocation: str
    lifetime_policy: str
    cooling: str
    embodied_mode: str
    infrastructure: bool
    include_embodied: bool
    vendor_kg_per_device: float | None
    goodput: float | None
    interruptions_per_device_day: float
    restart_minutes: float
    checkpoint_minutes: float
    evaluation_fraction: float
    development_overhead: float


def resolve_accounting(*, pue: float | None = None, ci: Any = None, year: int | None = None,
                       lifetime_years: float | None = None, alpha: float | None = None,
                       power_split: str = "default", power_model: str | None = None,
                       allocation: str | None = None, lifetime_policy: str | None = None,
                       cooling: str | None = None, embodied_mode: str = "paper", infrastructure: bool = True,
                       include_embodied: bool = True, vendor_kg_per_device: float | None = None,
                       goodput: float | None = None, interruptions_per_device_day: float | None = None,
                       restart_minutes: float | None = None, checkpoint_minutes: float | None = None,
                       evaluation_fraction: float | None = None,
                       development_overhead: float | None = None) -> Accounting:
    """Check every setting (one :class:`InputError` naming the field) and fill the defaults."""
    d, g = defaults(), goodput_defaults()
    ci_v, ci_src = resolve_grid_intensity(ci, year)
    for name, flag in (("infrastructure", infrastructure), ("include_embodied", include_embodied)):
        if not isinstance(flag, bool):
            raise InputError(name, f"must be true or false, got {flag!r}")
    if vendor_kg_per_device is not None:
        check_number("vendor_kg_per_device", vendor_kg_per_device, 0, 1e5, lo_open=True)
        if embodied_mode != "vendor":
            raise InputError("vendor_kg_per_device", "applies only with embodied_mode 'vendor'")

    model = d["power_model"] if power_model is None else power_model
    for name, given in (("power_split", power_split != "default"), ("alpha", alpha is not None)):
        if given and model != "paper":
            raise InputError(name, f"applies only with power_model 'paper' (the papers' static/dynamic split), "
                                   f"got power_model {model!r}")

    def opt(name, value, default, lo, hi, **kw):
        return check_number(name, default if value is None else value, lo, hi, **kw)

    return Accounting(
        pue=opt("pue", pue, d["pue"], 1, 3), ci_g_per_kwh=ci_v, ci_source=ci_src,
        lifetime_years=opt("lifetime_years", lifetime_years, d["lifetime_years"], MIN_LIFETIME_YEARS, 50),
        alpha=opt("alpha", alpha, d["alpha"], 0, 10),
        power_split=_choice("power_split", power_split, POWER_SPLITS),
        power_model=_choice("power_model", d["power_model"] if power_model is None else power_model, POWER_MODELS),
        allocation=_choice("allocation", d["allocation"] if allocation is None else allocation, ALLOCATIONS),
        lifetime_policy=_choice("lifetime_policy", d["lifetime_policy"] if lifetime_policy is None
                                else lifetime_policy, LIFETIME_POLICIES),
        cooling=_choice("cooling", d["cooling"] if cooling is None else cooling, COOLING_MODES),
        embodied_mode=_choice("embodied_mode", embodied_mode, EMBODIED_MODES), infrastructure=infrastructure,
        include_embodied=include_embodied,
        vendor_kg_per_device=None if vendor_kg_per_device is None else float(vendor_kg_per_device),
        goodput=None if goodput is None else check_number("goodput", goodput, 0, 1, lo_open=True),
        interruptions_per_device_day=opt("interruptions_per_device_day", interruptions_per_device_day,
                                         g["interruptions_per_device_day"], 0, 1),
        restart_minutes=opt("restart_minutes", restart_minutes, g["restart_minutes"], 0, 10080),
        checkpoint_minutes=opt("checkpoint_minutes", checkpoint_minutes, g["checkpoint_minutes"], 0, 1440),
        evaluation_fraction=opt("evaluation_fraction", evaluation_fraction, g["evaluation_fraction"], 0, 0.9),
        development_overhead=opt("development_overhead", development_overhead,
                                 g["development_overhead_fraction"], 0, 100))


def amortisation(wall_h, acc: Accounting):
    """Share of the hardware's embodied carbon a run of ``wall_h`` hours carries (lifetime policy)."""
    frac = np.asarray(wall_h, dtype=float) / (acc.lifetime_years * HOURS_PER_YEAR)
    return np.minimum(frac, 1.0) if acc.lifetime_policy == "whole_run" else frac


def check_lifetime(wall_h: float, acc: Accounting) -> None:
    """Refuse a run longer than the hardware lifetime under lifetime policy ``refuse``.

    Parameters
    ----------
    wall_h : float
        Expected wall clock of the run (hours, goodput included).
    acc : Accounting
        Validated carbon settings (``lifetime_years``, ``lifetime_policy``).

    Returns
    -------
    None
        Raises :class:`InfeasibleError` (constraint ``lifetime``) when the run outlasts the lifetime
        and the policy is ``refuse``; the other policies charge it (:func:`lifetime_note`).
    """
    life_h = acc.lifetime_years * HOURS_PER_YEAR
    if wall_h > life_h * (1 + 1e-12) and acc.lifetime_policy == "refuse":
        raise InfeasibleError(
            f"the run takes {wall_h / HOURS_PER_YEAR:.2f} years, longer than the hardware's {acc.lifetime_years:g}-year "
            "lifetime: choose lifetime_policy 'whole_run' (charge the hardware once over the whole run) or "
            "'replace' (charge replacements), or a shorter run", "lifetime",
            {"duration_years": wall_h / HOURS_PER_YEAR, "lifetime_years": acc.lifetime_years})


def lifetime_note(wall_h: float, acc: Accounting) -> str:
    """How a run that outlasts the hardware lifetime is charged (empty when it does not).

    Parameters
    ----------
    wall_h : float
        Expected wall clock of the run (hours, goodput included).
    acc : Accounting
        Validated carbon settings (``lifetime_years``, ``lifetime_policy``).

    Returns
    -------
    str
        ``""``, or a line naming the run's years and the charge (once over the run, or replacements).
    """
    life_h = acc.lifetime_years * HOURS_PER_YEAR
    return ("" if wall_h <= life_h else
            f"run ({wall_h / HOURS_PER_YEAR:.2f} y) outlasts the {acc.lifetime_years:g}-year lifetime: " +
            ("hardware charged once, over the whole run" if acc.lifetime_policy == "whole_run"
             else f"charged {wall_h / life_h:.2f} hardware lifetimes (replacements)"))
