"""Inverse questions: what a carbon budget buys, and where and on what to train.

* :func:`best_loss_within`: the lowest scaling-law loss reachable within a carbon budget,
  searching the model width of a preset (and, with ``tokens="free"``, the token count).
* :func:`shortest_deadline_within`: the shortest deadline whose least-carbon run stays
  within a budget.
* :func:`cleanest_choice`: the device type and region that minimise total carbon for one
  model and deadline.

Each evaluation is one :func:`carbonscaling.chain.estimate` (carbon settings pass through
as keywords); an infeasible point (deadline, memory) counts as "over budget". Answers carry
the evidence: the neighbour that fails (the next larger width, the next shorter deadline).
Carbon is not strictly monotone in width or deadline (layouts exist only where the device
count factors, and the preset's expert count is rounded), so bisection finds a boundary,
and the neighbour is checked explicitly.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from .carbon import check_number, region_table
from .errors import InfeasibleError, InputError
from .pareto import _row, _run, geometric

TOKEN_MODES = ("preset", "free")


def _est(estimate: Callable | None) -> Callable:
    if estimate is not None:
        return estimate
    from .chain import estimate as chain_estimate
    return chain_estimate


def with_tokens(spec, tokens: float):
    """``spec`` trained on ``tokens`` instead: a preset's own C and critical batch follow."""
    from .scaling import _preset_rules, critical_batch_tokens, model_from_mapping

    data = spec.model_dump()
    data["tokens"] = float(tokens)
    if spec.preset is not None and spec.law_params is not None:
        rule = _preset_rules(spec.preset)
        flops = 6.0 * spec.law_params * tokens / spec.n_experts
        data["law_train_flops"] = flops
        data["global_batch_tokens"] = critical_batch_tokens(flops, spec.n_experts, rule, spec.seq_len)
    return model_from_mapping(data, origin="model")


def _preset_model(preset: str, d: int, tokens: float | None = None):
    from .scaling import from_preset
    spec = from_preset(preset, d)
    return spec if tokens is None else with_tokens(spec, tokens)


def _point(est_fn, spec, device, **kw) -> tuple[dict | None, str | None]:
    est, why = _run(est_fn, model=spec, device=device, **kw)
    if est is None:
        return None, why
    return _row(est, d_model=spec.d_model, preset=spec.preset), None


