"""Trade-offs as Pareto fronts: deadline vs carbon vs device count, and loss vs carbon.

Every point is one :func:`carbonscaling.chain.estimate` (search + carbon), so the fronts
inherit its layout rules and carbon settings (pass them as keywords). A point is on the
front when no other point is at least as good in every objective and better in one
(:func:`pareto_mask`; all objectives are minimised).

* :func:`deadline_front`: one model on one device type. Points come from two sweeps: the
  device count pinned on a geometric grid (the fastest layout at that count, which is also
  the least-carbon one there: at a fixed count carbon falls with duration), and the
  deadline on a grid with the least-carbon objective. Objectives: duration (days; a run of
  duration d meets every deadline >= d), total tCO2e, devices.
* :func:`loss_front`: a scaling-law preset over model widths at one deadline. Objectives:
  scaling-law loss and total tCO2e.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .errors import InfeasibleError, InputError
from .serialize import layout_label

DEADLINE_OBJECTIVES = ("duration_days", "total_tco2e", "devices")
LOSS_OBJECTIVES = ("loss", "total_tco2e")


def pareto_mask(points: Any) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``points`` (n x k, every column minimised).

    A row is dominated when another row is <= in every column and < in at least one.
    Duplicates of a non-dominated row are all kept.
    """
    p = np.asarray(points, dtype=float)
    if p.ndim != 2:
        raise InputError("points", f"must be a 2-d array (points x objectives), got shape {p.shape}")
    le = (p[:, None, :] <= p[None, :, :]).all(axis=2)   # le[i, j]: row i <= row j everywhere
    lt = (p[:, None, :] < p[None, :, :]).any(axis=2)
    dominated = (le & lt).any(axis=0)                  # some i dominates j
    return ~dominated


def _run(estimate: Callable, **kw) -> tuple[Any | None, str | None]:
    """The estimate, or ``(None, reason)`` when the request is infeasible (bad input still raises)."""
    kw = {"uncertainty": False, **kw}  # a front is a sweep: bands per point are not needed
    try:
        return estimate(**kw), None
    except InfeasibleError as err:
        return None, str(err)


def _row(est, **extra) -> dict[str, Any]:
    r, c, lay = est.result, est.carbon, est.result.layout
    return {**extra, "devices": int(lay.devices), "duration_days": r.duration_s / 86400.0, "mfu": r.mfu,
            "total_tco2e": c.total_tco2e, "operational_tco2e": c.operational_tco2e,
            "embodied_tco2e": c.embodied_tco2e, "energy_kwh": c.energy_kwh,
            "layout": layout_label(lay),
            "loss": est.model.loss, "params": est.model.params_total, "tokens": est.model.train_tokens}


def _mark(rows: list[dict], objectives: Sequence[str]) -> list[dict]:
    if rows:
        mask = pareto_mask([[r[k] for k in objectives] for r in rows])
        for r, m in zip(rows, mask):
            r["on_front"] = bool(m)
    return rows


def geometric(lo: float, hi: float, n: int) -> list[float]:
    if n < 2 or hi <= lo:
        return [lo]
    return [float(x) for x in np.geomspace(lo, hi, n)]


def deadline_front(model: Any = None, device: Any = "H100", *, deadlines: Iterable[float] | None = None,
                   device_counts: Iterable[int] | None = None, points: int = 10, estimate: Callable | None = None,
                   **estimate_kw) -> dict[str, Any]:
    """Pareto front over (duration, total carbon, devices) for one model on one device type.

    ``deadlines`` defaults to ``points`` values from 30 to 365 days; ``device_counts`` to
    ``points`` node-rounded counts spanning the devices those deadlines needed. Returns
    ``{"rows": [...], "skipped": [...], "objectives": [...]}``; each row has ``on_front``.
    """
    from .chain import estimate as chain_estimate

    est_fn = estimate or chain_estimate
    estimate_kw.pop("objective", None)
    estimate_kw.pop("deadline_days", None)
    ds = list(deadlines) if deadlines is not None else [round(x, 1) for x in geometric(30, 365, points)]
    for d in ds:
        if not (isinstance(d, (int, float)) and 0 < d <= 36500):
            raise InputError("deadlines", f"each must be in (0, 36500] days, got {d!r}")
    rows, skipped = [], []
    for d in ds:
        est, why = _run(est_fn, model=model, device=device, deadline_days=d, objective="carbon", **estimate_kw)
        if est is None:
            skipped.append({"deadline_days": d, "reason": why})
            continue
        rows.append(_row(est, sweep="deadline", deadline_days=d, objective="carbon"))
    if device_counts is None and rows:
        lo, hi = min(r["devices"] for r in rows), max(r["devices"] for r in rows)
        device_counts = sorted({max(8, int(round(x / 8)) * 8) for x in geometric(lo, hi * 1.5, points)})
    for n in device_counts or []:
        est, why = _run(est_fn, model=model, device=device, devices=int(n), deadline_days=36500, **estimate_kw)
        if est is None:
            skipped.append({"devices": n, "reason": why})
            continue
        rows.append(_row(est, sweep="devices", deadline_days=None, objective="fastest"))
    rows = _mark(rows, DEADLINE_OBJECTIVES)
    return {"rows": rows, "skipped": skipped, "objectives": list(DEADLINE_OBJECTIVES), "extremes": extremes(rows)}


