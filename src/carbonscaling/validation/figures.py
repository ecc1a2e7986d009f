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


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=150, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    return paths


def fig_device_hours(plt, report: ValidationReport, out: Path) -> list[Path]:
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
    paths = _save(fig, out, "fig1_device_hours")
    plt.close(fig)
    return paths


def _scatter(ax, report: ValidationReport, quantity: str, log: bool) -> int:
    import numpy as np

    lo, hi, n = np.inf, 0.0, 0
    for m in [m for m in FIG_METHODS if m in report.methods]:
        pts = [(r["reported"][quantity], _value(r, m, quantity)) for r in report.runs if quantity in r["reported"]]
        pts = [(a, b) for a, b in pts if b is not None]
        if not pts:
            continue
        label, colour, marker = _style(m)
        a, b = zip(*pts)
        ax.scatter(a, b, label=label, color=colour, marker=marker, s=36, alpha=0.85, edgecolor="black", linewidth=0.3)
        lo, hi, n = min(lo, *a, *b), max(hi, *a, *b), n + len(pts)
    if n:
        pad = 1.6 if log else 0.05 * (hi - lo)
        span = (lo / pad, hi * pad) if log else (max(0.0, lo - pad), hi + pad)
        ax.plot(span, span, color="black", lw=0.8, ls="--", label="identity")
        ax.set_xlim(span), ax.set_ylim(span)
    if log:
        ax.set_xscale("log"), ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    return n


def fig_scatter(plt, report: ValidationReport, out: Path) -> list[Path]:
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.6))
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
    paths = _save(fig, out, "fig3a_predicted_vs_reported")
    plt.close(fig)
    return paths


def fig_carbon(plt, report: ValidationReport, out: Path) -> list[Path]:
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
    paths = _save(fig, out, "fig3b_carbon")
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
        from .throughput import figure

        paths += figure(plt, report.extras["step_time"], out)
    return paths
