"""Figures of the experiments (PNG; SVG on request), one per scenario, in the manner of the papers.

* ``loss_vs_carbon``: loss against training carbon, log-log, one curve per series;
  the ideal curve dashed; power-law fits dotted; hollow markers where the deadline
  had to be extended; the first practical curve labelled with each model's N.
* ``utilization_vs_params``: MFU of the chosen layout against the preset's N.
* ``bars``: one model on several devices/regions: (a) carbon per device, (b) total,
  (c) operational/embodied composition.

matplotlib (Agg) is imported inside :func:`draw` only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

COLOURS = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
OP_COLOUR, EMB_COLOUR = "#4c72b0", "#dd8452"


def _series(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["series"], []).append(r)
    return {k: sorted(v, key=lambda r: r["d_model"]) for k, v in out.items()}


def _ok(r: dict) -> bool:
    return r.get("status") != "infeasible" and (r.get("total_tco2e") or 0) > 0


def _n_label(n: float) -> str:
    e = f"{n:.0e}"
    mant, exp = e.split("e")
    return f"{mant}e{int(exp)}"


def _footer(fig, rows: list[dict], deadline: float) -> None:
    ext = sum(r.get("status") == "extended" for r in rows)
    inf = sum(r.get("status") == "infeasible" for r in rows)
    notes = []
    if ext:
        notes.append(f"hollow markers ({ext}): some series had no layout meeting the {deadline:g}-day deadline at "
                     "that width; the deadline was doubled until one did, and every series there uses it "
                     "(CSV: deadline_days_used)")
    if inf:
        ns = sorted({_n_label(r["params_law"]) for r in rows if r.get("status") == "infeasible"})
        notes.append(f"{inf} infeasible point{'s' if inf > 1 else ''} omitted (N = {', '.join(ns)})")
    if notes:
        fig.text(0.01, 0.005, "; ".join(notes), fontsize=7, color="#555555", ha="left", va="bottom", wrap=True)


def _markers(ax, x, y, pts, marker, colour, ms=5.0, zorder=None) -> None:
    """All of a series' markers in two artists: filled, and hollow where the deadline was extended."""
    hollow = [p.get("status") == "extended" for p in pts]
    for want, face in ((False, colour), (True, "white")):
        xs = [a for a, h in zip(x, hollow) if h == want]
        if xs:
            ax.plot(xs, [b for b, h in zip(y, hollow) if h == want], marker, ls="none", ms=ms, color=colour,
                    mfc=face, zorder=zorder)


def _weight(i: int) -> dict[str, float]:
    """Line width, marker size and drawing order of the ``i``-th series: each later series is
    thinner, smaller and on top, so a series under another still shows around it."""
    return {"lw": max(0.8, 2.6 - 0.45 * i), "ms": max(3.0, 7.0 - 1.0 * i), "zorder": 2 + i}


