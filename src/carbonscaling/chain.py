"""The model chain: model spec -> system (projected) -> parallelism search -> carbon.

:func:`estimate` mirrors ``carbonscaling estimate``: the same options in snake_case,
and ``Estimate.to_dict()`` is exactly the CLI's ``--json`` object. One process can call
it thousands of times without paying start-up again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .carbon import CarbonResult, check_number, resolve_accounting, run_carbon
from .carbon import carbon_scorer as _price_layouts
from .errors import InfeasibleError, InputError
from .hardware import System, describe, load_system, project
from .power import busy_share
from .scaling import ModelSpec, from_preset, resolve_model
from .search import SearchResult, search
from .serialize import layout_record
from .specs import LayoutPins, RunSpec

STEP_PARTS = ("compute_s", "bubble_s", "tp_comm_s", "cp_comm_s", "pp_comm_s", "dp_comm_s", "ep_comm_s",
              "optimizer_s", "overlap_slowdown_s", "host_s", "offload_s")
MEMORY_PARTS = ("weights", "grads", "optimizer", "activations", "total")


@dataclass(frozen=True)
class Estimate:
    """Everything one estimate produced; ``to_dict()`` is the CLI's ``--json``."""

    model: ModelSpec
    system: System
    result: SearchResult
    carbon: CarbonResult
    median_carbon: CarbonResult | None
    settings: dict[str, Any]
    spec: RunSpec | None = None
    uncertainty: Any = None          # carbonscaling.uncertainty.Uncertainty, unless turned off
    median_note: str = ""            # why the median-latency layout has no carbon (e.g. it outlasts the hardware)

    @property
    def steps(self) -> float:
        return self.model.train_tokens / (self.result.layout.global_batch_sequences * self.model.seq_len)

    def to_dict(self) -> dict[str, Any]:
        r, lay, st = self.result, self.result.layout, self.result.step
        step = {k: float(getattr(st, k)) for k in STEP_PARTS}
        step["step_time_s"] = float(st.step_time_s)
        mem = {f"{k}_gb": float(getattr(st, f"mem_{k}_gb")) for k in MEMORY_PARTS}
        mem["capacity_gb"] = self.system.device.hbm_gb * 2**30 / 1e9  # HBM "GB" are GiB
        cb = self.carbon.breakdown
        out = {
            "model": self.model.summary(),
            "hardware": describe(self.system),
            "layout": {**layout_record(lay), "pipeline_layout": r.pipeline_layout},
            "performance": {"step_time_s": float(st.step_time_s), "steps": self.steps,
                            "duration_days": r.duration_s / 86400.0,
                            "device_hours": lay.devices * r.duration_s / 3600.0, "mfu": r.mfu,
                            "mfu_convention": r.options.mfu_convention,
                            "deadline_days": r.deadline_s / 86400.0, "meets_deadline": r.meets_deadline,
                            "layouts_evaluated": r.layouts_evaluated, "objective": r.objective,
                            "goodput": cb["goodput"], "expected_device_hours": cb["expected_device_hours"],
                            "expected_duration_days": cb["expected_duration_h"] / 24.0,
                            "busy_share": float(busy_share(st))},
            "energy_kwh": self.carbon.energy_kwh,
            "energy": {"w_per_device_slot": cb["w_per_device_slot"],
                       "node_kwh_per_device_hour": cb["node_kwh_per_device_hour"],
                       "facility_kwh_per_device_hour": cb["facility_kwh_per_device_hour"],
                       "power_model": cb["power_model"], "allocation": cb["allocation"],
                       "lifetime_note": cb["lifetime_note"],
                       "development_device_hours": cb["development_device_hours"],
                       "development_tco2e": cb["development_tco2e"]},
            "carbon": {"operational_tco2e": self.carbon.operational_tco2e,
                       "embodied_tco2e": self.carbon.embodied_tco2e, "total_tco2e": self.carbon.total_tco2e,
                       "total_low_tco2e": self.carbon.total_low_tco2e,
                       "total_high_tco2e": self.carbon.total_high_tco2e,
                       "embodied_mode": self.carbon.embodied_mode, "ci_source": self.carbon.ci_source,
                       "scope": self.carbon.scope},
            "breakdown": {"step": step, "step_fraction": {k: v / step["step_time_s"] for k, v in step.items()
                                                           if k != "step_time_s"},
                          "memory_per_device": mem, "carbon": dict(self.carbon.breakdown)},
            "settings": self.settings,
            "used": self.used(),
            **self.decisions(),
        }
        if r.median_layout is not None:
            med = r.median_layout
            out["median_layout"] = {**layout_record(med), "duration_days": r.median_duration_s / 86400.0,
                                    "mfu": r.median_mfu,
                                    "total_tco2e": self.median_carbon.total_tco2e if self.median_carbon else None}
            if self.median_note:
                out["median_layout"]["carbon_note"] = self.median_note
        return out

    def decisions(self) -> dict[str, Any]:
        """Uncertainty bands, location/market-based accounting and water (docs/decisions.md)."""
        from .footprint import scope2, water_footprint

        c = (self.spec or RunSpec()).carbon
        out: dict[str, Any] = {}
        if self.uncertainty is not None:
            out["uncertainty"] = self.uncertainty.to_dict()
        out["accounting"] = scope2(self.carbon, contractual_ci=c.contractual_ci, renewable_share=c.renewable_share,
                                   residual_ci=c.residual_ci)
        out["water"] = water_footprint(self.carbon, wue_l_per_kwh=c.wue_l_per_kwh, ewif_l_per_kwh=c.ewif_l_per_kwh)
        return out

    def used(self) -> dict[str, Any]:
        """The resolved inputs (what each default became) and which options were left to defaults."""
        b, spec = self.carbon.breakdown, self.spec or RunSpec()
        given = spec.explicit()
        ci_given = bool({"ci", "region"} & given)
        region = spec.carbon.region or (spec.carbon.ci if isinstance(spec.carbon.ci, str) else None)
        defaults = [k for k in DEFAULTS_REPORTED if k not in given and not (k == "ci" and ci_given)]
        return {"model": self.model.name, "model_from": _model_origin(spec), "seq_len": self.model.seq_len,
                "tokens": self.model.train_tokens, "device": self.system.device.name,
                "deadline_days": spec.search.deadline_days, "region": region, "ci_g_per_kwh": b["ci_g_per_kwh"],
                "ci_source": (self.carbon.ci_source if ci_given else
                              f"default of data/power.yaml ({b['ci_g_per_kwh']:g} g/kWh)"),
                "pue": b["pue"], "lifetime_years": b["lifetime_years"], "precision": spec.recipe.precision,
                "defaults": defaults}


