"""Calibration hygiene: which performance constants were fitted, on what, and the refit.

The performance model has one fitted constant, ``gemm.in_situ_factor`` in
``data/perf.yaml`` (the fraction of a GEMM's microbenchmark rate it sustains inside a
training step). It was fitted on the runs marked ``used_for_fitting`` in
``published_runs.csv``: the 10 Megatron-LM 2021 Table 1 rows (A100, layouts pinned).

:func:`throughput_table` predicts those rows with the layout pinned (``ours`` pinned
mode) and converts our step time to per-GPU TFLOP/s with the paper's own FLOP count
(Narayanan et al. 2021 eq. 3, which includes full recompute), so the comparison uses
one FLOP definition. :func:`fit_in_situ_factor` refits the scalar by least squares on
the log errors of those rows (golden-section search; the microbatch and interleaving
are re-searched at every trial value) and writes nothing.
:func:`fitted_constants` lists every constant whose source in ``perf.yaml`` says
"fitted", for the validation report. :func:`fit_constant` and :func:`hold_out` fit one constant
on the Megatron-Bridge step-time rows (:mod:`.throughput`; ``benchmarks/calibrate_moe.py``).
Both fits share :func:`golden_section`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._data import load_yaml
from ..errors import InputError
from ..perf.constants import PerfConstants, default_constants
from .ours import megatron_flops_per_iteration, run_search
from .runs import PublishedRun, resolve_runs
from .throughput import Unexpressible, predict_row, pretrain_rows

#: perf.yaml ``section.key`` -> :class:`PerfConstants` field, for the constants we refit.
_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


def golden_section(f, lo: float, hi: float, done):
    """Golden-section search for the minimum of a unimodal ``f`` on ``[lo, hi]``.

    Parameters
    ----------
    f : callable
        The function of one float to minimize (a fit's loss).
    lo, hi : float
        The bracket.
    done : callable
        ``done(a, b)``: whether the bracket ``[a, b]`` is narrow enough.

    Returns
    -------
    a, b : float
        The final bracket.
    (x1, f1), (x2, f2) : tuple of float
        Its two interior points and their values.
    """
    a, b = lo, hi
    x1, x2 = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    f1, f2 = f(x1), f(x2)
    while not done(a, b):
        if f1 <= f2:
            b, x2, f2 = x2, x1, f1
            x1 = b - _GOLDEN * (b - a)
            f1 = f(x1)
        else:
            a, x1, f1 = x1, x2, f2
            x2 = a + _GOLDEN * (b - a)
            f2 = f(x2)
    return a, b, (x1, f1), (x2, f2)


def fitted_constants() -> list[dict]:
    """Every ``perf.yaml`` constant whose source starts with "fitted": name, value, source."""
    out = []
    for section, entries in load_yaml("perf.yaml").items():
        for key, entry in (entries or {}).items():
            src = str(entry.get("source", "")) if isinstance(entry, dict) else ""
            if src.lower().startswith("fitted"):
                out.append({"name": f"{section}.{key}", "value": entry["value"], "source": src})
    return out


def fitting_runs(runs: list[PublishedRun] | str | None = None) -> list[PublishedRun]:
    """Runs marked ``used_for_fitting`` that report a per-device throughput."""
    chosen = [r for r in resolve_runs(runs) if r.used_for_fitting and r.tflops_per_device is not None]
    if not chosen:
        raise InputError("used_for_fitting", "no run is marked used_for_fitting with a tflops_per_device value")
    return chosen


def is_gpt_shaped(model) -> bool:
    """Dense, ungated, multi-head attention with ``n_heads x head_dim = d_model``: eq. 3 applies."""
    return (not model.is_moe and not model.ffn_gated and model.n_kv_heads == model.n_heads
            and model.d_attn == model.d_model)


def predicted_tflops(run: PublishedRun, consts: PerfConstants | None = None) -> dict:
    """Our pinned prediction of ``run``'s per-device TFLOP/s, with the FLOP count of eq. 3."""
    from ..serialize import layout_record
    from .ours import recompute_flops_per_token

    model, system, res, _ = run_search(run, "pinned", consts)
    lay = res.layout
    step = float(res.step.step_time_s)
    if is_gpt_shaped(model) and lay.recompute == "full":
        flops = megatron_flops_per_iteration(lay.global_batch_sequences, model.seq_len, model.n_layers,
                                             model.d_model, model.vocab)
        definition = "eq. 3"
    else:
        per_token = model.model_flops_per_token + recompute_flops_per_token(model, lay.recompute)
        flops = per_token * lay.global_batch_sequences * model.seq_len
        definition = "model + recompute FLOPs"
    tflops = flops / step / lay.devices / 1e12
    rep = run.tflops_per_device
    return {"run_id": run.run_id, **layout_record(lay), "global_batch": lay.global_batch_sequences,
            "step_time_s": step, "predicted_tflops": tflops,
            "reported_tflops": rep, "error": tflops / rep - 1.0 if rep else math.nan,
            "flop_definition": definition}


def throughput_table(runs: list[PublishedRun] | str | None = None, consts: PerfConstants | None = None) -> list[dict]:
    """:func:`predicted_tflops` for every fitting run (default: the shipped Megatron rows)."""
    return [predicted_tflops(r, consts) for r in fitting_runs(runs)]


def log_rmse(rows: list[dict]) -> float:
    """Root mean square of ``log(predicted / reported)``."""
    logs = [math.log(r["predicted_tflops"] / r["reported_tflops"]) for r in rows]
    return math.sqrt(sum(x * x for x in logs) / len(logs))


@dataclass(frozen=True)
class CalibrationFit:
    """A refit of one constant: its value in perf.yaml, the fitted value, and both tables."""

    name: str
    current: float
    fitted: float
    rmse_log_current: float
    rmse_log_fitted: float
    rows_current: list[dict] = field(default_factory=list)
    rows_fitted: list[dict] = field(default_factory=list)
    evaluations: int = 0

    @property
    def run_ids(self) -> list[str]:
        return [r["run_id"] for r in self.rows_current]


def fit_in_situ_factor(runs: list[PublishedRun] | str | None = None, *, lo: float = 0.5, hi: float = 1.0,
                       tol: float = 1e-4, base: PerfConstants | None = None) -> CalibrationFit:
    """Least-squares refit of ``gemm_in_situ_factor`` on the log throughput errors of the fitting runs."""
    if not (0 < lo < hi <= 2.0) or not 0 < tol < 0.1:
        raise InputError("lo", f"need 0 < lo < hi <= 2 and 0 < tol < 0.1, got lo={lo}, hi={hi}, tol={tol}")
    chosen = fitting_runs(runs)
    c0 = base or default_constants()
    evals = 0

    def loss(x: float) -> float:
        nonlocal evals
        evals += 1
        return log_rmse(throughput_table(chosen, c0.replace(gemm_in_situ_factor=x)))

    a, b, _, _ = golden_section(loss, lo, hi, lambda a, b: b - a <= tol)
    best = (a + b) / 2.0
    rows_fit = throughput_table(chosen, c0.replace(gemm_in_situ_factor=best))
    rows_now = throughput_table(chosen, c0)
    return CalibrationFit(name="gemm.in_situ_factor", current=c0.gemm_in_situ_factor, fitted=best,
                          rmse_log_current=log_rmse(rows_now), rmse_log_fitted=log_rmse(rows_fit),
                          rows_current=rows_now, rows_fitted=rows_fit, evaluations=evals + 2)


# ---- the step-time fit on the Megatron-Bridge rows (moved from throughput.py, stop 17) ----

def _row_errors(rows: list[dict], consts) -> list[float]:
    """Signed relative step-time errors of the expressible ``rows`` under ``consts``."""
    errs = []
    for row in rows:
        try:
            errs.append(predict_row(row, consts)["error"])
        except Unexpressible:
            continue
    return errs


def fit_constant(name: str, lo: float, hi: float, rows: list[dict] | None = None, tol: float = 0.02,
                 consts=None) -> tuple[float, float]:
    """Fit one perf constant by golden-section search on step-time MAPE: ``(value, MAPE)``.

    ``rows``: the table rows fitted on (default: every validation row). MAPE is assumed
    unimodal in the constant over ``[lo, hi]``; ``tol`` is the relative width the search
    stops at. Used for the fitted constants of data/perf.yaml that name these rows as
    their data (``benchmarks/calibrate_moe.py``, which also reports hold-out errors).
    """
    base = consts or default_constants()
    rows = pretrain_rows() if rows is None else rows

    def mape(x: float) -> float:
        errs = _row_errors(rows, base.replace(**{name: x}))
        return sum(abs(e) for e in errs) / len(errs)

    _, _, (x1, f1), (x2, f2) = golden_section(mape, lo, hi, lambda a, b: b - a <= tol * max(abs(b), 1e-12))
    return (x1, f1) if f1 <= f2 else (x2, f2)


def hold_out(name: str, lo: float, hi: float, key: str, consts=None) -> list[dict]:
    """Leave-one-group-out check of a fitted constant: fit on every ``key`` group but one
    (``key``: ``system`` or ``model`` column of the table), report MAPE on the held-out group."""
    base = consts or default_constants()
    rows = pretrain_rows()
    out = []
    for group in sorted({r[key] for r in rows}):
        train = [r for r in rows if r[key] != group]
        test = [r for r in rows if r[key] == group]
        value, train_mape = fit_constant(name, lo, hi, train, consts=base)
        errs = _row_errors(test, base.replace(**{name: value}))
        out.append({"group": group, "n": len(errs), "value": value, "train_mape": train_mape,
                    "held_out_mape": sum(abs(e) for e in errs) / len(errs) if errs else None})
    return out
