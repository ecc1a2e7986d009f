"""The regression baseline (``reg``), SPEC.md section 6.2 and v2 section 3.

Least squares of ``log(device_hours)`` on ``log(training FLOPs)``, ``FLOPs = 6 *
params_active * tokens``, fitted on the A100 and H100 runs that report device-hours
(hardware differences ignored, as such regressions do), then used to predict every
run. Leave-one-out: the run being predicted is always dropped from the fit.

With fewer than ``min_points_for_slope`` (default 2) fit points left, the slope is not
identifiable; the fit then fixes the slope at 1 (device-hours proportional to FLOPs,
i.e. one constant throughput) and fits the intercept only. Every prediction carries
``reg_fit_n`` and ``reg_slope_fixed`` so a report can say so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..errors import InfeasibleError, InputError
from ..stats import loglog_fit
from .runs import PublishedRun

#: Catalog device keys whose runs the regression is fitted on (v2: "A100 and H100").
FIT_DEVICES: tuple[str, ...] = ("A100", "A100-40GB", "A100-80GB", "H100", "H100-SXM")


@dataclass(frozen=True)
class LogLogFit:
    """``log(device_hours) = intercept + slope * log(flops)`` (natural logs)."""

    slope: float
    intercept: float
    n: int
    slope_fixed: bool
    run_ids: tuple[str, ...] = ()

    def predict(self, flops: float) -> float:
        """Device-hours for ``flops`` training FLOPs."""
        if not isinstance(flops, (int, float)) or not math.isfinite(flops) or flops <= 0:
            raise InputError("training_flops", f"must be a positive finite number, got {flops!r}")
        return math.exp(self.intercept + self.slope * math.log(flops))


def fit_loglog(flops: Sequence[float], device_hours: Sequence[float], *, run_ids: Sequence[str] = (),
               min_points_for_slope: int = 2) -> LogLogFit:
    """Ordinary least squares in log-log space (:func:`carbonscaling.stats.loglog_fit`; slope fixed
    at 1 below ``min_points_for_slope`` points or when every FLOPs value is the same)."""
    if len(flops) != len(device_hours):
        raise InputError("device_hours", f"needs one value per FLOPs value ({len(flops)}), got {len(device_hours)}")
    if min_points_for_slope < 2:
        raise InputError("min_points_for_slope", f"must be >= 2, got {min_points_for_slope}")
    pairs = [(f, h) for f, h in zip(flops, device_hours)]
    for f, h in pairs:
        for name, v in (("training_flops", f), ("device_hours", h)):
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise InputError(name, f"must be positive finite numbers, got {v!r}")
    if not pairs:
        raise InfeasibleError("reg: no run with device-hours and FLOPs to fit", constraint="reg_fit_points")
    n = len(pairs)
    if n < min_points_for_slope or len({f for f, _ in pairs}) == 1:
        # slope not identifiable: device-hours proportional to FLOPs (one constant throughput)
        mean_log_h, mean_log_f = (sum(math.log(p[i]) for p in pairs) / n for i in (1, 0))
        return LogLogFit(slope=1.0, intercept=mean_log_h - mean_log_f, n=n, slope_fixed=True, run_ids=tuple(run_ids))
    line = loglog_fit([f for f, _ in pairs], [h for _, h in pairs])
    return LogLogFit(slope=line.slope, intercept=line.intercept, n=n, slope_fixed=False, run_ids=tuple(run_ids))


def is_fit_run(run: PublishedRun, fit_devices: Iterable[str] = FIT_DEVICES) -> bool:
    """True for runs the regression may learn from: A100/H100, device-hours and FLOPs known."""
    return (run.device_key in set(fit_devices) and run.device_hours is not None
            and run.training_flops is not None)


def fit_runs(runs: Iterable[PublishedRun], *, exclude: str | None = None,
             fit_devices: Iterable[str] = FIT_DEVICES, min_points_for_slope: int = 2) -> LogLogFit:
    """The regression fitted on ``runs`` (fit runs only), leaving out run ``exclude``."""
    devices = tuple(fit_devices)
    chosen = [r for r in runs if is_fit_run(r, devices) and r.run_id != exclude]
    return fit_loglog([r.training_flops for r in chosen], [r.device_hours for r in chosen],
                      run_ids=[r.run_id for r in chosen], min_points_for_slope=min_points_for_slope)


def predict_run(run: PublishedRun, runs: Sequence[PublishedRun], *, leave_one_out: bool = True,
                fit_devices: Iterable[str] = FIT_DEVICES, min_points_for_slope: int = 2) -> dict[str, float]:
    """``reg``'s device-hours for ``run`` (plus days when the run reports its device count)."""
    if run.training_flops is None:
        raise InputError(f"runs[{run.run_id}].tokens", "reg needs a token count (tokens or tokens_assumed)")
    fit = fit_runs(runs, exclude=run.run_id if leave_one_out else None, fit_devices=fit_devices,
                   min_points_for_slope=min_points_for_slope)
    hours = fit.predict(run.training_flops)
    out = {"device_hours": hours, "reg_fit_n": float(fit.n), "reg_slope": fit.slope,
           "reg_slope_fixed": float(fit.slope_fixed)}
    if run.n_devices:
        out["duration_days"] = hours / run.n_devices / 24.0
    return out


def reg_predictor(runs: Sequence[PublishedRun], *, leave_one_out: bool = True,
                  fit_devices: Iterable[str] = FIT_DEVICES,
                  min_points_for_slope: int = 2) -> Callable[[PublishedRun], dict]:
    """A predictor for :func:`~carbonscaling.validation.harness.evaluate`, fitted on ``runs``."""
    pool = tuple(runs)
    devices = tuple(fit_devices)

    def predict(run: PublishedRun) -> dict[str, float]:
        if run.training_flops is None:  # benchmark rows: nothing for reg to predict
            return {}
        return predict_run(run, pool, leave_one_out=leave_one_out, fit_devices=devices,
                           min_points_for_slope=min_points_for_slope)

    predict.__name__ = "reg"
    return predict
