"""Refit the performance model's fitted constant on the runs marked used_for_fitting.

    python benchmarks/calibrate.py [--runs PATH] [--lo 0.5] [--hi 1.0]

The one fitted constant is ``gemm.in_situ_factor`` (data/perf.yaml). Its data are the
10 Megatron-LM 2021 Table 1 rows of data/published_runs.csv (A100-80GB; devices, TP, PP,
DP and global batch pinned; fp16, full recompute, no FlashAttention, no sequence
parallelism, no overlapped gradient reduction, ZeRO 0; microbatch and interleaving
searched). Our step time is converted to per-GPU TFLOP/s with the paper's FLOP count
(Narayanan et al. 2021 eq. 3, full recompute included) and the scalar is fitted by least
squares on log(predicted / reported). Prints the fit and the per-row errors at the
shipped and the fitted value. Writes no file: copy the value into perf.yaml by hand.
"""

from __future__ import annotations

import argparse
import sys
import time

from carbonscaling.errors import CarbonScalingError
from carbonscaling.validation.calibration import fit_in_situ_factor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", default=None, help="CSV of runs (default: the shipped published_runs.csv)")
    ap.add_argument("--lo", type=float, default=0.5, help="lower bound of the search (default 0.5)")
    ap.add_argument("--hi", type=float, default=1.0, help="upper bound of the search (default 1.0)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    try:
        fit = fit_in_situ_factor(args.runs, lo=args.lo, hi=args.hi)
    except CarbonScalingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    secs = time.perf_counter() - t0
    print(f"{fit.name}: shipped {fit.current:.4f} -> fitted {fit.fitted:.4f} "
          f"(RMS log error {fit.rmse_log_current:.4f} -> {fit.rmse_log_fitted:.4f}; "
          f"{fit.evaluations} evaluations of {len(fit.run_ids)} runs, {secs:.1f} s)")
    print(f"{'run':22s} {'dev':>5s} {'TP':>3s} {'PP':>3s} {'DP':>4s} {'mb':>3s} {'v':>2s} {'reported':>9s} "
          f"{'shipped':>9s} {'err':>7s} {'fitted':>9s} {'err':>7s}")
    for a, b in zip(fit.rows_current, fit.rows_fitted):
        print(f"{a['run_id']:22s} {a['devices']:5d} {a['tp']:3d} {a['pp']:3d} {a['dp']:4d} {a['microbatch']:3d} "
              f"{a['vp']:2d} {a['reported_tflops']:9.1f} {a['predicted_tflops']:9.1f} {a['error']:+7.1%} "
              f"{b['predicted_tflops']:9.1f} {b['error']:+7.1%}")
    if abs(fit.fitted - fit.current) > 0.01:
        print(f"note: the refit differs from perf.yaml by {fit.fitted - fit.current:+.4f}; update "
              "gemm.in_situ_factor (and the docs quoting it) if the change is intended")
    return 0


if __name__ == "__main__":
    sys.exit(main())