# Options whose default ``Estimate.used()`` names when the user left it (issue 13 item 7).
DEFAULTS_REPORTED = ("device", "deadline_days", "ci", "pue", "lifetime_years", "precision", "objective",
                     "embodied_mode", "power_split")


def _model_origin(spec: RunSpec) -> str:
    if spec.preset is not None:
        return f"preset {spec.preset} at d_model {spec.d_model}"
    m = spec.model
    if isinstance(m, ModelSpec):
        return "ModelSpec"
    if isinstance(m, dict):
        return "mapping"
    if isinstance(m, Path) or (isinstance(m, str) and m.endswith((".yaml", ".yml"))):
        return f"file {m}"
    return "catalog (data/models.yaml)"


def build_system(device: Any = "H100", *, years_ahead: float = 0.0, cpa_growth: float = 0.0) -> System:
    return project(load_system(device), years_ahead, cpa_growth_per_year=cpa_growth)


def build_model(model: Any = None, *, preset: str | None = None, d_model: int | None = None) -> ModelSpec:
    if preset is not None or d_model is not None:
        if model is not None:
            raise InputError("model", "give either a model or --preset/--d-model, not both")
        if preset is None or d_model is None:
            raise InputError("preset" if preset is None else "d_model", "preset and d_model go together")
        return from_preset(preset, d_model)
    if model is None:
        raise InputError("model", "give a model name, a model file, a mapping, or --preset with --d-model")
    return resolve_model(Path(model) if isinstance(model, Path) else model)


