"""Energy sections of the validation report (issue 10): goodput, scope, metered power.

* ``goodput``: for every run that reports device-hours, our steady-state prediction and the
  same divided by the modelled goodput (``goodput.yaml``: cited interruption rate, never
  fitted to these runs), with their errors and MAPEs side by side. Model-card GPU-hours
  (Llama 2, Llama 3, Llama 3.1) are real runs: failures, restarts and checkpoints are in them.
* ``scope``: runs that publish carbon (BLOOM) under the publication's own scope and under
  our full scope, on the published device-hours, so the difference is scope alone.
* ``power``: predicted W per accelerator slot next to every metered MLPerf Training row
  (:func:`carbonscaling.power.mlperf_check`).
"""

from __future__ import annotations

import math
from typing import Any

OURS = ("ours", "ours_searched")


def _mape(pairs: list[tuple[float, float]]) -> float | None:
    return sum(abs(p / r - 1.0) for p, r in pairs) / len(pairs) if pairs else None


def goodput_section(report) -> dict[str, Any]:
    """Per-run steady-state and goodput-adjusted device-hours against the reported, and MAPEs."""
    rows, summary = [], {}
    for m in [m for m in OURS if m in report.methods]:
        steady, adjusted, cards_s, cards_a = [], [], [], []
        for row in report.runs:
            rep = row["reported"].get("device_hours")
            pred = row["predicted"].get(m, {})
            if rep is None or pred.get("device_hours") is None or pred.get("device_hours_goodput") is None:
                continue
            s, a = pred["device_hours"], pred["device_hours_goodput"]
            rows.append({"method": m, "run_id": row["run_id"], "reported": rep, "steady": s,
                         "goodput": pred.get("goodput"), "adjusted": a, "steady_error": s / rep - 1.0,
                         "adjusted_error": a / rep - 1.0})
            steady.append((s, rep)), adjusted.append((a, rep))
            if row["run_id"].startswith("llama"):
                cards_s.append((s, rep)), cards_a.append((a, rep))
        summary[m] = {"n": len(steady), "mape_steady": _mape(steady), "mape_goodput": _mape(adjusted),
                      "n_model_cards": len(cards_s), "mape_steady_model_cards": _mape(cards_s),
                      "mape_goodput_model_cards": _mape(cards_a)}
    return {"rows": rows, "summary": summary}


def scope_rows(run, busy: float | None = None) -> list[dict[str, Any]]:
    """Operational and embodied tCO2e of ``run``'s published device-hours under its own scope
    (accelerators at TDP, PUE 1, the run's grid intensity) and under our full scope (measured
    node power at the busy share, host, power supplies, fans, switches, PUE, embodied with
    infrastructure). Published GPU-hours are real, so goodput is 1 in both."""
    from ..carbon import PAPER_ACCOUNTING, run_carbon
    from ..hardware import load_system

    if run.device_hours is None or run.n_devices is None or run.carbon_intensity_g_per_kwh is None:
        return []
    system = load_system(run.device_key or run.accelerator)
    base = dict(n_devices=run.n_devices, device_hours=run.device_hours, ci=run.carbon_intensity_g_per_kwh,
                goodput=1.0, lifetime_policy="whole_run")
    paper = run_carbon(None, system, utilization=1.0, pue=1.0, include_embodied=True, infrastructure=False,
                       **{**base, **PAPER_ACCOUNTING, "goodput": 1.0, "lifetime_policy": "whole_run"}, alpha=1.0)
    full = run_carbon(None, system, utilization=busy if busy else 1.0, pue=run.pue, **base)
    out = [{"scope": "published (accelerators at TDP, PUE 1; embodied: accelerators + host, no infrastructure)", "operational_tco2e": paper.device_energy_kwh
            * run.carbon_intensity_g_per_kwh / 1e6, "embodied_tco2e": paper.embodied_tco2e,
            "energy_kwh": paper.device_energy_kwh, "w_per_device": paper.breakdown["tdp_w"]},
           {"scope": "full (" + full.scope + ")", "operational_tco2e": full.operational_tco2e,
            "embodied_tco2e": full.embodied_tco2e, "energy_kwh": full.energy_kwh,
            "w_per_device": full.energy_kwh * 1000.0 / run.device_hours,
            "terms_tco2e": {k[:-6]: v for k, v in full.breakdown.items() if k.endswith("_tco2e")
                            and not k.startswith(("embodied", "development")) and isinstance(v, float)}}]
    out.insert(0, {"scope": "reported", "operational_tco2e": run.operational_tco2e,
                   "embodied_tco2e": run.embodied_tco2e, "energy_kwh": run.energy_kwh})
    return out


