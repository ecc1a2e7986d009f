"""Figures of the validation report (PNG + SVG), in the manner of v2 Fig. 1, 3a and 3b.

* ``fig1_device_hours``: device-hours per run, reported ("label") and each method, log axis;
* ``fig3a_predicted_vs_reported``: predicted against reported device-hours (log-log) and
  utilization, one marker per method, with the identity line;
* ``fig3b_carbon``: operational and embodied carbon of each run that reports both
  (BLOOM), every method's device-hours through our carbon model;
* ``calibration_throughput``: per-GPU TFLOP/s of the fitting runs, predicted vs reported.

matplotlib is imported inside :func:`write_figures` only.
"""

from __future__ import annotations

from pathlib import Path

from .harness import ValidationReport
from .report import _value

STYLE = {  # method -> (label, colour, marker)
    "reported": ("reported (label)", "#444444", "s"),
    "ours": ("ours, layout pinned", "#1b9e77", "o"),
    "ours_searched": ("ours, searched", "#66c2a5", "D"),
    "reg": ("reg (LOO)", "#d95f02", "^"),
    "llmc": ("LLMC", "#7570b3", "v"),
    "llmc_pinned": ("LLMC, devices pinned", "#b3b0e0", "<"),
}
FIG_METHODS = ("ours", "ours_searched", "reg", "llmc")


def _style(method: str):
    return STYLE.get(method, (method, "#999999", "x"))


def _save(fig, out: Path, name: str, svg: bool = True) -> list[Path]:
    paths = [out / f"{name}.png"] + ([out / f"{name}.svg"] if svg else [])
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    if svg:  # `carbonscaling paper` writes SVG only with --svg (most of these figures' time)
        fig.savefig(paths[1], bbox_inches="tight")
    return paths


def _tick_text(v: float, _pos=None) -> str:
    """A log-axis tick as a plain number (0.5, 1, 2, 50) or, beyond 10^4, a short exponent (2e5)."""
    if v <= 0:
        return ""
    if 1e-3 <= v < 1e4:
        return f"{v:g}"
    mant, exp = f"{v:.0e}".split("e")
    return f"{mant}e{int(exp)}"


def plain_log_ticks(ax) -> None:
    """Readable log axes: ticks at 1-2-5 of each decade (only 1 past 3.5 decades), labelled as
    plain numbers (:func:`_tick_text`), no minor labels (matplotlib's mathtext minor labels overlap)."""
    import math

    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    for axis, (lo, hi) in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or lo <= 0:
            continue
        subs = (1.0, 2.0, 5.0) if math.log10(hi / lo) <= 3.5 else (1.0,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(_tick_text))
        axis.set_minor_formatter(NullFormatter())


_DIRECTIONS = ((0, 1), (1, 1), (-1, 1), (1, 0), (-1, 0), (1, -1), (-1, -1), (0, -1))


def label_points(ax, labels: list[tuple[float, float, str]], markers: list[tuple[float, float]],
                 fontsize: float = 7.0) -> list:
    """Annotate points with short labels that overlap neither each other nor the markers.

    Greedy: each label (left to right) takes the first free spot among eight directions at
    growing distance from its point, inside the axes; one moved away gets a thin leader line.
    Call after the limits and scales are final.

    Parameters
    ----------
    ax : matplotlib Axes
        The axes (data limits set).
    labels : list of (x, y, text)
        Anchor in data coordinates and the label.
    markers : list of (x, y)
        Every plotted marker, kept free of labels.
    fontsize : float, optional
        Points (default 7).

    Returns
    -------
    list of matplotlib Annotation
        One per label, in the order given.
    """
    fig = ax.figure
    to_pt = 72.0 / fig.dpi

    def pt(x, y):
        px, py = ax.transData.transform((x, y))
        return px * to_pt, py * to_pt

    x0, y0, x1, y1 = (v * to_pt for v in ax.bbox.extents)
    taken = [(mx - 4, my - 4, mx + 4, my + 4) for mx, my in (pt(*m) for m in markers)]

    def free(box):
        return (box[0] >= x0 and box[2] <= x1 and box[1] >= y0 and box[3] <= y1
                and not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in taken))

    out = [None] * len(labels)
    for i in sorted(range(len(labels)), key=lambda k: pt(*labels[k][:2])):
        x, y, text = labels[i]
        ax_, ay_ = pt(x, y)
        w, h = 0.62 * fontsize * len(text) + 2.0, fontsize + 2.0
        best = None
        for dist in (5.0, 9.0, 14.0, 20.0, 28.0, 38.0):
            for dx, dy in _DIRECTIONS:
                cx, cy = ax_ + dx * (dist + w / 2), ay_ + dy * (dist + h / 2)
                box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                if free(box):
                    best = (dist, cx, cy, box)
                    break
            if best:
                break
        if best is None:  # nowhere free: straight up, on top of whatever is there
            best = (5.0, ax_, ay_ + 5.0 + h / 2, (ax_ - w / 2, ay_ + 5.0, ax_ + w / 2, ay_ + 5.0 + h))
        dist, cx, cy, box = best
        taken.append(box)
        arrow = dict(arrowstyle="-", lw=0.4, color="#777777", shrinkA=0, shrinkB=2) if dist > 9.0 else None
        out[i] = ax.annotate(text, (x, y), xytext=(cx - ax_, cy - ay_), textcoords="offset points", ha="center",
                             va="center", fontsize=fontsize, color="#222222", arrowprops=arrow, zorder=8)
    return out