def estimate(model: Any = None, device: Any = None, **options: Any) -> Estimate:
    """Search the layout of a training run and account its carbon.

    The options are the fields of :class:`~carbonscaling.specs.RunSpec`'s parts by their
    flat names (``tp=8, precision="fp8", pue=1.2, deadline_days=60, ...``; ``interleave``
    is accepted for ``vp``); ``None`` leaves an option at its default. Equivalent to
    ``run(RunSpec.from_kwargs(model=model, device=device, **options))`` and to
    ``carbonscaling estimate`` (``Estimate.to_dict()`` is its ``--json``); ``estimate(spec)``
    with a :class:`~carbonscaling.specs.RunSpec` is ``run(spec)``.
    """
    if isinstance(model, RunSpec):
        if device is not None or options:
            raise InputError("model", "give a RunSpec alone, or keyword options without one")
        return run(model)
    return run(RunSpec.from_kwargs(model=model, device=device, **options))


def run(spec: RunSpec) -> Estimate:
    """Search the layout of the run ``spec`` describes and account its carbon."""
    carbon_kw = spec.carbon.carbon_kwargs()
    model, system, res, carbon, shortened = _search_within_lifetime(spec, carbon_kw)
    med, med_note = None, ""
    if spec.carbon.median_carbon and res.median_layout is not None:
        try:
            med = carbon_of_run(res.median_layout.devices, res.median_duration_s, res.median_mfu, system, carbon_kw,
                                model, step=step_of(model, system, res.median_layout, spec.recipe))
        except InfeasibleError as err:  # the median layout is context: its refusal must not refuse the answer
            if err.constraint != "lifetime":
                raise
            med_note = f"not charged: {err.reason.split(':')[0]}"
    hw, objective, pinned = spec.hardware, spec.search.objective, search_pins(spec.pins, model)
    capped = _lifetime_capped(spec.search.deadline_days, carbon_kw) if shortened is None else shortened
    settings = {"deadline_days": capped, "years_ahead": hw.years_ahead,
                "cpa_growth": hw.cpa_growth, "objective": objective, "pinned": pinned,
                "options": spec.recipe.model_dump(), **carbon_kw}
    unc = None
    if spec.carbon.uncertainty:
        from .uncertainty import propagate
        unc = propagate(carbon, samples=spec.carbon.uncertainty_samples, seed=spec.carbon.uncertainty_seed,
                        model=model)
    return Estimate(model=model, system=system, result=res, carbon=carbon, median_carbon=med, settings=settings,
                    spec=spec, uncertainty=unc, median_note=med_note)


def _search_within_lifetime(spec: RunSpec, carbon_kw: dict, tries: int = 3):
    """The search, its carbon and the shortened deadline (None: not shortened): shortened when the run it found outlasts the
    hardware under the ``refuse`` policy: the deadline is capped at the lifetime in steady state
    (:func:`_lifetime_capped`), but the lifetime holds the expected wall clock (steady state /
    goodput), so at a low goodput the cap alone still lets the search pick a run the accounting
    refuses where more devices would have met it. A pinned device count is refused as it is."""
    deadline = None
    for attempt in range(tries):
        model, system, res = search_run(spec, carbon_kw=carbon_kw, deadline_days=deadline)
        try:
            return model, system, res, carbon_of_run(res.layout.devices, res.duration_s, res.mfu, system,
                                                     carbon_kw, model, step=res.step), \
                None if deadline is None else res.deadline_s / 86400.0
        except InfeasibleError as err:
            if err.constraint != "lifetime" or spec.pins.devices is not None or attempt == tries - 1:
                raise
            shrink = err.details["lifetime_years"] / err.details["duration_years"]
            deadline = res.deadline_s / 86400.0 * shrink * (1 - 1e-6)
    raise AssertionError("unreachable")  # pragma: no cover