def _plain_x_log(ax) -> None:
    """Decade ticks as plain text (1e+12), not mathtext: mathtext layout dominated figure time."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e+0", "e").replace("e+", "e")))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plain_log_axis(axis, subs=(1.0, 1.2, 1.5, 2, 3, 5, 7)) -> None:
    from matplotlib.ticker import FormatStrFormatter, LogLocator

    axis.set_major_locator(LogLocator(base=10, subs=subs))
    axis.set_major_formatter(FormatStrFormatter("%.3g"))
    axis.set_minor_formatter(FormatStrFormatter(""))


def ratio_panel(ax, sc, rows: list[dict]) -> None:
    """Carbon of each series over the ``compare_to`` series at the same model and deadline."""
    series = _series(rows)
    ref = {p["d_model"]: p for p in series.get(sc.compare_to, []) if _ok(p)}
    for i, (label, pts) in enumerate(series.items()):
        if label == sc.compare_to:
            continue
        c, m = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        xy = [(p["params_law"], p["total_tco2e"] / ref[p["d_model"]]["total_tco2e"], p) for p in pts
              if _ok(p) and p["d_model"] in ref and (ref[p["d_model"]]["kind"] == "ideal"
                                                     or p.get("deadline_days_used") == ref[p["d_model"]].get("deadline_days_used"))]
        if not xy:
            continue
        w = _weight(i)
        ax.plot([a for a, _, _ in xy], [b for _, b, _ in xy], "-", color=c, lw=w["lw"], label=label,
                zorder=w["zorder"])
        _markers(ax, [a for a, _, _ in xy], [b for _, b, _ in xy], [p for _, _, p in xy], m, c, ms=w["ms"],
                 zorder=w["zorder"] + 0.5)
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_x_log(ax)
    _plain_log_axis(ax.yaxis, (1.0, 2.0, 5.0))
    ax.set_xlabel("parameters N (preset's 2 d d_ff L E)")
    ax.set_ylabel(f"carbon / carbon of '{sc.compare_to}' (same model, same deadline)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)


def loss_vs_carbon(plt, sc, rows: list[dict], fits: dict[str, Any]):
    if sc.compare_to:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13.0, 5.2), gridspec_kw={"width_ratios": [1.25, 1]})
        ratio_panel(ax2, sc, rows)
    else:
        fig, ax = plt.subplots(figsize=(7.2, 5.0))
    first_practical = True
    for i, (label, pts) in enumerate(_series(rows).items()):
        pts = [p for p in pts if _ok(p)]
        if not pts:
            continue
        c, m = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        ideal = pts[0]["kind"] == "ideal"
        x = [p["total_tco2e"] for p in pts]
        y = [p["loss"] for p in pts]
        fit = fits.get(label)
        name = label + (f"  (alpha={fit.alpha:.3g}, R2={fit.r2:.2f})" if fit else "")
        w = _weight(i)
        ax.plot(x, y, ls="--" if ideal else "-", color="black" if ideal else c, lw=w["lw"], label=name,
                zorder=w["zorder"])
        _markers(ax, x, y, pts, m, "black" if ideal else c, ms=w["ms"], zorder=w["zorder"] + 0.5)
        if fit:
            xs = [min(x), max(x)]
            ax.plot(xs, fit.predict(xs), ls=":", lw=1.0, color="black" if ideal else c, zorder=1)
        if first_practical and not ideal:
            first_practical = False
            for p, xi, yi in zip(pts, x, y):
                ax.annotate(f"N={_n_label(p['params_law'])}", (xi, yi), textcoords="offset points", xytext=(4, 4),
                            fontsize=6.5, color="#444444")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_x_log(ax)
    _plain_log_axis(ax.yaxis)
    ax.set_xlabel("training carbon, operational + embodied (tCO₂e)")
    law = "fine-grained MoE law" if rows and rows[0]["preset"] == "cs-v2" else "Chinchilla law"
    ax.set_ylabel(f"loss ({law}, nats/token)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8, loc="upper right")
    return fig


def utilization_vs_params(plt, sc, rows: list[dict], fits):
    fig, ax = plt.subplots(figsize=(7.2, 4.6))
    for i, (label, pts) in enumerate(_series(rows).items()):
        pts = [p for p in pts if _ok(p)]
        c, m = COLOURS[i % len(COLOURS)], MARKERS[i % len(MARKERS)]
        x = [p["params_law"] for p in pts]
        y = [100 * p["mfu"] for p in pts]
        w = _weight(i)
        ax.plot(x, y, "-", color=c, lw=w["lw"], label=label, zorder=w["zorder"])
        _markers(ax, x, y, pts, m, c, ms=w["ms"], zorder=w["zorder"] + 0.5)
    ax.set_xscale("log")
    _plain_x_log(ax)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("parameters N (preset's 2 d d_ff L E)")
    ax.set_ylabel("utilization of the chosen layout, MFU (%)")
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=8)
    return fig


def bars(plt, sc, rows: list[dict], fits):
    import numpy as np

    pts = [r for r in rows if _ok(r)]
    labels = [p["series"] for p in pts]
    x = np.arange(len(pts))
    fig, axes = plt.subplots(1, 3, figsize=(11.5, 4.2))
    per_op = np.array([p["per_device_operational_tco2e"] * 1e3 for p in pts])
    per_emb = np.array([p["per_device_embodied_tco2e"] * 1e3 for p in pts])
    op = np.array([p["operational_tco2e"] for p in pts])
    emb = np.array([p["embodied_tco2e"] for p in pts])
    for ax, (a, b), unit, title in ((axes[0], (per_op, per_emb), "kgCO₂e per device", "(a) per device"),
                                    (axes[1], (op, emb), "tCO₂e", "(b) total")):
        ax.bar(x, a, color=OP_COLOUR, label="operational")
        ax.bar(x, b, bottom=a, color=EMB_COLOUR, label="embodied")
        ax.set_xticks(x, labels)
        ax.set_ylabel(unit)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="y", alpha=0.25)
    for i, p in enumerate(pts):
        axes[1].annotate(f"{p['devices_used']:,} dev.", (i, op[i] + emb[i]), textcoords="offset points",
                         xytext=(0, 2), ha="center", fontsize=7)
    share = np.array([p["embodied_share"] for p in pts])
    axes[2].bar(x, 100 * (1 - share), color=OP_COLOUR, label="operational")
    axes[2].bar(x, 100 * share, bottom=100 * (1 - share), color=EMB_COLOUR, label="embodied")
    for i, s in enumerate(share):
        axes[2].annotate(f"{100 * s:.1f} %", (i, 100), textcoords="offset points", xytext=(0, 2), ha="center",
                         fontsize=7)
    axes[2].set_xticks(x, labels)
    axes[2].set_ylim(0, 110)
    axes[2].set_ylabel("share of total (%)")
    axes[2].set_title("(c) composition", fontsize=10)
    axes[0].legend(fontsize=8)
    return fig


# Figure margins (fractions), fixed per plot type: tight_layout measured 5-6 CPU-s per paper run.
MARGINS = {"single": dict(left=0.11, right=0.97, bottom=0.14, top=0.92),
           "utilization_vs_params": dict(left=0.10, right=0.97, bottom=0.19, top=0.91),
           "bars": dict(left=0.07, right=0.99, bottom=0.15, top=0.87, wspace=0.3),
           "pair": dict(left=0.07, right=0.98, bottom=0.14, top=0.92, wspace=0.22)}

PLOTS = {"loss_vs_carbon": loss_vs_carbon, "utilization_vs_params": utilization_vs_params, "bars": bars}


def draw(sc, rows: list[dict], out_dir: Path, fits: dict | None = None, svg: bool = False) -> list[Path]:
    """Draw a scenario's figure into ``out_dir`` as ``<name>.png`` (and ``<name>.svg`` if asked).

    Fixed margins instead of ``tight_layout`` and one SVG only on request: those two and
    mathtext tick labels were most of the figures' time (benchmarks/bench_speed.py)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = PLOTS[sc.plot](plt, sc, rows, fits or {})
    title = f"{sc.paper} {sc.figure}: {sc.title}" if sc.paper else sc.title
    fig.suptitle(title, fontsize=10)
    deadline = next((r["deadline_days"] for r in rows if "deadline_days" in r), 90)
    _footer(fig, [r for r in rows if r["kind"] != "ideal"], deadline)
    fig.subplots_adjust(**MARGINS.get(sc.plot if not getattr(sc, "compare_to", None) else "pair", MARGINS["single"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{sc.name}.png"] + ([out_dir / f"{sc.name}.svg"] if svg else [])
    fig.savefig(paths[0], dpi=130)
    if svg:
        fig.savefig(paths[1])
    plt.close(fig)
    return paths
