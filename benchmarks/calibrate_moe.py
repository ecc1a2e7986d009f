"""Refit the MoE per-expert overhead on the Megatron-Bridge step times, with hold-out checks.

    python benchmarks/calibrate_moe.py [--lo 0] [--hi 5e-4] [--no-hold-out]

``moe.expert_overhead_s`` (data/perf.yaml) is fitted by golden-section search on the
step-time MAPE of every expressible pre-training row of data/nemo_performance.csv
(validation/throughput.py describes each row as it was run). Then, unless told not to,
it is refitted leaving out one system at a time and one model at a time, and the MAPE
of each held-out group is printed next to the fit. Writes no file: copy the value into
perf.yaml by hand. About 1 CPU-s per evaluation of the 246 rows; ~10 CPU-min with hold-outs.
"""

from __future__ import annotations

import argparse
import sys

from carbonscaling.perf.constants import default_constants
from carbonscaling.validation.calibration import fit_constant, hold_out

NAME = "moe_expert_overhead_s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lo", type=float, default=0.0)
    ap.add_argument("--hi", type=float, default=5e-4)
    ap.add_argument("--no-hold-out", action="store_true")
    args = ap.parse_args(argv)
    base = default_constants().replace(**{NAME: 0.0})
    value, mape = fit_constant(NAME, args.lo, args.hi, consts=base)
    print(f"{NAME}: shipped {getattr(default_constants(), NAME):.3e} -> fitted {value:.3e} s (MAPE {mape:.4f})")
    if not args.no_hold_out:
        for key in ("system", "model"):
            for r in hold_out(NAME, args.lo, args.hi, key, consts=base):
                print(f"  leave out {key} {r['group']:24s} n={r['n']:3d} fitted {r['value']:.3e} "
                      f"train MAPE {r['train_mape']:.3f} held-out MAPE {r['held_out_mape']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
