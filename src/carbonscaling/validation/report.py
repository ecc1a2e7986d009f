"""The validation report's sections, tables and files.

:func:`add_sections` adds to a :class:`~.harness.ValidationReport` (its ``extras``):

* ``comparison``: for each of our methods, each quantity and each error metric, our value
  and each baseline's **on the runs both predict**, and whether we beat it;
* ``carbon``: runs that report energy or carbon, every method's device-hours turned
  into energy/carbon by our model, the reported values and the errors (v2 Fig. 3b);
* ``calibration``: the fitted constants of the performance model with their data, the
  runs used for fitting, and the per-row throughput table of those runs (eq. 3 FLOPs).

:func:`rows_for` gives display rows (signed errors), :func:`to_markdown` the report.md
text, :func:`write_outputs` the files of ``carbonscaling validate --out DIR``.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from .harness import QUANTITIES, ValidationReport
from .metrics import summarize

BASELINES = ("reg", "llmc", "llmc_pinned")
#: The LLMC variant compared with each of our modes when judging "beats both".
LLMC_FOR = {"ours": "llmc_pinned", "ours_searched": "llmc"}
ERROR_METRICS = ("mape", "median_ape", "r2_log", "r2")
LOWER_IS_BETTER = {"mape": True, "median_ape": True, "r2_log": False, "r2": False}
CARBON_QUANTITIES = ("device_hours", "energy_kwh", "operational_tco2e", "embodied_tco2e")


def _value(row: dict, method: str, quantity: str) -> float | None:
    from .harness import _HFU_KEYS

    key = _HFU_KEYS[quantity] if row.get("utilization_kind") == "hfu" and quantity in _HFU_KEYS else quantity
    return row["predicted"].get(method, {}).get(key)


def signed_error(pred: float | None, rep: float | None) -> float | None:
    """``pred / rep - 1`` (None when either is missing)."""
    if pred is None or rep is None or rep == 0:
        return None
    return pred / rep - 1.0


def head_to_head(rows: list[dict], ours: str, base: str, quantity: str) -> dict | None:
    """Our and a baseline's metrics on the runs where both predict ``quantity``."""
    rep, a, b, ids = [], [], [], []
    for row in rows:
        r = row["reported"].get(quantity)
        pa, pb = _value(row, ours, quantity), _value(row, base, quantity)
        if r is not None and pa is not None and pb is not None:
            rep.append(r), a.append(pa), b.append(pb), ids.append(row["run_id"])
    if not rep:
        return None
    sa, sb = summarize(rep, a), summarize(rep, b)
    out: dict[str, Any] = {"n": len(rep), "runs": ids}
    for m in ERROR_METRICS:
        x, y = sa[m], sb[m]
        ok = not (math.isnan(x) or math.isnan(y))
        out[m] = {ours: x, base: y, "ours_better": (x < y if LOWER_IS_BETTER[m] else x > y) if ok else None}
    return out


def comparison(report: ValidationReport) -> dict:
    """Ours against each baseline, per quantity, on all runs and on the runs not used for fitting.

    ``{our_method: {quantity: {"all" | "not_used_for_fitting": {baseline: head_to_head | None},
    "beats_both_on_mape": {"all" | "not_used_for_fitting": bool | None}, "llmc_variant": str}}}``;
    "both" is ``reg`` and the LLMC variant of the same mode (None when one of them predicts nothing).
    """
    held_out = [r for r in report.runs if not r["used_for_fitting"]]
    out: dict[str, dict] = {}
    for ours in [m for m in report.methods if m.startswith("ours")]:
        per_q: dict[str, dict] = {}
        llmc = LLMC_FOR.get(ours, "llmc")
        for q in QUANTITIES:
            if not any(_value(r, ours, q) is not None and q in r["reported"] for r in report.runs):
                continue
            entry: dict[str, Any] = {"llmc_variant": llmc, "beats_both_on_mape": {}}
            for split, rows in (("all", report.runs), ("not_used_for_fitting", held_out)):
                vs = {b: head_to_head(rows, ours, b, q) for b in BASELINES if b in report.methods}
                wins = [vs[b]["mape"]["ours_better"] if vs.get(b) else None for b in ("reg", llmc)]
                entry[split] = vs
                entry["beats_both_on_mape"][split] = all(wins) if None not in wins else None
            per_q[q] = entry
        out[ours] = per_q
    return out