def fig_device_hours(plt, report: ValidationReport, out: Path, svg: bool = True) -> list[Path]:
    import numpy as np

    rows = [r for r in report.runs if "device_hours" in r["reported"]]
    if not rows:
        return []
    methods = ["reported", *[m for m in FIG_METHODS if m in report.methods]]
    width = 0.8 / len(methods)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.2))
    for i, m in enumerate(methods):
        vals = [r["reported"]["device_hours"] if m == "reported" else _value(r, m, "device_hours") for r in rows]
        label, colour, _ = _style(m)
        ax.bar(x + (i - (len(methods) - 1) / 2) * width, [v if v else np.nan for v in vals], width,
               label=label, color=colour, edgecolor="white", linewidth=0.5)
    ax.set_yscale("log")
    ax.set_xticks(x, [r["run_id"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel("device-hours")
    ax.set_title("Device-hours per run: reported vs predicted (cf. v2 Fig. 1)")
    ax.legend(fontsize=8, ncol=3, loc="upper left")
    ax.grid(axis="y", which="both", alpha=0.3)
    top = max(r["reported"]["device_hours"] for r in rows)
    ax.set_ylim(top=top * 30)
    plain_log_ticks(ax)
    paths = _save(fig, out, "fig1_device_hours", svg)
    plt.close(fig)
    return paths


# Marker size and drawing order per method: each later series is smaller and drawn on top,
# so a point under another still shows as a ring in its own colour.
SCATTER_SIZE = {"ours": 70, "ours_searched": 48, "reg": 34, "llmc": 24}


def run_numbers(report: ValidationReport) -> dict[str, int]:
    """``{run_id: n}``, 1-based in the report's order: the numbered key of the scatter panels."""
    return {r["run_id"]: i for i, r in enumerate(report.runs, 1)}


def _scatter(ax, report: ValidationReport, quantity: str, log: bool) -> int:
    lo, hi, n = float("inf"), 0.0, 0
    clusters: dict[str, list[tuple[float, float]]] = {}
    for m in [m for m in FIG_METHODS if m in report.methods]:
        pts = [(r["run_id"], r["reported"][quantity], _value(r, m, quantity)) for r in report.runs
               if quantity in r["reported"]]
        pts = [(rid, a, b) for rid, a, b in pts if b is not None]
        if not pts:
            continue
        label, colour, marker = _style(m)
        _, a, b = zip(*pts)
        ax.scatter(a, b, label=label, color=colour, marker=marker, s=SCATTER_SIZE.get(m, 30), alpha=0.9,
                   edgecolor="black", linewidth=0.4, zorder=3 + FIG_METHODS.index(m))
        for rid, x, y in pts:
            clusters.setdefault(rid, []).append((x, y))
        lo, hi, n = min(lo, *a, *b), max(hi, *a, *b), n + len(pts)
    if n:
        pad = 1.6 if log else 0.05 * (hi - lo)
        span = (lo / pad, hi * pad) if log else (max(0.0, lo - pad), hi + pad)
        ax.plot(span, span, color="black", lw=0.8, ls="--", label="identity", zorder=1)
        ax.set_xlim(span), ax.set_ylim(span)
    if log:
        ax.set_xscale("log"), ax.set_yscale("log")
        plain_log_ticks(ax)
    ax.grid(alpha=0.3, which="both")
    # one run = one vertical cluster (every method at the run's reported value): a thin line joins
    # it and its number labels it (key beside the figure)
    numbers = run_numbers(report)
    for rid, pts in clusters.items():
        ys = [y for _, y in pts]
        ax.plot([pts[0][0]] * 2, [min(ys), max(ys)], color="#999999", lw=0.6, zorder=2)
    label_points(ax, [(pts[0][0], max(y for _, y in pts), str(numbers[rid])) for rid, pts in clusters.items()],
                 [xy for pts in clusters.values() for xy in pts])
    return n


def fig_scatter(plt, report: ValidationReport, out: Path, svg: bool = True) -> list[Path]:
    fig = scatter_figure(plt, report)
    paths = _save(fig, out, "fig3a_predicted_vs_reported", svg)
    plt.close(fig)
    return paths


def scatter_figure(plt, report: ValidationReport):
    """Predicted against reported device-hours (log-log) and utilization, each run numbered."""
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, 2, figsize=(11.0, 5.4))  # room for the run numbers
    n1 = _scatter(axes[0], report, "device_hours", log=True)
    axes[0].set_xlabel("reported device-hours"), axes[0].set_ylabel("predicted device-hours")
    axes[0].set_title("(a) device-hours (cf. v2 Fig. 3a)")
    n2 = _scatter(axes[1], report, "mfu", log=False)
    axes[1].set_xlabel("reported utilization (HFU for Megatron/BLOOM, MFU for PaLM)")
    axes[1].set_ylabel("predicted utilization, same definition")
    axes[1].set_title("(b) utilization")
    for ax, n in zip(axes, (n1, n2)):
        if n:
            ax.legend(fontsize=8, loc="upper left")
    shown = {t.get_text() for ax in axes for t in ax.texts}
    key = [f"{i}  {rid}" for rid, i in run_numbers(report).items() if str(i) in shown]
    if key:
        fig.legend([Line2D([], [], ls="none")] * len(key), key, loc="center left", bbox_to_anchor=(0.905, 0.5),
                   fontsize=7.5, handlelength=0, handletextpad=0, title="runs (grey line: one run)",
                   title_fontsize=7.5, frameon=False)
    return fig


def fig_carbon(plt, report: ValidationReport, out: Path, svg: bool = True) -> list[Path]:
    import numpy as np

    entries = [e for e in report.extras.get("carbon", []) if e["reported"].get("embodied_tco2e") is not None
               and e["reported"].get("operational_tco2e") is not None]
    if not entries:
        return []
    fig, axes = plt.subplots(1, len(entries), figsize=(6.4 * len(entries), 4.4), squeeze=False)
    for ax, e in zip(axes[0], entries):
        names = ["reported", *[m for m in FIG_METHODS if m in e["methods"]]]
        op = [e["reported"].get("operational_tco2e")] + [e["methods"][m].get("operational_tco2e") for m in names[1:]]
        emb = [e["reported"].get("embodied_tco2e")] + [e["methods"][m].get("embodied_tco2e") for m in names[1:]]
        op = np.array([v if v is not None else np.nan for v in op])
        emb = np.array([v if v is not None else np.nan for v in emb])
        x = np.arange(len(names))
        colours = [_style(n)[1] for n in names]
        ax.bar(x, op, color=colours, edgecolor="black", linewidth=0.5, label="operational")
        ax.bar(x, emb, bottom=np.nan_to_num(op), color=colours, edgecolor="black", linewidth=0.5, hatch="//",
               alpha=0.6, label="embodied")
        for xi, (o, b) in enumerate(zip(op, emb)):
            ax.text(xi, np.nansum([o, b]) * 1.02, f"{np.nansum([o, b]):.1f} t", ha="center", fontsize=8)
        ax.set_xticks(x, [_style(n)[0] for n in names], rotation=20, ha="right", fontsize=8)
        ax.set_ylabel("tCO2e")
        ax.set_title(f"{e['run_id']}: operational (solid) + embodied (hatched) (cf. v2 Fig. 3b)", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    paths = _save(fig, out, "fig3b_carbon", svg)
    plt.close(fig)
    return paths


def fig_throughput(plt, report: ValidationReport, out: Path) -> list[Path]:
    rows = report.extras.get("calibration", {}).get("throughput") or []
    if not rows:
        return []
    fig, ax = plt.subplots(figsize=(7.5, 4.0))
    x = range(len(rows))
    ax.plot(x, [r["reported_tflops"] for r in rows], "s-", color=_style("reported")[1], label="reported (Table 1)")
    ax.plot(x, [r["predicted_tflops"] for r in rows], "o-", color=_style("ours")[1], label="ours, layout pinned")
    for xi, r in zip(x, rows):
        below = r["predicted_tflops"] < r["reported_tflops"]
        ax.annotate(f"{r['error']:+.1%}", (xi, r["predicted_tflops"]), textcoords="offset points",
                    xytext=(0, -12 if below else 7), ha="center", fontsize=7)
    ax.set_xticks(list(x), [r["run_id"].replace("megatron2021_", "") for r in rows], rotation=30, ha="right")
    ax.set_ylabel("TFLOP/s per GPU (eq. 3, incl. recompute)")
    ax.set_title("Fitting runs: per-GPU throughput, predicted vs reported")
    ax.set_ylim(0, max(max(r["predicted_tflops"], r["reported_tflops"]) for r in rows) * 1.2)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    paths = _save(fig, out, "calibration_throughput")
    plt.close(fig)
    return paths


def write_figures(report: ValidationReport, out_dir: str | Path) -> list[Path]:
    """Write every figure that has data into ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    paths: list[Path] = []
    for fn in (fig_device_hours, fig_scatter, fig_carbon, fig_throughput):
        paths += fn(plt, report, out)
    if report.extras.get("step_time", {}).get("rows"):
        from .throughput_report import figure

        paths += figure(plt, report.extras["step_time"], out)
    return paths
