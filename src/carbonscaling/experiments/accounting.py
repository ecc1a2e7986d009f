"""Carbon accounting of searched points (the cheap part, done in the main process).

Variants that only change carbon accounting (no embodied, low static power, other grid,
CPA growth, the median layout) reuse a search: :func:`point_row` re-accounts its devices,
duration and utilization (MFU) with :func:`carbon.run_carbon`, or :func:`carbon.ideal_carbon`
for the ideal curve.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

@lru_cache(maxsize=4096)
def model_spec(preset: str, d_model: int):
    """The preset's model at width ``d_model`` (cached: points share models)."""
    from ..scaling import from_preset

    return from_preset(preset, d_model)


@lru_cache(maxsize=256)
def system_spec(device: str, years_ahead: float, cpa_growth: float = 0.0):
    """The projected system (cached: points share systems)."""
    from ..chain import build_system

    return build_system(device, years_ahead=years_ahead, cpa_growth=cpa_growth)


_EXTENSIVE = ("operational_tco2e", "embodied_tco2e", "total_tco2e", "total_low_tco2e", "total_high_tco2e",
              "energy_kwh", "device_static_tco2e", "device_dynamic_tco2e", "node_other_tco2e", "network_tco2e",
              "embodied_accelerator_tco2e", "embodied_cpu_tco2e", "embodied_dram_tco2e", "embodied_ssd_tco2e",
              "embodied_infrastructure_tco2e")


def _carbon_summary(cr) -> dict[str, Any]:
    b = cr.breakdown
    out = {"operational_tco2e": cr.operational_tco2e, "embodied_tco2e": cr.embodied_tco2e,
           "total_tco2e": cr.total_tco2e, "total_low_tco2e": cr.total_low_tco2e,
           "total_high_tco2e": cr.total_high_tco2e, "energy_kwh": cr.energy_kwh}
    for k in _EXTENSIVE[6:]:
        out[k] = float(b.get(k, 0.0))
    out.update(ci_g_per_kwh=b["ci_g_per_kwh"], pue=b["pue"], lifetime_years=b.get("lifetime_years"),
               ci_source=cr.ci_source, embodied_source=cr.embodied_source, scope=cr.scope)
    return out


def account(system, n_devices: int, duration_h: float, utilization: float, carbon: dict) -> dict[str, Any]:
    """:func:`run_carbon` of a searched run as a flat dict. run_carbon takes up to 1e12 devices
    and 1e9 hours per device, beyond every searched point (the largest: 3.5e7 devices; 2.2e6 hours, the
    median-latency layout of v1 Fig. 5a at d = 49,152); a point outside them raises its
    InputError."""
    from ..carbon import PAPER_ACCOUNTING
    from ..chain import carbon_of_run

    # The papers' experiments use the papers' accounting (MFU-driven static + dynamic power,
    # whole nodes, steady state, linear amortisation); issue 10's physics is for estimate.
    paper = {**PAPER_ACCOUNTING, **carbon}
    return _carbon_summary(carbon_of_run(n_devices, duration_h * 3600.0, utilization, system, paper))


def point_row(p, res: dict | None) -> dict[str, Any]:
    """The CSV row of one point: model, settings, search outcome and carbon."""
    from ..carbon import ideal_carbon
    from ..specs import CarbonSettings

    s = p.settings
    carbon_kw = CarbonSettings(**s["carbon"]).carbon_kwargs()
    spec = model_spec(s["preset"], p.d_model)
    m = spec.summary()  # the model's one plain-dict form (serialize.py); CSV names as before
    row: dict[str, Any] = {
        "experiment": p.scenario, "series": p.series, "kind": p.kind, "preset": s["preset"],
        **{k: m[k] for k in ("d_model", "n_layers", "n_experts", "params_law", "params_total", "params_active",
                             "tokens", "train_flops", "model_flops")},
        "batch_sequences": m["global_batch_sequences"], "seq_len": m["seq_len"], "loss": m["loss"],
        "device": s["device"],
        "years_ahead": s["years_ahead"], "cpa_growth": s["cpa_growth"], "deadline_days": s["deadline_days"],
        "on_infeasible": s["on_infeasible"],
        **{f"opt.{k}": v for k, v in s["options"].items()},
        **{f"carbon.{k}": v for k, v in s["carbon"].items()},
    }
    system = system_spec(s["device"], s["years_ahead"], s["cpa_growth"])
    if p.kind == "ideal":
        flops = spec.train_flops if s["ideal_flops"] == "law" else spec.model_flops
        c = carbon_kw
        cr = ideal_carbon(flops, system, deadline_days=s["deadline_days"], pue=c.get("pue"), ci=c.get("ci"),
                          year=c.get("year"))
        b = cr.breakdown
        row.update(status="ok", reason="", deadline_days_used=s["deadline_days"], devices=b["n_devices"],
                   duration_days=b["duration_h"] / 24.0, mfu=1.0, **_carbon_summary(cr))
        return _per_device(row)
    row.update({k: v for k, v in res.items() if k not in ("searches", "seconds")})
    row["search_s"] = res["seconds"]
    if res["status"] == "ok" and res["deadline_days_used"] > s["deadline_days"]:
        row.update(status="extended", reason=f"deadline aligned with the longest one any series of "
                                             f"{p.scenario} needed at this width")
    if res["status"] == "infeasible":
        return row
    devs, dur, mfu = ((res["median_devices"], res["median_duration_s"], res["median_mfu"]) if p.kind == "median"
                      else (res["devices"], res["duration_s"], res["mfu"]))
    row.update(devices_used=devs, duration_days=dur / 86400.0, mfu_used=mfu,
               **account(system, devs, dur / 3600.0, mfu, carbon_kw))
    return _per_device(row)


def _per_device(row: dict) -> dict:
    n = row.get("devices_used", row.get("devices"))
    tot = row["total_tco2e"]
    row["devices_used"] = n
    row["per_device_operational_tco2e"] = row["operational_tco2e"] / n
    row["per_device_embodied_tco2e"] = row["embodied_tco2e"] / n
    row["embodied_share"] = row["embodied_tco2e"] / tot if tot > 0 else 0.0
    return row