def carbon_section(report: ValidationReport) -> list[dict]:
    """Every method's energy/carbon (our model from its device-hours) on runs that report them."""
    out = []
    for row in report.runs:
        rep = row["reported"]
        if not any(q in rep for q in CARBON_QUANTITIES[1:]):
            continue
        entry: dict[str, Any] = {"run_id": row["run_id"], "reported": {q: rep.get(q) for q in CARBON_QUANTITIES},
                                 "methods": {}}
        if "operational_tco2e" in rep and "embodied_tco2e" in rep:
            entry["reported"]["total_tco2e"] = rep["operational_tco2e"] + rep["embodied_tco2e"]
        for m in report.methods:
            pred = row["predicted"].get(m, {})
            vals = {q: pred.get(q) for q in CARBON_QUANTITIES}
            if vals["operational_tco2e"] is not None and vals["embodied_tco2e"] is not None:
                vals["total_tco2e"] = vals["operational_tco2e"] + vals["embodied_tco2e"]
            for k in ("energy_kwh_full", "operational_tco2e_full", "embodied_tco2e_own", "energy_kwh_own"):
                if k in pred:
                    vals[k] = pred[k]
            vals["errors"] = {q: signed_error(vals.get(q), entry["reported"].get(q))
                              for q in (*CARBON_QUANTITIES, "total_tco2e")}
            entry["methods"][m] = vals
        out.append(entry)
    return out


def calibration_section(runs, consts=None) -> dict:
    """Fitted constants with their data, and the fitting runs' throughput table (if any)."""
    from ..errors import CarbonScalingError
    from .calibration import fitted_constants, throughput_table

    fit_runs = [r for r in runs if r.used_for_fitting]
    out: dict[str, Any] = {"fitted_constants": fitted_constants(),
                           "used_for_fitting": [r.run_id for r in fit_runs], "throughput": []}
    if any(r.tflops_per_device is not None for r in fit_runs):
        try:
            out["throughput"] = throughput_table(fit_runs, consts)
        except CarbonScalingError as err:
            out["throughput_error"] = str(err)
    return out


def add_sections(report: ValidationReport, runs, consts=None, step_time: bool = True) -> ValidationReport:
    """Fill ``report.extras`` with the comparison, carbon and calibration sections, and (``step_time``)
    the step-time validation on Megatron-Bridge measurements (:mod:`.throughput`)."""
    report.extras["comparison"] = comparison(report)
    report.extras["carbon"] = carbon_section(report)
    report.extras["calibration"] = calibration_section(runs, consts)
    from .energy import add_energy_sections
    from .throughput import step_time_section

    add_energy_sections(report, runs)
    if step_time:
        report.extras["step_time"] = step_time_section(consts)
    return report


# ---- display -------------------------------------------------------------------------
def rows_for(report: ValidationReport, quantity: str, methods: list[str] | None = None) -> list[dict]:
    """Per-run display rows for ``quantity``: reported, each method's value and signed error."""
    methods = methods or report.methods
    out = []
    for row in report.runs:
        rep = row["reported"].get(quantity)
        vals = {m: _value(row, m, quantity) for m in methods}
        if rep is None and all(v is None for v in vals.values()):
            continue
        out.append({"run_id": row["run_id"], "device": row["device"], "fit": row["used_for_fitting"],
                    "reported": rep, **vals, **{f"{m}_err": signed_error(vals[m], rep) for m in methods},
                    "errors": {m: e for m, e in row["errors"].items() if m in methods}})
    return out


def _fmt(v: Any, kind: str = "num") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if kind == "pct":
        return f"{v:+.1%}"
    if kind == "frac":
        return f"{v:.3f}"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"


