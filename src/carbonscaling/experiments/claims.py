"""Check a paper's claims against the measured points.

Each scenario lists claims as ``{id, claim, check, args, note}``; ``check`` names a
function in :data:`CHECKS`, called with the run's rows and ``args``, which returns
what we measured and a verdict: ``agrees`` (within the stated tolerance),
``partly`` (holds on part of the range), ``disagrees``, or ``not evaluated`` (no
comparable points). Series are named by label, or ``experiment:label`` to use
another experiment's points. Carbon comparisons pair points of the same model
(same ``d_model``, hence the same loss); infeasible points are left out and counted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import median
from typing import Any, Callable

from ..errors import InputError

Rows = dict[str, list[dict]]
AGREES, PARTLY, DISAGREES, NOT_EVALUATED = "agrees", "partly", "disagrees", "not evaluated"


@dataclass(frozen=True)
class ClaimResult:
    id: str
    experiment: str
    claim: str
    measured: str
    tolerance: str
    verdict: str
    note: str = ""


# ---- helpers -----------------------------------------------------------------------------
class MissingExperiment(LookupError):
    """A claim refers to an experiment that is not part of this run."""


def curve(rows: Rows, experiment: str, ref: str) -> dict[int, dict]:
    """Feasible points of series ``ref`` (``label`` or ``experiment:label``) by d_model."""
    exp, _, label = ref.rpartition(":")
    exp = exp or experiment
    if exp not in rows:
        raise MissingExperiment(exp)
    pts = {r["d_model"]: r for r in rows[exp] if r["series"] == label}
    if not pts:
        raise InputError("claims.args", f"no series {label!r} in experiment {exp!r}")
    return {d: r for d, r in pts.items() if r.get("status") != "infeasible" and _finite(r.get("total_tco2e"))}


def feasible_max(rows: Rows, experiment: str, ref: str) -> float | None:
    """The largest preset N of a series that met its original deadline."""
    exp, _, label = ref.rpartition(":")
    ns = [r["params_law"] for r in rows[exp or experiment] if r["series"] == label and r.get("status") == "ok"]
    return max(ns) if ns else None


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def same_deadline(x: dict, y: dict) -> bool:
    """Comparable runs: the same deadline was used (ideal carbon does not depend on it)."""
    return "ideal" in (x["kind"], y["kind"]) or x.get("deadline_days_used") == y.get("deadline_days_used")


def paired(rows: Rows, experiment: str, a: str, b: str, col: str = "total_tco2e") -> list[tuple[dict, float, float]]:
    """``(row_a, a[col], b[col])`` for the models both series reached under the same
    deadline (points whose deadlines were extended differently are not comparable), by size."""
    ca, cb = curve(rows, experiment, a), curve(rows, experiment, b)
    return [(ca[d], ca[d][col], cb[d][col]) for d in sorted(set(ca) & set(cb)) if same_deadline(ca[d], cb[d])]


def common(curves: list[dict[int, dict]]) -> list[int]:
    """Widths every curve reached, all under one deadline."""
    ds = sorted(set.intersection(*(set(c) for c in curves)))
    return [d for d in ds if all(same_deadline(curves[0][d], c[d]) for c in curves[1:])]


def fmt_n(x: float) -> str:
    return f"{x:.2g}" if x < 1e4 else f"{x:.1e}".replace("e+", "e")


def pct(x: float) -> str:
    return f"{100 * x:.0f} %"


def span(pairs: list) -> str:
    """The parameter range of paired points (the preset's N)."""
    ns = [p[0]["params_law"] for p in pairs]
    return f"N = {fmt_n(min(ns))}..{fmt_n(max(ns))}" if ns else "no points"


def coverage(rows: Rows, experiment: str, labels: list[str]) -> str:
    """How many points of the series were infeasible or needed a longer deadline."""
    out = []
    for ref in labels:
        exp, _, label = ref.rpartition(":")
        if (exp or experiment) not in rows:
            continue
        pts = [r for r in rows[exp or experiment] if r["series"] == label and r["kind"] != "ideal"]
        ext = sum(r.get("status") == "extended" for r in pts)
        inf = sum(r.get("status") == "infeasible" for r in pts)
        if ext or inf:
            out.append(f"{label}: {ext} extended, {inf} infeasible of {len(pts)}")
    return "; ".join(out)


def _by_fraction(k: int, n: int, partly_from: float = 0.5) -> str:
    if n == 0:
        return NOT_EVALUATED
    return AGREES if k == n else (PARTLY if k / n >= partly_from else DISAGREES)


# ---- checks ------------------------------------------------------------------------------
def check_ratio(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    lo, hi = (a["expect"] + [None])[:2]
    tol = float(a.get("tolerance", 0.0))
    pairs = paired(rows, exp, a["series"], a["reference"])
    r = [x / y for _, x, y in pairs]
    if not r:
        return "no comparable points", "", NOT_EVALUATED
    lo_t = lo * (1 - tol) if lo is not None else -math.inf
    hi_t = hi * (1 + tol) if hi is not None else math.inf
    k = sum(lo_t <= v <= hi_t for v in r)
    inside = [p[0]["params_law"] for p, v in zip(pairs, r) if lo_t <= v <= hi_t]
    where = f"; within bounds for N = {fmt_n(min(inside))}..{fmt_n(max(inside))}" if inside and k < len(r) else ""
    measured = (f"{a['series']} / {a['reference']} = {min(r):.3g}..{max(r):.3g} (median {median(r):.3g}) "
                f"over {len(r)} models, {span(pairs)}{where}")
    bounds = f"[{lo if lo is not None else '-'}, {hi if hi is not None else 'inf'}]"
    return measured, f"ratio in {bounds}" + (f" +-{pct(tol)}" if tol else "") + " at every model", _by_fraction(k, len(r))


def check_between(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    s, lo, hi = curve(rows, exp, a["series"]), curve(rows, exp, a["lower"]), curve(rows, exp, a["upper"])
    ds = common([s, lo, hi])
    pos = []
    for d in ds:
        x, l_, h = (math.log(c[d]["total_tco2e"]) for c in (s, lo, hi))
        pos.append((x - l_) / (h - l_) if h != l_ else 0.0)
    k = sum(-1e-9 <= p <= 1 + 1e-9 for p in pos)
    if not ds:
        return "no comparable points", "", NOT_EVALUATED
    measured = (f"{a['series']} lies between {a['lower']} and {a['upper']} at {k}/{len(ds)} models "
                f"(log-position 0 = {a['lower']}, 1 = {a['upper']}: {min(pos):.2f}..{max(pos):.2f}, "
                f"median {median(pos):.2f})")
    return measured, "between the two curves at every model", _by_fraction(k, len(ds))


def check_fit_compare(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    from .fit import fit_power_law

    fits = {}
    for ref in (a["series"], a["reference"]):
        c = curve(rows, exp, ref)
        pts = [c[d] for d in sorted(c)]
        fits[ref] = fit_power_law([p["total_tco2e"] for p in pts], [p["loss"] for p in pts])
    f, g = fits[a["series"]], fits[a["reference"]]
    tol = float(a.get("alpha_tolerance", 0.25))
    rel = abs(f.alpha - g.alpha) / g.alpha
    ok = [rel <= tol, f.k > g.k, f.r2 >= 0.9]
    measured = (f"{a['series']}: alpha = {f.alpha:.4f}, k = {f.k:.4g}, R^2 = {f.r2:.3f}; {a['reference']}: "
                f"alpha = {g.alpha:.4f}, k = {g.k:.4g}, R^2 = {g.r2:.3f} (alpha differs by {pct(rel)})")
    verdict = AGREES if all(ok) else (PARTLY if sum(ok) >= 2 else DISAGREES)
    return measured, f"alpha within {pct(tol)}, k larger, R^2 >= 0.9", verdict


def check_ordering(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    cs = [curve(rows, exp, s) for s in a["series"]]
    ds = common(cs)
    bad = [d for d in ds if not all(cs[i][d]["total_tco2e"] > cs[i + 1][d]["total_tco2e"] for i in range(len(cs) - 1))]
    k = len(ds) - len(bad)
    where = f"; out of order at N = {', '.join(fmt_n(cs[0][d]['params_law']) for d in bad)}" if bad else ""
    measured = f"{' > '.join(a['series'])} holds at {k}/{len(ds)} models all reached{where}"
    return measured, "strict order at every common model", _by_fraction(k, len(ds))


def check_diminishing(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    s = a["series"]
    steps = []
    for x, y in zip(s, s[1:]):
        pairs = paired(rows, exp, x, y)
        steps.append((f"{x}->{y}", median(p / q for _, p, q in pairs) if pairs else math.nan))
    vals = [v for _, v in steps]
    if any(not math.isfinite(v) for v in vals):
        return "missing points", "", NOT_EVALUATED
    k = sum(vals[i] > vals[i + 1] for i in range(len(vals) - 1))
    measured = "median carbon saved per generation: " + ", ".join(f"{n} x{v:.2f}" for n, v in steps)
    verdict = AGREES if k == len(vals) - 1 else (PARTLY if vals[-1] < vals[0] else DISAGREES)
    return measured, "each step's saving factor smaller than the previous", verdict


def check_per_device_total(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    pts = [next(iter(curve(rows, exp, s).values()), None) for s in a["series"]]
    if any(p is None for p in pts):
        return "a device has no feasible point", "", NOT_EVALUATED
    per = [p["per_device_operational_tco2e"] + p["per_device_embodied_tco2e"] for p in pts]
    tot = [p["total_tco2e"] for p in pts]
    share = [p["embodied_share"] for p in pts]
    inc = lambda v: all(x < y for x, y in zip(v, v[1:]))  # noqa: E731
    ok = [inc(per), inc([-t for t in tot]), inc(share)]
    measured = "; ".join(
        f"{s}: {p * 1e3:.3g} kg/device, {fmt_n(t)} t total, {pct(e)} embodied, {q['devices_used']:,} devices"
        for s, p, t, e, q in zip(a["series"], per, tot, share, pts))
    verdict = AGREES if all(ok) else (PARTLY if sum(ok) >= 2 else DISAGREES)
    return measured, "per-device rises, total falls, embodied share rises, monotonically", verdict


def _reductions(rows: Rows, exp: str, a: dict, ref_key: str = "reference") -> list[tuple[dict, float]]:
    return [(r, 1.0 - x / y) for r, x, y in paired(rows, exp, a["series"], a[ref_key])]


def check_reduction(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    red = _reductions(rows, exp, a)
    if not red:
        return "no comparable points", "", NOT_EVALUATED
    if a.get("largest"):
        red = red[-int(a["largest"]):]
    v = [x for _, x in red]
    m = median(v)
    measured = (f"{a['series']} vs {a['reference']}: {pct(min(v))}..{pct(max(v))} less carbon "
                f"(median {pct(m)}) over {len(v)} models, N = {fmt_n(red[0][0]['params_law'])}.."
                f"{fmt_n(red[-1][0]['params_law'])}")
    if "expect" in a:
        e, tol = float(a["expect"]), float(a.get("tolerance", 0.1))
        verdict = AGREES if abs(m - e) <= tol else (PARTLY if min(v) - tol <= e <= max(v) + tol else DISAGREES)
        return measured, f"median reduction {pct(e)} +- {pct(tol)} points", verdict
    if "less_than" in a:
        other = [x for _, x in _reductions(rows, exp, {**a, "series": a["less_than"]})]
        mo = median(other)
        measured += f"; medians {100 * m:.2f} % vs {a['less_than']} {100 * mo:.2f} %"
        return measured, f"median reduction below {a['less_than']}'s", AGREES if m < mo else DISAGREES
    floor = float(a.get("at_least", 0.0))
    k = sum(x > floor for x in v)
    if a.get("everywhere"):
        return measured, f"reduction > {pct(floor)} at every model", AGREES if k == len(v) else DISAGREES
    return measured, f"reduction > {pct(floor)} at each listed model", _by_fraction(k, len(v))


def check_reduction_by_size(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    red = _reductions(rows, exp, a)
    t = float(a["threshold_params"])
    small = [x for r, x in red if r["params_law"] < t]
    large = [x for r, x in red if r["params_law"] >= t]
    if not small or not large:
        return f"points on one side of N = {fmt_n(t)} only", "", NOT_EVALUATED
    measured = (f"{a['series']} vs {a['reference']}: below N = {fmt_n(t)} {pct(min(small))}..{pct(max(small))} "
                f"less (median {pct(median(small))}); at or above: {pct(min(large))}..{pct(max(large))} "
                f"(median {pct(median(large))})")
    ok = [median(small) > 0.1, median(large) < median(small)]
    return measured, "clear saving for small models, smaller saving above the threshold", \
        AGREES if all(ok) else (PARTLY if any(ok) else DISAGREES)


def check_helps_largest(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    red = [(r, 1.0 - x / y, y) for r, x, y in paired(rows, exp, a["series"], a["reference"])]
    t = float(a["threshold_tco2e"])
    small = [x for _, x, y in red if y < t]
    large = [x for _, x, y in red if y >= t]
    sm, lg = float(a.get("small_max", 0.05)), float(a.get("large_min", 0.2))
    first = next((r["params_law"] for r, x, _ in red if x > sm), None)
    measured = (f"{a['series']} vs {a['reference']}: below {fmt_n(t)} tCO2e {len(small)} models, max saving "
                f"{pct(max(small)) if small else '-'}; at or above: {len(large)} models, savings "
                f"{', '.join(pct(x) for x in large) or '-'}"
                + (f"; saving first exceeds {pct(sm)} at N = {fmt_n(first)}" if first else ""))
    reach = feasible_max(rows, exp, a["reference"])
    if reach:
        measured += f"; {a['reference']} meets the base deadline up to N = {fmt_n(reach)}"
    if not large:
        return measured, "", NOT_EVALUATED
    ok = [not small or max(small) <= sm, max(large) >= lg]
    return measured, f"saving <= {pct(sm)} below, >= {pct(lg)} above the threshold", \
        AGREES if all(ok) else (PARTLY if any(ok) else DISAGREES)


def check_marginal(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    top, tol = float(a.get("max_reduction", 0.1)), float(a.get("tolerance", 0.01))
    parts, ok = [], []
    for s in a["series"]:
        v = [x for _, x in _reductions(rows, exp, {**a, "series": s})]
        parts.append(f"{s}: {pct(min(v))}..{pct(max(v))} (median {pct(median(v))})" if v else f"{s}: no points")
        ok.append(bool(v) and min(v) >= -tol and median(v) <= top)
    return f"savings vs {a['reference']} " + "; ".join(parts), f"never more than {pct(tol)} worse, median saving <= {pct(top)}", \
        _by_fraction(sum(ok), len(ok), 0.5)


def check_share(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    pts = list(curve(rows, exp, a["series"]).values())
    if not pts:
        return "no feasible point", "", NOT_EVALUATED
    v = pts[0][a.get("column", "embodied_share")]
    e, tol = float(a["expect"]), float(a.get("tolerance", 0.03))
    return f"{a['series']}: {pct(v)} ({v:.3f})", f"{pct(e)} +- {pct(tol)} points", AGREES if abs(v - e) <= tol else (
        PARTLY if abs(v - e) <= 3 * tol else DISAGREES)


def check_trend(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    c = curve(rows, exp, a["series"])
    ds = sorted(c)
    v = [c[d][a["column"]] for d in ds]
    if len(v) < 3:
        return "too few points", "", NOT_EVALUATED
    sign = -1 if a.get("direction", "decreasing") == "decreasing" else 1
    steps = sum(sign * (y - x) > 0 for x, y in zip(v, v[1:]))
    measured = (f"{a['column']} {v[0]:.3f} at N = {fmt_n(c[ds[0]]['params_law'])} -> {v[-1]:.3f} at N = "
                f"{fmt_n(c[ds[-1]]['params_law'])}; {steps}/{len(v) - 1} steps {a.get('direction', 'decreasing')}; "
                f"values {', '.join(f'{x:.3f}' for x in v)}")
    ok = sign * (v[-1] - v[0]) > 0
    return measured, "overall trend, most steps", AGREES if ok and steps >= 0.75 * (len(v) - 1) else (
        PARTLY if ok else DISAGREES)


def check_gap_exceeds(rows: Rows, exp: str, a: dict) -> tuple[str, str, str]:
    gap = {r["d_model"]: x - y for r, x, y in paired(rows, exp, a["series"], a["reference"])}
    parts, ok = [], []
    for o in a["others"]:
        og = {r["d_model"]: y - x for r, x, y in paired(rows, exp, o, a["others_reference"])}
        ds = sorted(set(gap) & set(og))
        ratios = [gap[d] / og[d] for d in ds if og[d] > 0]
        if not ratios:
            continue
        parts.append(f"vs saving of {o.rpartition(':')[2]}: x{min(ratios):.2g}..x{max(ratios):.2g} "
                     f"(median x{median(ratios):.2g})")
        ok.append(sum(r > 1 for r in ratios) / len(ratios))
    if not ok:
        return "no comparable points", "", NOT_EVALUATED
    measured = f"extra carbon of {a['series']} over {a['reference']}, " + "; ".join(parts)
    return measured, "overhead larger than each saving at every model", \
        AGREES if min(ok) == 1 else (PARTLY if min(ok) >= 0.5 else DISAGREES)


CHECKS: dict[str, Callable[[Rows, str, dict], tuple[str, str, str]]] = {
    "ratio": check_ratio, "between": check_between, "fit_compare": check_fit_compare,
    "ordering": check_ordering, "diminishing": check_diminishing, "per_device_total": check_per_device_total,
    "reduction": check_reduction, "reduction_by_size": check_reduction_by_size,
    "helps_largest": check_helps_largest, "marginal": check_marginal, "share": check_share,
    "trend": check_trend, "gap_exceeds": check_gap_exceeds,
}


def evaluate_claims(scenarios: list, rows: Rows, extra: dict[str, Callable] | None = None) -> list[ClaimResult]:
    """Every claim of every scenario, checked against ``rows`` (experiment -> rows)."""
    checks = {**CHECKS, **(extra or {})}
    out = []
    for sc in scenarios:
        for c in sc.claims:
            fn = checks.get(c.check)
            if fn is None:
                raise InputError(f"{sc.name}.claims.{c.id}.check",
                                 f"unknown check {c.check!r} (known: {', '.join(sorted(checks))})")
            try:
                measured, tol, verdict = fn(rows, sc.name, dict(c.args))
            except MissingExperiment as err:
                out.append(ClaimResult(c.id, sc.name, c.claim, f"needs experiment {err} in the same run "
                                       f"(e.g. carbonscaling paper --only {sc.name},{err})", "", NOT_EVALUATED, c.note))
                continue
            except (KeyError, TypeError) as err:
                raise InputError(f"{sc.name}.claims.{c.id}.args", f"missing or bad argument {err}") from None
            cov = coverage(rows, sc.name, labels_of(c.args)) if sc.plot != "validation" else ""
            if cov:
                measured += f" [{cov}]"
            out.append(ClaimResult(c.id, sc.name, c.claim, measured, tol, verdict, c.note))
    return out


def labels_of(args: dict) -> list[str]:
    """Series a claim's arguments name (``label`` or ``experiment:label``)."""
    out = []
    for k in ("series", "reference", "lower", "upper", "less_than", "others", "others_reference"):
        v = args.get(k)
        out += v if isinstance(v, list) else ([v] if isinstance(v, str) else [])
    return list(dict.fromkeys(out))
