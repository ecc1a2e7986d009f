"""``carbonscaling validate``: ours, reg and LLMC against published training runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import JsonOpt, app, emit_json, print_table

RunsOpt = Annotated[Optional[Path], typer.Option(
    "--runs", metavar="PATH", help="CSV with the columns of data/published_runs.csv (default: the shipped runs).")]
OutOpt = Annotated[Optional[str], typer.Option(  # str: typer reads "" as "."
    "--out", metavar="DIR", help="Write report.json, runs.csv, metrics.csv, report.md and figures (PNG+SVG).")]
TABLE_METHODS = ("ours", "ours_searched", "reg", "llmc")


@app.command()
def validate(
    as_json: JsonOpt = False,
    out: OutOpt = None,
    runs: RunsOpt = None,
    figures: Annotated[bool, typer.Option("--figures/--no-figures", help="With --out: draw the figures.")] = True,
) -> None:
    """Predict device-hours, utilization and carbon of published runs: ours (layout pinned and
    searched), reg (FLOPs regression, leave-one-out) and LLMC (LLMCarbon); per-run errors and
    MAPE / median APE / R^2.
    """
    from .validation.harness import validate as run_validate
    from .validation.report import write_outputs

    if out is not None:  # before the runs are predicted: a bad --out fails at once
        from ._output import check_target

        check_target(out, "out")
    report = run_validate(runs)
    written = write_outputs(report, out, figures=figures) if out is not None else []
    if as_json:
        emit_json(report.to_dict())
        return
    _print_report(report)
    for p in written:
        typer.echo(f"wrote {p}")


def _pct(v) -> str:
    return "" if v is None else f"{v:+.1%}"


def _ape(v) -> str:
    return "" if v is None else f"{v:.1%}"


def _f(v) -> str:
    return "" if v is None or v != v else f"{v:.3f}"


def _print_report(report) -> None:
    from .validation.report import comparison_lines, metrics_rows, rows_for

    methods = [m for m in TABLE_METHODS if m in report.methods]
    for q, title in (("device_hours", "device-hours"), ("mfu", "utilization (HFU for hfu runs, else MFU)"),
                     ("tflops_per_device", "TFLOP/s per device (same FLOP definition as reported)")):
        rows = [r for r in rows_for(report, q, methods) if r["reported"] is not None]
        if not rows:
            continue
        body = [[r["run_id"], "yes" if r["fit"] else "", r["reported"], *[r[m] for m in methods],
                 *[_pct(r[f"{m}_err"]) for m in methods]] for r in rows]
        print_table(title, ["run", "fit", "reported", *methods, *[f"{m} err" for m in methods]], body)
    mrows = [m for m in metrics_rows(report) if m["method"] in methods
             and m["quantity"] in ("device_hours", "mfu", "tflops_per_device", "energy_kwh", "embodied_tco2e")]
    print_table("metrics (fractions; split: all / used_for_fitting / not_used_for_fitting)",
                ["method", "split", "quantity", "n", "MAPE", "median APE", "R2 log", "R2"],
                [[m["method"], m["split"], m["quantity"], m["n"],
                  *[_f(m[k]) for k in ("mape", "median_ape", "r2_log", "r2")]] for m in mrows])
    for line in comparison_lines(report, ("device_hours", "mfu", "tflops_per_device")):
        typer.echo(line)
    for entry in report.extras.get("carbon", []):
        if entry["reported"].get("embodied_tco2e") is None:
            continue
        qs = ("device_hours", "energy_kwh", "operational_tco2e", "embodied_tco2e")
        body = [["reported", *[entry["reported"].get(q) for q in qs]]]
        body += [[m, *[entry["methods"][m].get(q) for q in qs]] for m in methods if m in entry["methods"]]
        print_table(f"{entry['run_id']}: energy/carbon from each method's device-hours (our model, device power at "
                    "TDP, the run's PUE/CI)", ["method", *qs], body)
    _print_energy(report)
    for r in report.runs:
        if r.get("scope") and "device_hours" in r["reported"]:
            typer.echo(f"scope {r['run_id']}: {r['scope']}")
        for m, e in r["errors"].items():
            typer.echo(f"no prediction {r['run_id']} {m}: {e}")
    _print_step_time(report.extras.get("step_time"))


def _print_step_time(sec) -> None:
    """Step time on Megatron-Bridge measurements: MAPE by system, precision and model."""
    if not sec:
        return
    s = sec["summary"]
    for key in ("system", "precision", "model"):
        print_table(f"step time vs nemo_performance.csv by {key} (layout as run; full table in report.md)",
                    [key, "n", "MAPE", "mean signed"],
                    [[k, v["n"], _ape(v["mape"]), _pct(v["mean_signed"])] for k, v in sec["by"][key].items()])
    typer.echo(f"step time: {s['expressible']} of {s['rows']} rows expressed; MAPE all {_ape(s['all']['mape'])}, "
               f"dense H100 {_ape(s['dense_h100']['mape'])} (n={s['dense_h100']['n']}), "
               f"MoE H100 {_ape(s['moe_h100']['mape'])} (n={s['moe_h100']['n']})")
    reasons: dict[str, int] = {}
    for r in sec["unexpressible"]:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        typer.echo(f"not expressed ({n} rows): {why}")


def _print_energy(report) -> None:
    """Issue 10: steady-state vs goodput-adjusted device-hours, published vs full scope."""
    g = report.extras.get("goodput")
    if g and g["rows"]:
        body = [[r["run_id"], r["reported"], r["steady"], _pct(r["steady_error"]), _f(r["goodput"]), r["adjusted"],
                 _pct(r["adjusted_error"])] for r in g["rows"] if r["method"] == "ours"]
        print_table("device-hours, ours pinned: steady state and / goodput (data/goodput.yaml, not fitted)",
                    ["run", "reported", "steady", "err", "goodput", "with goodput", "err"], body)
        for m, s in g["summary"].items():
            typer.echo(f"{m}: device-hours MAPE steady {_f(s['mape_steady'])} -> with goodput "
                       f"{_f(s['mape_goodput'])} (n={s['n']}); model cards {_f(s['mape_steady_model_cards'])} -> "
                       f"{_f(s['mape_goodput_model_cards'])} (n={s['n_model_cards']})")
    for entry in report.extras.get("scope", []):
        body = [[r["scope"], r.get("energy_kwh"), r.get("operational_tco2e"), r.get("embodied_tco2e")]
                for r in entry["rows"]]
        print_table(f"{entry['run_id']} on its published device-hours: published scope vs full scope",
                    ["scope", "energy_kwh", "operational_tco2e", "embodied_tco2e"], body)
