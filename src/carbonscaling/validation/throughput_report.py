"""The step-time validation as a report: Markdown lines (report.md) and the predicted-vs-measured figure.

Reads the section :func:`carbonscaling.validation.throughput.step_time_section` returns; computes
nothing. Split from :mod:`.throughput` (which re-exports :func:`markdown` and :func:`figure`)
so the row descriptions and the report each stay one page.
"""

from __future__ import annotations

import math
from collections import defaultdict


def _floor_line(s: dict) -> list[str]:
    nf = s.get("noise_floor")
    if not nf:
        return []
    blind, desc = nf["container_blind"], nf["as_described"]
    return [f"Noise floor of the table (rows described alike that differ only by container; MAPE of the best "
            f"constant per group): {100 * blind['floor']:.1f} % for any model blind to the release "
            f"({blind['repeat_groups']} groups of 2+ rows), {100 * desc['floor']:.1f} % with the recipe options "
            f"described here ({desc['repeat_groups']} groups)."]


def markdown(section: dict) -> list[str]:
    """The section as Markdown lines (report.md)."""
    s = section["summary"]

    def pct(v):
        return "-" if v is None else f"{100 * v:+.1f} %" if v < 0 else f"{100 * v:.1f} %"

    L = ["## Step time on Megatron-Bridge measurements (nemo_performance.csv)", "",
         f"{s['expressible']} of {s['rows']} pre-training rows with a known architecture are expressed "
         f"({100 * s['expressible_share']:.0f} %). Step-time MAPE: all {pct(s['all']['mape'])} "
         f"(n={s['all']['n']}); dense H100 {pct(s['dense_h100']['mape'])} (n={s['dense_h100']['n']}); "
         f"MoE H100 {pct(s['moe_h100']['mape'])} (n={s['moe_h100']['n']}).", "", *_floor_line(s), "",
         "Pinned from each row: devices, TP, PP, CP, VP, EP, microbatch, global batch, sequence length, "
         "precision, FSDP group. Left to the search (column `left to search`): what the table does not state.", ""]
    for key, title in (("system", "system"), ("precision", "precision"), ("model", "model")):
        L += [f"| {title} | n | MAPE | mean signed error |", "|---|---|---|---|"]
        L += [f"| {k} | {v['n']} | {pct(v['mape'])} | {pct(v['mean_signed'])} |"
              for k, v in section["by"][key].items()]
        L += [""]
    L += ["| model | system | container | precision | GPUs | layout | measured s | predicted s | error | "
          "left to search |", "|---|---|---|---|---|---|---|---|---|---|"]
    L += [f"| {r['model']} | {r['system']} | {r['container']} | {r['precision']} | {r['gpus']} | {r['layout']} | "
          f"{r['measured_step_s']:.3g} | {r['predicted_step_s']:.3g} | {pct(r['error'])} | {r['left_to_search']} |"
          for r in section["rows"]]
    L += ["", "Rows not expressed:", ""]
    L += [f"- {r['model']} {r['system']} {r['container']} {r['precision']} {r['gpus']} GPUs: {r['reason']}"
          for r in section["unexpressible"]]
    return L + [""]


def figure(plt, section: dict, out) -> list:
    """Predicted vs measured step time (log-log), one colour per system."""
    from pathlib import Path

    fig, ax = plt.subplots(figsize=(5.5, 5))
    by = defaultdict(list)
    for r in section["rows"]:
        by[r["system"]].append(r)
    lo, hi = math.inf, 0.0
    for i, (sysname, rows) in enumerate(sorted(by.items())):
        x = [r["measured_step_s"] for r in rows]
        y = [r["predicted_step_s"] for r in rows]
        # one shape per system, smaller and on top for each later one: no system hides another
        ax.scatter(x, y, s=30 - 4 * i, marker="osD^v<>"[i % 7], alpha=0.8, edgecolor="black", linewidth=0.3,
                   zorder=3 + i, label=f"{sysname} (n={len(rows)})")
        lo, hi = min(lo, *x, *y), max(hi, *x, *y)
    if hi > 0:
        ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8)
        ax.plot([lo, hi], [1.1 * lo, 1.1 * hi], color="grey", lw=0.5, ls=":")
        ax.plot([lo, hi], [lo / 1.1, hi / 1.1], color="grey", lw=0.5, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    from .figures import plain_log_ticks

    plain_log_ticks(ax)
    ax.set_xlabel("measured step time (s)")
    ax.set_ylabel("predicted step time (s)")
    ax.set_title("Megatron-Bridge step times: predicted vs measured (dotted: +-10 %)", fontsize=9)
    ax.legend(fontsize=7)
    path = Path(out) / "step_time_nemo.png"
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
    return [path]