def extremes(rows: list[dict]) -> dict[str, dict]:
    """The fastest, least-carbon and fewest-devices points (ties broken by the other objectives)."""
    if not rows:
        return {}
    key = {"fastest": ("duration_days", "total_tco2e", "devices"),
           "least_carbon": ("total_tco2e", "duration_days", "devices"),
           "fewest_devices": ("devices", "total_tco2e", "duration_days")}
    return {name: min(rows, key=lambda r: tuple(r[k] for k in ks)) for name, ks in key.items()}


def preset_widths(preset: str, points: int = 9) -> list[int]:
    """``points`` widths (multiples of the preset's head_dim) across the preset's sweep range."""
    from ._data import load_yaml
    from .scaling import _preset_rules

    rule = _preset_rules(preset)
    sweep = load_yaml("scaling_laws.yaml")["sweeps"].get(preset) or load_yaml("scaling_laws.yaml")["sweeps"]["cs-v1"]
    step = int(rule["head_dim"])
    ds = geometric(sweep["d_model_min"], sweep["d_model_max"], points)
    return sorted({max(step, int(round(d / step)) * step) for d in ds})


def loss_front(preset: str = "cs-v2", device: Any = "H100", *, d_models: Iterable[int] | None = None,
               points: int = 9, estimate: Callable | None = None, **estimate_kw) -> dict[str, Any]:
    """Pareto front over (scaling-law loss, total carbon) across widths of a preset."""
    from .chain import estimate as chain_estimate

    est_fn = estimate or chain_estimate
    widths = list(d_models) if d_models is not None else preset_widths(preset, points)
    rows, skipped = [], []
    for d in widths:
        est, why = _run(est_fn, preset=preset, d_model=int(d), device=device, **estimate_kw)
        if est is None:
            skipped.append({"d_model": d, "reason": why})
            continue
        rows.append(_row(est, d_model=int(d), preset=preset))
    return {"rows": _mark(rows, LOSS_OBJECTIVES), "skipped": skipped, "objectives": list(LOSS_OBJECTIVES)}


# ---- figures ----------------------------------------------------------------------------
def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def deadline_figure(front: dict, path: str | Path, title: str = "") -> Path:
    """Duration vs total carbon; colour = devices; the front joined by a line."""
    plt = _plt()
    rows = front["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    x = [r["duration_days"] for r in rows]
    y = [r["total_tco2e"] for r in rows]
    sc = ax.scatter(x, y, c=[r["devices"] for r in rows], cmap="viridis", norm=_lognorm(rows), s=28,
                    edgecolors="none")
    two = pareto_mask([[a, b] for a, b in zip(x, y)]) if rows else []
    line = sorted((r for r, m in zip(rows, two) if m), key=lambda r: r["duration_days"])
    ax.step([r["duration_days"] for r in line], [r["total_tco2e"] for r in line], "k-", lw=0.8, where="post",
            label="front in (duration, carbon)")
    on = [r for r in rows if r["on_front"]]
    ax.scatter([r["duration_days"] for r in on], [r["total_tco2e"] for r in on], facecolors="none",
               edgecolors="k", s=70, lw=0.8, label="front in (duration, carbon, devices)")
    fig.colorbar(sc, ax=ax, label="devices")
    ax.set_xlabel("training duration (days)")
    ax.set_ylabel("total tCO2e (operational + embodied)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.13, right=0.98, bottom=0.12)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _lognorm(rows):
    from matplotlib.colors import LogNorm
    v = [r["devices"] for r in rows] or [1]
    return LogNorm(vmin=min(v), vmax=max(max(v), min(v) + 1))


def loss_figure(front: dict, path: str | Path, title: str = "", budget_tco2e: float | None = None,
                answer: dict | None = None) -> Path:
    """Total carbon (log) vs loss, the front joined; optional budget line and inverse answer."""
    plt = _plt()
    rows = front["rows"]
    fig, ax = plt.subplots(figsize=(7, 4.6))
    ax.scatter([r["total_tco2e"] for r in rows], [r["loss"] for r in rows], s=24, color="#888")
    on = sorted((r for r in rows if r["on_front"]), key=lambda r: r["total_tco2e"])
    ax.plot([r["total_tco2e"] for r in on], [r["loss"] for r in on], "o-", color="#4878a8", ms=5, label="Pareto front")
    for r in on:
        ax.annotate(f"d={r.get('d_model', '')}", (r["total_tco2e"], r["loss"]), fontsize=7,
                    xytext=(3, 3), textcoords="offset points")
    if budget_tco2e is not None:
        ax.axvline(budget_tco2e, color="r", ls="--", lw=0.8, label=f"budget {budget_tco2e:,.0f} t")
    if answer is not None:
        ax.plot([answer["total_tco2e"]], [answer["loss"]], "r*", ms=12, label="lowest loss within budget")
    ax.set_xscale("log")
    ax.margins(x=0.08)
    ax.set_xlabel("total tCO2e")
    ax.set_ylabel("scaling-law loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.12, right=0.98, bottom=0.12)
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
