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

from pydantic import ValidationError

import numpy as np

from .carbon import CarbonResult, carbon_scorer, check_number, resolve_accounting, run_carbon
from .errors import InputError, from_validation
from .hardware import System, describe, load_system, project
from .power import busy_share
from .perf.layout import TrainingOptions
from .scaling import ModelSpec, from_preset, resolve_model
from .search import SearchResult, search

STEP_PARTS = ("compute_s", "bubble_s", "tp_comm_s", "pp_comm_s", "dp_comm_s", "ep_comm_s", "optimizer_s",
              "overlap_slowdown_s")
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

    @property
    def steps(self) -> float:
        return self.model.train_tokens / (self.result.layout.global_batch_sequences * self.model.seq_len)

    def to_dict(self) -> dict[str, Any]:
        r, lay, st = self.result, self.result.layout, self.result.step
        step = {k: float(getattr(st, k)) for k in STEP_PARTS}
        step["step_time_s"] = float(st.step_time_s)
        mem = {f"{k}_gb": float(getattr(st, f"mem_{k}_gb")) for k in MEMORY_PARTS}
        mem["capacity_gb"] = self.system.device.hbm_gb * 2**30 / 1e9  # HBM "GB" are GiB
        out = {
            "model": self.model.summary(),
            "hardware": describe(self.system),
            "layout": {"devices": lay.devices, "tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep,
                       "zero": lay.zero, "microbatch": lay.microbatch, "interleave": lay.interleave,
                       "recompute": lay.recompute, "global_batch_sequences": lay.global_batch_sequences,
                       "microbatches": lay.microbatches},
            "performance": {"step_time_s": float(st.step_time_s), "steps": self.steps,
                            "duration_days": r.duration_s / 86400.0,
                            "device_hours": lay.devices * r.duration_s / 3600.0, "mfu": r.mfu,
                            "deadline_days": r.deadline_s / 86400.0, "meets_deadline": r.meets_deadline,
                            "layouts_evaluated": r.layouts_evaluated, "objective": r.objective},
            "energy_kwh": self.carbon.energy_kwh,
            "carbon": {"operational_tco2e": self.carbon.operational_tco2e,
                       "embodied_tco2e": self.carbon.embodied_tco2e, "total_tco2e": self.carbon.total_tco2e,
                       "total_low_tco2e": self.carbon.total_low_tco2e,
                       "total_high_tco2e": self.carbon.total_high_tco2e,
                       "embodied_mode": self.carbon.embodied_mode, "ci_source": self.carbon.ci_source},
            "breakdown": {"step": step, "step_fraction": {k: v / step["step_time_s"] for k, v in step.items()
                                                           if k != "step_time_s"},
                          "memory_per_device": mem, "carbon": dict(self.carbon.breakdown)},
            "settings": self.settings,
        }
        if r.median_layout is not None:
            med = r.median_layout
            out["median_layout"] = {**med.model_dump(), "devices": med.devices,
                                    "duration_days": r.median_duration_s / 86400.0, "mfu": r.median_mfu,
                                    "total_tco2e": self.median_carbon.total_tco2e if self.median_carbon else None}
        return out


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


