"""``carbonscaling paper`` / ``sweep``: run scenarios, write CSVs, figures and the report.

:func:`run` is the whole pipeline: one process pool for the searches (deduplicated
across every scenario), the validation of v2 Fig. 1/3 (``carbonscaling.validation``)
and the figures; then the power-law fits, the claim checks and ``report.md`` /
``report.html``. Output layout::

    OUT/report.md, OUT/report.html, OUT/claims.csv, OUT/run.json
    OUT/<experiment>/<experiment>.csv   (one row per point; columns: docs/experiments.md)
    OUT/<experiment>/<experiment>.png (+ .svg with svg=True)
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from .claims import ClaimResult, evaluate_claims
from .runner import RunResult, default_jobs, pool_map, run_scenarios, worker_pool
from .scenario import Scenario


@dataclass
class PaperResult:
    scenarios: list[Scenario]
    run: RunResult
    fits: dict[str, dict]
    claims: list[ClaimResult]
    validation: Any
    files: dict[str, list[Path]]
    timings: dict[str, float] = field(default_factory=dict)


# ---- fits -----------------------------------------------------------------------------
def fits_for(sc: Scenario, rows: list[dict]) -> dict:
    """Power-law fits ``loss = k CO^-alpha`` of every series of a scenario with ``fit: true``."""
    from ..errors import InputError
    from .fit import fit_power_law

    if not sc.fit:
        return {}
    out = {}
    for label in dict.fromkeys(r["series"] for r in rows):
        pts = [r for r in rows if r["series"] == label and r.get("status") != "infeasible"
               and (r.get("total_tco2e") or 0) > 0]
        try:
            out[label] = fit_power_law([p["total_tco2e"] for p in pts], [p["loss"] for p in pts])
        except InputError:
            continue
    return out


# ---- validation (v2 Fig. 1, 3a, 3b) ------------------------------------------------------
def run_validation(_: Any = None):
    """``carbonscaling.validation.validate()`` on the shipped runs (ours + reg + LLMC)."""
    from ..validation import validate

    return validate(step_time=False)  # the papers' figures use the published runs only


def check_validation(report) -> Callable:
    """The ``validation_baselines`` claim check, bound to a validation report."""

    def check(rows, exp, a):
        from .claims import AGREES, DISAGREES, NOT_EVALUATED, PARTLY

        q = a.get("quantity", "device_hours")
        if report is None:
            return "validation did not run", "", NOT_EVALUATED
        met = report.metrics
        parts, mapes = [], {}
        for m in ("ours", "ours_searched", "reg", "llmc"):
            s = met.get(m, {}).get(q)
            if s:
                mapes[m] = s["mape"]
                parts.append(f"{m}: MAPE {100 * s['mape']:.0f} %, R^2(log) {s['r2_log']:.3f} (n={s['n']})"
                             if s.get("r2_log") is not None else f"{m}: MAPE {100 * s['mape']:.0f} % (n={s['n']})")
        if "ours" not in mapes or not {"reg", "llmc"} & set(mapes):
            return "; ".join(parts) or "no metrics", "", NOT_EVALUATED
        base = [mapes[b] for b in ("reg", "llmc") if b in mapes]
        wins = sum(mapes["ours"] < b for b in base)
        verdict = AGREES if wins == len(base) else (PARTLY if wins else DISAGREES)
        return f"{q}: " + "; ".join(parts), "our MAPE below both baselines'", verdict

    return check


def check_validation_carbon(report) -> Callable:
    """The ``validation_carbon`` check (v2 Fig. 3b): total carbon error per method on the runs
    that report operational and embodied carbon (BLOOM)."""

    def check(rows, exp, a):
        from .claims import AGREES, DISAGREES, NOT_EVALUATED, PARTLY

        entries = (report.extras.get("carbon") or []) if report is not None else []
        parts, verdicts = [], []
        for e in entries:
            rep = e["reported"].get("total_tco2e")
            errs = {m: v["errors"].get("total_tco2e") for m, v in e["methods"].items()}
            errs = {m: x for m, x in errs.items() if x is not None and m in ("ours", "ours_searched", "reg", "llmc")}
            if rep is None or "ours" not in errs:
                continue
            parts.append(f"{e['run_id']}: reported {rep:,.0f} tCO2e (operational + embodied); error "
                         + ", ".join(f"{m} {100 * x:+.0f} %" for m, x in errs.items()))
            base = [abs(x) for m, x in errs.items() if m in ("reg", "llmc")]
            wins = sum(abs(errs["ours"]) < b for b in base)
            verdicts.append(AGREES if base and wins == len(base) else (PARTLY if wins else DISAGREES))
        if not verdicts:
            return "no run reports both operational and embodied carbon", "", NOT_EVALUATED
        verdict = AGREES if all(v == AGREES for v in verdicts) else (
            DISAGREES if all(v == DISAGREES for v in verdicts) else PARTLY)
        return "; ".join(parts), "our |error| below reg's and LLMC's", verdict

    return check


def _validation_files(report, out: Path, svg: bool = False) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..validation.figures import fig_carbon, fig_device_hours, fig_scatter

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for fn in (fig_device_hours, fig_scatter, fig_carbon):
        paths += fn(plt, report, out, svg=svg)
    table = report.table("device_hours")
    if table:
        p = out / "v2-fig3.csv"
        _write_rows(p, table)
        paths.append(p)
    return paths


# ---- files ------------------------------------------------------------------------------
def _write_rows(path: Path, rows: list[dict]) -> None:
    cols = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else repr(v)
    return "" if v is None else v


def _draw(args) -> list[Path]:
    sc, rows, out_dir, fits, svg = args
    if sc.plot == "validation":
        return _validation_files(rows, out_dir, svg) if rows is not None else []
    from .figures import draw

    return draw(sc, rows, out_dir, fits, svg=svg)


# ---- the pipeline -------------------------------------------------------------------------
def run(scenarios: list[Scenario], out: str | Path, *, jobs: int | None = None,
        progress: Callable[[str, int, int], None] | None = None, figures: bool = True,
        title: str = "Experiments", executor: Any = None, svg: bool = False) -> PaperResult:
    """Run ``scenarios`` and write every file into ``out`` (see the module docstring).

    ``out`` is checked before any search; the files are written into a temporary directory
    next to it and moved into ``out`` only when all are complete (``_output.staged_dir``),
    so an error or Ctrl-C leaves nothing half-written. ``executor``: a process pool or a Dask
    client to run the searches and figures on (:mod:`.executors`); default a local pool of
    ``jobs`` processes. ``svg``: also write each figure as SVG.
    """
    from .._output import staged_dir

    with staged_dir(out) as tmp:
        res = _run_into(scenarios, tmp, jobs=jobs, progress=progress, figures=figures, title=title,
                        executor=executor, svg=svg)
    final = Path(out)
    res.files = {k: [final / p.relative_to(tmp) for p in v] for k, v in res.files.items()}
    return res


def _run_into(scenarios: list[Scenario], out: Path, *, jobs: int | None, progress, figures: bool,
              title: str, executor: Any = None, svg: bool = False) -> PaperResult:
    import contextlib

    from .executors import submit
    from .report import write_report

    t0 = time.perf_counter()
    jobs = default_jobs() if jobs is None else max(1, int(jobs))
    sweeps = [s for s in scenarios if s.plot != "validation"]
    timings: dict[str, float] = {}
    with (contextlib.nullcontext(executor) if executor is not None else worker_pool(jobs)) as pool:
        val_future = submit(pool, run_validation) if len(sweeps) < len(scenarios) else None
        run_res = run_scenarios(sweeps, jobs=jobs, progress=progress, pool=pool)
        timings["searches_s"] = time.perf_counter() - t0
        validation = val_future.result() if val_future is not None else None
        timings["validation_wait_s"] = time.perf_counter() - t0 - timings["searches_s"]
        rows = run_res.rows
        fits = {sc.name: fits_for(sc, rows[sc.name]) for sc in sweeps}
        files: dict[str, list[Path]] = {}
        for sc in sweeps:
            d = out / sc.name
            d.mkdir(parents=True, exist_ok=True)
            _write_rows(d / f"{sc.name}.csv", rows[sc.name])
            files[sc.name] = [d / f"{sc.name}.csv"]
        t1 = time.perf_counter()
        if figures:
            tasks = [(sc, rows.get(sc.name, validation), out / sc.name, fits.get(sc.name), svg) for sc in scenarios]
            done = [0]

            def tick():
                done[0] += 1
                if progress:
                    progress("figures", done[0], len(tasks))

            # The validation figures take longest: start them first so the pool's workers finish together.
            order = sorted(range(len(tasks)), key=lambda i: scenarios[i].plot != "validation")
            drawn = dict(zip(order, pool_map(pool, _draw, [tasks[i] for i in order], tick)))
            for i, sc in enumerate(scenarios):
                files.setdefault(sc.name, []).extend(drawn[i])
        timings["figures_s"] = time.perf_counter() - t1
    claims = evaluate_claims(scenarios, rows, extra={"validation_baselines": check_validation(validation),
                                                     "validation_carbon": check_validation_carbon(validation)})
    res = PaperResult(scenarios, run_res, fits, claims, validation, files, timings)
    _write_rows(out / "claims.csv", [asdict(c) for c in claims])
    timings["total_s"] = time.perf_counter() - t0
    write_report(res, out, title=title)
    timings["total_s"] = time.perf_counter() - t0
    searches = sorted(({**asdict(j), "options": dict(j.options), "status": r["status"], "seconds": r["seconds"],
                        "searches": r["searches"], "deadline_days_used": r["deadline_days_used"]}
                       for j, r in run_res.solved.items()), key=lambda x: -x["seconds"])
    (out / "run.json").write_text(json.dumps({"stats": run_res.stats, "timings": timings, "jobs": jobs,
                                              "searches": searches}, indent=2) + "\n", encoding="utf-8")
    return res