def scope_section(report, runs) -> list[dict[str, Any]]:
    """:func:`scope_rows` for every run that reports operational carbon, with our pinned busy share."""
    out = []
    by_id = {r["run_id"]: r for r in report.runs}
    for run in runs:
        if run.operational_tco2e is None:
            continue
        busy = by_id.get(run.run_id, {}).get("predicted", {}).get("ours", {}).get("busy")
        rows = scope_rows(run, busy)
        if rows:
            out.append({"run_id": run.run_id, "busy": busy, "rows": rows})
    return out


def power_section() -> list[dict[str, Any]]:
    from ..power import mlperf_check

    return mlperf_check()


def add_energy_sections(report, runs) -> None:
    report.extras["goodput"] = goodput_section(report)
    report.extras["scope"] = scope_section(report, runs)
    report.extras["power"] = power_section()


def _f(v: Any, kind: str = "num") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if kind == "pct":
        return f"{v:+.1%}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def energy_markdown(report) -> list[str]:
    """Markdown of the goodput, scope and power sections."""
    from .report import _md_table

    L: list[str] = []
    g = report.extras.get("goodput")
    if g and g["rows"]:
        L += ["## Device-hours: steady state and with goodput", "",
              "Goodput from data/goodput.yaml (Llama 3's interruption rate per GPU-day, restart and checkpoint "
              "costs; nothing fitted to these runs). Published GPU-hours of real runs include failures and "
              "restarts; the steady-state prediction does not.", ""]
        body = [[r["method"], r["run_id"], _f(r["reported"]), _f(r["steady"]), _f(r["steady_error"], "pct"),
                 f"{r['goodput']:.3f}" if r["goodput"] else "", _f(r["adjusted"]), _f(r["adjusted_error"], "pct")]
                for r in g["rows"]]
        L += _md_table(["method", "run", "reported", "steady", "error", "goodput", "with goodput", "error"], body)
        L += [""] + [f"- {m}: MAPE steady {_f(s['mape_steady'])} -> with goodput {_f(s['mape_goodput'])} "
                     f"(n={s['n']}); model cards only {_f(s['mape_steady_model_cards'])} -> "
                     f"{_f(s['mape_goodput_model_cards'])} (n={s['n_model_cards']})"
                     for m, s in g["summary"].items()] + [""]
    for entry in report.extras.get("scope", []):
        L += [f"## Scope: {entry['run_id']} on its published device-hours", "",
              "The published operational figure counts accelerators at TDP only (PUE 1); the full scope adds "
              "what a node draws beyond them, the facility (PUE) and embodied carbon.", ""]
        body = [[r["scope"], _f(r.get("energy_kwh")), _f(r.get("operational_tco2e")), _f(r.get("embodied_tco2e"))]
                for r in entry["rows"]]
        L += _md_table(["scope", "energy kWh", "operational t", "embodied t"], body) + [""]
    if report.extras.get("power"):
        L += ["## Metered node power (MLPerf Training, Llama 2 70B LoRA)", "",
              "W per accelerator slot at the node input (switches excluded) predicted by the measured power "
              "model, next to the metered value; busy share from measured strong scaling (see docs/carbon.md).", ""]
        body = [[p["row_id"], p["device"], str(p["n_nodes"]), p["reading"], p["cooling"], f"{p['busy']:.3f}",
                 p["busy_source"], _f(p["measured_w"]), _f(p["predicted_w"]), _f(p["error"], "pct"),
                 _f(p["nameplate_w"])] for p in report.extras["power"]]
        L += _md_table(["row", "device", "nodes", "reading", "cooling", "busy", "busy from", "measured W",
                        "predicted W", "error", "nameplate W"], body) + [""]
    return L