def _md_table(header: list[str], body: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in body]


def metrics_rows(report: ValidationReport) -> list[dict]:
    """Flat metric records: method, split (all / used_for_fitting / not_used_for_fitting), quantity, metrics."""
    out = []
    splits = {"all": report.metrics, **report.metrics_split}
    for split, block in splits.items():
        for method, per_q in block.items():
            for q, s in per_q.items():
                out.append({"method": method, "split": split, "quantity": q, **s})
    return out


def to_markdown(report: ValidationReport) -> str:
    """The report as Markdown: per-run tables, metrics, comparison, carbon, calibration, and a
    glossary of the abbreviations it uses (:mod:`carbonscaling.glossary`)."""
    L = ["# carbonscaling validate", "",
         "Errors are signed, `predicted / reported - 1`; metrics are fractions. `fit` marks runs "
         "used to fit a constant of ours. Utilization of `hfu` runs is compared as HFU.", ""]
    for q, kind in (("device_hours", "num"), ("mfu", "frac"), ("tflops_per_device", "num"), ("duration_days", "num"),
                    ("n_devices", "num")):
        rows = rows_for(report, q)
        if not any(r["reported"] is not None for r in rows):
            continue
        L += [f"## {q}", ""]
        hdr = ["run", "fit", "reported", *report.methods, *[f"{m} err" for m in report.methods]]
        body = [[r["run_id"], "yes" if r["fit"] else "", _fmt(r["reported"], kind),
                 *[_fmt(r[m], kind) for m in report.methods],
                 *[_fmt(r[f"{m}_err"], "pct") for m in report.methods]] for r in rows if r["reported"] is not None]
        L += _md_table(hdr, body) + [""]
    L += ["## Scope of the reported figures", ""]
    L += [f"- `{r['run_id']}`: {r['scope']}" for r in report.runs if r.get("scope")] + [""]
    errs = [(r["run_id"], m, e) for r in report.runs for m, e in r["errors"].items()]
    if errs:
        L += ["## Errors (no prediction)", ""] + [f"- `{rid}` {m}: {e}" for rid, m, e in errs] + [""]
    L += ["## Metrics", ""]
    hdr = ["method", "split", "quantity", "n", *ERROR_METRICS]
    body = [[m["method"], m["split"], m["quantity"], str(m["n"]), *[_fmt(m[k], "frac") for k in ERROR_METRICS]]
            for m in metrics_rows(report)]
    L += _md_table(hdr, body) + [""]
    L += ["## Ours against the baselines (MAPE on the runs both predict)", ""]
    L += [f"- {line}" for line in comparison_lines(report)]
    from .energy import energy_markdown

    L += [""] + carbon_markdown(report) + energy_markdown(report) + calibration_markdown(report)
    if report.extras.get("step_time"):
        from .throughput_report import markdown as step_time_markdown

        L += [""] + step_time_markdown(report.extras["step_time"])
    from ..glossary import markdown_section

    body = "\n".join(L) + "\n"
    return body + "\n" + markdown_section(body)


def comparison_lines(report: ValidationReport, quantities=None) -> list[str]:
    """One sentence per (our method, quantity, split): MAPE against reg and LLMC, and the verdict."""
    lines = []
    for ours, per_q in report.extras.get("comparison", {}).items():
        for q, c in per_q.items():
            if quantities and q not in quantities:
                continue
            for split in ("all", "not_used_for_fitting"):
                parts = []
                for b in ("reg", c["llmc_variant"]):
                    h = c[split].get(b)
                    if h is None:
                        parts.append(f"{b} predicts none")
                        continue
                    x = h["mape"]
                    parts.append(f"{b} {x[b]:.3f} vs ours {x[ours]:.3f} (n={h['n']}, "
                                 f"{'ours better' if x['ours_better'] else 'ours worse'})")
                if all(p.endswith("predicts none") for p in parts):
                    continue
                verdict = c["beats_both_on_mape"][split]
                tag = {True: "beats both", False: "does not beat both", None: "only one baseline predicts it"}[verdict]
                lines.append(f"{ours} {q} [{split}]: " + "; ".join(parts) + f" -> {tag}")
    return lines