def estimate(model: Any = None, device: Any = "H100", *, preset: str | None = None, d_model: int | None = None,
             years_ahead: float = 0.0, cpa_growth: float = 0.0, deadline_days: float = 90.0,
             devices: int | None = None, tp: int | None = None, pp: int | None = None, dp: int | None = None,
             ep: int | None = None, zero: int | None = None, microbatch: int | None = None,
             interleave: int | None = None, recompute: str | None = None, global_batch: int | None = None,
             global_batch_tokens: float | None = None, precision: str = "bf16", flash_attention: bool = True,
             sequence_parallel: bool = True, overlap_grad_reduce: bool = True, overlap_tp_comm: bool = False,
             overlap_ep_comm: bool = False, dynamic_eviction: bool = False,
             flexible_sharding: bool = False, qat: bool = False, objective: str = "fastest",
             ci: Any = None, region: str | None = None, pue: float | None = None,
             lifetime_years: float | None = None, power_split: str = "default", embodied_mode: str = "paper",
             infrastructure: bool = True, include_embodied: bool = True, median_carbon: bool = True,
             **accounting: Any) -> Estimate:
    """Search the layout of a training run and account its carbon (see ``carbonscaling estimate --help``)."""
    if ci is not None and region is not None:
        raise InputError("ci", "give either --ci or --region, not both")
    spec = build_model(model, preset=preset, d_model=d_model)
    system = build_system(device, years_ahead=years_ahead, cpa_growth=cpa_growth)
    try:
        opts = TrainingOptions(precision=precision, flash_attention=flash_attention,
                               sequence_parallel=sequence_parallel, overlap_grad_reduce=overlap_grad_reduce,
                               overlap_tp_comm=overlap_tp_comm, overlap_ep_comm=overlap_ep_comm,
                               dynamic_eviction=dynamic_eviction, flexible_sharding=flexible_sharding, qat=qat)
    except ValidationError as err:
        raise from_validation(err) from None
    if global_batch_tokens is not None:
        if global_batch is not None:
            raise InputError("global_batch_tokens", "give either global_batch or global_batch_tokens, not both")
        gbt = check_number("global_batch_tokens", global_batch_tokens, spec.seq_len, 1e12)
        global_batch = max(1, round(gbt / spec.seq_len))
    pinned = {"devices": devices, "tp": tp, "pp": pp, "dp": dp, "ep": ep, "zero": zero, "microbatch": microbatch,
              "interleave": interleave, "recompute": recompute, "global_batch": global_batch}
    pinned = {k: v for k, v in pinned.items() if v is not None}
    carbon_kw = dict(pue=pue, ci=region if region is not None else ci, lifetime_years=lifetime_years,
                     power_split=power_split, embodied_mode=embodied_mode, infrastructure=infrastructure,
                     include_embodied=include_embodied, **ACCOUNTING_DEFAULTS)
    unknown = sorted(set(accounting) - set(ACCOUNTING_DEFAULTS))
    if unknown:
        raise InputError(unknown[0], "unknown option")
    carbon_kw.update({k: v for k, v in accounting.items() if v is not None})
    deadline_days = _lifetime_capped(deadline_days, carbon_kw)
    # One node-hour at idle: validates the carbon settings before the search, and prices layouts.
    idle = run_carbon(None, system, n_devices=system.devices_per_node, duration_h=1.0, utilization=1e-9,
                      **carbon_kw)
    score = _carbon_score(system, carbon_kw, idle) if objective == "carbon" else None
    res = search(spec, system, deadline_days=deadline_days, options=opts, pinned=pinned, objective=objective,
                 carbon_score=score)
    carbon = carbon_of_run(res.layout.devices, res.duration_s, res.mfu, system, carbon_kw, spec, step=res.step)
    med = None
    if median_carbon and res.median_layout is not None:
        med = carbon_of_run(res.median_layout.devices, res.median_duration_s, res.median_mfu, system, carbon_kw, spec,
                            step=step_of(spec, system, res.median_layout, opts))
    settings = {"deadline_days": deadline_days, "years_ahead": years_ahead, "cpa_growth": cpa_growth,
                "objective": objective, "pinned": pinned, "options": opts.model_dump(),
                **{k: v for k, v in carbon_kw.items() if v is not None}}
    return Estimate(model=spec, system=system, result=res, carbon=carbon, median_carbon=med, settings=settings)


#: Carbon settings of issue 10 (power model, allocation, lifetime policy, goodput); None = data defaults.
ACCOUNTING_DEFAULTS: dict[str, Any] = dict.fromkeys((
    "power_model", "allocation", "lifetime_policy", "cooling", "goodput", "interruptions_per_device_day",
    "restart_minutes", "checkpoint_minutes", "evaluation_fraction", "development_overhead"))


def _lifetime_capped(deadline_days: float, carbon_kw: dict) -> float:
    """Under the ``refuse`` lifetime policy no run may outlast the hardware: the search's deadline
    is capped at the lifetime (a longer deadline would only buy a run the accounting refuses)."""
    acc = resolve_accounting(**carbon_kw)
    if acc.lifetime_policy != "refuse" or not isinstance(deadline_days, (int, float)):
        return deadline_days
    return min(deadline_days, acc.lifetime_years * 365.0)


def _carbon_score(system: System, carbon_kw: dict, idle: CarbonResult | None = None):
    """tCO2e of layouts from their device count, steady-state duration, MFU and step parts, with
    the formulas of the final accounting (:func:`carbon.carbon_scorer`: allocation, goodput,
    lifetime policy, embodied), so the carbon objective ranks layouts as they are charged."""
    acc = resolve_accounting(**carbon_kw)
    price = carbon_scorer(system, acc)

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
