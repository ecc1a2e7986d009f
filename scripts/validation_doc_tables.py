"""Print the tables of docs/validation.md sections 6.1-6.5 and 6.8 from a ``carbonscaling validate`` report.

The docs show a measured snapshot; this prints the same figures from ``report.json`` so that the
snapshot can be re-measured and compared line by line after a change to the models::

    carbonscaling validate --out /tmp/val --no-figures
    python scripts/validation_doc_tables.py /tmp/val/report.json

Nothing is computed here beyond formatting: every number is the report's (errors are signed,
``predicted / reported - 1``; metrics are fractions).
"""

from __future__ import annotations

import json
import sys

METHODS = ("ours", "ours_searched", "reg", "llmc")
METRIC_ROWS = (("ours", "all", "device_hours"), ("ours_searched", "all", "device_hours"),
               ("reg", "all", "device_hours"), ("llmc", "all", "device_hours"),
               ("ours", "all", "mfu"), ("ours", "used_for_fitting", "mfu"), ("ours", "not_used_for_fitting", "mfu"),
               ("ours_searched", "all", "mfu"), ("llmc", "all", "mfu"), ("llmc", "used_for_fitting", "mfu"),
               ("llmc", "not_used_for_fitting", "mfu"),
               ("ours", "all", "tflops_per_device"), ("ours", "used_for_fitting", "tflops_per_device"),
               ("ours", "not_used_for_fitting", "tflops_per_device"), ("llmc", "all", "tflops_per_device"),
               ("ours_searched", "all", "n_devices"), ("llmc", "all", "n_devices"))


def _num(x, fmt: str) -> str:
    return "" if x is None else format(x, fmt)


def _err(pred, reported) -> str:
    return "" if pred is None or not reported else f"{pred / reported - 1:+.1%}"


def _table(header: list[str], rows: list[list[str]], text_cols: int = 2) -> list[str]:
    right = ["---"] * text_cols + ["---:"] * (len(header) - text_cols)
    return ["| " + " | ".join(header) + " |", "| " + " | ".join(right) + " |",
            *("| " + " | ".join(r) + " |" for r in rows)]


def device_hours(report: dict) -> list[str]:
    """Section 6.1: device-hours of every run that reports them, each method and its error."""
    rows = []
    for run in report["runs"]:
        rep = run["reported"].get("device_hours")
        if not rep:
            continue
        cells = [run["run_id"], run["device"], f"{rep:,.0f}"]
        for m in METHODS:
            p = run["predicted"].get(m, {}).get("device_hours")
            cells += [_num(p, ",.0f") or "-", _err(p, rep)]
        rows.append(cells)
    return _table(["run", "device", "reported", "ours (pinned)", "err", "ours searched", "err", "reg (LOO)", "err",
                   "llmc", "err"], rows)


def layouts(report: dict) -> list[str]:
    """Section 6.1: the layout, device count and MFU behind each device-hours prediction."""
    out = []
    for run in report["runs"]:
        if not run["reported"].get("device_hours"):
            continue
        for m in ("ours", "ours_searched"):
            pred, info = run["predicted"].get(m, {}), run.get("info", {}).get(m, {})
            if not pred:
                out.append(f"- {run['run_id']} {m}: {run.get('errors', {}).get(m, 'no prediction')}")
                continue
            days = pred.get("duration_days", pred.get("search_duration_days"))
            out.append(f"- {run['run_id']} {m}: {pred['devices']:,.0f} devices, {info.get('layout', '')}, "
                       f"MFU {pred['mfu']:.3f}, {days:.1f} days")
    return out


def utilization(report: dict) -> list[str]:
    """Section 6.2: utilization (HFU for ``hfu`` runs, MFU otherwise) and BLOOM's TFLOP/s."""
    rows, extra = [], []
    for run in report["runs"]:
        kind = run["utilization_kind"]
        rep = run["reported"].get("mfu")
        key = "hfu" if kind == "hfu" else "mfu"
        if rep:
            cells = [run["run_id"], kind.upper(), f"{rep:.3f}"]
            for m in ("ours", "ours_searched", "llmc"):
                p = run["predicted"].get(m, {}).get(key)
                cells += [_num(p, ".3f"), _err(p, rep)]
            rows.append(cells)
        elif run["reported"].get("tflops_per_device"):
            rep_t = run["reported"]["tflops_per_device"]
            k = "hfu_tflops_per_device" if kind == "hfu" else "tflops_per_device"
            got = [f"{m} {run['predicted'][m][k]:.1f} ({_err(run['predicted'][m][k], rep_t)})"
                   for m in ("ours", "ours_searched", "llmc") if run["predicted"].get(m, {}).get(k)]
            extra.append(f"{run['run_id']}: reported {rep_t:g} TFLOP/s per device ({kind.upper()}); " + ", ".join(got))
    return _table(["run", "kind", "reported", "ours (pinned)", "err", "ours searched", "err", "llmc", "err"],
                  rows) + [""] + extra