def search_run(spec: RunSpec, *, consts=None, carbon_kw: dict | None = None, deadline_days: float | None = None
               ) -> tuple[ModelSpec, System, SearchResult]:
    """The model, the (projected) system and the layout search of ``spec`` (no carbon accounting).

    The carbon settings are checked before the search (one idle node-hour), and price the
    layouts when the objective is carbon. ``consts`` overrides the performance constants;
    ``deadline_days`` the spec's deadline (already capped at the lifetime).
    """
    model = build_model(spec.model, preset=spec.preset, d_model=spec.d_model)
    hw = spec.hardware
    system = build_system(hw.device, years_ahead=hw.years_ahead, cpa_growth=hw.cpa_growth)
    carbon_kw = spec.carbon.carbon_kwargs() if carbon_kw is None else carbon_kw
    pinned = search_pins(spec.pins, model)
    idle = run_carbon(None, system, n_devices=system.devices_per_node, duration_h=1.0, utilization=1e-9,
                      **carbon_kw)
    objective = spec.search.objective
    score = carbon_scorer(system, carbon_kw, idle) if objective == "carbon" else None
    deadline = _lifetime_capped(spec.search.deadline_days, carbon_kw) if deadline_days is None else deadline_days
    res = search(model, system, deadline_days=deadline, options=spec.recipe, pinned=pinned,
                 objective=objective, carbon_score=score, consts=consts)
    return model, system, res


def search_pins(pins: LayoutPins, model: ModelSpec) -> dict[str, Any]:
    """The pinned layout parts as the search takes them (``global_batch_tokens`` in sequences).

    Parts the search does not model raise its error naming them (search.PINNABLE).
    """
    from .search import PINNABLE

    out = pins.pinned()
    gbt = out.pop("global_batch_tokens", None)
    if gbt is not None:
        if "global_batch" in out:
            raise InputError("global_batch_tokens", "give either global_batch or global_batch_tokens, not both")
        gbt = check_number("global_batch_tokens", gbt, model.seq_len, 1e12)
        out["global_batch"] = max(1, round(gbt / model.seq_len))
    if "vp" in out and "vp" not in PINNABLE:  # the search's name for virtual stages
        out["interleave"] = out.pop("vp")
    return out




def _lifetime_capped(deadline_days: float, carbon_kw: dict) -> float:
    """Under the ``refuse`` lifetime policy no run may outlast the hardware: the search's deadline
    (steady state) is capped at the lifetime (a longer deadline would only buy a run the accounting
    refuses), times a fixed goodput (the lifetime holds the expected wall clock, steady state /
    goodput; a modelled goodput is handled by :func:`_search_within_lifetime`)."""
    acc = resolve_accounting(**carbon_kw)
    if acc.lifetime_policy != "refuse" or not isinstance(deadline_days, (int, float)):
        return deadline_days
    return min(deadline_days, acc.lifetime_years * 365.0 * (acc.goodput or 1.0))


def carbon_scorer(system: System, carbon_kw: dict, idle: CarbonResult | None = None):
    """The ``carbon_score`` of ``search(objective="carbon")``: tCO2e of layouts from their device
    count, steady-state duration, MFU and step parts with the formulas of the final accounting
    (:func:`carbon.carbon_scorer`: power model, allocation, goodput, lifetime policy, embodied), so
    the carbon objective ranks layouts as they are charged. ``idle`` is accepted and unused."""
    acc = resolve_accounting(**carbon_kw)
    price = _price_layouts(system, acc)

    def score(devices, duration_s, mfu, step=None):
        return price(devices, duration_s, _power_utilization(acc.power_model, mfu, step))

    return score


def _power_utilization(power_model: str, mfu, step):
    """What drives accelerator power: MFU in the papers' model, else the step's busy share."""
    if power_model == "paper" or step is None:
        return np.clip(np.nan_to_num(mfu, nan=1e-12), 1e-12, 1.0)
    return busy_share(step)


def step_of(model: ModelSpec, system: System, layout, options) -> Any:
    """The step model's parts for one layout (e.g. the median layout, whose parts the search drops)."""
    from .perf.layout import LayoutGrid
    from .perf.step import evaluate

    return evaluate(model, system, LayoutGrid.from_layouts([layout]), options).take(0)


def carbon_of_run(devices: int, duration_s: float, mfu: float, system: System, carbon_kw: dict,
                  spec=None, step=None) -> CarbonResult:
    """Carbon of a searched run. Its power is driven by the step's busy share (``step``, the
    search's StepResult) under the measured and nameplate models, by its MFU under ``paper``."""
    model = carbon_kw.get("power_model") or "measured"
    util = float(_power_utilization(model, mfu if math.isfinite(mfu) else 1e-12, step))
    return run_carbon(spec, system, n_devices=devices, duration_h=duration_s / 3600.0, utilization=util, **carbon_kw)
