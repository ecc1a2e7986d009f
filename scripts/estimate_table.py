"""The example-estimate table of docs/hardware.md: one dense and one MoE catalog model on H100, B200
and GB200 in BF16 and FP8 (defaults otherwise: 90-day deadline, default grid intensity and PUE).

    python scripts/estimate_table.py > table.md
"""

from __future__ import annotations

import carbonscaling as cs
from carbonscaling.hardware import load_system, unverified_cells

MODELS = ("llama3.1-70b", "deepseek-v3")
DEVICES = ("H100-SXM", "B200", "GB200")
PRECISIONS = ("bf16", "fp8")
PARTS = {"compute_s": "compute", "bubble_s": "bubble", "tp_comm_s": "TP", "cp_comm_s": "CP", "pp_comm_s": "PP",
         "dp_comm_s": "DP", "ep_comm_s": "EP", "optimizer_s": "optimizer+casts", "overlap_slowdown_s": "overlap"}


def _layout(lay: dict) -> str:
    parts = [f"{k.upper()}{lay[k]}" for k in ("tp", "cp", "pp", "dp", "ep") if lay.get(k, 1) > 1]
    parts += [f"ZeRO{lay['zero']}"] if lay.get("zero") else []
    parts += [f"VP{lay['vp']}"] if lay.get("vp", 1) > 1 else []
    parts += [f"mb{lay['microbatch']}"] if lay.get("microbatch", 1) > 1 else []
    parts += [f"recompute {lay['recompute']}"] if lay.get("recompute", "none") != "none" else []
    return " ".join(parts) or "DP1"


def _breakdown(frac: dict) -> str:
    top = sorted(((v, PARTS.get(k, k)) for k, v in frac.items() if v >= 0.01), reverse=True)
    return ", ".join(f"{name} {100 * v:.0f} %" for v, name in top)


def main() -> None:
    print("| model | device | precision | devices | layout | MFU | step s | step breakdown "
          "| total tCO2e (operational / embodied) | unverified or assumed catalog cells |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for model in MODELS:
        for device in DEVICES:
            cells = ", ".join(sorted(unverified_cells(load_system(device)))) or "none"
            for precision in PRECISIONS:
                d = cs.estimate(model=model, device=device, precision=precision).to_dict()
                p, c = d["performance"], d["carbon"]
                print(f"| {model} | {device} | {precision} | {d['layout']['devices']:,} | {_layout(d['layout'])} "
                      f"| {p['mfu']:.3f} | {p['step_time_s']:.2f} | {_breakdown(d['breakdown']['step_fraction'])} "
                      f"| {c['total_tco2e']:,.0f} ({c['operational_tco2e']:,.0f} / {c['embodied_tco2e']:.1f}) "
                      f"| {cells} |")


if __name__ == "__main__":
    main()