def _widths(preset: str, d_min: int | None, d_max: int | None) -> list[int]:
    from ._data import load_yaml
    from .scaling import _preset_rules

    step = int(_preset_rules(preset)["head_dim"])
    sweep = load_yaml("scaling_laws.yaml")["sweeps"].get(preset, {})
    lo = int(d_min or sweep.get("d_model_min", 1536))
    hi = int(d_max or sweep.get("d_model_max", 24576))
    if lo > hi:
        raise InputError("d_min", f"must be <= d_max ({hi}), got {lo}")
    return list(range(-(-lo // step) * step, hi // step * step + 1, step))


def _largest_within(budget: float, widths: list[int], carbon_of: Callable[[int], dict | None]):
    """Bisection for the largest width whose run stays within ``budget``; returns (row, next_row)."""
    ok = lambda r: r is not None and r["total_tco2e"] <= budget  # noqa: E731
    first = carbon_of(widths[0])
    if not ok(first):
        got = f"{first['total_tco2e']:,.4g} t" if first else "infeasible"
        raise InfeasibleError(f"even the smallest width (d_model={widths[0]}) exceeds the budget of "
                              f"{budget:,.4g} tCO2e ({got})", "budget")
    last = carbon_of(widths[-1])
    if ok(last):
        return last, None
    lo, hi, rows = 0, len(widths) - 1, {0: first, len(widths) - 1: last}
    while hi - lo > 1:
        mid = (lo + hi) // 2
        rows[mid] = carbon_of(widths[mid])
        lo, hi = (mid, hi) if ok(rows[mid]) else (lo, mid)
    return rows[lo], rows[hi]


def best_loss_within(budget_tco2e: float, preset: str = "cs-v2", device: Any = "H100", *, tokens: str = "preset",
                     d_min: int | None = None, d_max: int | None = None, min_tokens_per_param: float = 5.0,
                     estimate: Callable | None = None, **estimate_kw) -> dict[str, Any]:
    """Lowest loss of a ``preset`` model whose training stays within ``budget_tco2e``.

    ``tokens="preset"`` keeps the preset's token rule (D = 20 N): the answer is the largest
    width within budget and ``next`` (one head_dim wider) exceeds it. ``tokens="free"``
    also scales the token count: for each of a set of widths, the most tokens within budget
    (a few secant steps on carbon ~ tokens), then the lowest loss among them. Widths that
    would get fewer than ``min_tokens_per_param`` tokens per (preset) parameter are dropped:
    the loss laws were fitted on data-rich runs and reward tiny token counts at huge widths
    when extrapolated (an assumption, not a law; 0 disables it).
    """
    budget = check_number("budget_tco2e", budget_tco2e, 0, 1e12, lo_open=True)
    if tokens not in TOKEN_MODES:
        raise InputError("tokens", f"must be one of {', '.join(TOKEN_MODES)}, got {tokens!r}")
    est_fn = _est(estimate)
    estimate_kw.pop("model", None)
    widths = _widths(preset, d_min, d_max)
    cache: dict[int, dict | None] = {}

    def at_preset(d: int):
        if d not in cache:
            cache[d] = _point(est_fn, _preset_model(preset, d), device, **estimate_kw)[0]
        return cache[d]

    best, nxt = _largest_within(budget, widths, at_preset)
    out = {"budget_tco2e": budget, "preset": preset, "device": str(device), "tokens_mode": tokens,
           "answer": best, "next": nxt, "evaluated": len(cache)}
    if tokens == "free":
        tpp = check_number("min_tokens_per_param", min_tokens_per_param, 0, 1e6)
        out.update(_free_tokens(budget, preset, device, widths, best, est_fn, estimate_kw, tpp))
    return out


def _most_tokens(budget, preset, d, device, est_fn, kw, t0: float, steps: int = 5):
    """The most tokens at width ``d`` within budget (carbon ~ tokens: ratio steps, then a safety trim)."""
    t, best = t0, None
    for _ in range(steps):
        row, _ = _point(est_fn, _preset_model(preset, d, t), device, **kw)
        if row is None:
            t *= 0.5
            continue
        if row["total_tco2e"] <= budget and (best is None or row["tokens"] > best["tokens"]):
            best = row
        ratio = budget / row["total_tco2e"]
        if best is not None and 0.98 <= ratio <= 1.0:
            break
        t = min(1e24, t * ratio * (0.995 if ratio > 1 else 0.98))
    return best


def _free_tokens(budget, preset, device, widths, preset_best, est_fn, kw, min_tpp: float) -> dict[str, Any]:
    d_hi = min(widths[-1], 2 * preset_best["d_model"])
    cands = sorted({w for w in widths if w <= d_hi and w in
                    {min(widths, key=lambda x: abs(x - g)) for g in geometric(widths[0], d_hi, 10)}})
    rows = []
    for d in cands:
        spec = _preset_model(preset, d)
        r = _most_tokens(budget, preset, d, device, est_fn, kw, spec.train_tokens * budget
                         / max(preset_best["total_tco2e"], 1e-9) * (preset_best["params"] / spec.params_total))
        if r is not None and r["tokens"] >= min_tpp * spec.params_law:
            rows.append(r)
    if not rows:
        return {"free": [], "answer_free": None}
    ans = min(rows, key=lambda r: r["loss"])
    nxt, _ = _point(est_fn, _preset_model(preset, ans["d_model"] + (widths[1] - widths[0]), ans["tokens"]),
                    device, **kw)
    return {"free": rows, "answer_free": ans, "next_free": nxt}


def shortest_deadline_within(budget_tco2e: float, model: Any = None, device: Any = "H100", *,
                             lo_days: float = 1.0, hi_days: float = 3650.0, rel_tol: float = 0.01,
                             estimate: Callable | None = None, **estimate_kw) -> dict[str, Any]:
    """Shortest deadline (days) whose least-carbon run stays within ``budget_tco2e``."""
    budget = check_number("budget_tco2e", budget_tco2e, 0, 1e12, lo_open=True)
    lo = check_number("lo_days", lo_days, 0, 36500, lo_open=True)
    hi = check_number("hi_days", hi_days, lo, 36500, lo_open=True)
    est_fn = _est(estimate)
    for k in ("deadline_days", "objective"):
        estimate_kw.pop(k, None)
    evaluated = 0

    def at(days: float):
        nonlocal evaluated
        evaluated += 1
        est, why = _run(est_fn, model=model, device=device, deadline_days=days, objective="carbon", **estimate_kw)
        return (None, why) if est is None else (_row(est, deadline_days=days), None)

    top, why = at(hi)
    if top is None or top["total_tco2e"] > budget:
        got = why if top is None else f"least carbon {top['total_tco2e']:,.4g} t"
        raise InfeasibleError(f"no deadline up to {hi:g} days stays within {budget:,.4g} tCO2e ({got})", "budget")
    fail = None
    while hi / lo > 1 + rel_tol:
        mid = math.sqrt(lo * hi)
        row, why = at(mid)
        if row is not None and row["total_tco2e"] <= budget:
            hi, top = mid, row
        else:
            lo, fail = mid, row or {"deadline_days": mid, "reason": why}
    return {"budget_tco2e": budget, "answer": top, "shorter": fail, "evaluated": evaluated}


def cleanest_choice(model: Any = None, *, deadline_days: float = 90.0, devices: list[str] | None = None,
                    regions: list[str] | None = None, year: int | None = None, estimate: Callable | None = None,
                    **estimate_kw) -> dict[str, Any]:
    """Device type x region ranked by total carbon for one model and deadline.

    One least-carbon search per device at the reference intensity (``power.yaml``'s default);
    operational carbon is linear in the grid intensity for that layout, so each region's figure
    is ``operational x CI_region / CI_ref + embodied``.
    """
    from .carbon import defaults
    from .hardware import device_names

    est_fn = _est(estimate)
    for k in ("ci", "region", "objective", "device"):
        estimate_kw.pop(k, None)
    table = {r["region"]: r for r in region_table(year)}
    names = regions or sorted(table)
    for n in names:
        if n not in table:
            from .errors import UnknownNameError
            raise UnknownNameError("region", n, table)
    ci_ref = defaults()["ci_g_per_kwh"]
    rows, skipped = [], []
    for dev in devices or device_names():
        est, why = _run(est_fn, model=model, device=dev, deadline_days=deadline_days, objective="carbon",
                        ci=ci_ref, **estimate_kw)
        if est is None:
            skipped.append({"device": dev, "reason": why})
            continue
        base = _row(est, device=dev)
        for reg in names:
            ci = table[reg]["ci_g_per_kwh"]
            op = base["operational_tco2e"] * ci / ci_ref
            rows.append({**base, "region": reg, "ci_g_per_kwh": ci, "operational_tco2e": op,
                         "total_tco2e": op + base["embodied_tco2e"]})
    if not rows:
        raise InfeasibleError(f"no device meets the {deadline_days:g}-day deadline: "
                              + "; ".join(f"{s['device']}: {s['reason']}" for s in skipped[:3]), "deadline")
    rows.sort(key=lambda r: r["total_tco2e"])
    return {"best": rows[0], "rows": rows, "skipped": skipped, "year": next(iter(table.values()))["year"],
            "deadline_days": deadline_days}
