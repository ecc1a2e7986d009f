"""Compare predictors against published runs: the per-run table and the metrics.

A *predictor* is any callable ``predictor(run: PublishedRun) -> Mapping[str, float]``
whose keys are among :data:`QUANTITIES` (extra keys are kept in the table but not
scored). The estimator's own predictor ("ours") plugs in the same way as the
baselines; :func:`default_predictors` builds ``reg``, ``llmc`` and ``llmc_pinned``.

Utilization: a run's reported ``mfu`` / ``tflops_per_device`` count FLOPs as its
``utilization_kind`` says. For ``hfu`` runs (activation recompute counted: Megatron
2021, BLOOM) the report compares the predictor's ``hfu`` / ``hfu_tflops_per_device``
keys; otherwise ``mfu`` / ``tflops_per_device``. A predictor that has no HFU figure
simply leaves those runs unscored for that quantity.

A predictor that raises :class:`~carbonscaling.errors.CarbonScalingError` for a run
gets an ``errors`` entry for that run and no predictions; other exceptions propagate.
String values a predictor returns (e.g. ``layout``) go to the row's ``info``, unscored.

:func:`validate` wires the default methods: ``ours`` (pinned layout), ``ours_searched``,
``reg`` (leave-one-out), ``llmc`` and ``llmc_pinned``; the baselines' energy and carbon
are their device-hours through our carbon model (:mod:`.accounting`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CarbonScalingError, InputError
from .metrics import summarize
from .runs import REPORTED_QUANTITIES, PublishedRun, resolve_runs

Predictor = Callable[[PublishedRun], Mapping[str, float]]
QUANTITIES: tuple[str, ...] = REPORTED_QUANTITIES
_HFU_KEYS = {"mfu": "hfu", "tflops_per_device": "hfu_tflops_per_device"}
SPLITS = ("used_for_fitting", "not_used_for_fitting")


def prediction_key(run: PublishedRun, quantity: str) -> str:
    """The predictor key compared with ``run``'s reported ``quantity`` (see module doc)."""
    if run.utilization_kind == "hfu" and quantity in _HFU_KEYS:
        return _HFU_KEYS[quantity]
    return quantity