def metrics(report: dict) -> list[str]:
    """Section 6.3: MAPE, median APE and R^2 of each method, quantity and split."""
    rows = []
    for method, split, qty in METRIC_ROWS:
        src = report["metrics"] if split == "all" else report["metrics_split"][split]
        m = src.get(method, {}).get(qty)
        if m:
            rows.append([method, split, qty, str(m["n"]), *(_num(m.get(k), ".3f")
                                                            for k in ("mape", "median_ape", "r2_log", "r2"))])
    return _table(["method", "split", "quantity", "n", "MAPE", "median APE", "R2 log", "R2"], rows, text_cols=3)


def comparison(report: dict) -> list[str]:
    """Section 6.4: ours against reg and the LLMC variant the report pairs with it (pinned with
    pinned, searched with searched), on the runs both predict; the held-out split where it differs."""
    out = []
    for mine, by_qty in report["comparison"].items():
        for qty, c in by_qty.items():
            bases = ("reg", c.get("llmc_variant", "llmc"))
            for split in ("all", "not_used_for_fitting"):
                for base in bases:
                    pair = c.get(split, {}).get(base)
                    if not isinstance(pair, dict) or "n" not in pair:
                        continue
                    if split != "all" and pair["n"] == c["all"][base]["n"]:
                        continue  # the same runs: the same figures
                    stats = ", ".join(f"{k} {pair[k][mine]:.3f} vs {pair[k][base]:.3f}"
                                      for k in ("mape", "median_ape", "r2_log", "r2")
                                      if pair.get(k) and pair[k].get(mine) is not None
                                      and pair[k].get(base) is not None)
                    out.append(f"- {mine} {qty} [{split}] vs {base} (n={pair['n']}): {stats}")
    return out


def carbon(report: dict, run_id: str = "bloom_176b") -> list[str]:
    """Section 6.5: one run's device-hours, energy and carbon by method, through our carbon model."""
    (c,) = [x for x in report["carbon"] if x["run_id"] == run_id]

    def cell(v, err, fmt):
        return "" if v is None else format(v, fmt) + ("" if err is None else f" ({err:+.1%})")

    rows = []
    for name, v in [("reported", c["reported"]), *c["methods"].items()]:
        if name == "llmc_pinned" and v["device_hours"] == c["methods"].get("llmc", {}).get("device_hours"):
            continue  # the same device-hours as llmc: the same row
        e = v.get("errors", {})
        rows.append([name, cell(v["device_hours"], None, ",.0f"), cell(v["energy_kwh"], e.get("energy_kwh"), ",.0f"),
                     cell(v["operational_tco2e"], None, ".2f"), cell(v["embodied_tco2e"], e.get("embodied_tco2e"), ".2f"),
                     cell(v["total_tco2e"], e.get("total_tco2e"), ".2f")])
    extra = [f"{m} full accounting: {v['energy_kwh_full']:,.0f} kWh, {v['operational_tco2e_full']:.1f} t operational"
             for m, v in c["methods"].items() if v.get("energy_kwh_full") and v.get("operational_tco2e_full")]
    return _table(["method", "device-hours", "energy kWh", "operational t", "embodied t", "total t"], rows,
                  text_cols=1) + [""] + extra


def goodput(report: dict, prefix: str = "llama") -> list[str]:
    """Section 6.8: steady-state device-hours and with the modelled goodput, ours pinned (searched
    errors in brackets), for the Llama runs (the model cards and 3.1 405B), and the MAPEs."""
    rows = {(r["method"], r["run_id"]): r for r in report["goodput"]["rows"]}
    out = []
    for (method, run_id), r in rows.items():
        if method != "ours" or not run_id.startswith(prefix):
            continue
        sr = rows.get(("ours_searched", run_id), {})
        out.append([run_id, f"{r['reported']:,.0f}", f"{r['steady']:,.0f}",
                    f"{r['steady_error']:+.1%}" + (f" ({sr['steady_error']:+.1%})" if sr else ""),
                    f"{r['goodput']:.3f}", f"{r['adjusted']:,.0f}",
                    f"{r['adjusted_error']:+.1%}" + (f" ({sr['adjusted_error']:+.1%})" if sr else "")])
    summary = [f"{m}: MAPE steady {v['mape_steady']:.3f} -> with goodput {v['mape_goodput']:.3f} (n={v['n']}); "
               f"model cards only {v['mape_steady_model_cards']:.3f} -> {v['mape_goodput_model_cards']:.3f} "
               f"(n={v['n_model_cards']})" for m, v in report["goodput"]["summary"].items()]
    return _table(["run", "reported", "steady", "error", "goodput", "with goodput", "error"], out,
                  text_cols=1) + [""] + summary


def main(path: str) -> None:
    report = json.load(open(path))
    for title, lines in (("6.1 device-hours", device_hours(report)), ("6.1 layouts", layouts(report)),
                         ("6.2 utilization", utilization(report)), ("6.3 metrics", metrics(report)),
                         ("6.4 ours vs baselines", comparison(report)), ("6.5 BLOOM carbon", carbon(report)),
                         ("6.8 goodput", goodput(report))):
        print(f"## {title}\n")
        print("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "report.json")