def carbon_markdown(report: ValidationReport) -> list[str]:
    L = []
    for entry in report.extras.get("carbon", []):
        L += [f"## Energy and carbon: {entry['run_id']}", "",
              "Every method's device-hours through our carbon model, like for like with the report "
              "(device power at TDP, the run's PUE or 1, the run's grid intensity).", ""]
        qs = ("device_hours", "energy_kwh", "operational_tco2e", "embodied_tco2e", "total_tco2e")
        body = [["reported", *[_fmt(entry["reported"].get(q)) for q in qs]]]
        for m, v in entry["methods"].items():
            cells = []
            for q in qs:
                err = v["errors"].get(q)
                cells.append("" if v.get(q) is None else _fmt(v[q]) + ("" if err is None else f" ({_fmt(err, 'pct')})"))
            body.append([m, *cells])
        L += _md_table(["method", *qs], body) + [""]
        if entry["reported"].get("operational_tco2e") is not None and not any(
                v.get("operational_tco2e") is not None for v in entry["methods"].values()):
            L += ["Operational carbon is not predicted: the run reports no grid intensity.", ""]
    return L


def calibration_markdown(report: ValidationReport) -> list[str]:
    cal = report.extras.get("calibration")
    if not cal:
        return []
    L = ["## Calibration", "", "Fitted constants of the performance model (data/perf.yaml):", ""]
    L += [f"- `{c['name']}` = {c['value']}: {c['source']}" for c in cal["fitted_constants"]]
    L += ["", "Runs used for fitting: " + (", ".join(f"`{r}`" for r in cal["used_for_fitting"]) or "none"), ""]
    if cal.get("throughput"):
        hdr = ["run", "devices", "TP", "PP", "DP", "batch", "mb", "v", "predicted TFLOP/s", "reported", "error"]
        body = [[t["run_id"], str(t["devices"]), str(t["tp"]), str(t["pp"]), str(t["dp"]), str(t["global_batch"]),
                 str(t["microbatch"]), str(t.get("vp", t.get("interleave"))), f"{t['predicted_tflops']:.1f}",
                 _fmt(t["reported_tflops"]), _fmt(t["error"], "pct")] for t in cal["throughput"]]
        L += ["Per-GPU throughput of the fitting runs, layouts pinned, FLOPs counted as Narayanan et al. 2021 eq. 3:",
              ""] + _md_table(hdr, body) + [""]
    return L


def write_outputs(report: ValidationReport, out_dir: str | Path, *, figures: bool = True) -> list[Path]:
    """Write report.json, runs.csv (long), metrics.csv, report.md and the figures into ``out_dir``
    (all at once: see ``_output.staged_dir``)."""
    from .._output import staged_dir

    with staged_dir(out_dir) as tmp:
        written = _write_into(report, tmp, figures=figures)
    return [Path(out_dir) / p.relative_to(tmp) for p in written]


def _write_into(report: ValidationReport, out: Path, *, figures: bool) -> list[Path]:
    written = [out / "report.json", out / "runs.csv", out / "metrics.csv", out / "report.md"]
    report.to_json(written[0])
    with written[1].open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["run_id", "used_for_fitting", "quantity", "reported", "method", "predicted", "error", "ape"])
        for row in report.runs:
            for q in QUANTITIES:
                rep = row["reported"].get(q)
                for m in report.methods:
                    p = _value(row, m, q)
                    if rep is None and p is None:
                        continue
                    w.writerow([row["run_id"], row["used_for_fitting"], q, rep, m, p, signed_error(p, rep),
                                row["ape"].get(m, {}).get(q)])
    with written[2].open("w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["method", "split", "quantity", "n", *ERROR_METRICS], lineterminator="\n")
        w.writeheader()
        w.writerows(metrics_rows(report))
    written[3].write_text(to_markdown(report), encoding="utf-8")
    if figures:
        from .figures import write_figures

        written += write_figures(report, out)
    return written