def _finite(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def _clean(obj: Any) -> Any:
    """JSON-safe copy: NaN / inf become None."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def predict_all(runs: list[PublishedRun], predictors: Mapping[str, Predictor]) -> list[dict]:
    """One row per run: reported values, each method's predictions, APEs and errors."""
    rows = []
    for run in runs:
        reported = run.reported()
        row: dict[str, Any] = {
            "run_id": run.run_id, "model": run.model, "model_key": run.model_key, "device": run.device_key,
            "used_for_fitting": bool(run.used_for_fitting), "utilization_kind": run.utilization_kind,
            "scope": run.scope, "reported": reported, "predicted": {}, "ape": {}, "errors": {}, "info": {},
        }
        for method, predictor in predictors.items():
            try:
                raw = dict(predictor(run))
            except CarbonScalingError as err:
                row["errors"][method] = str(err)
                raw = {}
            info = {k: v for k, v in raw.items() if isinstance(v, str)}
            if info:
                row["info"][method] = info
            pred = {k: _finite(v) for k, v in raw.items()}
            row["predicted"][method] = {k: v for k, v in pred.items() if v is not None}
            row["ape"][method] = {}
            for q, rep in reported.items():
                p = pred.get(prediction_key(run, q))
                if p is not None and rep != 0:
                    row["ape"][method][q] = abs(p - rep) / abs(rep)
        rows.append(row)
    return rows


def _scored_pairs(rows: list[dict], method: str, quantity: str, runs_by_id: dict[str, PublishedRun]):
    rep, pred = [], []
    for row in rows:
        r = row["reported"].get(quantity)
        if r is None:
            continue
        key = prediction_key(runs_by_id[row["run_id"]], quantity)
        rep.append(r)
        pred.append(row["predicted"].get(method, {}).get(key))
    return rep, pred


def metrics_for(rows: list[dict], methods: list[str], runs_by_id: dict[str, PublishedRun]) -> dict:
    """``{method: {quantity: summary}}`` over ``rows`` (quantities with no usable pair left out)."""
    out: dict[str, dict] = {}
    for method in methods:
        per_q = {}
        for q in QUANTITIES:
            rep, pred = _scored_pairs(rows, method, q, runs_by_id)
            s = summarize(rep, pred)
            if s["n"]:
                per_q[q] = s
        out[method] = per_q
    return out


@dataclass
class ValidationReport:
    """Per-run table and metrics; :meth:`to_dict` gives the JSON shape."""

    runs: list[dict]
    metrics: dict[str, dict]
    metrics_split: dict[str, dict] = field(default_factory=dict)
    methods: list[str] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """``{"runs": [...], "metrics": {method: {quantity: {mape, median_ape, r2_log, r2, n}}},
        "metrics_split": {"used_for_fitting" | "not_used_for_fitting": {...same...}}}``, plus
        the sections in ``extras`` (comparison, carbon, calibration; see :mod:`.report`)."""
        return _clean({"runs": self.runs, "metrics": self.metrics, "metrics_split": self.metrics_split,
                       **self.extras})

    def to_json(self, path: str | Path | None = None, *, indent: int = 2) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def table(self, quantity: str = "device_hours") -> list[dict]:
        """Flat rows ``run_id, reported, <method>, <method>_ape`` for one quantity."""
        if quantity not in QUANTITIES:
            raise InputError("quantity", f"must be one of {', '.join(QUANTITIES)}, got {quantity!r}")
        out = []
        for row in self.runs:
            flat = {"run_id": row["run_id"], "device": row["device"], "reported": row["reported"].get(quantity)}
            for m in self.methods:
                kind = "hfu" if row.get("utilization_kind") == "hfu" else None
                key = _HFU_KEYS[quantity] if kind and quantity in _HFU_KEYS else quantity
                flat[m] = row["predicted"].get(m, {}).get(key)
                flat[f"{m}_ape"] = row["ape"].get(m, {}).get(quantity)
            out.append(flat)
        return out

    def to_frame(self, quantity: str = "device_hours"):
        """:meth:`table` as a pandas DataFrame."""
        import pandas as pd

        return pd.DataFrame(self.table(quantity))


def evaluate(runs: list[PublishedRun] | str | Path | None, predictors: Mapping[str, Predictor]) -> ValidationReport:
    """Run every predictor on every run and score them against the reported values.

    Metrics are given over all runs and split by the runs' ``used_for_fitting`` flag
    (empty counts as not used).
    """
    runs = resolve_runs(runs)
    if not predictors:
        raise InputError("predictors", "need at least one predictor")
    for name, p in predictors.items():
        if not callable(p):
            raise InputError(f"predictors.{name}", "must be callable(run) -> mapping of quantity -> value")
    methods = list(predictors)
    by_id = {r.run_id: r for r in runs}
    rows = predict_all(runs, predictors)
    by_split = {
        split: metrics_for([r for r in rows if r["used_for_fitting"] == (split == SPLITS[0])], methods, by_id)
        for split in SPLITS
    }
    return ValidationReport(runs=rows, metrics=metrics_for(rows, methods, by_id), metrics_split=by_split,
                            methods=methods)


def default_predictors(runs: list[PublishedRun]) -> dict[str, Predictor]:
    """The baselines: ``reg`` (leave-one-out over ``runs``), ``llmc`` (searched), ``llmc_pinned``,
    their energy and carbon converted from device-hours by our carbon model."""
    from .accounting import with_our_carbon
    from .llmcarbon import llmc_predictor
    from .regression import reg_predictor

    return {"reg": with_our_carbon(reg_predictor(runs)), "llmc": with_our_carbon(llmc_predictor("searched")),
            "llmc_pinned": with_our_carbon(llmc_predictor("pinned"))}


def our_predictors(consts=None) -> dict[str, Predictor]:
    """``ours`` (reported layout pinned) and ``ours_searched`` (our search chooses)."""
    from .ours import ours_predictor

    return {"ours": ours_predictor("pinned", consts), "ours_searched": ours_predictor("searched", consts)}


def validate(runs: list[PublishedRun] | str | Path | None = None, *, ours: Predictor | None = None,
             extra: Mapping[str, Predictor] | None = None, consts=None, sections: bool = True,
             step_time: bool = True) -> ValidationReport:
    """Validate ours and the baselines on ``runs`` (default: the shipped file; or any CSV path).

    ``ours`` replaces both of our default predictors with one; ``consts`` (a
    :class:`~carbonscaling.perf.constants.PerfConstants`) overrides the performance
    constants of ours. With ``sections`` the report also carries the comparison with the
    baselines, the carbon comparison and the calibration list (:mod:`.report`).
    """
    runs = resolve_runs(runs)
    predictors: dict[str, Predictor] = {"ours": ours} if ours is not None else our_predictors(consts)
    predictors.update(default_predictors(runs))
    predictors.update(extra or {})
    report = evaluate(runs, predictors)
    if sections:
        from .report import add_sections

        add_sections(report, runs, consts, step_time=step_time)
    return report
